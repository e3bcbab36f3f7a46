"""A worker's local view of the redzone: which processes are isolated, and how.

Redis is the source of truth.  The view is filled from it at start, follows
its change notifications, and applies the worker's own quarantines at once
(SPEC §3: effective for the very next event, before Redis confirms).
"""

from __future__ import annotations

from typing import Any, Mapping

from streams.redzone.model import Isolation, QuarantinedProcess


class LocalRedzoneView:
    def __init__(self) -> None:
        self._isolated: dict[str, Isolation] = {}

    def isolation_of(self, process_id: str) -> Isolation | None:
        return self._isolated.get(process_id)

    def quarantine(self, cmd: Mapping[str, Any], now: str) -> None:
        """Isolate at once; the union with what is known, as the redzone will do."""
        pid = cmd["process_id"]
        new = Isolation.of(cmd["isolation_level"], cmd.get("isolation_syscalls") or ())
        old = self._isolated.get(pid)
        self._isolated[pid] = new if old is None else old.union(new)

    def apply(self, process: QuarantinedProcess) -> None:
        """Follow the redzone: isolated while Active/Analyzing, released when final."""
        if process.in_redzone:
            self._isolated[process.process_id] = process.isolation
        else:
            self._isolated.pop(process.process_id, None)

    def replace_all(self, processes: list[QuarantinedProcess]) -> None:
        """A full resync from Redis, keeping local quarantines not yet confirmed."""
        confirmed = {p.process_id: p for p in processes}
        for p in processes:
            self.apply(p)
        for pid in [pid for pid in self._isolated if pid in confirmed and not confirmed[pid].in_redzone]:
            del self._isolated[pid]

    def __len__(self) -> int:
        return len(self._isolated)
