"""The shim SDK's batching, without a broker (docs/behaviour.md §1.1).

A fake producer stands in for confluent-kafka: it answers metadata with a
partition count and puts each message where the default partitioner puts its
key.  These tests say nothing about Kafka itself (tests/integration/test_shim.py
does, against the real broker).
"""

from __future__ import annotations

import json
import logging

import pytest
from confluent_kafka import KafkaError, KafkaException

from streams.codec.avro import codec
from streams.errors import CodecError, ConfigError, DeliveryError, EventError
from streams.partitioner import partition_for_key, partition_of
from streams.settings import Settings
from streams.shim import METADATA_REFRESH, EventBatcher, ShimProducer, default_shim_id

SETTINGS = Settings.from_env({"TRUST_KAFKA_BOOTSTRAP": "unreachable.invalid:1", "TRUST_TOPIC_PREFIX": "t."})
BATCH = codec("SyscallEventBatch")
TOPIC = "t.syscall-events"

# Where one-letter identities go among 6 partitions (murmur2, checked below).
P6 = {"a": 4, "c": 4, "l": 4, "b": 2, "e": 2, "d": 5, "o": 5, "f": 3, "g": 3, "h": 1}


def test_the_identities_used_here_are_where_these_tests_say():
    assert {i: partition_of(i, 6) for i in P6} == P6


def event(identity: str, n: int, **extra) -> dict:
    return {
        "event_id": f"{identity}-{n}",
        "syscall": "open_file",
        "args": ["/tmp/x", "r"],
        "identity": {"id": identity, "process_id": "p-1"},
        "timestamp": "2026-11-28T12:00:00.000000Z",
        **extra,
    }


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, ms: float) -> None:
        self.now += ms / 1000


class FakeMessage:
    def __init__(self, partition: int) -> None:
        self._partition = partition

    def partition(self) -> int:
        return self._partition


class FakeTopic:
    def __init__(self, partitions: int, error=None) -> None:
        self.partitions = dict.fromkeys(range(partitions))
        self.error = error


class FakeMetadata:
    def __init__(self, topics: dict) -> None:
        self.topics = topics


class FakeProducer:
    """Records produce() calls; delivers them on poll/flush (optionally failing).

    `partitions` is the topic's partition count as the broker knows it: the
    metadata answer, and where messages land (the default partitioner on the key).
    """

    def __init__(self, config: dict, partitions: int = 6) -> None:
        self.config = config
        self.partitions = partitions
        self.metadata_error: Exception | KafkaError | None = None
        self.metadata_reads = 0
        self.messages: list[tuple[str, bytes, bytes, int]] = []
        self.undelivered: list = []
        self.fail_with: str | None = None
        self.full_times = 0
        self.idemp_states = ["Assigned"]  # what each poll's statistics say, the last one repeated

    def list_topics(self, topic=None, timeout=-1):
        self.metadata_reads += 1
        if isinstance(self.metadata_error, Exception):
            raise self.metadata_error
        if self.metadata_error is not None:
            return FakeMetadata({topic: FakeTopic(0, self.metadata_error)})
        return FakeMetadata({topic: FakeTopic(self.partitions)})

    def produce(self, topic, value, key, on_delivery):
        if self.full_times:
            self.full_times -= 1
            raise BufferError("Local: Queue full")
        landed = partition_for_key(key, self.partitions)
        self.messages.append((topic, key, value, landed))
        self.undelivered.append((on_delivery, landed))

    def _deliver(self) -> int:
        served, self.undelivered = self.undelivered, []
        for callback, landed in served:
            callback(self.fail_with, None if self.fail_with else FakeMessage(landed))
        return len(served)

    def poll(self, timeout):
        stats_cb = self.config.get("stats_cb")
        if stats_cb is not None:
            state = self.idemp_states.pop(0) if len(self.idemp_states) > 1 else self.idemp_states[0]
            stats_cb(json.dumps({"name": "fake", "eos": {"idemp_state": state}}))
        return self._deliver()

    def flush(self, timeout):
        self._deliver()
        return 0

    def __len__(self):
        return len(self.undelivered)


def make_shim(topic_partitions: int = 6, **kwargs):
    made: list[FakeProducer] = []

    def factory(config):
        made.append(FakeProducer(config, topic_partitions))
        return made[-1]

    clock = Clock()
    kwargs.setdefault("linger_ms", 5.0)  # these tests count in 5 ms lingers, whatever the default
    shim = ShimProducer(SETTINGS, shim_id="shim-1", producer_factory=factory, clock=clock, **kwargs)
    return shim, clock, made


