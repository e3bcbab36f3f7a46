"""Malformed Kafka records for the bad-input tests: pure, seeded.

Each :class:`Bad` is one record to write straight to a topic (no shim, no
validation) with the dead-letter `error_code` the engine must give it.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass

from streams.codec.avro import codec

HUGE = 900 * 1024  # bytes: under the broker's and clients' 1 MB message cap


@dataclass(frozen=True, slots=True)
class Bad:
    kind: str
    key: bytes | None
    value: bytes | None
    code: str  # the DeadLetter error_code expected


def _other_schema_values() -> list[bytes]:
    """Valid Avro of every topic value schema but the events' (none decodes as a batch)."""
    from tests.unit.codec.test_avro import RECORDS

    return [codec(name).encode(rec) for name, rec in sorted(RECORDS.items())
            if name not in ("SyscallEventBatch", "Identity", "TrustVector", "TraceEntry")]


def _event_json(rng: random.Random) -> bytes:
    return json.dumps({"shim_id": "json-shim", "seq": rng.randrange(1000), "events": [{
        "event_id": f"json-{rng.randrange(10**9)}", "syscall": "read", "args": [],
        "identity": {"id": "svc-a", "process_id": "p-1"}, "timestamp": "2026-11-28T12:00:00Z"}]}).encode()


def _key(rng: random.Random) -> bytes:
    return f"tool-{rng.randrange(10**6)}".encode()


def bad_events(count: int, seed: int = 1, huge_every: int = 500) -> Iterator[Bad]:
    """`count` malformed values for trust.syscall-events, every kind in turn."""
    rng = random.Random(seed)
    others = _other_schema_values()
    kinds = ("random bytes", "other schema", "json", "empty value", "null value", "no key")
    for i in range(count):
        if huge_every and i % huge_every == huge_every - 1:
            yield Bad("900 KB value", _key(rng), rng.randbytes(HUGE), "undecodable")
            continue
        kind = kinds[i % len(kinds)]
        if kind == "random bytes":
            yield Bad(kind, _key(rng), rng.randbytes(rng.randint(1, 300)), "undecodable")
        elif kind == "other schema":
            yield Bad(kind, _key(rng), others[rng.randrange(len(others))], "undecodable")
        elif kind == "json":
            yield Bad(kind, _key(rng), _event_json(rng), "undecodable")
        elif kind == "empty value":
            yield Bad(kind, _key(rng), b"", "undecodable")
        elif kind == "null value":
            yield Bad(kind, _key(rng), None, "undecodable")
        else:
            yield Bad(kind, None, rng.randbytes(rng.randint(1, 300)), "undecodable")


def bad_controls(seed: int = 2) -> list[Bad]:
    """Malformed records for trust.control (TrustControl values, key = identity id)."""
    rng = random.Random(seed)
    ok = {"command_id": "c-1", "op": "reset_trust", "identity_id": "svc-a",
          "actor": "operator:fuzz", "reason": "r", "timestamp": "2026-11-28T12:00:00.000000Z"}
    enc = codec("TrustControl").encode
    return [
        Bad("random bytes", b"svc-a", rng.randbytes(64), "undecodable"),
        Bad("empty value", b"svc-a", b"", "undecodable"),
        Bad("null value", b"svc-a", None, "undecodable"),
        Bad("json", b"svc-a", json.dumps(ok).encode(), "undecodable"),
        Bad("other schema", b"svc-a", _other_schema_values()[0], "undecodable"),
        Bad("900 KB value", b"svc-a", rng.randbytes(HUGE), "undecodable"),
        Bad("key is not the identity", b"svc-b", enc(ok), "control_key"),
        Bad("no key", None, enc(dict(ok, command_id="c-2")), "control_key"),
    ]


def _envelope(canonical: str, version: str = "poison", digest: str = "0" * 64) -> dict:
    return {"version": version, "digest": digest, "canonical_json": canonical,
            "published_at": "2026-11-28T12:00:00.000000Z", "published_by": "fuzz",
            "signature_key_id": None, "signed_at": None, "signature": None}


def bad_policies(running_version: str, seed: int = 3) -> list[Bad]:
    """Poisoned records for trust.policy: none may replace the policy in force or stop the worker."""
    rng = random.Random(seed)
    enc = codec("PolicyDocument").encode
    valid_doc = json.dumps({"version": "poison-valid", "policies": {}})
    k = b"policy"
    return [
        Bad("random bytes", k, rng.randbytes(64), "undecodable"),
        Bad("empty value", k, b"", "undecodable"),
        Bad("json", k, valid_doc.encode(), "undecodable"),
        Bad("other schema", k, _other_schema_values()[0], "undecodable"),
        Bad("900 KB value", k, rng.randbytes(HUGE), "undecodable"),
        Bad("canonical_json not JSON", k, enc(_envelope("{not json")), "invalid"),
        Bad("canonical_json a list", k, enc(_envelope("[1, 2]")), "invalid"),
        Bad("canonical_json nested 100k deep", k, enc(_envelope("[" * 100_000 + "]" * 100_000)), "invalid"),
        Bad("invalid policy (bad regex)", k, enc(_envelope(json.dumps(
            {"version": "poison-regex", "policies": {"read": {"arg_constraints": {"0": "("}}}}))), "invalid"),
        Bad("digest does not match", k, enc(_envelope(valid_doc, "poison-valid")), "invalid"),
        Bad("running version, other content", k, enc(_conflicting(running_version)), "version_conflict"),
        Bad("900 KB version", k, enc(_envelope("{}", "v" * HUGE)), "invalid"),
        Bad("other key", b"not-policy", rng.randbytes(32), "undecodable"),
        Bad("no key", None, rng.randbytes(32), "undecodable"),
        Bad("null value (tombstone) for another key", b"not-policy", None, "undecodable"),
        Bad("null value (tombstone)", k, None, "undecodable"),
    ]


def _conflicting(version: str) -> dict:
    """A valid envelope (digest right) reusing `version` for other content."""
    from streams.policy.loader import load_policy

    cp = load_policy({"version": version, "default_action": "allow", "policies": {"poison": {}}})
    return _envelope(cp.canonical_json, version, cp.digest)
