"""Restarts under load lose no event (docs/reliability.md, "Restarts").

A worker restarted while events keep arriving starts with a backlog; the
Faust recovery race fixed in `streams.worker.faustfix` used to drop part of it for
good (its offsets were committed past the hole).  Accounting is by event_id:
every event the shim delivered to Kafka must have a decision; duplicates are
allowed (at-least-once).
"""

from __future__ import annotations

import os

import pytest

from streams.kafka.admin import group_lag
from streams.settings import Settings
from tests.integration.pipeline import Load, Pipeline, wait_for

pytestmark = pytest.mark.integration

POLICY = """
version: restarts-1
default_action: allow
policies:
  read: {}
"""

CYCLES = int(os.environ.get("TRUST_TEST_RESTARTS") or 3)
RATE = float(os.environ.get("TRUST_TEST_RESTART_RATE") or 800)
PROGRESS = 300  # new decisions a (re)started worker must make before it is stopped again


@pytest.fixture
def pipeline(stack, tmp_path_factory):
    p = Pipeline(stack, "restarts", tmp_path_factory.mktemp("workers"))
    yield p
    p.cleanup()


def _restart_under_load(p: Pipeline, tmp_path, stop) -> tuple[list[str], dict[str, int]]:
    (tmp_path / "p.yaml").write_text(POLICY)
    p.publish(tmp_path / "p.yaml")
    p.start()
    reader = p.decision_reader()
    load = Load(p, rate=RATE).start()
    try:
        for cycle in range(CYCLES):
            before = len(reader.counts)
            reader.poll_until(f"{PROGRESS} new decisions before restart {cycle + 1}",
                              lambda c: len(c) >= before + PROGRESS, timeout=120)
            stop(p)
            p.start()  # events keep arriving: the new worker starts with a backlog
        ids = load.stop()
        wanted = set(ids)

        def all_decided(counts: dict[str, int]) -> bool:
            return wanted.issubset(counts)

        try:
            reader.poll_until(f"decisions of all {len(ids)} events", all_decided, timeout=180)
        except AssertionError:
            pass  # reported below, with the ids missing
        return ids, dict(reader.counts)
    finally:
        load.abort()
        reader.close()


def _assert_commits_reach_the_end(p: Pipeline) -> None:
    """No partition stops committing (the race's other symptom): the group's
    committed offsets reach the end of the input topics."""
    wait_for("the group's commits to reach the end of events, control and quarantine",
             lambda: not any(group_lag(p.settings, ("events", "control", "quarantine")).values()), timeout=60)


def _assert_none_missing(ids: list[str], counts: dict[str, int]) -> None:
    missing = [i for i in ids if i not in counts]
    dupes = sum(n - 1 for n in counts.values() if n > 1)
    print(f"\nrestarts={CYCLES} sent={len(ids)} decided={len(set(ids) & counts.keys())} "
          f"missing={len(missing)} duplicates={dupes}")
    assert not missing, f"{len(missing)} of {len(ids)} events never decided, e.g. {missing[:5]}"


def test_graceful_restarts_under_load_lose_no_event(pipeline, tmp_path):
    ids, counts = _restart_under_load(pipeline, tmp_path, Pipeline.stop)
    _assert_none_missing(ids, counts)
    _assert_commits_reach_the_end(pipeline)


def test_kill_9_restarts_with_the_short_fetch_wait_lose_no_event(pipeline, tmp_path):
    """kill -9: nothing committed at exit, the group not left; the replacement
    takes the same partitions over (static membership) and decides again what
    was not committed.  The short fetch wait widened the race's window."""
    assert Settings.from_env(pipeline.env).fetch_wait_ms == 10  # the default
    ids, counts = _restart_under_load(pipeline, tmp_path, Pipeline.kill)
    _assert_none_missing(ids, counts)
    _assert_commits_reach_the_end(pipeline)
