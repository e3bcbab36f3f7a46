"""The outputs producer when Kafka refuses records, without a broker: a fake
producer that refuses as librdkafka does (at once above its size limit, or
in the delivery report as the broker does, for the whole produce batch)."""

from __future__ import annotations

import logging

import pytest
from confluent_kafka import KafkaError, KafkaException

from streams.agents.decide import Emit
from streams.agents.outputs import DEAD_KEEP, RECORD_LIMIT, LogBudget, OutputProducer
from streams.codec.avro import codec
from streams.errors import DeliveryError
from streams.metrics import DecideMetrics, render
from streams.settings import Settings

NOW = "2026-11-28T12:00:00.000000Z"
S = Settings()
SCHEMAS = {"decisions": "DecisionBatch", "violations": "Violation", "quarantine": "QuarantineCommand",
           "redzone": "RedzoneEvent", "dlq": "DeadLetter"}


class Msg:
    def __init__(self, topic, key, value):
        self._t, self._k, self._v = topic, key, value

    def topic(self):
        return self._t

    def key(self):
        return self._k

    def value(self):
        return self._v


class FakeProducer:
    """librdkafka's behaviour that matters here.  `limit`: refused in `produce`
    (MSG_SIZE_TOO_LARGE); `broker_limit`: a delivered batch holding a larger record
    fails whole, each of its records reported MSG_SIZE_TOO_LARGE; `refuse`: topics
    `produce` refuses with another error; `fail_delivery`: topics whose delivery fails."""

    def __init__(self, limit=1_000_000, broker_limit=None, refuse=(), fail_delivery=(), full=False):
        self.limit, self.broker_limit = limit, broker_limit
        self.refuse, self.fail_delivery, self.full = set(refuse), set(fail_delivery), full
        self.queued: list[tuple] = []
        self.delivered: list[tuple[str, bytes | None, bytes]] = []

    def produce(self, topic, value, key=None, on_delivery=None, **kw):
        if self.full:
            raise BufferError("Local: Queue full")
        if topic in self.refuse:
            raise KafkaException(KafkaError(KafkaError._UNKNOWN_TOPIC))
        if len(value) + len(key or b"") > self.limit:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        self.queued.append((topic, key, value, on_delivery))

    def poll(self, timeout=0):
        batch, self.queued = self.queued, []
        too_large = self.broker_limit is not None and any(len(v) > self.broker_limit for _, _, v, _ in batch)
        for topic, key, value, cb in batch:
            if too_large:
                err = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
            elif topic in self.fail_delivery:
                err = KafkaError(KafkaError._MSG_TIMED_OUT)
            else:
                err = None
                self.delivered.append((topic, key, value))
            if cb is not None:
                cb(err, Msg(topic, key, value))
        return len(batch)

    def flush(self, timeout=0):
        while self.queued:
            self.poll()
        return 0

    def records(self, kind):
        dec = codec(SCHEMAS[kind]).decode
        return [dec(v) for t, _, v in self.delivered if t == S.topic(kind)]


