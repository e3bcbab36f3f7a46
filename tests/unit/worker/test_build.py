"""The composition root builds a worker from a Settings value, without a broker.

What these guard: nothing is wired at import, two workers with different
settings coexist in one process, and a batch's outputs are flushed before
Faust commits the offsets that cover its input.
"""

from __future__ import annotations

import asyncio
import inspect

import pytest
from faust.transport.consumer import Consumer as FaustConsumer

from streams.errors import DeliveryError
from streams.settings import Settings
from streams.worker import build_worker
from streams.worker.faustkit import TrustApp


def _settings(**kw) -> Settings:
    return Settings(app_id=kw.pop("app_id", "unit-worker"), **kw)


def test_importing_the_worker_wires_nothing():
    import streams.worker.build as build

    assert not any(isinstance(v, TrustApp) for v in vars(build).values())


def test_two_workers_from_two_settings_values():
    a = build_worker(_settings(app_id="unit-a", topic_prefix="a.", web_port=7001))
    b = build_worker(_settings(app_id="unit-b", topic_prefix="b.", web_port=7002, fetch_wait_ms=250))
    assert a.app is not b.app
    assert a.app.conf.id == "unit-a" and b.app.conf.id == "unit-b"
    assert a.app.conf.web_port == 7001 and b.app.conf.web_port == 7002
    assert a.app.fetch_wait_ms == 10 and b.app.fetch_wait_ms == 250
    topics = {t for agent in b.app.agents.values() for t in agent.channel.topics}
    assert {"b.syscall-events", "b.control", "b.quarantine"} <= topics
    assert not any(t.startswith("a.") for t in topics)


class _Recorder:
    def __init__(self, calls: list, fail: bool = False):
        self.calls, self.fail = calls, fail

    def flush(self) -> None:
        self.calls.append("outputs")
        if self.fail:
            raise DeliveryError("outputs not delivered")


def _producer_with(worker, calls: list, fail: bool = False):
    worker.app.before_commit_flush = _Recorder(calls, fail).flush
    producer = worker.app.producer

    async def faust_flush(self=producer):  # what the aiokafka producer would wait for
        calls.append("faust")

    return producer, faust_flush


def test_outputs_are_flushed_before_faust_flushes(monkeypatch):
    worker = build_worker(_settings())
    calls: list = []
    producer, faust_flush = _producer_with(worker, calls)
    monkeypatch.setattr(producer.buffer, "flush", faust_flush)
    asyncio.run(producer.flush())
    assert calls == ["outputs", "faust"]


def test_undelivered_outputs_stop_the_flush(monkeypatch):
    worker = build_worker(_settings())
    calls: list = []
    producer, faust_flush = _producer_with(worker, calls, fail=True)
    monkeypatch.setattr(producer.buffer, "flush", faust_flush)
    with pytest.raises(DeliveryError):
        asyncio.run(producer.flush())
    assert calls == ["outputs"]


def test_faust_flushes_the_producer_before_it_commits():
    """Faust's commit path awaits `app.producer.flush()` before `_commit`: the
    ordering the two tests above rely on (a Faust upgrade must keep it)."""
    source = inspect.getsource(FaustConsumer._commit_offsets)
    assert "await self.app.producer.flush()" in source
    assert source.index("await self.app.producer.flush()") < source.index("await self._commit(")
