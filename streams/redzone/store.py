"""The redzone in Redis: the state machine of `model.py`, applied atomically.

Each process is one JSON value under ``{prefix}proc:{process_id}``, indexed by
the set ``{prefix}pids``.  Every change runs in WATCH/MULTI: read, decide with
the pure state machine, write; if another writer touched the key meanwhile
the transaction retries, so of two racing operators exactly one transition
wins and the other is refused naming the state it found.  Each change is also
PUBLISHed on ``{prefix}changes`` so every worker's view follows at once.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable, Mapping

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from streams.errors import UnknownProcessError
from streams.redzone.model import (
    QuarantinedProcess,
    QuarantineStatus,
    apply_quarantine,
    apply_transition,
)

Change = Callable[[QuarantinedProcess | None], tuple[QuarantinedProcess, dict | None]]


def _dump(p: QuarantinedProcess) -> str:
    return json.dumps(p.to_dict(), separators=(",", ":"))


def _load(raw: bytes | str | None) -> QuarantinedProcess | None:
    return None if raw is None else QuarantinedProcess.from_dict(json.loads(raw))


class RedisRedzoneStore:
    def __init__(self, client: aioredis.Redis, prefix: str = "trust:redzone:"):
        self.r = client
        self.prefix = prefix
        self.index_key = prefix + "pids"
        self.channel = prefix + "changes"

    def key(self, process_id: str) -> str:
        return f"{self.prefix}proc:{process_id}"

    async def _change(self, process_id: str, change: Change) -> tuple[QuarantinedProcess, dict | None]:
        key = self.key(process_id)
        async with self.r.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    updated, event = change(_load(await pipe.get(key)))
                    if event is None:
                        await pipe.unwatch()
                        return updated, None
                    body = _dump(updated)
                    pipe.multi()
                    pipe.set(key, body)
                    pipe.sadd(self.index_key, process_id)
                    pipe.publish(self.channel, body)
                    await pipe.execute()
                    return updated, event
                except WatchError:
                    continue

    async def quarantine(self, cmd: Mapping[str, Any], now: str) -> tuple[QuarantinedProcess, dict | None]:
        """Apply a QuarantineCommand; a command already applied yields no event."""
        return await self._change(cmd["process_id"], lambda existing: apply_quarantine(existing, cmd, now))

    async def transition(self, process_id: str, target: QuarantineStatus | str, actor: str, now: str,
                         reason: str = "", command_id: str | None = None,
                         ) -> tuple[QuarantinedProcess, dict]:
        """Move a process; TransitionError (naming both states) if the machine refuses."""
        def change(existing: QuarantinedProcess | None):
            if existing is None:
                raise UnknownProcessError(f"process `{process_id}` is not in the redzone")
            return apply_transition(existing, target, actor, now, reason, command_id)

        return await self._change(process_id, change)

    async def get(self, process_id: str) -> QuarantinedProcess | None:
        return _load(await self.r.get(self.key(process_id)))

    async def all(self) -> list[QuarantinedProcess]:
        pids = sorted(p.decode() if isinstance(p, bytes) else p for p in await self.r.smembers(self.index_key))
        if not pids:
            return []
        raws = await self.r.mget([self.key(p) for p in pids])
        return [p for p in map(_load, raws) if p is not None]

    async def follow(self, on_change: Callable[[QuarantinedProcess], Awaitable[None] | None],
                     on_subscribed: Callable[[], Awaitable[None]] | None = None) -> None:
        """Call `on_change` for every change published, until cancelled.

        `on_subscribed` runs once the subscription stands (a resync there
        misses nothing: later changes arrive as messages)."""
        pubsub = self.r.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(self.channel)
        try:
            if on_subscribed is not None:
                await on_subscribed()
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    result = on_change(_load(message["data"]))
                    if result is not None:
                        await result
        finally:
            await pubsub.aclose()