def batches(producer: FakeProducer) -> list[tuple[str, dict]]:
    return [(key.decode(), BATCH.decode(value)) for _, key, value, _ in producer.messages]


def ids(batch: dict) -> list[str]:
    return [e["event_id"] for e in batch["events"]]


# -- EventBatcher (pure) -------------------------------------------------------


def test_batcher_lingers_then_releases():
    b = EventBatcher(linger=0.005, max_events=100)
    assert b.add(4, "a1", now=10.0) is None
    assert b.add(4, "c1", now=10.003) is None
    assert b.due(10.0049) == []
    assert b.next_due() == pytest.approx(10.005)
    assert b.due(10.005) == [(4, ["a1", "c1"])]
    assert len(b) == 0 and b.next_due() is None


def test_batcher_size_cap_releases_at_once():
    b = EventBatcher(linger=1.0, max_events=3)
    assert b.add(0, 1, 0.0) is None
    assert b.add(0, 2, 0.0) is None
    assert b.add(0, 3, 0.0) == [1, 2, 3]
    assert len(b) == 0
    assert b.add(0, 4, 0.0) is None  # a new buffer opens
    assert len(b) == 1


def test_batcher_keeps_keys_apart_and_in_order():
    b = EventBatcher(linger=0.005, max_events=100)
    b.add(4, "a1", 0.000)
    b.add(2, "b1", 0.001)
    b.add(4, "c1", 0.002)
    b.add(5, "d1", 0.009)
    assert b.due(0.006) == [(4, ["a1", "c1"]), (2, ["b1"])]
    assert b.drain() == [(5, ["d1"])]


def test_batcher_reopened_buffer_goes_to_the_back():
    b = EventBatcher(linger=0.005, max_events=2)
    b.add(4, 1, 0.000)
    b.add(2, 1, 0.001)
    assert b.add(4, 2, 0.002) == [1, 2]
    b.add(4, 3, 0.003)  # opened after 2's buffer
    assert b.due(0.0065) == [(2, [1])]  # 4's new buffer is not due yet; the scan stops there
    assert b.due(0.008) == [(4, [3])]


@pytest.mark.parametrize(("linger", "size"), [(-0.001, 10), (0.005, 0)])
def test_batcher_refuses_bad_settings(linger, size):
    with pytest.raises(ConfigError):
        EventBatcher(linger, size)


# -- ShimProducer over a fake producer: partitions ------------------------------------


def test_nothing_in_init_and_the_partition_count_read_at_the_first_send():
    shim, clock, made = make_shim(topic_partitions=6)
    assert made == [] and shim.partitions is None
    shim.send(event("a", 0))
    assert len(made) == 1 and made[0].metadata_reads == 1 and shim.partitions == 6
    assert made[0].messages == []  # still lingering
    shim.send(event("b", 0))
    clock.advance(5)
    shim.poll()
    assert made[0].metadata_reads == 1  # cached
    assert len(made[0].messages) == 2


def test_a_fixed_partition_count_reads_no_metadata_and_creates_no_producer_until_a_batch():
    shim, clock, made = make_shim(partitions=6)
    assert shim.partitions == 6
    shim.send(event("a", 0))
    assert made == []
    clock.advance(5)
    shim.poll()
    assert len(made) == 1 and made[0].metadata_reads == 0


def test_identities_sharing_a_partition_share_a_batch_keyed_by_the_first():
    shim, clock, made = make_shim()
    # a, c, l -> 4; b, e -> 2; h -> 1
    for identity, n in [("c", 0), ("a", 0), ("b", 0), ("l", 0), ("e", 0), ("a", 1), ("h", 0), ("c", 1)]:
        shim.send(event(identity, n))
        clock.advance(0.5)
    shim.flush()
    sent = batches(made[0])
    assert [(key, ids(b)) for key, b in sent] == [
        ("c", ["c-0", "a-0", "l-0", "a-1", "c-1"]),  # partition 4, opened first
        ("b", ["b-0", "e-0"]),  # partition 2
        ("h", ["h-0"]),  # partition 1
    ]
    assert [landed for *_, landed in made[0].messages] == [4, 2, 1]
    for key, batch in sent:
        assert {partition_of(e["identity"]["id"], 6) for e in batch["events"]} == {partition_of(key, 6)}
    assert shim.counters.batches_misplaced == 0 and shim.counters.batches_delivered == 3


