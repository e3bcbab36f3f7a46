"""The audit sink: decisions, violations, redzone events and policy changes
from Kafka into the archive, with offsets committed only once archived.

Two halves.  :class:`Archiver` knows no Kafka: it takes messages, skips those
already archived, seals their records onto the chains and writes them, and on
`close_file` says which offsets are now safe to commit; unit tests drive it
with hand-made messages.  :class:`Sink` is the confluent-kafka adapter around
it: one Consumer, partitions *assigned* (not subscribed), manual commits.

Why assign, not subscribe: an archive directory has exactly one writer (its
chains and file sequence live there), enforced by a lock file; a consumer
group rebalance could only move partitions to a second sink writing another
directory, splitting the chains.  The group is used for its committed offsets.

Exactly once, across crashes: a file's offsets are committed after the file
and its manifest are durable (:meth:`ArchiveWriter.close_file`).  On start,
the archive (the last manifest's chain heads) says where each partition
resumes; the group's committed offsets must be at or behind that point.
Behind is the window between "manifest written" and "commit done": the sink
resumes from the archive and commits at once.  Ahead means records the group
consumed are not in this archive (another directory, a deleted manifest):
the sink refuses to start rather than leave a silent hole.
"""

from __future__ import annotations

import fcntl
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from streams.audit.archive import LOCK, ArchiveWriter, recover
from streams.audit.chain import SOURCES, Chains, Source, SourceMessage, rfc3339, unsealed_records
from streams.errors import AuditError
from streams.signing import SigningKey, load_signing_key

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_SECONDS = 300.0
OFFSET_BEGINNING = -2  # confluent_kafka.OFFSET_BEGINNING

TopicPartitionKey = tuple[str, int]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Archiver:
    """Messages in, sealed records out into rotated files (no Kafka here)."""

    def __init__(
        self,
        directory: Path,
        sources: Mapping[str, Source],
        decoders: Mapping[str, Callable[[bytes], dict]],
        *,
        compression: str = "deflate",
        now: Callable[[], datetime] = _utcnow,
        signer: SigningKey | None = None,
    ):
        self.directory = Path(directory)
        self.sources = dict(sources)  # topic name -> Source
        self.decoders = dict(decoders)  # topic name -> decode(bytes) -> dict
        self.now = now
        self.recovered = recover(self.directory)
        self.chains = Chains(self.recovered.heads)
        self.writer = ArchiveWriter(self.directory, self.recovered, compression=compression, signer=signer)
        self.skipped = 0  # messages at offsets already archived (duplicates)
        self.archived = 0  # records written since start

    def next_offset(self, topic: str, partition: int) -> int | None:
        return self.chains.next_offset(topic, partition)

    def add(self, msg: SourceMessage) -> int:
        """Archive one message; the number of records written (0 if already archived)."""
        resume = self.chains.next_offset(msg.topic, msg.partition)
        if resume is not None and msg.offset < resume:
            self.skipped += 1
            return 0
        source = self.sources[msg.topic]
        records = unsealed_records(source, msg, self.decoders[msg.topic], rfc3339(self.now()))
        for record in records:
            self.writer.append(self.chains.seal(record))
        self.archived += len(records)
        return len(records)

    @property
    def records_in_file(self) -> int:
        return self.writer.records_in_file

    @property
    def bytes_in_file(self) -> int:
        return self.writer.bytes_in_file

    def close_file(self) -> tuple[dict[str, Any] | None, dict[TopicPartitionKey, int]]:
        """Finish the open file; its manifest and the offsets now safe to commit."""
        manifest = self.writer.close_file(rfc3339(self.now()))
        if manifest is None:
            return None, {}
        commits = {(c["topic"], c["partition"]): c["last_offset"] + 1 for c in manifest["chains"].values()}
        return manifest, commits


def reconcile(
    partitions: list[TopicPartitionKey],
    committed: Mapping[TopicPartitionKey, int | None],
    archived: Mapping[TopicPartitionKey, int | None],
) -> tuple[dict[TopicPartitionKey, int], dict[TopicPartitionKey, int], list[str]]:
    """Where each partition starts, which commits must catch up, and conflicts.

    `committed` and `archived` are next offsets (None: nothing yet).  The
    archive wins when the group is behind it; a group ahead of the archive
    is a conflict (records consumed but not here).
    """
    start: dict[TopicPartitionKey, int] = {}
    catch_up: dict[TopicPartitionKey, int] = {}
    conflicts: list[str] = []
    for tp in partitions:
        done, arch = committed.get(tp), archived.get(tp)
        if arch is None and done is None:
            start[tp] = OFFSET_BEGINNING
        elif arch is not None and (done is None or done <= arch):
            start[tp] = arch
            if done != arch:
                catch_up[tp] = arch
        else:
            conflicts.append(f"`{tp[0]}` partition {tp[1]}: the group committed offset {done} but the "
                             f"archive ends {'before any record' if arch is None else f'at offset {arch - 1}'}")
    return start, catch_up, conflicts


