"""Every Kafka client of the project, built from `Settings` in one place.

confluent-kafka producers, consumers and admin clients (the shim SDK, the
agents' outputs, the CLI, the audit sink) and the aiokafka/Faust options take
their connection settings here, so connection and security options are set
once.  Nothing connects at construction: librdkafka connects in the
background, aiokafka on `start()`.

`produce` is the one delivery/back-pressure loop: when librdkafka's local
queue is full it serves delivery callbacks and retries, up to a deadline.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from streams.errors import DeliveryError
from streams.settings import Settings

# librdkafka logs through this logger; it is quiet unless a handler is added.
_LIBRDKAFKA = logging.getLogger("forgeone.trust.librdkafka")
_LIBRDKAFKA.addHandler(logging.NullHandler())
_LIBRDKAFKA.propagate = False

# Java's, aiokafka's and the shim's partitioner for keyed records: a record
# keyed by an identity lands on the partition every other client computes.
PARTITIONER = "murmur2_random"


def common_config(settings: Settings) -> dict[str, Any]:
    """Connection settings shared by every confluent-kafka client."""
    return {"bootstrap.servers": settings.kafka_bootstrap, "logger": _LIBRDKAFKA}


def producer_config(settings: Settings, client_id: str, **overrides: Any) -> dict[str, Any]:
    """A durable, idempotent, murmur2-partitioned producer's configuration."""
    conf = common_config(settings)
    conf.update({"client.id": client_id, "acks": "all", "enable.idempotence": True,
                 "partitioner": PARTITIONER, "linger.ms": 2})
    conf.update(overrides)
    return conf


def producer(settings: Settings, client_id: str, **overrides: Any):
    """A confluent-kafka Producer (see `producer_config`)."""
    from confluent_kafka import Producer

    return Producer(producer_config(settings, client_id, **overrides))


def consumer(settings: Settings, group_id: str, **overrides: Any):
    """A confluent-kafka Consumer that commits only when told to, from the earliest offset."""
    from confluent_kafka import Consumer

    conf = common_config(settings)
    conf.update({"group.id": group_id, "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    conf.update(overrides)
    return Consumer(conf)


def admin(settings: Settings):
    """A confluent-kafka AdminClient."""
    from confluent_kafka.admin import AdminClient

    return AdminClient(common_config(settings))


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for an aiokafka client (the policy watcher's consumer)."""
    return {"bootstrap_servers": settings.kafka_bootstrap}


def faust_broker(settings: Settings) -> list[str]:
    """The `broker` of a Faust app."""
    return [f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")]


def produce(p, topic: str, value: bytes | None, key: bytes | None,
            on_delivery: Callable | None = None, *, partition: int | None = None,
            timeout: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
    """Hand one record to librdkafka, waiting for room in its queue if it is full.

    Raises DeliveryError when the queue stays full for `timeout` seconds (the
    broker is gone): the caller decides what that means for its input.
    """
    kwargs: dict[str, Any] = {"on_delivery": on_delivery}
    if partition is not None:
        kwargs["partition"] = partition
    deadline = None
    while True:
        try:
            p.produce(topic, value, key, **kwargs)
            return
        except BufferError:  # local queue full: serve callbacks, then retry
            now = clock()
            if deadline is None:
                deadline = now + timeout
            elif now >= deadline:
                raise DeliveryError(f"the producer's queue for `{topic}` stayed full for "
                                    f"{timeout:.0f} s: is the broker reachable?") from None
            p.poll(0.05)
