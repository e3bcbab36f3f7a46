"""The fault suite's accounting and workloads, without a broker."""

from __future__ import annotations

import io
import itertools
import json

import pytest

from streams.policy.loader import load_policy, load_policy_file
from streams.replay import replay
from tests.faults import workload
from tests.faults.accounting import (
    Received,
    RedzoneEntry,
    account,
    differing_fields,
    epoch,
    offline,
    recovery,
    redzone_diff,
    seq_gaps,
    unroll,
)

T0 = "2026-11-28T12:00:00.000000Z"


def decision(event_id: str, *, t: str = T0, **changes) -> dict:
    d = {"event_id": event_id, "syscall": "read", "args": [], "identity": {"id": "svc-a"},
         "allowed": True, "action": "allow", "reason_code": None, "reason": "ok", "trust_score": 0.7,
         "policy_version": "v1", "mode": "enforce", "enforced": True, "timestamp": t,
         "event_timestamp": T0}
    d.update(changes)
    return d


def got(*decisions, shim="s", seq=0, partition=0) -> list[Received]:
    return [Received(d, shim, seq, partition) for d in decisions]


def test_differing_fields_ignores_only_the_decision_time():
    a = decision("e-1")
    assert differing_fields(a, decision("e-1", t="2030-01-01T00:00:00.000000Z")) == ()
    assert differing_fields(a, decision("e-1", trust_score=0.69, allowed=False)) == ("allowed", "trust_score")
    assert differing_fields(a, {**a, "extra": 1}) == ("extra",)


def test_a_clean_run_accounts_for_every_event():
    expected = {i: decision(i) for i in ("e-1", "e-2", "e-3")}
    acc = account(["e-1", "e-2", "e-3"], got(*expected.values()), expected)
    assert (acc.sent, acc.decided, acc.missing, acc.duplicates, acc.mismatches) == (3, 3, 0, 0, 0)
    assert acc.lossless


def test_missing_duplicated_and_differing_copies_are_counted_exactly():
    expected = {i: decision(i) for i in ("e-1", "e-2", "e-3", "e-4")}
    received = got(decision("e-1"), decision("e-1", t="2026-11-28T12:00:09.000000Z"),  # identical copy
                   decision("e-2"), decision("e-2", trust_score=0.65),  # a copy decided with other trust
                   decision("e-2"),
                   decision("e-3"), decision("ghost"))
    acc = account(["e-1", "e-2", "e-3", "e-4"], received, expected)
    assert acc.missing == 1 and acc.missing_examples == ("e-4",)
    assert acc.decided == 3
    assert acc.duplicates == 3 and acc.duplicated_events == 2
    assert acc.differing_duplicates == 1
    assert acc.mismatches == 1 and acc.mismatch_fields == {"trust_score": 1}
    assert acc.mismatch_examples == (("e-2", ("trust_score",)),)
    assert acc.unexpected == 1
    assert (acc.first_copy_mismatches, acc.later_copy_mismatches) == (0, 1)  # the redelivery went wrong
    assert acc.duplicate_examples == (("e-2", {"trust_score": [0.7, 0.7, 0.65, 0.7]}),)
    assert not acc.lossless


def test_a_decision_that_differs_from_replay_is_a_mismatch_even_without_duplicates():
    expected = {"e-1": decision("e-1", action="allow")}
    acc = account(["e-1"], got(decision("e-1", action="block", allowed=False)), expected)
    assert acc.mismatches == 1 and acc.mismatch_fields == {"action": 1, "allowed": 1}
    assert acc.duplicates == 0


def test_repeated_sent_ids_are_refused():
    with pytest.raises(ValueError, match="unique"):
        account(["e-1", "e-1"], [], {})


def test_unroll_carries_the_batch_envelope():
    batch = {"shim_id": "s-1", "seq": 7, "partition": 3, "decisions": [decision("a"), decision("b")]}
    out = unroll(batch)
    assert [(r.event_id, r.shim_id, r.seq, r.partition) for r in out] == [("a", "s-1", 7, 3), ("b", "s-1", 7, 3)]


