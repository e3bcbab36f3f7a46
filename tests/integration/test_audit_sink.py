"""The audit sink on the real broker: SIGKILLed mid-file and restarted, it loses
and duplicates nothing; a crash between manifest and commit is caught up; the
archive verifies and exports by period and identity.

Each test has its own topic prefix and consumer group; `trustctl audit sink`
runs as a subprocess exactly as an operator starts it.  Waits poll a
condition until a deadline.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from streams import signing
from streams.audit import samples
from streams.audit.archive import list_archive, read_file, read_manifest
from streams.audit.chain import SOURCES, canonical_json
from streams.audit.sink import Sink, SinkOptions
from streams.codec.avro import codec
from streams.kafka.admin import ensure_topics
from streams.settings import Settings
from tests.integration.pipeline import TRUSTCTL, wait_for

pytestmark = pytest.mark.integration

DEADLINE = 60.0
SCHEMAS = {s.kind: s.schema for s in SOURCES}


@pytest.fixture
def audit_env(stack):
    """Environment and settings with a prefix of this test's own; topics created, deleted after."""
    tag = uuid.uuid4().hex[:8]
    env = dict(os.environ, TRUST_KAFKA_BOOTSTRAP=stack.kafka_bootstrap, TRUST_TOPIC_PREFIX=f"it.audit-{tag}.",
               TRUST_PARTITIONS="3", TRUST_APP_ID=f"it-audit-{tag}")
    settings = Settings.from_env(env)
    ensure_topics(settings)
    yield env, settings
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(settings.topic_prefix)]
    for future in admin.delete_topics(mine, operation_timeout=30).values():
        try:
            future.result(30)
        except Exception:  # already gone: not this test's concern
            pass


