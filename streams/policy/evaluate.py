"""Evaluate one syscall event (SPEC §2): pure, time passed in, no I/O.

The caller supplies the identity's adaptive trust (None when unseen) and the
isolation of its process when that process is in the redzone (Active or
Analyzing); the result says what was decided and what the trust becomes.
"""

from __future__ import annotations

from typing import Protocol

from streams.policy.compiled import CompiledPolicy
from streams.policy.model import (
    Action,
    EnforcementMode,
    ForensicMode,
    IsolationLevel,
    PolicyEvaluationResult,
    ReasonCode,
    SyscallContext,
)
from streams.policy.trust import after_compliant, after_violation, effective_trust

ENFORCE = EnforcementMode.ENFORCE
PERMISSIVE = EnforcementMode.PERMISSIVE
ALLOW, BLOCK, QUARANTINE, WARN = Action.ALLOW, Action.BLOCK, Action.QUARANTINE, Action.WARN
FULL = IsolationLevel.FULL
FORENSIC_FULL = ForensicMode.FULL
_ALLOWING = (ALLOW, WARN)


class Isolation(Protocol):
    def covers(self, syscall: str, classes: dict[str, frozenset[str]]) -> bool: ...


def evaluate(
    cp: CompiledPolicy,
    ctx: SyscallContext,
    adaptive: float | None,
    isolation: Isolation | None,
    now: str,
) -> PolicyEvaluationResult:
    """Decide one event; `adaptive` is T[identity] (None if unseen)."""
    syscall = ctx.syscall
    plan = cp.plan(ctx.identity.id, syscall)
    tm = cp.trust_model
    t = tm.baseline if adaptive is None else adaptive
    tv = ctx.trust_vector
    base = t if tv is None or tv.score >= t else tv.score
    trust = effective_trust(base, plan.adjustment)

    if isolation is not None and isolation.covers(syscall, cp.syscall_classes):
        reason = f"process {ctx.identity.process_id} is quarantined and its isolation covers {syscall}"
        return _result(cp, ReasonCode.QUARANTINED, reason, BLOCK, cp.mode, trust, None, now)

    policy = plan.policy
    if policy is None:
        if not cp.default_allow:
            failure = (ReasonCode.NO_POLICY, f"no policy for {syscall} and the default action is deny")
            return _violation(cp, plan, failure, trust, t, now)
    else:
        failure = plan.identity_failure or _policy_failure(policy, ctx, trust)
        if failure is not None:
            return _violation(cp, plan, failure, trust, t, now)
    mode = plan.mode
    after = None if mode is PERMISSIVE else after_compliant(t, tm)
    return PolicyEvaluationResult(True, ALLOW, None, plan.allowed_reason, trust, cp.version, mode,
                                  mode is ENFORCE, now, FULL, (), FORENSIC_FULL, after)


def _policy_failure(policy, ctx: SyscallContext, trust: float):
    """Checks 5-7 of SPEC §2 (the identity checks are part of the plan)."""
    if trust < policy.min_trust:
        return (ReasonCode.TRUST_BELOW_MINIMUM,
                f"trust {trust} below minimum {policy.min_trust} for {ctx.syscall}")
    args = ctx.args
    for index, pattern, check in policy.args:
        if index >= len(args):
            return (ReasonCode.ARG_MISSING,
                    f"argument {index} of {ctx.syscall} is missing (constraint {pattern})")
        if not check(args[index]):
            return (ReasonCode.ARG_CONSTRAINT,
                    f"argument {index} of {ctx.syscall} `{args[index]}` does not match {pattern}")
    if policy.validator is not None and not policy.validator(ctx):
        return (ReasonCode.CUSTOM_VALIDATOR,
                f"custom validator {policy.validator_name} refused {ctx.syscall}")
    return None


def _violation(cp, plan, failure, trust, t, now) -> PolicyEvaluationResult:
    code, reason = failure
    policy = plan.policy
    mode = cp.mode if policy is None else plan.mode
    penalised = after_violation(t, cp.trust_model)
    if policy is not None and policy.violation_action is not None:
        action = policy.violation_action
    elif cp.quarantine_threshold is not None and penalised < cp.quarantine_threshold:
        action = QUARANTINE
    else:
        action = BLOCK
    after = None if mode is PERMISSIVE else penalised
    if policy is None:
        return _result(cp, code, reason, action, mode, trust, after, now)
    return PolicyEvaluationResult(
        mode is not ENFORCE or action in _ALLOWING, action, code, reason, trust, cp.version,
        mode, mode is ENFORCE, now, policy.isolation_level, policy.isolation_syscalls,
        policy.forensic_mode, after)


def _result(cp, code, reason, action, mode, trust, after, now) -> PolicyEvaluationResult:
    """A failure with no policy behind it: document mode, full isolation."""
    return PolicyEvaluationResult(
        mode is not ENFORCE or action in _ALLOWING, action, code, reason, trust, cp.version,
        mode, mode is ENFORCE, now, FULL, (), FORENSIC_FULL, after)
