"""The redzone in memory: the same state machine as Redis, on a dict.

:class:`InMemoryRedzoneStore` is the RedzoneStore (async, like Redis) for
unit tests and anything run without Redis.  :class:`InMemoryRedzone` is the
engine's redzone offline (replay, the in-process enforcer): the engine's
synchronous `RedzoneView` over such a store, so no event loop is needed.
Pure: no Redis, no Kafka.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Mapping

from streams.redzone.model import (
    Change,
    Isolation,
    QuarantinedProcess,
    QuarantineStatus,
    RedzoneStatus,
    moving,
    quarantining,
    summarize,
    unknown_process,
)
from streams.redzone.store import OnChange


class InMemoryRedzoneStore:
    """RedzoneStore on a dict; `events` keeps every RedzoneEvent it produced."""

    def __init__(self) -> None:
        self.processes: dict[str, QuarantinedProcess] = {}
        self.events: list[dict] = []
        self._followers: list[asyncio.Queue[QuarantinedProcess]] = []

    def apply(self, process_id: str, change: Change) -> tuple[QuarantinedProcess, dict | None]:
        """Read, decide with the pure state machine, write, tell followers: the one way state changes."""
        updated, event = change(self.processes.get(process_id))
        if event is not None:
            self.processes[process_id] = updated
            self.events.append(event)
            for queue in self._followers:
                queue.put_nowait(updated)
        return updated, event

    async def quarantine(self, cmd: Mapping[str, Any], now: str) -> tuple[QuarantinedProcess, dict | None]:
        return self.apply(cmd["process_id"], quarantining(cmd, now))

    async def transition(self, process_id: str, target: QuarantineStatus | str, actor: str, now: str,
                         reason: str = "", command_id: str | None = None,
                         ) -> tuple[QuarantinedProcess, dict]:
        return self.apply(process_id, moving(process_id, target, actor, now, reason,  # type: ignore[return-value]
                                                  command_id))

    async def get(self, process_id: str) -> QuarantinedProcess | None:
        return self.processes.get(process_id)

    async def all(self) -> list[QuarantinedProcess]:
        return [self.processes[pid] for pid in sorted(self.processes)]

    async def follow(self, on_change: OnChange,
                     on_subscribed: Callable[[], Awaitable[None]] | None = None) -> None:
        queue: asyncio.Queue[QuarantinedProcess] = asyncio.Queue()
        self._followers.append(queue)
        try:
            if on_subscribed is not None:
                await on_subscribed()
            while True:
                result = on_change(await queue.get())
                if result is not None:
                    await result
        finally:
            self._followers.remove(queue)

    async def close(self) -> None:
        return None


class InMemoryRedzone:
    """The engine's redzone offline: look up and quarantine at once, synchronously."""

    def __init__(self, store: InMemoryRedzoneStore | None = None) -> None:
        self.store = store if store is not None else InMemoryRedzoneStore()

    @property
    def events(self) -> list[dict]:
        return self.store.events

    def quarantine(self, cmd: Mapping[str, Any], now: str) -> QuarantinedProcess:
        return self.store.apply(cmd["process_id"], quarantining(cmd, now))[0]

    def get_quarantined_process(self, process_id: str) -> QuarantinedProcess:
        try:
            return self.store.processes[process_id]
        except KeyError:
            raise unknown_process(process_id) from None

    def transition(self, process_id: str, target: QuarantineStatus | str, actor: str,
                   now: str) -> QuarantinedProcess:
        return self.store.apply(process_id, moving(process_id, target, actor, now))[0]

    def isolation_of(self, process_id: str) -> Isolation | None:
        """The process's isolation while it is Active or Analyzing, else None."""
        p = self.store.processes.get(process_id)
        return p.isolation if p is not None and p.in_redzone else None

    def list(self, status: QuarantineStatus | None = None) -> list[QuarantinedProcess]:
        return [p for p in self.store.processes.values() if status is None or p.status is status]

    def status(self) -> RedzoneStatus:
        return summarize(self.store.processes.values())
