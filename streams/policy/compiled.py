"""The compiled, indexed form of a policy graph: built once, evaluated many times.

Like OPA preparing a query before evaluating it: exact syscalls sit in a
dict, glob keys in document order, regexes are compiled, and everything that
depends only on (identity, syscall) -- which policy applies, the identity
checks, the summed rule adjustments, the mode -- is resolved once per pair
into a :class:`Plan` and memoised.
"""

from __future__ import annotations

import re

from streams.policy import validators
from streams.policy.canonical import canonical_json, digest
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
from streams.policy.trust import sum_adjustments

_MEMO_LIMIT = 1 << 18  # entries per memo before it is cleared (bounded memory)


class CompiledSyscallPolicy:
    """One syscall policy, ready for the hot path."""

    __slots__ = ("source", "key", "min_trust", "allowed", "denied", "args", "validator",
                 "validator_name", "violation_action", "mode", "isolation_level",
                 "isolation_syscalls", "forensic_mode")

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
        self.violation_action = p.violation_action
        self.mode = p.enforcement_mode or doc_mode
        self.isolation_level = p.isolation_level or IsolationLevel.FULL
        self.isolation_syscalls = p.isolation_syscalls
        self.forensic_mode = p.forensic_mode or ForensicMode.FULL


def _memo_fullmatch(rx: re.Pattern):
    """`arg -> bool`, memoised: shims repeat the same arguments constantly."""
    memo: dict[str, bool] = {}
    fullmatch = rx.fullmatch

    def check(arg: str) -> bool:
        hit = memo.get(arg)
        if hit is None:
            if len(memo) >= _MEMO_LIMIT:
                memo.clear()
            hit = memo[arg] = fullmatch(arg) is not None
        return hit

    return check


class Plan:
    """What is fixed for one (identity, syscall) pair under one policy version."""

    __slots__ = ("policy", "adjustment", "identity_failure", "mode", "allowed_reason")

    def __init__(self, policy, adjustment, identity_failure, mode, allowed_reason):
        self.policy: CompiledSyscallPolicy | None = policy
        self.adjustment: float = adjustment
        self.identity_failure: tuple[ReasonCode, str] | None = identity_failure
        self.mode: EnforcementMode = mode
        self.allowed_reason: str = allowed_reason


class CompiledPolicy:
    """A validated policy graph in its indexed form, with its digest."""

    def __init__(self, graph: ZtaPolicyGraph):
        self.graph = graph
        self.version = graph.version
        self.canonical_json = canonical_json(graph)
        self.digest = digest(self.canonical_json)
        self.mode = graph.enforcement_mode
        self.default_allow = graph.default_action is DefaultAction.ALLOW
        self.trust_model = graph.trust_model
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
        self._plans: dict[tuple[str, str], Plan] = {}

    def lookup(self, syscall: str) -> CompiledSyscallPolicy | None:
        """Exact key first, then the first glob key in document order (SPEC §2.3)."""
        hit = self._exact.get(syscall)
        if hit is not None:
            return hit
        for matches, c in self._globbed:
            if matches(syscall):
                return c
        return None

    def plan(self, identity: str, syscall: str) -> Plan:
        key = (identity, syscall)
        p = self._plans.get(key)
        if p is None:
            if len(self._plans) >= _MEMO_LIMIT:
                self._plans.clear()
            p = self._plans[key] = self._make_plan(identity, syscall)
        return p

    def _make_plan(self, identity: str, syscall: str) -> Plan:
        adjustment = sum_adjustments([
            adj for id_match, sys_patterns, adj in self._rules
            if id_match(identity) and (sys_patterns is None or sys_patterns.matches(syscall))
        ])
        policy = self.lookup(syscall)
        if policy is None:
            return Plan(None, adjustment, None, self.mode,
                        f"{syscall} has no policy; the default action allows it")
        return Plan(policy, adjustment, _identity_failure(policy, identity, syscall), policy.mode,
                    f"{syscall} complies with policy {policy.key}")


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
