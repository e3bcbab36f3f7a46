"""Policy hot reload: every worker reads the whole compacted policy topic.

Not a Faust agent: agents share partitions across workers, but every worker
needs every policy.  A plain aiokafka consumer without a group reads the
topic from the beginning, accepts each valid document in order (a refused
one is logged with its errors, recorded in the history with its reason,
counted in the metrics, and the running version stays), marks the worker
ready once the newest is loaded, then follows new ones.

A poisoned record (a tombstone, bytes that are not a PolicyDocument, an
envelope whose canonical JSON is not JSON or nests too deep) is refused
like an invalid document: whatever it raises, the watcher neither stops nor
crashes the worker, so a restart reading the same record starts as well.

With TRUST_POLICY_VERIFY_KEYS set, a document must also be signed by one of
those keys, after the document in force (:class:`streams.policy_topic.PolicyGate`,
docs/security.md).  The keys are loaded when the watcher is built: a key that
does not load stops the worker rather than leaving it unprotected.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from aiokafka import AIOKafkaConsumer

from streams.kafka import clients
from streams.metrics import DecideMetrics
from streams.policy.compiled import CompiledPolicy
from streams.policy.history import PolicyHistory, PolicyRefusal
from streams.policy_topic import PolicyGate, decode_policy
from streams.settings import Settings
from streams.signing import load_keyring

log = logging.getLogger("forgeone.trust.policy")


class PolicyWatcher:
    def __init__(self, settings: Settings, metrics: DecideMetrics | None = None):
        self.settings = settings
        self.metrics = metrics if metrics is not None else DecideMetrics()
        keys = settings.policy_verify_keys
        self.gate = PolicyGate(load_keyring(keys) if keys else None)
        self.history: PolicyHistory = self.gate.history
        self.ready = asyncio.Event()
        self.on_switch: Callable[[CompiledPolicy], None] | None = None

    @property
    def current(self) -> CompiledPolicy | None:
        return self.history.current

    @property
    def signing_enabled(self) -> bool:
        """True when only documents signed by a trusted key are accepted."""
        return self.gate.signing_enabled

    @property
    def refused(self) -> list[tuple[str, str]]:
        """(version, "reason: message") of every refused document, oldest first."""
        return [(r.version, f"{r.reason.value}: {r.message}") for r in self.history.refusals()]

    def refusals(self) -> list[PolicyRefusal]:
        return self.history.refusals()

    def offer(self, envelope: dict) -> bool:
        """Accept one published envelope, or log why not; True if it became current."""
        version = _clip(envelope.get("version", "?"))
        refused = len(self.history.refusals())
        try:
            before = self.history.current
            cp = self.gate.offer(envelope)
        except Exception as exc:  # the gate raises TrustError; anything else is refused all the same
            if len(self.history.refusals()) == refused:
                self.gate.refuse_undecodable(f"{type(exc).__name__}: {exc}")
            reason = self.history.refusals()[-1].reason.value
            self.metrics.bump(self.metrics.policy_refused, reason)
            running = self.current.version if self.current else "none"
            log.error("policy %s refused (%s), running version stays %s: %s", version, reason, running, _clip(exc))
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
        if self.signing_enabled:
            log.info("policy signing on: only documents signed by key(s) %s are accepted",
                     ", ".join(self.gate.keyring.ids()))
        else:
            log.info("policy signing off (TRUST_POLICY_VERIFY_KEYS unset): signatures are not checked")
        await consumer.start()
        decode = decode_policy
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
                        self._offer_bytes(decode, m.value, m.offset)
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

    def _offer_bytes(self, decode, value: bytes | None, offset: int = -1) -> None:
        try:
            envelope = decode(value)
        except Exception as exc:  # CodecError, a tombstone included; a decoder bug too
            self.gate.refuse_undecodable(exc)
            self.metrics.bump(self.metrics.policy_refused, "undecodable")
            log.error("policy record at offset %d ignored (undecodable), running version stays %s: %s",
                      offset, self.current.version if self.current else "none", exc)
            return
        self.offer(envelope)


def _clip(value: object, limit: int = 300) -> str:
    """A value for a log line: a poisoned record must not write a megabyte of log."""
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"
