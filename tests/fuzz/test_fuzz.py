"""Fuzzing with hypothesis: no exception but the project's own escapes the event
decoder, the policy loader or the operator API (tests/fuzz/targets.py).

Examples per test: TRUST_FUZZ_EXAMPLES (default 300, a few seconds each);
`TRUST_FUZZ_EXAMPLES=20000 pytest tests/fuzz` is the long run whose figures
are in docs/reliability.md.  Raw bytes, structured data shaped like the real
input, and valid inputs with one part replaced by anything.
"""

from __future__ import annotations

import copy
import json
import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.codec.avro import codec
from tests.faults.workload import EXAMPLE_POLICY, full_event, strace_events
from tests.fuzz import targets

EXAMPLES = int(os.environ.get("TRUST_FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])

# Anything JSON or YAML can hold (and a little more: bytes, odd floats).
scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
           | st.text(max_size=40) | st.binary(max_size=20))
anything = st.recursive(scalars, lambda inner: st.lists(inner, max_size=5)
                        | st.dictionaries(st.text(max_size=12) | st.integers(), inner, max_size=5), max_leaves=30)

json_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40))
json_anything = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=5)
                             | st.dictionaries(st.text(max_size=12), inner, max_size=5), max_leaves=30)

EVENTS = [full_event(e) for e in strace_events()[:50]]
BATCH = codec("SyscallEventBatch")
POLICY_DOC = __import__("yaml").safe_load(EXAMPLE_POLICY.read_text())


def paths(doc, prefix=()):
    """Every path (tuple of keys/indexes) into a nested document."""
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from paths(v, prefix + (i,))


def replaced(doc, path, value):
    """`doc` with the value at `path` replaced (or the whole doc when the path is empty)."""
    if not path:
        return value
    doc = copy.deepcopy(doc)
    node = doc
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return doc


EVENT_PATHS = list(paths(EVENTS[0]))
POLICY_PATHS = list(paths(POLICY_DOC))


# -- the event decoder ---------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=2048))
def test_event_decoder_on_raw_bytes(data):
    targets.event_bytes(data)


@FUZZ
@given(st.sampled_from(range(len(EVENTS))), st.binary(max_size=64), st.integers(0, 400))
def test_event_decoder_on_valid_batches_with_bytes_spliced_in(i, junk, at):
    value = BATCH.encode({"shim_id": "s", "seq": 1, "events": EVENTS[i:i + 3]})
    at = min(at, len(value))
    targets.event_bytes(value[:at] + junk + value[at:])
    targets.event_bytes(value[:at])


@FUZZ
@given(anything)
def test_event_record_on_any_data(rec):
    targets.event_record(rec)


@FUZZ
@given(st.sampled_from(EVENT_PATHS), anything)
def test_event_record_with_one_field_replaced_by_anything(path, value):
    targets.event_record(replaced(EVENTS[0], path, value))


@FUZZ
@given(st.text(max_size=40), st.text(max_size=40), st.lists(st.text(max_size=20), max_size=4),
       st.text(max_size=40), st.floats() | st.none())
def test_event_round_trip_through_avro_then_validated(event_id, syscall, args, timestamp, score):
    e = dict(EVENTS[0], event_id=event_id, syscall=syscall, args=args, timestamp=timestamp,
             trust_vector=None if score is None else {"score": score})
    try:
        value = BATCH.encode({"shim_id": "s", "seq": 0, "events": [e]})
    except Exception as exc:  # encoding what the shim would refuse is not the target
        assert type(exc).__name__ == "CodecError", exc
        return
    targets.event_bytes(value)


# -- the policy loader ---------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=1024) | st.text(max_size=1024))
def test_policy_loader_on_raw_text(source):
    targets.policy_source(source)


@FUZZ
@given(anything)
def test_policy_loader_on_any_data(doc):
    targets.policy_source(doc)


@FUZZ
@given(st.sampled_from(POLICY_PATHS), anything)
def test_policy_loader_with_one_field_replaced_by_anything(path, value):
    targets.policy_source(replaced(POLICY_DOC, path, value))


@FUZZ
@given(st.sampled_from(POLICY_PATHS), anything)
def test_policy_loader_on_the_same_as_yaml_and_json_text(path, value):
    import yaml

    doc = replaced(POLICY_DOC, path, value)
    try:
        text = json.dumps(doc)
    except (TypeError, ValueError):
        text = None
    if text is not None:
        targets.policy_source(text)
    try:
        targets.policy_source(yaml.safe_dump(doc))
    except yaml.YAMLError:
        pass


@settings(FUZZ, max_examples=min(EXAMPLES, 24))  # deep YAML is slow to parse: few, chosen depths
@given(st.sampled_from([1, 2, 50, 900, 1100, 3000]), st.sampled_from(["[", "{\"a\":", "- ", "a: "]))
def test_policy_loader_on_deep_nesting(depth, opener):
    closer = {"[": "]", "{\"a\":": "}", "- ": "", "a: ": ""}[opener]
    text = opener * depth + "1" + closer * depth
    targets.policy_source(text)
    targets.policy_source("\n".join(" " * i + f"k{i}:" for i in range(depth)))


# -- the operator API ------------------------------------------------------------------------

API = targets.make_api()
header_values = st.text(max_size=60) | st.sampled_from(
    [f"Bearer {targets.TOKEN}", "Bearer", "Bearer  ", "bearer " + targets.TOKEN, "Basic eDp5"])
headers = st.dictionaries(st.sampled_from(["Authorization", "authorization", "Content-Type", "X-Other"])
                          | st.text(max_size=10), header_values, max_size=3)
bodies = (st.binary(max_size=256) | st.builds(lambda d: json.dumps(d).encode(), json_anything)
          | st.builds(lambda r, a: json.dumps({"reason": r, "actor": a}).encode(), json_anything, json_anything)
          | st.just(b"x" * (64 * 1024 + 1)))
parts = st.text(max_size=80) | st.sampled_from(["p-1", "svc-a", "", "..", "%00", "p-1/../p-2"])


@FUZZ
@given(st.sampled_from(targets.HANDLERS), parts, st.dictionaries(st.text(max_size=10), st.text(max_size=30),
                                                                   max_size=3), headers, bodies, st.text(max_size=20))
def test_operator_api_on_any_request(handler, part, query, hdrs, body, client):
    status = targets.http_request(API, handler, part, query, hdrs, body, client)
    assert 200 <= status < 600
