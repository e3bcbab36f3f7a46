"""Lose nothing under faults: workers, the broker, Redis and a shim killed -9 under load.

Every scenario runs on the real stack with realistic traffic paced at
TRUST_FAULTS_RATE events/s (300 by default) and closes its books exactly
(tests/faults/accounting.py): events sent, decided, missing, duplicated (and
whether the copies are identical, decision time apart), decisions that
differ from the offline replay of the same events, recovery time after each
fault.  The result goes to the results file (`python -m tests.faults report`
prints the tables of docs/reliability.md), then the test asserts the
invariants.

The long scenarios are marked `faults` and run with `./run faults`; the
short ones run with the rest of the suite.  The shared broker and Redis are
never killed: the broker and Redis scenarios start their own on other ports.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from streams.clock import utc_now
from streams.partitioner import partition_of
from streams.policy.loader import load_policy_file
from streams.redzone.redis_store import redis_store
from tests.faults.accounting import RedzoneEntry, account, epoch, offline, redzone_diff, seq_gaps
from tests.faults.harness import DecisionCollector, record
from tests.faults.scenario import Run, git_commit
from tests.faults.workload import EXAMPLE_POLICY, REPO, simulated, strace_copies, write_strace_policy
from tests.integration.pipeline import PrivateStack, scrape, wait_for

pytestmark = pytest.mark.integration

RATE = float(os.environ.get("TRUST_FAULTS_RATE", "300"))
STEADY = 5.0  # seconds of decisions at the full rate before the next fault
LONG = 20.0  # seconds of steady traffic around a broker or Redis fault
QUARANTINES_WHILE_DOWN = 20  # the Redis scenario keeps Redis down until this many were decided
KILLS = 5


def ready(p, policy: Path) -> None:
    """Publish `policy`, start the pipeline's worker and wait until it runs that policy."""
    p.publish(policy)
    p.start()
    p.wait_policy(load_policy_file(policy).version)


def summary(result: dict) -> str:
    a = result["account"]
    rec = ", ".join(f"{r['first_decision_s']}/{r['all_partitions_s']} s" for r in result["recovery"])
    return (f"{result['scenario']}: sent {a['sent']}, decided {a['decided']}, missing {a['missing']}, "
            f"duplicates {a['duplicates']} ({a['differing_duplicates']} differing), mismatches vs replay "
            f"{a['mismatches']} {a['mismatch_fields']}, recovery {rec}; notes {result['notes']}")


def assert_lossless(result: dict) -> None:
    print(summary(result))
    a = result["account"]
    assert a["missing"] == 0, f"{a['missing']} events never decided, e.g. {a['missing_examples']}"
    assert a["unexpected"] == 0
    assert a["differing_duplicates"] == 0, "a redelivered batch was decided differently"
    assert a["mismatches"] == 0, f"decisions differ from replay: {a['mismatch_fields']} {a['mismatch_examples']}"
    assert not result["notes"], result["notes"]


def strace_run(name: str, p, tmp_path: Path, **kw) -> Run:
    policy = write_strace_policy(tmp_path / "policy.yaml")
    ready(p, policy)
    return Run(name, p, policy, strace_copies(), RATE, **kw)


# -- the engine worker -----------------------------------------------------------------


def kill_and_restart_workers(run: Run, p, kills: int) -> None:
    run.start()
    run.wait_flowing(after=run.started_at, count=int(RATE * STEADY))
    for i in range(kills):
        at = run.fault(f"kill -9 worker ({i + 1}/{kills})", p.kill9)
        p.start()  # at once, under load
        run.wait_flowing(after=at, count=int(RATE * STEADY))


def test_a_worker_killed_once_loses_nothing(pipeline, tmp_path):
    """The CI subset: one kill -9 and an immediate restart under load."""
    p = pipeline("kill1")
    run = strace_run("worker kill -9 x1", p, tmp_path)
    kill_and_restart_workers(run, p, 1)
    result = run.finish()
    run.save()
    assert_lossless(result)


@pytest.mark.faults
def test_a_worker_killed_five_times_under_load_loses_nothing(pipeline, tmp_path):
    p = pipeline("kill5")
    run = strace_run(f"worker kill -9 x{KILLS}", p, tmp_path)
    kill_and_restart_workers(run, p, KILLS)
    result = run.finish()
    run.save()
    assert_lossless(result)


