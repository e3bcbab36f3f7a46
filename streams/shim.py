"""The shim SDK: send syscall events to `trust.syscall-events` in batches (SPEC §1.1).

A kernel shim calls :meth:`ShimProducer.send` for every event.  Events are
buffered per identity and leave as one ``SyscallEventBatch`` message (key =
identity id) when the identity's oldest buffered event has waited `linger_ms`
or the buffer holds `max_batch` events, whichever comes first.  There is no
background thread: batches leave from ``send``, ``poll`` and ``flush``, so a
shim that goes quiet must call ``poll()`` now and then (every millisecond or
so; ``poll(timeout)`` waits no longer than the next batch is due).

:class:`EventBatcher` is the pure part (no Kafka, time passed in);
:class:`ShimProducer` adds the Avro codec and a confluent-kafka producer,
created on the first batch, never in ``__init__``.

Every batch carries ``seq``, a per-shim counter increasing by one per batch.
The engine treats a batch whose seq is not above the last one it applied for
(identity, shim_id) as a redelivery, so a shim that restarts must either use
a new ``shim_id`` (the default, hostname-pid, does) or pass a ``first_seq``
above every seq it sent before.

Not thread-safe: use one ShimProducer per thread, or a lock around it.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from streams.codec.avro import codec
from streams.errors import ConfigError, EventError
from streams.settings import Settings

log = logging.getLogger(__name__)

DEFAULT_LINGER_MS = 5.0
DEFAULT_MAX_BATCH = 100
QUEUE_FULL_TIMEOUT = 5.0  # seconds send() waits for room in a full local queue


def default_shim_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class EventBatcher:
    """Per-identity event buffers that turn into batches by age or size.

    Pure: the caller passes the current monotonic time.  Buffers are kept in
    the order they were opened, so finding the due ones stops at the first
    that is not due.
    """

    __slots__ = ("linger", "max_events", "_buffers", "_count")

    def __init__(self, linger: float = DEFAULT_LINGER_MS / 1000, max_events: int = DEFAULT_MAX_BATCH):
        if not linger >= 0:
            raise ConfigError(f"linger must be 0 or more seconds, got `{linger}`")
        if max_events < 1:
            raise ConfigError(f"a batch must hold at least 1 event, got `{max_events}`")
        self.linger = linger
        self.max_events = max_events
        self._buffers: dict[str, tuple[float, list]] = {}  # identity -> (due at, events)
        self._count = 0

    def __len__(self) -> int:
        """Events buffered, in all identities."""
        return self._count

    def add(self, identity: str, event: Any, now: float) -> list | None:
        """Buffer `event`; return the identity's batch if this filled it."""
        entry = self._buffers.get(identity)
        if entry is None:
            entry = self._buffers[identity] = (now + self.linger, [])
        events = entry[1]
        events.append(event)
        self._count += 1
        if len(events) >= self.max_events:
            del self._buffers[identity]
            self._count -= len(events)
            return events
        return None

    def due(self, now: float) -> list[tuple[str, list]]:
        """Take the batches whose oldest event has waited `linger` or more."""
        ready = []
        for identity, (due_at, _) in self._buffers.items():
            if now < due_at:
                break
            ready.append(identity)
        return [self._take(identity) for identity in ready]

    def drain(self) -> list[tuple[str, list]]:
        """Take every buffered batch, oldest first."""
        return [self._take(identity) for identity in list(self._buffers)]

    def next_due(self) -> float | None:
        """When the oldest buffer is due (monotonic time), or None if all are empty."""
        for due_at, _ in self._buffers.values():
            return due_at
        return None

    def _take(self, identity: str) -> tuple[str, list]:
        _, events = self._buffers.pop(identity)
        self._count -= len(events)
        return identity, events


class ProducerLike(Protocol):
    """The part of ``confluent_kafka.Producer`` the shim uses (tests pass a fake)."""

    def produce(self, topic: str, value: bytes, key: bytes, on_delivery: Callable) -> None: ...
    def poll(self, timeout: float) -> int: ...
    def flush(self, timeout: float) -> int: ...
    def __len__(self) -> int: ...


def _confluent_producer(config: dict[str, Any]) -> ProducerLike:
    from confluent_kafka import Producer

    return Producer(config)


@dataclass(slots=True)
class ShimCounters:
    """What happened to the events handed to the producer so far."""

    batches_sent: int = 0  # handed to the Kafka client
    events_sent: int = 0
    batches_delivered: int = 0  # acknowledged by the broker
    events_delivered: int = 0
    batches_failed: int = 0  # refused by the broker, timed out, or not encodable
    events_failed: int = 0


