"""The decide agent's handler, without a broker: bytes in, records out."""

from __future__ import annotations


import pytest

from streams.agents.decide import BatchDecider, Source
from streams.codec.avro import codec
from streams.engine import TrustEngine
from streams.policy import load_policy
from streams.redzone.view import LocalRedzoneView

POLICY = {
    "version": "t-1",
    "trust_thresholds": {"quarantine": 0.5},
    "trust_model": {"baseline": 0.7, "violation_penalty": 0.15, "recovery_rate": 0.1},
    "policies": {
        "read": {"min_trust_score": 0.3},
        "ptrace": {"isolation_level": "network"},
    },
}
SRC = Source("trust.syscall-events", 3, 42)


def event(i: int, syscall: str = "read", identity: str = "svc-a", pid: str = "p-1", **extra) -> dict:
    rec = {"event_id": f"e-{i}", "syscall": syscall, "args": ["x"],
           "identity": {"id": identity, "process_id": pid, "container_id": None, "tenant": None, "labels": {}},
           "trust_vector": None, "execution_dna": None, "timestamp": f"2026-11-28T12:00:{i:02d}.000000Z"}
    rec.update(extra)
    return rec


def batch(events: list[dict], seq: int = 1, shim: str = "shim-1") -> bytes:
    return codec("SyscallEventBatch").encode({"shim_id": shim, "seq": seq, "events": events})


@pytest.fixture
def decider():
    engine = TrustEngine(load_policy(POLICY), LocalRedzoneView(), trust={})
    return BatchDecider(engine, {}, clock=lambda: "2026-11-28T13:00:00.000000Z")


def decoded(emits, kind):
    schema = {"decisions": "DecisionBatch", "violations": "Violation", "quarantine": "QuarantineCommand",
              "dlq": "DeadLetter"}[kind]
    return [codec(schema).decode(e.value) for e in emits if e.kind == kind]


def test_one_decision_batch_per_input_batch_in_event_order(decider):
    emits = decider.handle(b"svc-a", batch([event(1), event(2), event(3)]), SRC)
    [out] = decoded(emits, "decisions")
    assert [d["event_id"] for d in out["decisions"]] == ["e-1", "e-2", "e-3"]
    assert out["shim_id"] == "shim-1" and out["seq"] == 1 and out["partition"] == 3
    assert [d["trust_score"] for d in out["decisions"]] == [0.7, 0.73, 0.757]


def test_undecodable_message_goes_to_dlq_with_original_bytes(decider):
    emits = decider.handle(b"svc-a", b"\x00garbage", SRC)
    [dead] = decoded(emits, "dlq")
    assert dead["value"] == b"\x00garbage"
    assert (dead["topic"], dead["partition"], dead["offset"]) == ("trust.syscall-events", 3, 42)
    assert dead["error_code"] == "undecodable" and dead["reason"]


def test_invalid_event_in_a_batch_is_dead_lettered_and_the_rest_decided(decider):
    bad = event(2)
    bad["identity"]["process_id"] = ""
    value = batch([event(1), bad, event(3)])
    emits = decider.handle(b"svc-a", value, SRC)
    [dead] = decoded(emits, "dlq")
    assert dead["event_index"] == 1 and "process_id" in dead["reason"] and dead["value"] == value
    [out] = decoded(emits, "decisions")
    assert [d["event_id"] for d in out["decisions"]] == ["e-1", "e-3"]


def test_event_of_another_identity_than_the_key_is_dead_lettered(decider):
    emits = decider.handle(b"svc-a", batch([event(1, identity="svc-b")]), SRC)
    [dead] = decoded(emits, "dlq")
    assert "differs from the batch key" in dead["reason"]
    assert decoded(emits, "decisions") == []


def test_violation_and_quarantine_emitted_and_applied_locally_at_once(decider):
    # two violations: 0.7 -> 0.55 (block) -> 0.4 < 0.5 (quarantine)
    emits = decider.handle(b"svc-a", batch([event(1, "mount"), event(2, "mount"), event(3, "read")]), SRC)
    violations = decoded(emits, "violations")
    assert [v["action"] for v in violations] == ["block", "quarantine", "block"]
    [cmd] = decoded(emits, "quarantine")
    assert cmd["process_id"] == "p-1" and cmd["isolation_level"] == "full"
    assert [e.key for e in emits if e.kind == "quarantine"] == [b"p-1"]
    [out] = decoded(emits, "decisions")
    assert out["decisions"][2]["reason_code"] == "quarantined"


def test_redelivered_batch_gives_same_decisions_and_no_double_penalty(decider):
    value = batch([event(1, "mount"), event(2, "read")], seq=7)
    first = decoded(decider.handle(b"svc-a", value, SRC), "decisions")
    trust_after_first = decider.state["svc-a"]["t"]
    again = decoded(decider.handle(b"svc-a", value, SRC), "decisions")
    strip = lambda batches: [(d["event_id"], d["trust_score"], d["action"]) for d in batches[0]["decisions"]]
    assert strip(first) == strip(again)
    assert decider.state["svc-a"]["t"] == trust_after_first


def test_older_batch_redelivered_changes_no_trust(decider):
    decider.handle(b"svc-a", batch([event(1, "mount")], seq=1), SRC)
    decider.handle(b"svc-a", batch([event(2, "read")], seq=2), SRC)
    t = decider.state["svc-a"]["t"]
    decider.handle(b"svc-a", batch([event(1, "mount")], seq=1), SRC)
    assert decider.state["svc-a"]["t"] == t


