"""Time from `kill -9` of a loaded worker to the first decision of its replacement.

    .venv/bin/python -m benchmarks.restart_bench                       # every variant, 3 runs each
    .venv/bin/python -m benchmarks.restart_bench --variants defaults,static --runs 5

Each run: a fresh lane (topics, app id, Redis prefix), one worker deciding a
steady shim load, `kill -9` of the worker once it has committed, a new worker
started at once with the same environment, and the first decision made after the kill (the
decision's own `timestamp`) ends the measurement.
A variant is extra environment for both workers (Faust reads its settings
from the environment); `--variants` picks among VARIANTS.  Prints one line
per run and the median per variant; the worker logs stay in --log-dir.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import NewTopic

from benchmarks.pipeline_kit import Lane, start_worker, wait_for
from streams.codec.avro import codec
from streams.policy.loader import load_policy, parse_text
from streams.policy_topic import publish
from streams.settings import Settings

POLICY = "version: restart-bench\ndefault_action: allow\npolicies:\n  read: {}\n"

# name -> (extra worker environment, what it is).  TRUST_WORKER_ID=none turns
# the project's static membership off (streams/worker/faustfix.py).
VARIANTS: dict[str, tuple[dict[str, str], str]] = {
    "defaults": ({"TRUST_WORKER_ID": "none", "BROKER_SESSION_TIMEOUT": "60", "BROKER_HEARTBEAT_INTERVAL": "3"},
                 "Faust defaults: session 60 s, heartbeat 3 s, dynamic membership"),
    "session10": ({"TRUST_WORKER_ID": "none", "BROKER_SESSION_TIMEOUT": "10", "BROKER_HEARTBEAT_INTERVAL": "3"},
                  "session 10 s, heartbeat 3 s"),
    "session6": ({"TRUST_WORKER_ID": "none", "BROKER_SESSION_TIMEOUT": "6", "BROKER_HEARTBEAT_INTERVAL": "2"},
                 "session 6 s (the broker's minimum), heartbeat 2 s"),
    "static60": ({"BROKER_SESSION_TIMEOUT": "60", "BROKER_HEARTBEAT_INTERVAL": "3"},
                 "static membership (group.instance.id), session 60 s"),
    "project": ({}, "streams.worker.faustfix.app_options(): static membership, session 10 s, heartbeat 3 s"),
}


def _load(settings: Settings, rate: float, stop: threading.Event) -> None:
    from streams.shim import ShimProducer

    shim = ShimProducer(settings=settings, shim_id=f"bench-{uuid.uuid4().hex[:6]}", linger_ms=100)
    started, n = time.monotonic(), 0
    while not stop.is_set():
        while n < int((time.monotonic() - started) * rate):
            shim.send({"event_id": f"rb-{n}", "syscall": "read", "args": ["/etc/hosts"],
                       "identity": {"id": f"svc-{n % 24}", "process_id": "p-1", "container_id": None,
                                    "tenant": None, "labels": {}},
                       "timestamp": "2026-11-28T12:00:00.000000Z", "trust_vector": None, "execution_dna": None})
            n += 1
        shim.poll(0.005)
    shim.close(30)


class DecisionTimes:
    """Decision times (the worker's `timestamp` of each decision) read from
    trust.decisions as they come.  A worker killed with -9 may still have
    records in flight to the broker; only its replacement decides after the kill."""

    def __init__(self, settings: Settings):
        topic = settings.topic("decisions")
        self.decode = codec("DecisionBatch").decode
        self.c = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"rb-{uuid.uuid4().hex}",
                           "enable.auto.commit": False, "auto.offset.reset": "latest"})
        parts = self.c.list_topics(topic, timeout=10).topics[topic].partitions
        self.c.assign([TopicPartition(topic, p, -1) for p in parts])  # from the end

    def first_after(self, t: float, timeout: float) -> float | None:
        """Earliest decision time after `t` (epoch seconds) in the first batch that has one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in self.c.consume(500, 0.2):
                if m.error():
                    continue
                after = [ts for d in self.decode(m.value())["decisions"]
                         if (ts := datetime.fromisoformat(d["timestamp"]).timestamp()) > t]
                if after:
                    return min(after)
        return None

    def seen_any(self) -> bool:
        return bool([m for m in self.c.consume(500, 0.2) if not m.error()])

    def close(self) -> None:
        self.c.close()


def one_run(stack: Settings, variant: str, rate: float, log_dir: Path) -> float | None:
    lane = Lane(stack, f"rb-{variant}")
    extra, _ = VARIANTS[variant]
    lane.env.update(extra)
    stop = threading.Event()
    workers = []
    try:
        publish(lane.settings, load_policy(parse_text(POLICY)), "restart-bench")
        name = f"{lane.settings.app_id}-trust-changelog"  # first-start race: see tests/integration/pipeline.py
        lane.admin.create_topics([NewTopic(name, lane.settings.partitions, 1,
                                           config={"cleanup.policy": "compact"})])[name].result(30)
        workers.append(start_worker(lane, log_dir))
        times = DecisionTimes(lane.settings)
        loader = threading.Thread(target=_load, args=(lane.settings, rate, stop), daemon=True)
        loader.start()
        wait_for("decisions from the first worker", lambda: workers[0].check() or times.seen_any(), 180)
        # Steady state: decided and committed for a few seconds (commit interval 1 s).
        end = time.monotonic() + 5
        while time.monotonic() < end:
            times.seen_any()
        t_kill = time.time()
        os.killpg(workers[0].pid, signal.SIGKILL)
        workers[0].p.wait(10)
        workers.append(start_worker(lane, log_dir))
        first = times.first_after(t_kill, timeout=150)
        times.close()
        return None if first is None else first - t_kill
    finally:
        stop.set()
        for w in workers:
            w.stop()
        lane.cleanup()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="defaults,session10,session6,static60,project")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--rate", type=float, default=300.0, help="events/s of the shim load")
    ap.add_argument("--log-dir", type=Path, default=Path(f"/tmp/restart-bench-{int(time.time())}"))
    args = ap.parse_args()
    args.log_dir.mkdir(parents=True, exist_ok=True)
    stack = Settings.from_env()
    results: dict[str, list[float | None]] = {}
    for variant in args.variants.split(","):
        if variant not in VARIANTS:
            raise SystemExit(f"unknown variant `{variant}`; known: {', '.join(VARIANTS)}")
        for run in range(args.runs):
            secs = one_run(stack, variant, args.rate, args.log_dir)
            results.setdefault(variant, []).append(secs)
            print(f"{variant:18} run {run + 1}: "
                  f"{'no decision in 150 s' if secs is None else f'{secs:6.1f} s'}", flush=True)
    print("\nvariant            median  runs (s)            what")
    for variant, values in results.items():
        got = [v for v in values if v is not None]
        med = f"{statistics.median(got):6.1f}" if got else "     -"
        runs = ", ".join("-" if v is None else f"{v:.1f}" for v in values)
        print(f"{variant:18} {med}  {runs:18}  {VARIANTS[variant][1]}")
    print(f"\nworker logs: {args.log_dir}")


if __name__ == "__main__":
    main()
