"""Read a topic as it is now: every record up to the partitions' current ends.

For checks and reports that need "what producers have confirmed so far"
(benchmarks, integration tests): the ends are read first, then each
partition is read from its low mark to that end.  A record arriving later is
not waited for; a partition that cannot be read to its end by the deadline
is an error that names it, never a silently short answer.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from streams.errors import DeliveryError
from streams.kafka import clients
from streams.settings import Settings


def read_to_end(settings: Settings, topic: str, timeout: float = 60.0) -> list[Any]:
    """The records (confluent-kafka Messages) of `topic` up to its current ends, per
    partition in offset order.  DeliveryError naming the partitions left at the deadline."""
    from confluent_kafka import TopicPartition

    consumer = clients.consumer(settings, f"reader-{uuid.uuid4().hex}")
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {n: consumer.get_watermark_offsets(TopicPartition(topic, n), timeout=10) for n in parts}
        todo = {n for n, (low, high) in ends.items() if high > low}
        consumer.assign([TopicPartition(topic, n, ends[n][0]) for n in todo])
        out = []
        deadline = time.monotonic() + timeout
        while todo:
            if time.monotonic() > deadline:
                raise DeliveryError(f"partitions {sorted(todo)} of `{topic}` not read to their end "
                                    f"within {timeout:.0f} s")
            for m in consumer.consume(500, 0.5):
                if m.error() is not None:
                    continue
                out.append(m)
                if m.offset() >= ends[m.partition()][1] - 1:
                    todo.discard(m.partition())
        return out
    finally:
        consumer.close()
