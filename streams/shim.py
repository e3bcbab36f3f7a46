"""The shim SDK: send syscall events to `trust.syscall-events` in batches (docs/behaviour.md §1.1).

A kernel shim calls :meth:`ShimProducer.send` for every event.  Events are
buffered per **partition** of the events topic: the partition Kafka's default
partitioner (murmur2 of ``identity.id``, ``streams.partitioner``) gives the
event's identity.  A partition's buffer leaves as one ``SyscallEventBatch``
message when its oldest event has waited `linger_ms` or it holds `max_batch`
events, whichever comes first.  The message key is the identity of the
batch's first event, so the producer's own partitioner (``murmur2_random``,
Java's) puts the batch on exactly that partition: every identity in it
belongs there, and one identity's events keep their order.  Batching per
partition bounds the message rate by partitions / linger however many
identities a host runs (BENCHMARKS.md: a worker pays ~1 ms per message).

There is no background thread: batches leave from ``send``, ``poll`` and
``flush``, so a shim that goes quiet must call ``poll()`` now and then (every
millisecond or so; ``poll(timeout)`` waits no longer than the next batch is due).

**The partition count** comes from the broker's metadata, read through the
shim's own Kafka producer at the first ``send`` (never in ``__init__``) and
cached.  It is read again every `metadata_refresh_s` seconds (librdkafka's
own topic metadata refresh interval, 5 min, by default), and at the next
``send`` after a delivery report shows a batch on another partition than the
one it was made for (the topic grew: counted in ``batches_misplaced``).  When
the count changes, buffered events are regrouped under it.  Events already
sent under the old count stay where they are: growing a keyed topic moves
keys for every Kafka client; the engine sends an event whose identity does not
belong to the partition it arrived on to the dead-letter topic, never decides
it silently.  ``partitions=N`` fixes the count and reads no metadata (tests,
or a deployment that pins it).  The first lookup failing is an error from
``send`` (nothing is buffered); a later refresh failing keeps the known count.

:class:`EventBatcher` is the pure part (no Kafka, time passed in);
:class:`ShimProducer` adds the Avro codec and a confluent-kafka producer,
created on the first ``send``, never in ``__init__``.

Every batch carries ``seq``, a counter per (shim, partition) that rises by
one per batch: the consumer of a partition sees every seq of a shim, so a
gap means batches were lost (the engine counts gaps in `trust_seq_gaps`).
Redelivery is detected by Kafka offsets, not seq.  A restarted shim uses a
new ``shim_id`` (the default, hostname-pid, does) or a ``first_seq`` above
every seq it sent before.

Not thread-safe: use one ShimProducer per thread, or a lock around it.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from streams.codec.avro import codec
from streams.kafka import clients
from streams.errors import ConfigError, DeliveryError, EventError
from streams.partitioner import PartitionMap
from streams.settings import Settings

log = logging.getLogger(__name__)

# Measured with benchmarks/shim_bench.py (40 identities, 6 partitions): messages per
# event 0.24 at 2,000 events/s and 0.07 at 8,000 (0.38 / 0.13 with 5 ms), so at most
# partitions / linger = 600 messages/s per shim, which a worker paying ~1 ms per
# message keeps up with; the price is a wait in the buffer of 6 ms mean, 10 ms at most.
# The cap is not reached at those rates (≤ 30 events per batch); it bounds bursts
# at the largest batch the worker was measured with (BENCHMARKS.md).
DEFAULT_LINGER_MS = 10.0
DEFAULT_MAX_BATCH = 100
QUEUE_FULL_TIMEOUT = 5.0  # seconds send() waits for room in a full local queue
METADATA_TIMEOUT = 10.0  # seconds the first send() waits for the topic's partition count
METADATA_REFRESH = 300.0  # seconds between reads of the partition count (librdkafka's default)
METADATA_RETRY = 1.0  # at least this long between two reads (a misplaced batch, a failed refresh)


def default_shim_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class EventBatcher:
    """Event buffers by key (the shim: a partition) that turn into batches by age or size.

    Pure: the caller passes the current monotonic time.  Buffers are kept in
    the order they were opened, so finding the due ones stops at the first
    that is not due.  A key has at most one open buffer, so its batches come
    out in the order of its events.
    """

    __slots__ = ("linger", "max_events", "_buffers", "_count")

    def __init__(self, linger: float = DEFAULT_LINGER_MS / 1000, max_events: int = DEFAULT_MAX_BATCH):
        if not linger >= 0:
            raise ConfigError(f"linger must be 0 or more seconds, got `{linger}`")
        if max_events < 1:
            raise ConfigError(f"a batch must hold at least 1 event, got `{max_events}`")
        self.linger = linger
        self.max_events = max_events
        self._buffers: dict[Hashable, tuple[float, list]] = {}  # key -> (due at, events)
        self._count = 0

    def __len__(self) -> int:
        """Events buffered, under all keys."""
        return self._count

    def add(self, key: Hashable, event: Any, now: float) -> list | None:
        """Buffer `event` under `key`; return the key's batch if this filled it."""
        entry = self._buffers.get(key)
        if entry is None:
            entry = self._buffers[key] = (now + self.linger, [])
        events = entry[1]
        events.append(event)
        self._count += 1
        if len(events) >= self.max_events:
            del self._buffers[key]
            self._count -= len(events)
            return events
        return None

    def due(self, now: float) -> list[tuple[Hashable, list]]:
        """Take the batches whose oldest event has waited `linger` or more."""
        ready = []
        for key, (due_at, _) in self._buffers.items():
            if now < due_at:
                break
            ready.append(key)
        return [self._take(key) for key in ready]

    def drain(self) -> list[tuple[Hashable, list]]:
        """Take every buffered batch, oldest first."""
        return [self._take(key) for key in list(self._buffers)]

    def next_due(self) -> float | None:
        """When the oldest buffer is due (monotonic time), or None if all are empty."""
        for due_at, _ in self._buffers.values():
            return due_at
        return None

    def _take(self, key: Hashable) -> tuple[Hashable, list]:
        _, events = self._buffers.pop(key)
        self._count -= len(events)
        return key, events


