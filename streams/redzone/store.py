"""What callers need of a redzone store: one protocol, two implementations.

    RedzoneStore
    ├── InMemoryRedzoneStore   streams/redzone/memory.py: a dict (unit tests, offline)
    └── RedisRedzoneStore      streams/redzone/redis_store.py: Redis, the stream's source of truth

A store decides nothing itself: every change runs the pure state machine of
`model.py` on the state it read, and the store persists the result
atomically (of two racing writers exactly one transition wins), remembers
nothing for a command already applied, and tells its followers.  Callers:
the operators' service (`service.py`), the redzone agent and the worker's
view follower (the redzone agent module).  One contract suite runs
against both implementations (`tests/integration/test_redzone_store_contract.py`).

A store that cannot reach its backend raises RedzoneUnavailable (an outage,
retry later); UnknownProcessError and TransitionError are refusals.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Mapping, Protocol, runtime_checkable

from streams.redzone.model import QuarantinedProcess, QuarantineStatus

OnChange = Callable[[QuarantinedProcess], Awaitable[None] | None]


@runtime_checkable
class RedzoneStore(Protocol):
    async def quarantine(self, cmd: Mapping[str, Any], now: str) -> tuple[QuarantinedProcess, dict | None]:
        """Apply a QuarantineCommand record: create the entry or widen it.

        A command already applied (same `command_id`) changes nothing and
        yields no event."""
        ...

    async def transition(self, process_id: str, target: QuarantineStatus | str, actor: str, now: str,
                         reason: str = "", command_id: str | None = None,
                         ) -> tuple[QuarantinedProcess, dict]:
        """Move a process; UnknownProcessError if absent, TransitionError (naming
        both states) if the state machine refuses; a refusal changes nothing."""
        ...

    async def get(self, process_id: str) -> QuarantinedProcess | None:
        ...

    async def all(self) -> list[QuarantinedProcess]:
        """Every process, whatever its status, ordered by process id."""
        ...

    async def follow(self, on_change: OnChange,
                     on_subscribed: Callable[[], Awaitable[None]] | None = None) -> None:
        """Call `on_change` with the new state of every process that changes, until cancelled.

        `on_subscribed` runs once changes are being captured, so a resync
        done there misses nothing."""
        ...

    async def close(self) -> None:
        ...
