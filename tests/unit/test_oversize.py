"""Bounded forensic traces (streams/engine.py) and records made to fit
(streams/oversize.py): pure, no Kafka."""

from __future__ import annotations

from collections import deque

from streams.codec.avro import codec
from streams.engine import (
    TRACE_ARG_BYTES,
    TRACE_BYTES,
    TRACE_ENTRY_BYTES,
    TrustEngine,
    forensic_trace,
)
from streams.oversize import cap_strings, cap_text, fit, truncated
from streams.policy.model import ForensicMode
from streams.redzone.view import LocalRedzoneView
from tests.conftest import NOW, make_ctx, make_policy


def quarantining_engine(**policy) -> TrustEngine:
    cp = make_policy({"read": {"arg_constraints": {0: "/tmp/.*"}, **policy}},
                     trust_thresholds={"quarantine": 0.5})
    return TrustEngine(cp, LocalRedzoneView(), trust={})


def test_cap_text_keeps_short_text_and_marks_what_it_cut():
    assert cap_text("short", 64) == "short"
    s = "é" * 1000  # 2,000 bytes of UTF-8
    capped = cap_text(s, 100)
    assert capped.endswith("...[truncated, 2000 bytes]") and len(capped.encode()) <= 100
    assert capped.startswith("éé")  # cut on a character boundary
    assert cap_text("x" * 100, 100) == "x" * 100


def test_cap_strings_bounds_each_and_all():
    out = cap_strings(["a" * 50] * 10, 20, 100)
    assert all(len(a.encode()) <= 27 for a in out[:-1])
    assert out[-1].endswith("more left out]") and len(out) < 10


def test_a_quarantine_trace_with_huge_arguments_stays_bounded_and_encodes():
    engine = quarantining_engine()
    huge = "/etc/" + "A" * 900_000
    for i in range(70):
        out = engine.decide(make_ctx("read", [huge, "B" * 5000] + ["c" * 900] * 40, event_id=f"e-{i}",
                                     process=f"p-{i}"), NOW)
    cmd = out.quarantine
    assert cmd is not None and len(cmd["trace"]) > 1
    assert cmd["trace"][-1]["event_id"] == "e-69"  # the newest kept; the oldest left out first
    for entry in cmd["trace"]:
        assert entry["args"][0].endswith("...[truncated, 900005 bytes]")
        assert all(len(a.encode()) <= TRACE_ARG_BYTES for a in entry["args"])
        assert sum(len(a.encode()) for a in entry["args"]) <= TRACE_ENTRY_BYTES + 64
        assert entry["args"][-1].endswith("more left out]")
    trace_bytes = len(codec("TraceEntry").encode(cmd["trace"][0])) * len(cmd["trace"])
    assert trace_bytes <= TRACE_BYTES * 1.1
    # the decision itself is not cut here (the outputs producer makes it fit)
    assert out.decision["args"][0] == huge


def test_metadata_traces_carry_no_arguments_and_none_traces_nothing():
    history = deque([{"event_id": "e" * 5000, "syscall": "read", "args": ["x"], "allowed": True,
                      "action": "allow", "reason_code": None, "trust_score": 0.7, "policy_version": "v1",
                      "timestamp": NOW}])
    [entry] = forensic_trace(history, ForensicMode.METADATA)
    assert entry["args"] is None and len(entry["event_id"].encode()) <= TRACE_ARG_BYTES
    assert forensic_trace(history, ForensicMode.NONE) == []


def test_fit_leaves_a_record_that_fits_alone():
    enc = codec("TrustControl").encode
    rec = {"command_id": "c", "op": "reset_trust", "identity_id": "svc-a", "actor": "x", "reason": "r",
           "timestamp": NOW}
    pieces, how, unfit = fit(rec, enc, 10_000)
    assert (pieces, how, unfit) == ([enc(rec)], "as_is", [])


def test_truncated_never_touches_short_values_and_cuts_bytes():
    rec = {"action": "block", "value": b"\x00" * 500, "args": ["a" * 300, "b"], "n": 3, "none": None}
    out = truncated(rec, 64)
    assert out["action"] == "block" and out["value"] == b"\x00" * 64 and out["n"] == 3 and out["none"] is None
    assert out["args"][0].endswith("bytes]") and out["args"][1] == "b"


def test_what_cannot_fit_is_returned_for_the_caller_to_dead_letter():
    enc = codec("TrustControl").encode
    rec = {"command_id": "c", "op": "reset_trust", "identity_id": "svc-a", "actor": "x", "reason": "r",
           "timestamp": NOW}
    pieces, how, unfit = fit(rec, enc, 5)
    assert pieces == [] and unfit == [enc(rec)]
