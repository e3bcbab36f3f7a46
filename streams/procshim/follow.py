"""The actuator's and the gate's view of Kafka: one consumer thread.

It reads `trust.quarantine`, `trust.redzone-events`, (for gates)
`trust.decisions` and (unless a policy file is pinned) `trust.policy` from
their ends as they were when the shim started (positions fixed before the
program runs, so nothing published after that is missed; the policy topic
from just after the last document the shim read at start), keeps only what
can concern this shim (process ids with its program's prefix, decisions for
its identity, every policy document) and hands it to the supervisor's loop
through a queue, waking it with a byte on a pipe.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from typing import Any

from streams.codec.avro import codec
from streams.errors import ConfigError, TrustError
from streams.settings import Settings

log = logging.getLogger(__name__)

SCHEMAS = {"quarantine": "QuarantineCommand", "redzone": "RedzoneEvent", "decisions": "DecisionBatch",
           "policy": "PolicyDocument"}


class Follower(threading.Thread):
    def __init__(self, settings: Settings, kinds: list[str], *, process_prefix: str, identity_id: str,
                 wake_fd: int, timeout: float = 15.0):
        super().__init__(name="procshim-follower", daemon=True)
        self.settings = settings
        self.kinds = kinds
        self.prefix = process_prefix
        self.identity_id = identity_id
        self.wake_fd = wake_fd
        self.timeout = timeout
        self.inbox: queue.SimpleQueue[tuple[str, dict[str, Any]]] = queue.SimpleQueue()
        self._halt = threading.Event()
        self._topics = {settings.topic(k): k for k in kinds}
        self._decoders = {settings.topic(k): _decoder(k) for k in kinds}
        self._consumer = None

    def assign_at_end(self, starts: dict[tuple[str, int], int] | None = None) -> None:
        """Fix every partition's start at its current end, or at `starts[(topic, partition)]`
        (blocks; raises ConfigError)."""
        from confluent_kafka import OFFSET_END, KafkaException, TopicPartition

        from streams.kafka import clients

        consumer = clients.consumer(self.settings, f"forgeone-shim-{os.getpid()}",
                                    **{"auto.offset.reset": "latest", "fetch.wait.max.ms": 10})
        parts = []
        try:
            meta = consumer.list_topics(timeout=self.timeout)
            for topic in self._topics:
                t = meta.topics.get(topic)
                if t is None or t.error is not None:
                    raise ConfigError(f"topic `{topic}` is not available; run `trustctl topics ensure`")
                for p in t.partitions:
                    _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=self.timeout)
                    start = (starts or {}).get((topic, p), high if high >= 0 else OFFSET_END)
                    parts.append(TopicPartition(topic, p, start))
            consumer.assign(parts)
        except KafkaException as exc:
            consumer.close()
            raise ConfigError(f"cannot follow the redzone on {self.settings.kafka_bootstrap}: {exc}") from exc
        except TrustError:
            consumer.close()
            raise
        self._consumer = consumer

    def run(self) -> None:
        consumer = self._consumer
        if consumer is None:
            return
        try:
            while not self._halt.is_set():
                msg = consumer.poll(0.1)
                if msg is None:
                    continue
                if msg.error() is not None:
                    log.warning("follower: %s", msg.error())
                    continue
                kind = self._topics.get(msg.topic())
                try:
                    record = self._decoders[msg.topic()](msg.value())
                except TrustError as exc:
                    log.warning("follower: %s offset %d: %s", msg.topic(), msg.offset(), exc)
                    continue
                self._route(kind, record)
        finally:
            consumer.close()

    def _route(self, kind: str | None, record: dict[str, Any]) -> None:
        if kind == "decisions":
            mine = [d for d in record["decisions"] if d["identity"]["id"] == self.identity_id]
            if not mine:
                return
            self.inbox.put(("decisions", {"decisions": mine, "received": time.monotonic()}))
        elif kind == "policy":
            self.inbox.put((kind, record))
        elif kind in ("quarantine", "redzone"):
            if not str(record.get("process_id", "")).startswith(self.prefix):
                return
            self.inbox.put((kind, record))
        else:
            return
        try:
            os.write(self.wake_fd, b"k")
        except (BlockingIOError, OSError):
            pass

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(5)


def _decoder(kind: str):
    if kind == "policy":  # also documents written before the signature fields existed
        from streams.policy_topic import decode_policy

        return decode_policy
    return codec(SCHEMAS[kind]).decode
