"""Syscall events (docs/behaviour.md §1.1): plain records <-> the engine's SyscallContext.

Validation here is what sends a bad event to the dead-letter topic: every
refusal is an EventError whose message names the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from streams.errors import EventError
from streams.policy.model import IdentityContext, SyscallContext, TrustVector

_OPTIONAL_IDENTITY = ("container_id", "tenant")

# RFC 3339 `date-time` (section 5.6): a full date, `T`, a time with optional
# fraction, and a zone, `Z` or `+hh:mm`/`-hh:mm` (`t` and `z` may be lower
# case, as the RFC allows).  ASCII digits only (`(?a)`: `\d` would take any
# Unicode digit, and is faster than `[0-9]`).  A leap second (`:60`) is
# allowed, as in the RFC; days 29-31 are checked against their month.
_RFC3339 = re.compile(
    r"(?a)\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])[Tt]"
    r"(?:[01]\d|2[0-3]):[0-5]\d:(?:[0-5]\d|60)(?:\.\d+)?"
    r"(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)"
).fullmatch
_DAYS_IN_MONTH = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


@lru_cache(maxsize=1024)
def _day_exists(date: str) -> bool:
    """`yyyy-mm-dd` (already matched) names a day of the calendar; memoised, dates repeat."""
    year, month, day = int(date[0:4]), int(date[5:7]), int(date[8:10])
    if day > _DAYS_IN_MONTH[month]:
        return False
    return not (month == 2 and day == 29) or (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0))


def is_rfc3339(text: str) -> bool:
    """True if `text` is an RFC 3339 date-time with a time zone (docs/behaviour.md §1.1).

    On the hot path (every event): one precompiled full match, and for days
    29-31 a memoised calendar check.  See benchmarks/timestamp_bench.py.
    """
    return _RFC3339(text) is not None and (text[8:10] <= "28" or _day_exists(text[:10]))


def _need_str(d: Mapping, key: str, where: str) -> str:
    value = d.get(key)
    if value is None:
        raise EventError(f"`{where}{key}` is required")
    if not isinstance(value, str):
        raise EventError(f"`{where}{key}` must be a string, got `{value!r}`")
    if not value:
        raise EventError(f"`{where}{key}` must not be empty")
    return value


def context_from_record(rec: Any) -> SyscallContext:
    """Validate one event record (decoded JSON or Avro) and build its context."""
    if not isinstance(rec, Mapping):
        raise EventError(f"an event must be an object, got `{type(rec).__name__}`")
    event_id = _need_str(rec, "event_id", "")
    syscall = _need_str(rec, "syscall", "")
    args = rec.get("args")
    if not isinstance(args, (list, tuple)):
        raise EventError("`args` is required and must be a list of strings")
    for i, a in enumerate(args):
        if not isinstance(a, str):
            raise EventError(f"`args.{i}` must be a string, got `{a!r}`")
    ident = rec.get("identity")
    if not isinstance(ident, Mapping):
        raise EventError("`identity` is required and must be an object")
    identity = IdentityContext(
        id=_need_str(ident, "id", "identity."),
        process_id=_need_str(ident, "process_id", "identity."),
        container_id=_opt_str(ident, "container_id"),
        tenant=_opt_str(ident, "tenant"),
        labels=_labels(ident.get("labels")),
    )
    timestamp = _need_str(rec, "timestamp", "")
    # is_rfc3339, inlined (one Python call less per event)
    if _RFC3339(timestamp) is None or (timestamp[8:10] > "28" and not _day_exists(timestamp[:10])):
        raise EventError(f"`timestamp` must be an RFC 3339 date-time with a time zone "
                         f"(like `2026-11-28T12:00:00Z`), got `{timestamp!r}`")
    tv = rec.get("trust_vector")
    vector = None
    if tv is not None:
        score = tv.get("score") if isinstance(tv, Mapping) else None
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
            raise EventError(f"`trust_vector.score` must be a number in [0, 1], got `{score!r}`")
        vector = TrustVector(float(score))
    dna = rec.get("execution_dna")
    if dna is not None and not isinstance(dna, str):
        raise EventError("`execution_dna` must be a string or null")
    return SyscallContext(event_id, syscall, tuple(args), identity, timestamp, vector, dna)


def context_from_avro(rec: dict) -> SyscallContext:
    """`context_from_record` for a record the Avro codec decoded (the stream's
    hot path): the schema already fixed every field's type, so only what it
    cannot say is checked here: non-empty ids, the timestamp, the score's range."""
    ident = rec["identity"]
    event_id, syscall, timestamp = rec["event_id"], rec["syscall"], rec["timestamp"]
    identity_id, process_id = ident["id"], ident["process_id"]
    if not (event_id and syscall and identity_id and process_id):
        return context_from_record(rec)  # raises, naming the empty field
    if _RFC3339(timestamp) is None or (timestamp[8:10] > "28" and not _day_exists(timestamp[:10])):
        raise EventError(f"`timestamp` must be an RFC 3339 date-time with a time zone "
                         f"(like `2026-11-28T12:00:00Z`), got `{timestamp!r}`")
    tv = rec["trust_vector"]
    vector = None
    if tv is not None:
        score = tv["score"]
        if not 0.0 <= score <= 1.0:
            raise EventError(f"`trust_vector.score` must be a number in [0, 1], got `{score!r}`")
        vector = TrustVector(score)
    identity = IdentityContext(identity_id, process_id, ident["container_id"], ident["tenant"],
                               ident["labels"])
    return SyscallContext(event_id, syscall, tuple(rec["args"]), identity, timestamp, vector,
                          rec["execution_dna"])


def _opt_str(d: Mapping, key: str) -> str | None:
    value = d.get(key)
    if value is not None and not isinstance(value, str):
        raise EventError(f"`identity.{key}` must be a string or null, got `{value!r}`")
    return value


def _labels(value: Any) -> Mapping[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise EventError("`identity.labels` must be an object of strings")
    return value


def identity_record(i: IdentityContext) -> dict[str, Any]:
    return {"id": i.id, "process_id": i.process_id, "container_id": i.container_id,
            "tenant": i.tenant, "labels": dict(i.labels) if i.labels else {}}

