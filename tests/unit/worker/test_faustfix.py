"""The restart race of Faust's recovery, on a model of its consumer (no broker).

`ModelConsumer` keeps what matters of faust's Consumer: paused partitions, the
flow switch, read / committed offsets, and a drain loop that fetches the next
record of every unpaused stream partition each event-loop turn, delivers it to
the agent queue and records its offset as read, dropping records below the
read offset as "already read" (faust/transport/consumer.py `_drain_messages`).
`perform_seek` takes a few loop turns per partition, like aiokafka's
`seek_to_committed` awaiting the broker partition by partition, and leaves
a partition without a committed offset where its fetcher got to.

After recovery completes, every stream partition must deliver its records
contiguously from the committed offset (from the earliest one when nothing
is committed): a hole is a lost event.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest
from faust.tables.recovery import Recovery
from faust.types import TP

from streams.errors import ConfigError
from streams.worker.faustfix import SeekFirstRecovery, app_options, forget_reads_before_seek, worker_instance_id
from streams.settings import Settings

EVENTS = [TP("events", p) for p in range(3)]
QUARANTINE = TP("quarantine", 0)  # nothing committed; its fetcher consumed 0-2 without delivering them
STREAMS = [*EVENTS, QUARANTINE]
CHANGELOG = TP("app-trust-changelog", 0)
COMMITTED = {EVENTS[0]: 100, EVENTS[1]: 7, EVENTS[2]: 5000}
START = {**COMMITTED, QUARANTINE: 0}  # where each partition must deliver from


class ModelConsumer:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.paused = set(STREAMS)  # as after on_partitions_assigned; recovery resumed the changelog ...
        self.flow_active = True  # ... and the flow, to read it
        self.position = {**COMMITTED, QUARANTINE: 3}  # where the broker-side fetcher is
        self._committed_offset: dict[TP, int | None] = {}
        self._read_offset: dict[TP, int | None] = {}
        self._acked: dict[TP, list[int]] = {tp: [COMMITTED[tp] + 3] for tp in EVENTS}  # stale
        self._acked_index: dict[TP, set[int]] = {tp: {COMMITTED[tp] + 3} for tp in EVENTS}
        self._gap: dict[TP, object] = {tp: object() for tp in EVENTS}  # stale
        self.queue: list[tuple[TP, int]] = []

    def assignment(self) -> set[TP]:
        return set(STREAMS) | {CHANGELOG}

    def pause_partitions(self, tps) -> None:
        self.calls.append("pause")
        self.paused |= set(tps)

    def resume_partitions(self, tps) -> None:
        self.calls.append("resume" if set(tps) & set(EVENTS) else "resume-other")
        self.paused -= set(tps)

    def stop_flow(self) -> None:
        self.calls.append("stop_flow")
        self.flow_active = False

    def resume_flow(self) -> None:
        self.calls.append("resume_flow")
        self.flow_active = True

    async def perform_seek(self) -> None:
        self.calls.append("seek")
        for tp in EVENTS:
            for _ in range(3):  # a broker round trip: the drain loop runs meanwhile
                await asyncio.sleep(0)
            self.position[tp] = COMMITTED[tp]
        self._read_offset.update(COMMITTED)
        self._read_offset[QUARANTINE] = None
        self._committed_offset.update(COMMITTED)
        self.calls.append("seeked")

    async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
        await asyncio.sleep(0)
        return {tp: 0 for tp in tps}

    async def seek_wait(self, offsets: dict[TP, int]) -> None:
        await asyncio.sleep(0)
        for tp, offset in offsets.items():
            self.position[tp] = offset
            self._read_offset[tp] = offset or None

    async def drain(self) -> None:
        while True:
            await asyncio.sleep(0)
            if not self.flow_active:
                continue
            for tp in STREAMS:
                if tp in self.paused:
                    continue
                offset = self.position[tp]
                self.position[tp] += 1
                read = self._read_offset.get(tp)
                if read is None or offset >= read:
                    self.queue.append((tp, offset))
                    self._read_offset[tp] = offset


class FlowControl:
    def __init__(self, consumer: ModelConsumer):
        self.consumer = consumer

    def resume(self) -> None:
        self.consumer.calls.append("clear_queues")
        self.consumer.queue.clear()


async def _signal() -> None:
    return None


def _app(consumer: ModelConsumer) -> SimpleNamespace:
    async def maybe_start() -> None:
        return None

    return SimpleNamespace(
        consumer=consumer,
        conf=SimpleNamespace(stream_recovery_delay=0.0, broker_request_timeout=30.0,
                             consumer_auto_offset_reset="earliest"),
        consumer_generation_id=4,
        on_rebalance_complete=SimpleNamespace(send=_signal),
        flow_control=FlowControl(consumer),
        _fetcher=SimpleNamespace(maybe_start=maybe_start),
        assignor=SimpleNamespace(assigned_standbys=lambda: set()),
        on_rebalance_end=lambda: None,
    )


def _tables() -> SimpleNamespace:
    return SimpleNamespace(values=lambda: [], changelog_topics={CHANGELOG.topic},
                           on_actives_ready=lambda: None, on_standbys_ready=lambda: None)


def _complete_recovery(recovery_class: type[Recovery]) -> ModelConsumer:
    """Run on_recovery_completed with the drain loop going, then 20 more loop turns."""

    async def run() -> ModelConsumer:
        consumer = ModelConsumer()
        recovery = recovery_class(_app(consumer), _tables())
        drain = asyncio.ensure_future(consumer.drain())
        await recovery.on_recovery_completed(generation_id=4)
        for _ in range(20):
            await asyncio.sleep(0)
        drain.cancel()
        return consumer

    return asyncio.run(run())


def _delivered(consumer: ModelConsumer, tp: TP) -> list[int]:
    return [offset for t, offset in consumer.queue if t == tp]


def test_stream_partitions_deliver_contiguously_from_the_committed_offset():
    consumer = _complete_recovery(SeekFirstRecovery)
    for tp in STREAMS:
        got = _delivered(consumer, tp)
        assert got, f"{tp} delivered nothing after recovery"
        assert got == list(range(START[tp], START[tp] + len(got))), f"{tp}: hole in {got[:5]}..."


def test_the_seek_comes_before_the_stream_partitions_resume_and_the_queues_clear():
    calls = _complete_recovery(SeekFirstRecovery).calls
    assert calls.index("stop_flow") < calls.index("seek")
    assert calls.index("seeked") < calls.index("resume") < calls.index("resume_flow")
    assert calls.index("seeked") < calls.index("clear_queues")


def test_faust_own_recovery_still_has_the_race():
    """Faust 0.15.3 resumes the stream partitions before it seeks, and loses
    records in the model.  If this fails after a Faust upgrade, upstream fixed
    the order and streams.worker.faustfix may no longer be needed."""
    consumer = _complete_recovery(Recovery)
    assert consumer.calls.index("resume") < consumer.calls.index("seek")
    first = {tp: (_delivered(consumer, tp) or [None])[0] for tp in STREAMS}
    assert any(first[tp] != START[tp] for tp in EVENTS), first
    assert first[QUARANTINE] != 0, first


def test_reads_and_acknowledgements_before_the_seek_are_forgotten():
    consumer = ModelConsumer()
    consumer._committed_offset = {EVENTS[0]: 100}
    consumer._read_offset = {EVENTS[0]: 180, EVENTS[1]: 40}
    forget_reads_before_seek(consumer, {EVENTS[0], EVENTS[1]})
    assert consumer._read_offset == {EVENTS[0]: 100, EVENTS[1]: None}
    assert EVENTS[0] not in consumer._acked and EVENTS[1] not in consumer._gap
    assert EVENTS[2] in consumer._acked  # not seeked: left alone


def test_app_options_install_the_seek_first_recovery_and_static_membership(monkeypatch):
    import faust

    for name in ("BROKER_SESSION_TIMEOUT", "BROKER_HEARTBEAT_INTERVAL", "CONSUMER_GROUP_INSTANCE_ID"):
        monkeypatch.delenv(name, raising=False)
    app = faust.App("faustfix-unit", **app_options(Settings(app_id="app-1", web_port=7001)))
    assert isinstance(app.tables.recovery, SeekFirstRecovery)
    assert app.conf.broker_session_timeout == 10.0 and app.conf.broker_heartbeat_interval == 3.0
    assert app.conf.consumer_group_instance_id.startswith("app-1.")


def test_the_default_worker_id_is_stable_and_names_the_workers_address(monkeypatch):
    monkeypatch.setattr("socket.gethostname", lambda: "node 7:a")
    s = Settings(app_id="forgeone-trust", web_host="127.0.0.1", web_port=6066)
    assert worker_instance_id(s) == worker_instance_id(s) == "forgeone-trust.node-7-a.127.0.0.1.6066"
    assert worker_instance_id(Settings(app_id="forgeone-trust", web_port=6067)) != worker_instance_id(s)


def test_a_given_worker_id_is_used_checked_or_turns_static_membership_off():
    s = Settings()
    assert worker_instance_id(s, "worker-0") == "worker-0"
    assert worker_instance_id(s, "none") is None
    assert worker_instance_id(s, "  ") == worker_instance_id(s)
    with pytest.raises(ConfigError, match="`pod/0`"):
        worker_instance_id(s, "pod/0")


def test_the_consumer_thread_gets_a_copy_of_the_active_partitions(monkeypatch):
    """Faust's live set, emptied while the thread waits, reads as "every partition"."""
    from faust.transport.drivers.aiokafka import Consumer

    from streams.worker.faustfix import SnapshotConsumer

    seen = []

    async def parent_getmany(self, active, timeout):
        seen.append(active)
        return {}

    monkeypatch.setattr(Consumer, "_getmany", parent_getmany)
    live = {EVENTS[0], CHANGELOG}
    asyncio.run(SnapshotConsumer._getmany(object.__new__(SnapshotConsumer), live, 1.0))
    live.clear()
    assert seen == [{EVENTS[0], CHANGELOG}]


def test_the_worker_app_uses_the_snapshot_consumer_with_its_fetch_wait():
    from streams.worker import build_worker
    from streams.worker.faustfix import SnapshotConsumer

    async def built() -> int:
        app = build_worker(Settings(app_id="faustfix-install", kafka_bootstrap="127.0.0.1:9",
                                    fetch_wait_ms=10)).app
        assert isinstance(app.consumer, SnapshotConsumer)
        aiokafka_consumer = app.consumer._thread._create_worker_consumer(app.transport)  # no I/O until start()
        aiokafka_consumer._closed = True  # never started: nothing to close
        return aiokafka_consumer._fetch_max_wait_ms

    assert asyncio.run(built()) == 10
