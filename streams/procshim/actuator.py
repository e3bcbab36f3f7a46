"""The actuator's decisions (docs/behaviour.md §3.1), pure: no Kafka, no cgroups, time passed in.

It follows the quarantine commands and redzone transitions that name the
shim's own processes and answers each with steps for the supervisor:

| redzone state / isolation                  | step                                         |
|--------------------------------------------|----------------------------------------------|
| active/analyzing, network/filesystem/custom| covered syscalls denied (EPERM) from now on  |
| active/analyzing, full                     | freeze the workload                          |
| terminated                                 | kill the workload                            |
| recovered                                  | thaw (if frozen) and lift every denial       |

A custom isolation naming a syscall the filter does not trap cannot be
enforced by denial; the actuator fails closed and freezes instead.  Freezing
and killing act on the whole workload the shim launched (its cgroup, or its
process tree): the unit a shim controls, like a container.

Each executed step becomes an EnforcementAction record (:meth:`record`).
Descendants started after a quarantine inherit it (:meth:`inherit`), so a
fork does not escape an isolation.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any

from streams.policy.glob import compile_glob
from streams.procshim.syscall_table import X86_64 as _KNOWN
from streams.redzone.model import Isolation

IN_REDZONE = ("active", "analyzing")
MEMORY = 4096  # command / transition ids remembered, for idempotent redelivery


class Op(str, Enum):
    DENY = "deny"
    FREEZE = "freeze"
    THAW = "thaw"
    KILL = "kill"
    LIFT = "lift"


@dataclass(frozen=True, slots=True)
class Step:
    """One thing the supervisor must do, and what it answers."""

    op: Op
    process_id: str
    reason: str
    command_id: str | None = None  # the quarantine command answered
    transition_id: str | None = None  # the redzone event answered
    violating_event_id: str | None = None
    since: float | None = None  # epoch seconds the delay is measured from
    syscall: str | None = None
    event_id: str | None = None  # the denied call's own event


@dataclass(slots=True)
class _Entry:
    status: str
    isolation: Isolation
    command_id: str | None
    transition_id: str | None
    violating_event_id: str | None
    since: float | None


def parse_time(ts: str | None) -> float | None:
    if not ts:
        return None
    try:
        return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


class Actuator:
    def __init__(self, *, identity_id: str, container_id: str | None, shim_id: str,
                 classes: Mapping[str, frozenset[str]] | Mapping[str, tuple[str, ...]],
                 trapped: frozenset[str], owned: Callable[[str], bool],
                 event_time: Callable[[str], float | None] = lambda _e: None):
        self.identity_id = identity_id
        self.container_id = container_id
        self.shim_id = shim_id
        self.classes = {k: frozenset(v) for k, v in classes.items()}
        self.trapped = trapped
        self.owned = owned
        self.event_time = event_time
        self._entries: dict[str, _Entry] = {}
        self._isolated: dict[str, Isolation] = {}  # the hot path reads only this
        self._frozen_by: set[str] = set()
        self._killed = False
        self._seen: OrderedDict[str, None] = OrderedDict()

    # -- the hot path -------------------------------------------------------------

    def deny(self, process_id: str, syscall: str, event_id: str | None = None) -> Step | None:
        """The deny step for this call, or None when it may run."""
        iso = self._isolated.get(process_id)
        if iso is None or not iso.covers(syscall, self.classes):
            return None
        e = self._entries[process_id]
        return Step(Op.DENY, process_id, f"{syscall} is covered by the {_level(iso)} isolation of "
                    f"{process_id}", e.command_id, e.transition_id, e.violating_event_id, e.since,
                    syscall, event_id)

    @property
    def frozen(self) -> bool:
        return bool(self._frozen_by)

    @property
    def isolated(self) -> Mapping[str, Isolation]:
        return self._isolated

    # -- following the redzone ------------------------------------------------------

    def on_command(self, cmd: Mapping[str, Any]) -> list[Step]:
        """A QuarantineCommand (engine or operator) from `trust.quarantine`."""
        pid = cmd.get("process_id")
        if not pid or not self.owned(pid) or self._remember(cmd.get("command_id")):
            return []
        op = cmd.get("op", "quarantine")
        violating = cmd.get("event_id")
        since = (self.event_time(violating) if violating else None) or parse_time(cmd.get("timestamp"))
        refs = dict(command_id=cmd.get("command_id"), violating_event_id=violating, since=since)
        if op == "quarantine":
            iso = Isolation.of(cmd["isolation_level"], cmd.get("isolation_syscalls") or ())
            return self._enter(pid, "active", iso, cmd.get("reason") or "quarantined", refs)
        if op == "analyze":
            e = self._entries.get(pid)
            if e is not None and e.status in IN_REDZONE:
                e.status = "analyzing"
            return []
        if op == "terminate":
            return self._terminate(pid, cmd.get("reason") or "terminated", refs)
        if op == "recover":
            return self._recover(pid, cmd.get("reason") or "recovered", refs)
        return []

    def on_transition(self, ev: Mapping[str, Any]) -> list[Step]:
        """A RedzoneEvent from `trust.redzone-events`."""
        pid = ev.get("process_id")
        if not pid or not self.owned(pid) or self._remember(ev.get("event_id")):
            return []
        to = ev.get("to_status")
        prior = self._entries.get(pid)
        refs = dict(command_id=ev.get("command_id") or (prior.command_id if prior else None),
                    transition_id=ev.get("event_id"),
                    violating_event_id=prior.violating_event_id if prior else None,
                    since=parse_time(ev.get("timestamp")))
        if to in IN_REDZONE:
            iso = Isolation.of(ev["isolation_level"], ev.get("isolation_syscalls") or ())
            return self._enter(pid, to, iso, ev.get("reason") or to, refs)
        if to == "terminated":
            return self._terminate(pid, ev.get("reason") or "terminated", refs)
        if to == "recovered":
            return self._recover(pid, ev.get("reason") or "recovered", refs)
        return []

    @property
    def in_redzone(self) -> bool:
        """Whether any process of this shim is in the redzone (a new one may inherit)."""
        return bool(self._entries)

    def inherit(self, child: str, parent: str) -> None:
        """A process started by an isolated one is isolated the same way."""
        e = self._entries.get(parent)
        if e is None or e.status not in IN_REDZONE or child in self._entries:
            return
        self._entries[child] = _Entry(e.status, e.isolation, e.command_id, e.transition_id,
                                      e.violating_event_id, e.since)
        if not e.isolation.is_full:
            self._isolated[child] = e.isolation

    # -- records --------------------------------------------------------------------

    def record(self, step: Step, *, mechanism: str, signal: str | None, now: float,
               timestamp: str) -> dict[str, Any]:
        """The EnforcementAction for an executed step."""
        delay = None if step.since is None else round(max(0.0, now - step.since) * 1000, 3)
        return {
            "action_id": str(uuid.uuid4()), "shim_id": self.shim_id, "process_id": step.process_id,
            "identity_id": self.identity_id, "container_id": self.container_id,
            "action": step.op.value, "syscall": step.syscall, "signal": signal,
            "mechanism": mechanism, "command_id": step.command_id,
            "transition_id": step.transition_id, "event_id": step.event_id,
            "violating_event_id": step.violating_event_id, "delay_ms": delay,
            "reason": step.reason, "timestamp": timestamp,
        }

    # -- internals --------------------------------------------------------------------

    def _remember(self, rid: str | None) -> bool:
        """True when this id was handled already."""
        if not rid:
            return False
        if rid in self._seen:
            return True
        self._seen[rid] = None
        if len(self._seen) > MEMORY:
            self._seen.popitem(last=False)
        return False

    def _enter(self, pid: str, status: str, iso: Isolation, reason: str, refs: dict) -> list[Step]:
        if self._killed:
            return []
        e = self._entries.get(pid)
        if e is not None and e.status in IN_REDZONE:
            e.status = status
            e.isolation = e.isolation.union(iso)  # isolation never narrows
            for k in ("command_id", "transition_id", "violating_event_id", "since"):
                if getattr(e, k) is None and refs.get(k) is not None:
                    setattr(e, k, refs[k])
        else:
            e = self._entries[pid] = _Entry(status, iso, refs.get("command_id"), refs.get("transition_id"),
                                            refs.get("violating_event_id"), refs.get("since"))
        untrapped = self._untrapped(e.isolation)
        if e.isolation.is_full or untrapped:
            self._isolated.pop(pid, None)
            if pid in self._frozen_by:
                return []
            first = not self._frozen_by
            self._frozen_by.add(pid)
            if not first:
                return []
            why = (f"{pid} is quarantined with full isolation ({reason})" if e.isolation.is_full else
                   f"{pid} is isolated from {', '.join(untrapped)}, which this shim does not trap: "
                   f"frozen instead ({reason})")
            return [Step(Op.FREEZE, pid, why, e.command_id, e.transition_id, e.violating_event_id, e.since)]
        self._isolated[pid] = e.isolation
        return []

    def _terminate(self, pid: str, reason: str, refs: dict) -> list[Step]:
        e = self._entries.get(pid)
        if e is not None:
            e.status = "terminated"
        self._isolated.pop(pid, None)
        if self._killed:
            return []
        self._killed = True
        return [Step(Op.KILL, pid, f"{pid} terminated ({reason})", refs.get("command_id"),
                     refs.get("transition_id"), refs.get("violating_event_id"), refs.get("since"))]

    def _recover(self, pid: str, reason: str, refs: dict) -> list[Step]:
        e = self._entries.get(pid)
        if e is None or e.status not in IN_REDZONE:
            return []
        e.status = "recovered"
        steps = []
        args = (refs.get("command_id"), refs.get("transition_id"), e.violating_event_id, refs.get("since"))
        # Descendants that inherited this quarantine are released with it.
        released = [p for p, x in self._entries.items() if x.status in IN_REDZONE and
                    x.command_id == e.command_id and x.violating_event_id == e.violating_event_id]
        for p in [pid] + [p for p in released if p != pid]:
            self._entries[p].status = "recovered"
            self._isolated.pop(p, None)
            was_frozen = bool(self._frozen_by)
            self._frozen_by.discard(p)
            if was_frozen and not self._frozen_by:
                steps.append(Step(Op.THAW, pid, f"{pid} recovered ({reason})", *args))
        steps.append(Step(Op.LIFT, pid, f"{pid} recovered: nothing denied any more ({reason})", *args))
        return steps

    def _untrapped(self, iso: Isolation) -> list[str]:
        """Syscalls the isolation names explicitly that the filter does not trap."""
        if iso.is_full:
            return []
        missing = []
        for pattern in iso.syscalls:
            match = compile_glob(pattern)
            if not any(match(n) for n in self.trapped):
                missing.append(pattern)
        for level in iso.levels:
            for name in self.classes.get(level.value, ()):
                if name not in self.trapped and name in _KNOWN and name not in missing:
                    missing.append(name)
        return missing


def _level(iso: Isolation) -> str:
    level, names = iso.as_fields()
    return level if not names else f"{level} ({', '.join(names)})"

