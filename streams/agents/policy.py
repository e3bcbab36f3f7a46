"""Policy hot reload: every worker reads the whole compacted policy topic.

Not a Faust agent: agents share partitions across workers, but every worker
needs every policy.  A plain aiokafka consumer without a group reads the
topic from the beginning, accepts each valid document in order (a refused
one is logged with its errors and the running version stays), marks the
worker ready once the newest is loaded, then follows new ones.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from aiokafka import AIOKafkaConsumer

from streams.codec.avro import codec
from streams.errors import TrustError
from streams.kafka import clients
from streams.policy.compiled import CompiledPolicy
from streams.policy.history import PolicyHistory
from streams.policy_topic import compile_envelope
from streams.settings import Settings

log = logging.getLogger("forgeone.trust.policy")


class PolicyWatcher:
    def __init__(self, settings: Settings):
        self.settings = settings
        self.history = PolicyHistory()
        self.ready = asyncio.Event()
        self.on_switch: Callable[[CompiledPolicy], None] | None = None
        self.refused: list[tuple[str, str]] = []

    @property
    def current(self) -> CompiledPolicy | None:
        return self.history.current

    def offer(self, envelope: dict) -> bool:
        """Accept one published envelope, or log why not; True if it became current."""
        version = envelope.get("version", "?")
        try:
            before = self.history.current
            cp = self.history.accept(compile_envelope(envelope), envelope["published_at"])
        except TrustError as exc:
            self.refused.append((version, str(exc)))
            running = self.current.version if self.current else "none"
            log.error("policy %s refused, running version stays %s: %s", version, running, exc)
            return False
        if cp is not before:
            log.info("policy %s in force (sha256 %s)", cp.version, cp.digest[:16])
            if self.on_switch is not None:
                self.on_switch(cp)
        return True

    async def run(self) -> None:
        topic = self.settings.topic("policy")
        # No group: every partition is assigned to this consumer, from the start.
        consumer = AIOKafkaConsumer(topic, **clients.aiokafka_options(self.settings),
                                    group_id=None, enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        await consumer.start()
        decode = codec("PolicyDocument").decode
        pending: set | None = None  # partitions not yet read up to their end at start
        waited = 0
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=1000)
                if pending is None and consumer.assignment():
                    end = await consumer.end_offsets(list(consumer.assignment()))
                    pending = {tp for tp, offset in end.items() if offset > 0}
                for tp, messages in batches.items():
                    for m in messages:
                        self._offer_bytes(decode, m.value)
                        if pending is not None and m.offset + 1 >= end.get(tp, 0):
                            pending.discard(tp)
                if pending == set() and self.current is not None and not self.ready.is_set():
                    self.ready.set()
                elif not self.ready.is_set():
                    waited += 1
                    if waited % 10 == 1:
                        log.warning("no valid policy on %s yet: decisions wait until one is "
                                    "published (trustctl policy publish FILE)", topic)
        finally:
            await consumer.stop()

    def _offer_bytes(self, decode, value: bytes) -> None:
        try:
            envelope = decode(value)
        except TrustError as exc:
            log.error("undecodable policy message ignored: %s", exc)
            return
        self.offer(envelope)
