"""Avro schemas and codecs (docs/behaviour.md §4): round trips, golden bytes, wire format, errors.

Golden bytes live in ``golden/avro.json`` (schema name -> hex).  A schema
change that changes the wire fails here on purpose; if the change is
intended, regenerate with ``python tests/unit/codec/test_avro.py --regen`` and
review the diff.
"""

from __future__ import annotations

import copy
import io
import json
import math
import sys
from pathlib import Path

import avro.datafile
import avro.io
import avro.schema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams import codec as codec_pkg
from streams.codec import (
    NAMESPACE,
    SCHEMA_DIR,
    codec,
    iter_container,
    parsed_schema,
    schema_json,
    schema_names,
    schema_path,
    write_container,
)
from streams.errors import CodecError

GOLDEN = Path(__file__).parent / "golden" / "avro.json"
TS = "2026-11-28T12:00:00.000000Z"
TS2 = "2026-11-28T12:00:00.000150Z"

IDENTITY = {
    "id": "svc-payments",
    "process_id": "p-17",
    "container_id": "c-3",
    "tenant": "acme",
    "labels": {"team": "pay"},
}
EVENT = {
    "event_id": "e-1",
    "syscall": "open_file",
    "args": ["/tmp/x", "r"],
    "identity": IDENTITY,
    "trust_vector": {"score": 0.9},
    "execution_dna": "dna-9f",
    "timestamp": TS,
}
EVENT_MINIMAL = {
    "event_id": "e-2",
    "syscall": "getpid",
    "args": [],
    "identity": {"id": "svc-x", "process_id": "p-1", "container_id": None, "tenant": None, "labels": {}},
    "trust_vector": None,
    "execution_dna": None,
    "timestamp": TS,
}
DECISION = {
    "event_id": "e-1",
    "syscall": "open_file",
    "args": ["/tmp/x", "r"],
    "identity": IDENTITY,
    "allowed": False,
    "action": "block",
    "reason_code": "trust_below_minimum",
    "reason": "trust 0.42 below minimum 0.5 for open_file",
    "trust_score": 0.42,
    "policy_version": "2026-11-28.1",
    "mode": "enforce",
    "enforced": True,
    "timestamp": TS2,
    "event_timestamp": TS,
}
DECISION_OK = dict(
    DECISION, event_id="e-2", allowed=True, action="allow", reason_code=None,
    reason="compliant with policy for open_file", trust_score=0.8,
)
TRACE_FULL = {
    "event_id": "e-1",
    "syscall": "open_file",
    "args": ["/tmp/x", "r"],
    "allowed": True,
    "action": "allow",
    "reason_code": None,
    "trust_score": 0.8,
    "policy_version": "2026-11-28.1",
    "timestamp": TS,
}
TRACE_METADATA = {
    "event_id": "e-2",
    "syscall": "connect",
    "args": None,
    "allowed": False,
    "action": "quarantine",
    "reason_code": "arg_constraint",
    "trust_score": None,
    "policy_version": None,
    "timestamp": TS2,
}

