"""Corrections to faust-streaming 0.15.3 (aiokafka 0.14) so a restarted worker
loses no event and decides again within seconds of a crash.

The composition root applies them (streams/worker/build.py):
``TrustApp(..., **app_options(settings, worker_id=settings.worker_id))``, and
its transport's consumer is a :class:`SnapshotConsumer`
(streams/worker/faustkit.py).

docs/reliability.md ("Restarts") has the figures; tests/unit/worker/test_faustfix.py
models the races, tests/integration/test_restarts.py restarts a real worker.

1. Recovery resumes before it seeks (:class:`SeekFirstRecovery`)
----------------------------------------------------------------
After a rebalance, a worker with tables reads its changelogs back with the
consumer's fetcher running, then ``Recovery.on_recovery_completed``
(faust/tables/recovery.py) hands the stream partitions to the agents.  In
0.15.3 it does so in this order::

    consumer.resume_partitions(stream partitions)     # fetching starts here
    await consumer.perform_seek()                     # seek to committed offsets
    app.flow_control.resume()                         # clears every agent queue

The seek awaits ``committed(tp)`` partition by partition (aiokafka
``seek_to_committed``, a broker round trip each), so records of the stream
partitions are fetched before it completes.  Faust's drain loop delivers them
to the agent queues and records each one's offset as read (``_read_offset``,
faust/transport/consumer.py ``_drain_messages``); the loop keeps running
between the end of the seek and ``flow_control.resume()``, so the read offsets
it records there survive the seek's reset.  Then the queues are cleared, the
records fetched again from the committed offset are dropped as "already read",
and the gap logic (``_add_gap`` / ``_new_offset``) lets the next commit step
over them: the events are lost for good.  When no gap gets recorded instead,
the partition's commits stop (its first acknowledged offset is never the
committed one).  Measured: 20, 4,672 and 299 events lost in 3 of 3 runs of
3-5 graceful restarts under load; 547 and 8,808 in a colleague's runs.

This is the bug class of faust-streaming#216 (fixed by #217, only in
``Recovery._resume_streams``, the path of apps without tables) and #221 (#223
discards events of an older generation, which does not help here: the
records are of the current one).  Upstream's ``on_recovery_completed`` once
sought first and resumed after; the 0.15.3 installed here resumes first.

The fix keeps the stream partitions paused and the consumer's flow stopped
(a batch being drained stops at its next record) while it seeks; right after
the seek, with no ``await`` in between, it sets the read offsets to the
committed ones, forgets acknowledgements and gaps recorded before the seek,
clears the agent queues, and only then resumes the partitions and the flow.
A partition with nothing committed is sought to its earliest offset (with
``auto_offset_reset=earliest``): ``seek_to_committed`` leaves it wherever its
fetcher got to (see 2).

2. The consumer thread reads Faust's live set of active partitions (:class:`SnapshotConsumer`)
-------------------------------------------------------------------------------------------
Faust passes its own, mutable, set of active partitions to the consumer
thread, which reads it again while it waits for records.  When recovery
pauses the changelogs while every stream partition is still paused, the set
empties, aiokafka's ``fetched_records`` takes the empty set for "every
partition", hands over buffered stream records, and Faust drops them as not
active: aiokafka has moved past them.  Partitions with a committed offset are
sought back; those without one (trust.quarantine shortly after a first
start) were not, so quarantine commands stayed unapplied and the decide
agent waited out its 30 s catch-up deadline: 3 of 37 restarts with fix 1
alone and a 10 ms fetch wait (one traced in aiokafka's debug log); the short
wait makes a fetch return inside that window.  The thread now gets a copy.

3. Fast restart after kill -9 (:func:`app_options`)
---------------------------------------------------
A dead member holds its partitions until its session times out (Faust's
default: 60 s).  With static membership (KIP-345, ``group.instance.id``) the
replacement started under the same id takes them over at once, without a
rebalance; aiokafka 0.14 sends it in JoinGroup v5, Faust passes
``consumer_group_instance_id`` through.  A worker that dies and does not come
back is noticed when its session times out: 10 s, heartbeats every 3 s from
the consumer's own thread.  A process stalled (GC, CPU starvation) for up to
~7 s keeps its partitions; a longer stall costs a rebalance, at-least-once.
Static members do not leave the group on a graceful stop (aiokafka sends no
LeaveGroup for them): a worker stopped for good frees its partitions after
the same 10 s.

Not done: a guard refusing commits that skip offsets.  The offsets a commit
may legitimately skip (transaction markers, compacted records) are known
only to the fetcher, so a cheap guard would either stop a partition's
commits for good on such a topic or trust the same read offsets the race
corrupts.  Forgetting the acknowledgements and gaps recorded before a seek
is the sound part of it, and is done.
"""

from __future__ import annotations

import asyncio
import re
import socket
from typing import Any

from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.transport.drivers.aiokafka import Consumer
from faust.types import TP

from streams.errors import ConfigError
from streams.settings import Settings

# Group membership (section 3 above; benchmarks/restart_bench.py measured the choice).
SESSION_TIMEOUT = 10.0
HEARTBEAT_INTERVAL = 3.0
NO_STATIC_MEMBERSHIP = "none"
_INSTANCE_ID = re.compile(r"[A-Za-z0-9._-]{1,249}")


