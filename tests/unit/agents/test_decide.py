"""The decide agent's handler, without a broker: bytes in, records out."""

from __future__ import annotations

import json

import pytest

from streams.agents.decide import BatchDecider, Source
from streams.trust_state import TrustEntry
from streams.codec.avro import codec
from streams.engine import TrustEngine
from streams.partitioner import partition_of
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
PARTITIONS = 6
HOME = partition_of("svc-a", PARTITIONS)
SRC = Source("trust.syscall-events", HOME, 42)


def src(offset: int, identity: str = "svc-a") -> Source:
    return Source("trust.syscall-events", partition_of(identity, PARTITIONS), offset)


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
    return BatchDecider(engine, {}, clock=lambda: "2026-11-28T13:00:00.000000Z", partitions=PARTITIONS)


def decoded(emits, kind):
    schema = {"decisions": "DecisionBatch", "violations": "Violation", "quarantine": "QuarantineCommand",
              "dlq": "DeadLetter"}[kind]
    return [codec(schema).decode(e.value) for e in emits if e.kind == kind]


def test_one_decision_batch_per_input_batch_in_event_order(decider):
    emits = decider.handle(b"svc-a", batch([event(1), event(2), event(3)]), SRC)
    [out] = decoded(emits, "decisions")
    assert [d["event_id"] for d in out["decisions"]] == ["e-1", "e-2", "e-3"]
    assert out["shim_id"] == "shim-1" and out["seq"] == 1 and out["partition"] == HOME
    assert [d["trust_score"] for d in out["decisions"]] == [0.7, 0.73, 0.757]


def test_undecodable_message_goes_to_dlq_with_original_bytes(decider):
    emits = decider.handle(b"svc-a", b"\x00garbage", SRC)
    [dead] = decoded(emits, "dlq")
    assert dead["value"] == b"\x00garbage"
    assert (dead["topic"], dead["partition"], dead["offset"]) == ("trust.syscall-events", HOME, 42)
    assert dead["error_code"] == "undecodable" and dead["reason"]


def test_an_empty_batch_is_dead_lettered(decider):
    emits = decider.handle(b"svc-a", batch([]), SRC)
    [dead] = decoded(emits, "dlq")
    assert dead["error_code"] == "event_invalid" and "none" in dead["reason"]
    assert decoded(emits, "decisions") == []


def test_invalid_event_in_a_batch_is_dead_lettered_and_the_rest_decided(decider):
    bad = event(2)
    bad["identity"]["process_id"] = ""
    value = batch([event(1), bad, event(3)])
    emits = decider.handle(b"svc-a", value, SRC)
    [dead] = decoded(emits, "dlq")
    assert dead["event_index"] == 1 and "process_id" in dead["reason"] and dead["value"] == value
    [out] = decoded(emits, "decisions")
    assert [d["event_id"] for d in out["decisions"]] == ["e-1", "e-3"]


def _identities():
    """Identities on svc-a's partition and one elsewhere."""
    same = [f"svc-{i}" for i in range(200) if partition_of(f"svc-{i}", PARTITIONS) == HOME]
    other = next(f"svc-{i}" for i in range(200) if partition_of(f"svc-{i}", PARTITIONS) != HOME)
    return same, other


def test_a_batch_holds_several_identities_of_its_partition_each_with_its_trust(decider):
    same, _ = _identities()
    a, b = same[0], same[1]
    emits = decider.handle(a.encode(), batch([event(1, "mount", identity=a), event(2, identity=b),
                                              event(3, identity=a)]), SRC)
    [out] = decoded(emits, "decisions")
    assert [(d["identity"]["id"], d["trust_score"]) for d in out["decisions"]] == [(a, 0.7), (b, 0.7), (a, 0.55)]
    assert decider.state[a].trust == 0.595 and decider.state[b].trust == 0.73
    assert decider.take_dirty() == {a: HOME, b: HOME} and decider.take_dirty() == {}


def test_event_on_the_wrong_partition_is_dead_lettered_naming_both_and_the_rest_decided(decider):
    _, other = _identities()
    emits = decider.handle(b"svc-a", batch([event(1), event(2, identity=other), event(3)]), SRC)
    [dead] = decoded(emits, "dlq")
    home = partition_of(other, PARTITIONS)
    assert dead["event_index"] == 1 and dead["error_code"] == "wrong_partition"
    assert f"partition {home}" in dead["reason"] and f"partition {HOME}" in dead["reason"]
    assert [d["event_id"] for d in decoded(emits, "decisions")[0]["decisions"]] == ["e-1", "e-3"]
    assert other not in decider.state


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


