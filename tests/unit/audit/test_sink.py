"""The sink's consumer loop without a broker: a fake Consumer records every commit.

What matters here is *when* offsets are committed: each commit must be
covered by a manifest already on disk, and rotation by size, by time and on
stop must each close a file.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

from streams.audit import samples
from streams.audit.sink import Sink, SinkOptions
from streams.audit.verify import verify
from streams.settings import Settings

SETTINGS = Settings(topic_prefix="trust.")


class FakeMessage:
    def __init__(self, m):
        self.m = m

    def error(self):
        return None

    def topic(self):
        return self.m.topic

    def partition(self):
        return self.m.partition

    def offset(self):
        return self.m.offset

    def key(self):
        return self.m.key

    def value(self):
        return self.m.value

    def timestamp(self):
        return (1, 1_800_000_000_000)


class FakeConsumer:
    """Serves messages from the assigned offsets, `per_poll` at a time; stops the sink when dry."""

    def __init__(self, msgs, directory: Path, committed=None, per_poll=7, idle_polls=0):
        self.msgs, self.directory = msgs, directory
        self.committed_offsets = dict(committed or {})
        self.per_poll, self.idle_polls = per_poll, idle_polls
        self.queue: list = []
        self.commits: list[dict] = []
        self.sink: Sink | None = None

    def list_topics(self, timeout=None):
        parts = {}
        for m in self.msgs:
            parts.setdefault(m.topic, set()).add(m.partition)
        for topic in samples.TOPICS.values():
            parts.setdefault(topic, {0})
        return SimpleNamespace(topics={t: SimpleNamespace(error=None, partitions={p: None for p in ps})
                                       for t, ps in parts.items()})

    def committed(self, tps, timeout=None):
        return [SimpleNamespace(topic=tp.topic, partition=tp.partition,
                                offset=self.committed_offsets.get((tp.topic, tp.partition), -1001)) for tp in tps]

    def get_watermark_offsets(self, tp, timeout=None):
        return (0, 10**9)

    def assign(self, tps):
        start = {(tp.topic, tp.partition): tp.offset for tp in tps}
        self.queue = [m for m in self.msgs if m.offset >= max(start[(m.topic, m.partition)], 0)]

    def consume(self, num, timeout=None):
        if not self.queue:
            if self.idle_polls:
                self.idle_polls -= 1
                return []
            self.sink.stop()
            return []
        batch, self.queue = self.queue[: min(num, self.per_poll)], self.queue[min(num, self.per_poll):]
        return [FakeMessage(m) for m in batch]

    def commit(self, offsets, asynchronous=True):
        assert asynchronous is False
        covered = {}
        for path in self.directory.glob("audit-*.manifest.json"):
            for c in json.loads(path.read_text())["chains"].values():
                key = (c["topic"], c["partition"])
                covered[key] = max(covered.get(key, 0), c["last_offset"] + 1)
        for tp in offsets:
            assert tp.offset <= covered.get((tp.topic, tp.partition), 0), "committed before archived"
            self.committed_offsets[(tp.topic, tp.partition)] = tp.offset
        self.commits.append({(tp.topic, tp.partition): tp.offset for tp in offsets})

    def close(self):
        pass


def run_sink(directory: Path, consumer: FakeConsumer, clock=None, **options) -> tuple[Sink, list[str]]:
    lines: list[str] = []
    sink = Sink(SETTINGS, SinkOptions(directory=directory, group="g", **options), report=lines.append,
                now=samples.StepClock(), **({"monotonic": clock} if clock else {}))
    consumer.sink = sink
    sink._consumer = lambda: consumer
    sink.run()
    return sink, lines


def test_rotates_by_size_and_commits_only_archived_offsets(tmp_path):
    msgs = samples.messages(samples.traffic(80), samples.TOPICS)
    consumer = FakeConsumer(msgs, tmp_path)
    sink, lines = run_sink(tmp_path, consumer, max_bytes=4000)
    report = verify(tmp_path)
    assert report.ok and report.files == sink.files_written >= 3, lines
    assert len(consumer.commits) == report.files
    end = {}
    for m in msgs:
        end[(m.topic, m.partition)] = m.offset + 1
    assert consumer.committed_offsets == end
    assert any("stopped:" in line for line in lines)


def test_rotates_by_time_when_idle(tmp_path):
    msgs = samples.messages(samples.traffic(5), samples.TOPICS)
    ticks = iter(range(0, 10**6, 10))  # every reading of the clock is 10 s later
    consumer = FakeConsumer(msgs, tmp_path, per_poll=3, idle_polls=2)
    sink, _ = run_sink(tmp_path, consumer, clock=lambda: next(ticks), max_seconds=15)
    assert sink.files_written >= 2 and verify(tmp_path).ok


def test_restart_resumes_from_the_archive_and_catches_up_commits(tmp_path):
    from streams.audit.archive import read_file

    msgs = samples.messages(samples.traffic(40), samples.TOPICS)
    first = FakeConsumer(msgs[:25], tmp_path)  # the topics so far
    run_sink(tmp_path, first, max_bytes=3000)
    assert len(first.commits) >= 2
    stale = first.commits[0]  # as if the sink died before its later commits reached the broker
    second = FakeConsumer(msgs, tmp_path, committed=stale)
    _, lines = run_sink(tmp_path, second, max_bytes=3000)
    assert any("committing now" in line for line in lines), lines
    report = verify(tmp_path)
    assert report.ok
    keys = [(r["topic"], r["partition"], r["offset"], r["batch_index"])
            for path in sorted(tmp_path.glob("audit-*.avro")) for r in read_file(path)[1]]
    assert len(keys) == len(set(keys)) == report.records == 136  # all of them, none twice


def test_refuses_a_group_ahead_of_the_archive(tmp_path):
    import pytest

    from streams.errors import AuditError

    msgs = samples.messages(samples.traffic(5), samples.TOPICS)
    consumer = FakeConsumer(msgs, tmp_path, committed={("trust.decisions", 0): 3})
    with pytest.raises(AuditError, match="disagree"):
        run_sink(tmp_path, consumer)
    assert not list(tmp_path.glob("audit-*"))
