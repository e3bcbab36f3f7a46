"""The Faust application: topics, the trust table and the agents, wired from Settings.

The decision path itself is `streams.agents.decide.BatchDecider`; this module
only connects it to Kafka.  Settings that matter, and why:

- `processing_guarantee="at_least_once"`: faust-streaming's exactly_once has
  open duplicate bugs; the decider is idempotent under redelivery instead.
- agent concurrency 1: faust-streaming#606 can skip offsets above 1.
- raw key/value serializers: values are Avro, decoded by our own codec.
- the web server binds 127.0.0.1 with the table and router endpoints off;
  its routes are the operator API of `streams.web`.
- the decide agent reads the events and the control topic (trust resets) as
  one stream: Faust co-partitions topics of equal partition count read by the
  same agent, so a reset lands with the identity's trust table partition.
- outputs go through one confluent-kafka producer (`agents/outputs.py`),
  flushed before every Faust offset commit: a Faust send cost hundreds of
  microseconds of CPU per record here (BENCHMARKS.md).
- the consumer's fetch wait can be cut from Faust's hard-coded 1.5 s
  (`TRUST_FETCH_WAIT_MS`), off by default; see the note at the setting.
- restarts lose nothing and take seconds: `streams.faustfix` (recovery
  order, consumer fetch, static membership; docs/reliability.md).
"""

from __future__ import annotations

import logging
import os

import faust

from streams.agents.decide import BatchDecider, Source
from streams.agents.outputs import OutputProducer
from streams.agents.policy import PolicyWatcher
from streams.agents.redzone import RedzoneApplier, RedzoneFollower
from streams.engine import TrustEngine
from streams.faustfix import app_options, install
from streams.kafka.admin import group_lag
from streams.metrics import DecideMetrics
from streams.redzone.service import RedzoneService
from streams.redzone.view import LocalRedzoneView
from streams.settings import Settings
from streams.web import OperatorApi, register

log = logging.getLogger("forgeone.trust")

settings = Settings.from_env()


# Faust builds its aiokafka consumer with fetch_max_wait_ms=1500 (hard-coded).
# aiokafka does not fetch a partition again while its last records are still
# buffered, so a fetch in flight often names only partitions with no new data
# (trust.control, trust.quarantine, idle event partitions), and the broker
# holds it the full 1.5 s: every decision then waits up to 1.5 s in real
# time.  A short wait (TRUST_FETCH_WAIT_MS=10) makes such a fetch come back
# at once: p50 latency at 5 % load fell from 1.3 s to 33 ms (BENCHMARKS.md).
# It was switched off because a restarted worker lost events or stalled 30 s
# with it: two Faust races it made frequent, fixed in streams/faustfix.py
# (docs/reliability.md, "Restarts").  Its cost: an idle worker uses ~7 % of a
# core at 10 ms (0.8 % at 1.5 s).  Unset, Faust's 1.5 s applies.
FETCH_MAX_WAIT_MS = int(os.environ.get("TRUST_FETCH_WAIT_MS") or 0) or None


def _make_app(s: Settings) -> faust.App:
    return faust.App(
        s.app_id,
        broker=[f"kafka://{h}" for h in s.kafka_bootstrap.split(",")],
        store="memory://",
        processing_guarantee="at_least_once",
        topic_partitions=s.partitions,
        topic_replication_factor=s.replication_factor,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        web_bind=s.web_host,
        web_host=s.web_host,
        web_port=s.web_port,
        web_tables_enabled=False,
        web_router_enabled=False,
        web_graph_enabled=False,
        stream_recovery_delay=0.0,
        broker_commit_interval=1.0,
        **app_options(s, worker_id=os.environ.get("TRUST_WORKER_ID")),  # restarts: streams/faustfix.py
    )


app = install(_make_app(settings), fetch_max_wait_ms=FETCH_MAX_WAIT_MS)  # streams/faustfix.py


def _raw_topic(kind: str):
    return app.topic(settings.topic(kind), key_type=bytes, value_type=bytes,
                     key_serializer="raw", value_serializer="raw")


# One Faust topic over two names: the agent dispatches on message.topic.
decide_topic = app.topic(settings.topic("events"), settings.topic("control"), key_type=bytes,
                         value_type=bytes, key_serializer="raw", value_serializer="raw")
quarantine_topic = _raw_topic("quarantine")

# Adaptive trust per identity, co-partitioned with the events (same key, same
# partition count): a restarted or rebalanced worker resumes from the changelog.
trust_table = app.Table("trust", default=None, partitions=settings.partitions,
                        schema=faust.Schema(key_serializer="json", value_serializer="json"))

redzone_view = LocalRedzoneView()
policy_watcher = PolicyWatcher(settings)
redzone_applier = RedzoneApplier(settings)
redzone_follower = RedzoneFollower(settings, redzone_view)
decide_metrics = DecideMetrics()
_decider: BatchDecider | None = None


def decider() -> BatchDecider:
    global _decider
    if _decider is None:
        engine = TrustEngine(policy_watcher.current, redzone_view, trust={},
                             trace_depth=settings.trace_depth)
        policy_watcher.on_switch = engine.use_policy
        _decider = BatchDecider(engine, trust_table, metrics=decide_metrics)
    return _decider


output_producer = OutputProducer(settings)
_faust_flush = app.producer.flush


async def _flush_outputs_then_faust() -> None:
    # Faust calls app.producer.flush() right before committing offsets.
    output_producer.flush()
    await _faust_flush()


app.producer.flush = _flush_outputs_then_faust


async def _send(emits) -> None:
    output_producer.send(emits)


@app.agent(decide_topic, concurrency=1)
async def decide(stream):
    """SyscallEventBatch -> DecisionBatch (+ violations, quarantines, dead letters);
    TrustControl -> the trust table."""
    await policy_watcher.ready.wait()
    await redzone_follower.ready.wait()
    d = decider()
    control = settings.topic("control")
    async for event in stream.events():
        m = event.message
        handle = d.handle_control if m.topic == control else d.handle
        await _send(handle(m.key, m.value, Source(m.topic, m.partition, m.offset)))


@app.agent(quarantine_topic, concurrency=1)
async def redzone(stream):
    """QuarantineCommand -> Redis redzone (atomic) -> RedzoneEvent."""
    async for event in stream.events():
        m = event.message
        await _send(await redzone_applier.handle(m.key, m.value, Source(m.topic, m.partition, m.offset)))


@app.task
async def watch_policy() -> None:
    await policy_watcher.run()


@app.task
async def follow_redzone() -> None:
    await redzone_follower.run()


def _owned_partitions() -> set[int]:
    events = settings.topic("events")
    return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == events}


register(app, OperatorApi(
    settings, RedzoneService(settings), trust=trust_table, owned_partitions=_owned_partitions,
    policy=policy_watcher, metrics=decide_metrics, ready=redzone_follower.ready.is_set,
    isolated=lambda: len(redzone_view), lag=lambda: group_lag(settings, ("events", "control"), timeout=5.0)))


def main() -> None:
    """Run a worker (what `trustctl worker` calls)."""
    from faust.worker import Worker

    logging.basicConfig(level=logging.INFO)
    Worker(app, loglevel="info", quiet=True).execute_from_commandline()


__all__ = ["app", "main"]
