"""docs/behaviour.md §3: the redzone status machine, re-quarantine, idempotent commands, the in-memory store."""

from __future__ import annotations

import pytest

from streams.errors import TransitionError, UnknownProcessError
from streams.policy.model import ForensicMode, IsolationLevel
from streams.redzone.memory import InMemoryRedzone
from streams.redzone.model import (
    QuarantinedProcess,
    QuarantineStatus,
    apply_quarantine,
    apply_transition,
    check_transition,
)
from streams.redzone.model import Isolation

T0, T1, T2 = "2026-11-28T12:00:00.000000Z", "2026-11-28T12:00:01.000000Z", "2026-11-28T12:00:02.000000Z"
ACTIVE, ANALYZING = QuarantineStatus.ACTIVE, QuarantineStatus.ANALYZING
TERMINATED, RECOVERED = QuarantineStatus.TERMINATED, QuarantineStatus.RECOVERED
CLASSES = {"network": frozenset({"connect", "socket"}), "filesystem": frozenset({"open_file", "unlink"})}


def command(command_id="c-1", level="full", syscalls=(), trace=({"event_id": "e-1"},), process="p-1",
            version="v1", reason="trust too low"):
    return {"command_id": command_id, "op": "quarantine", "process_id": process, "container_id": "c-3",
            "identity": {"id": "svc-a", "process_id": process}, "reason": reason,
            "reason_code": "trust_below_minimum", "isolation_level": level,
            "isolation_syscalls": list(syscalls), "forensic_mode": "full", "trace": list(trace),
            "policy_version": version, "source": "engine", "timestamp": T0}


def process(status=ACTIVE) -> QuarantinedProcess:
    p, _ = apply_quarantine(None, command(), T0)
    if status is ACTIVE:
        return p
    if status is ANALYZING:
        return apply_transition(p, ANALYZING, "op", T1)[0]
    return apply_transition(p, status, "op", T1)[0]


# --- allowed transitions ----------------------------------------------------------------------

@pytest.mark.parametrize("start, target", [
    (ACTIVE, ANALYZING), (ACTIVE, TERMINATED), (ACTIVE, RECOVERED),
    (ANALYZING, TERMINATED), (ANALYZING, RECOVERED),
])
def test_allowed_transition(start, target):
    before = process(start)
    check_transition("p-1", start, target)  # does not raise
    after, event = apply_transition(before, target, "alice", T2, reason="looked at it")
    assert after.status is target
    assert after.updated_at == T2
    assert after.history[-1] == {"from": start.value, "to": target.value, "at": T2, "actor": "alice"}
    assert len(after.history) == len(before.history) + 1
    assert event["from_status"] == start.value and event["to_status"] == target.value
    assert event["actor"] == "alice" and event["reason"] == "looked at it"
    assert event["process_id"] == "p-1" and event["timestamp"] == T2
    assert after.in_redzone is (target is ANALYZING)


def test_allowed_transition_accepts_status_as_string():
    after, _ = apply_transition(process(ACTIVE), "analyzing", "op", T2)
    assert after.status is ANALYZING


# --- refused transitions ---------------------------------------------------------------------

REFUSED = [
    (TERMINATED, ACTIVE), (TERMINATED, ANALYZING), (TERMINATED, RECOVERED), (TERMINATED, TERMINATED),
    (RECOVERED, ACTIVE), (RECOVERED, ANALYZING), (RECOVERED, TERMINATED), (RECOVERED, RECOVERED),
    (ANALYZING, ACTIVE),
    (ACTIVE, ACTIVE), (ANALYZING, ANALYZING),
]


@pytest.mark.parametrize("start, target", REFUSED)
def test_refused_transition_names_both_states(start, target):
    with pytest.raises(TransitionError) as info:
        check_transition("p-1", start, target)
    msg = str(info.value)
    assert f"`{start.value}`" in msg and f"`{target.value}`" in msg and "`p-1`" in msg
    assert msg.index(start.value) < msg.rindex(target.value)


@pytest.mark.parametrize("start, target", REFUSED)
def test_refused_transition_changes_nothing(start, target):
    before = process(start)
    with pytest.raises(TransitionError):
        apply_transition(before, target, "mallory", T2)
    assert before.status is start  # frozen value unchanged

    rz = InMemoryRedzone()
    rz.quarantine(command(), T0)
    if start is not ACTIVE:
        rz.transition("p-1", start, "op", T1)
    snapshot, events = rz.get_quarantined_process("p-1"), list(rz.events)
    with pytest.raises(TransitionError):
        rz.transition("p-1", target, "mallory", T2)
    assert rz.get_quarantined_process("p-1") == snapshot
    assert rz.events == events


def test_final_state_message_says_it_is_final():
    with pytest.raises(TransitionError, match="final"):
        check_transition("p-1", TERMINATED, ACTIVE)


# --- quarantine, re-quarantine, idempotence -------------------------------------------------------

def test_first_quarantine_creates_active_entry_and_event():
    p, event = apply_quarantine(None, command(level="network"), T0)
    assert p.status is ACTIVE and p.in_redzone
    assert p.process_id == "p-1" and p.identity_id == "svc-a" and p.container_id == "c-3"
    assert p.isolation == Isolation.of("network")
    assert p.forensic_mode is ForensicMode.FULL
    assert p.trace == ({"event_id": "e-1"},)
    assert p.command_ids == ("c-1",) and p.policy_versions == ("v1",)
    assert event["from_status"] is None and event["to_status"] == "active"
    assert event["command_id"] == "c-1" and event["isolation_level"] == "network"