# One fixed record per record schema: every optional field set, so every
# union branch and enum index in them is pinned by the golden bytes.
RECORDS: dict[str, dict] = {
    "Identity": IDENTITY,
    "TrustVector": {"score": 0.9},
    "SyscallEvent": EVENT,
    "SyscallEventBatch": {"shim_id": "host-a-4242", "seq": 7, "events": [EVENT, EVENT_MINIMAL]},
    "Decision": DECISION,
    "DecisionBatch": {"shim_id": "host-a-4242", "seq": 7, "partition": 3, "decisions": [DECISION, DECISION_OK]},
    "TraceEntry": TRACE_FULL,
    "Violation": {
        "event_id": "e-1",
        "syscall": "open_file",
        "args": ["/tmp/x", "r"],
        "identity": IDENTITY,
        "reason_code": "trust_below_minimum",
        "reason": "trust 0.42 below minimum 0.5 for open_file",
        "action": "warn",
        "mode": "audit",
        "enforced": False,
        "trust_score": 0.42,
        "trust_after": 0.27,
        "policy_version": "2026-11-28.1",
        "timestamp": TS2,
        "event_timestamp": TS,
    },
    "QuarantineCommand": {
        "command_id": "q-1",
        "op": "quarantine",
        "process_id": "p-17",
        "container_id": "c-3",
        "identity": IDENTITY,
        "reason": "trust 0.1 below quarantine threshold 0.2",
        "reason_code": "arg_constraint",
        "isolation_level": "custom",
        "isolation_syscalls": ["connect", "send*"],
        "forensic_mode": "metadata",
        "trace": [TRACE_FULL, TRACE_METADATA],
        "policy_version": "2026-11-28.1",
        "source": "engine",
        "event_id": "e-2",
        "timestamp": TS2,
        "signature_key_id": "0123456789abcdef0123456789abcdef",
        "signature": bytes(range(64)),
    },
    "RedzoneEvent": {
        "event_id": "rz-1",
        "process_id": "p-17",
        "identity_id": "svc-payments",
        "from_status": "active",
        "to_status": "analyzing",
        "isolation_level": "network",
        "isolation_syscalls": [],
        "reason": "operator started analysis",
        "actor": "operator:alice",
        "command_id": "q-2",
        "timestamp": TS2,
        "signature_key_id": "0123456789abcdef0123456789abcdef",
        "signature": bytes(range(64)),
    },
    "PolicyDocument": {
        "version": "2026-11-28.1",
        "digest": "0" * 64,
        "canonical_json": '{"default_action":"deny","version":"2026-11-28.1"}',
        "published_at": TS,
        "published_by": "alice",
        "signature_key_id": "0123456789abcdef0123456789abcdef",
        "signed_at": TS,
        "signature": bytes(range(64)),
    },
    "TrustControl": {
        "command_id": "tc-1",
        "op": "reset_trust",
        "identity_id": "svc-payments",
        "reason": "process `p-17` recovered by operator:alice",
        "actor": "operator:alice",
        "timestamp": TS2,
        "signature_key_id": "0123456789abcdef0123456789abcdef",
        "signature": bytes(range(64)),
    },
    "EnforcementAction": {
        "action_id": "ea-1",
        "shim_id": "host-a-4242",
        "process_id": "p-17",
        "identity_id": "svc-payments",
        "container_id": "host",
        "action": "deny",
        "syscall": "connect",
        "signal": "SIGSTOP",
        "mechanism": "seccomp",
        "command_id": "q-1",
        "transition_id": "rz-1",
        "event_id": "e-3",
        "violating_event_id": "e-2",
        "delay_ms": 12.5,
        "reason": "connect is covered by the network isolation of p-17",
        "timestamp": TS2,
    },
    "DeadLetter": {
        "topic": "trust.syscall-events",
        "partition": 2,
        "offset": 1234567890123,
        "key": b"svc-payments",
        "value": b"\x00\xff not avro",
        "reason": "cannot decode `SyscallEventBatch`: the value is truncated",
        "error_code": "codec",
        "event_index": 4,
        "timestamp": TS2,
    },
}
RECORD_SCHEMAS = sorted(RECORDS)
ENUMS = {
    "Action": ["allow", "block", "quarantine", "warn"],
    "ReasonCode": [
        "quarantined", "no_policy", "identity_denied", "identity_not_allowed",
        "trust_below_minimum", "arg_missing", "arg_constraint", "custom_validator",
    ],
    "EnforcementMode": ["enforce", "audit", "permissive"],
    "QuarantineOp": ["quarantine", "analyze", "terminate", "recover"],
    "IsolationLevel": ["full", "network", "filesystem", "custom"],
    "ForensicMode": ["none", "metadata", "full"],
    "QuarantineStatus": ["active", "analyzing", "terminated", "recovered"],
    "TrustControlOp": ["reset_trust"],
    "EnforcementOp": ["deny", "freeze", "thaw", "kill", "lift"],
}
TOPIC_VALUES = [
    "SyscallEventBatch", "DecisionBatch", "Violation", "QuarantineCommand",
    "RedzoneEvent", "PolicyDocument", "DeadLetter", "TrustControl", "EnforcementAction",
]


