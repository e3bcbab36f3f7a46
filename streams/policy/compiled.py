"""The compiled, indexed form of a policy graph: built once, evaluated many times.

Like OPA preparing a query before evaluating it: exact syscalls sit in a
dict, glob keys in document order, regexes are compiled, and everything that
depends only on (identity, syscall) -- which policy applies, the identity
checks, the summed rule adjustments, the mode -- is resolved once per pair
into a :class:`Plan` and memoised.  What depends on a few values that repeat
constantly (the trust arithmetic on a trust value, the argument checks on an
argument tuple) is memoised too, so a steady stream of events is decided
mostly by dict lookups.
"""

from __future__ import annotations

import re
from typing import Callable

from streams.policy import validators
from streams.policy.canonical import digest, policy_json
from streams.policy.glob import PatternSet, compile_glob, is_glob
from streams.policy.model import (
    DefaultAction,
    EnforcementMode,
    ForensicMode,
    IsolationLevel,
    ReasonCode,
    SyscallPolicy,
    ZtaPolicyGraph,
)
from streams.policy.trust import after_compliant, after_violation, effective_trust, sum_adjustments

_MEMO_LIMIT = 1 << 18  # entries per memo before it is cleared (bounded memory)
_ARGS_MEMO_LIMIT = 1 << 13  # per (policy, syscall): tuples and reasons are bigger, and vary more
_IDENTITY_LIMIT = 1 << 16  # identities with plans (each holds up to one plan per syscall seen)

# Built-in validators read nothing but `ctx.args`, so their verdict can be
# memoised with the argument checks.  Validators registered by others may
# read anything in the context and are called for every event.
_ARGS_ONLY_VALIDATORS = frozenset({validators.no_path_traversal, validators.no_shell_metachar})


class Memo(dict):
    """`memo[x]` is `fn(x)`, computed once; cleared when full (bounded memory).

    A dict subclass with ``__missing__``: a hit runs no Python code, only the
    miss calls `fn`.  (A plain dict indexed inside try/except is a little
    faster still; the plan table, hit twice per event, is done that way.)
    """

    __slots__ = ("fn", "limit")

    def __init__(self, fn: Callable, limit: int | None = None):
        super().__init__()
        self.fn = fn
        self.limit = _MEMO_LIMIT if limit is None else limit

    def __missing__(self, key):
        if len(self) >= self.limit:
            self.clear()
        value = self[key] = self.fn(key)
        return value


class CompiledSyscallPolicy:
    """One syscall policy, ready for the hot path."""

    __slots__ = ("source", "key", "min_trust", "allowed", "denied", "args", "validator",
                 "validator_name", "args_only_validator", "checks_for", "violation_action", "mode",
                 "isolation_level", "isolation_syscalls", "forensic_mode")

    def __init__(self, p: SyscallPolicy, doc_mode: EnforcementMode):
        self.source = p
        self.key = p.syscall
        self.min_trust = p.min_trust_score if p.min_trust_score is not None else 0.0
        self.allowed = None if p.allowed_identities is None else PatternSet(p.allowed_identities)
        self.denied = None if p.denied_identities is None else PatternSet(p.denied_identities)
        # (index, pattern text, memoised fullmatch) in ascending index order
        self.args = tuple((i, rx, _memo_fullmatch(re.compile(rx))) for i, rx in p.arg_constraints)
        self.validator_name = p.custom_validator
        self.validator = validators.get(p.custom_validator) if p.custom_validator else None
        self.args_only_validator = self.validator in _ARGS_ONLY_VALIDATORS
        # syscall -> its PolicyChecks (one syscall for an exact key, the matching ones for a glob)
        self.checks_for = Memo(lambda syscall: PolicyChecks(self, syscall))
        self.violation_action = p.violation_action
        self.mode = p.enforcement_mode or doc_mode
        self.isolation_level = p.isolation_level or IsolationLevel.FULL
        self.isolation_syscalls = p.isolation_syscalls
        self.forensic_mode = p.forensic_mode or ForensicMode.FULL