class ProducerLike(Protocol):
    """The part of ``confluent_kafka.Producer`` the shim uses (tests pass a fake)."""

    def produce(self, topic: str, value: bytes, key: bytes, on_delivery: Callable) -> None: ...
    def poll(self, timeout: float) -> int: ...
    def flush(self, timeout: float) -> int: ...
    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any: ...
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
    batches_misplaced: int = 0  # delivered, but on another partition than made for (the topic grew)


class ShimProducer:
    """Batches syscall events per partition and produces them as SyscallEventBatch values."""

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
        partitions: int | None = None,
        metadata_refresh_s: float = METADATA_REFRESH,
        producer_factory: Callable[[dict[str, Any]], ProducerLike] = _confluent_producer,
        clock: Callable[[], float] = time.monotonic,
    ):
        """No network here: the Kafka producer is created with the first send.

        `config` entries override the producer defaults (librdkafka names).
        `schema_id` switches values to Confluent wire format with that id.
        `validate` checks every event strictly in ``send`` (about half the
        cost of encoding it); without it a bad event makes its whole batch fail.
        `partitions` fixes the topic's partition count (no metadata is read);
        otherwise it is read from the broker and refreshed every
        `metadata_refresh_s` seconds (see the module docstring).
        """
        settings = settings or Settings.from_env()
        self.shim_id = shim_id or default_shim_id()
        self.topic = topic or settings.topic("events")
        self.counters = ShimCounters()
        # murmur2 (as streams.partitioner): a batch keyed by its first identity lands
        # on the partition it was made for; idempotence: retries neither reorder nor
        # duplicate a partition's batches; the shim already lingers, librdkafka adds little.
        self._config = clients.producer_config(settings, f"forgeone-shim-{self.shim_id}",
                                               **{"linger.ms": 1, **(config or {})})
        # librdkafka sends nothing before the producer has its id; connect() waits for it.
        self._producer_id = clients.watch_producer_id(self._config)
        if not metadata_refresh_s > 0:
            raise ConfigError(f"metadata refresh must be above 0 seconds, got `{metadata_refresh_s}`")
        self._batcher = EventBatcher(linger_ms / 1000, max_batch)
        self._event_codec = codec("SyscallEvent")
        self._batch_codec = codec("SyscallEventBatch", schema_id=schema_id)
        self._validate = validate
        self._first_seq = first_seq
        self._seqs: dict[int, int] = {}  # partition -> next seq
        self._producer_factory = producer_factory
        self._producer: ProducerLike | None = None
        self._clock = clock
        self._closed = False
        self._refresh_every = metadata_refresh_s
        # Pure, no network: a fixed count needs no metadata, ever.
        self._pmap: PartitionMap | None = None if partitions is None else PartitionMap(partitions)
        self._metadata_due = -math.inf if partitions is None else math.inf
        self._fixed = partitions is not None
        self._metadata_read = -math.inf  # when the count was last read

    # -- the API a shim uses ---------------------------------------------------

    def send(self, event: Mapping[str, Any]) -> None:
        """Buffer one event (a docs/behaviour.md §1.1 dict); produce whatever batches are ready.

        Raises CodecError for an invalid event (with `validate`), EventError
        when it has no identity id; nothing is buffered then.  The first call
        reads the topic's partition count: ConfigError if the topic does not
        exist, DeliveryError if the broker does not answer within
        METADATA_TIMEOUT; nothing is buffered then either.
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
        if now >= self._metadata_due:
            self._refresh_partitions(now)
        partition = self._pmap(identity)
        full = self._batcher.add(partition, event, now)
        if full is not None:
            self._produce(partition, full)
        for ready, events in self._batcher.due(now):
            self._produce(ready, events)

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
        for partition, events in self._batcher.drain():
            self._produce(partition, events)
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
        """A seq above every seq sent so far (on any partition)."""
        return max(self._seqs.values(), default=self._first_seq)

    def next_seq_of(self, partition: int) -> int:
        """The seq of the next batch for `partition`."""
        return self._seqs.get(partition, self._first_seq)

    @property
    def partitions(self) -> int | None:
        """The events topic's partition count in use (None until the first send reads it)."""
        return None if self._pmap is None else self._pmap.partitions

    def start(self) -> None:
        """Create the Kafka producer now, without waiting: librdkafka connects and
        asks for the producer id in the background while the caller does other
        start-up work; ``connect`` then waits for what is left."""
        self._backend()

    def connect(self, timeout: float = clients.PRODUCER_ID_TIMEOUT) -> bool:
        """Connect now rather than at the first ``send``: create the Kafka producer,
        read the partition count and wait (up to `timeout` seconds) until the
        idempotent producer has its producer id, without which librdkafka sends
        nothing.  A shim that watches a process calls it before starting it, so
        its first event is not the one that waits for all that.

        Returns whether the producer is ready; when the id is late, a warning
        is logged and events wait in the producer until it comes.
        ConfigError / DeliveryError as ``send``.
        """
        # The id first: a metadata request made before it can delay it to librdkafka's 500 ms timer.
        ready = clients.wait_for_producer_id(self._backend(), self._producer_id, timeout)
        if self._pmap is None:
            self._refresh_partitions(self._clock())
        if not ready:
            log.warning("shim %s: no producer id from `%s` after %.1f s; events wait for it",
                        self.shim_id, self._config["bootstrap.servers"], timeout)
        return ready

    @property
    def ready(self) -> bool:
        """Whether the producer can send at once (its idempotent producer id is assigned)."""
        return self._producer_id.assigned

    @property
    def producer_config(self) -> dict[str, Any]:
        return dict(self._config)

    # -- internals -------------------------------------------------------------

    def _produce_due(self) -> None:
        for partition, events in self._batcher.due(self._clock()):
            self._produce(partition, events)

    def _backend(self) -> ProducerLike:
        if self._producer is None:
            self._producer = self._producer_factory(dict(self._config))
        return self._producer

    def _refresh_partitions(self, now: float) -> None:
        """Read the partition count; regroup the buffers if it changed."""
        self._metadata_read = now
        try:
            count = self._read_partition_count()
        except (ConfigError, DeliveryError):
            if self._pmap is None:
                self._metadata_due = -math.inf  # the next send tries again
                raise
            log.warning("shim %s: could not refresh the partition count of `%s`; keeping %d",
                        self.shim_id, self.topic, self._pmap.partitions, exc_info=True)
            self._metadata_due = now + METADATA_RETRY
            return
        self._metadata_due = now + self._refresh_every
        old = self._pmap
        if old is not None and old.partitions == count:
            return
        self._pmap = PartitionMap(count)
        if old is not None:
            log.warning("shim %s: topic `%s` now has %d partitions (was %d); regrouping %d buffered event(s)",
                        self.shim_id, self.topic, count, old.partitions, len(self._batcher))
            pmap, filled = self._pmap, []
            for _, events in self._batcher.drain():  # oldest first: each identity's order is kept
                for event in events:
                    partition = pmap(event["identity"]["id"])
                    full = self._batcher.add(partition, event, now)
                    if full is not None:
                        filled.append((partition, full))
            for partition, full in filled:  # every event is back in a buffer or in these
                self._produce(partition, full)

    def _read_partition_count(self) -> int:
        """The events topic's partition count, from the broker's metadata."""
        from confluent_kafka import KafkaError, KafkaException

        producer = self._backend()
        where = f"topic `{self.topic}` on `{self._config['bootstrap.servers']}`"
        deadline = time.monotonic() + METADATA_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            try:
                metadata = producer.list_topics(self.topic, timeout=max(left, 0.1))
            except KafkaException as exc:
                raise DeliveryError(f"cannot read the partitions of {where}: {exc.args[0]}") from exc
            found = metadata.topics.get(self.topic)
            error = None if found is None else found.error
            if found is not None and error is None and found.partitions:
                return len(found.partitions)
            if error is not None and error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise ConfigError(f"{where} does not exist (create it: `trustctl topics ensure`)")
            if left <= 0:
                raise DeliveryError(f"cannot read the partitions of {where}: {error or 'no partitions'}")
            time.sleep(0.05)  # e.g. a leader being elected: ask again shortly

    def _produce(self, partition: int, events: list) -> None:
        """Produce one partition's batch, keyed by its first event's identity."""
        seq = self._seqs.get(partition, self._first_seq)
        self._seqs[partition] = seq + 1
        count = len(events)
        counters = self.counters
        try:
            value = self._batch_codec.encode({"shim_id": self.shim_id, "seq": seq, "events": events})
        except Exception:
            counters.batches_failed += 1
            counters.events_failed += count
            raise
        producer = self._backend()
        identity = events[0]["identity"]["id"]
        on_delivery = functools.partial(self._on_delivery, identity, partition, seq, count)
        key = identity.encode("utf-8")
        try:
            clients.produce(producer, self.topic, value, key, on_delivery,
                            timeout=QUEUE_FULL_TIMEOUT, clock=self._clock)
        except DeliveryError:  # the local queue stayed full: the broker is gone
            counters.batches_failed += 1
            counters.events_failed += count
            raise
        counters.batches_sent += 1
        counters.events_sent += count
        producer.poll(0)

    def _on_delivery(self, identity: str, partition: int, seq: int, count: int, err: Any, msg: Any) -> None:
        counters = self.counters
        if err is None:
            counters.batches_delivered += 1
            counters.events_delivered += count
            landed = None if msg is None else msg.partition()
            if landed is not None and landed != partition:
                # The producer's partitioner used another partition count than ours.
                counters.batches_misplaced += 1
                log.warning("shim %s: batch seq %d (key `%s`, %d events) made for partition %d of %s "
                            "landed on %d", self.shim_id, seq, identity, count, partition, self.partitions, landed)
                if not self._fixed:  # read the count again at the next send
                    self._metadata_due = min(self._metadata_due, self._metadata_read + METADATA_RETRY)
        else:
            counters.batches_failed += 1
            counters.events_failed += count
            log.warning("shim %s: batch seq %d for partition %d (key `%s`, %d events) not delivered: %s",
                        self.shim_id, seq, partition, identity, count, err)
