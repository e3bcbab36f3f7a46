"""A worker's local view of the redzone: which processes are isolated, and how.

Redis is the source of truth.  The view is filled from it at start and
follows its change notifications; the worker's own quarantines apply at once
(docs/behaviour.md §3: effective for the very next event, before Redis confirms) and stay
*pending* until Redis shows their command applied.  A process's isolation is
the union of what Redis confirmed and what is pending, so a notification
that is older than a local quarantine never narrows it.
"""

from __future__ import annotations

from typing import Any, Mapping

from streams.redzone.model import Isolation, QuarantinedProcess


class LocalRedzoneView:
    def __init__(self) -> None:
        self._isolated: dict[str, Isolation] = {}  # what the engine reads: the union
        self._confirmed: dict[str, Isolation] = {}  # Redis: Active/Analyzing only
        self._pending: dict[str, dict[str, Isolation]] = {}  # local commands not yet in Redis

    def isolation_of(self, process_id: str) -> Isolation | None:
        return self._isolated.get(process_id)

    def quarantine(self, cmd: Mapping[str, Any], now: str) -> None:
        """Isolate at once, pending until Redis confirms this command."""
        pid = cmd["process_id"]
        iso = Isolation.of(cmd["isolation_level"], cmd.get("isolation_syscalls") or ())
        self._pending.setdefault(pid, {})[cmd["command_id"]] = iso
        self._recompute(pid)

    def apply(self, process: QuarantinedProcess) -> None:
        """Follow Redis: confirmed while Active/Analyzing, released when final.

        The one way to load the view: a change notification and each process
        of a full resync are applied alike."""
        pid = process.process_id
        if process.in_redzone:
            self._confirmed[pid] = process.isolation
        else:
            self._confirmed.pop(pid, None)
        pending = self._pending.get(pid)
        if pending:
            for cid in process.command_ids:
                pending.pop(cid, None)
            if not pending:
                del self._pending[pid]
        self._recompute(pid)

    def _recompute(self, pid: str) -> None:
        parts = list(self._pending.get(pid, {}).values())
        if pid in self._confirmed:
            parts.append(self._confirmed[pid])
        if not parts:
            self._isolated.pop(pid, None)
            return
        iso = parts[0]
        for other in parts[1:]:
            iso = iso.union(other)
        self._isolated[pid] = iso

    def __len__(self) -> int:
        return len(self._isolated)
