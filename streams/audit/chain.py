"""The hash chain of the audit trail: pure, no Kafka, no files, no clock.

Every archived record is sealed with ``hash = sha256(canonical JSON of the
record without "hash")``; the canonical JSON includes ``prev_hash``, the hash
of the previous record *of the same chain*.  There is one chain per source
topic-partition (``trust.decisions/3``), because that is the only order Kafka
defines: a partition's records arrive in offset order whatever the consumer's
interleaving of partitions, so a chain says exactly "these are partition 3's
records, in order, none missing, none added".  Files add a second chain of
their own (see :mod:`streams.audit.archive`) that binds the chains together.

Canonical JSON (what is hashed) is ``json.dumps(obj, sort_keys=True,
separators=(",", ":"), ensure_ascii=False)`` encoded as UTF-8, with bytes as
base64.  The payload is itself a canonical JSON *string*, so no float is ever
re-serialised when verifying: an auditor's five lines of Python (or any
language's JSON and SHA-256) recompute the same hash.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from streams.policy.canonical import canonical_json  # the project's one canonical JSON

GENESIS = "0" * 64  # prev_hash of the first record of a chain, prev file hash of the first file
UNDECODABLE = "undecodable"
TOMBSTONE = "tombstone"


@dataclass(frozen=True, slots=True)
class Source:
    """One archived topic kind: its settings kind, payload schema and fields."""

    kind: str  # AuditKind symbol
    topic_kind: str  # kind for Settings.topic()
    schema: str  # schema of the Kafka value
    batch_field: str | None  # field holding a batch to unroll, or None
    payload_schema: str  # full name of the schema of one payload
    time_field: str  # field of the payload holding its event time


SOURCES: tuple[Source, ...] = (
    Source("decision", "decisions", "DecisionBatch", "decisions", "forgeone.trust.Decision", "event_timestamp"),
    Source("violation", "violations", "Violation", None, "forgeone.trust.Violation", "event_timestamp"),
    Source("redzone", "redzone", "RedzoneEvent", None, "forgeone.trust.RedzoneEvent", "timestamp"),
    Source("policy", "policy", "PolicyDocument", None, "forgeone.trust.PolicyDocument", "published_at"),
)
SOURCE_BY_KIND = {s.kind: s for s in SOURCES}
KINDS = tuple(s.kind for s in SOURCES)


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """What the sink needs of one Kafka message (a test builds these by hand)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The last record of a chain: its hash and position."""

    hash: str
    offset: int
    batch_index: int


def chain_id(topic: str, partition: int) -> str:
    return f"{topic}/{partition}"


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of `record` without its ``hash`` field."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body).encode("utf-8")).hexdigest()


def rfc3339(moment: datetime) -> str:
    """UTC, microseconds, ``Z``: fixed width, so string order is time order."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    """An RFC 3339 time; one without an offset is taken as UTC. ValueError if not a time."""
    moment = datetime.fromisoformat(text.strip())
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def normalise_time(text: Any) -> str | None:
    """`text` as fixed-width RFC 3339 UTC, or None when it is not a time."""
    if not isinstance(text, str):
        return None
    try:
        return rfc3339(parse_time(text))
    except ValueError:
        return None


def _from_ms(ms: int | None) -> str | None:
    if ms is None or ms < 0:
        return None
    return rfc3339(datetime.fromtimestamp(ms / 1000, tz=timezone.utc))


def _identity(payload: Mapping[str, Any]) -> str | None:
    ident = payload.get("identity")
    if isinstance(ident, Mapping) and isinstance(ident.get("id"), str):
        return ident["id"]
    value = payload.get("identity_id")
    return value if isinstance(value, str) else None


def unsealed_records(
    source: Source,
    msg: SourceMessage,
    decode: Callable[[bytes], dict],
    archive_time: str,
) -> list[dict[str, Any]]:
    """The audit records of one message, without ``prev_hash``/``hash``.

    A DecisionBatch gives one record per decision.  A value that does not
    decode is archived anyway (``payload_schema: undecodable``, base64 bytes
    and the error): an audit trail that drops what it cannot read loses
    evidence, and one that stops blocks the whole archive.
    """
    value_sha = hashlib.sha256(msg.value).hexdigest() if msg.value is not None else None
    fallback_time = _from_ms(msg.timestamp_ms) or archive_time
    common = {
        "kind": source.kind,
        "topic": msg.topic,
        "partition": msg.partition,
        "offset": msg.offset,
        "kafka_timestamp": msg.timestamp_ms,
        "key": msg.key,
        "value_sha256": value_sha,
        "archive_time": archive_time,
    }
    if msg.value is None:
        return [dict(common, batch_index=0, identity=None, payload_schema=TOMBSTONE,
                     payload="null", event_time=fallback_time)]
    try:
        decoded = decode(msg.value)
        payloads = decoded[source.batch_field] if source.batch_field else [decoded]
    except Exception as exc:  # any decoder failure: archive the bytes with the reason
        payload = {"value_base64": base64.b64encode(msg.value).decode("ascii"), "error": str(exc)}
        return [dict(common, batch_index=0, identity=None, payload_schema=UNDECODABLE,
                     payload=canonical_json(payload), event_time=fallback_time)]
    return [
        dict(
            common,
            batch_index=index,
            identity=_identity(payload),
            payload_schema=source.payload_schema,
            payload=canonical_json(payload),
            event_time=normalise_time(payload.get(source.time_field)) or fallback_time,
        )
        for index, payload in enumerate(payloads)
    ]


class Chains:
    """The heads of every chain; seals records onto them.

    Built from the heads a manifest recorded, so a restarted sink continues
    each chain exactly where the archive ends.
    """

    __slots__ = ("heads",)

    def __init__(self, heads: Mapping[str, ChainHead] | None = None):
        self.heads: dict[str, ChainHead] = dict(heads or {})

    def next_offset(self, topic: str, partition: int) -> int | None:
        """First offset not yet archived for this partition, or None if none was."""
        head = self.heads.get(chain_id(topic, partition))
        return None if head is None else head.offset + 1

    def seal(self, record: dict[str, Any]) -> dict[str, Any]:
        """Set `prev_hash` and `hash` of `record` (in place) and advance its chain."""
        cid = chain_id(record["topic"], record["partition"])
        head = self.heads.get(cid)
        record["prev_hash"] = GENESIS if head is None else head.hash
        record["hash"] = record_hash(record)
        self.heads[cid] = ChainHead(record["hash"], record["offset"], record["batch_index"])
        return record

    def seal_all(self, records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        return [self.seal(r) for r in records]
