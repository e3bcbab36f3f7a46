"""Properties over arbitrary inputs: trust bounds, determinism, refusals, round6."""

from __future__ import annotations

import io
import json
import math
import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from streams.engine import TrustEngine
from streams.errors import PolicyError, PolicyVersionConflict
from streams.events import context_from_record
from streams.policy.loader import load_policy
from streams.policy.trust import round6
from streams.redzone.memory import InMemoryRedzone
from streams.replay import replay

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
NOW = "2026-11-28T12:00:00.000000Z"

SYSCALLS = ["open_file", "openat", "connect", "socket", "read", "ptrace", "mount", "exec_x"]
IDENTITIES = ["svc-a", "svc-b", "batch-1", "admin"]
unit = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)
adjust = st.floats(min_value=-1.0, max_value=1.0, allow_nan=False)


@st.composite
def policy_docs(draw):
    ceiling = draw(unit)
    baseline = draw(st.floats(min_value=0.0, max_value=ceiling))
    policies = {}
    for key in draw(st.lists(st.sampled_from(SYSCALLS + ["open*", "*"]), unique=True, max_size=5)):
        body = {}
        if draw(st.booleans()):
            body["min_trust_score"] = draw(unit)
        if draw(st.booleans()):
            body["allowed_identities"] = draw(st.lists(st.sampled_from(["svc-*", "admin", "batch-?"]), max_size=2))
        if draw(st.booleans()):
            body["violation_action"] = draw(st.sampled_from(["block", "quarantine", "warn", "allow"]))
        if draw(st.booleans()):
            body["enforcement_mode"] = draw(st.sampled_from(["enforce", "audit", "permissive"]))
        if draw(st.booleans()):
            body["isolation_level"] = draw(st.sampled_from(["full", "network", "filesystem"]))
        if draw(st.booleans()):
            body["arg_constraints"] = {0: "/tmp/.*"}
        policies[key] = body
    doc = {
        "version": "prop-1",
        "default_action": draw(st.sampled_from(["deny", "allow"])),
        "enforcement_mode": draw(st.sampled_from(["enforce", "audit", "permissive"])),
        "trust_model": {"baseline": baseline, "ceiling": ceiling,
                        "violation_penalty": draw(unit), "recovery_rate": draw(unit)},
        "identity_rules": draw(st.lists(st.fixed_dictionaries({
            "identity_pattern": st.sampled_from(["svc-*", "*", "admin", "batch-1"]),
            "trust_adjustment": adjust}), max_size=3)),
        "policies": policies,
    }
    if draw(st.booleans()):
        doc["trust_thresholds"] = {"quarantine": draw(unit)}
    return doc


@st.composite
def event_records(draw, n_max=25):
    out = []
    for i in range(draw(st.integers(min_value=1, max_value=n_max))):
        ident = draw(st.sampled_from(IDENTITIES))
        rec = {
            "event_id": f"e-{i}", "syscall": draw(st.sampled_from(SYSCALLS)),
            "args": draw(st.lists(st.sampled_from(["/tmp/x", "/etc/passwd", "a;b", "../x"]), max_size=2)),
            "identity": {"id": ident, "process_id": f"{ident}-{draw(st.integers(0, 1))}"},
            "timestamp": f"2026-11-28T12:00:{i % 60:02d}.000000Z",
        }
        if draw(st.booleans()):
            rec["trust_vector"] = {"score": draw(unit)}
        out.append(rec)
    return out


@SETTINGS
@given(doc=policy_docs(), events=event_records())
def test_trust_always_stays_in_unit_interval(doc, events):
    engine = TrustEngine(load_policy(doc), InMemoryRedzone())
    for rec in events:
        o = engine.decide(context_from_record(rec), rec["timestamp"])
        assert 0.0 <= o.decision["trust_score"] <= 1.0
        assert o.result.trust_after is None or 0.0 <= o.result.trust_after <= 1.0
        if o.violation is not None:
            assert 0.0 <= o.violation["trust_after"] <= 1.0
        assert all(0.0 <= t <= 1.0 for t in engine.trust.values())
        assert all(t == round(t, 6) for t in engine.trust.values())
        assert o.decision["trust_score"] == round(o.decision["trust_score"], 6)


def _replay_bytes(doc: dict, lines: list[str]) -> tuple[bytes, tuple]:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "events.jsonl"
        path.write_text("".join(line + "\n" for line in lines))
        out = io.StringIO()
        s = replay(load_policy(doc), path, out)
        return out.getvalue().encode(), (s.events, s.decided, s.bad, s.violations, s.quarantines, s.by_reason)


@SETTINGS
@given(doc=policy_docs(), events=event_records(), junk=st.lists(st.sampled_from(["{", "[]", '{"event_id": 1}']),
                                                                 max_size=2))
def test_replay_is_deterministic(doc, events, junk):
    lines = [json.dumps(r) for r in events] + junk
    first = _replay_bytes(doc, lines)
    second = _replay_bytes(json.loads(json.dumps(doc)), lines)
    assert first == second
    assert first[1][2] == len(junk)