def test_each_identity_keeps_its_order_across_batches():
    shim, clock, made = make_shim(max_batch=3)
    order = [(i, n) for n in range(5) for i in ("a", "c", "l", "b", "h")]
    for identity, n in order:
        shim.send(event(identity, n))
        clock.advance(1)
    shim.flush()
    seen: dict[str, list[str]] = {}
    for _, batch in batches(made[0]):
        for e in batch["events"]:
            seen.setdefault(e["identity"]["id"], []).append(e["event_id"])
    assert seen == {i: [f"{i}-{n}" for n in range(5)] for i in ("a", "c", "l", "b", "h")}


def test_size_cap_sends_a_partition_at_once():
    shim, clock, made = make_shim(max_batch=3)
    for identity, n in [("a", 0), ("c", 0), ("b", 0), ("l", 0), ("a", 1), ("c", 1), ("a", 2)]:
        shim.send(event(identity, n))
    sent = batches(made[0])
    assert [(key, ids(b)) for key, b in sent] == [("a", ["a-0", "c-0", "l-0"]), ("a", ["a-1", "c-1", "a-2"])]
    assert shim.buffered == 1  # b-0, still lingering


def test_linger_releases_the_oldest_buffer_from_a_later_send():
    shim, clock, made = make_shim()
    shim.send(event("a", 0))
    clock.advance(2)
    shim.send(event("c", 0))  # same partition: joins a's buffer, due 5 ms after a-0
    shim.send(event("b", 0))
    clock.advance(3)
    shim.send(event("h", 0))  # a's buffer is now 5 ms old: it leaves with this call
    assert made[0].messages[0][0] == TOPIC
    assert batches(made[0]) == [
        ("a", {"shim_id": "shim-1", "seq": 0, "events": [with_defaults(event("a", 0)), with_defaults(event("c", 0))]}),
    ]
    assert shim.buffered == 2
    clock.advance(2)
    shim.poll()  # b's buffer (opened at +2 ms) is due at +7
    assert [key for key, _ in batches(made[0])] == ["a", "b"]


def test_drain_on_flush_sends_every_partition_oldest_first():
    shim, clock, made = make_shim(linger_ms=1000)
    for identity in ("h", "d", "a", "o", "c"):
        shim.send(event(identity, 0))
    assert made[0].messages == []
    assert shim.flush() == 0
    assert [(key, ids(b)) for key, b in batches(made[0])] == [("h", ["h-0"]), ("d", ["d-0", "o-0"]),
                                                              ("a", ["a-0", "c-0"])]
    assert shim.buffered == 0 and shim.counters.batches_delivered == 3


def test_seq_increases_by_one_per_batch_on_each_partition():
    """Per (shim, partition): the consumer of one partition sees every seq, so a gap means loss."""
    shim, clock, made = make_shim(max_batch=2, first_seq=40)
    for n in range(4):
        shim.send(event("a", n))
        shim.send(event("b", n))
    shim.flush()
    sent = batches(made[0])
    assert [k for k, _ in sent] == ["a", "b", "a", "b"]
    assert [b["seq"] for _, b in sent] == [40, 40, 41, 41]
    assert all(b["shim_id"] == "shim-1" for _, b in sent)
    assert shim.next_seq == 42


def test_missing_topic_is_a_clear_error_and_buffers_nothing():
    shim, clock, made = make_shim()
    shim._backend().metadata_error = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
    with pytest.raises(ConfigError, match=r"topic `t.syscall-events` on `unreachable.invalid:1` does not exist"):
        shim.send(event("a", 0))
    assert shim.buffered == 0 and shim.partitions is None
    made[0].metadata_error = None  # created meanwhile: the next send reads it
    shim.send(event("a", 0))
    assert shim.partitions == 6 and shim.buffered == 1


def test_broker_not_answering_the_first_lookup_is_a_delivery_error():
    shim, clock, made = make_shim()
    shim._backend().metadata_error = KafkaException(KafkaError(KafkaError._TRANSPORT, "all brokers down"))
    with pytest.raises(DeliveryError, match=r"cannot read the partitions of topic `t.syscall-events`"):
        shim.send(event("a", 0))
    assert shim.buffered == 0


