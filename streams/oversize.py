"""Records too large for one Kafka record, made to fit.  Pure: no Kafka here.

Kafka refuses a record above a size limit (librdkafka's `message.max.bytes`,
1,000,000 bytes by default, or a topic's `max.message.bytes`).  The engine's
outputs can exceed it: an event whose argument is 900 KB gives a decision
that carries it twice (argument and reason), and a batch of many small
events gives a DecisionBatch larger than the batch.  :func:`fit` turns such a
record into records that fit, losing as little as it can:

1. a record with a splittable list (a DecisionBatch's ``decisions``) is
   split into consecutive parts, each a record of the same shape;
2. a record (or a part) still too large has its long values cut: strings to
   a cap with a marker ``...[truncated, N bytes]`` (N the full UTF-8 size),
   byte strings to their first bytes, lists of strings to a budget of 16
   caps with a marker element for what is left out; the cap shrinks from
   64 KiB down to 64 bytes until the record fits.  Short values (enum
   symbols, ids, timestamps) are never touched.

What cannot be made to fit is returned as is, for the caller to dead-letter.
"""

from __future__ import annotations

from typing import Any, Callable

CAPS = (64 * 1024, 16 * 1024, 4 * 1024, 1024, 256, 64)  # bytes per value, tried in order
LIST_BUDGET = 16  # a list of strings keeps at most this many caps of text


def utf8_size(s: str) -> int:
    return len(s) if s.isascii() else len(s.encode("utf-8", "surrogatepass"))


def cap_text(s: str, limit: int) -> str:
    """`s` if its UTF-8 fits in `limit` bytes, else its head and a marker
    (`...[truncated, N bytes]`, N its full size), `limit` bytes at most in all."""
    if len(s) * 4 <= limit:  # cannot be longer: no encoding needed
        return s
    raw = s.encode("utf-8", "surrogatepass")
    if len(raw) <= limit:
        return s
    marker = f"...[truncated, {len(raw)} bytes]"
    return raw[:max(0, limit - len(marker))].decode("utf-8", "ignore") + marker


def cap_strings(items: list[str], cap: int, budget: int) -> list[str]:
    """Each string capped to `cap` bytes; once `budget` bytes are used, one marker for the rest."""
    out: list[str] = []
    used = 0
    for i, item in enumerate(items):
        item = cap_text(item, cap)
        used += utf8_size(item)
        if used > budget:
            out.append(f"...[{len(items) - i} more left out]")
            break
        out.append(item)
    return out


def truncated(value: Any, cap: int) -> Any:
    """`value` with every long string, byte string and list of strings cut (see the module doc)."""
    if isinstance(value, str):
        return cap_text(value, cap)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value[:cap]) if len(value) > cap else value
    if isinstance(value, dict):
        return {k: truncated(v, cap) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, str) for v in value):
            return cap_strings(list(value), cap, cap * LIST_BUDGET)
        return [truncated(v, cap) for v in value]
    return value


def fit(record: dict, encode: Callable[[dict], bytes], limit: int,
        split: str | None = None) -> tuple[list[bytes], str, list[bytes]]:
    """(encoded records that fit in `limit` bytes, how, encoded parts that cannot be made to fit).

    `how` is ``as_is`` (the record fits), ``split``, ``truncated``, or
    ``split+truncated``.  `split` names a list field the record may be split on."""
    whole = encode(record)
    if len(whole) <= limit:
        return [whole], "as_is", []
    fitted: list[bytes] = []
    unfit: list[bytes] = []
    items = record.get(split) if split else None
    if items is not None and len(items) > 1:
        parts = min(len(items), len(whole) // max(limit, 1) + 2)
        size = -(-len(items) // parts)
        hows = set()
        for start in range(0, len(items), size):
            got, how, bad = fit({**record, split: items[start:start + size]}, encode, limit, split)
            fitted += got
            unfit += bad
            hows.add(how)
        return fitted, "split+truncated" if hows & {"truncated", "split+truncated"} else "split", unfit
    for cap in CAPS:
        value = encode(truncated(record, cap))
        if len(value) <= limit:
            return [value], "truncated", []
    return [], "truncated", [whole]
