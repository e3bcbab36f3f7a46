"""What the trust table holds per identity, and how it is written (docs/reliability.md).

A `TrustEntry` is the identity's adaptive trust (docs/behaviour.md §2.3) plus
what makes redelivery decide exactly as the first delivery did:

- `offset`: the events-topic offset of the last batch applied to this
  identity.  A batch at or below it was applied before (a redelivery after a
  crash: at-least-once) and must not change trust again.
- `steps`: for every batch applied since the partition's last known offset
  commit, its offset, the trust *before* it, and the quarantines it caused
  (event index, process id, the isolation in force before).  A redelivered
  batch is decided from its own step: the same trust, the same isolation, so
  the same decisions.  Steps below the committed offset can never be
  redelivered and are dropped.
- `control_id`: the last trust reset applied (a redelivered reset does nothing);
  `control_at`: its timestamp (with signed commands, an older reset is a replay).

Pure: plain data and a JSON-ready form for the changelog; no Faust, Kafka or Redis.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MAX_STEPS = 10_000  # per identity: a commit stalled for minutes must not grow an entry forever


@dataclass(frozen=True, slots=True)
class QuarantineMark:
    """A quarantine this identity's decision caused, at (batch offset, event index)."""

    index: int
    process_id: str
    before: tuple[str, tuple[str, ...]] | None  # isolation (level, syscalls) in force before it


@dataclass(frozen=True, slots=True)
class Step:
    offset: int
    trust_before: float | None
    quarantines: tuple[QuarantineMark, ...] = ()


@dataclass(frozen=True, slots=True)
class TrustEntry:
    trust: float | None = None
    offset: int = -1
    steps: tuple[Step, ...] = ()
    control_id: str | None = None
    control_at: str | None = None

    def step_at(self, offset: int) -> Step | None:
        for step in self.steps:
            if step.offset == offset:
                return step
        return None

    def isolation_before(self, process_id: str, offset: int, index: int) -> tuple[bool, Any]:
        """For a redelivered event at (offset, index): (True, isolation in force then)
        if a later step's quarantine of its process must be ignored, else (False, None)."""
        for step in self.steps:
            if step.offset < offset:
                continue
            for q in step.quarantines:
                if q.process_id == process_id and (step.offset > offset or q.index >= index):
                    return True, q.before
        return False, None

    def applied(self, offset: int, trust: float | None, step: Step, committed: int | None) -> "TrustEntry":
        """This entry after applying the batch at `offset` (its step recorded)."""
        keep = self.steps
        if committed is not None and keep and keep[0].offset < committed:  # steps are in offset order
            keep = tuple(s for s in keep if s.offset >= committed)
        steps = keep + (step,)
        if len(steps) > MAX_STEPS:
            steps = steps[-MAX_STEPS:]
        return TrustEntry(trust, offset, steps, self.control_id, self.control_at)

    def reset(self, trust: float, control_id: str, control_at: str | None = None) -> "TrustEntry":
        """A trust reset: new trust; the steps stay, so a batch applied before the
        reset and redelivered after it is still decided as it was the first time."""
        return TrustEntry(trust, self.offset, self.steps, control_id, control_at)

    # -- changelog form (JSON-ready) -----------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "trust": self.trust, "offset": self.offset, "control_id": self.control_id,
            "control_at": self.control_at,
            "steps": [[s.offset, s.trust_before,
                       [[q.index, q.process_id, None if q.before is None else [q.before[0], list(q.before[1])]]
                        for q in s.quarantines]] for s in self.steps],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrustEntry":
        steps = tuple(
            Step(o, t, tuple(QuarantineMark(i, p, None if b is None else (b[0], tuple(b[1]))) for i, p, b in qs))
            for o, t, qs in d.get("steps", ()))
        return cls(d.get("trust"), d.get("offset", -1), steps, d.get("control_id"), d.get("control_at"))

    @classmethod
    def of(cls, value: Any) -> "TrustEntry | None":
        """An entry as the table holds it: itself, or its JSON form after a
        restore from the changelog (None: unseen)."""
        if value is None or isinstance(value, TrustEntry):
            return value
        return cls.from_dict(value)