def _golden() -> dict[str, str]:
    return json.loads(GOLDEN.read_text())


def _raw(name: str) -> dict:
    return json.loads(schema_path(name).read_text())


# -- the schema files ----------------------------------------------------------


def test_schema_set_is_exactly_the_record_and_enum_types():
    assert set(schema_names()) == set(RECORDS) | set(ENUMS)
    for name in TOPIC_VALUES:
        assert name in schema_names()


@pytest.mark.parametrize("name", sorted(set(RECORDS) | set(ENUMS)))
def test_every_type_and_every_field_has_a_doc(name):
    raw = _raw(name)
    assert raw["namespace"] == NAMESPACE
    assert schema_path(name).name == f"{NAMESPACE}.{raw['name']}.avsc"
    assert raw.get("doc", "").strip(), f"{name} has no doc"
    for field in raw.get("fields", []):
        assert field.get("doc", "").strip(), f"{name}.{field['name']} has no doc"


@pytest.mark.parametrize("name", sorted(ENUMS))
def test_enum_symbols_are_pinned(name):
    # Avro writes an enum as its index: reordering symbols changes the wire.
    assert _raw(name)["symbols"] == ENUMS[name]


def _inline_named_types(schema, out):
    if isinstance(schema, dict):
        if schema.get("type") in ("record", "enum", "fixed"):
            out.append(schema["name"])
        for value in schema.values():
            _inline_named_types(value, out)
    elif isinstance(schema, list):
        for value in schema:
            _inline_named_types(value, out)
    return out


@pytest.mark.parametrize("name", sorted(set(RECORDS) | set(ENUMS)))
def test_each_file_defines_only_its_own_type(name):
    # Shared types are defined once, in their own file, and referenced by full name.
    assert _inline_named_types(_raw(name), []) == [name]


def test_shared_types_are_parsed_once():
    # Each user's table of named types holds the very objects parsed from
    # Identity's and Action's own files, not copies parsed again.
    identity = parsed_schema("Identity")["__named_schemas"][f"{NAMESPACE}.Identity"]
    action = parsed_schema("Action")
    for user in ("SyscallEvent", "Decision", "Violation", "QuarantineCommand"):
        assert parsed_schema(user)["__named_schemas"][f"{NAMESPACE}.Identity"] is identity
    for user in ("Decision", "TraceEntry", "Violation"):
        assert parsed_schema(user)["__named_schemas"][f"{NAMESPACE}.Action"] is action
    assert parsed_schema("Decision") is parsed_schema(f"{NAMESPACE}.Decision")


@pytest.mark.parametrize("name", sorted(set(RECORDS) | set(ENUMS)))
def test_standalone_schema_parses_with_the_reference_implementation(name):
    parsed = avro.schema.parse(schema_json(name))
    assert parsed.fullname == f"{NAMESPACE}.{name}"


# -- round trips and golden bytes -----------------------------------------------


@pytest.mark.parametrize("name", RECORD_SCHEMAS)
def test_round_trip(name):
    c = codec(name)
    record = RECORDS[name]
    assert c.problem(record) is None
    assert c.decode(c.encode(record)) == record


@pytest.mark.parametrize("name", RECORD_SCHEMAS)
def test_golden_bytes(name):
    expected = _golden()[name]
    got = codec(name).encode(RECORDS[name]).hex()
    assert got == expected, f"wire bytes of {name} changed; new hex:\n{got}"
    assert codec(name).decode(bytes.fromhex(expected)) == RECORDS[name]


