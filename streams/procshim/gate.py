"""Gated calls held until the engine decides (pure; time passed in).

A gated call's notification is not answered at once: it waits here until the
engine's decision for its event arrives (allowed -> the call runs, not
allowed -> EPERM) or its deadline passes (the fallback: deny by default).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Held:
    event_id: str
    notification_id: int
    pid: int
    process_id: str
    syscall: str
    deadline: float
    held_at: float


class GateBook:
    def __init__(self, timeout: float, fallback_allow: bool = False):
        if timeout <= 0:
            raise ValueError(f"gate timeout must be above 0, got `{timeout}`")
        self.timeout = timeout
        self.fallback_allow = fallback_allow
        self._held: OrderedDict[str, Held] = OrderedDict()  # deadline order: one timeout for all

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, event_id: str, notification_id: int, pid: int, process_id: str, syscall: str,
             now: float) -> Held:
        h = Held(event_id, notification_id, pid, process_id, syscall, now + self.timeout, now)
        self._held[event_id] = h
        return h

    def resolve(self, event_id: str) -> Held | None:
        """Take the held call this decision answers (None: not held, or timed out already)."""
        return self._held.pop(event_id, None)

    def expired(self, now: float) -> list[Held]:
        out = []
        while self._held:
            first = next(iter(self._held.values()))
            if first.deadline > now:
                break
            out.append(self._held.popitem(last=False)[1])
        return out

    def next_deadline(self) -> float | None:
        for h in self._held.values():
            return h.deadline
        return None

    def drain(self) -> list[Held]:
        out = list(self._held.values())
        self._held.clear()
        return out
