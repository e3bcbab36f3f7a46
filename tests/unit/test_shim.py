"""The shim SDK's batching, without a broker (SPEC §1.1).

A fake producer stands in for confluent-kafka; these tests say nothing about
Kafka itself (tests/integration/test_shim.py does, against the real broker).
"""

from __future__ import annotations

import pytest

from streams.codec.avro import codec
from streams.errors import CodecError, ConfigError, EventError
from streams.settings import Settings
from streams.shim import EventBatcher, ShimProducer, default_shim_id

SETTINGS = Settings.from_env({"TRUST_KAFKA_BOOTSTRAP": "unreachable.invalid:1", "TRUST_TOPIC_PREFIX": "t."})
BATCH = codec("SyscallEventBatch")


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


class FakeProducer:
    """Records produce() calls; delivers them on poll/flush (optionally failing)."""

    def __init__(self, config: dict) -> None:
        self.config = config
        self.messages: list[tuple[str, bytes, bytes]] = []
        self.undelivered: list = []
        self.fail_with: str | None = None
        self.full_times = 0

    def produce(self, topic, value, key, on_delivery):
        if self.full_times:
            self.full_times -= 1
            raise BufferError("Local: Queue full")
        self.messages.append((topic, key, value))
        self.undelivered.append(on_delivery)

    def _deliver(self) -> int:
        served, self.undelivered = self.undelivered, []
        for callback in served:
            callback(self.fail_with, None)
        return len(served)

    def poll(self, timeout):
        return self._deliver()

    def flush(self, timeout):
        self._deliver()
        return 0

    def __len__(self):
        return len(self.undelivered)


def make_shim(**kwargs):
    made: list[FakeProducer] = []

    def factory(config):
        made.append(FakeProducer(config))
        return made[-1]

    clock = Clock()
    shim = ShimProducer(SETTINGS, shim_id="shim-1", producer_factory=factory, clock=clock, **kwargs)
    return shim, clock, made


def batches(producer: FakeProducer) -> list[tuple[str, dict]]:
    return [(key.decode(), BATCH.decode(value)) for _, key, value in producer.messages]


# -- EventBatcher (pure) -------------------------------------------------------


def test_batcher_lingers_then_releases():
    b = EventBatcher(linger=0.005, max_events=100)
    assert b.add("a", 1, now=10.0) is None
    assert b.add("a", 2, now=10.003) is None
    assert b.due(10.0049) == []
    assert b.next_due() == pytest.approx(10.005)
    assert b.due(10.005) == [("a", [1, 2])]
    assert len(b) == 0 and b.next_due() is None


def test_batcher_size_cap_releases_at_once():
    b = EventBatcher(linger=1.0, max_events=3)
    assert b.add("a", 1, 0.0) is None
    assert b.add("a", 2, 0.0) is None
    assert b.add("a", 3, 0.0) == [1, 2, 3]
    assert len(b) == 0
    assert b.add("a", 4, 0.0) is None  # a new buffer opens
    assert len(b) == 1


def test_batcher_keeps_identities_apart_and_in_order():
    b = EventBatcher(linger=0.005, max_events=100)
    b.add("a", "a1", 0.000)
    b.add("b", "b1", 0.001)
    b.add("a", "a2", 0.002)
    b.add("c", "c1", 0.009)
    assert b.due(0.006) == [("a", ["a1", "a2"]), ("b", ["b1"])]
    assert b.drain() == [("c", ["c1"])]


def test_batcher_reopened_buffer_goes_to_the_back():
    b = EventBatcher(linger=0.005, max_events=2)
    b.add("a", 1, 0.000)
    b.add("b", 1, 0.001)
    assert b.add("a", 2, 0.002) == [1, 2]
    b.add("a", 3, 0.003)  # opened after b's buffer
    assert b.due(0.0065) == [("b", [1])]  # a's new buffer is not due yet; the scan stops there
    assert b.due(0.008) == [("a", [3])]


