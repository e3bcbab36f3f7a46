"""Poisoned records, without a broker: a null value (a tombstone) or bytes that
are not what the topic carries, on the events, control, quarantine and policy
topics.  Each is refused with a dead letter or a refusal, logged and counted;
nothing raises out of a handler, and what runs keeps running."""

from __future__ import annotations

import asyncio
import logging

import pytest

from streams.agents.decide import BatchDecider, Source
from streams.agents.policy import PolicyWatcher
from streams.agents.redzone import RedzoneApplier, RedzoneFollower
from streams.codec.avro import codec
from streams.engine import TrustEngine
from streams.errors import CodecError, RedzoneUnavailable, TrustError
from streams.metrics import DecideMetrics, render
from streams.policy.history import RefusalReason
from streams.policy_topic import PolicyGate, PublishedPolicy, decode_policy, envelope_of, replay
from streams.redzone.memory import InMemoryRedzoneStore
from streams.redzone.view import LocalRedzoneView
from streams.settings import Settings
from tests.conftest import NOW, make_policy

EVENTS = Source("trust.syscall-events", 1, 5)
CONTROL = Source("trust.control", 1, 6)
QUARANTINE = Source("trust.quarantine", 0, 7)


def dead_letters(emits) -> list[dict]:
    return [codec("DeadLetter").decode(e.value) for e in emits if e.kind == "dlq"]


@pytest.fixture
def decider():
    engine = TrustEngine(make_policy({"read": {}}), LocalRedzoneView(), trust={})
    return BatchDecider(engine, {}, clock=lambda: NOW, partitions=6)


# -- events and control (b) ------------------------------------------------------------

@pytest.mark.parametrize("handle, source", [("handle", EVENTS), ("handle_control", CONTROL)],
                         ids=["events", "control"])
@pytest.mark.parametrize("value", [None, b"", b"\xff" * 7], ids=["tombstone", "empty", "garbage"])
def test_a_poisoned_record_is_one_dead_letter_and_nothing_raises(decider, handle, source, value):
    emits = getattr(decider, handle)(b"svc-a", value, source)
    [dead] = dead_letters(emits)
    assert [e.kind for e in emits] == ["dlq"]
    assert dead["error_code"] == "undecodable" and dead["value"] == (value or b"")
    assert (dead["topic"], dead["partition"], dead["offset"]) == (source.topic, source.partition, source.offset)
    assert dead["reason"] and decider.metrics.dlq == {"undecodable": 1}
    assert decider.state == {} and decider.take_dirty() == {}


def test_a_tombstone_without_a_key_is_dead_lettered_too(decider):
    [dead] = dead_letters(decider.handle(None, None, EVENTS))
    assert dead["key"] is None and dead["value"] == b""


# -- the quarantine topic -------------------------------------------------------------

def applier(store=None, metrics=None) -> RedzoneApplier:
    async def no_sleep(delay):
        return None
    return RedzoneApplier(Settings(), store=store or InMemoryRedzoneStore(), clock=lambda: NOW,
                          sleep=no_sleep, metrics=metrics)


@pytest.mark.parametrize("value", [None, b"\x00junk"], ids=["tombstone", "garbage"])
def test_a_poisoned_quarantine_record_is_dead_lettered_and_counted(value):
    metrics = DecideMetrics()
    [dead] = dead_letters(asyncio.run(applier(metrics=metrics).handle(b"p-1", value, QUARANTINE)))
    assert dead["error_code"] == "undecodable" and dead["value"] == (value or b"")
    assert metrics.dlq == {"undecodable": 1}


def command(pid: str = "p-1") -> bytes:
    return codec("QuarantineCommand").encode({
        "command_id": "c-1", "op": "quarantine", "process_id": pid, "container_id": None,
        "identity": {"id": "svc-a", "process_id": pid, "container_id": None, "tenant": None, "labels": {}},
        "reason": "r", "reason_code": None, "isolation_level": "full", "isolation_syscalls": [],
        "forensic_mode": "none", "trace": [], "policy_version": "v1", "source": "engine", "event_id": None,
        "timestamp": NOW})


class Broken(InMemoryRedzoneStore):
    async def quarantine(self, cmd, now):
        raise AttributeError("a bug in the store")


def test_a_command_that_fails_unexpectedly_is_dead_lettered_and_the_agent_goes_on(caplog):
    metrics = DecideMetrics()
    with caplog.at_level(logging.ERROR, logger="forgeone.trust.redzone"):
        [dead] = dead_letters(asyncio.run(applier(Broken(), metrics).handle(b"p-1", command(), QUARANTINE)))
    assert dead["error_code"] == "apply_failed" and "AttributeError: a bug in the store" in dead["reason"]
    assert "could not be applied" in caplog.text and metrics.dlq == {"apply_failed": 1}


class Down(InMemoryRedzoneStore):
    def __init__(self, failures: int):
        super().__init__()
        self.left = failures

    async def quarantine(self, cmd, now):
        if self.left:
            self.left -= 1
            raise RedzoneUnavailable("redis at `redis://127.0.0.1:1/0` is unreachable")
        return await super().quarantine(cmd, now)

    async def follow(self, on_change, on_subscribed=None):
        if self.left:
            self.left -= 1
            raise RedzoneUnavailable("redis at `redis://127.0.0.1:1/0` is unreachable")
        await on_subscribed()
        await asyncio.Event().wait()