def produce(settings: Settings, plan) -> list[tuple[str, dict]]:
    """Publish a `samples.traffic` plan (key-partitioned); the (kind, record) of every archived record."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all", "linger.ms": 5})
    topics = {s.kind: settings.topic(s.topic_kind) for s in SOURCES}
    expected: list[tuple[str, dict]] = []
    failed: list = []
    for kind, key, value in plan:
        producer.produce(topics[kind], key=key, value=codec(SCHEMAS[kind]).encode(value),
                         on_delivery=lambda err, _msg: failed.append(err) if err else None)
        expected.extend((kind, d) for d in (value["decisions"] if kind == "decision" else [value]))
    assert producer.flush(DEADLINE) == 0 and not failed, failed
    return expected


def archived(directory: Path) -> list[dict]:
    listing = list_archive(directory)
    return [r for seq in sorted(listing.manifests) for r in read_file(listing.data[seq])[1]]


def manifest_records(directory: Path) -> int:
    listing = list_archive(directory)
    return sum(read_manifest(p)["records"] for p in listing.manifests.values())


def start_sink(env: dict, directory: Path, group: str, log: Path, *args: str) -> subprocess.Popen:
    out = open(log, "ab")
    return subprocess.Popen([TRUSTCTL, "audit", "sink", "--dir", str(directory), "--group", group, *args],
                            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def alive(proc: subprocess.Popen, log: Path):
    def check():
        if proc.poll() is not None:
            raise AssertionError(f"sink exited with {proc.returncode}:\n{log.read_text()}")
    return check


def committed_vs_end(settings: Settings, group: str) -> tuple[dict, dict]:
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group,
                         "enable.auto.commit": False})
    try:
        tps = [TopicPartition(settings.topic(s.topic_kind), p) for s in SOURCES
               for p in consumer.list_topics(settings.topic(s.topic_kind), timeout=10)
               .topics[settings.topic(s.topic_kind)].partitions]
        committed = {(tp.topic, tp.partition): tp.offset for tp in consumer.committed(tps, timeout=10)}
        ends = {(tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
        # a partition that never got a message has nothing to commit
        committed = {k: v for k, v in committed.items() if ends[k] > 0}
        return committed, {k: v for k, v in ends.items() if v > 0}
    finally:
        consumer.close()


def test_sigkill_mid_file_then_restart_loses_and_duplicates_nothing(audit_env, tmp_path):
    env, settings = audit_env
    directory, log, group = tmp_path / "archive", tmp_path / "sink.log", f"audit-{uuid.uuid4().hex[:8]}"
    expected = produce(settings, samples.traffic(120, tag="a"))

    sink = start_sink(env, directory, group, log, "--max-bytes", "20000", "--max-seconds", "60")
    check = alive(sink, log)

    def killed_mid_file():
        check()
        listing = list_archive(directory) if directory.is_dir() else None
        return listing and len(listing.manifests) >= 2 and listing.parts

    wait_for("two archived files and one being written", killed_mid_file, DEADLINE, 0.05)
    sink.send_signal(signal.SIGKILL)
    sink.wait(10)
    # On a loaded machine the sink may seal the file between the check and the kill.
    left_unfinished = bool(list_archive(directory).parts)
    before_restart = manifest_records(directory)
    assert 0 < before_restart < len(expected)

    expected += produce(settings, samples.traffic(80, start=200, tag="b"))  # more while it is down
    sink = start_sink(env, directory, group, log, "--max-bytes", "20000", "--max-seconds", "0.5")
    check = alive(sink, log)
    wait_for(f"{len(expected)} records archived",
             lambda: check() or manifest_records(directory) == len(expected), DEADLINE)
    sink.send_signal(signal.SIGTERM)
    assert sink.wait(30) == 0, log.read_text()
    text = log.read_text()
    if left_unfinished:  # the restarted sink says what it threw away
        assert "discarded unfinished" in text and ".part" in text

    records = archived(directory)
    positions = [(r["topic"], r["partition"], r["offset"], r["batch_index"]) for r in records]
    assert len(positions) == len(set(positions)) == len(expected)  # nothing lost, nothing twice
    by_kind = {}
    for kind, payload in expected:
        by_kind.setdefault(kind, set()).add(canonical_json(payload))
    for kind in by_kind:
        assert {r["payload"] for r in records if r["kind"] == kind} == by_kind[kind], kind

    committed, ends = committed_vs_end(settings, group)
    assert committed == ends  # every offset archived is committed, and no other

    result = subprocess.run([TRUSTCTL, "audit", "verify", "--dir", str(directory), "-q"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(expected)} record(s)" in result.stdout

    # export: one identity, ten seconds of part "b" (batches at T0+200s ...)
    result = subprocess.run([TRUSTCTL, "audit", "export", "--dir", str(directory), "--format", "jsonl",
                             "--from", samples.at(210), "--to", samples.at(220), "--identity", "svc-2"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    want = {canonical_json(p) for kind, p in expected
            if samples.at(210) <= (p.get("event_timestamp") or p.get("timestamp") or p.get("published_at"))
            < samples.at(220) and kind != "policy"
            and (p.get("identity", {}).get("id") if "identity" in p else p.get("identity_id")) == "svc-2"}
    assert want and {line["payload"] for line in lines} == want


def test_crash_between_manifest_and_commit_is_caught_up(audit_env, tmp_path):
    """The narrowest window: the file and manifest are durable, the commit never happened."""
    _env, settings = audit_env
    directory, group = tmp_path / "archive", f"audit-{uuid.uuid4().hex[:8]}"
    expected = produce(settings, samples.traffic(30))
    lines: list[str] = []

    class CrashAfterManifest(Sink):
        def _rotate(self, consumer, archiver):
            archiver.close_file()  # durable, then "killed" before committing
            raise RuntimeError("killed before commit")

    options = SinkOptions(directory=directory, group=group, max_bytes=10**9, max_seconds=10**6)
    crashing = CrashAfterManifest(settings, options, report=lines.append)

    def stop_once_writing():
        try:
            wait_for("a file being written", lambda: list(directory.glob("*.part")), DEADLINE, 0.05)
        finally:
            crashing.stop()  # its final rotation writes the manifest, then "dies"

    stopper = threading.Thread(target=stop_once_writing, daemon=True)
    stopper.start()
    with pytest.raises(RuntimeError, match="killed before commit"):
        crashing.run()
    stopper.join(DEADLINE)
    assert manifest_records(directory) > 0
    committed, _ = committed_vs_end(settings, group)
    assert all(offset < 0 for offset in committed.values())  # nothing committed

    sink = Sink(settings, SinkOptions(directory=directory, group=group, max_bytes=10**9, max_seconds=0.2),
                report=lines.append)
    runner = threading.Thread(target=sink.run, daemon=True)
    runner.start()
    wait_for(f"{len(expected)} records archived", lambda: manifest_records(directory) == len(expected), DEADLINE)
    sink.stop()
    runner.join(DEADLINE)
    assert not runner.is_alive()
    assert any("committing now" in line for line in lines), lines
    committed, ends = committed_vs_end(settings, group)
    assert committed == ends
    positions = [(r["topic"], r["partition"], r["offset"], r["batch_index"]) for r in archived(directory)]
    assert len(positions) == len(set(positions)) == len(expected)


def test_sigterm_finishes_and_commits_the_open_file(audit_env, tmp_path):
    """With TRUST_AUDIT_SIGNING_KEY set, as an operator runs it: the manifest is signed too."""
    env, settings = audit_env
    directory, log, group = tmp_path / "archive", tmp_path / "sink.log", f"audit-{uuid.uuid4().hex[:8]}"
    private, public = signing.keygen(tmp_path / "keys", "audit-signing")
    env = dict(env, TRUST_AUDIT_SIGNING_KEY=str(private))
    expected = produce(settings, samples.traffic(20))
    sink = start_sink(env, directory, group, log, "--max-bytes", str(10**9), "--max-seconds", "3600")
    check = alive(sink, log)
    wait_for("a file being written", lambda: check() or (directory.is_dir() and list_archive(directory).parts),
             DEADLINE, 0.05)
    sink.send_signal(signal.SIGTERM)
    assert sink.wait(30) == 0, log.read_text()
    listing = list_archive(directory)
    assert not listing.parts and len(listing.manifests) == 1  # the open file was finished, not dropped
    records = archived(directory)
    assert 0 < len(records) <= len(expected)
    committed, _ = committed_vs_end(settings, group)
    archived_next = {}
    for r in records:
        archived_next[(r["topic"], r["partition"])] = r["offset"] + 1
    assert {k: v for k, v in committed.items() if v >= 0} == archived_next
    assert read_manifest(next(iter(listing.manifests.values())))["signature"]["key_id"] == \
        signing.load_verify_key(public).key_id
    result = subprocess.run([TRUSTCTL, "audit", "verify", "--dir", str(directory), "--key", str(public), "-q"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "manifest signatures checked" in result.stdout, result.stdout + result.stderr