@pytest.mark.parametrize(("linger", "size"), [(-0.001, 10), (0.005, 0)])
def test_batcher_refuses_bad_settings(linger, size):
    with pytest.raises(ConfigError):
        EventBatcher(linger, size)


# -- ShimProducer over a fake producer ---------------------------------------------


def test_no_producer_until_the_first_batch():
    shim, clock, made = make_shim()
    assert made == []
    shim.send(event("a", 0))
    shim.poll()
    assert made == []  # still lingering
    clock.advance(5)
    shim.poll()
    assert len(made) == 1


def test_producer_config():
    shim, clock, made = make_shim(config={"linger.ms": 2, "compression.type": "lz4"})
    config = shim.producer_config
    assert config["bootstrap.servers"] == "unreachable.invalid:1"
    assert config["partitioner"] == "murmur2_random"
    assert config["enable.idempotence"] is True
    assert config["linger.ms"] == 2 and config["compression.type"] == "lz4"
    assert shim.topic == "t.syscall-events"
    shim.send(event("a", 0))
    shim.flush()
    assert made[0].config == config


def with_defaults(e: dict) -> dict:
    """The event as a consumer decodes it (optional fields filled in)."""
    return codec("SyscallEvent").decode(codec("SyscallEvent").encode(e))


def test_linger_flush_from_a_later_send():
    shim, clock, made = make_shim()
    shim.send(event("a", 0))
    clock.advance(2)
    shim.send(event("a", 1))
    clock.advance(3)
    shim.send(event("b", 0))  # a's batch is now 5 ms old: it leaves with this call
    (producer,) = made
    assert producer.messages[0][0] == "t.syscall-events"
    assert batches(producer) == [
        ("a", {"shim_id": "shim-1", "seq": 0, "events": [with_defaults(event("a", 0)), with_defaults(event("a", 1))]}),
    ]
    assert shim.buffered == 1


def test_size_cap_sends_at_once():
    shim, clock, made = make_shim(max_batch=3)
    for n in range(7):
        shim.send(event("a", n))
    sent = batches(made[0])
    assert [[e["event_id"] for e in b["events"]] for _, b in sent] == [["a-0", "a-1", "a-2"], ["a-3", "a-4", "a-5"]]
    assert shim.buffered == 1


def test_seq_increases_by_one_per_batch_across_identities():
    shim, clock, made = make_shim(max_batch=2, first_seq=40)
    for n in range(4):
        shim.send(event("a", n))
        shim.send(event("b", n))
    shim.flush()
    sent = batches(made[0])
    assert [b["seq"] for _, b in sent] == [40, 41, 42, 43]
    assert [k for k, _ in sent] == ["a", "b", "a", "b"]
    assert all(b["shim_id"] == "shim-1" for _, b in sent)
    assert shim.next_seq == 44


def test_each_batch_holds_one_identity_in_order():
    shim, clock, made = make_shim(max_batch=100)
    order = [("a", 0), ("b", 0), ("a", 1), ("c", 0), ("b", 1), ("a", 2)]
    for identity, n in order:
        shim.send(event(identity, n))
        clock.advance(1)
    shim.flush()
    for key, batch in batches(made[0]):
        ids = [e["identity"]["id"] for e in batch["events"]]
        assert set(ids) == {key}
        assert [e["event_id"] for e in batch["events"]] == [f"{key}-{n}" for i, n in order if i == key]


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
    shim.send(event("c", 0))
    shim.send(event("c", 1))
    shim.close()  # one batch of two events, refused
    assert shim.counters.batches_delivered == 2 and shim.counters.events_delivered == 2
    assert shim.counters.batches_failed == 1 and shim.counters.events_failed == 2
    assert "batch seq 2 of `c` (2 events) not delivered: broker down" in caplog.text


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
    with pytest.raises(BufferError):
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