def test_count_refreshed_periodically_and_buffers_regrouped_when_it_changes(caplog):
    shim, clock, made = make_shim(linger_ms=10**6)
    shim.send(event("a", 0))  # 6 partitions: a, c -> 4
    shim.send(event("c", 0))
    producer = made[0]
    producer.partitions = 12  # the topic grew: a -> 4, c -> 10
    clock.advance(METADATA_REFRESH * 1000 - 1)
    shim.send(event("a", 1))
    assert shim.partitions == 6 and producer.metadata_reads == 1
    clock.advance(1)
    with caplog.at_level(logging.WARNING):
        shim.send(event("c", 1))
    assert shim.partitions == 12 and producer.metadata_reads == 2
    assert "now has 12 partitions (was 6)" in caplog.text
    shim.flush()
    assert [(key, ids(b)) for key, b in batches(producer)] == [("a", ["a-0", "a-1"]), ("c", ["c-0", "c-1"])]
    assert [landed for *_, landed in producer.messages] == [4, 10]
    assert shim.counters.batches_misplaced == 0


def test_a_misplaced_batch_is_counted_and_makes_the_next_send_read_the_count():
    shim, clock, made = make_shim()
    shim.send(event("a", 0))  # count read: 6
    producer = made[0]
    producer.partitions = 3  # the producer's partitioner now uses another count than the shim
    shim.send(event("c", 0))
    shim.flush()  # a's batch (a, c) made for 4 of 6 lands on 1 of 3
    assert shim.counters.batches_misplaced == 1 and shim.counters.batches_delivered == 1
    assert producer.metadata_reads == 1
    clock.advance(1000)  # at least METADATA_RETRY after the last read
    shim.send(event("a", 1))
    assert producer.metadata_reads == 2 and shim.partitions == 3


def test_a_failed_refresh_keeps_the_known_count(caplog):
    shim, clock, made = make_shim()
    shim.send(event("a", 0))
    made[0].metadata_error = KafkaException(KafkaError(KafkaError._TRANSPORT, "down"))
    clock.advance(METADATA_REFRESH * 1000)
    with caplog.at_level(logging.WARNING):
        shim.send(event("a", 1))
    assert shim.partitions == 6 and "keeping 6" in caplog.text
    clock.advance(500)
    shim.send(event("a", 2))  # retried only after METADATA_RETRY
    assert made[0].metadata_reads == 2
    made[0].metadata_error = None
    clock.advance(600)
    shim.send(event("a", 3))
    assert made[0].metadata_reads == 3


# -- ShimProducer over a fake producer: the rest of the API ---------------------------------


def test_producer_config():
    shim, clock, made = make_shim(config={"linger.ms": 2, "compression.type": "lz4"})
    config = shim.producer_config
    assert config["bootstrap.servers"] == "unreachable.invalid:1"
    assert config["partitioner"] == "murmur2_random"
    assert config["enable.idempotence"] is True
    assert config["linger.ms"] == 2 and config["compression.type"] == "lz4"
    assert shim.topic == TOPIC
    shim.send(event("a", 0))
    shim.flush()
    assert made[0].config == config


def with_defaults(e: dict) -> dict:
    """The event as a consumer decodes it (optional fields filled in)."""
    return codec("SyscallEvent").decode(codec("SyscallEvent").encode(e))


def test_poll_sends_due_batches_and_counts_deliveries():
    shim, clock, made = make_shim()
    for n in range(3):
        shim.send(event("a", n))
    clock.advance(5)
    shim.poll()
    assert shim.counters.batches_sent == 1 and shim.counters.events_sent == 3
    shim.poll()
    assert shim.counters.batches_delivered == 1 and shim.counters.events_delivered == 3
    assert shim.counters.batches_failed == 0


def test_failed_deliveries_are_counted(caplog):
    shim, clock, made = make_shim()
    shim.send(event("a", 0))
    shim.send(event("b", 0))
    shim.flush()  # two batches, delivered
    made[0].fail_with = "broker down"
    shim.send(event("h", 0))
    shim.send(event("h", 1))
    shim.close()  # one batch of two events, refused
    assert shim.counters.batches_delivered == 2 and shim.counters.events_delivered == 2
    assert shim.counters.batches_failed == 1 and shim.counters.events_failed == 2
    assert "batch seq 0 for partition 1 (key `h`, 2 events) not delivered: broker down" in caplog.text


def test_close_flushes_and_refuses_more():
    shim, clock, made = make_shim()
    with shim:
        shim.send(event("a", 0))
    assert len(made[0].messages) == 1
    assert shim.close() == 0  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        shim.send(event("a", 1))


