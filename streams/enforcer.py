"""The seed's enforcement API: `SyscallEnforcer.enforce(ctx)` for in-process use.

A thin wrapper over :class:`streams.engine.TrustEngine` with an in-memory
redzone, for embedding the engine in a shim or a test harness without Kafka.

    enforcer = SyscallEnforcer(load_policy_file("policy.yaml"), trace_enabled=True)
    action = enforcer.enforce(ctx)
    if action in (None, ViolationAction.WARN):
        ...  # the syscall may proceed
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from typing import Any, Protocol

from streams.clock import utc_now
from streams.engine import TrustEngine
from streams.policy.compiled import CompiledPolicy
from streams.policy.model import (
    Action,
    EnforcementMode,
    PolicyEvaluationResult,
    SyscallContext,
    ZtaPolicyGraph,
)
from streams.redzone.memory import InMemoryRedzone


class ViolationHandler(Protocol):
    """Chooses what to do about an event that failed a check."""

    def on_violation(self, ctx: SyscallContext, result: PolicyEvaluationResult) -> Action: ...


class DefaultViolationHandler:
    """docs/behaviour.md §2 step 6: the policy's `violation_action`; else `quarantine` when
    the trust after the penalty falls below the quarantine threshold; else
    `block` (and always `block` for an already-quarantined process).

    The evaluator already computed exactly that action (it needs it for the
    outcome table), so the default handler takes it as is; a custom handler
    may escalate or soften it.
    """

    def on_violation(self, ctx: SyscallContext, result: PolicyEvaluationResult) -> Action:
        return result.action


@dataclass(frozen=True, slots=True)
class SyscallTrace:
    """One enforcement decision, as recorded when tracing is on."""

    event_id: str
    identity_id: str
    process_id: str
    syscall: str
    action: Action
    allowed: bool
    decision: dict[str, Any]


class SyscallEnforcer:
    """Evaluate and enforce syscalls in process, keeping adaptive trust and a redzone."""

    def __init__(self, policy_graph: CompiledPolicy | ZtaPolicyGraph, trace_enabled: bool = False,
                 enforcement_mode: EnforcementMode | str | None = None,
                 violation_handler: ViolationHandler | None = None, trace_limit: int = 10_000):
        graph = policy_graph.graph if isinstance(policy_graph, CompiledPolicy) else policy_graph
        if enforcement_mode is not None:
            graph = replace(graph, enforcement_mode=EnforcementMode(enforcement_mode))
        self.redzone = InMemoryRedzone()
        self.engine = TrustEngine(CompiledPolicy(graph), self.redzone)
        self.trace_enabled = trace_enabled
        self.violation_handler = violation_handler or DefaultViolationHandler()
        self.traces: deque[SyscallTrace] = deque(maxlen=trace_limit)

    def enforce(self, ctx: SyscallContext, now: str | None = None) -> Action | None:
        """None when the syscall may proceed; otherwise the ViolationAction taken
        (`warn` proceeds too, but says so)."""
        outcome = self.engine.decide(ctx, now or utc_now())
        r = outcome.result
        action = None
        if r.reason_code is not None and r.enforced:
            action = self.violation_handler.on_violation(ctx, r)
        if self.trace_enabled:
            self.traces.append(SyscallTrace(
                ctx.event_id, ctx.identity.id, ctx.identity.process_id, ctx.syscall,
                r.action if action is None else action, r.allowed, outcome.decision))
        return action