BREAKAGES = [
    ("version", lambda d: d.pop("version")),
    ("default_action", lambda d: d.update(default_action="maybe")),
    ("trust_thresholds.quarantine", lambda d: d.update(trust_thresholds={"quarantine": 1.5})),
    ("trust_model.baseline", lambda d: d["trust_model"].update(baseline="high")),
    ("policies.zz1.arg_constraints.0", lambda d: d["policies"].update(zz1={"arg_constraints": {0: "(("}})),
    ("policies.zz2.custom_validator", lambda d: d["policies"].update(zz2={"custom_validator": "nope"})),
    ("policies.zz3.violation_action", lambda d: d["policies"].update(zz3={"violation_action": "explode"})),
    ("surprise", lambda d: d.update(surprise=1)),
]


@SETTINGS
@given(doc=policy_docs(), breaks=st.lists(st.sampled_from(BREAKAGES), min_size=1, max_size=4,
                                           unique_by=lambda b: b[0]))
def test_refused_document_never_changes_the_running_policy(doc, breaks):
    from streams.policy.history import PolicyHistory

    history = PolicyHistory()
    running = history.submit(doc, NOW)
    engine = TrustEngine(running, InMemoryRedzone())
    bad = json.loads(json.dumps(doc))
    bad["version"] = "prop-2"
    for _, brk in breaks:
        brk(bad)
    with pytest.raises(PolicyError) as info:
        history.submit(bad, "2026-11-28T13:00:00.000000Z")
    assert {p for p, _ in breaks} <= {p for p, _ in info.value.issues}
    assert history.current is running
    assert [v.version for v in history.versions()] == ["prop-1"]
    with pytest.raises(PolicyError):
        engine.use_policy(load_policy(bad))
    assert engine.policy is running


@SETTINGS
@given(doc=policy_docs())
def test_same_version_with_other_content_is_refused(doc):
    from streams.policy.history import PolicyHistory

    history = PolicyHistory()
    running = history.submit(doc, NOW)
    assert history.submit(json.loads(json.dumps(doc)), "later") is running  # same content: no-op
    changed = json.loads(json.dumps(doc))
    changed["enforcement_mode"] = "audit" if doc["enforcement_mode"] != "audit" else "enforce"
    with pytest.raises(PolicyVersionConflict):
        history.submit(changed, "later")
    assert history.current is running
    assert len(history.versions()) == 1
    v = history.versions()[0]
    assert v.version == "prop-1" and v.digest == running.digest and v.effective_at == NOW


def test_engine_policy_untouched_when_load_policy_raises():
    good = load_policy({"version": "v1", "policies": {"read": {}}})
    engine = TrustEngine(good, InMemoryRedzone())
    with pytest.raises(PolicyError):
        engine.use_policy(load_policy({"version": "v2", "policies": {"read": {"min_trust_score": 7}}}))
    assert engine.policy is good


# --- round6 ---------------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(x=st.floats(min_value=0.0, max_value=1.0, allow_nan=False))
@example(0.0078125)  # exactly n + 0.5 millionths: round() rounds half to even
@example(0.5499999999999999)
@example(0.19999999999999998)
@example(1.0)
@example(5e-324)
def test_round6_equals_round_in_unit_interval(x):
    assert round6(x) == round(x, 6)


@st.composite
def near_ties(draw):
    n = draw(st.integers(min_value=0, max_value=999_999))
    x = (n + 0.5) / 1e6
    for _ in range(draw(st.integers(min_value=-8, max_value=8)) % 17):
        x = math.nextafter(x, draw(st.sampled_from([0.0, 1.0])))
    return x


@settings(max_examples=300, deadline=None)
@given(x=near_ties())
def test_round6_equals_round_near_ties(x):
    assume(0.0 <= x <= 1.0)
    assert round6(x) == round(x, 6)


@settings(max_examples=500, deadline=None)
@given(n=st.integers(min_value=0, max_value=1_000_000),
       frac=st.sampled_from([0.4999989, 0.499999, 0.4999995, 0.5000005, 0.500001, 0.5000011]))
def test_round6_equals_round_at_window_edges(n, frac):
    x = (n + frac) / 1e6
    assume(x <= 1.0)
    assert round6(x) == round(x, 6)


def test_round6_equals_round_on_many_seeded_samples():
    """A wide deterministic sweep, cheaper than hypothesis per value."""
    rng = random.Random(20261128)
    bad = [x for x in (rng.random() for _ in range(100_000)) if round6(x) != round(x, 6)]
    for _ in range(20_000):
        x = (rng.randrange(1_000_000) + 0.5) / 1e6
        for _ in range(5):
            up, down = math.nextafter(x, 1.0), math.nextafter(x, 0.0)
            bad += [v for v in (x, up, down) if round6(v) != round(v, 6)]
            x = up if rng.random() < 0.5 else down
    assert not bad, bad[:10]