def test_redis_retries_are_counted_by_who_retried():
    metrics = DecideMetrics()
    asyncio.run(applier(Down(3), metrics).handle(b"p-1", command(), QUARANTINE))

    async def follow():
        async def no_sleep(delay):
            return None
        follower = RedzoneFollower(Settings(), LocalRedzoneView(), store=Down(2), sleep=no_sleep, metrics=metrics)
        task = asyncio.create_task(follower.follow())
        try:
            await asyncio.wait_for(follower.ready.wait(), 10)
        finally:
            task.cancel()
    asyncio.run(follow())
    assert metrics.redis_retries == {"redzone_agent": 3, "redzone_view": 2}
    text = render(metrics.families())
    assert 'trust_redis_retries_total{component="redzone_agent"} 3' in text
    assert 'trust_redis_retries_total{component="redzone_view"} 2' in text


# -- the policy topic (c) ---------------------------------------------------------------

def envelope(version: str = "v1", **changes) -> dict:
    cp = make_policy({"read": {}}, version=version)
    return {**envelope_of(cp, NOW, "pytest"), **changes}


def encoded(env: dict) -> bytes:
    return codec("PolicyDocument").encode(env)


def test_decode_policy_refuses_a_tombstone_with_a_codec_error():
    with pytest.raises(CodecError, match="tombstone"):
        decode_policy(None)
    with pytest.raises(CodecError):
        decode_policy(b"\x00garbage")


@pytest.mark.parametrize("canonical", ["{not json", "[" * 100_000 + "]" * 100_000, "null", '"x"'],
                         ids=["not-json", "too-deep", "null", "a-string"])
def test_the_gate_refuses_a_canonical_json_that_is_no_document_and_keeps_the_running_one(canonical):
    gate = PolicyGate()
    gate.offer(envelope("v1"))
    with pytest.raises(TrustError):
        gate.offer(envelope("v2", canonical_json=canonical))
    assert gate.history.current.version == "v1"
    assert [r.reason for r in gate.history.refusals()] == [RefusalReason.INVALID]


def poisoned_topic() -> list[PublishedPolicy]:
    """What read_published returns for: v1, a tombstone, v2 with broken JSON, garbage, v3."""
    records = [encoded(envelope("v1")), None, encoded(envelope("v2", canonical_json="[" * 50_000)),
               b"\x00garbage", encoded(envelope("v3"))]
    out = []
    for offset, value in enumerate(records):
        try:
            out.append(PublishedPolicy(decode_policy(value), offset))
        except CodecError as exc:
            out.append(PublishedPolicy(None, offset, str(exc)))
    return out


def test_history_and_publish_replay_skip_poisoned_records():
    gate = replay(poisoned_topic())
    assert gate.history.current.version == "v3"
    assert [(r.version, r.reason.value) for r in gate.history.refusals()] == [
        ("?", "undecodable"), ("v2", "invalid"), ("?", "undecodable")]


def test_the_watcher_refuses_each_poisoned_record_logs_counts_and_keeps_deciding(caplog):
    metrics = DecideMetrics()
    watcher = PolicyWatcher(Settings(), metrics=metrics)
    records = [encoded(envelope("v1")), None, encoded(envelope("v2", canonical_json="[" * 50_000)),
               b"\x00garbage", encoded(envelope("v2b", canonical_json="{oops"))]
    with caplog.at_level(logging.ERROR, logger="forgeone.trust.policy"):
        for offset, value in enumerate(records):
            watcher._offer_bytes(decode_policy, value, offset)
    assert watcher.current.version == "v1"
    assert metrics.policy_refused == {"undecodable": 2, "invalid": 2}
    assert "policy record at offset 1 ignored (undecodable), running version stays v1" in caplog.text
    assert "tombstone" in caplog.text
    assert "policy v2 refused (invalid), running version stays v1" in caplog.text
    text = render(metrics.families())
    assert "# TYPE trust_policy_records_refused_total counter" in text
    assert 'trust_policy_records_refused_total{reason="invalid"} 2' in text


def test_the_watcher_refuses_whatever_the_gate_raises(monkeypatch):
    watcher = PolicyWatcher(Settings())
    watcher.offer(envelope("v1"))

    def boom(env):
        raise MemoryError("out of memory")
    monkeypatch.setattr(watcher.gate, "offer", boom)
    assert watcher.offer(envelope("v2")) is False
    assert watcher.current.version == "v1"
    assert watcher.refusals()[-1].reason is RefusalReason.UNDECODABLE


class Corrupt(InMemoryRedzoneStore):
    """Publishes one change that does not load, then behaves."""

    def __init__(self):
        super().__init__()
        self.bad = True

    async def follow(self, on_change, on_subscribed=None):
        if self.bad:
            self.bad = False
            await on_subscribed()
            raise ValueError("Expecting value: line 1 column 1 (char 0)")
        await super().follow(on_change, on_subscribed)


def test_a_change_that_does_not_load_makes_the_view_resync_not_stop(caplog):
    async def scenario():
        async def no_sleep(delay):
            return None
        store, view = Corrupt(), LocalRedzoneView()
        follower = RedzoneFollower(Settings(), view, store=store, sleep=no_sleep)
        task = asyncio.create_task(follower.follow())
        try:
            await asyncio.wait_for(follower.ready.wait(), 10)
            await store.quarantine(codec("QuarantineCommand").decode(command("p-9")), NOW)

            async def until():
                while view.isolation_of("p-9") is None:
                    await asyncio.sleep(0.001)
            await asyncio.wait_for(until(), 10)
        finally:
            task.cancel()
    with caplog.at_level(logging.ERROR, logger="forgeone.trust.redzone"):
        asyncio.run(scenario())
    assert "could not follow Redis; resyncing" in caplog.text
