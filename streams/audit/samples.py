"""Sample topic values for the audit trail's tests and demos.

Valid records of the four archived schemas, built from a few parameters, and
:func:`messages` which turns a plan into encoded Kafka-like messages, so the
unit tests (no Kafka) and the integration test (real broker) archive the same
kind of traffic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

from streams.audit.chain import SourceMessage, rfc3339

T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)


def at(seconds: float) -> str:
    """RFC 3339 time `seconds` after T0."""
    return rfc3339(T0 + timedelta(seconds=seconds))


def identity(ident: str, process: str = "p-1") -> dict:
    return {"id": ident, "process_id": process, "container_id": "c-1", "tenant": "acme", "labels": {}}


def decision(event_id: str, ident: str, when: str, *, allowed: bool = True) -> dict:
    return {
        "event_id": event_id, "syscall": "open_file", "args": ["/tmp/x", "r"],
        "identity": identity(ident), "allowed": allowed,
        "action": "allow" if allowed else "block",
        "reason_code": None if allowed else "trust_below_minimum",
        "reason": "compliant" if allowed else "trust 0.42 below minimum 0.5 for open_file",
        "trust_score": 0.7, "policy_version": "audit-1", "mode": "enforce", "enforced": True,
        "timestamp": when, "event_timestamp": when,
    }


def decision_batch(shim: str, seq: int, decisions: list[dict]) -> dict:
    return {"shim_id": shim, "seq": seq, "partition": None, "decisions": decisions}


def violation(event_id: str, ident: str, when: str) -> dict:
    return {
        "event_id": event_id, "syscall": "connect", "args": ["10.0.0.1:443"], "identity": identity(ident),
        "reason_code": "identity_not_allowed", "reason": "identity not allowed for connect",
        "action": "block", "mode": "enforce", "enforced": True, "trust_score": 0.5, "trust_after": 0.35,
        "policy_version": "audit-1", "timestamp": when, "event_timestamp": when,
    }


def redzone_event(event_id: str, ident: str, process: str, when: str) -> dict:
    return {
        "event_id": event_id, "process_id": process, "identity_id": ident, "from_status": None,
        "to_status": "active", "isolation_level": "network", "isolation_syscalls": [],
        "reason": "trust below quarantine threshold", "actor": "engine", "command_id": None,
        "timestamp": when, "signature_key_id": None, "signature": None,
    }


def policy_document(version: str, when: str) -> dict:
    body = '{"default_action":"deny","version":"%s"}' % version
    return {"version": version, "digest": hashlib.sha256(body.encode()).hexdigest(),
            "canonical_json": body, "published_at": when, "published_by": "pytest",
            "signature_key_id": None, "signed_at": None, "signature": None}


def traffic(batches: int, *, identities: int = 5, per_batch: int = 3, start: float = 0.0,
            tag: str = "") -> Iterator[tuple[str, bytes, dict]]:
    """(kind, key, value) of a mixed stream: decision batches, and every few a
    violation, a redzone event or a policy change; one second apart from `start`."""
    for i in range(batches):
        ident = f"svc-{i % identities}"
        when = at(start + i)
        decisions = [decision(f"e{tag}-{i}-{j}", ident, when, allowed=j % 3 != 2) for j in range(per_batch)]
        yield "decision", ident.encode(), decision_batch("shim-a", i, decisions)
        if i % 4 == 3:
            yield "violation", ident.encode(), violation(f"v{tag}-{i}", ident, when)
        if i % 10 == 9:
            yield "redzone", f"p-{i}".encode(), redzone_event(f"rz{tag}-{i}", ident, f"p-{i}", when)
        if i % 25 == 0:
            yield "policy", b"policy", policy_document(f"audit-{tag}{i}", when)


def messages(plan, topics: dict[str, str], partitions: int = 2) -> list[SourceMessage]:
    """Encode a `traffic` plan as messages of `topics` (kind -> topic name),
    spread over partitions by key (policy: partition 0), offsets counted per partition."""
    from streams.codec.avro import codec

    schemas = {"decision": "DecisionBatch", "violation": "Violation", "redzone": "RedzoneEvent",
               "policy": "PolicyDocument"}
    offsets: dict[tuple[str, int], int] = {}
    out = []
    for kind, key, value in plan:
        topic = topics[kind]
        partition = 0 if kind == "policy" else int(hashlib.sha256(key).hexdigest(), 16) % partitions
        offset = offsets.get((topic, partition), 0)
        offsets[(topic, partition)] = offset + 1
        out.append(SourceMessage(topic, partition, offset, key, codec(schemas[kind]).encode(value)))
    return out


TOPICS = {"decision": "trust.decisions", "violation": "trust.violations",
          "redzone": "trust.redzone-events", "policy": "trust.policy"}


class StepClock:
    """A clock that advances one millisecond per reading (deterministic archive times)."""

    def __init__(self, start: datetime = T0):
        self.moment = start

    def __call__(self) -> datetime:
        self.moment += timedelta(milliseconds=1)
        return self.moment


def archiver(directory, topics: dict[str, str] = TOPICS, now=None, signer=None):
    """An Archiver over `topics` (kind -> name) with the real codecs, no Kafka;
    manifests signed with `signer` (a SigningKey) if given."""
    from streams.audit.chain import SOURCES
    from streams.audit.sink import Archiver
    from streams.codec.avro import codec

    sources = {topics[s.kind]: s for s in SOURCES}
    decoders = {topics[s.kind]: codec(s.schema).decode for s in SOURCES}
    return Archiver(directory, sources, decoders, now=now or StepClock(), signer=signer)


def build_archive(directory, msgs: list[SourceMessage], files: int = 3, signer=None) -> list[dict]:
    """Archive `msgs` into `files` files (about equal); the manifests written."""
    arch = archiver(directory, signer=signer)
    per_file = -(-len(msgs) // files)
    manifests = []
    for i, msg in enumerate(msgs, 1):
        arch.add(msg)
        if i % per_file == 0:
            manifests.append(arch.close_file()[0])
    manifest, _ = arch.close_file()
    if manifest:
        manifests.append(manifest)
    return manifests