def test_requarantine_keeps_one_entry_appends_trace_and_widens_isolation():
    first, _ = apply_quarantine(None, command("c-1", "network", trace=[{"event_id": "e-1"}]), T0)
    second, event = apply_quarantine(first, command("c-2", "filesystem", trace=[{"event_id": "e-2"}],
                                                    version="v2"), T1)
    assert second.process_id == first.process_id and second.status is ACTIVE
    assert second.quarantined_at == T0 and second.updated_at == T1
    assert [t["event_id"] for t in second.trace] == ["e-1", "e-2"]
    assert second.command_ids == ("c-1", "c-2") and second.policy_versions == ("v1", "v2")
    for s in ("connect", "socket", "open_file", "unlink"):
        assert second.isolation.covers(s, CLASSES), s
    assert not second.isolation.covers("ptrace", CLASSES)
    assert event is not None and event["from_status"] == "active" and event["to_status"] == "active"


def test_requarantine_while_analyzing_keeps_status():
    p = process(ANALYZING)
    again, _ = apply_quarantine(p, command("c-2", "network"), T2)
    assert again.status is ANALYZING and again.history == p.history


@pytest.mark.parametrize("first, second", [
    (("full", ()), ("network", ())),
    (("full", ()), ("custom", ("ptrace",))),
    (("network", ()), ("custom", ("ptrace",))),
    (("custom", ("exec_*",)), ("filesystem", ())),
    (("custom", ("exec_*",)), ("custom", ("ptrace",))),
])
def test_isolation_never_narrows(first, second):
    probes = ["connect", "socket", "open_file", "unlink", "ptrace", "exec_x", "mmap"]
    a, _ = apply_quarantine(None, command("c-1", first[0], first[1]), T0)
    b, _ = apply_quarantine(a, command("c-2", second[0], second[1]), T1)
    only_second = Isolation.of(*second)
    for s in probes:
        if a.isolation.covers(s, CLASSES) or only_second.covers(s, CLASSES):
            assert b.isolation.covers(s, CLASSES), s
        else:
            assert not b.isolation.covers(s, CLASSES), s


def test_union_with_full_is_full():
    u = Isolation.of("custom", ["ptrace"]).union(Isolation.of("full"))
    assert u.is_full and u.covers("anything", CLASSES)
    assert u.as_fields() == ("full", [])


def test_union_round_trips_through_record_fields():
    u = Isolation.of("network").union(Isolation.of("custom", ["ptrace", "exec_*"]))
    level, names = u.as_fields()
    assert level == "custom"
    assert Isolation.of(level, names) == u


@pytest.mark.parametrize("level", list(IsolationLevel))
def test_isolation_of_each_level(level):
    iso = Isolation.of(level, ["ptrace"] if level is IsolationLevel.CUSTOM else [])
    expected = {
        IsolationLevel.FULL: {"connect", "open_file", "ptrace", "mmap"},
        IsolationLevel.NETWORK: {"connect"},
        IsolationLevel.FILESYSTEM: {"open_file"},
        IsolationLevel.CUSTOM: {"ptrace"},
    }[level]
    for s in ("connect", "open_file", "ptrace", "mmap"):
        assert iso.covers(s, CLASSES) is (s in expected), s


def test_same_command_id_twice_is_a_noop():
    first, _ = apply_quarantine(None, command("c-1", "network"), T0)
    again, event = apply_quarantine(first, command("c-1", "full", trace=[{"event_id": "e-9"}]), T1)
    assert event is None
    assert again == first


def test_quarantine_after_a_final_state_starts_a_new_entry():
    p = process(RECOVERED)
    fresh, event = apply_quarantine(p, command("c-2", "network"), T2)
    assert fresh.status is ACTIVE and fresh.quarantined_at == T2
    assert fresh.isolation == Isolation.of("network")
    assert event["from_status"] is None


def test_to_dict_from_dict_round_trip():
    a, _ = apply_quarantine(None, command("c-1", "network"), T0)
    b, _ = apply_quarantine(a, command("c-2", "custom", ["ptrace"]), T1)
    c, _ = apply_transition(b, ANALYZING, "op", T2)
    assert QuarantinedProcess.from_dict(c.to_dict()) == c


# --- InMemoryRedzone -------------------------------------------------------------------------

def test_in_memory_redzone_lifecycle():
    rz = InMemoryRedzone()
    assert rz.isolation_of("p-1") is None
    rz.quarantine(command("c-1", "network"), T0)
    assert rz.isolation_of("p-1") == Isolation.of("network")
    rz.quarantine(command("c-1", "network"), T0)  # redelivered: no new event
    assert len(rz.events) == 1
    rz.quarantine(command("c-2", "filesystem"), T1)
    assert len(rz.list()) == 1 and len(rz.events) == 2
    rz.transition("p-1", ANALYZING, "op", T1)
    assert rz.isolation_of("p-1") is not None  # analyzing is still isolated
    assert rz.status().isolated == 1
    rz.transition("p-1", "recovered", "op", T2)
    assert rz.isolation_of("p-1") is None
    assert rz.status().counts == {"recovered": 1} and rz.status().isolated == 0
    assert [p.process_id for p in rz.list(RECOVERED)] == ["p-1"] and rz.list(ACTIVE) == []
    assert [e["to_status"] for e in rz.events] == ["active", "active", "analyzing", "recovered"]


def test_in_memory_redzone_unknown_process():
    rz = InMemoryRedzone()
    with pytest.raises(UnknownProcessError, match="`p-404`"):
        rz.get_quarantined_process("p-404")
    with pytest.raises(UnknownProcessError):
        rz.transition("p-404", TERMINATED, "op", T0)
    assert rz.events == []
