"""The decision path, top to bottom: event -> evaluate -> decide -> records to emit.

`TrustEngine` is pure: it holds the running policy, the adaptive trust table
(any mutable mapping: a dict offline, a Faust table in the stream) and a
redzone view, and turns each event into the records docs/behaviour.md §2 says to emit.
Emitting them is the caller's business (replay writes JSON lines; the decide
agent produces to Kafka).

A quarantine command's forensic trace is bounded, so a command always fits in
one Kafka record whatever the events carried (docs/behaviour.md, "Where the
reference is silent"): each argument (and event id, syscall name) of a trace
entry is cut to `TRACE_ARG_BYTES` of UTF-8 with a marker saying how long it
was, the arguments of one entry to `TRACE_ENTRY_BYTES` (the rest replaced by
one marker), and the whole trace to about `TRACE_BYTES`, the oldest entries
left out first.  Decisions themselves are not cut here.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, MutableMapping, Protocol

from streams.events import identity_record
from streams.oversize import cap_strings, cap_text, utf8_size
from streams.policy.compiled import CompiledPolicy
from streams.policy.evaluate import Isolation, evaluate
from streams.policy.model import (
    Action,
    EnforcementMode,
    ForensicMode,
    PolicyEvaluationResult,
    SyscallContext,
)

_QUARANTINE_NS = uuid.UUID("6f1c2b52-31c6-4a8e-9a53-4d5f0f6e2a10")
_FROM_VIEW = object()
ENFORCE = EnforcementMode.ENFORCE
PERMISSIVE = EnforcementMode.PERMISSIVE


class RedzoneView(Protocol):
    """What the engine needs of the redzone: look up, and quarantine at once."""

    def isolation_of(self, process_id: str) -> Isolation | None: ...

    def quarantine(self, cmd: dict[str, Any], now: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """One event's decision and the records it causes."""

    result: PolicyEvaluationResult
    decision: dict[str, Any]
    violation: dict[str, Any] | None = None
    quarantine: dict[str, Any] | None = None


def decision_record(ctx: SyscallContext, r: PolicyEvaluationResult) -> dict[str, Any]:
    """docs/behaviour.md §2.1 fields, in that order."""
    return {
        "event_id": ctx.event_id, "syscall": ctx.syscall, "args": list(ctx.args),
        "identity": identity_record(ctx.identity), "allowed": r.allowed,
        "action": r.action.value,
        "reason_code": None if r.reason_code is None else r.reason_code.value,
        "reason": r.reason, "trust_score": r.trust_score, "policy_version": r.policy_version,
        "mode": r.mode.value, "enforced": r.enforced, "timestamp": r.timestamp,
        "event_timestamp": ctx.timestamp,
    }


def violation_record(decision: dict[str, Any], r: PolicyEvaluationResult,
                     trust_before: float) -> dict[str, Any]:
    v = {k: decision[k] for k in ("event_id", "syscall", "args", "identity", "reason_code",
                                  "reason", "action", "mode", "enforced", "trust_score",
                                  "policy_version", "timestamp", "event_timestamp")}
    v["trust_after"] = r.trust_after if r.trust_after is not None else trust_before
    return v


TRACE_ARG_BYTES = 1024  # one argument (or event id, syscall name) of a trace entry, UTF-8, marker included
TRACE_ENTRY_BYTES = 16 * 1024  # all the arguments of one trace entry
TRACE_BYTES = 256 * 1024  # one command's trace, about (its strings plus ENTRY_OVERHEAD per entry)
ENTRY_OVERHEAD = 96  # bytes counted per entry for its fixed fields


def trace_entry(decision: dict[str, Any], mode: ForensicMode) -> dict[str, Any]:
    """One past decision as a forensic trace entry, its strings capped; metadata mode drops arguments."""
    return {
        "event_id": cap_text(decision["event_id"], TRACE_ARG_BYTES),
        "syscall": cap_text(decision["syscall"], TRACE_ARG_BYTES),
        "args": (cap_strings(decision["args"], TRACE_ARG_BYTES, TRACE_ENTRY_BYTES)
                 if mode is ForensicMode.FULL else None),
        "allowed": decision["allowed"], "action": decision["action"],
        "reason_code": decision["reason_code"], "trust_score": decision["trust_score"],
        "policy_version": decision["policy_version"], "timestamp": decision["timestamp"],
    }