class ShimProducer:
    """Batches syscall events per identity and produces them as SyscallEventBatch values."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        shim_id: str | None = None,
        topic: str | None = None,
        linger_ms: float = DEFAULT_LINGER_MS,
        max_batch: int = DEFAULT_MAX_BATCH,
        schema_id: int | None = None,
        config: Mapping[str, Any] | None = None,
        validate: bool = True,
        first_seq: int = 0,
        producer_factory: Callable[[dict[str, Any]], ProducerLike] = _confluent_producer,
        clock: Callable[[], float] = time.monotonic,
    ):
        """No network here: the Kafka producer is created with the first batch.

        `config` entries override the producer defaults (librdkafka names).
        `schema_id` switches values to Confluent wire format with that id.
        `validate` checks every event strictly in ``send`` (about half the
        cost of encoding it); without it a bad event makes its whole batch fail.
        """
        settings = settings or Settings.from_env()
        self.shim_id = shim_id or default_shim_id()
        self.topic = topic or settings.topic("events")
        self.counters = ShimCounters()
        self._config = {
            "bootstrap.servers": settings.kafka_bootstrap,
            "client.id": f"forgeone-shim-{self.shim_id}",
            # Java's and aiokafka's default partitioner: an identity's events
            # land on the partition every other client computes for its key.
            "partitioner": "murmur2_random",
            # The shim already lingers per identity; librdkafka adds little.
            "linger.ms": 1,
            # Retries neither reorder nor duplicate an identity's batches.
            "enable.idempotence": True,
            "acks": "all",
            **(config or {}),
        }
        self._batcher = EventBatcher(linger_ms / 1000, max_batch)
        self._event_codec = codec("SyscallEvent")
        self._batch_codec = codec("SyscallEventBatch", schema_id=schema_id)
        self._validate = validate
        self._seq = first_seq
        self._producer_factory = producer_factory
        self._producer: ProducerLike | None = None
        self._clock = clock
        self._closed = False

    # -- the API a shim uses ---------------------------------------------------

    def send(self, event: Mapping[str, Any]) -> None:
        """Buffer one event (a SPEC §1.1 dict); produce whatever batches are ready.

        Raises CodecError for an invalid event (with `validate`), EventError
        when it has no identity id; nothing is buffered then.
        """
        if self._closed:
            raise RuntimeError(f"shim producer `{self.shim_id}` is closed")
        if self._validate:
            self._event_codec.check(event)
        try:
            identity = event["identity"]["id"]
        except (KeyError, TypeError) as exc:
            raise EventError("event has no `identity.id`") from exc
        if not isinstance(identity, str):
            raise EventError(f"`identity.id` must be a string, got `{identity!r}`")
        now = self._clock()
        full = self._batcher.add(identity, event, now)
        if full is not None:
            self._produce(identity, full)
        for ready_identity, events in self._batcher.due(now):
            self._produce(ready_identity, events)

    def poll(self, timeout: float = 0.0) -> int:
        """Produce batches that are due and serve delivery callbacks.

        Waits up to `timeout` seconds, but no longer than the next batch is
        due.  Returns the number of delivery reports served.
        """
        self._produce_due()
        due = self._batcher.next_due()
        if due is not None:
            timeout = min(timeout, max(0.0, due - self._clock()))
        if self._producer is not None and not 0 < timeout < 0.001:
            served = self._producer.poll(timeout)
        else:
            # Nothing in flight yet, or less than a millisecond to wait:
            # librdkafka counts whole milliseconds, so poll(0.0004) returns at
            # once and a caller pacing itself with poll() would spin a core.
            served = self._producer.poll(0) if self._producer is not None else 0
            if timeout > 0:
                time.sleep(timeout)
        self._produce_due()
        return served

    def flush(self, timeout: float = 10.0) -> int:
        """Produce every buffered batch and wait for delivery; return messages still queued."""
        for identity, events in self._batcher.drain():
            self._produce(identity, events)
        if self._producer is None:
            return 0
        return self._producer.flush(timeout)

    def close(self, timeout: float = 10.0) -> int:
        """Flush and refuse further sends; return messages still undelivered."""
        if self._closed:
            return 0
        remaining = self.flush(timeout)
        self._closed = True
        if remaining:
            log.warning("shim %s closed with %d batch(es) undelivered", self.shim_id, remaining)
        return remaining

    def __enter__(self) -> ShimProducer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def buffered(self) -> int:
        """Events waiting in this shim's buffers (not yet handed to Kafka)."""
        return len(self._batcher)

    @property
    def next_seq(self) -> int:
        return self._seq

    @property
    def producer_config(self) -> dict[str, Any]:
        return dict(self._config)

    # -- internals -------------------------------------------------------------

    def _produce_due(self) -> None:
        for identity, events in self._batcher.due(self._clock()):
            self._produce(identity, events)

    def _backend(self) -> ProducerLike:
        if self._producer is None:
            self._producer = self._producer_factory(dict(self._config))
        return self._producer

    def _produce(self, identity: str, events: list) -> None:
        seq = self._seq
        self._seq += 1
        count = len(events)
        counters = self.counters
        try:
            value = self._batch_codec.encode({"shim_id": self.shim_id, "seq": seq, "events": events})
        except Exception:
            counters.batches_failed += 1
            counters.events_failed += count
            raise
        producer = self._backend()
        on_delivery = functools.partial(self._on_delivery, identity, seq, count)
        key = identity.encode("utf-8")
        deadline = None
        while True:
            try:
                producer.produce(self.topic, value=value, key=key, on_delivery=on_delivery)
                break
            except BufferError:  # librdkafka's local queue is full: serve it, then retry
                now = self._clock()
                if deadline is None:
                    deadline = now + QUEUE_FULL_TIMEOUT
                elif now >= deadline:
                    counters.batches_failed += 1
                    counters.events_failed += count
                    raise
                producer.poll(0.05)
        counters.batches_sent += 1
        counters.events_sent += count
        producer.poll(0)

    def _on_delivery(self, identity: str, seq: int, count: int, err: Any, msg: Any) -> None:
        counters = self.counters
        if err is None:
            counters.batches_delivered += 1
            counters.events_delivered += count
        else:
            counters.batches_failed += 1
            counters.events_failed += count
            log.warning("shim %s: batch seq %d of `%s` (%d events) not delivered: %s",
                        self.shim_id, seq, identity, count, err)
