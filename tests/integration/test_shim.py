"""The shim SDK and the partitioner against the real broker (docs/behaviour.md §1.1, §4)."""

from __future__ import annotations

import random
import time

import pytest

from streams.codec.avro import codec
from streams.errors import ConfigError
from streams.partitioner import partition_of
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


def _random_identity(rng: random.Random) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/@üé€漢"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 48)))


@pytest.mark.parametrize("partitions", [6, 7])
def test_partition_of_agrees_with_the_producers_murmur2_random(topic_factory, producer_factory, partitions):
    topic = topic_factory(partitions=partitions)
    rng = random.Random(20261128 + partitions)
    keys = list({_random_identity(rng) for _ in range(500)})
    producer = producer_factory(partitioner="murmur2_random")
    landed: dict[str, int] = {}

    def report(err, msg):
        assert err is None, err
        landed[msg.key().decode("utf-8")] = msg.partition()

    for key in keys:
        producer.produce(topic, value=b"x", key=key.encode("utf-8"), on_delivery=report)
    assert producer.flush(30) == 0
    assert len(landed) == len(keys)
    disagree = {k: (p, partition_of(k, partitions)) for k, p in landed.items() if p != partition_of(k, partitions)}
    assert disagree == {}
    assert len(set(landed.values())) == partitions  # every partition exercised


def test_batches_per_partition_keyed_by_first_identity_every_event_once_in_order(
        stack, topic_factory, consumer_factory, consume):
    topic = topic_factory(partitions=PARTITIONS)
    identities = [f"svc-{n:02d}" for n in range(40)]
    rng = random.Random(7)
    sent: dict[str, int] = dict.fromkeys(identities, 0)
    shim = ShimProducer(stack, topic=topic, shim_id="shim-it", max_batch=10)
    for _ in range(1200):
        identity = rng.choice(identities)
        shim.send(_event(identity, sent[identity]))
        sent[identity] += 1
    assert shim.partitions == PARTITIONS  # read from the broker
    assert shim.close(timeout=30) == 0

    counters = shim.counters
    assert counters.events_delivered == 1200 and counters.batches_delivered == counters.batches_sent
    assert counters.batches_failed == 0 and counters.batches_misplaced == 0
    assert counters.batches_sent <= 1200 / 10 + 2 * PARTITIONS  # full batches, plus lingered or drained ones

    decode = codec("SyscallEventBatch").decode
    seen: dict[str, list[str]] = {identity: [] for identity in identities}
    last_seq: dict[int, int] = {}
    shared = 0
    for message in consume(consumer_factory(topic), counters.batches_delivered):
        batch = decode(message.value())
        partition = message.partition()
        members = [e["identity"]["id"] for e in batch["events"]]
        assert message.key().decode() == members[0]  # keyed by the first event's identity
        assert {partition_of(i, PARTITIONS) for i in members} == {partition}  # all belong where it landed
        assert batch["shim_id"] == "shim-it"
        assert batch["seq"] > last_seq.get(partition, -1)  # a partition's batches in seq order
        last_seq[partition] = batch["seq"]
        shared += len(set(members)) > 1
        for e in batch["events"]:
            seen[e["identity"]["id"]].append(e["event_id"])
    assert shared > 0  # identities did share batches
    for identity in identities:
        assert seen[identity] == [f"{identity}-{n}" for n in range(sent[identity])]


def test_a_lingering_batch_leaves_through_poll(stack, topic, consumer_factory, consume):
    shim = ShimProducer(stack, topic=topic, shim_id="shim-linger", linger_ms=20)
    shim.send(_event("svc-lonely", 0))
    shim.send(_event("svc-other", 0))  # one partition: one batch
    deadline = time.monotonic() + 30
    while shim.counters.batches_delivered == 0 and time.monotonic() < deadline:
        shim.poll(0.05)  # no flush(): the linger alone must send the batch
    assert shim.counters.batches_delivered == 1 and shim.partitions == 1
    (message,) = consume(consumer_factory(topic), 1)
    batch = codec("SyscallEventBatch").decode(message.value())
    assert message.key() == b"svc-lonely"
    assert [e["event_id"] for e in batch["events"]] == ["svc-lonely-0", "svc-other-0"]
    shim.close()


def test_a_missing_topic_is_refused_at_the_first_send(stack):
    shim = ShimProducer(stack, topic=f"it.no-such-topic.{time.monotonic_ns()}", shim_id="shim-missing")
    with pytest.raises(ConfigError, match="does not exist"):
        shim.send(_event("svc-a", 0))
    assert shim.buffered == 0
    shim.close()
