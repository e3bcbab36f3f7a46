"""`/health` tells the truth, and the robustness counters show in `/metrics`:
the operator API's logic with fake probes and an injected clock, no I/O."""

from __future__ import annotations

import asyncio

from streams.metrics import DecideMetrics
from streams.settings import Settings
from streams.web import OperatorApi, Probe
from tests.unit.test_web import RecordingService, Watcher


class Check:
    """A probe target: fails while `down` holds an error, counts its calls."""

    def __init__(self, down: Exception | None = None, delay: float = 0.0):
        self.down, self.delay, self.calls = down, delay, 0

    async def __call__(self) -> None:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.down is not None:
            raise self.down


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def api(probes: dict, ready: bool = True, policy: bool = True, metrics: DecideMetrics | None = None):
    watcher = Watcher()
    if not policy:
        watcher.current = None
    return OperatorApi(Settings(), RecordingService(Settings()), trust={}, owned_partitions=set,
                       policy=watcher, metrics=metrics or DecideMetrics(), ready=lambda: ready,
                       isolated=lambda: 3, probes=probes)


def test_healthy_is_200_ok_with_every_check_named():
    reply = asyncio.run(api({"kafka": Probe(Check()), "redis": Probe(Check())}).health())
    assert reply.status == 200
    assert reply.body["status"] == "ok" and reply.body["ready"] is True
    assert reply.body["checks"] == {"kafka": "ok", "redis": "ok"} and "error" not in reply.body
    assert reply.body["policy_version"] == "v-9" and reply.body["isolated_processes"] == 3


def test_an_unreachable_dependency_is_503_naming_it():
    down = ConnectionError("redis at `redis://127.0.0.1:6379/0` is unreachable")
    reply = asyncio.run(api({"kafka": Probe(Check()), "redis": Probe(Check(down))}).health())
    assert reply.status == 503
    assert reply.body["status"] == "unavailable" and reply.body["ready"] is False
    assert reply.body["unreachable"] == ["redis"]
    assert reply.body["checks"]["kafka"] == "ok"
    assert reply.body["error"] == "cannot reach redis: redis at `redis://127.0.0.1:6379/0` is unreachable"


def test_both_down_names_both():
    reply = asyncio.run(api({"kafka": Probe(Check(OSError("kafka down"))),
                             "redis": Probe(Check(OSError("redis down")))}).health())
    assert reply.status == 503 and reply.body["unreachable"] == ["kafka", "redis"]
    assert "cannot reach kafka: kafka down" in reply.body["error"]


def test_a_probe_that_hangs_counts_as_unreachable_within_its_timeout():
    reply = asyncio.run(api({"kafka": Probe(Check(delay=30), timeout=0.05)}).health())
    assert reply.status == 503 and reply.body["checks"]["kafka"] == "no answer within 0.05 s"


def test_starting_is_503_and_says_what_it_waits_for():
    reply = asyncio.run(api({"kafka": Probe(Check())}, policy=False).health())
    assert reply.status == 503 and reply.body["status"] == "starting"
    assert "no valid policy" in reply.body["error"]
    reply = asyncio.run(api({}, ready=False).health())
    assert reply.status == 503 and "redzone view is not loaded" in reply.body["error"]


def test_a_probe_runs_at_most_once_per_ttl_and_concurrent_callers_share_it():
    clock, check = Clock(), Check(delay=0.01)
    probe = Probe(check, ttl=1.5, clock=clock)

    async def scenario():
        first = await asyncio.gather(*(probe.error() for _ in range(20)))
        assert first == [None] * 20 and check.calls == 1
        clock.now += 1.0
        await probe.error()
        assert check.calls == 1  # cached
        check.down = OSError("gone")
        clock.now += 1.0
        assert await probe.error() == "gone" and check.calls == 2
    asyncio.run(scenario())


def test_a_caller_that_goes_away_does_not_cancel_the_probe():
    check = Check(delay=0.05)
    probe = Probe(check)

    async def scenario():
        caller = asyncio.ensure_future(probe.error())
        await asyncio.sleep(0.01)
        caller.cancel()
        assert await probe.error() is None and check.calls == 1
    asyncio.run(scenario())


def test_the_robustness_counters_are_in_metrics_with_help_and_type():
    m = DecideMetrics()
    m.redelivered.update({"replayed": 2, "unknown": 1})
    m.seq_gaps = 4
    m.dlq["undecodable"] = 5
    m.redis_retries["redzone_agent"] = 6
    m.policy_refused["undecodable"] = 7
    m.outputs_replaced[("decisions", "split")] = 8
    reply = asyncio.run(api({}, metrics=m).metrics())
    text = reply.body
    assert reply.status == 200
    for name, sample in [
        ("trust_redeliveries_total", 'trust_redeliveries_total{kind="replayed"} 2'),
        ("trust_redeliveries_total", 'trust_redeliveries_total{kind="unknown"} 1'),
        ("trust_seq_gaps_total", "trust_seq_gaps_total 4"),
        ("trust_dlq_total", 'trust_dlq_total{error_code="undecodable"} 5'),
        ("trust_redis_retries_total", 'trust_redis_retries_total{component="redzone_agent"} 6'),
        ("trust_redis_retries_total", 'trust_redis_retries_total{component="redzone_view"} 0'),
        ("trust_policy_records_refused_total", 'trust_policy_records_refused_total{reason="undecodable"} 7'),
        ("trust_outputs_replaced_total", 'trust_outputs_replaced_total{kind="decisions",how="split"} 8'),
    ]:
        assert f"# HELP {name} " in text and f"# TYPE {name} counter" in text, name
        assert sample in text.splitlines(), sample