@pytest.mark.parametrize("name", RECORD_SCHEMAS)
def test_reference_implementation_agrees_with_golden_bytes(name):
    schema = avro.schema.parse(schema_json(name))
    out = io.BytesIO()
    avro.io.DatumWriter(schema).write(RECORDS[name], avro.io.BinaryEncoder(out))
    assert out.getvalue().hex() == _golden()[name]
    back = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(out.getvalue())))
    assert back == RECORDS[name]


def test_defaults_fill_missing_optional_fields():
    event = {k: v for k, v in EVENT_MINIMAL.items() if k not in ("trust_vector", "execution_dna")}
    event["identity"] = {"id": "svc-x", "process_id": "p-1"}
    c = codec("SyscallEvent")
    assert c.problem(event) is None
    assert c.decode(c.encode(event)) == EVENT_MINIMAL
    command = {k: v for k, v in RECORDS["QuarantineCommand"].items()
               if k not in ("op", "isolation_syscalls", "trace", "reason_code", "event_id")}
    back = codec("QuarantineCommand").decode(codec("QuarantineCommand").encode(command))
    assert (back["op"], back["isolation_syscalls"], back["trace"], back["reason_code"], back["event_id"]) == (
        "quarantine", [], [], None, None)


# PolicyDocument as written before its signature fields existed (golden bytes of
# that schema): it must still be read, with the signature fields null.
POLICY_DOCUMENT_V1_HEX = (
    "18323032362d31312d32382e318001303030303030303030303030303030303030303030303030303030303030"
    "30303030303030303030303030303030303030303030303030303030303030303030647b2264656661756c745f"
    "616374696f6e223a2264656e79222c2276657273696f6e223a22323032362d31312d32382e31227d3632303236"
    "2d31312d32385431323a30303a30302e3030303030305a020a616c696365"
)


def test_policy_document_written_before_the_signature_fields_still_decodes():
    from streams.policy_topic import decode_policy

    old = bytes.fromhex(POLICY_DOCUMENT_V1_HEX)
    with pytest.raises(CodecError):
        codec("PolicyDocument").decode(old)  # the current schema alone cannot read it
    unsigned = dict(RECORDS["PolicyDocument"], signature_key_id=None, signed_at=None, signature=None)
    assert decode_policy(old) == unsigned
    assert decode_policy(codec("PolicyDocument").encode(RECORDS["PolicyDocument"])) == RECORDS["PolicyDocument"]
    with pytest.raises(CodecError, match="`PolicyDocument`"):
        decode_policy(old[:-3])  # neither shape: the current schema's error
    with pytest.raises(CodecError):
        decode_policy(old + b"\x00\x00")


# -- hypothesis ------------------------------------------------------------------

_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
_identity = st.fixed_dictionaries({
    "id": _text,
    "process_id": _text,
    "container_id": st.none() | _text,
    "tenant": st.none() | _text,
    "labels": st.dictionaries(_text, _text, max_size=3),
})
_event = st.fixed_dictionaries({
    "event_id": _text,
    "syscall": _text,
    "args": st.lists(_text, max_size=4),
    "identity": _identity,
    "trust_vector": st.none() | st.fixed_dictionaries({"score": st.floats(allow_nan=False)}),
    "execution_dna": st.none() | _text,
    "timestamp": _text,
})
_batch = st.fixed_dictionaries({
    "shim_id": _text,
    "seq": st.integers(-(2**63), 2**63 - 1),
    "events": st.lists(_event, min_size=1, max_size=5),
})


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(batch=_batch, schema_id=st.none() | st.integers(0, 2**32 - 1))
def test_hypothesis_round_trip_syscall_event_batch(batch, schema_id):
    c = codec("SyscallEventBatch", schema_id=schema_id)
    assert c.problem(batch) is None
    data = c.encode(batch)
    assert c.decode(data) == batch
    if schema_id is not None:
        assert data[:5] == b"\x00" + schema_id.to_bytes(4, "big")


