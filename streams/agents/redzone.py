"""Redzone agent: quarantine commands applied to Redis; every worker's view follows.

Redis unreachable: the agent retries the same command with back-off and
says so; it neither crashes nor drops a command (the stream waits).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streams.agents.decide import Emit, Source, utc_now
from streams.codec.avro import codec
from streams.errors import CodecError, RedzoneError
from streams.redzone.store import RedisRedzoneStore
from streams.redzone.view import LocalRedzoneView
from streams.settings import Settings

log = logging.getLogger("forgeone.trust.redzone")
UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)
MAX_BACKOFF = 30.0


def redis_client(settings: Settings) -> aioredis.Redis:
    return aioredis.Redis.from_url(settings.redis_url, password=settings.redis_password,
                                   protocol=settings.redis_protocol, socket_timeout=10,
                                   socket_connect_timeout=5, health_check_interval=30)


def settings_prefix(settings: Settings) -> str:
    return settings.redis_prefix + "redzone:"


async def with_retry(what: str, fn, *args: Any):
    """Run `fn` until Redis answers, backing off from 0.2 s to 30 s."""
    delay = 0.2
    while True:
        try:
            return await fn(*args)
        except UNREACHABLE as exc:
            log.warning("redis unreachable while %s (%s); retrying in %.1fs", what, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_BACKOFF)


class RedzoneApplier:
    def __init__(self, settings: Settings):
        self.settings = settings
        self._store: RedisRedzoneStore | None = None
        self._command = codec("QuarantineCommand")
        self._event = codec("RedzoneEvent")
        self._dlq = codec("DeadLetter")

    @property
    def store(self) -> RedisRedzoneStore:
        if self._store is None:
            self._store = RedisRedzoneStore(redis_client(self.settings), settings_prefix(self.settings))
        return self._store

    async def handle(self, key: bytes | None, value: bytes, source: Source) -> list[Emit]:
        try:
            cmd = self._command.decode(value)
        except CodecError as exc:
            return [self._dead(key, value, source, str(exc), "undecodable")]
        now = utc_now()
        try:
            if cmd["op"] == "quarantine":
                _, event = await with_retry(f"quarantining {cmd['process_id']}",
                                            self.store.quarantine, cmd, now)
            else:
                target = {"analyze": "analyzing", "terminate": "terminated", "recover": "recovered"}[cmd["op"]]
                _, event = await with_retry(f"{cmd['op']} {cmd['process_id']}", self.store.transition,
                                            cmd["process_id"], target, cmd["source"], now, cmd["reason"],
                                            cmd["command_id"])
        except RedzoneError as exc:
            log.warning("redzone refused command %s: %s", cmd["command_id"], exc)
            return [self._dead(key, value, source, str(exc), exc.code)]
        if event is None:
            return []
        return [Emit("redzone", cmd["process_id"].encode(), self._event.encode(event))]

    def _dead(self, key, value, source: Source, reason: str, code: str) -> Emit:
        return Emit("dlq", key, self._dlq.encode({
            "topic": source.topic, "partition": source.partition, "offset": source.offset,
            "key": key, "value": value, "reason": reason, "error_code": code,
            "event_index": None, "timestamp": utc_now()}))


def quarantine_backlog(settings: Settings) -> int:
    """Commands on the quarantine topic that this app's group has not applied yet."""
    from streams.kafka.admin import group_lag

    return sum(group_lag(settings, ["quarantine"]).values())


class RedzoneFollower:
    """Keeps a worker's LocalRedzoneView in step with Redis: resync, then follow.

    `ready` is set once the view is trustworthy: the quarantine commands
    published before this worker started are applied (or a deadline passed,
    which is logged) and the view is loaded from Redis.  The decide agent
    waits for it, so a restarted worker never decides a quarantined process's
    events as if it were free.
    """

    CATCH_UP_DEADLINE = 30.0

    def __init__(self, settings: Settings, view: LocalRedzoneView):
        self.settings = settings
        self.view = view
        self.store = RedisRedzoneStore(redis_client(settings), settings_prefix(settings))
        self.ready = asyncio.Event()

    async def catch_up(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.CATCH_UP_DEADLINE
        while True:
            try:
                backlog = await loop.run_in_executor(None, quarantine_backlog, self.settings)
            except Exception as exc:  # the broker's answer is advisory here
                log.warning("cannot measure the quarantine backlog: %s", exc)
                return
            if backlog <= 0:
                return
            if loop.time() > deadline:
                log.warning("%d quarantine commands still unapplied after %.0fs; deciding anyway",
                            backlog, self.CATCH_UP_DEADLINE)
                return
            await asyncio.sleep(0.2)  # poll: the redzone agent is applying them

    async def _resync(self) -> None:
        self.view.replace_all(await self.store.all())
        self.ready.set()

    async def run(self) -> None:
        await self.catch_up()
        delay = 0.2
        while True:
            try:
                await self.store.follow(self.view.apply, on_subscribed=self._resync)
            except UNREACHABLE as exc:
                log.warning("redis unreachable for the redzone view (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
