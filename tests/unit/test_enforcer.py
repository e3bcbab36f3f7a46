"""The seed's in-process API: SyscallEnforcer.enforce(ctx) -> None or the action."""

from __future__ import annotations

from streams.enforcer import DefaultViolationHandler, SyscallEnforcer
from streams.policy.model import Action, EnforcementMode
from tests.conftest import make_ctx, make_policy

POLICIES = {"read": {}, "ptrace": {"violation_action": "quarantine", "allowed_identities": []},
            "exec": {"allowed_identities": [], "violation_action": "warn"}}


def test_compliant_syscall_proceeds_and_violation_returns_the_action():
    e = SyscallEnforcer(make_policy(POLICIES))
    assert e.enforce(make_ctx("read"), now="t") is None
    assert e.enforce(make_ctx("mount"), now="t") is Action.BLOCK
    assert e.enforce(make_ctx("exec"), now="t") is Action.WARN


def test_quarantine_isolates_the_process_for_its_next_syscall():
    e = SyscallEnforcer(make_policy(POLICIES))
    assert e.enforce(make_ctx("ptrace", event_id="e-1"), now="t") is Action.QUARANTINE
    assert e.redzone.get_quarantined_process("p-1").status.value == "active"
    assert e.enforce(make_ctx("read", event_id="e-2"), now="t") is Action.BLOCK
    assert e.enforce(make_ctx("read", event_id="e-3", process="p-2"), now="t") is None


def test_enforcement_mode_override_makes_violations_unenforced():
    e = SyscallEnforcer(make_policy(POLICIES), enforcement_mode=EnforcementMode.AUDIT)
    assert e.enforce(make_ctx("mount"), now="t") is None
    assert e.engine.policy.mode is EnforcementMode.AUDIT


def test_traces_record_every_decision_when_enabled_only():
    traced = SyscallEnforcer(make_policy(POLICIES), trace_enabled=True)
    quiet = SyscallEnforcer(make_policy(POLICIES))
    for enforcer in (traced, quiet):
        enforcer.enforce(make_ctx("read", event_id="e-1"), now="t")
        enforcer.enforce(make_ctx("mount", event_id="e-2"), now="t")
    assert [(t.event_id, t.action, t.allowed) for t in traced.traces] == [
        ("e-1", Action.ALLOW, True), ("e-2", Action.BLOCK, False)]
    assert traced.traces[1].decision["reason_code"] == "no_policy"
    assert list(quiet.traces) == []


def test_a_custom_violation_handler_decides_the_action():
    class Escalate(DefaultViolationHandler):
        def on_violation(self, ctx, result):
            return Action.QUARANTINE if result.action is Action.BLOCK else result.action

    e = SyscallEnforcer(make_policy(POLICIES), violation_handler=Escalate())
    assert e.enforce(make_ctx("mount"), now="t") is Action.QUARANTINE
    assert e.enforce(make_ctx("exec"), now="t") is Action.WARN
