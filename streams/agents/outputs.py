"""The agents' outputs (decisions, violations, quarantine commands, redzone
events, dead letters) on one confluent-kafka producer."""

from __future__ import annotations

from streams.errors import DeliveryError
from streams.kafka import clients
from streams.settings import Settings


class OutputProducer:
    """The agents' outputs on one confluent-kafka producer.

    A Faust send is an awaited coroutine through aiokafka's Python sender:
    hundreds of microseconds of CPU per record on the project machines.
    librdkafka batches in its own thread, so a record costs one `produce`
    call here.  `flush` runs before every Faust offset commit (see
    streams/worker/faustkit.py), so a committed offset never covers an output
    not yet acknowledged.  Created on first use, not at construction.
    """

    KINDS = ("decisions", "violations", "quarantine", "redzone", "dlq")

    def __init__(self, s: Settings):
        self._settings = s
        self._topics = {kind: s.topic(kind) for kind in self.KINDS}
        self._producer = None
        self._error = None

    def send(self, emits) -> None:
        p = self._producer
        if p is None:
            p = self._producer = clients.producer(self._settings, f"{self._settings.app_id}-outputs")
        topics, delivered = self._topics, self._delivered
        for e in emits:
            clients.produce(p, topics[e.kind], e.value, e.key, delivered)
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