@pytest.mark.faults
def test_two_workers_one_killed_then_back_loses_nothing(pipeline, tmp_path):
    p = pipeline("two")
    run = strace_run("two workers, one kill -9 and back", p, tmp_path)
    second = p.launch("second")
    try:
        run.start()
        run.wait_flowing(after=run.started_at, count=int(RATE * STEADY))
        wait_for("the second worker deciding its share",
                 lambda: scrape(second.port).get("trust_events_total", 0) > 0, timeout=300)
        fed = run.collector.partitions_after(run.started_at)
        at = run.fault("kill -9 one of two workers", second.kill9)
        run.wait_partitions(after=at, partitions=fed)  # the survivor took the killed one's partitions
        run.wait_flowing(after=at, count=int(RATE * STEADY))
        at = run.fault("the killed worker restarted (rebalance back)", lambda: second.start())
        run.wait_partitions(after=at, partitions=fed)
        wait_for("the restarted worker deciding its share again",
                 lambda: scrape(second.port).get("trust_events_total", 0) > 0, timeout=300)
        run.wait_flowing(after=at, count=int(RATE * STEADY))
        result = run.finish()
        run.extra["partitions_fed"] = fed
        run.save()
    finally:
        second.stop()
    assert_lossless(result)


# -- the broker ------------------------------------------------------------------------


@pytest.mark.faults
def test_the_broker_killed_and_restarted_loses_nothing(pipeline, tmp_path):
    """A private broker (the shared one is never killed); the shared Redis, own prefix."""
    stack = PrivateStack(tmp_path / "stack", kafka=True, redis=False)
    try:
        stack.up()
        p = pipeline("broker", on=stack.settings)
        run = strace_run("broker kill -9, restarted", p, tmp_path)
        run.start()
        run.wait_flowing(after=run.started_at, count=int(RATE * LONG))
        at = run.fault("kill -9 broker", lambda: stack.kill9("kafka"))
        took = stack.up("kafka")  # the same data directory: the broker recovers its logs
        run.extra["broker_down_s"] = round(time.time() - at, 1)
        run.extra["broker_restart_s"] = round(took, 1)
        run.wait_flowing(after=time.time(), count=int(RATE * LONG))
        assert p.worker is not None and p.worker.poll() is None, "the worker exited:\n" + p.log_tail()
        result = run.finish()
        run.save()
        p.stop()
    finally:
        stack.down()
    assert_lossless(result)
    assert result["shim"]["events_failed"] == 0, "the shim lost what it buffered while the broker was down"


# -- Redis -----------------------------------------------------------------------------


def redzone_now(settings) -> dict[str, RedzoneEntry] | None:
    """The redzone in Redis, or None while Redis does not answer."""
    async def read():
        store = redis_store(settings)
        try:
            return {p.process_id: RedzoneEntry.of(p) for p in await store.all()}
        finally:
            await store.close()
    try:
        return asyncio.run(read())
    except Exception:
        return None


@pytest.mark.faults
def test_redis_killed_while_quarantines_happen_loses_no_quarantine(pipeline, tmp_path):
    """A private Redis (AOF, as `trustctl stack up` runs it) killed -9 while the
    engine quarantines an attacker about every second, kept down until several
    quarantines were decided without it, then restarted."""
    stack = PrivateStack(tmp_path / "stack", kafka=False, redis=True)
    try:
        stack.up()
        p = pipeline("redis", on=stack.settings)
        ready(p, EXAMPLE_POLICY)
        seed = int(uuid.uuid4().int % 10_000)
        run = Run("redis kill -9, restarted (AOF)", p, EXAMPLE_POLICY, simulated(seed, attacker_every=300), RATE)
        run.start()
        run.wait_flowing(after=run.started_at, count=int(RATE * LONG))
        wait_for("quarantines in redis", lambda: len(redzone_now(p.settings) or {}) >= 3, timeout=120)
        at = run.fault("kill -9 redis", lambda: stack.kill9("redis"))
        # Down until the engine decided many quarantines without Redis (about one a second).
        wait_for("quarantines decided while redis is down", lambda: sum(
            1 for r in run.collector.snapshot() if r.decision["action"] == "quarantine"
            and r.decision["enforced"] and float(_t(r)) > at) >= QUARANTINES_WHILE_DOWN, timeout=300)
        decided_while_down = run.collector.decided_after(at)
        stack.up("redis")
        back = time.time()
        run.extra["redis_down_s"] = round(back - at, 1)
        run.wait_flowing(after=back, count=int(RATE * LONG))
        result = run.finish()
        expected = run.replayed.redzone
        wait_for("the redzone in redis to catch up with the replay's",
                 lambda: redzone_diff(expected, redzone_now(p.settings) or {}).equal, timeout=180,
                 every=1.0) if expected else None
        diff = redzone_diff(expected, redzone_now(p.settings) or {})
        quarantined_down = sum(1 for r in run.collector.records if r.decision["action"] == "quarantine"
                               and r.decision["enforced"] and at < float(_t(r)) < back)
        retries = p.log_path.read_text(errors="replace").count("unreachable while quarantining")
        run.extra.update(redzone=diff.to_dict(), decided_while_redis_down=decided_while_down,
                         quarantines_while_redis_down=quarantined_down, redzone_agent_retries=retries)
        run.save()
        p.stop()
    finally:
        stack.down()
    print(f"redzone: {diff.to_dict()}, redzone agent retries logged: {retries}")
    assert decided_while_down > 0, "the engine stopped deciding while redis was down"
    assert retries > 0, "the redzone agent never saw redis down: the outage was not exercised"
    assert_lossless(result)
    assert diff.equal, f"redzone after != replay's: {diff.to_dict()}"