def _entry_size(entry: dict[str, Any]) -> int:
    size = ENTRY_OVERHEAD + utf8_size(entry["event_id"]) + utf8_size(entry["syscall"])
    return size + sum(map(utf8_size, entry["args"] or ()))


def forensic_trace(history: deque | None, mode: ForensicMode) -> list[dict[str, Any]]:
    """The trace of a command, oldest first: the newest entries that fit in TRACE_BYTES
    (the newest always, being at most TRACE_ENTRY_BYTES plus its capped names)."""
    if mode is ForensicMode.NONE or not history:
        return []
    trace: list[dict[str, Any]] = []
    used = 0
    for decision in reversed(history):
        entry = trace_entry(decision, mode)
        used += _entry_size(entry)
        if used > TRACE_BYTES and trace:
            break
        trace.append(entry)
    trace.reverse()
    return trace


def quarantine_command(ctx: SyscallContext, r: PolicyEvaluationResult,
                       history: deque | None, now: str) -> dict[str, Any]:
    """The QuarantineCommand a violation causes; its id derives from the event id,
    so a redelivered event yields the same command and the redzone ignores it."""
    mode = r.forensic_mode
    trace = forensic_trace(history, mode)
    level = r.isolation_level.value
    return {
        "command_id": str(uuid.uuid5(_QUARANTINE_NS, f"{ctx.identity.id}/{ctx.event_id}")),
        "op": "quarantine", "process_id": ctx.identity.process_id,
        "container_id": ctx.identity.container_id, "identity": identity_record(ctx.identity),
        "reason": r.reason, "reason_code": r.reason_code.value if r.reason_code else None,
        "isolation_level": level, "isolation_syscalls": list(r.isolation_syscalls),
        "forensic_mode": mode.value, "trace": trace, "policy_version": r.policy_version,
        "source": "engine", "event_id": ctx.event_id, "timestamp": now,
    }


class TrustEngine:
    """Decides events in order, keeping adaptive trust and the forensic history."""

    def __init__(self, policy: CompiledPolicy, redzone: RedzoneView,
                 trust: MutableMapping[str, float] | None = None, trace_depth: int = 64,
                 sign_quarantine: Callable[[dict[str, Any]], dict[str, Any]] | None = None):
        """`sign_quarantine`: command -> the signed command (docs/security.md); None: unsigned."""
        self.policy = policy
        self.redzone = redzone
        self.trust: MutableMapping[str, float] = {} if trust is None else trust
        self.trace_depth = trace_depth
        self.sign_quarantine = sign_quarantine
        self._history: dict[str, deque] = {}

    def use_policy(self, policy: CompiledPolicy) -> None:
        """Switch policy version; later decisions carry the new version."""
        self.policy = policy

    def decide(self, ctx: SyscallContext, now: str, *, update_trust: bool = True,
               isolation: Isolation | None | object = _FROM_VIEW) -> Outcome:
        """Decide one event.  `update_trust=False` replays a redelivered event
        without penalising or rewarding it a second time; `isolation`, when
        given, is the process's isolation to decide with (else the view's)."""
        identity = ctx.identity.id
        t = self.trust.get(identity)
        if isolation is _FROM_VIEW:
            isolation = self.redzone.isolation_of(ctx.identity.process_id)
        r = evaluate(self.policy, ctx, t, isolation, now)
        decision = decision_record(ctx, r)
        if update_trust and r.trust_after is not None:
            self.trust[identity] = r.trust_after
        history = self._history.get(identity)
        if history is None:
            history = self._history[identity] = deque(maxlen=self.trace_depth)
        history.append(decision)
        if r.reason_code is None or r.mode is PERMISSIVE:
            return Outcome(r, decision)
        before = self.policy.trust_model.baseline if t is None else t
        command = None
        if r.mode is ENFORCE and r.action is Action.QUARANTINE:
            command = quarantine_command(ctx, r, history, now)
            if self.sign_quarantine is not None:
                command = self.sign_quarantine(command)
            self.redzone.quarantine(command, now)
        return Outcome(r, decision, violation_record(decision, r, before), command)

    def forget_history(self, identity: str) -> None:
        """After a recovery the identity starts a new forensic trace."""
        self._history.pop(identity, None)

    def reset_trust(self, identity: str) -> None:
        """Recovery (docs/behaviour.md §3) in process: the identity starts again from the baseline."""
        self.trust[identity] = self.policy.trust_model.baseline
        self.forget_history(identity)
