"""The shim SDK against the real broker (SPEC §1.1, §4)."""

from __future__ import annotations

import time

import pytest

from streams.codec.avro import codec
from streams.shim import ShimProducer

pytestmark = pytest.mark.integration

PARTITIONS = 6


def _event(identity: str, n: int) -> dict:
    return {
        "event_id": f"{identity}-{n}",
        "syscall": "open_file",
        "args": ["/tmp/x", "r"],
        "identity": {"id": identity, "process_id": f"p-{identity}", "container_id": None,
                     "tenant": "acme", "labels": {}},
        "trust_vector": {"score": 0.9},
        "execution_dna": None,
        "timestamp": "2026-11-28T12:00:00.000000Z",
    }


def _java_partition(key: bytes, partitions: int) -> int:
    """Where Java's (and aiokafka's) default partitioner puts `key`."""
    from aiokafka.partitioner import murmur2

    return (murmur2(key) & 0x7FFFFFFF) % partitions


def test_batches_per_identity_in_order_on_the_java_partition(stack, topic_factory, consumer_factory, consume):
    topic = topic_factory(partitions=PARTITIONS)
    identities = [f"svc-{name}" for name in ("payments", "search", "auth", "billing", "mail")]
    per_identity = 37
    shim = ShimProducer(stack, topic=topic, shim_id="shim-it", max_batch=10)
    for n in range(per_identity):
        for identity in identities:
            shim.send(_event(identity, n))
    assert shim.close(timeout=30) == 0

    expected_batches = len(identities) * 4  # 10 + 10 + 10 + 7 events each
    counters = shim.counters
    assert (counters.batches_delivered, counters.events_delivered) == (expected_batches, len(identities) * per_identity)
    assert counters.batches_failed == 0

    decode = codec("SyscallEventBatch").decode
    seen: dict[str, list[str]] = {identity: [] for identity in identities}
    last_seq: dict[str, int] = {}
    for message in consume(consumer_factory(topic), expected_batches):
        key = message.key()
        batch = decode(message.value())
        identity = key.decode()
        assert message.partition() == _java_partition(key, PARTITIONS)
        assert batch["shim_id"] == "shim-it"
        assert {e["identity"]["id"] for e in batch["events"]} == {identity}
        assert batch["seq"] > last_seq.get(identity, -1)
        last_seq[identity] = batch["seq"]
        seen[identity].extend(e["event_id"] for e in batch["events"])
    for identity in identities:
        assert seen[identity] == [f"{identity}-{n}" for n in range(per_identity)]


def test_a_lingering_batch_leaves_through_poll(stack, topic, consumer_factory, consume):
    shim = ShimProducer(stack, topic=topic, shim_id="shim-linger", linger_ms=20)
    shim.send(_event("svc-lonely", 0))
    shim.send(_event("svc-lonely", 1))
    deadline = time.monotonic() + 30
    while shim.counters.batches_delivered == 0 and time.monotonic() < deadline:
        shim.poll(0.05)  # no flush(): the linger alone must send the batch
    assert shim.counters.batches_delivered == 1
    (message,) = consume(consumer_factory(topic), 1)
    batch = codec("SyscallEventBatch").decode(message.value())
    assert [e["event_id"] for e in batch["events"]] == ["svc-lonely-0", "svc-lonely-1"]
    shim.close()
