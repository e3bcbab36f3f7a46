"""Redzone agent: quarantine commands applied to Redis; every worker's view follows.

Redis unreachable: the store raises RedzoneUnavailable; the agent retries the
same command with back-off and says so; it neither crashes nor drops a
command (the stream waits).  A refusal (RedzoneError) is final for its
command: it goes to the DLQ.  So does a record that is not a command (a
null value, bytes that do not decode) and one whose application fails
unexpectedly (logged with its traceback): the agent goes on with the next.
Retries and dead letters are counted in the worker's metrics.  Time comes
from the injected `clock`.

With TRUST_COMMAND_VERIFY_KEYS, every command must carry a signature by one
of those keys (streams/command_signature.py): an unsigned, forged or
unknown-key command, or a genuine transition issued before the process
entered the redzone (a replay), is logged and dead-lettered with its reason
and Redis is not touched.  With TRUST_ENGINE_SIGNING_KEY, the RedzoneEvents
it writes are signed.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Hashable, Mapping
from typing import Any, Awaitable, Callable

from streams import command_signature
from streams.agents.decide import Emit, Source
from streams.clock import utc_now
from streams.codec.avro import codec
from streams.errors import CodecError, RedzoneError, RedzoneUnavailable, SignatureError
from streams.metrics import DecideMetrics
from streams.redzone.redis_store import Backoff, redis_store, with_retry
from streams.redzone.store import RedzoneStore
from streams.redzone.view import LocalRedzoneView
from streams.settings import Settings

log = logging.getLogger("forgeone.trust.redzone")

TARGETS = {"analyze": "analyzing", "terminate": "terminated", "recover": "recovered"}


class RedzoneApplier:
    def __init__(self, settings: Settings, store: RedzoneStore | None = None,
                 clock: Callable[[], str] = utc_now,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 metrics: DecideMetrics | None = None):
        self.settings = settings
        self.clock = clock
        self.metrics = metrics if metrics is not None else DecideMetrics()
        self._sleep = sleep
        self._store = store
        self._event = codec("RedzoneEvent")
        self._dlq = codec("DeadLetter")
        self.keyring = command_signature.command_keyring(settings)  # None: signatures not checked
        self.signer = command_signature.signing_key(settings, command_signature.ENGINE, self.keyring)
        self.refused = 0

    @property
    def store(self) -> RedzoneStore:
        if self._store is None:
            self._store = redis_store(self.settings)
        return self._store

    def _retried(self) -> None:
        self.metrics.bump(self.metrics.redis_retries, "redzone_agent")

    async def handle(self, key: bytes | None, value: bytes | None, source: Source) -> list[Emit]:
        if value is None:
            return [self._dead(key, value, source, "a null value (a tombstone) is not a quarantine command",
                               "undecodable")]
        try:
            cmd = command_signature.decode("QuarantineCommand", value)
        except CodecError as exc:
            return [self._dead(key, value, source, str(exc), "undecodable")]
        except Exception as exc:  # a decoder bug must not stop the agent
            return [self._dead(key, value, source, f"undecodable: {type(exc).__name__}: {exc}", "undecodable")]
        if self.keyring is not None:
            try:
                await self._verify(cmd)
            except SignatureError as exc:
                command_signature.refuse(exc, f"{source.topic}[{source.partition}]@{source.offset}")
                self.refused += 1
                return [self._dead(key, value, source, str(exc), exc.reason)]
        now = self.clock()
        try:
            if cmd["op"] == "quarantine":
                _, event = await with_retry(f"quarantining {cmd['process_id']}", self.store.quarantine,
                                            cmd, now, sleep=self._sleep, on_retry=self._retried)
            else:
                _, event = await with_retry(f"{cmd['op']} {cmd['process_id']}", self.store.transition,
                                            cmd["process_id"], TARGETS[cmd["op"]], cmd["source"], now,
                                            cmd["reason"], cmd["command_id"], sleep=self._sleep,
                                            on_retry=self._retried)
        except RedzoneError as exc:
            log.warning("redzone refused command %s: %s", cmd["command_id"], exc)
            return [self._dead(key, value, source, str(exc), exc.code)]
        except Exception as exc:  # not an outage, not a refusal: keep the command, go on
            log.exception("redzone command %s could not be applied", cmd.get("command_id"))
            return [self._dead(key, value, source, f"could not be applied: {type(exc).__name__}: {exc}",
                               "apply_failed")]
        if event is None:
            return []
        if self.signer is not None:
            event = command_signature.sign_record("RedzoneEvent", event, self.signer)
        return [Emit("redzone", cmd["process_id"].encode(), self._event.encode(event))]

    async def _verify(self, cmd: dict) -> None:
        """SignatureError unless `cmd` is signed by a trusted key and, for a transition,
        issued after its process entered the redzone."""
        command_signature.verify_record("QuarantineCommand", cmd, self.keyring)
        if cmd["op"] != "quarantine":
            pid = cmd["process_id"]
            current = await with_retry(f"reading {pid}", self.store.get, pid, sleep=self._sleep)
            if current is not None:
                command_signature.check_not_before("QuarantineCommand", cmd, current.quarantined_at,
                                                   f"process `{pid}` entered the redzone")

    def _dead(self, key, value, source: Source, reason: str, code: str) -> Emit:
        self.metrics.bump(self.metrics.dlq, code)
        return Emit("dlq", key, self._dlq.encode({
            "topic": source.topic, "partition": source.partition, "offset": source.offset,
            "key": key, "value": b"" if value is None else value, "reason": reason, "error_code": code,
            "event_index": None, "timestamp": self.clock()}))


def quarantine_positions(settings: Settings) -> dict[tuple[str, int], tuple[int, int]]:
    """(topic, partition) of the quarantine topic -> (this app's committed offset, high watermark)."""
    from streams.kafka.admin import group_positions

    return group_positions(settings, ["quarantine"])


def unapplied(targets: Mapping[Hashable, int], committed: Mapping[Hashable, int]) -> int:
    """Commands below `targets` (an offset per partition) that `committed` has not passed (pure)."""
    return sum(max(0, end - committed.get(tp, 0)) for tp, end in targets.items())


class RedzoneFollower:
    """Keeps a worker's LocalRedzoneView in step with Redis: catch up, resync, then follow.

    `ready` is set once the view is trustworthy: every quarantine command
    published before this worker started is applied to Redis (the engine
    group's committed offsets on the quarantine topic reach the ends read at
    start) and the view is loaded from Redis.  The decide agent waits for it,
    so a restarted worker never decides a quarantined process's events as if
    it were free.  There is no deadline (fail closed): while commands stay
    unapplied (Redis down, the redzone agent stuck) the worker decides
    nothing and says so every `WARN_EVERY` seconds; a broker that cannot
    answer is retried with back-off.
    """

    WARN_EVERY = 30.0
    POLL = 0.2  # seconds between two reads of the group's commits

    def __init__(self, settings: Settings, view: LocalRedzoneView, store: RedzoneStore | None = None,
                 sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                 metrics: DecideMetrics | None = None,
                 positions: Callable[[], Mapping[Hashable, tuple[int, int]]] | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.metrics = metrics if metrics is not None else DecideMetrics()
        self.view = view
        self.store = store if store is not None else redis_store(settings)
        self.ready = asyncio.Event()
        self.unapplied: int | None = None  # commands still to apply before deciding (None: not read yet)
        self._backoff = Backoff()
        self._sleep = sleep
        self._positions = positions if positions is not None else functools.partial(quarantine_positions, settings)
        self._clock = clock

    async def _read_positions(self) -> Mapping[Hashable, tuple[int, int]]:
        """The group's positions; a broker that does not answer is retried with back-off."""
        loop = asyncio.get_running_loop()
        backoff = Backoff()
        while True:
            try:
                return await loop.run_in_executor(None, self._positions)
            except Exception as exc:  # noqa: BLE001 - any broker failure: wait, never decide blind
                delay = backoff.next()
                log.warning("cannot read the quarantine topic's commits (%s); not deciding yet, "
                            "retrying in %.1fs", exc, delay)
                await self._sleep(delay)

    async def catch_up(self) -> None:
        """Return once every quarantine command published before now is applied."""
        targets = {tp: high for tp, (_, high) in (await self._read_positions()).items()}
        started = warned = self._clock()
        while True:
            committed = {tp: pos for tp, (pos, _) in (await self._read_positions()).items()}
            self.unapplied = unapplied(targets, committed)
            if self.unapplied <= 0:
                return
            now = self._clock()
            if now - warned >= self.WARN_EVERY:
                warned = now
                log.warning("%d quarantine command(s) published before this worker started are still "
                            "unapplied after %.0fs (is Redis up? the redzone agent's log says); "
                            "deciding nothing until they are", self.unapplied, now - started)
            await self._sleep(self.POLL)  # the redzone agent is applying them

    async def _resync(self) -> None:
        for process in await self.store.all():
            self.view.apply(process)
        self._backoff.reset()
        self.ready.set()

    async def run(self) -> None:
        await self.catch_up()
        await self.follow()

    async def follow(self) -> None:
        """Resync and follow until cancelled; an outage is waited out with back-off."""
        while True:
            try:
                await self.store.follow(self.view.apply, on_subscribed=self._resync)
            except RedzoneUnavailable as exc:
                self.metrics.bump(self.metrics.redis_retries, "redzone_view")
                delay = self._backoff.next()
                log.warning("%s for the redzone view; retrying in %.1fs", exc, delay)
                await self._sleep(delay)
            except Exception:  # a value in Redis that does not load: resync rather than stop the worker
                delay = self._backoff.next()
                log.exception("the redzone view could not follow Redis; resyncing in %.1fs", delay)
                await self._sleep(delay)