class SeekFirstRecovery(Recovery):
    """`Recovery` that seeks the stream partitions before it resumes them."""

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        """Call when active table recovery is completed (see the module docstring)."""
        app = self.app
        consumer = app.consumer
        self.log.info("Restore complete!")
        await app.on_rebalance_complete.send()
        self._set_recovery_ended()
        callbacks = [
            asyncio.ensure_future(table.on_recovery_completed(
                self.actives_for_table[table], self.standbys_for_table[table]))
            for table in self.tables.values()
        ]
        if callbacks:
            await asyncio.wait(callbacks)
        assignment = consumer.assignment()
        if app.consumer_generation_id != generation_id:
            self.log.warning(f"Recovery rebalancing again app id {app.consumer_generation_id} "
                             f"param {generation_id}")
            return
        streams = {tp for tp in assignment if not self._is_changelog_tp(tp)}
        # Nothing of the stream partitions may be fetched or delivered before the seek.
        consumer.pause_partitions(streams)
        consumer.stop_flow()
        if assignment:
            self.log.info("Seek stream partitions to committed offsets.")
            await self._wait(self._seek_streams(streams), timeout=app.conf.broker_request_timeout)
        # From here to resume_flow(): no await, so the drain loop cannot run in between.
        forget_reads_before_seek(consumer, streams)
        self.completed.set()
        self.log.dev("Resume stream partitions")
        consumer.resume_partitions(streams)
        consumer.resume_flow()
        app.flow_control.resume()  # clears the agent queues: what they hold predates the seek
        await app._fetcher.maybe_start()  # type: ignore[attr-defined]
        self.tables.on_actives_ready()
        if not app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        app.on_rebalance_end()
        self.log.info("Worker ready")

    async def _seek_streams(self, streams: set[TP]) -> None:
        """Committed offsets; the earliest one where nothing is committed yet.

        aiokafka's ``seek_to_committed`` leaves a partition without a
        committed offset where its fetcher got to, which may be past records
        never delivered; with ``auto_offset_reset=earliest`` it goes back to
        where a new consumer would start.
        """
        consumer = self.app.consumer
        await consumer.perform_seek()
        if self.app.conf.consumer_auto_offset_reset != "earliest":
            return
        fresh = [tp for tp in streams if consumer._committed_offset.get(tp) is None]  # type: ignore[attr-defined]
        if fresh:
            earliest = await consumer.earliest_offsets(*fresh)
            await consumer.seek_wait({tp: earliest[tp] for tp in fresh if earliest.get(tp) is not None})


def forget_reads_before_seek(consumer: Any, tps: set[TP]) -> None:
    """After a seek to the committed offsets: what was read or acknowledged
    before it will be delivered again, so none of it may count.

    The read offset becomes the committed offset (``perform_seek`` set it too,
    but the drain loop may have written after it); acknowledgements and gaps
    recorded before the seek are dropped, so no commit can be computed from them.
    """
    committed = consumer._committed_offset
    read = consumer._read_offset
    for tp in tps:
        read[tp] = committed.get(tp)
        consumer._acked.pop(tp, None)
        consumer._acked_index.pop(tp, None)
        consumer._gap.pop(tp, None)


class SeekFirstTableManager(TableManager):
    """`TableManager` whose recovery is :class:`SeekFirstRecovery`."""

    @property
    def recovery(self) -> Recovery:
        if self._recovery is None:
            self._recovery = SeekFirstRecovery(self.app, self, beacon=self.beacon, loop=self.loop)
        return self._recovery


class SnapshotConsumer(Consumer):
    """Faust's aiokafka consumer; its thread fetches with a copy of the active
    partitions (section 2 of the module docstring)."""

    async def _getmany(self, active_partitions: set[TP] | None, timeout: float) -> Any:
        snapshot = None if active_partitions is None else set(active_partitions)
        return await super()._getmany(snapshot, timeout)


def worker_instance_id(settings: Settings, worker_id: str | None = None) -> str | None:
    """The worker's group.instance.id, or None for dynamic membership.

    `worker_id` wins when given (`none` turns static membership off).  The
    default, ``<app id>.<host name>.<web host>.<web port>``, is stable across
    restarts of the same worker and unique among live ones: a second worker on
    the same address cannot bind the operator API's port and exits before it
    joins the group.  Two workers given the same id would fence each other
    into endless rebalances.
    """
    if worker_id is not None and worker_id.strip():
        wid = worker_id.strip()
        if wid == NO_STATIC_MEMBERSHIP:
            return None
        if not _INSTANCE_ID.fullmatch(wid):
            raise ConfigError(f"worker id `{wid}` must be 1 to 249 of A-Z a-z 0-9 . _ - "
                              f"(or `{NO_STATIC_MEMBERSHIP}` for dynamic membership)")
        return wid
    raw = f"{settings.app_id}.{socket.gethostname()}.{settings.web_host}.{settings.web_port}"
    return re.sub(r"[^A-Za-z0-9._-]", "-", raw)[:249]


def app_options(settings: Settings, worker_id: str | None = None) -> dict[str, Any]:
    """faust.App keyword arguments that apply these corrections.

    Faust's own environment variables (BROKER_SESSION_TIMEOUT,
    BROKER_HEARTBEAT_INTERVAL, CONSUMER_GROUP_INSTANCE_ID) still override them.
    """
    return {
        "TableManager": SeekFirstTableManager,
        "broker_session_timeout": SESSION_TIMEOUT,
        "broker_heartbeat_interval": HEARTBEAT_INTERVAL,
        "consumer_group_instance_id": worker_instance_id(settings, worker_id),
    }


__all__ = ["SeekFirstRecovery", "SeekFirstTableManager", "SnapshotConsumer", "app_options",
           "forget_reads_before_seek", "worker_instance_id"]