class PolicyChecks:
    """Checks 5-7 of docs/behaviour.md §2 for one policy applied to one syscall, failures memoised.

    A failure's reason names the syscall, the trust or the argument, so it is
    formatted once per distinct value and then reused.  `validator` is the
    guarded check 7 (see :func:`guarded_validator`): a failure or None.
    """

    __slots__ = ("min_trust", "trust_failure", "arg_verdicts", "validator")

    def __init__(self, p: CompiledSyscallPolicy, syscall: str):
        self.min_trust = p.min_trust
        self.trust_failure = Memo(lambda trust: (
            ReasonCode.TRUST_BELOW_MINIMUM, f"trust {trust} below minimum {p.min_trust} for {syscall}"))
        check7 = None if p.validator is None else guarded_validator(
            p.validator_name, p.validator,
            (ReasonCode.CUSTOM_VALIDATOR, f"custom validator {p.validator_name} refused {syscall}"))
        # args tuple -> the failure of check 6 (and 7 for an args-only validator), or None
        args_check7 = check7 if p.args_only_validator else None
        self.arg_verdicts = (Memo(lambda args: _arg_failure(p, syscall, args, args_check7), _ARGS_MEMO_LIMIT)
                             if p.args or p.args_only_validator else None)
        # a registered validator may read the whole context: it is called for every event
        self.validator = None if p.args_only_validator else check7


def guarded_validator(name: str, fn: Callable, refused: tuple[ReasonCode, str]) -> Callable:
    """Check 7 around validator `fn`: `ctx -> None` (passed) or a failure; fails closed.

    A validator that raises, or returns anything but a bool, fails the check
    with a reason naming the validator and the error; it never lets the
    event through, and never stops the evaluation of later events.
    """

    def check(ctx):
        try:
            verdict = fn(ctx)
        except Exception as exc:  # a validator's bug: this event fails, the engine goes on
            return (ReasonCode.CUSTOM_VALIDATOR, _one_line(f"validator `{name}` failed: {type(exc).__name__}: {exc}"))
        if verdict is True:
            return None
        if verdict is False:
            return refused
        return (ReasonCode.CUSTOM_VALIDATOR,
                _one_line(f"validator `{name}` failed: it returned `{verdict!r}`, not a bool"))

    return check


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _arg_failure(p: CompiledSyscallPolicy, syscall: str, args: tuple[str, ...], check7: Callable | None):
    """Check 6 (each constrained index, ascending), then an args-only check 7."""
    for index, pattern, check in p.args:
        if index >= len(args):
            return (ReasonCode.ARG_MISSING,
                    f"argument {index} of {syscall} is missing (constraint {pattern})")
        if not check(args[index]):
            return (ReasonCode.ARG_CONSTRAINT,
                    f"argument {index} of {syscall} `{args[index]}` does not match {pattern}")
    return None if check7 is None else check7(_ArgsOnly(args))


class _ArgsOnly:
    """Given to an args-only validator in place of a context it never reads past `args`."""

    __slots__ = ("args",)

    def __init__(self, args: tuple[str, ...]):
        self.args = args


def _memo_fullmatch(rx: re.Pattern):
    """`arg -> bool`, memoised: shims repeat the same arguments constantly."""
    fullmatch = rx.fullmatch
    return Memo(lambda arg: fullmatch(arg) is not None).__getitem__


class Plan:
    """What is fixed for one (identity, syscall) pair under one policy version.

    `failure` is the failure of the checks that depend on nothing else (2-4:
    no policy with a deny default, a denied or not-allowed identity), else
    None; `checks` are the per-event checks 5-7 when they are still to run;
    `trust_of` maps a base trust to the effective trust under this pair's
    rule adjustments.  The rest is what a decision under the plan carries.
    """

    __slots__ = ("policy", "adjustment", "failure", "checks", "trust_of", "mode", "enforced",
                 "allowed_reason", "violation_action", "isolation_level", "isolation_syscalls",
                 "forensic_mode")

    def __init__(self, policy: CompiledSyscallPolicy | None, adjustment: float,
                 failure: tuple[ReasonCode, str] | None, checks: PolicyChecks | None,
                 trust_of: Memo, mode: EnforcementMode, allowed_reason: str):
        self.policy = policy
        self.adjustment = adjustment
        self.failure = failure
        self.checks = checks
        self.trust_of = trust_of
        self.mode = mode
        self.enforced = mode is EnforcementMode.ENFORCE
        self.allowed_reason = allowed_reason
        # a failure with no policy behind it gets full isolation (docs/behaviour.md §2, §3)
        self.violation_action = None if policy is None else policy.violation_action
        self.isolation_level = IsolationLevel.FULL if policy is None else policy.isolation_level
        self.isolation_syscalls = () if policy is None else policy.isolation_syscalls
        self.forensic_mode = ForensicMode.FULL if policy is None else policy.forensic_mode