def _same(batches) -> list[tuple]:
    """A decision without its decision time: what a redelivery must reproduce."""
    return [tuple((k, str(v)) for k, v in d.items() if k != "timestamp") for b in batches for d in b["decisions"]]


def test_redelivered_batch_gives_identical_decisions_and_no_double_penalty(decider):
    value = batch([event(1, "mount"), event(2, "read")], seq=7)
    first = decoded(decider.handle(b"svc-a", value, src(10)), "decisions")
    after_first = decider.state["svc-a"]
    again = decoded(decider.handle(b"svc-a", value, src(10)), "decisions")
    assert _same(first) == _same(again)
    assert decider.state["svc-a"] == after_first
    assert decider.metrics.redelivered == {"replayed": 1}


def test_several_batches_redelivered_after_later_ones_are_each_decided_as_first(decider):
    values = [batch([event(i, "mount" if i % 2 else "read")], seq=i) for i in range(1, 6)]
    first = [decoded(decider.handle(b"svc-a", v, src(10 + i)), "decisions") for i, v in enumerate(values)]
    end = decider.state["svc-a"]
    again = [decoded(decider.handle(b"svc-a", v, src(10 + i)), "decisions") for i, v in enumerate(values[1:4], 1)]
    assert [_same(b) for b in again] == [_same(b) for b in first[1:4]]
    assert decider.state["svc-a"] == end


def test_redelivered_quarantining_batch_is_decided_as_before_the_quarantine(decider):
    """The redelivered events see the isolation in force when they were first
    decided, not the quarantine they caused: the same decisions and the same
    command id (the redzone applies it once)."""
    evs = [event(1, "mount"), event(2, "mount"), event(3, "read")]
    first = decider.handle(b"svc-a", batch(evs, seq=1), src(5))
    again = decider.handle(b"svc-a", batch(evs, seq=1), src(5))
    assert _same(decoded(first, "decisions")) == _same(decoded(again, "decisions"))
    assert [c["command_id"] for c in decoded(first, "quarantine")] == \
        [c["command_id"] for c in decoded(again, "quarantine")]
    assert [d["reason_code"] for d in decoded(again, "decisions")[0]["decisions"]] == \
        ["no_policy", "no_policy", "quarantined"]


def test_later_batches_of_a_quarantined_process_stay_quarantined_on_redelivery(decider):
    decider.handle(b"svc-a", batch([event(1, "mount"), event(2, "mount")], seq=1), src(5))
    later = batch([event(3, "read")], seq=2)
    first = decoded(decider.handle(b"svc-a", later, src(6)), "decisions")
    again = decoded(decider.handle(b"svc-a", later, src(6)), "decisions")
    assert _same(first) == _same(again)
    assert again[0]["decisions"][0]["reason_code"] == "quarantined"


def test_a_batch_older_than_every_step_is_decided_from_now_and_counted(decider):
    decider.handle(b"svc-a", batch([event(1, "mount")], seq=1), src(5))
    decider.handle(b"svc-a", batch([event(2, "read")], seq=2), src(6))
    t = decider.state["svc-a"].trust
    decider.handle(b"svc-a", batch([event(0, "mount")], seq=0), src(3))  # never seen: older than the steps
    assert decider.state["svc-a"].trust == t
    assert decider.metrics.redelivered == {"unknown": 1}


def test_steps_below_the_committed_offset_are_dropped():
    engine = TrustEngine(load_policy(POLICY), LocalRedzoneView(), trust={})
    committed = {HOME: None}
    d = BatchDecider(engine, {}, partitions=PARTITIONS, committed=lambda p: committed[p])
    for off in (1, 2, 3):
        d.handle(b"svc-a", batch([event(off)], seq=off), src(off))
    assert [s.offset for s in d.state["svc-a"].steps] == [1, 2, 3]
    committed[HOME] = 3
    d.handle(b"svc-a", batch([event(4)], seq=4), src(4))
    assert [s.offset for s in d.state["svc-a"].steps] == [3, 4]


def test_trust_entries_survive_their_changelog_form(decider):
    decider.handle(b"svc-a", batch([event(1, "mount"), event(2, "mount")], seq=1), src(5))
    entry = decider.state["svc-a"]
    assert entry.steps[0].quarantines  # a quarantine mark with the isolation before it
    assert TrustEntry.of(json.loads(json.dumps(entry.to_dict()))) == entry


