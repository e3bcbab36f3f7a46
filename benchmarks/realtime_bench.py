"""Real time on one worker: decision latency and worker CPU at fixed offered
rates, the maximum sustained rate, and the raw confluent-kafka loop, in one run.

    .venv/bin/python -m benchmarks.realtime_bench            # 3 runs, ~9 min
    .venv/bin/python -m benchmarks.realtime_bench --quick    # 1 run, ~3 min

The targets it checks (the "real time on one worker" issue): p99 <= 100 ms up
to 8,000 events/s, <= 250 µs of worker CPU per Kafka message, <= 20 µs per
event.  Needs the local stack (TRUST_* variables as for the engine); its
topics, Faust app id and Redis prefix are its own and deleted at the end.
Results: ``benchmarks/results/realtime_bench.{json,md,png}`` and, at 2,000
events/s, a py-spy profile of the worker (``realtime_profile.txt``,
collapsed stacks).  BENCHMARKS.md has the method and the figures.

* One ``trustctl worker``, started as an operator would (environment
  settings, defaults otherwise), the example policy published with
  ``trustctl policy publish``.
* Each offered rate: ``streams.simulate`` traffic (40 processes under 7
  identity ids) through one long-lived ``ShimProducer`` with its default
  settings (linger 5 ms, cap 100, strict checks on), paced in real time;
  each event stamped with the wall clock as it is handed to ``send``.
  Latency = decision ``timestamp`` - event ``timestamp``; every event id
  sent is looked for on ``trust.decisions``.  Worker CPU from
  ``/proc/<pid>/stat`` from the first send to the last decision, divided by
  the Kafka messages the shim produced (= what the worker consumed) and by
  the events.
* Max sustained rate: N events batched by the same default shim as a
  real-time sender at ``--shape-rate`` would batch them (its clock advanced
  by 1/rate per event), held back, then released at once; events/s between
  the broker append times of the first and last DecisionBatch.  Against
  ``benchmarks.raw_forward`` (one-event messages) in the same run.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.pipeline_bench import (  # noqa: E402
    _stamp,
    decision_counter,
    epoch,
    forward_counter,
    gated_backlog,
    log,
    machine,
    measure_burst,
    median,
    pct,
    summarise,
    wait_ready,
)
from benchmarks.pipeline_kit import (  # noqa: E402
    TRUSTCTL,
    CpuProbe,
    GatedProducer,
    Lane,
    TopicWatch,
    broker_pid,
    read_range,
    start_module,
    start_worker,
)
from benchmarks.realtime_report import budget, chart, cpu_model, profile_summary, table  # noqa: E402
from streams.codec.avro import codec  # noqa: E402
from streams.policy.loader import load_policy_file  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.shim import DEFAULT_LINGER_MS, DEFAULT_MAX_BATCH, ShimProducer  # noqa: E402
from streams.simulate import WallClock, generate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
POLICY = ROOT / "examples" / "policy.yaml"
PY_SPY = Path(sys.executable).with_name("py-spy")


# -- the worker ----------------------------------------------------------------------


def scrape(port: int) -> dict[str, float]:
    """The worker's own counters from /metrics (events and event batches decided)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("trust_events_total", "trust_batches_total"):
            out[name] = float(value)
    return out


# -- one offered rate ----------------------------------------------------------------


def pace(shim: ShimProducer, events: list[dict], rate: float) -> dict:
    """Hand `events` to the shim at `rate` per second, each stamped as it is sent."""
    stamp = WallClock()
    send, poll, now = shim.send, shim.poll, time.monotonic
    started, wall0 = now(), time.time()
    i, n = 0, len(events)
    while i < n:  # every event due by now, then wait >= 1 ms (each wake-up costs CPU the worker needs)
        due = min(n, int((now() - started) * rate) + 1)
        while i < due:
            event = events[i]
            event["timestamp"] = stamp()
            send(event)
            i += 1
        ahead = started + i / rate - now()
        if ahead > 0:
            poll(min(max(ahead, 0.001), 0.02))
    seconds = now() - started
    while shim.buffered:  # the last batches leave by linger, as they would in production
        poll(0.002)
    left = shim.flush(30)
    return {"seconds": seconds, "wall_start": wall0, "undelivered": left}


