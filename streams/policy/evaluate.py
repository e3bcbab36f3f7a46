"""Evaluate one syscall event (docs/behaviour.md §2): pure, time passed in, no I/O.

The caller supplies the identity's adaptive trust (None when unseen) and the
isolation of its process when that process is in the redzone (Active or
Analyzing); the result says what was decided and what the trust becomes.

This is the hot path (hundreds of thousands of events a second per core).
Everything fixed for an (identity, syscall) pair is in its Plan, the trust
arithmetic and the argument checks are memoised per value, and a failure's
reason is formatted once per distinct value (see compiled.py), so a
compliant event costs a few dict lookups, no Python call and one tuple.
"""

from __future__ import annotations

from typing import Protocol

from streams.policy.compiled import CompiledPolicy, Plan
from streams.policy.model import (
    Action,
    EnforcementMode,
    ForensicMode,
    IsolationLevel,
    PolicyEvaluationResult,
    ReasonCode,
    SyscallContext,
)

ENFORCE = EnforcementMode.ENFORCE
PERMISSIVE = EnforcementMode.PERMISSIVE
ALLOW, BLOCK, QUARANTINE, WARN = Action.ALLOW, Action.BLOCK, Action.QUARANTINE, Action.WARN
FULL = IsolationLevel.FULL
FORENSIC_FULL = ForensicMode.FULL
_ALLOWING = (ALLOW, WARN)

# PolicyEvaluationResult(...) runs the NamedTuple's generated __new__, a
# Python function; tuple.__new__ on the class builds the same object without
# that extra frame.
_new = tuple.__new__
Result = PolicyEvaluationResult


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
    try:
        plan = cp.plans[ctx.identity.id][syscall]
    except KeyError:  # the pair's first event
        plan = cp.plan(ctx.identity.id, syscall)
    t = cp.baseline if adaptive is None else adaptive
    tv = ctx.trust_vector
    # base trust = min(vector score, T); effective trust memoised under the plan's adjustment
    trust = plan.trust_of[t if tv is None or tv.score >= t else tv.score]

    if isolation is not None and isolation.covers(syscall, cp.syscall_classes):  # check 1
        reason = f"process {ctx.identity.process_id} is quarantined and its isolation covers {syscall}"
        return _result(cp, ReasonCode.QUARANTINED, reason, BLOCK, cp.mode, trust, None, now)

    failure = plan.failure  # checks 2-4: decided once for the pair
    checks = plan.checks  # checks 5-7, when they are still to run; inline, as most events get here
    if checks is not None:
        if trust < checks.min_trust:
            failure = checks.trust_failure[trust]
        elif checks.arg_verdicts is not None:  # check 6, and 7 when the validator reads only args
            try:
                failure = checks.arg_verdicts[ctx.args]
            except TypeError:  # args given as a list rather than the declared tuple
                failure = checks.arg_verdicts[tuple(ctx.args)]
        if failure is None and checks.validator is not None:  # check 7, fails closed
            failure = checks.validator(ctx)
    if failure is not None:
        return _violation(cp, plan, failure, trust, t, now)
    mode = plan.mode
    after = None if mode is PERMISSIVE else cp.after_compliant[t]
    return _new(Result, (True, ALLOW, None, plan.allowed_reason, trust, cp.version, mode,
                         plan.enforced, now, FULL, (), FORENSIC_FULL, after))


def _violation(cp: CompiledPolicy, plan: Plan, failure, trust, t, now) -> PolicyEvaluationResult:
    """A failed check 2-7: its action (docs/behaviour.md §2 step 6) and what the mode makes of it."""
    code, reason = failure
    penalised = cp.after_violation[t]
    action = plan.violation_action  # the policy's own, if it names one
    if action is None:
        threshold = cp.quarantine_threshold
        action = QUARANTINE if threshold is not None and penalised < threshold else BLOCK
    mode = plan.mode  # the document's mode when there is no policy
    enforced = plan.enforced
    return _new(Result, (
        not enforced or action in _ALLOWING, action, code, reason, trust, cp.version, mode, enforced,
        now, plan.isolation_level, plan.isolation_syscalls, plan.forensic_mode,
        None if mode is PERMISSIVE else penalised))


def _result(cp, code, reason, action, mode, trust, after, now) -> PolicyEvaluationResult:
    """A failure with no policy behind it (quarantined): document mode, full isolation."""
    return _new(Result, (
        mode is not ENFORCE or action in _ALLOWING, action, code, reason, trust, cp.version,
        mode, mode is ENFORCE, now, FULL, (), FORENSIC_FULL, after))