def outputs(fake, metrics=None) -> OutputProducer:
    return OutputProducer(S, metrics=metrics or DecideMetrics(), producer=fake, clock=lambda: NOW,
                          record_limit=min(RECORD_LIMIT, fake.limit * 9 // 10))


def decision(i: int, arg: str = "x") -> dict:
    return {"event_id": f"e-{i}", "syscall": "openat", "args": [arg],
            "identity": {"id": "svc-a", "process_id": "p-1", "container_id": None, "tenant": None, "labels": {}},
            "allowed": False, "action": "block", "reason_code": "arg_constraint",
            "reason": f"argument 0 of openat `{arg}` does not match /tmp/.*", "trust_score": 0.7,
            "policy_version": "v1", "mode": "enforce", "enforced": True, "timestamp": NOW,
            "event_timestamp": NOW}


def decisions_emit(decisions: list[dict]) -> Emit:
    value = codec("DecisionBatch").encode({"shim_id": "s", "seq": 7, "partition": 3, "decisions": decisions})
    return Emit("decisions", b"svc-a", value)


def quarantine_emit(reason: str) -> Emit:
    cmd = {"command_id": "c-1", "op": "quarantine", "process_id": "p-1", "container_id": None,
           "identity": {"id": "svc-a", "process_id": "p-1", "container_id": None, "tenant": None, "labels": {}},
           "reason": reason, "reason_code": "arg_constraint", "isolation_level": "full", "isolation_syscalls": [],
           "forensic_mode": "full", "trace": [], "policy_version": "v1", "source": "engine", "event_id": "e-1",
           "timestamp": NOW}
    return Emit("quarantine", b"p-1", codec("QuarantineCommand").encode(cmd))


def dead_emit(value: bytes) -> Emit:
    return Emit("dlq", b"k", codec("DeadLetter").encode({
        "topic": "trust.syscall-events", "partition": 1, "offset": 9, "key": b"k", "value": value,
        "reason": "cannot decode", "error_code": "undecodable", "event_index": None, "timestamp": NOW}))


def test_a_decision_with_a_900_kb_argument_is_sent_truncated_and_the_rest_of_the_take_flows():
    fake, metrics = FakeProducer(), DecideMetrics()
    out = outputs(fake, metrics)
    huge = "A" * 900_000
    out.send([decisions_emit([decision(1), decision(2, huge), decision(3)]), quarantine_emit(huge + huge),
              quarantine_emit("small")])
    out.flush()  # nothing failed: no exception
    batches = fake.records("decisions")
    got = [d for b in batches for d in b["decisions"]]
    assert [d["event_id"] for d in got] == ["e-1", "e-2", "e-3"]
    assert all(b["seq"] == 7 and b["shim_id"] == "s" for b in batches)
    assert got[1]["args"][0].endswith("...[truncated, 900000 bytes]") and got[0]["args"] == ["x"]
    big_q, small_q = fake.records("quarantine")
    assert big_q["reason"].endswith("...[truncated, 1800000 bytes]") and big_q["process_id"] == "p-1"
    assert small_q["reason"] == "small"
    assert all(len(v) + len(k or b"") <= RECORD_LIMIT for _, k, v in fake.delivered)
    assert metrics.outputs_replaced[("quarantine", "truncated")] == 1
    assert ("decisions", "split+truncated") in metrics.outputs_replaced or \
        ("decisions", "truncated") in metrics.outputs_replaced
    assert fake.records("dlq") == []


def test_a_decision_batch_of_many_small_decisions_is_split_in_order_losing_none():
    fake, metrics = FakeProducer(limit=20_000), DecideMetrics()
    out = outputs(fake, metrics)
    out.send([decisions_emit([decision(i) for i in range(400)])])
    out.flush()
    batches = fake.records("decisions")
    assert len(batches) > 1
    assert [d["event_id"] for b in batches for d in b["decisions"]] == [f"e-{i}" for i in range(400)]
    assert all(d["args"] == ["x"] for b in batches for d in b["decisions"])  # nothing cut
    assert metrics.outputs_replaced == {("decisions", "split"): 1}


def test_a_dead_letter_of_a_huge_input_keeps_the_head_of_its_bytes():
    fake = FakeProducer(limit=100_000)
    out = outputs(fake)
    out.send([dead_emit(b"\x01" * 150_000)])
    out.flush()
    [dead] = fake.records("dlq")
    assert dead["error_code"] == "undecodable" and dead["value"] == b"\x01" * len(dead["value"])
    assert 0 < len(dead["value"]) < 100_000


def test_a_record_refused_for_another_reason_becomes_a_dead_letter_naming_why(caplog):
    fake, metrics = FakeProducer(refuse={S.topic("violations")}), DecideMetrics()
    out = outputs(fake, metrics)
    value = b"\x02" * 100
    with caplog.at_level(logging.WARNING, logger="forgeone.trust.outputs"):
        out.send([Emit("violations", b"svc-a", value), decisions_emit([decision(1)])])
    out.flush()
    [dead] = fake.records("dlq")
    assert dead["topic"] == S.topic("violations") and (dead["partition"], dead["offset"]) == (-1, -1)
    assert dead["error_code"] == "output_refused" and dead["value"] == value and dead["key"] == b"svc-a"
    assert "_UNKNOWN_TOPIC" in dead["reason"] and "`violations` record of 100 bytes" in dead["reason"]
    assert len(fake.records("decisions")) == 1
    assert metrics.dlq == {"output_refused": 1}
    assert metrics.outputs_replaced == {("violations", "dead_lettered"): 1}
    assert "was refused by Kafka" in caplog.text


def test_a_refused_record_with_nowhere_to_go_fails_the_flush():
    fake = FakeProducer(refuse={S.topic("violations"), S.topic("dlq")})
    out = outputs(fake)
    out.send([Emit("violations", b"svc-a", b"\x02" * 10), decisions_emit([decision(1)])])
    assert len(fake.records("decisions")) == 1  # the rest of the take is still sent
    with pytest.raises(DeliveryError, match="offsets stay uncommitted"):
        out.flush()
    assert out.failed is not None


def test_a_record_that_does_not_decode_as_its_kind_is_dead_lettered_whole():
    fake = FakeProducer(limit=1_000)
    out = outputs(fake)
    out.send([Emit("decisions", b"k", b"\x00" * 5_000)])
    out.flush()
    [dead] = fake.records("dlq")
    assert dead["error_code"] == "output_refused" and dead["value"] == b"\x00" * len(dead["value"])
    assert 0 < len(dead["value"]) <= min(DEAD_KEEP, 1_000)
    assert "does not decode" in dead["reason"]


def test_a_delivery_failure_fails_the_flush_for_good():
    fake = FakeProducer(fail_delivery={S.topic("redzone")})
    out = outputs(fake)
    out.send([Emit("redzone", b"p-1", b"x")])
    with pytest.raises(DeliveryError, match="_MSG_TIMED_OUT"):
        out.flush()
    out.send([decisions_emit([decision(1)])])
    with pytest.raises(DeliveryError):  # sticky: no later commit may cover the lost record
        out.flush()


def test_a_full_queue_stops_the_take_and_fails_the_flush(monkeypatch):
    from streams.kafka import clients

    def produce(*args, **kwargs):
        raise DeliveryError("the producer's queue for `x` stayed full for 30 s: is the broker reachable?")

    monkeypatch.setattr(clients, "produce", produce)
    fake, metrics = FakeProducer(), DecideMetrics()
    out = outputs(fake, metrics)
    out.send([decisions_emit([decision(1)]), quarantine_emit("r")])
    assert metrics.outputs_replaced == {("decisions", "undeliverable"): 2}
    with pytest.raises(DeliveryError, match="2 output record"):
        out.flush()


def test_records_the_broker_refuses_as_too_large_are_sent_again_to_fit():
    fake, metrics = FakeProducer(broker_limit=60_000), DecideMetrics()
    out = outputs(fake, metrics)
    out.send([decisions_emit([decision(1, "B" * 200_000)]), quarantine_emit("small")])
    out.flush()
    [batch] = fake.records("decisions")
    assert batch["decisions"][0]["args"][0].endswith("...[truncated, 200000 bytes]")
    assert [q["reason"] for q in fake.records("quarantine")] == ["small"]
    assert metrics.outputs_replaced[("quarantine", "retried")] == 1
    assert out.failed is None


def test_a_small_record_the_broker_refuses_twice_fails_the_flush():
    fake = FakeProducer(broker_limit=10)
    out = outputs(fake)
    out.send([quarantine_emit("small")])
    with pytest.raises(DeliveryError, match="sent twice"):
        out.flush()


def test_dead_letters_are_logged_within_a_budget(caplog):
    clock = [0.0]
    fake = FakeProducer()
    out = OutputProducer(S, producer=fake, budget=LogBudget(lines=2, window=10, clock=lambda: clock[0]))
    with caplog.at_level(logging.WARNING, logger="forgeone.trust.outputs"):
        out.send([dead_emit(b"x")] * 5)
        clock[0] = 11.0
        out.send([dead_emit(b"x")])
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert lines[0].startswith("dead letter (undecodable) for trust.syscall-events[1]@9: cannot decode")
    assert lines[2].endswith("(3 similar line(s) not logged)")


def test_replacements_are_counted_in_the_metrics_text():
    fake, metrics = FakeProducer(limit=20_000), DecideMetrics()
    outputs(fake, metrics).send([decisions_emit([decision(i) for i in range(400)])])
    text = render(metrics.families())
    assert "# TYPE trust_outputs_replaced_total counter" in text
    assert 'trust_outputs_replaced_total{kind="decisions",how="split"} 1' in text