def wait_outputs(watch: TopicWatch, base: dict, expected: int, settle: float, stall: float) -> str:
    """Until `expected` messages arrived after `base` ("all"), or, once some came, none new for
    `settle` s ("settled": `collect` then checks the ids), or none at all for `stall` s ("stalled")."""
    last_total, last_change = -1, time.monotonic()
    while True:
        total = sum(v - base.get(p, 0) for p, v in watch.highs().items())
        now = time.monotonic()
        if total >= expected:
            return "all"
        if total != last_total:
            last_total, last_change = total, now
        elif now - last_change > (settle if total else stall):
            return "settled" if total else "stalled"
        time.sleep(0.05)


def collect(lane: Lane, watch: TopicWatch, base: dict, want: set[str], stall: float) -> tuple[list, dict]:
    """Read decisions from `base` until every id in `want` is seen or nothing new comes for `stall` s.

    Returns the first decision of each id as (decision ts, event ts, broker append ms), and counts."""
    dec = codec("DecisionBatch").decode
    seen: dict[str, tuple] = {}
    stats = {"decision_batches": 0, "duplicates": 0, "foreign": 0}
    start = dict(base)
    last_change = time.monotonic()
    while True:
        highs = watch.highs()
        if any(highs[p] > start.get(p, 0) for p in highs):
            last_change = time.monotonic()
            for o in read_range(lane.settings.kafka_bootstrap, watch.topic, start, highs):
                stats["decision_batches"] += 1
                for d in dec(o.value)["decisions"]:
                    eid = d["event_id"]
                    if eid not in want:
                        stats["foreign"] += 1
                    elif eid in seen:
                        stats["duplicates"] += 1
                    else:
                        seen[eid] = (d["timestamp"], d["event_timestamp"], o.append_ms)
            start = highs
        if len(seen) >= len(want) or time.monotonic() - last_change > stall:
            return list(seen.values()), stats
        time.sleep(0.05)


def wait_quiet(pids: dict[str, int], limit: float, cores: float) -> tuple[float, float]:
    """Wait (up to `limit` s) for a second in which everything but the worker, broker and this
    process used less than `cores` cores: other people's jobs on the shared machine come in bursts.
    Returns (seconds waited, those other cores in the last second)."""
    started = time.monotonic()
    while True:
        probe = CpuProbe(pids)
        probe.start()
        time.sleep(1.0)
        others = probe.stop()["others"]
        waited = time.monotonic() - started
        if others < cores or waited >= limit:
            return round(waited, 1), round(others, 2)


def step(lane: Lane, shim: ShimProducer, rate: float, duration: float, args, seed: int,
         pids: dict[str, int]) -> dict:
    events = list(itertools.islice(generate(args.identities, seed), max(1, int(rate * duration))))
    waited, others_before = wait_quiet(pids, args.quiet_wait, args.quiet_cores) if args.quiet_wait else (0.0, None)
    want = {e["event_id"] for e in events}
    decisions, dlq = (TopicWatch(lane.settings.kafka_bootstrap, lane.topic(k)) for k in ("decisions", "dlq"))
    base, dlq_base = decisions.highs(), dlq.highs()
    m0 = scrape(lane.settings.web_port)
    c = shim.counters
    b0, e0, f0 = c.batches_sent, c.events_sent, c.events_failed
    probe = CpuProbe(pids)
    # The window: first send -> last decision.  Messages are counted by the
    # shim (what the worker must consume), cross-checked with /metrics and
    # the DecisionBatch count (one per input batch, SPEC §4).
    probe.start()
    t0 = time.monotonic()
    sent = pace(shim, events, rate)
    messages = c.batches_sent - b0
    ended = wait_outputs(decisions, base, messages, settle=3.0, stall=args.stall)
    cpu = probe.stop()
    window = time.monotonic() - t0
    seen, stats = collect(lane, decisions, base, want, stall=5.0 if ended != "stalled" else 0.5)
    m1 = scrape(lane.settings.web_port)
    dead = sum(v - dlq_base.get(p, 0) for p, v in dlq.highs().items())
    decisions.close()
    dlq.close()
    lat = sorted(epoch(ts) - epoch(ev) for ts, ev, _ in seen)
    app = sorted(ms / 1000 - epoch(ev) for _, ev, ms in seen)
    n_ev = c.events_sent - e0
    ms = lambda xs, q: round(pct(xs, q) * 1000, 2) if xs else None  # noqa: E731
    w = cpu.get("worker", float("nan"))
    r = {"offered_rate": rate, "duration_s": duration, "events": n_ev, "messages": messages,
         "events_per_message": round(n_ev / max(1, messages), 2), "sent_seconds": round(sent["seconds"], 3),
         "achieved_rate": round(n_ev / sent["seconds"], 1), "failed": c.events_failed - f0,
         "undelivered": sent["undelivered"], "decided": len(seen), "missing": len(want) - len(seen),
         "dead_letters": dead, **stats, "outputs": ended,
         "p50_ms": ms(lat, 50), "p95_ms": ms(lat, 95), "p99_ms": ms(lat, 99), "max_ms": ms(lat, 100),
         "append_p50_ms": ms(app, 50), "append_p99_ms": ms(app, 99), "append_max_ms": ms(app, 100),
         "window_s": round(window, 3), "cpu_seconds": cpu, "others_cores": round(cpu["others"] / window, 2),
         "waited_for_quiet_s": waited, "others_cores_before": others_before,
         "worker_cpu_us_per_message": round(w / max(1, messages) * 1e6, 1),
         "worker_cpu_us_per_event": round(w / max(1, n_ev) * 1e6, 2),
         "cpu_of_budget": round(w / budget(messages, n_ev), 3) if messages else None,
         "worker_metrics": {k: m1.get(k, 0) - m0.get(k, 0) for k in m1}}
    log(f"  {rate:>6,.0f} ev/s offered ({r['achieved_rate']:,.0f} sent, {r['events_per_message']:.1f} ev/msg): "
        f"decided {r['decided']:,}/{len(want):,}, p50 {r['p50_ms']} p99 {r['p99_ms']} max {r['max_ms']} ms; "
        f"worker {r['worker_cpu_us_per_message']:,.0f} CPU-µs/msg, {r['worker_cpu_us_per_event']:,.1f} /event, "
        f"{w / window:.0%} of a core; others {r['others_cores']:.2f} cores")
    return r