@settings(max_examples=300)
@given(data=st.binary(max_size=200))
def test_arbitrary_bytes_decode_or_raise_codec_error(data):
    for name in ("SyscallEventBatch", "QuarantineCommand"):
        try:
            assert isinstance(codec(name).decode(data), dict)
        except CodecError:
            pass


def test_nan_and_infinities_survive():
    c = codec("TrustVector")
    assert math.isnan(c.decode(c.encode({"score": math.nan}))["score"])
    assert c.decode(c.encode({"score": -math.inf}))["score"] == -math.inf


# -- Confluent wire format ---------------------------------------------------------


def test_wire_format_header_and_round_trip():
    c = codec("Violation", schema_id=7)
    data = c.encode(RECORDS["Violation"])
    assert data[:5] == bytes([0, 0, 0, 0, 7])
    assert data[5:].hex() == _golden()["Violation"]
    assert c.decode(data) == RECORDS["Violation"]
    assert codec("Violation", schema_id=7) is c
    assert codec("Violation") is not c


def test_wire_format_large_schema_id_is_big_endian():
    data = codec("TrustVector", schema_id=0x01020304).encode({"score": 1.0})
    assert data[:5] == bytes([0, 1, 2, 3, 4])


def test_wire_format_wrong_schema_id():
    data = codec("Violation", schema_id=7).encode(RECORDS["Violation"])
    with pytest.raises(CodecError, match=r"`Violation`.*schema id is `7`, expected `8`"):
        codec("Violation", schema_id=8).decode(data)


def test_wire_format_bad_magic_byte():
    data = b"\x01" + codec("Violation", schema_id=7).encode(RECORDS["Violation"])[1:]
    with pytest.raises(CodecError, match=r"magic byte is `1`, expected `0`"):
        codec("Violation", schema_id=7).decode(data)


def test_wire_format_plain_avro_is_refused():
    with pytest.raises(CodecError, match="magic byte"):
        codec("PolicyDocument", schema_id=7).decode(codec("PolicyDocument").encode(RECORDS["PolicyDocument"]))


def test_wire_format_too_short_for_header():
    with pytest.raises(CodecError, match="shorter than the 5-byte wire format header"):
        codec("TrustVector", schema_id=1).decode(b"\x00\x00")


def test_plain_codec_refuses_wire_format_bytes():
    framed = codec("PolicyDocument", schema_id=3).encode(RECORDS["PolicyDocument"])
    with pytest.raises(CodecError, match="`PolicyDocument`"):
        codec("PolicyDocument").decode(framed)


@pytest.mark.parametrize("bad", [-1, 2**32, "7", 1.0, True])
def test_bad_schema_id(bad):
    with pytest.raises(CodecError, match="schema id"):
        codec("TrustVector", schema_id=bad)


# -- errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["SyscallEventBatch", "DecisionBatch", "QuarantineCommand", "DeadLetter"])
def test_every_truncation_raises_codec_error(name):
    data = codec(name).encode(RECORDS[name])
    for end in range(len(data)):
        with pytest.raises(CodecError, match=f"cannot decode `{name}`: the value is truncated") as info:
            codec(name).decode(data[:end])
        assert info.value.__cause__ is not None


def test_truncated_message_is_clear():
    data = codec("SyscallEventBatch").encode(RECORDS["SyscallEventBatch"])
    with pytest.raises(CodecError) as info:
        codec("SyscallEventBatch").decode(data[:-3])
    assert str(info.value) == "cannot decode `SyscallEventBatch`: the value is truncated"


def test_trailing_bytes():
    data = codec("TrustVector").encode({"score": 0.5}) + b"\x00"
    with pytest.raises(CodecError, match="1 trailing byte"):
        codec("TrustVector").decode(data)


def test_invalid_utf8():
    data = codec("PolicyDocument").encode(dict(RECORDS["PolicyDocument"], version="ab"))
    bad = data.replace(b"ab", b"\xff\xfe", 1)
    with pytest.raises(CodecError, match="not valid utf-8"):
        codec("PolicyDocument").decode(bad)


