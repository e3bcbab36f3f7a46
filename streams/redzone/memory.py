"""In-memory redzone store (offline replay, unit tests): same state machine as Redis."""

from __future__ import annotations

from typing import Any, Mapping

from streams.errors import UnknownProcessError
from streams.redzone.model import (
    QuarantinedProcess,
    QuarantineStatus,
    RedzoneStatus,
    apply_quarantine,
    apply_transition,
    summarize,
)


class InMemoryRedzone:
    def __init__(self) -> None:
        self._processes: dict[str, QuarantinedProcess] = {}
        self.events: list[dict] = []

    def quarantine(self, cmd: Mapping[str, Any], now: str) -> QuarantinedProcess:
        updated, event = apply_quarantine(self._processes.get(cmd["process_id"]), cmd, now)
        self._processes[updated.process_id] = updated
        if event is not None:
            self.events.append(event)
        return updated

    def get_quarantined_process(self, process_id: str) -> QuarantinedProcess:
        try:
            return self._processes[process_id]
        except KeyError:
            raise UnknownProcessError(f"process `{process_id}` is not in the redzone") from None

    def transition(self, process_id: str, target: QuarantineStatus | str, actor: str,
                   now: str) -> QuarantinedProcess:
        updated, event = apply_transition(self.get_quarantined_process(process_id), target, actor, now)
        self._processes[process_id] = updated
        self.events.append(event)
        return updated

    def isolation_of(self, process_id: str):
        """The process's isolation while it is Active or Analyzing, else None."""
        p = self._processes.get(process_id)
        return p.isolation if p is not None and p.in_redzone else None

    def list(self, status: QuarantineStatus | None = None) -> list[QuarantinedProcess]:
        return [p for p in self._processes.values() if status is None or p.status is status]

    def status(self) -> RedzoneStatus:
        return summarize(self._processes.values())