def test_seq_gaps_per_shim_and_partition_over_distinct_seqs():
    received = (got(decision("a"), seq=0) + got(decision("b"), seq=1) + got(decision("b"), seq=1)  # redelivered
                + got(decision("c"), seq=4) + got(decision("d"), seq=0, partition=1)
                + got(decision("e"), seq=2, partition=1) + got(decision("f"), shim="other", seq=9))
    gaps = seq_gaps(received)
    assert [(g.shim_id, g.partition, g.after, g.before, g.batches) for g in gaps] == [
        ("s", 0, 1, 4, 2), ("s", 1, 0, 2, 1)]


def test_recovery_from_decision_times():
    fault = epoch("2026-11-28T12:00:10.000000Z")
    received = (got(decision("a", t="2026-11-28T12:00:09.000000Z"), partition=0)
                + got(decision("b", t="2026-11-28T12:00:12.500000Z"), partition=0)
                + got(decision("c", t="2026-11-28T12:00:40.000000Z"), partition=1)
                + got(decision("d", t="2026-11-28T12:00:11.000000Z"), partition=2)
                + got(decision("e", t="2026-11-28T12:01:30.000000Z"), partition=3))  # after the next fault
    r = recovery(fault, received, until=epoch("2026-11-28T12:01:00.000000Z"))
    assert r.first == pytest.approx(1.0) and r.all_partitions == pytest.approx(30.0) and r.partitions == 3
    assert recovery(fault, got(decision("a", t="2026-11-28T12:00:09.000000Z"))).first is None


def test_redzone_diff_names_lost_extra_and_differing_processes():
    e = RedzoneEntry("active", "full", (), frozenset({"c-1"}))
    expected = {"p-1": e, "p-2": e, "p-3": e}
    actual = {"p-1": e, "p-3": RedzoneEntry("active", "full", (), frozenset({"c-1", "c-9"})), "p-4": e}
    diff = redzone_diff(expected, actual)
    assert (diff.lost, diff.extra, diff.differing) == (("p-2",), ("p-4",), ("p-3",))
    assert not diff.equal and redzone_diff(expected, dict(expected)).equal


def test_offline_decides_exactly_as_trustctl_replay(tmp_path):
    policy = load_policy_file(workload.STRACE / "policy.yaml")
    out = io.StringIO()
    replay(policy, workload.STRACE / "events.jsonl", out)
    want = [json.loads(line) for line in out.getvalue().splitlines()]
    got_ = offline(policy, workload.strace_events())
    assert list(got_.decisions.values()) == want and got_.bad == 0


def test_every_strace_copy_is_decided_as_the_original_case():
    expected = workload.strace_events()
    original = offline(load_policy_file(workload.STRACE / "policy.yaml"), expected).decisions
    policy = load_policy(workload.strace_policy_doc())
    copies = list(itertools.islice(workload.strace_copies(start=3), 2 * len(expected)))
    assert len({e["event_id"] for e in copies}) == len(copies)
    decided = offline(policy, copies).decisions
    for k, chunk in ((3, copies[:len(expected)]), (4, copies[len(expected):])):
        for e in chunk:
            d, o = decided[e["event_id"]], original[e["event_id"].rsplit(".c", 1)[0]]
            assert differing_fields(d, o, ignore=("event_id", "identity", "policy_version", "reason")) == ()
            assert d["reason"].replace(f".c{k}", "") == o["reason"]  # reasons may name the identity
            assert d["identity"]["id"].endswith(f".c{k}")


def test_simulated_traffic_quarantines_and_is_deterministic():
    policy = load_policy_file(workload.EXAMPLE_POLICY)
    events = list(itertools.islice(workload.simulated(seed=5, attacker_every=300), 3000))
    assert events == list(itertools.islice(workload.simulated(seed=5, attacker_every=300), 3000))
    result = offline(policy, events)
    assert len(result.redzone) >= 5
    assert {z.status for z in result.redzone.values()} == {"active"}