@dataclass(frozen=True)
class SinkOptions:
    directory: Path
    group: str
    max_bytes: int = DEFAULT_MAX_BYTES
    max_seconds: float = DEFAULT_MAX_SECONDS
    compression: str = "deflate"
    poll_timeout: float = 0.5
    batch: int = 500


class Sink:
    """The confluent-kafka consumer loop around an :class:`Archiver`."""

    def __init__(self, settings, options: SinkOptions, *,
                 report: Callable[[str], None] | None = None, now: Callable[[], datetime] = _utcnow,
                 monotonic: Callable[[], float] = time.monotonic):
        self.settings = settings
        self.options = options
        self.report = report or (lambda line: print(f"audit sink: {line}", file=sys.stderr, flush=True))
        self.now = now
        self.monotonic = monotonic
        self._stop = threading.Event()
        self._pending: dict[TopicPartitionKey, int] = {}
        self.files_written = 0

    def stop(self, *_: Any) -> None:
        """Finish the current file, commit, return from `run` (signal handler too)."""
        self._stop.set()

    # -- setup -------------------------------------------------------------------
    def _sources(self) -> tuple[dict[str, Source], dict[str, Callable[[bytes], dict]]]:
        from functools import partial

        from streams import command_signature
        from streams.codec.avro import codec
        from streams.policy_topic import decode_policy

        sources, decoders = {}, {}
        wire = self.settings.schema_registry_url is not None
        for source in SOURCES:
            topic = self.settings.topic(source.topic_kind)
            sources[topic] = source
            # policy values and redzone events written before their signature fields still decode
            decode = decode_policy if source.schema == "PolicyDocument" else codec(source.schema).decode
            if source.schema == "RedzoneEvent":
                decode = partial(command_signature.decode, "RedzoneEvent")
            decoders[topic] = _decoder(decode, wire)
        return sources, decoders

    def _consumer(self):
        from streams.kafka import clients

        return clients.consumer(self.settings, self.options.group, **{
            "enable.auto.offset.store": False, "isolation.level": "read_committed"})

    def _partitions(self, consumer, topics: list[str]) -> list[TopicPartitionKey]:
        from confluent_kafka import KafkaException

        try:
            meta = consumer.list_topics(timeout=15)
        except KafkaException as exc:
            raise AuditError(f"kafka at `{self.settings.kafka_bootstrap}` did not answer: {exc}") from exc
        missing = [t for t in topics if t not in meta.topics or meta.topics[t].error is not None]
        if missing:
            raise AuditError(f"topic(s) {', '.join(f'`{t}`' for t in missing)} not found; "
                             "run `trustctl topics ensure`")
        return [(t, p) for t in topics for p in sorted(meta.topics[t].partitions)]

    def _assign(self, consumer, archiver: Archiver, partitions: list[TopicPartitionKey]) -> None:
        from confluent_kafka import TopicPartition

        found = self._committed(consumer, [TopicPartition(t, p) for t, p in partitions])
        committed = {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None) for tp in found}
        archived = {tp: archiver.next_offset(*tp) for tp in partitions}
        start, catch_up, conflicts = reconcile(partitions, committed, archived)
        if conflicts:
            raise AuditError(
                f"group `{self.options.group}` and the archive in `{self.options.directory}` disagree, "
                "so records would be missing from the archive:\n  " + "\n  ".join(conflicts)
                + "\n(use the group this archive was written with, or a new group with a new directory)")
        for (topic, partition), offset in start.items():
            if offset < 0:
                continue
            low, _high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=15)
            if offset < low:
                self.report(f"WARNING: `{topic}` partition {partition}: offsets {offset}..{low - 1} "
                            "were deleted by retention before they were archived")
        consumer.assign([TopicPartition(t, p, o) for (t, p), o in start.items()])
        if catch_up:
            self.report(f"archive is ahead of the group's commits on {len(catch_up)} partition(s) "
                        "(stopped after writing a file, before committing): committing now")
            self._pending.update(catch_up)
            self._commit(consumer)

    def _committed(self, consumer, tps: list, timeout: float = 30.0) -> list:
        """The group's committed offsets, retried while the coordinator is not ready.

        A fresh broker creates `__consumer_offsets` on the first group request
        and answers NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS meanwhile.
        """
        from confluent_kafka import KafkaException

        deadline = self.monotonic() + timeout
        while True:
            try:
                return consumer.committed(tps, timeout=10)
            except KafkaException as exc:
                error = exc.args[0]
                if not error.retriable() and "coordinator" not in error.str().lower():
                    raise AuditError(f"cannot read the committed offsets of group "
                                     f"`{self.options.group}`: {error.str()}") from exc
                if self.monotonic() > deadline:
                    raise AuditError(f"group `{self.options.group}`: no coordinator answered within "
                                     f"{timeout:.0f} s ({error.str()})") from exc
                time.sleep(0.2)

    # -- the loop ----------------------------------------------------------------
    def run(self) -> int:
        """Archive until stopped; return the number of records archived."""
        directory = self.options.directory
        key_path = self.settings.audit_signing_key
        signer = load_signing_key(key_path) if key_path is not None else None  # unreadable: refuse to start
        directory.mkdir(parents=True, exist_ok=True)
        with _lock(directory):
            sources, decoders = self._sources()
            archiver = Archiver(directory, sources, decoders,
                                compression=self.options.compression, now=self.now, signer=signer)
            self.report("manifests signed with key " + signer.key_id if signer is not None else
                        "manifests NOT signed (TRUST_AUDIT_SIGNING_KEY unset): a rewritten archive "
                        "can only be caught with an external anchor")
            for name in archiver.recovered.discarded:
                self.report(f"discarded unfinished `{name}` (its records were not committed)")
            consumer = self._consumer()
            restore = _install_signals(self.stop)
            try:
                self._assign(consumer, archiver, self._partitions(consumer, list(sources)))
                self.report(f"archiving {', '.join(sources)} into `{directory}` "
                            f"(group `{self.options.group}`, next file #{archiver.writer.seq})")
                self._loop(consumer, archiver)
                self._rotate(consumer, archiver)
            finally:
                restore()
                archiver.writer.abandon()
                consumer.close()
            self.report(f"stopped: {archiver.archived} record(s) archived in {self.files_written} file(s), "
                        f"{archiver.skipped} already-archived message(s) skipped")
            return archiver.archived

    def _loop(self, consumer, archiver: Archiver) -> None:
        from confluent_kafka import KafkaError

        opened: float | None = None
        while not self._stop.is_set():
            for msg in consumer.consume(self.options.batch, timeout=self.options.poll_timeout):
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        continue
                    if error.fatal():
                        raise AuditError(f"kafka consumer failed: {error.str()}")
                    self.report(f"kafka: {error.str()}")
                    continue
                ts_type, ts = msg.timestamp()
                archiver.add(SourceMessage(msg.topic(), msg.partition(), msg.offset(), msg.key(),
                                           msg.value(), ts if ts_type else None))
                if opened is None and archiver.records_in_file:
                    opened = self.monotonic()
                if archiver.bytes_in_file >= self.options.max_bytes:
                    self._rotate(consumer, archiver)
                    opened = None
            if opened is not None and self.monotonic() - opened >= self.options.max_seconds:
                self._rotate(consumer, archiver)
                opened = None

    def _rotate(self, consumer, archiver: Archiver) -> None:
        manifest, commits = archiver.close_file()
        if manifest is None:
            return
        self.files_written += 1
        self._pending.update(commits)
        self._commit(consumer)
        self.report(f"wrote `{manifest['file']}`: {manifest['records']} record(s), "
                    f"{len(manifest['chains'])} partition(s), {manifest['size']} bytes")

    def _commit(self, consumer) -> None:
        """Commit every archived offset not yet committed; on failure keep them for the next file."""
        from confluent_kafka import KafkaException, TopicPartition

        if not self._pending:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in sorted(self._pending.items())]
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # the file is durable: a restart resumes from the archive and commits then
            self.report(f"WARNING: commit failed ({exc}); retrying after the next file")
            return
        self._pending.clear()


def _decoder(decode: Callable[[bytes], dict], wire: bool) -> Callable[[bytes], dict]:
    """Plain Avro, or Confluent wire format (any schema id) when a registry is set."""
    if not wire:
        return decode

    def from_wire(data: bytes) -> dict:
        if len(data) < 5 or data[0] != 0:
            raise AuditError("value is not in confluent wire format (magic byte 0, schema id)")
        return decode(data[5:])

    return from_wire


class _lock:
    """An exclusive flock on ``D/.lock``: one sink per archive directory.

    flock is released by the kernel when the process dies, so a SIGKILLed
    sink never leaves a stale lock behind.
    """

    def __init__(self, directory: Path):
        self.path = directory / LOCK

    def __enter__(self) -> "_lock":
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.fd)
            raise AuditError(f"another audit sink is writing to `{self.path.parent}`") from None
        return self

    def __exit__(self, *exc: Any) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)


def _install_signals(handler: Callable[..., None]) -> Callable[[], None]:
    """SIGTERM and SIGINT stop the loop gracefully (main thread only); returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
