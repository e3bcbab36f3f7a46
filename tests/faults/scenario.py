"""One fault scenario, start to finish: traffic on, faults injected, accounts closed.

    run = Run("worker kill -9 x5", pipeline, policy_file, events, rate=300)
    run.start()                      # collector + paced shim
    run.wait_flowing(after=..., count=...)
    run.fault("kill -9 worker", lambda: pipeline.kill9())   # ... restart, more faults
    result = run.finish()            # stop the shim, drain, account
    run.save()                       # append to the results file

`finish` closes the books exactly (tests.faults.accounting): every sent id
against every decision read back and the offline replay of the same events,
recovery after each fault from the decisions' own times, seq gaps; the result
is appended to the results file and returned for the test's assertions.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from streams.clock import utc_now
from streams.policy.compiled import CompiledPolicy
from streams.policy.loader import load_policy_file
from tests.faults.accounting import Offline, account, offline, recovery, seq_gaps
from tests.faults.harness import DecisionCollector, PacedSender, record
from tests.faults.workload import REPO
from tests.integration.pipeline import Pipeline

RECOVERY_DEADLINE = 420.0  # seconds a fault may take to heal before the run goes on without it


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip()
    except OSError:
        return "?"


class Run:
    def __init__(self, name: str, pipeline: Pipeline, policy: Path, events: Iterator[dict], rate: float,
                 shim_id: str | None = None):
        self.name = name
        self.pipeline = pipeline
        self.policy_path = policy
        self.policy: CompiledPolicy = load_policy_file(policy)
        self.rate = rate
        self.collector = DecisionCollector(pipeline.settings)
        self.sender = PacedSender(pipeline.settings, events, rate, shim_id=shim_id)
        self.faults: list[dict[str, Any]] = []
        self.notes: list[str] = []
        self.extra: dict[str, Any] = {}
        self.started_at = 0.0
        self.replayed: Offline | None = None

    # -- running ------------------------------------------------------------------
    def start(self) -> None:
        self.started_at = time.time()
        self.collector.start()
        self.sender.start()

    def wait_flowing(self, after: float, count: int, timeout: float = RECOVERY_DEADLINE) -> bool:
        """Wait until `count` decisions were made after `after` (epoch s); False at the deadline."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.collector.decided_after(after) >= count:
                return True
            time.sleep(0.25)
        self.notes.append(f"fewer than {count} decisions within {timeout:.0f} s after "
                          f"t+{after - self.started_at:.0f} s")
        return False

    def wait_partitions(self, after: float, partitions: int, timeout: float = RECOVERY_DEADLINE) -> bool:
        """Wait until `partitions` partitions each had a decision made after `after`."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.collector.partitions_after(after) >= partitions:
                return True
            time.sleep(0.25)
        self.notes.append(f"fewer than {partitions} partitions deciding within {timeout:.0f} s after "
                          f"t+{after - self.started_at:.0f} s")
        return False

    def fault(self, what: str, inject: Callable[[], float | None]) -> float:
        """Inject a fault now; `inject` may return the exact time it struck (epoch s)."""
        at = inject() or time.time()
        self.faults.append({"what": what, "at": at})
        return at

    # -- closing the books -------------------------------------------------------------
    def finish(self, quiet: float = 90.0, deadline: float = 900.0) -> dict[str, Any]:
        sent = self.sender.finish()
        traffic = time.time() - self.started_at
        ids = [e["event_id"] for e in sent]
        drained = self.collector.drain(set(ids), quiet=quiet, deadline=deadline)
        self.collector.stop()
        received = self.collector.snapshot()
        self.replayed = offline(self.policy, sent)
        acc = account(ids, received, self.replayed.decisions)
        times = [f["at"] for f in self.faults] + [None]
        recoveries = []
        for f, until in zip(self.faults, times[1:]):
            r = recovery(f["at"], received, until)
            recoveries.append({"fault": f["what"], "at_s": round(f["at"] - self.started_at, 1),
                               "first_decision_s": _round(r.first), "all_partitions_s": _round(r.all_partitions),
                               "partitions": r.partitions})
        gaps = seq_gaps(received)
        shim = self.sender.shim.counters
        result = {
            "scenario": self.name, "when": utc_now(), "commit": git_commit(), "rate": self.rate,
            "duration_s": round(traffic, 1), "drained": drained,
            "account": acc.to_dict(), "recovery": recoveries,
            "seq_gaps": [[g.shim_id, g.partition, g.after, g.before] for g in gaps],
            "shim": {"events_sent": shim.events_sent, "events_delivered": shim.events_delivered,
                     "events_failed": shim.events_failed, "unflushed_batches": self.sender.unflushed},
            "notes": self.notes, **self.extra,
        }
        self.result = result
        return result

    def save(self) -> dict[str, Any]:
        """Append the result (with whatever the test added to `extra`) to the results file."""
        self.result.update(self.extra)
        record(self.result)
        return self.result


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)
