"""The composition root: one engine worker built from one `Settings` value.

`build_worker(settings)` creates the Faust app, its topics, the trust table,
the agents, the background tasks and the operators' HTTP routes; nothing is
wired at import.  `trustctl worker` calls it; tests build workers with their
own settings.

Settings that matter, and why:

- `processing_guarantee="at_least_once"`: faust-streaming's exactly_once has
  open duplicate bugs; the decider is idempotent under redelivery instead
  (docs/reliability.md).
- agent concurrency 1: faust-streaming#606 can skip offsets above 1.
- raw key/value serializers: values are Avro, decoded by our own codec.
- the web server binds `TRUST_WEB_HOST` (127.0.0.1 by default) with Faust's
  own table and router endpoints off; its routes are the operator API of
  `streams.web`.
- the decide agent reads the events and the control topic (trust resets) as
  one stream: Faust co-partitions topics of equal partition count read by the
  same agent, so a reset lands with the identity's trust table partition.
- outputs go through one confluent-kafka producer (`agents/outputs.py`),
  flushed before every Faust offset commit (`worker/faustkit.py`).
- `/health` probes the broker (a metadata request in a thread) and Redis
  (one read), each at most once per `Probe.TTL` (streams/web.py).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from functools import partial

import faust

from streams import command_signature
from streams.agents.decide import BatchDecider, Source
from streams.agents.outputs import OutputProducer
from streams.trust_state import TrustEntry
from streams.agents.policy import PolicyWatcher
from streams.agents.redzone import RedzoneApplier, RedzoneFollower
from streams.engine import TrustEngine
from streams.kafka import clients
from streams.kafka.admin import TRUST_TABLE, group_lag
from streams.metrics import DecideMetrics
from streams.redzone.service import RedzoneService
from streams.redzone.view import LocalRedzoneView
from streams.settings import Settings
from streams.web import OperatorApi, Probe, register
from streams.worker.faustfix import app_options
from streams.worker.faustkit import TrustApp

log = logging.getLogger("forgeone.trust")

# How the decide agent takes its input: up to TAKE_MAX messages, or what came
# within TAKE_WITHIN seconds, decided in one go (BENCHMARKS.md).
TAKE_MAX = 500
TAKE_WITHIN = 0.005


@dataclass(slots=True)
class Worker:
    """One engine worker: the Faust app and the parts it runs."""

    settings: Settings
    app: faust.App
    policy: PolicyWatcher
    redzone_view: LocalRedzoneView
    outputs: OutputProducer
    metrics: DecideMetrics
    trust_table: object
    _decider: BatchDecider | None = field(default=None, repr=False)
    command_keys: object = None  # Keyring: trust resets must be signed (docs/security.md)
    engine_key: object = field(default=None, repr=False)  # SigningKey: signs quarantine commands

    def decider(self) -> BatchDecider:
        """The decide path, built once the first policy is in force."""
        if self._decider is None:
            sign = None if self.engine_key is None else partial(
                command_signature.sign_record, "QuarantineCommand", key=self.engine_key)
            engine = TrustEngine(self.policy.current, self.redzone_view, trust={},
                                 trace_depth=self.settings.trace_depth, sign_quarantine=sign)
            self.policy.on_switch = engine.use_policy
            self._decider = BatchDecider(engine, self.trust_table.data, metrics=self.metrics,
                                         partitions=self.settings.partitions, committed=self.committed,
                                         command_keys=self.command_keys)
        return self._decider

    def committed(self, partition: int) -> int | None:
        """The events partition's last committed offset this worker knows of."""
        from faust.types import TP

        offsets = getattr(self.app.consumer, "_committed_offset", None)
        return None if offsets is None else offsets.get(TP(self.settings.topic("events"), partition))

    def before_commit(self) -> None:
        """Right before Faust commits offsets: the changed trust entries go to the
        table's changelog (once per commit, not per message), then the outputs
        are flushed; both precede the offsets that cover them."""
        if self._decider is not None:
            data, send = self.trust_table.data, self.trust_table.send_changelog
            for identity, partition in self._decider.take_dirty().items():
                send(partition, identity, TrustEntry.of(data[identity]).to_dict())
        self.outputs.flush()

    def owned_partitions(self) -> set[int]:
        events = self.settings.topic("events")
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == events}

    def run(self) -> None:
        """Run until stopped (SIGINT/SIGTERM), as `trustctl worker` does."""
        from faust.worker import Worker as FaustWorker

        if self.settings.event_loop == "uvloop":
            import mode.loop

            mode.loop.use("uvloop")  # sets the policy before Faust makes its loop
        logging.basicConfig(level=logging.INFO)
        FaustWorker(self.app, loglevel="info", quiet=True).execute_from_commandline()