# -- maximum sustained rate, and the raw loop ------------------------------------------


def shaped_backlog(lane: Lane, events: int, rate: float, identities: int, seed: int) -> tuple[GatedProducer, ShimProducer]:
    """`events` through a default ShimProducer whose clock runs at `rate` events/s, held back."""
    gates: list[GatedProducer] = []
    clock = [0.0]

    def factory(config: dict) -> GatedProducer:
        gates.append(GatedProducer(config))
        return gates[-1]

    shim = ShimProducer(lane.settings, shim_id=f"rt-burst-{uuid.uuid4().hex[:8]}", producer_factory=factory,
                        clock=lambda: clock[0])
    for i, event in enumerate(itertools.islice(generate(identities, seed), events)):
        clock[0] = i / rate
        shim.send(event)
    clock[0] += 1.0
    shim.poll(0)
    shim.flush(0)
    return gates[0], shim


def max_rate(lane: Lane, args, pids: dict[str, int], seed: int) -> dict:
    runs, n = [], args.burst_events
    for rep in range(args.reps):
        gate, shim = shaped_backlog(lane, n, args.shape_rate, args.identities, seed + rep)
        if args.quiet_wait:
            wait_quiet(pids, args.quiet_wait, args.quiet_cores)
        r = measure_burst(lane, gate, shim.counters.batches_sent, lane.topic("decisions"), pids, decision_counter())
        r["preloaded_events"] = n
        log(f"max rate: {n:,} events in {shim.counters.batches_sent:,} messages ({r['events_per_message']:.1f} ev/msg) "
            f"-> {r['events_per_s']:,.0f} events/s over {r['seconds']:.1f}s, "
            f"{r.get('worker_cpu_us_per_event', 0):.1f} worker CPU-µs/event")
        runs.append(r)
        n = int(min(args.burst_max, max(args.burst_events, r["events_per_s"] * args.burst_seconds)))
    return {"runs": runs, "events_per_s": median([r["events_per_s"] for r in runs]),
            "messages_per_s": median([r["messages_per_s"] for r in runs]),
            "events_per_message": median([r["events_per_message"] for r in runs]), "shape_rate": args.shape_rate}


