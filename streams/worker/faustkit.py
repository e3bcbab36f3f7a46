"""Faust, adjusted for the engine by subclassing (nothing is patched).

`TrustApp` is a `faust.App` whose Kafka transport differs from Faust's in
two places:

- the consumer's fetch wait is a setting (`Settings.fetch_wait_ms`) instead
  of Faust's hard-coded 1.5 s.  aiokafka does not fetch a partition again
  while its last records are still buffered, so a fetch in flight often
  names only partitions with no new data, and the broker holds it the whole
  wait: at low rates every decision would wait up to 1.5 s (BENCHMARKS.md);
- the producer's `flush`, which Faust awaits right before it commits
  offsets, first flushes the app's `OutputProducer` (the agents' records go
  through confluent-kafka, not Faust), so a committed offset never covers an
  output that is not acknowledged.
"""

from __future__ import annotations

from typing import Any, Callable

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.worker.faustfix import SnapshotConsumer


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        wait_ms = getattr(self.app, "fetch_wait_ms", None)
        if wait_ms is not None:
            consumer._fetch_max_wait_ms = wait_ms  # read by consumer.start()
        return consumer


class _Consumer(SnapshotConsumer):  # streams/worker/faustfix.py: the active-partitions race
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Producer(faust_aiokafka.Producer):
    async def flush(self) -> None:
        before = getattr(self.app, "before_commit_flush", None)
        if before is not None:
            before()  # raises DeliveryError: the commit does not happen
        await super().flush()


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer
    Producer = _Producer


class TrustApp(faust.App):
    """A faust.App with the transport above.

    `fetch_wait_ms`: the consumer's fetch wait (None: Faust's 1.5 s).
    `before_commit_flush`: called (synchronously) before every offset commit.
    """

    fetch_wait_ms: int | None = None
    before_commit_flush: Callable[[], None] | None = None

    def __init__(self, *args: Any, fetch_wait_ms: int | None = None,
                 before_commit_flush: Callable[[], None] | None = None, **kwargs: Any):
        self.fetch_wait_ms = fetch_wait_ms
        self.before_commit_flush = before_commit_flush
        super().__init__(*args, **kwargs)

    def _new_transport(self):
        return _Transport(self.conf.broker_consumer, self)

    def _new_producer_transport(self):
        return _Transport(self.conf.broker_producer, self)
