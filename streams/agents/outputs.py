"""The agents' outputs (decisions, violations, quarantine commands, redzone
events, dead letters) on one confluent-kafka producer."""

from __future__ import annotations

from streams.errors import DeliveryError
from streams.settings import Settings


class OutputProducer:
    """The agents' outputs on one confluent-kafka producer.

    A Faust send is an awaited coroutine through aiokafka's Python sender:
    hundreds of microseconds of CPU per record on the project machines.
    librdkafka batches in its own thread, so a record costs one `produce`
    call here.  `flush` runs before every Faust offset commit (see below), so
    a committed offset never covers an output not yet acknowledged: the same
    at-least-once guarantee as before.  Created on first use, not at import.
    """

    def __init__(self, s: Settings):
        self._config = {"bootstrap.servers": s.kafka_bootstrap, "acks": "all", "enable.idempotence": True,
                        "linger.ms": 2, "partitioner": "murmur2_random",  # Java's, aiokafka's and the shim's
                        "client.id": f"{s.app_id}-outputs"}
        self._topics = {kind: s.topic(kind) for kind in ("decisions", "violations", "quarantine", "redzone", "dlq")}
        self._producer = None
        self._error = None

    def send(self, emits) -> None:
        p = self._producer
        if p is None:
            from confluent_kafka import Producer

            p = self._producer = Producer(self._config)
        for e in emits:
            while True:
                try:
                    p.produce(self._topics[e.kind], e.value, e.key, on_delivery=self._delivered)
                    break
                except BufferError:  # local queue full: serve it, then retry
                    p.poll(0.05)
        p.poll(0)

    def _delivered(self, err, msg) -> None:
        if err is not None and self._error is None:
            self._error = err

    def flush(self) -> None:
        """Wait until every output is acknowledged; raise if one never will be."""
        if self._producer is not None:
            left = self._producer.flush(30)
            if left or self._error is not None:
                raise DeliveryError(f"outputs not delivered ({left} queued, error {self._error}); "
                                    "offsets stay uncommitted")
