"""Kafka produce/consume round trips of raw bytes against the stack's broker."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_bytes_round_trip(topic, producer_factory, consumer_factory, consume):
    producer = producer_factory()
    values = [b"", bytes(range(256)), b"\x00" * 10_000, "ünïcode ✓".encode()]
    for i, value in enumerate(values):
        producer.produce(topic, key=f"k{i}".encode(), value=value, headers=[("h", b"\x01\x02")])
    assert producer.flush(30) == 0

    got = consume(consumer_factory(topic), len(values))

    assert [m.value() for m in got] == values
    assert [m.key() for m in got] == [f"k{i}".encode() for i in range(len(values))]
    assert all(m.headers() == [("h", b"\x01\x02")] for m in got)


def test_tombstone_has_no_value(topic, producer_factory, consumer_factory, consume):
    producer = producer_factory()
    producer.produce(topic, key=b"policy", value=None)
    assert producer.flush(30) == 0
    (message,) = consume(consumer_factory(topic), 1)
    assert message.key() == b"policy" and message.value() is None


def test_one_key_stays_in_order_on_one_partition(
    topic_factory, producer_factory, consumer_factory, consume
):
    topic = topic_factory(partitions=6)
    producer = producer_factory()
    identities = [f"svc-{n}" for n in range(5)]
    for seq in range(40):
        for identity in identities:
            producer.produce(topic, key=identity.encode(), value=str(seq).encode())
    assert producer.flush(30) == 0

    got = consume(consumer_factory(topic), 40 * len(identities))

    by_key: dict[bytes, list[int]] = {}
    partitions: dict[bytes, set[int]] = {}
    for m in got:
        by_key.setdefault(m.key(), []).append(int(m.value()))
        partitions.setdefault(m.key(), set()).add(m.partition())
    assert all(seqs == list(range(40)) for seqs in by_key.values())
    assert all(len(p) == 1 for p in partitions.values())