def test_redelivered_quarantining_batch_makes_no_second_command(decider):
    """The process is isolated by then: the replayed events are blocked as
    quarantined and no new command (hence no second redzone entry) appears."""
    evs = [event(1, "mount"), event(2, "mount")]
    first = decoded(decider.handle(b"svc-a", batch(evs, seq=1), SRC), "quarantine")
    again = decider.handle(b"svc-a", batch(evs, seq=1), SRC)
    assert len(first) == 1
    assert decoded(again, "quarantine") == []
    assert {d["reason_code"] for d in decoded(again, "decisions")[0]["decisions"]} == {"quarantined"}


# -- trust control (recovery resets trust in the engine) -------------------------

CONTROL_SRC = Source("trust.control", 3, 7)


def control(command_id: str = "c-1", identity: str = "svc-a") -> bytes:
    return codec("TrustControl").encode({
        "command_id": command_id, "op": "reset_trust", "identity_id": identity,
        "reason": "process `p-1` recovered by operator:alice", "actor": "operator:alice",
        "timestamp": "2026-11-28T13:00:00.000000Z"})


def trust_scores(emits) -> list[float]:
    return [d["trust_score"] for d in decoded(emits, "decisions")[0]["decisions"]]


def test_reset_sets_trust_to_the_baseline_and_the_next_decision_starts_there(decider):
    decider.handle(b"svc-a", batch([event(1, "mount"), event(2, "mount")], seq=1), SRC)
    assert decider.state["svc-a"]["t"] == 0.4
    assert decider.handle_control(b"svc-a", control("c-1"), CONTROL_SRC) == []
    assert decider.state["svc-a"]["t"] == 0.7 and decider.state["svc-a"]["c"] == "c-1"
    later = batch([event(3, pid="p-2"), event(4, pid="p-2")], seq=2)  # p-1 itself is still isolated here
    assert trust_scores(decider.handle(b"svc-a", later, SRC)) == [0.7, 0.73]
    assert decider.metrics.controls == {"applied": 1}


def test_redelivered_reset_after_later_events_does_not_reset_again(decider):
    decider.handle(b"svc-a", batch([event(1, "mount")], seq=1), SRC)
    decider.handle_control(b"svc-a", control("c-1"), CONTROL_SRC)
    decider.handle(b"svc-a", batch([event(2, "mount")], seq=2), SRC)  # 0.7 -> 0.55
    decider.handle_control(b"svc-a", control("c-1"), CONTROL_SRC)
    assert decider.state["svc-a"]["t"] == 0.55 and decider.state["svc-a"]["c"] == "c-1"
    assert decider.metrics.controls == {"applied": 1, "duplicate": 1}
    decider.handle_control(b"svc-a", control("c-2"), CONTROL_SRC)  # a new reset applies
    assert decider.state["svc-a"]["t"] == 0.7


def test_reset_is_a_barrier_for_a_batch_redelivered_after_it(decider):
    """A batch applied before the reset and redelivered after it never changes trust again."""
    value = batch([event(1, "mount"), event(2, "mount")], seq=5)
    decider.handle(b"svc-a", value, SRC)
    decider.handle_control(b"svc-a", control("c-1"), CONTROL_SRC)
    again = decider.handle(b"svc-a", value, SRC)
    assert trust_scores(again) == [0.7, 0.7]  # decided from the reset trust...
    assert decider.state["svc-a"]["t"] == 0.7  # ...without penalising twice
    assert decider.state["svc-a"]["c"] == "c-1"  # the applied id survives later batches


def test_reset_of_an_unseen_identity_starts_it_at_the_baseline(decider):
    decider.handle_control(b"svc-new", control("c-9", "svc-new"), CONTROL_SRC)
    assert decider.state["svc-new"]["t"] == 0.7
    assert trust_scores(decider.handle(b"svc-new", batch([event(1, identity="svc-new")]), SRC)) == [0.7]


def test_reset_uses_the_running_policy_baseline(decider):
    decider.handle(b"svc-a", batch([event(1, "mount")]), SRC)
    decider.engine.use_policy(load_policy(dict(POLICY, version="t-2", trust_model={"baseline": 0.9})))
    decider.handle_control(b"svc-a", control(), CONTROL_SRC)
    assert decider.state["svc-a"]["t"] == 0.9


def test_bad_control_messages_are_dead_lettered_and_change_nothing(decider):
    decider.handle(b"svc-a", batch([event(1, "mount")]), SRC)
    before = dict(decider.state["svc-a"])
    [dead] = decoded(decider.handle_control(b"svc-a", b"\x05junk", CONTROL_SRC), "dlq")
    assert dead["error_code"] == "undecodable" and dead["topic"] == "trust.control"
    [dead] = decoded(decider.handle_control(b"svc-b", control(identity="svc-a"), CONTROL_SRC), "dlq")
    assert dead["error_code"] == "control_key" and "svc-a" in dead["reason"]
    assert decider.state["svc-a"] == before
    assert decider.metrics.dlq == {"undecodable": 1, "control_key": 1}


def test_metrics_count_events_outcomes_violations_and_latency(decider):
    decider.handle(b"svc-a", batch([event(1), event(2, "mount"), event(3, "mount")]), SRC)
    decider.handle(b"svc-a", b"\x00garbage", SRC)
    m = decider.metrics
    assert (m.events, m.batches) == (3, 2)
    assert m.decisions == {"allow": 1, "block": 1, "quarantine": 1}
    assert m.violations == {"no_policy": 2} and m.dlq == {"undecodable": 1}
    assert m.latency.count == 2 and m.latency.sum > 0
