"""The actuator's steps for docs/behaviour.md §3.1, the gate book, and cgroup text parsing (pure)."""

from __future__ import annotations

from streams.procshim.actuator import Actuator, Op
from streams.procshim.gate import GateBook
from streams.procshim.workload import cgroup2_mount, container_id_from_cgroup, own_cgroup2_path
from streams.policy.model import DEFAULT_SYSCALL_CLASSES

CLASSES = {k: frozenset(v) for k, v in DEFAULT_SYSCALL_CLASSES.items()}
TRAPPED = frozenset(CLASSES["network"] | CLASSES["filesystem"] | {"execve", "kill"})
TS = "2026-11-28T12:00:00.000000Z"


def make(times=None):
    owned = {"sh-10", "sh-11", "sh-12"}
    return Actuator(identity_id="tool-sh", container_id="host", shim_id="s-1", classes=CLASSES,
                    trapped=TRAPPED, owned=owned.__contains__, event_time=(times or {}).get)


def cmd(pid="sh-10", level="network", op="quarantine", cid="q-1", names=(), event_id="e-5"):
    return {"command_id": cid, "op": op, "process_id": pid, "isolation_level": level,
            "isolation_syscalls": list(names), "reason": "r", "event_id": event_id, "timestamp": TS}


def transition(to, pid="sh-10", eid="rz-1", level="network"):
    return {"event_id": eid, "process_id": pid, "to_status": to, "isolation_level": level,
            "isolation_syscalls": [], "reason": "by operator", "command_id": None, "timestamp": TS}


def test_network_isolation_denies_covered_calls_from_the_next_one_on():
    a = make({"e-5": 100.0})
    assert a.deny("sh-10", "connect") is None
    assert a.on_command(cmd()) == []
    step = a.deny("sh-10", "connect", "e-9")
    assert step.op is Op.DENY and step.syscall == "connect" and step.command_id == "q-1"
    assert step.violating_event_id == "e-5" and step.since == 100.0 and step.event_id == "e-9"
    assert a.deny("sh-10", "openat") is None and a.deny("sh-11", "connect") is None
    rec = a.record(step, mechanism="seccomp", signal=None, now=100.25, timestamp=TS)
    assert rec["action"] == "deny" and rec["delay_ms"] == 250.0 and rec["process_id"] == "sh-10"


def test_other_processes_and_redelivered_commands_change_nothing():
    a = make()
    assert a.on_command(cmd(pid="other-1")) == []
    assert a.deny("other-1", "connect") is None
    a.on_command(cmd())
    assert a.on_command(cmd(level="full")) == []  # the same command id again: ignored
    assert not a.frozen


def test_full_isolation_freezes_once_and_recovery_thaws_and_lifts():
    a = make()
    [freeze] = a.on_command(cmd(level="full"))
    assert freeze.op is Op.FREEZE and a.frozen
    assert a.on_command(cmd(pid="sh-11", level="full", cid="q-2")) == []  # already frozen
    assert a.on_transition(transition("recovered", pid="sh-11", eid="rz-2"))[-1].op is Op.LIFT
    assert a.frozen  # sh-10 still holds the freeze
    steps = a.on_transition(transition("recovered"))
    assert [s.op for s in steps] == [Op.THAW, Op.LIFT] and not a.frozen
    assert steps[0].transition_id == "rz-1"


def test_isolation_only_widens_and_analysis_keeps_it():
    a = make()
    a.on_command(cmd(level="network"))
    a.on_transition(transition("analyzing", level="filesystem", eid="rz-3"))
    assert a.deny("sh-10", "connect") and a.deny("sh-10", "unlink")


def test_untrapped_custom_isolation_fails_closed_with_a_freeze():
    a = make()
    [step] = a.on_command(cmd(level="custom", names=["ptrace"]))
    assert step.op is Op.FREEZE and "ptrace" in step.reason
    assert a.on_command(cmd(pid="sh-11", level="custom", names=["kill"], cid="q-3")) == []
    assert a.deny("sh-11", "kill") is not None


def test_terminate_kills_once_and_children_inherit_isolation():
    a = make()
    a.on_command(cmd())
    a.inherit("sh-12", "sh-10")
    assert a.deny("sh-12", "sendto") is not None
    [kill] = a.on_transition(transition("terminated", eid="rz-9"))
    assert kill.op is Op.KILL and kill.transition_id == "rz-9"
    assert a.on_command(cmd(op="terminate", cid="q-9")) == []
    assert a.deny("sh-10", "connect") is None


def test_gate_book_resolves_and_expires_in_deadline_order():
    g = GateBook(0.2)
    g.hold("e-1", 11, 10, "sh-10", "execve", now=1.0)
    g.hold("e-2", 12, 10, "sh-10", "execve", now=1.1)
    assert g.next_deadline() == 1.2
    assert g.resolve("e-2").notification_id == 12 and g.resolve("e-2") is None
    assert g.expired(1.19) == [] and [h.event_id for h in g.expired(1.2)] == ["e-1"]
    assert len(g) == 0 and g.next_deadline() is None


def test_cgroup_texts():
    assert cgroup2_mount("cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n") == "/sys/fs/cgroup/unified"
    assert own_cgroup2_path("4:memory:/x\n0::/user.slice/a.scope\n") == "/user.slice/a.scope"
    assert container_id_from_cgroup("0::/\n") == "host"
    cid = "3f2a" * 16
    assert container_id_from_cgroup(f"0::/system.slice/docker-{cid}.scope\n") == cid[:12]