def test_invalid_event_is_refused_at_send_and_not_buffered():
    shim, clock, made = make_shim()
    with pytest.raises(CodecError, match=r"`args` must be a list"):
        shim.send(event("a", 0, args="/tmp/x"))
    bad = event("a", 1)
    del bad["identity"]["process_id"]
    with pytest.raises(CodecError, match=r"`identity.process_id` is missing"):
        shim.send(bad)
    assert shim.buffered == 0


def test_without_validation_a_bad_event_fails_its_batch():
    shim, clock, made = make_shim(validate=False)
    with pytest.raises(EventError, match="identity.id"):
        shim.send({"event_id": "x"})
    bad = event("a", 0)
    del bad["syscall"]
    shim.send(bad)
    with pytest.raises(CodecError, match="`events\\[0\\].syscall` is missing"):
        shim.flush()
    assert shim.counters.events_failed == 1


def test_queue_full_is_retried():
    shim, clock, made = make_shim(max_batch=1)
    shim.send(event("a", 0))
    made[0].full_times = 2
    shim.send(event("a", 1))
    assert len(made[0].messages) == 2


def test_queue_full_gives_up_after_the_deadline():
    shim, clock, made = make_shim(max_batch=1)
    shim.send(event("a", 0))
    producer = made[0]
    producer.full_times = 10**9
    original_poll = producer.poll

    def slow_poll(timeout):
        clock.advance(1000)
        return original_poll(timeout)

    producer.poll = slow_poll
    with pytest.raises(DeliveryError, match="stayed full"):
        shim.send(event("a", 1))
    assert shim.counters.batches_failed == 1


def test_wire_format_values():
    shim, clock, made = make_shim(schema_id=9)
    shim.send(event("a", 0))
    shim.flush()
    value = made[0].messages[0][2]
    assert value[:5] == bytes([0, 0, 0, 0, 9])
    assert codec("SyscallEventBatch", schema_id=9).decode(value)["events"][0]["event_id"] == "a-0"


def test_default_shim_id_is_host_and_pid():
    import os
    import socket

    assert default_shim_id() == f"{socket.gethostname()}-{os.getpid()}"
    shim = ShimProducer(SETTINGS, producer_factory=FakeProducer)
    assert shim.shim_id == default_shim_id()


def test_bad_metadata_refresh_is_refused():
    with pytest.raises(ConfigError, match="`0`"):
        ShimProducer(SETTINGS, producer_factory=FakeProducer, metadata_refresh_s=0)


def test_poll_sleeps_instead_of_spinning_below_a_millisecond(monkeypatch):
    # librdkafka counts whole milliseconds: poll(0.0004) would return at once.
    shim, clock, made = make_shim()
    shim.send(event("a", 0))
    shim.flush()
    timeouts, slept = [], []
    made[0].poll = lambda timeout: timeouts.append(timeout) or 0
    monkeypatch.setattr("streams.shim.time.sleep", slept.append)
    shim.send(event("b", 0))
    clock.advance(4.6)  # b's batch is due in 0.4 ms
    shim.poll(0.05)
    assert timeouts == [0] and slept == [pytest.approx(0.0004)]
    clock.advance(0.4)
    shim.poll(0.05)
    assert shim.buffered == 0


def test_connect_waits_for_the_producer_id():
    # librdkafka sends nothing before the idempotent producer has its id; connect()
    # waits for it (seen in the statistics), so the first event does not.
    seen = []
    shim, clock, made = make_shim(config={"stats_cb": seen.append})
    assert shim.producer_config["statistics.interval.ms"] == 50
    shim._backend().idemp_states = ["Init", "RequestPID", "WaitPID", "Assigned"]
    assert not shim.ready
    assert shim.connect() is True and shim.ready
    assert len(seen) == 4  # the caller's own stats_cb still gets every report


def test_connect_gives_up_waiting_for_the_producer_id(caplog):
    shim, clock, made = make_shim()
    shim._backend().idemp_states = ["WaitPID"]
    assert shim.connect(timeout=0.05) is False
    assert "no producer id" in caplog.text
    shim.send(event("a", 0))  # events are still taken; they wait in the producer
    assert shim.buffered == 1


def test_a_producer_that_is_not_idempotent_is_ready_at_once():
    shim, clock, made = make_shim(config={"enable.idempotence": False})
    assert "stats_cb" not in shim.producer_config and shim.ready


def test_connect_reads_the_partitions_before_the_first_send():
    shim, clock, made = make_shim()
    assert made == [] and shim.partitions is None  # nothing at construction
    shim.connect()
    assert len(made) == 1 and shim.partitions is not None
    shim.connect()  # once is enough
    assert len(made) == 1
