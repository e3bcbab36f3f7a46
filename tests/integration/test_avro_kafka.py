"""Avro SyscallEventBatch values through the real broker (docs/behaviour.md §1.1, §4)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def _batch(identity: str, seq: int, size: int) -> dict:
    return {
        "shim_id": "shim-it",
        "seq": seq,
        "events": [
            {
                "event_id": f"{identity}-{seq}-{i}",
                "syscall": "open_file",
                "args": ["/tmp/x", "r"],
                "identity": {
                    "id": identity,
                    "process_id": "p-17",
                    "container_id": "c-3",
                    "tenant": "acme",
                    "labels": {"team": "pay"},
                },
                "trust_vector": {"score": 0.9} if i % 2 == 0 else None,
                "execution_dna": None,
                "timestamp": f"2026-11-28T12:00:{i % 60:02d}.000000Z",
            }
            for i in range(size)
        ],
    }


def test_syscall_event_batches_round_trip(topic_factory, producer_factory, consumer_factory, consume):
    from streams.codec.avro import codec

    batch_codec = codec("SyscallEventBatch")
    topic = topic_factory(partitions=6)
    sent = [_batch(identity, seq, size=1 + seq * 10)
            for identity in ("svc-payments", "svc-search") for seq in range(4)]

    producer = producer_factory()
    for batch in sent:
        producer.produce(topic, key=batch["events"][0]["identity"]["id"].encode(),
                         value=batch_codec.encode(batch))
    assert producer.flush(30) == 0

    got = consume(consumer_factory(topic), len(sent))

    received = {}
    for message in got:
        decoded = batch_codec.decode(message.value())
        assert message.key().decode() == decoded["events"][0]["identity"]["id"]
        received[(decoded["events"][0]["identity"]["id"], decoded["seq"])] = decoded
    for batch in sent:
        identity = batch["events"][0]["identity"]["id"]
        decoded = received[(identity, batch["seq"])]
        assert decoded == batch_codec.decode(batch_codec.encode(batch))
        assert [e["event_id"] for e in decoded["events"]] == [e["event_id"] for e in batch["events"]]
        assert decoded["events"][0]["args"] == ["/tmp/x", "r"]
        assert decoded["events"][0]["trust_vector"]["score"] == 0.9