def make_app(s: Settings, before_commit_flush=None) -> TrustApp:
    """The Faust app with the engine's settings (also the bare-Faust benchmark's)."""
    return TrustApp(
        s.app_id,
        broker=clients.faust_broker(s),
        broker_credentials=clients.faust_credentials(s),  # SASL/TLS (None: plaintext)
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
        fetch_wait_ms=s.fetch_wait_ms,
        before_commit_flush=before_commit_flush,
        # restarts lose nothing (the seek-first recovery) and take over at once
        # (static membership, 10 s session): streams/worker/faustfix.py
        **app_options(s, worker_id=s.worker_id),
    )


def build_worker(settings: Settings) -> Worker:
    """Build one worker from `settings`; nothing connects until it runs."""
    s = settings
    metrics = DecideMetrics()
    outputs = OutputProducer(s, metrics=metrics)
    hook: list = []  # the worker's before_commit, once it exists
    app = make_app(s, lambda: hook[0]())

    def raw_topic(*kinds: str):
        return app.topic(*(s.topic(k) for k in kinds), key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw")

    # Adaptive trust per identity, co-partitioned with the events (same key, same
    # partition count): a restarted or rebalanced worker resumes from the changelog.
    # Keys are identity ids, values TrustEntry (JSON dicts on the changelog and
    # right after a restore).  The decider changes the table's data directly and
    # the changelog is written once per commit (Worker.before_commit).
    trust_table = app.Table(TRUST_TABLE, default=None, partitions=s.partitions,
                            schema=faust.Schema(key_serializer="json", value_serializer="json"))
    view = LocalRedzoneView()
    policy = PolicyWatcher(s, metrics=metrics)
    applier = RedzoneApplier(s, metrics=metrics)
    follower = RedzoneFollower(s, view, metrics=metrics)
    command_keys = command_signature.command_keyring(s)  # a key that does not load stops the worker here
    worker = Worker(s, app, policy, view, outputs, metrics, trust_table, command_keys=command_keys,
                    engine_key=command_signature.engine_signer(s, command_keys))
    hook.append(worker.before_commit)
    control = s.topic("control")

    # One Faust topic over two names: the agent dispatches on message.topic.
    @app.agent(raw_topic("events", "control"), name="decide", concurrency=1)
    async def decide(stream):
        """SyscallEventBatch -> DecisionBatch (+ violations, quarantines, dead letters);
        TrustControl -> the trust table."""
        await policy.ready.wait()
        await follower.ready.wait()
        d = worker.decider()
        # Many messages at once: Faust's per-take work (wake-up, acks) is paid
        # once per take, and the outputs are handed to librdkafka in one go.
        async for events in stream.take_events(TAKE_MAX, TAKE_WITHIN):
            emits = []
            for event in events:
                m = event.message
                handle = d.handle_control if m.topic == control else d.handle
                emits.extend(handle(m.key, m.value, Source(m.topic, m.partition, m.offset)))
            outputs.send(emits)

    @app.agent(raw_topic("quarantine"), name="redzone", concurrency=1)
    async def redzone(stream):
        """QuarantineCommand -> Redis redzone (atomic) -> RedzoneEvent."""
        log.info("command signatures %s", f"checked: only key(s) {', '.join(command_keys.ids())}"
                 if command_keys else "not checked (TRUST_COMMAND_VERIFY_KEYS unset)")
        async for event in stream.events():
            m = event.message
            outputs.send(await applier.handle(m.key, m.value, Source(m.topic, m.partition, m.offset)))

    @app.task
    async def watch_policy() -> None:
        await policy.run()

    @app.task
    async def follow_redzone() -> None:
        await follower.run()

    service = RedzoneService(s)
    register(app, OperatorApi(
        s, service, trust=trust_table, owned_partitions=worker.owned_partitions,
        policy=policy, metrics=metrics, ready=follower.ready.is_set, isolated=lambda: len(view),
        lag=lambda: group_lag(s, ("events", "control"), timeout=5.0),
        probes={"kafka": Probe(_kafka_probe(s)), "redis": Probe(lambda: service.store.get("~health-probe"))}))
    return worker


def _kafka_probe(s: Settings):
    """An async check that the broker answers a metadata request (run in a thread)."""
    admin: list = []  # one admin client, made on first use

    def check() -> None:
        from confluent_kafka import KafkaException

        if not admin:
            admin.append(clients.admin(s))
        try:
            admin[0].list_topics(timeout=1.5)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else exc
            raise ConnectionError(f"kafka at `{s.kafka_bootstrap}` is unreachable "
                                  f"({getattr(err, 'str', lambda: str(err))()})") from exc

    async def probe() -> None:
        await asyncio.get_running_loop().run_in_executor(None, check)
    return probe
