"""The audit hash chain (streams/audit/chain.py): canonical form, hashes, sealing, unrolling."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from streams.audit import samples
from streams.audit.chain import (
    GENESIS,
    SOURCE_BY_KIND,
    TOMBSTONE,
    UNDECODABLE,
    Chains,
    SourceMessage,
    canonical_json,
    normalise_time,
    record_hash,
    unsealed_records,
)
from streams.codec.avro import codec

NOW = "2026-11-28T13:00:00.000000Z"


def test_canonical_json_is_sorted_compact_utf8_with_base64_bytes():
    assert canonical_json({"b": 1, "a": [b"\x00\xff", "é"], "c": None}) == '{"a":["AP8=","é"],"b":1,"c":null}'


def test_record_hash_is_sha256_of_canonical_json_without_hash():
    record = {"prev_hash": GENESIS, "payload": '{"x":1}', "key": b"k", "hash": "ignored"}
    expected = hashlib.sha256(
        ('{"key":"aw==","payload":"{\\"x\\":1}","prev_hash":"' + GENESIS + '"}').encode()
    ).hexdigest()
    assert record_hash(record) == expected
    assert record_hash(dict(record, hash="other")) == expected  # `hash` is not part of it


def test_record_hash_pinned():
    """A change of the canonical form breaks every archive ever written: pin it."""
    record = {"kind": "policy", "topic": "trust.policy", "partition": 0, "offset": 7, "batch_index": 0,
              "kafka_timestamp": 1, "key": b"policy", "identity": None, "payload_schema": "tombstone",
              "payload": "null", "value_sha256": None, "event_time": NOW, "archive_time": NOW,
              "prev_hash": GENESIS}
    assert record_hash(record) == "88326604185c5cbb858665bef4b1aa3cbf78fe418c76f458980c2db59e1eb869"


def _msg(kind: str, value: bytes | None, offset: int = 5, key: bytes | None = b"svc-a") -> SourceMessage:
    return SourceMessage(samples.TOPICS[kind], 1, offset, key, value, timestamp_ms=1_800_000_000_000)


def test_a_decision_batch_unrolls_into_one_record_per_decision():
    batch = samples.decision_batch("s", 1, [samples.decision(f"e-{i}", "svc-a", samples.at(i)) for i in range(3)])
    msg = _msg("decision", codec("DecisionBatch").encode(batch))
    records = unsealed_records(SOURCE_BY_KIND["decision"], msg, codec("DecisionBatch").decode, NOW)
    assert [r["batch_index"] for r in records] == [0, 1, 2]
    assert {r["offset"] for r in records} == {5}
    assert [json.loads(r["payload"])["event_id"] for r in records] == ["e-0", "e-1", "e-2"]
    assert records[1]["event_time"] == samples.at(1)
    assert records[0]["identity"] == "svc-a" and records[0]["payload_schema"] == "forgeone.trust.Decision"
    assert records[0]["value_sha256"] == hashlib.sha256(msg.value).hexdigest()
    assert records[0]["payload"] == canonical_json(batch["decisions"][0])


@pytest.mark.parametrize("kind, value, identity, time_of", [
    ("violation", samples.violation("v", "svc-b", "2026-11-28T12:00:01+01:00"), "svc-b", "2026-11-28T11:00:01.000000Z"),
    ("redzone", samples.redzone_event("r", "svc-c", "p-9", samples.at(2)), "svc-c", samples.at(2)),
    ("policy", samples.policy_document("v9", samples.at(3)), None, samples.at(3)),
])
def test_each_kind_names_its_identity_and_event_time(kind, value, identity, time_of):
    source = SOURCE_BY_KIND[kind]
    [record] = unsealed_records(source, _msg(kind, codec(source.schema).encode(value)),
                                codec(source.schema).decode, NOW)
    assert record["kind"] == kind and record["identity"] == identity
    assert record["event_time"] == time_of  # normalised to UTC, fixed width


def test_an_undecodable_value_is_archived_with_its_bytes_and_the_reason():
    source = SOURCE_BY_KIND["violation"]
    [record] = unsealed_records(source, _msg("violation", b"\x02garbage"), codec("Violation").decode, NOW)
    assert record["payload_schema"] == UNDECODABLE
    payload = json.loads(record["payload"])
    assert base64.b64decode(payload["value_base64"]) == b"\x02garbage"
    assert "cannot decode" in payload["error"]
    assert record["event_time"] == "2027-01-15T08:00:00.000000Z"  # the broker timestamp


def test_a_tombstone_is_archived():
    [record] = unsealed_records(SOURCE_BY_KIND["policy"], _msg("policy", None, key=b"policy"),
                                codec("PolicyDocument").decode, NOW)
    assert record["payload_schema"] == TOMBSTONE and record["payload"] == "null"
    assert record["value_sha256"] is None


def test_normalise_time():
    assert normalise_time("2026-11-28T12:00:00Z") == "2026-11-28T12:00:00.000000Z"
    assert normalise_time("2026-11-28T12:00:00") == "2026-11-28T12:00:00.000000Z"  # no offset: UTC
    assert normalise_time("not a time") is None and normalise_time(None) is None


def test_chains_seal_per_partition_from_genesis():
    chains = Chains()
    a0 = chains.seal({"topic": "t", "partition": 0, "offset": 0, "batch_index": 0, "x": 1})
    b0 = chains.seal({"topic": "t", "partition": 1, "offset": 0, "batch_index": 0, "x": 2})
    a1 = chains.seal({"topic": "t", "partition": 0, "offset": 1, "batch_index": 0, "x": 3})
    assert a0["prev_hash"] == GENESIS and b0["prev_hash"] == GENESIS
    assert a1["prev_hash"] == a0["hash"]
    assert a1["hash"] == record_hash(a1)
    assert chains.next_offset("t", 0) == 2 and chains.next_offset("t", 1) == 1
    assert chains.next_offset("t", 2) is None


def test_chains_continue_from_recorded_heads():
    first = Chains()
    first.seal({"topic": "t", "partition": 0, "offset": 0, "batch_index": 0})
    again = Chains(first.heads)
    rec = again.seal({"topic": "t", "partition": 0, "offset": 1, "batch_index": 0})
    assert rec["prev_hash"] == first.heads["t/0"].hash


def test_public_surface():
    import streams.audit

    assert sorted(streams.audit.__all__) == [
        "ArchiveWriter", "Archiver", "Chains", "FORMATS", "GENESIS", "Problem", "SOURCES", "Selection",
        "Sink", "SinkOptions", "SourceMessage", "VerifyReport", "audit_schema", "canonical_json",
        "export", "record_hash", "recover", "verify",
    ]
    for name in streams.audit.__all__:
        assert getattr(streams.audit, name) is not None


def test_every_field_of_the_audit_schema_has_a_doc():
    from streams.audit.archive import audit_schema

    schema = audit_schema()
    assert schema["name"] == "forgeone.trust.AuditRecord" and schema.get("doc")
    for field in schema["fields"]:
        assert field.get("doc", "").strip(), field["name"]
