"""`trustctl tail`: decoded records of an output topic, one JSON line each.

What a downstream consumer or an auditor looks at first.  Batches are
unrolled (one line per decision); bytes are shown as base64.

``--stats`` (decisions only) prints one JSON line instead of the records: how
many decisions, and the percentiles of their latency, decision `timestamp` -
`event_timestamp`.  That is the time an event took from the shim to its
decision only when the shim stamps events as they happen (`trustctl
simulate` does; replayed or synthetic times make it meaningless).
``--since`` starts each partition at its first record whose Kafka
timestamp (producer or broker time, as the topic keeps it) is at or after a
time, e.g. the start of a demo.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from collections.abc import Mapping
from datetime import datetime, timezone

from streams.topics import BY_KIND as KINDS  # command word = topic kind


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("tail", help="print decoded records of a topic as JSON lines")
    p.add_argument("what", choices=sorted(KINDS))
    p.add_argument("-f", "--follow", action="store_true", help="keep waiting for new records")
    p.add_argument("-n", "--limit", type=int, help="stop after this many lines")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the broker")
    p.add_argument("--deadline", type=float, help="with --follow: give up after this many seconds")
    p.add_argument("--since", metavar="TIME",
                   help="start at the records timestamped at or after TIME (RFC 3339, e.g. 2026-11-28T12:00:00Z)")
    p.add_argument("--stats", action="store_true",
                   help="decisions only: print their count and latency percentiles (decision timestamp - "
                        "event_timestamp, ms) as one JSON line instead of the records")
    p.set_defaults(func=run)


def parse_time(text: str) -> datetime:
    """An RFC 3339 time (UTC when it has no offset); TrustError if it is not one."""
    from streams.errors import TrustError

    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise TrustError(f"not an RFC 3339 time: `{text}`") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile (0 < q <= 100) of a non-empty sorted list."""
    rank = max(1, min(len(ordered), -(-len(ordered) * q // 100)))
    return ordered[int(rank) - 1]


class LatencyStats:
    """Decision latency, decision `timestamp` - `event_timestamp`, one decision at a time.

    Pure: decisions in (dicts as decoded), a summary out.  A decision whose
    times do not parse is counted apart, never guessed.
    """

    __slots__ = ("seconds", "unparsed", "_parse")

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.unparsed = 0
        self._parse = datetime.fromisoformat

    def add(self, decision: Mapping) -> None:
        try:
            took = self._parse(decision["timestamp"]) - self._parse(decision["event_timestamp"])
        except (KeyError, TypeError, ValueError):
            self.unparsed += 1
            return
        self.seconds.append(took.total_seconds())

    def summary(self) -> dict:
        """{"decisions", "p50_ms", "p95_ms", "p99_ms", "max_ms"} (+ "unparsed" if any); None when empty."""
        ordered = sorted(self.seconds)
        out: dict = {"decisions": len(ordered) + self.unparsed}
        for name, q in (("p50_ms", 50), ("p95_ms", 95), ("p99_ms", 99), ("max_ms", 100)):
            out[name] = round(percentile(ordered, q) * 1000, 3) if ordered else None
        if self.unparsed:
            out["unparsed"] = self.unparsed
        return out


def _jsonable(value):
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def run(args: argparse.Namespace) -> int:
    from confluent_kafka import TopicPartition

    from streams.codec.avro import codec
    from streams.errors import TrustError
    from streams.kafka import clients
    from streams.settings import Settings

    settings = Settings.from_env()
    spec = KINDS[args.what]
    if args.stats and args.what != "decisions":
        raise TrustError(f"`--stats` reads decisions, not `{args.what}`")
    since_ms = int(parse_time(args.since).timestamp() * 1000) if args.since else None
    topic, batch_field = settings.topic(spec.kind), spec.batch_field
    from streams import command_signature

    # commands and redzone events written before their signature fields still decode
    decode = (lambda v: command_signature.decode(spec.schema, v)) if spec.schema in command_signature.PURPOSES \
        else codec(spec.schema).decode
    stats = LatencyStats() if args.stats else None
    consumer = clients.consumer(settings, "trustctl-tail")
    printed = 0
    code = 0
    try:
        meta = consumer.list_topics(topic, timeout=args.timeout)
        if meta.topics[topic].error is not None:
            raise TrustError(f"topic `{topic}` is not available: {meta.topics[topic].error}")
        parts = sorted(meta.topics[topic].partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=args.timeout) for p in parts}
        starts = {p: ends[p][0] for p in parts}
        if since_ms is not None:
            found = consumer.offsets_for_times([TopicPartition(topic, p, since_ms) for p in parts],
                                               timeout=args.timeout)
            for tp in found:  # -1: nothing at or after that time yet
                starts[tp.partition] = tp.offset if tp.offset >= 0 else ends[tp.partition][1]
        consumer.assign([TopicPartition(topic, p, starts[p]) for p in parts])
        remaining = {p for p in parts if ends[p][1] > starts[p]}
        give_up = time.monotonic() + args.deadline if args.deadline else None
        while args.follow or remaining:
            if give_up is not None and time.monotonic() > give_up:
                print(f"trustctl: {printed} {'decisions' if stats else 'lines'} before the deadline", file=sys.stderr)
                code = 1
                break
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                print(f"trustctl: {msg.error()}", file=sys.stderr)
                continue
            if msg.offset() >= ends[msg.partition()][1] - 1:
                remaining.discard(msg.partition())
            try:
                record = decode(msg.value())
            except TrustError as exc:
                print(f"trustctl: partition {msg.partition()} offset {msg.offset()}: {exc}", file=sys.stderr)
                continue
            if _emit(record[batch_field] if batch_field else [record], stats, args.limit, printed):
                printed = args.limit
                break
            printed += len(record[batch_field]) if batch_field else 1
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    if stats is not None:
        sys.stdout.write(json.dumps(stats.summary()) + "\n")
    return code


def _emit(lines: list, stats: LatencyStats | None, limit: int | None, printed: int) -> bool:
    """Print (or count) `lines`; True when that reaches `limit`."""
    if limit:
        lines = lines[:limit - printed]
    if stats is not None:
        for line in lines:
            stats.add(line)
    else:
        sys.stdout.write("".join(json.dumps(_jsonable(line)) + "\n" for line in lines))
        sys.stdout.flush()
    return bool(limit) and printed + len(lines) >= limit