def _t(r) -> float:
    return epoch(r.decision["timestamp"])


# -- a shim ----------------------------------------------------------------------------


def shim_process(p, tmp_path: Path, shim_id: str, start_copy: int, part: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tests.faults.shim_proc", "--shim-id", shim_id,
           "--seq-file", str(tmp_path / "shim.seq"), "--sent-file", str(tmp_path / f"sent-{part}.jsonl"),
           "--start-copy", str(start_copy), "--rate", str(RATE)]
    env = dict(p.env, PYTHONPATH=str(REPO))
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=open(tmp_path / f"shim-{part}.log", "wb"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def sent_by(path: Path) -> list[dict]:
    """The complete lines of a shim process's sent file (a kill may cut the last)."""
    out: list[dict] = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def partitions_of(events: list[dict], partitions: int) -> set[int]:
    return {partition_of(e["identity"]["id"], partitions) for e in events}


def test_a_shim_killed_and_restarted_reports_its_seq_gap(pipeline, tmp_path):
    """kill -9 of a shim process mid-stream: what it held is lost, and the engine
    says so. The restarted shim (same id, seq from its reservation) answers with a
    seq gap on every partition the killed one had sent to; none is papered over."""
    p = pipeline("shim")
    policy = write_strace_policy(tmp_path / "policy.yaml")
    ready(p, policy)
    collector = DecisionCollector(p.settings)
    collector.start()
    shim_id = f"shim-{uuid.uuid4().hex[:6]}"
    first = shim_process(p, tmp_path, shim_id, 0, "first")
    try:
        wait_for("the first shim's events decided", lambda: collector.decided >= RATE * STEADY, timeout=300)
        killed_at = time.time()
        first.kill()  # SIGKILL
        first.wait(30)
        second = shim_process(p, tmp_path, shim_id, 10_000, "second")
        # A gap shows when the restarted shim next sends to the partition: wait until
        # it has sent to every partition the killed one had sent to.
        fed = partitions_of(sent_by(tmp_path / "sent-first.jsonl"), p.settings.partitions)
        wait_for("the restarted shim sending to every partition the killed one fed", lambda: partitions_of(
            sent_by(tmp_path / "sent-second.jsonl"), p.settings.partitions) >= fed, timeout=300)
        second.terminate()
        assert second.wait(120) == 0, (tmp_path / "shim-second.log").read_text()
    finally:
        for proc in (first, locals().get("second")):
            if proc is not None and proc.poll() is None:
                proc.kill()
    before, after = sent_by(tmp_path / "sent-first.jsonl"), sent_by(tmp_path / "sent-second.jsonl")
    sent = before + after
    ids = [e["event_id"] for e in sent]
    collector.drain(set(ids), quiet=60, deadline=300)
    collector.stop()
    received = collector.snapshot()
    gaps = [g for g in seq_gaps(received) if g.shim_id == shim_id]
    lost = {e["event_id"] for e in before} - {r.event_id for r in received}
    # The engine never saw the lost events: it must decide as a replay of what reached it.
    reached = [e for e in sent if e["event_id"] not in lost]
    acc = account(ids, received, offline(load_policy_file(policy), reached).decisions)
    lost_partitions = {partition_of(e["identity"]["id"], p.settings.partitions)
                       for e in before if e["event_id"] in lost}
    engine_gaps = scrape(p.settings.web_port).get("trust_seq_gaps_total")
    record({"scenario": "shim kill -9, restarted (same id, reserved seq)", "commit": git_commit(),
            "when": utc_now(),
            "rate": RATE, "account": acc.to_dict(), "sent_before_kill": len(before),
            "lost_in_killed_shim": len(lost), "partitions_with_loss": sorted(lost_partitions),
            "seq_gaps": [[g.shim_id, g.partition, g.after, g.before] for g in gaps],
            "engine_seq_gaps": engine_gaps, "killed_at": killed_at, "recovery": [], "notes": []})
    print(f"shim kill: sent {len(sent)}, lost in the killed shim {len(lost)} on partitions "
          f"{sorted(lost_partitions)}, gaps {[(g.partition, g.after, g.before) for g in gaps]}, "
          f"engine seq_gaps {engine_gaps}")
    assert not lost & {e["event_id"] for e in after} and acc.missing == len(lost)
    assert {g.partition for g in gaps} >= lost_partitions, "a partition lost batches without a seq gap"
    assert engine_gaps == len(gaps) >= 1, "the engine's count differs from the gaps in its answers"
    assert acc.mismatches == 0 and acc.differing_duplicates == 0 and acc.unexpected == 0