def raw_loop(stack: Settings, args, log_dir: Path) -> dict:
    """benchmarks.raw_forward on one-event messages from the shim, like pipeline_bench's baseline (b)."""
    lane = Lane(stack, "rt-raw")
    try:
        gate, shim = gated_backlog(lane, args.raw_messages // args.raw_copies, 1, args.identities, 7)
        gate.release(args.raw_copies)
        n = shim.counters.batches_sent * args.raw_copies
        runs = []
        for rep in range(args.reps):
            group = f"bench-raw-{uuid.uuid4().hex[:6]}"
            if args.quiet_wait:
                wait_quiet({}, args.quiet_wait, args.quiet_cores)
            watch = TopicWatch(lane.settings.kafka_bootstrap, lane.topic("decisions"))
            base = watch.highs()
            p = start_module(lane, "benchmarks.raw_forward", ["--in", lane.topic("events"), "--out",
                                                              lane.topic("decisions"), "--group", group],
                             log_dir, f"raw{rep}")
            probe = CpuProbe({"worker": p.pid, **({"broker": broker_pid(stack)} if broker_pid(stack) else {})})
            probe.start()
            watch.wait_total(base, n, stall=90)
            cpu = probe.stop()
            end = watch.highs()
            watch.close()
            p.stop()
            r = summarise(read_range(lane.settings.kafka_bootstrap, lane.topic("decisions"), base, end),
                          forward_counter(), cpu, 0.0)
            log(f"raw loop: {n:,} messages -> {r['messages_per_s']:,.0f} msg/s over {r['seconds']:.1f}s")
            runs.append(r)
        return {"runs": runs, "messages_per_s": median([r["messages_per_s"] for r in runs])}
    finally:
        lane.cleanup()


# -- profile -----------------------------------------------------------------------------


def profile(lane: Lane, shim: ShimProducer, args, pids: dict[str, int], seed: int) -> dict | None:
    if not PY_SPY.exists():
        log("py-spy is not installed (pip install -e '.[dev]'): no profile")
        return None
    out = args.out.with_name("realtime_profile.txt")
    # --nonblocking: without it py-spy stops the worker for every sample, and
    # counts threads blocked on a lock as busy (measured: BENCHMARKS.md).
    cmd = [str(PY_SPY), "record", "-d", str(int(args.profile_seconds)), "--nonblocking", "-f", "raw", "-o", str(out),
           "--pid", str(pids["worker"])]
    log(f"profile: {' '.join(cmd[1:])} at {args.profile_rate:,.0f} ev/s")
    spy = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(1.0)  # attached before the traffic starts
    r = step(lane, shim, args.profile_rate, args.profile_seconds + 1, args, seed, pids)
    text, _ = spy.communicate(timeout=120)
    if spy.returncode or not out.exists():
        log(f"py-spy failed ({spy.returncode}): {text.strip()[-500:]}")
        return {"command": " ".join(cmd), "error": text.strip()[-2000:]}
    summary = profile_summary(out.read_text(), args.profile_seconds)
    summary.update(command="py-spy " + " ".join(cmd[1:]).replace(str(ROOT) + "/", ""), step=r)
    return summary


# -- main ------------------------------------------------------------------------------


def aggregate(runs: list[list[dict]]) -> list[dict]:
    """Per offered rate: the median of each figure over the runs (and every run's p99)."""
    out = []
    for steps in zip(*runs):
        agg: dict[str, Any] = {"offered_rate": steps[0]["offered_rate"]}
        for k in ("achieved_rate", "events", "messages", "events_per_message", "decided", "missing", "duplicates",
                  "p50_ms", "p95_ms", "p99_ms", "max_ms", "append_p99_ms", "worker_cpu_us_per_message",
                  "worker_cpu_us_per_event", "cpu_of_budget"):
            vals = [s[k] for s in steps if s.get(k) is not None]
            agg[k] = median(vals) if vals else None
        agg["p99_ms_runs"] = [s["p99_ms"] for s in steps]
        agg["worker_cpu_us_per_message_runs"] = [s["worker_cpu_us_per_message"] for s in steps]
        agg["others_cores"] = median([s["others_cores"] for s in steps])
        agg["worker_cores"] = median([s["cpu_seconds"]["worker"] / s["window_s"] for s in steps])
        out.append(agg)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1 run, shorter rates (~3 min)")
    ap.add_argument("--rates", default="50,1000,2000,4000,8000", help="offered events/s")
    ap.add_argument("--duration", type=float, help="seconds per rate (15; --quick 8)")
    ap.add_argument("--runs", type=int, help="runs over all rates; medians reported (3; --quick 1)")
    ap.add_argument("--identities", type=int, default=40, help="simulated processes (under 7 identity ids)")
    ap.add_argument("--shape-rate", type=float, default=8000.0,
                    help="max-rate backlog batched as a real-time shim at this rate would batch it (8000)")
    ap.add_argument("--profile-rate", type=float, default=2000.0)
    ap.add_argument("--profile-seconds", type=float, help="py-spy duration (20; --quick 10; 0: no profile)")
    ap.add_argument("--quiet-wait", type=float, default=5.0,
                    help="before each rate, wait up to this long for other jobs to use < --quiet-cores (0: don't)")
    ap.add_argument("--quiet-cores", type=float, default=0.5)
    ap.add_argument("--stall", type=float, default=60.0, help="give up on a rate after this long with no decision")
    ap.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                    help="extra environment for the worker (e.g. TRUST_FETCH_WAIT_MS=10)")
    ap.add_argument("--burst-events", type=int, help="events of the first max-rate burst (40,000; --quick 20,000)")
    ap.add_argument("--raw-messages", type=int, help="messages for the raw loop (600,000; --quick 300,000)")
    ap.add_argument("--out", type=Path, default=RESULTS / "realtime_bench.json")
    args = ap.parse_args(argv)
    q = args.quick
    args.rates = [float(x) for x in args.rates.split(",") if x]
    args.duration = args.duration or (8.0 if q else 15.0)
    args.runs = args.runs or (1 if q else 3)
    args.reps = 1 if q else 3
    args.profile_seconds = (10.0 if q else 20.0) if args.profile_seconds is None else args.profile_seconds
    burst, args.burst_max, args.burst_seconds = (20_000, 150_000, 5.0) if q else (40_000, 300_000, 8.0)
    args.burst_events = args.burst_events or burst
    raw, args.raw_copies = (300_000, 5) if q else (600_000, 10)
    args.raw_messages = args.raw_messages or raw
    args.worker_env = dict(kv.split("=", 1) for kv in args.worker_env)

    stack = Settings.from_env()
    log_dir = Path(os.environ.get("BENCH_LOG_DIR", "/tmp")) / f"realtime-bench-{time.strftime('%Y%m%d-%H%M%S')}"
    log_dir.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"started": _stamp(), "machine": machine(), "logs": str(log_dir),
                           "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    log(f"logs in {log_dir}")
    lane = Lane(stack, "rt")
    lane.env.update(args.worker_env)
    worker = None
    try:
        subprocess.run([TRUSTCTL, "policy", "publish", str(POLICY)], env=lane.env, check=True,
                       capture_output=True, cwd=ROOT)
        worker = start_worker(lane, log_dir)
        pids = {"worker": worker.pid, **({"broker": broker_pid(stack)} if broker_pid(stack) else {})}
        wait_ready(lane, [worker], load_policy_file(POLICY).version, 1)
        probe = CpuProbe(pids)
        probe.start()
        time.sleep(5.0)  # the worker idle: its background cost, a part of every figure below
        idle = probe.stop()
        res["worker"] = {"pid": worker.pid, "idle_cpu_fraction": round(idle["worker"] / 5.0, 4)}
        log(f"worker ready (pid {worker.pid}), idle CPU {idle['worker'] / 5.0:.1%} of a core")
        shim = ShimProducer(lane.settings, shim_id=f"rt-{uuid.uuid4().hex[:8]}")  # the SDK's defaults
        res["shim"] = {"linger_ms": DEFAULT_LINGER_MS, "max_batch": DEFAULT_MAX_BATCH, "validate": True,
                       "producer": {k: v for k, v in shim.producer_config.items() if k != "bootstrap.servers"}}
        res["warmup"] = step(lane, shim, 500.0, 2.0, args, 1, pids)
        runs: list[list[dict]] = []
        for run in range(args.runs):
            log(f"run {run + 1}/{args.runs}")
            runs.append([step(lane, shim, rate, args.duration, args, 1000 * (run + 1) + i, pids)
                         for i, rate in enumerate(args.rates)])
        res["runs"] = runs
        res["rates"] = aggregate(runs)
        if args.profile_seconds > 0:
            res["profile"] = profile(lane, shim, args, pids, 9000)
        shim.close(30)
        res["max_rate"] = max_rate(lane, args, pids, 500)
        res["worker"]["peak_rss_kib"] = worker.peak_rss_kib()
        worker.stop()
        res["raw"] = raw_loop(stack, args, log_dir)
        res["ratio_to_raw"] = round(res["max_rate"]["events_per_s"] / res["raw"]["messages_per_s"], 4)
        res["cpu_model"] = cpu_model([s for r in runs for s in r], res["worker"]["idle_cpu_fraction"],
                                     res["max_rate"]["runs"])
    finally:
        if worker is not None:
            worker.stop()
        lane.cleanup()
    res["finished"] = _stamp()
    res["machine"]["load_average_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    log(f"wrote {args.out}")
    md = table(res)
    print(md)
    args.out.with_suffix(".md").write_text(md + "\n")
    try:
        chart(res, args.out.with_suffix(".png"))
        log(f"wrote {args.out.with_suffix('.png')}")
    except ImportError:
        log("matplotlib is not installed (pip install -e '.[dev]'): no chart")
    return 0


if __name__ == "__main__":
    sys.exit(main())