def test_enum_index_out_of_range():
    entry = {"event_id": "e", "syscall": "s", "args": None, "allowed": True, "action": "warn",
             "reason_code": None, "trust_score": None, "policy_version": None, "timestamp": "t"}
    data = codec("TraceEntry").encode(entry)
    assert data == bytes.fromhex("0265027300010600000002" "74")  # action: zigzag(3) at index 6
    bad = data[:6] + bytes([20]) + data[7:]  # zigzag(10): no such symbol
    with pytest.raises(CodecError, match="enum symbol or union branch index is out of range"):
        codec("TraceEntry").decode(bad)


def test_union_index_out_of_range():
    empty = codec("DecisionBatch").encode({"shim_id": "", "seq": 0, "partition": None, "decisions": []})
    assert empty == bytes([0, 0, 0, 0])  # "", 0, union branch 0 (null), no decisions
    with pytest.raises(CodecError, match="out of range"):
        codec("DecisionBatch").decode(bytes([0, 0, 8, 0]))  # union branch 4


def test_encode_missing_field_names_schema_and_field():
    event = copy.deepcopy(EVENT)
    del event["identity"]["process_id"]
    with pytest.raises(CodecError) as info:
        codec("SyscallEventBatch").encode({"shim_id": "s", "seq": 1, "events": [EVENT, event]})
    assert str(info.value) == "cannot encode `SyscallEventBatch`: `events[1].identity.process_id` is missing"
    assert info.value.__cause__ is not None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"event_id": 5}, "`event_id` must be a string, got `5`"),
        ({"action": "deny"}, "`action` must be one of `allow`, `block`, `quarantine`, `warn`, got `'deny'`"),
        ({"args": [1]}, "`args[0]` must be a string, got `1`"),
        ({"identity": None}, "`identity` must be a record, got `None`"),
    ],
)
def test_encode_wrong_type(change, message):
    with pytest.raises(CodecError) as info:
        codec("Decision").encode(dict(DECISION, **change))
    assert str(info.value) == f"cannot encode `Decision`: {message}"
    assert info.value.__cause__ is not None


def test_encode_not_a_mapping():
    with pytest.raises(CodecError, match="cannot encode `Decision`: the value must be a record"):
        codec("Decision").encode(["not", "a", "dict"])


@pytest.mark.parametrize(
    ("record", "message"),
    [
        (dict(EVENT, args="abc"), "`args` must be a list, got `'abc'`"),
        (dict(EVENT, extra=1), "`extra` is not a field of this record"),
        (dict(EVENT, trust_vector={"score": True}), "`trust_vector.score` must be a number, got `True`"),
        (dict(EVENT, identity=dict(IDENTITY, labels={"a": 1})), "`identity.labels['a']` must be a string, got `1`"),
        (dict(EVENT, identity=dict(IDENTITY, tenant=5)), "`identity.tenant` must be a string, got `5`"),
    ],
)
def test_check_is_stricter_than_encode(record, message):
    # fastavro would coerce or ignore these; check() refuses them.
    with pytest.raises(CodecError) as info:
        codec("SyscallEvent").check(record)
    assert str(info.value) == f"invalid `SyscallEvent` record: {message}"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"allowed": "yes"}, "`allowed` must be true or false, got `'yes'`"),
        ({"allowed": 1}, "`allowed` must be true or false, got `1`"),
        ({"trust_score": "0.5"}, "`trust_score` must be a number, got `'0.5'`"),
        ({"reason_code": "nope"}, "`reason_code` must be one of `quarantined`, `no_policy`, `identity_denied`, "
         "`identity_not_allowed`, `trust_below_minimum`, `arg_missing`, `arg_constraint`, `custom_validator`, "
         "got `'nope'`"),
    ],
)
def test_check_refuses_what_encode_would_coerce(change, message):
    assert codec("Decision").problem(dict(DECISION, **change)) == message


