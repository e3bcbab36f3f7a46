"""The redzone state machine (docs/behaviour.md §3) as pure code.

    active -> analyzing -> terminated | recovered
    active -> terminated | recovered

`terminated` and `recovered` are final.  Every function here returns the new
state and the RedzoneEvent record describing it; stores persist both.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Callable, Iterable, Mapping

from streams.errors import TransitionError, UnknownProcessError
from streams.policy.glob import compile_glob
from streams.policy.model import ForensicMode, IsolationLevel

TRACE_LIMIT = 1024  # forensic trace entries kept per process (oldest dropped)
COMMAND_MEMORY = 64  # command ids remembered per process, for idempotent redelivery


class QuarantineStatus(str, Enum):
    ACTIVE = "active"
    ANALYZING = "analyzing"
    TERMINATED = "terminated"
    RECOVERED = "recovered"

    @property
    def in_redzone(self) -> bool:
        """Active and Analyzing processes are isolated; final ones are not."""
        return self in (QuarantineStatus.ACTIVE, QuarantineStatus.ANALYZING)


ACTIVE, ANALYZING = QuarantineStatus.ACTIVE, QuarantineStatus.ANALYZING
TERMINATED, RECOVERED = QuarantineStatus.TERMINATED, QuarantineStatus.RECOVERED

TRANSITIONS: Mapping[QuarantineStatus, frozenset[QuarantineStatus]] = {
    ACTIVE: frozenset({ANALYZING, TERMINATED, RECOVERED}),
    ANALYZING: frozenset({TERMINATED, RECOVERED}),
    TERMINATED: frozenset(),
    RECOVERED: frozenset(),
}


def check_transition(process_id: str, current: QuarantineStatus, target: QuarantineStatus) -> None:
    """Raise TransitionError naming both states unless current -> target is allowed."""
    if target not in TRANSITIONS[current]:
        final = " (it is final)" if not TRANSITIONS[current] else ""
        raise TransitionError(
            f"process `{process_id}` cannot go from `{current.value}` to `{target.value}`{final}"
        )


def unknown_process(process_id: str) -> UnknownProcessError:
    """The one refusal for a process id no store holds."""
    return UnknownProcessError(f"process `{process_id}` is not in the redzone")


@dataclass(frozen=True, slots=True)
class Isolation:
    """What a quarantine blocks: whole classes and/or custom names and globs.

    A union of different levels is kept exactly; as a single (level, list)
    pair it is written as `custom` with `@class` entries for whole classes.
    """

    levels: frozenset[IsolationLevel] = frozenset()
    syscalls: tuple[str, ...] = ()

    @classmethod
    def of(cls, level: IsolationLevel | str, syscalls: Iterable[str] = ()) -> "Isolation":
        level = IsolationLevel(level)
        names = tuple(syscalls)
        if level is IsolationLevel.CUSTOM:
            classes = frozenset(IsolationLevel(n[1:]) for n in names if n.startswith("@"))
            return cls(classes, tuple(n for n in names if not n.startswith("@")))
        return cls(frozenset({level}))

    @property
    def is_full(self) -> bool:
        return IsolationLevel.FULL in self.levels

    def union(self, other: "Isolation") -> "Isolation":
        """Isolation only widens: the union of what both cover."""
        if self.is_full or other.is_full:
            return Isolation(frozenset({IsolationLevel.FULL}))
        names = self.syscalls + tuple(s for s in other.syscalls if s not in self.syscalls)
        return Isolation(self.levels | other.levels, names)

    def covers(self, syscall: str, classes: Mapping[str, frozenset[str]]) -> bool:
        if self.is_full:
            return True
        for level in self.levels:
            if syscall in classes.get(level.value, ()):
                return True
        return any(compile_glob(p)(syscall) for p in self.syscalls)

    def as_fields(self) -> tuple[str, list[str]]:
        """(isolation_level, isolation_syscalls) for records."""
        if self.is_full:
            return "full", []
        if len(self.levels) == 1 and not self.syscalls:
            return next(iter(self.levels)).value, []
        return "custom", sorted(f"@{lv.value}" for lv in self.levels) + list(self.syscalls)


@dataclass(frozen=True, slots=True)
class QuarantinedProcess:
    process_id: str
    identity_id: str
    status: QuarantineStatus
    isolation: Isolation
    forensic_mode: ForensicMode
    reason: str
    quarantined_at: str
    updated_at: str
    container_id: str | None = None
    reason_code: str | None = None
    policy_versions: tuple[str, ...] = ()
    trace: tuple[dict, ...] = ()
    command_ids: tuple[str, ...] = ()
    history: tuple[dict, ...] = field(default=())

    @property
    def in_redzone(self) -> bool:
        return self.status.in_redzone

    def to_dict(self) -> dict[str, Any]:
        level, names = self.isolation.as_fields()
        return {
            "process_id": self.process_id, "identity_id": self.identity_id,
            "container_id": self.container_id, "status": self.status.value,
            "isolation_level": level, "isolation_syscalls": names,
            "forensic_mode": self.forensic_mode.value, "reason": self.reason,
            "reason_code": self.reason_code, "quarantined_at": self.quarantined_at,
            "updated_at": self.updated_at, "policy_versions": list(self.policy_versions),
            "trace": list(self.trace), "command_ids": list(self.command_ids),
            "history": list(self.history),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "QuarantinedProcess":
        return cls(
            process_id=d["process_id"], identity_id=d["identity_id"],
            status=QuarantineStatus(d["status"]),
            isolation=Isolation.of(d["isolation_level"], d.get("isolation_syscalls") or ()),
            forensic_mode=ForensicMode(d["forensic_mode"]), reason=d["reason"],
            quarantined_at=d["quarantined_at"], updated_at=d["updated_at"],
            container_id=d.get("container_id"), reason_code=d.get("reason_code"),
            policy_versions=tuple(d.get("policy_versions") or ()),
            trace=tuple(d.get("trace") or ()), command_ids=tuple(d.get("command_ids") or ()),
            history=tuple(d.get("history") or ()),
        )


@dataclass(frozen=True, slots=True)
class RedzoneStatus:
    """How many processes are in each state: the redzone at a glance."""

    counts: Mapping[str, int]

    @property
    def isolated(self) -> int:
        return self.counts.get("active", 0) + self.counts.get("analyzing", 0)


def _event(p: QuarantinedProcess, before: QuarantineStatus | None, reason: str,
           actor: str, command_id: str | None, now: str) -> dict[str, Any]:
    level, names = p.isolation.as_fields()
    return {
        "event_id": str(uuid.uuid4()), "process_id": p.process_id, "identity_id": p.identity_id,
        "from_status": None if before is None else before.value, "to_status": p.status.value,
        "isolation_level": level, "isolation_syscalls": names, "reason": reason,
        "actor": actor, "command_id": command_id, "timestamp": now,
    }


def apply_quarantine(existing: QuarantinedProcess | None, cmd: Mapping[str, Any],
                     now: str) -> tuple[QuarantinedProcess, dict | None]:
    """Quarantine a process (a QuarantineCommand record), or widen an existing entry.

    A command already applied (same `command_id`) changes nothing and yields
    no event: redelivery is harmless.
    """
    command_id = cmd["command_id"]
    isolation = Isolation.of(cmd["isolation_level"], cmd.get("isolation_syscalls") or ())
    trace = tuple(cmd.get("trace") or ())
    version = cmd.get("policy_version")
    actor = cmd.get("source") or "engine"
    if existing is not None and command_id in existing.command_ids:
        return existing, None
    if existing is not None and existing.in_redzone:
        updated = replace(
            existing,
            isolation=existing.isolation.union(isolation),
            trace=(existing.trace + trace)[-TRACE_LIMIT:],
            policy_versions=_add(existing.policy_versions, version),
            command_ids=(existing.command_ids + (command_id,))[-COMMAND_MEMORY:],
            updated_at=now,
        )
        return updated, _event(updated, existing.status, f"quarantined again: {cmd['reason']}",
                               actor, command_id, now)
    identity = cmd["identity"]
    created = QuarantinedProcess(
        process_id=cmd["process_id"], identity_id=identity["id"], status=ACTIVE,
        isolation=isolation, forensic_mode=ForensicMode(cmd["forensic_mode"]),
        reason=cmd["reason"], quarantined_at=now, updated_at=now,
        container_id=cmd.get("container_id"), reason_code=cmd.get("reason_code"),
        policy_versions=_add((), version), trace=trace[-TRACE_LIMIT:], command_ids=(command_id,),
        history=({"from": None, "to": "active", "at": now, "actor": actor},),
    )
    return created, _event(created, None, cmd["reason"], actor, command_id, now)


def apply_transition(existing: QuarantinedProcess, target: QuarantineStatus | str, actor: str,
                     now: str, reason: str = "", command_id: str | None = None,
                     ) -> tuple[QuarantinedProcess, dict]:
    """Move a process to `target`, or raise TransitionError and change nothing."""
    target = QuarantineStatus(target)
    check_transition(existing.process_id, existing.status, target)
    step = {"from": existing.status.value, "to": target.value, "at": now, "actor": actor}
    updated = replace(existing, status=target, updated_at=now, history=existing.history + (step,))
    return updated, _event(updated, existing.status, reason or f"{target.value} by {actor}",
                           actor, command_id, now)


Change = Callable[[QuarantinedProcess | None], tuple[QuarantinedProcess, dict | None]]
"""A store's unit of work: the state it read (None if absent) -> the new state and its event.

Stores run a Change inside their atomic read-write (an event of None means
nothing to write)."""


def quarantining(cmd: Mapping[str, Any], now: str) -> Change:
    """The change `apply_quarantine` makes for this command."""
    return lambda existing: apply_quarantine(existing, cmd, now)


def moving(process_id: str, target: QuarantineStatus | str, actor: str, now: str,
           reason: str = "", command_id: str | None = None) -> Change:
    """The change `apply_transition` makes; UnknownProcessError if the process is absent."""
    def change(existing: QuarantinedProcess | None) -> tuple[QuarantinedProcess, dict | None]:
        if existing is None:
            raise unknown_process(process_id)
        return apply_transition(existing, target, actor, now, reason, command_id)
    return change


def _add(versions: tuple[str, ...], version: str | None) -> tuple[str, ...]:
    return versions if version is None or version in versions else versions + (version,)


def summarize(processes: Iterable[QuarantinedProcess]) -> RedzoneStatus:
    counts: dict[str, int] = {}
    for p in processes:
        counts[p.status.value] = counts.get(p.status.value, 0) + 1
    return RedzoneStatus(counts)
