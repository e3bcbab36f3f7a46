"""Fixtures for tests against the real local stack (Kafka broker + Redis).

`stack` (session) uses the stack if it already answers, else starts it with
`streams.stack.up`, and at the end stops only the services it started.
Everything a test creates - topics, consumer groups, Redis keys - carries a
unique name and is removed afterwards, so tests never see each other's data.
Waiting is always "poll a condition until a deadline", never a fixed sleep.
"""

from __future__ import annotations

import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from streams import stack as local_stack
from streams.settings import Settings

DEADLINE = 30.0  # seconds any single wait may take before the test fails


def _unique(request: pytest.FixtureRequest, sep: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")[:60]
    return f"it{sep}{slug}{sep}{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def stack() -> Iterator[Settings]:
    """Settings of a running stack; starts (and later stops) what was not up."""
    settings = Settings.from_env()
    started = local_stack.up(settings, report=lambda m: print(f"stack: {m}", file=sys.stderr))
    yield settings
    if started:
        local_stack.down(settings, names=started)


@pytest.fixture(scope="session")
def admin(stack: Settings):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": stack.kafka_bootstrap})


def _wait_topic(admin, name: str, present: bool) -> None:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        topics = admin.list_topics(timeout=5).topics
        if present and name in topics and topics[name].error is None:
            partitions = topics[name].partitions.values()
            if partitions and all(p.leader >= 0 for p in partitions):
                return
        if not present and name not in topics:
            return
        time.sleep(0.05)
    raise AssertionError(f"topic {name} {'did not appear' if present else 'was not deleted'} in time")


@pytest.fixture
def topic_factory(admin, request: pytest.FixtureRequest) -> Iterator[Callable[..., str]]:
    """make(partitions=1, config=None) -> name of a new topic, deleted at teardown."""
    from confluent_kafka.admin import NewTopic

    created: list[str] = []

    def make(partitions: int = 1, config: dict[str, str] | None = None) -> str:
        name = _unique(request, ".")
        admin.create_topics([NewTopic(name, partitions, 1, config=config or {})])[name].result(DEADLINE)
        created.append(name)
        _wait_topic(admin, name, present=True)
        return name

    yield make
    if created:
        for future in admin.delete_topics(created, operation_timeout=DEADLINE).values():
            future.result(DEADLINE)


@pytest.fixture
def topic(topic_factory) -> str:
    """A fresh one-partition topic."""
    return topic_factory()


@pytest.fixture
def producer_factory(stack: Settings) -> Iterator[Callable[..., object]]:
    """make(**config) -> confluent_kafka.Producer; flushed at teardown."""
    from confluent_kafka import Producer

    producers = []

    def make(**config):
        conf = {"bootstrap.servers": stack.kafka_bootstrap, "linger.ms": 5, "acks": "all"}
        conf.update({k.replace("_", "."): v for k, v in config.items()})
        producer = Producer(conf)
        producers.append(producer)
        return producer

    yield make
    for producer in producers:
        producer.flush(DEADLINE)


@pytest.fixture
def consumer_factory(stack: Settings, request: pytest.FixtureRequest) -> Iterator[Callable[..., object]]:
    """make(*topics, **config) -> a subscribed Consumer in a unique group, from the start."""
    from confluent_kafka import Consumer

    consumers = []

    def make(*topics: str, **config):
        conf = {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": _unique(request, "-"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
        conf.update({k.replace("_", "."): v for k, v in config.items()})
        consumer = Consumer(conf)
        consumers.append(consumer)
        if topics:
            consumer.subscribe(list(topics))
        return consumer

    yield make
    for consumer in consumers:
        consumer.close()


@pytest.fixture
def consume() -> Callable[..., list]:
    """consume(consumer, count) -> exactly `count` messages, or fail at the deadline."""

    def take(consumer, count: int, timeout: float = DEADLINE) -> list:
        messages: list = []
        deadline = time.monotonic() + timeout
        while len(messages) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is None:
                continue
            if message.error():
                raise AssertionError(f"consumer error: {message.error()}")
            messages.append(message)
        assert len(messages) == count, f"got {len(messages)} of {count} messages in {timeout} s"
        return messages

    return take


@pytest.fixture
def redis_prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix unique to this test; keys under it are deleted afterwards."""
    return _unique(request, ":") + ":"


@pytest.fixture
def redis_factory(stack: Settings, redis_prefix: str) -> Iterator[Callable[..., object]]:
    """make(protocol=3, **kwargs) -> redis.Redis for the stack's server."""
    import redis

    clients = []

    def make(protocol: int = 3, **kwargs):
        client = redis.Redis.from_url(
            stack.redis_url, password=stack.redis_password, protocol=protocol, **kwargs
        )
        clients.append(client)
        return client

    yield make
    if clients:
        keys = list(clients[0].scan_iter(match=redis_prefix + "*"))
        if keys:
            clients[0].delete(*keys)
    for client in clients:
        client.close()


@pytest.fixture
def redis_client(redis_factory):
    """A RESP3 client (redis-py 8's default protocol), decoding to str."""
    return redis_factory(protocol=3, decode_responses=True)
