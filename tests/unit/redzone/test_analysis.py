"""The forensic report of a quarantined process, per forensic mode (docs/behaviour.md §3).

Traces come from the real engine (the quarantine command it emits), so the
report is tested on what the redzone actually stores.
"""

from __future__ import annotations

import pytest

from streams.engine import TrustEngine
from streams.redzone.analysis import forensic_report
from streams.redzone.memory import InMemoryRedzone
from streams.redzone.model import QuarantineStatus, apply_quarantine
from tests.conftest import make_ctx, make_policy

NOW = "2026-11-28T12:00:{:02d}.000000Z"


def quarantined(mode: str, repeat: bool = False):
    """svc-a: read, read(bad arg), mount (no policy), then ptrace -> quarantine."""
    policy = make_policy({
        "read": {"arg_constraints": {0: "/tmp/.*"}},
        "ptrace": {"violation_action": "quarantine", "forensic_mode": mode, "isolation_level": "network",
                   "allowed_identities": []},
    }, version="pv-1")
    engine = TrustEngine(policy, InMemoryRedzone())
    calls = [("read", ["/tmp/a"]), ("read", ["/etc/shadow"]), ("mount", ["/dev/x"]), ("ptrace", ["1"])]
    commands = []
    for i, (syscall, args) in enumerate(calls):
        out = engine.decide(make_ctx(syscall, args, event_id=f"e-{i}"), NOW.format(i))
        if out.quarantine is not None:
            commands.append(out.quarantine)
    [cmd] = commands
    p, _ = apply_quarantine(None, cmd, NOW.format(10))
    if repeat:  # a second command carries an overlapping trace
        again = dict(cmd, command_id="again", trace=cmd["trace"][-2:])
        p, _ = apply_quarantine(p, again, NOW.format(11))
    return p


def test_full_report_has_everything_the_trace_holds():
    r = forensic_report(quarantined("full"))
    assert (r["process_id"], r["identity_id"], r["status"], r["forensic_mode"]) == ("p-1", "svc-a", "active", "full")
    assert r["isolation_level"] == "network" and r["trace_entries"] == 4
    assert r["syscall_histogram"] == {"read": 2, "mount": 1, "ptrace": 1}
    assert r["outcomes"] == {"block": 2, "allow": 1, "quarantine": 1}
    assert r["violations_by_reason"] == {"arg_constraint": 1, "identity_not_allowed": 1, "no_policy": 1}
    assert r["first_seen"] == NOW.format(0) and r["last_seen"] == NOW.format(3)
    assert [e["syscall"] for e in r["timeline"]] == ["read", "read", "mount", "ptrace"]
    assert r["timeline"][1]["args"] == ["/etc/shadow"] and r["timeline"][1]["reason_code"] == "arg_constraint"
    assert [t["trust_score"] for t in r["trust_trajectory"]] == [0.7, 0.703, 0.553, 0.403]
    assert r["policy_versions"] == ["pv-1"]
    assert r["history"][0]["to"] == "active"


def test_metadata_report_has_names_and_outcomes_only():
    r = forensic_report(quarantined("metadata"))
    assert r["syscall_histogram"] == {"read": 2, "mount": 1, "ptrace": 1}
    assert r["outcomes"] == {"block": 2, "allow": 1, "quarantine": 1}
    assert r["first_seen"] == NOW.format(0) and r["last_seen"] == NOW.format(3)
    assert set(r["timeline"][0]) == {"timestamp", "event_id", "syscall", "allowed", "action", "reason_code"}
    assert "trust_trajectory" not in r and "policy_versions" not in r


def test_metadata_mode_hides_arguments_even_if_an_entry_carries_them():
    p = quarantined("full")
    from dataclasses import replace

    from streams.policy.model import ForensicMode

    r = forensic_report(replace(p, forensic_mode=ForensicMode.METADATA))
    assert all("args" not in e and "trust_score" not in e for e in r["timeline"])


def test_none_report_is_the_reason_only():
    r = forensic_report(quarantined("none"))
    assert r["forensic_mode"] == "none" and r["trace_entries"] == 0
    assert r["reason"] and "no trace" in r["note"]
    assert not {"timeline", "syscall_histogram", "trust_trajectory", "first_seen"} & set(r)


def test_overlapping_traces_count_each_event_once():
    r = forensic_report(quarantined("full", repeat=True))
    assert r["trace_entries"] == 4 and r["duplicate_entries_dropped"] == 2
    assert r["syscall_histogram"] == {"read": 2, "mount": 1, "ptrace": 1}


def test_report_follows_the_lifecycle():
    rz = InMemoryRedzone()
    p = quarantined("metadata")
    rz.store.processes[p.process_id] = p
    rz.transition("p-1", QuarantineStatus.ANALYZING, "operator:alice", NOW.format(20))
    r = forensic_report(rz.get_quarantined_process("p-1"))
    assert r["status"] == "analyzing"
    assert [(h["from"], h["to"], h["actor"]) for h in r["history"]] == [
        (None, "active", "engine"), ("active", "analyzing", "operator:alice")]


@pytest.mark.parametrize("mode", ["full", "metadata"])
def test_empty_trace(mode):
    from dataclasses import replace

    r = forensic_report(replace(quarantined(mode), trace=()))
    assert r["trace_entries"] == 0 and r["first_seen"] is None and r["timeline"] == []
