"""The schema-compiled codec path agrees with fastavro on every input.

`streams.codec._fast` compiles each schema into Python source; AvroCodec
uses it first and falls back to fastavro on anything unusual.  These tests
compare the compiled functions with fastavro directly: same bytes for every
valid record, same record for every valid value, and for odd inputs either
the same answer or a refusal (after which the codec asks fastavro).
"""

from __future__ import annotations

import io
import math

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.codec import codec, parsed_schema, schema_names
from streams.codec._fast import compile_codec, _read_long, _zz

PRIMITIVES = ("null", "boolean", "int", "long", "float", "double", "bytes", "string")
RECORDS = [n for n in schema_names() if parsed_schema(n)["type"] == "record"]
_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=8)


def strategy(schema, named):
    if isinstance(schema, str) and schema not in PRIMITIVES:
        return strategy(named[schema], named)
    if isinstance(schema, list):
        return st.one_of(*[strategy(b, named) for b in schema])
    kind = schema if isinstance(schema, str) else schema["type"]
    if kind in PRIMITIVES and isinstance(schema, dict):
        return strategy(kind, named)
    simple = {
        "null": st.none(),
        "boolean": st.booleans(),
        "int": st.integers(-(2**31), 2**31 - 1),
        "long": st.integers(-(2**63), 2**63 - 1),
        "double": st.floats(allow_nan=False),
        "float": st.floats(allow_nan=False, width=32),
        "bytes": st.binary(max_size=8),
        "string": _text,
    }
    return simple[kind] if kind in simple else _complex(schema, kind, named)


def _complex(schema, kind, named):
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(strategy(schema["items"], named), max_size=3)
    if kind == "map":
        return st.dictionaries(_text, strategy(schema["values"], named), max_size=3)
    return st.fixed_dictionaries({f["name"]: strategy(f["type"], named) for f in schema["fields"]})


def records(name):
    schema = parsed_schema(name)
    named = dict(schema["__named_schemas"])
    return strategy(schema, named)


def reference_encode(name, record):
    out = io.BytesIO()
    fastavro.schemaless_writer(out, parsed_schema(name), record)
    return out.getvalue()


def reference_decode(name, data):
    fo = io.BytesIO(data)
    rec = fastavro.schemaless_reader(fo, parsed_schema(name), None)
    if fo.tell() != len(data):
        raise ValueError("trailing bytes")
    return rec


def test_every_schema_compiles():
    for name in RECORDS:
        assert compile_codec(parsed_schema(name)) is not None, name


@pytest.mark.parametrize("name", RECORDS)
@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
          deadline=None)
@given(data=st.data())
def test_same_bytes_and_records_as_fastavro(name, data):
    encode, decode = compile_codec(parsed_schema(name))
    record = data.draw(records(name))
    expected = reference_encode(name, record)
    assert encode(record) == expected
    assert decode(expected, 0) == reference_decode(name, expected)
    assert codec(name).decode(expected) == reference_decode(name, expected)


@pytest.mark.parametrize("name", ["SyscallEventBatch", "DecisionBatch", "QuarantineCommand", "DeadLetter"])
@settings(max_examples=300, deadline=None)
@given(blob=st.binary(max_size=120))
def test_arbitrary_bytes_same_answer_or_refused(name, blob):
    _, decode = compile_codec(parsed_schema(name))
    try:
        fast = decode(blob, 0)
    except Exception:
        return  # the codec falls back to fastavro
    assert fast == reference_decode(name, blob)


@pytest.mark.parametrize("value", [0, 1, -1, 63, -64, 64, 2**31, -(2**31), 2**62, 2**63 - 1, -(2**63)])
def test_longs_round_trip(value):
    assert _read_long(_zz(value), 0) == (value, len(_zz(value)))
    out = io.BytesIO()
    fastavro.schemaless_writer(out, "long", value)
    assert _zz(value) == out.getvalue()


ODD = [
    ("TrustVector", {"score": 1}),  # int where a double belongs: the same 8 bytes
    ("TrustVector", {"score": True}),
    ("TrustVector", {"score": "0.5"}),  # fastavro converts it; the compiled path refuses
    ("Decision", {"allowed": "yes"}),
    ("Decision", {"args": ("a", "b")}),
    ("DecisionBatch", {"seq": True}),
    ("DecisionBatch", {"seq": 1.5}),
    ("DecisionBatch", {"partition": 2**40}),  # outside int32 inside a union: fastavro refuses
    ("Identity", {"labels": {"a": "b"}, "tenant": None}),
    ("Identity", {"extra": 1}),  # unknown fields are ignored by both
]


@pytest.mark.parametrize(("name", "change"), ODD)
def test_codec_matches_fastavro_on_odd_values(name, change):
    base = {
        "TrustVector": {"score": 0.5},
        "Decision": {"event_id": "e", "syscall": "s", "args": ["a"], "identity": {"id": "i", "process_id": "p"},
                     "allowed": True, "action": "allow", "reason_code": None, "reason": "r", "trust_score": 0.5,
                     "policy_version": "v", "mode": "enforce", "enforced": True, "timestamp": "t",
                     "event_timestamp": "t"},
        "DecisionBatch": {"shim_id": "s", "seq": 1, "partition": 1, "decisions": []},
        "Identity": {"id": "i", "process_id": "p"},
    }[name]
    record = dict(base, **change)
    try:
        expected = reference_encode(name, record)
    except Exception:
        with pytest.raises(Exception):
            codec(name).encode(record)
        return
    assert codec(name).encode(record) == expected


def test_nan_bytes_match():
    assert codec("TrustVector").encode({"score": math.nan}) == reference_encode("TrustVector", {"score": math.nan})