def test_a_gap_in_a_shims_seq_on_a_partition_is_counted(decider):
    decider.handle(b"svc-a", batch([event(1)], seq=1), src(1))
    decider.handle(b"svc-a", batch([event(2)], seq=2), src(2))
    decider.handle(b"svc-a", batch([event(3)], seq=5), src(3))
    decider.handle(b"svc-a", batch([event(4)], seq=1, shim="shim-2"), src(4))
    assert decider.metrics.seq_gaps == 1


# -- trust control (recovery resets trust in the engine) -------------------------

CONTROL_SRC = Source("trust.control", HOME, 7)


def control(command_id: str = "c-1", identity: str = "svc-a") -> bytes:
    return codec("TrustControl").encode({
        "command_id": command_id, "op": "reset_trust", "identity_id": identity,
        "reason": "process `p-1` recovered by operator:alice", "actor": "operator:alice",
        "timestamp": "2026-11-28T13:00:00.000000Z"})


def trust_scores(emits) -> list[float]:
    return [d["trust_score"] for d in decoded(emits, "decisions")[0]["decisions"]]


def test_reset_sets_trust_to_the_baseline_and_the_next_decision_starts_there(decider):
    decider.handle(b"svc-a", batch([event(1, "mount"), event(2, "mount")], seq=1), src(1))
    assert decider.state["svc-a"].trust == 0.4
    assert decider.handle_control(b"svc-a", control("c-1"), CONTROL_SRC) == []
    assert decider.state["svc-a"].trust == 0.7 and decider.state["svc-a"].control_id == "c-1"
    later = batch([event(3, pid="p-2"), event(4, pid="p-2")], seq=2)  # p-1 itself is still isolated here
    assert trust_scores(decider.handle(b"svc-a", later, src(2))) == [0.7, 0.73]
    assert decider.metrics.controls == {"applied": 1}


def test_redelivered_reset_after_later_events_does_not_reset_again(decider):
    decider.handle(b"svc-a", batch([event(1, "mount")], seq=1), src(1))
    decider.handle_control(b"svc-a", control("c-1"), CONTROL_SRC)
    decider.handle(b"svc-a", batch([event(2, "mount")], seq=2), src(2))  # 0.7 -> 0.55
    decider.handle_control(b"svc-a", control("c-1"), CONTROL_SRC)
    assert decider.state["svc-a"].trust == 0.55 and decider.state["svc-a"].control_id == "c-1"
    assert decider.metrics.controls == {"applied": 1, "duplicate": 1}
    decider.handle_control(b"svc-a", control("c-2"), CONTROL_SRC)  # a new reset applies
    assert decider.state["svc-a"].trust == 0.7


def test_a_batch_redelivered_after_a_reset_is_decided_as_first_and_changes_nothing(decider):
    """A batch applied before the reset and redelivered after it gives its
    first decisions again and never changes trust again."""
    value = batch([event(1, "mount"), event(2, "mount")], seq=5)
    first = decoded(decider.handle(b"svc-a", value, src(1)), "decisions")
    decider.handle_control(b"svc-a", control("c-1"), CONTROL_SRC)
    again = decoded(decider.handle(b"svc-a", value, src(1)), "decisions")
    assert _same(again) == _same(first)
    assert decider.state["svc-a"].trust == 0.7  # ...without penalising twice
    assert decider.state["svc-a"].control_id == "c-1"


def test_reset_of_an_unseen_identity_starts_it_at_the_baseline(decider):
    _, other = _identities()
    decider.handle_control(other.encode(), control("c-9", other), CONTROL_SRC)
    assert decider.state[other].trust == 0.7
    assert trust_scores(decider.handle(other.encode(), batch([event(1, identity=other)]), src(1, other))) == [0.7]


def test_reset_uses_the_running_policy_baseline(decider):
    decider.handle(b"svc-a", batch([event(1, "mount")]), SRC)
    decider.engine.use_policy(load_policy(dict(POLICY, version="t-2", trust_model={"baseline": 0.9})))
    decider.handle_control(b"svc-a", control(), CONTROL_SRC)
    assert decider.state["svc-a"].trust == 0.9


def test_bad_control_messages_are_dead_lettered_and_change_nothing(decider):
    decider.handle(b"svc-a", batch([event(1, "mount")]), SRC)
    before = decider.state["svc-a"]
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