def test_check_integer_ranges():
    c = codec("DecisionBatch")
    batch = dict(RECORDS["DecisionBatch"])
    assert c.problem(dict(batch, partition=2**31)) == "`partition` must be a 32-bit integer, got `2147483648`"
    assert c.problem(dict(batch, seq=True)) == "`seq` must be a 64-bit integer, got `True`"
    assert c.problem(dict(batch, seq=1.5)) == "`seq` must be a 64-bit integer, got `1.5`"
    assert c.problem(dict(batch, seq=2**63 - 1)) is None


def test_unknown_schema():
    with pytest.raises(CodecError, match="unknown schema `Nope`"):
        codec("Nope")


def test_messages_are_lowercase_and_hide_internal_types():
    messages = []
    for call in (
        lambda: codec("Nope"),
        lambda: codec("TrustVector").decode(b""),
        lambda: codec("Decision").encode({}),
        lambda: codec("Violation", schema_id=1).decode(b"\x05xxxxxx"),
    ):
        with pytest.raises(CodecError) as info:
            call()
        messages.append(str(info.value))
    for message in messages:
        assert message[0].islower(), message
        assert "Error" not in message and "<class" not in message, message


# -- container files --------------------------------------------------------------------


def test_container_round_trip(tmp_path):
    path = tmp_path / "events.avro"
    events = [dict(EVENT, event_id=f"e-{i}") for i in range(50)] + [EVENT_MINIMAL]
    assert write_container(path, "SyscallEvent", events, compression="deflate") == 51
    assert list(iter_container(path)) == events
    assert list(iter_container(path, "SyscallEvent")) == events


def test_container_is_readable_by_the_reference_implementation(tmp_path):
    path = tmp_path / "events.avro"
    write_container(path, "SyscallEvent", [EVENT, EVENT_MINIMAL])
    with avro.datafile.DataFileReader(open(path, "rb"), avro.io.DatumReader()) as reader:
        assert list(reader) == [EVENT, EVENT_MINIMAL]


def test_container_of_another_schema_is_refused(tmp_path):
    path = tmp_path / "decisions.avro"
    write_container(path, "Decision", [DECISION])
    with pytest.raises(CodecError, match="holds `forgeone.trust.Decision` records, expected `forgeone.trust.SyscallEvent`"):
        list(iter_container(path, "SyscallEvent"))


def test_not_a_container_file(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(json.dumps(EVENT) + "\n")
    with pytest.raises(CodecError, match="not a readable avro container file") as info:
        list(iter_container(path))
    assert info.value.__cause__ is not None


def test_truncated_container_file(tmp_path):
    path = tmp_path / "events.avro"
    write_container(path, "SyscallEvent", [dict(EVENT, event_id=f"e-{i}") for i in range(20)])
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(CodecError):
        list(iter_container(path))


def test_container_bad_record_names_its_index(tmp_path):
    bad = dict(EVENT)
    del bad["syscall"]
    with pytest.raises(CodecError, match=r"record 2 .*`syscall` is missing"):
        write_container(tmp_path / "x.avro", "SyscallEvent", [EVENT, EVENT, bad])


# -- public surface ------------------------------------------------------------------------


def test_public_surface():
    assert sorted(codec_pkg.__all__) == sorted([
        "MAGIC", "NAMESPACE", "SCHEMA_DIR", "AvroCodec", "SchemaSet", "codec", "iter_container",
        "parsed_schema", "schema_json", "schema_names", "schema_path", "write_container",
    ])
    assert SCHEMA_DIR.is_dir()


if __name__ == "__main__" and sys.argv[1:] == ["--regen"]:
    GOLDEN.parent.mkdir(exist_ok=True)
    hexes = {name: codec(name).encode(RECORDS[name]).hex() for name in RECORD_SCHEMAS}
    GOLDEN.write_text(json.dumps(hexes, indent=2, sort_keys=True) + "\n")
    print(f"wrote {len(hexes)} golden values to {GOLDEN}")