class CompiledPolicy:
    """A validated policy graph in its indexed form, with its digest."""

    def __init__(self, graph: ZtaPolicyGraph):
        self.graph = graph
        self.version = graph.version
        self.canonical_json = policy_json(graph)
        self.digest = digest(self.canonical_json)
        self.mode = graph.enforcement_mode
        self.default_allow = graph.default_action is DefaultAction.ALLOW
        self.trust_model = tm = graph.trust_model
        self.baseline = tm.baseline
        self.quarantine_threshold = graph.quarantine_threshold
        self.syscall_classes = {k: frozenset(v) for k, v in graph.syscall_classes.items()}
        compiled = [CompiledSyscallPolicy(p, graph.enforcement_mode) for p in graph.policies]
        self._exact = {c.key: c for c in compiled}
        self._globbed = tuple((compile_glob(c.key), c) for c in compiled if is_glob(c.key))
        self._rules = tuple(
            (compile_glob(r.identity_pattern),
             None if r.syscall_patterns is None else PatternSet(r.syscall_patterns),
             r.trust_adjustment)
            for r in graph.identity_rules
        )
        # T -> the new T after a compliant decision / after a violation (docs/behaviour.md §2.3)
        self.after_compliant = Memo(lambda t: after_compliant(t, tm))
        self.after_violation = Memo(lambda t: after_violation(t, tm))
        # adjustment -> Memo(base -> effective trust), shared by the plans with that adjustment
        self._trust_memos: dict[float, Memo] = {}
        # identity -> syscall -> Plan.  Plain dicts, indexed by evaluate() itself, which
        # calls plan() on a KeyError: two str-keyed lookups cost less than hashing an
        # (identity, syscall) tuple per event, and exact dicts less than a Memo.
        self.plans: dict[str, dict[str, Plan]] = {}

    def lookup(self, syscall: str) -> CompiledSyscallPolicy | None:
        """Exact key first, then the first glob key in document order (docs/behaviour.md §2.3)."""
        hit = self._exact.get(syscall)
        if hit is not None:
            return hit
        for matches, c in self._globbed:
            if matches(syscall):
                return c
        return None

    def plan(self, identity: str, syscall: str) -> Plan:
        """The memoised Plan of a pair, made on first use."""
        by_syscall = self.plans.get(identity)
        if by_syscall is None:
            if len(self.plans) >= _IDENTITY_LIMIT:
                self.plans.clear()
            by_syscall = self.plans[identity] = {}
        p = by_syscall.get(syscall)
        if p is None:
            if len(by_syscall) >= _MEMO_LIMIT:
                by_syscall.clear()
            p = by_syscall[syscall] = self._make_plan(identity, syscall)
        return p

    def _make_plan(self, identity: str, syscall: str) -> Plan:
        adjustment = sum_adjustments([
            adj for id_match, sys_patterns, adj in self._rules
            if id_match(identity) and (sys_patterns is None or sys_patterns.matches(syscall))
        ])
        trust_of = self._trust_memo(adjustment)
        policy = self.lookup(syscall)
        if policy is None:
            failure = None if self.default_allow else (
                ReasonCode.NO_POLICY, f"no policy for {syscall} and the default action is deny")
            return Plan(None, adjustment, failure, None, trust_of, self.mode,
                        f"{syscall} has no policy; the default action allows it")
        failure = _identity_failure(policy, identity, syscall)
        checks = policy.checks_for[syscall] if failure is None else None
        return Plan(policy, adjustment, failure, checks, trust_of, policy.mode,
                    f"{syscall} complies with policy {policy.key}")

    def _trust_memo(self, adjustment: float) -> Memo:
        memo = self._trust_memos.get(adjustment)
        if memo is None:
            memo = self._trust_memos[adjustment] = Memo(lambda base: effective_trust(base, adjustment))
        return memo


def _identity_failure(p: CompiledSyscallPolicy, identity: str, syscall: str):
    if p.denied is not None:
        pattern = p.denied.first_match(identity)
        if pattern is not None:
            return (ReasonCode.IDENTITY_DENIED,
                    f"identity {identity} is denied {syscall} by pattern {pattern}")
    if p.allowed is not None and not p.allowed.matches(identity):
        return (ReasonCode.IDENTITY_NOT_ALLOWED,
                f"identity {identity} is not among the allowed identities of {p.key}")
    return None
