"""The engine on the real broker: one worker's events/s and decision latency,
against a bare Faust agent and a raw confluent-kafka loop measured in the same run.

    .venv/bin/python -m benchmarks.pipeline_bench            # full run, ~10 min
    .venv/bin/python -m benchmarks.pipeline_bench --quick    # ~4 min

Needs the local stack (`trustctl stack up`, TRUST_* variables as for the
engine).  Every lane of the run gets its own topics (docs/behaviour.md §4, 6 partitions
each), Faust app id and Redis prefix, deleted at the end.  Results go to
``benchmarks/results/pipeline_bench.{json,md,png}`` (``--out`` moves them);
BENCHMARKS.md explains the method and the figures.

What is measured (details in BENCHMARKS.md)
-------------------------------------------
* **Throughput** of one `trustctl worker`: the shim SDK batches and encodes N
  events of `streams.simulate` traffic with its clock held still, so every
  batch leaves by the size cap (``--batch`` events); the messages are held
  until the worker is up and alone in its group, then produced in one burst,
  so the worker starts with its whole backlog and is the bottleneck.  events/s
  = events decided after the first output, divided by the time between the
  broker's append times (LogAppendTime) of the first and last DecisionBatch.
  The decisions' own `timestamp` fields (worker clock, µs) give the same
  figure independently; both are reported.
* **Latency** at offered rates (fractions of that throughput): the shim SDK
  in real time with its default linger and cap, each event stamped with the
  wall clock as it is handed to ``send``; latency = broker append time of the
  DecisionBatch holding its decision - event timestamp (1 ms resolution).
  The first second of each rate is warm-up and left out.
* **Baselines**, same broker, same topic layout, one-event messages
  pre-produced the same way: (a) `benchmarks.faust_forward`, (b)
  `benchmarks.raw_forward`.  messages/s as above.
* **Scaling**: two workers in one group on the 6 partitions vs one.
* CPU seconds of the worker, broker, this process and everything else on the
  machine during each measured interval (/proc), and the worker's peak RSS
  (VmHWM).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import time
import uuid
from datetime import datetime, timezone
from importlib.metadata import version as dist_version
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.pipeline_kit import (  # noqa: E402
    CpuProbe,
    GatedProducer,
    Lane,
    TopicWatch,
    broker_pid,
    read_range,
    start_module,
    start_worker,
    wait_for,
)
from streams.codec.avro import codec  # noqa: E402
from streams.policy.loader import load_policy_file  # noqa: E402
from streams.policy_topic import publish  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.shim import ShimProducer  # noqa: E402
from streams.simulate import generate  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
POLICY = ROOT / "examples" / "policy.yaml"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def pct(xs: list[float], q: float) -> float:
    """Nearest-rank percentile of a sorted list."""
    if not xs:
        return float("nan")
    k = max(0, min(len(xs) - 1, int(round(q / 100 * len(xs) + 0.5)) - 1))
    return xs[k]


def epoch(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()


# -- input -------------------------------------------------------------------------


def gated_backlog(lane: Lane, events: int, batch: int, identities: int, seed: int) -> tuple[GatedProducer, ShimProducer]:
    """`events` events through the shim SDK, batched by size only, held until released."""
    gates: list[GatedProducer] = []

    def factory(config: dict) -> GatedProducer:
        gates.append(GatedProducer(config))
        return gates[-1]

    shim = ShimProducer(lane.settings, shim_id=f"bench-{uuid.uuid4().hex[:8]}", max_batch=batch,
                        producer_factory=factory, clock=lambda: 0.0)  # time stands still: no linger
    for event in itertools.islice(generate(identities, seed), events):
        shim.send(event)
    shim.flush(0)
    return gates[0], shim


def _stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Stamper:
    """Wall-clock timestamps in the SPEC's format, cheaply (the prefix changes once a second)."""

    def __init__(self) -> None:
        self._sec = -1
        self._prefix = ""

    def __call__(self) -> str:
        t = time.time()
        sec = int(t)
        if sec != self._sec:
            self._sec, self._prefix = sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return f"{self._prefix}.{int((t - sec) * 1e6):06d}Z"


def paced(lane: Lane, rate: float, duration: float, identities: int, seed: int,
          linger_ms: float | None = None) -> dict:
    """The shim SDK in real time at `rate` events/s; events stamped at send.

    The load generator shares the machine with the worker and the broker, so
    it does as little as it can while the clock runs: events are generated
    beforehand and the shim's strict per-event check is off (simulated events
    are valid by construction); batching, encoding and producing are the SDK's.
    """
    extra = {} if linger_ms is None else {"linger_ms": linger_ms}
    shim = ShimProducer(lane.settings, shim_id=f"bench-live-{uuid.uuid4().hex[:8]}", validate=False, **extra)
    events = list(itertools.islice(generate(identities, seed), int(rate * duration)))
    stamp = _Stamper()
    send, poll, now = shim.send, shim.poll, time.monotonic
    started = now()
    wall0 = time.time()
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
    sent_for = time.monotonic() - started
    shim.close(30)
    c = shim.counters
    return {"events": c.events_sent, "messages": c.batches_sent, "failed": c.events_failed,
            "seconds": sent_for, "wall_start": wall0, "offered_rate": c.events_sent / sent_for}


# -- measuring one burst -----------------------------------------------------------


def measure_burst(lane: Lane, gate: GatedProducer, messages: int, out_topic: str, pids: dict[str, int],
                  count_events) -> dict:
    """Release a held backlog, wait for `messages` outputs, and time them."""
    watch = TopicWatch(lane.settings.kafka_bootstrap, out_topic)
    base = watch.highs()
    probe = CpuProbe(pids)
    probe.start()
    release_s = gate.release()
    watch.wait_total(base, messages)
    cpu = probe.stop()
    end = watch.highs()
    watch.close()
    outs = read_range(lane.settings.kafka_bootstrap, out_topic, base, end)
    return summarise(outs, count_events, cpu, release_s)


def summarise(outs, count_events, cpu: dict, release_s: float) -> dict:
    per = [(o.append_ms, *count_events(o.value)) for o in outs]  # (append ms, events, worker µs ts or None)
    per.sort()
    events = sum(n for _, n, _ in per)
    t0, t1 = per[0][0], per[-1][0]
    at_first = sum(n for t, n, _ in per if t == t0)
    rate = (events - at_first) / ((t1 - t0) / 1000) if t1 > t0 else float("nan")
    r = {"messages": len(outs), "events": events, "events_per_message": events / len(outs),
         "seconds": (t1 - t0) / 1000, "events_per_s": rate,
         "messages_per_s": (len(outs) - sum(1 for t, _, _ in per if t == t0)) / ((t1 - t0) / 1000),
         "release_seconds": round(release_s, 3), "cpu_seconds": cpu}
    stamps = sorted((w, n) for _, n, w in per if w is not None)
    if stamps:
        w0, w1 = stamps[0][0], stamps[-1][0]
        first = sum(n for w, n in stamps if w == w0)
        r["events_per_s_worker_clock"] = (events - first) / (w1 - w0) if w1 > w0 else float("nan")
    if "worker" in cpu and events:
        r["worker_cpu_us_per_event"] = cpu["worker"] / events * 1e6
    return r


def decision_counter():
    dec = codec("DecisionBatch").decode

    def count(value: bytes) -> tuple[int, float | None]:
        b = dec(value)
        return len(b["decisions"]), epoch(b["decisions"][0]["timestamp"])

    return count


def forward_counter():
    dec = codec("SyscallEventBatch").decode

    def count(value: bytes) -> tuple[int, None]:
        return len(dec(value)["events"]), None

    return count


# -- the phases --------------------------------------------------------------------


def wait_ready(lane: Lane, procs, version: str, members: int) -> None:
    for p in procs:
        wait_for(f"{p.log_path.name} ready", lambda p=p: ((p.health() or {}).get("policy_version") == version))
    wait_for(f"{members} member(s) in group {lane.settings.app_id}",
             lambda: lane.group_members(lane.settings.app_id) >= members and all(p.alive() for p in procs))
    time.sleep(1.0)  # let the agents settle after the assignment


def phase_engine(stack: Settings, args, log_dir: Path, out: dict, raw: bool = False) -> None:
    """`trustctl worker` (or, with `raw`, `benchmarks.raw_engine`): throughput sweep, then latency."""
    name = "rawengine" if raw else "engine"
    lane = Lane(stack, name)
    lane.env.update(args.worker_env)
    try:
        version = load_policy_file(POLICY).version
        publish(lane.settings, load_policy_file(POLICY), "bench")
        if raw:
            w = start_module(lane, "benchmarks.raw_engine", ["--group", lane.settings.app_id, "--policy", str(POLICY)],
                             log_dir, name)
            wait_for("raw engine in its group", lambda: lane.group_members(lane.settings.app_id) >= 1 and w.alive())
            time.sleep(1.0)
        else:
            w = start_worker(lane, log_dir)
            wait_ready(lane, [w], version, 1)
        pids = {"worker": w.pid, **({"broker": broker_pid(stack)} if broker_pid(stack) else {})}
        out[name] = eng = {"throughput": {}, "latency": []}
        seed = 100
        for batch, n, reps in args.sweep:
            runs = []
            for _ in range(reps):
                seed += 1
                gate, shim = gated_backlog(lane, n, batch, args.identities, seed)
                log(f"{name}: {n} events in {shim.counters.batches_sent} messages of <= {batch}")
                r = measure_burst(lane, gate, shim.counters.batches_sent, lane.topic("decisions"), pids,
                                  decision_counter())
                log(f"  -> {r['events_per_s']:,.0f} events/s ({r['messages_per_s']:,.0f} msg/s), "
                    f"worker {r.get('worker_cpu_us_per_event', 0):.1f} CPU-us/event")
                runs.append(r)
            eng["throughput"][str(batch)] = {"runs": runs, "events_per_s": median([r["events_per_s"] for r in runs]),
                                             "messages_per_s": median([r["messages_per_s"] for r in runs])}
        eng["peak_rss_kib_after_throughput"] = w.peak_rss_kib()
        eng["cpu_model"] = cpu_model([r for t in eng["throughput"].values() for r in t["runs"]])
        top = eng["throughput"][str(args.batch)]["events_per_s"]
        eng["max_events_per_s"] = top
        if args.max_rate:
            top = args.max_rate
        for frac in args.fractions:
            seed += 1
            rate = frac * top
            watch = TopicWatch(lane.settings.kafka_bootstrap, lane.topic("decisions"))
            base = watch.highs()
            probe = CpuProbe(pids)
            probe.start()
            sent = paced(lane, rate, args.duration, args.identities, seed, args.linger)
            watch.wait_total(base, sent["messages"])
            cpu = probe.stop()
            end = watch.highs()
            watch.close()
            outs = read_range(lane.settings.kafka_bootstrap, lane.topic("decisions"), base, end)
            r = latency_summary(outs, sent, frac, cpu)
            log(f"{name} at {frac:.0%} ({sent['offered_rate']:,.0f} ev/s, {r['events_per_message']:.1f} ev/msg): "
                f"p50 {r['p50_ms']:.1f} p95 {r['p95_ms']:.1f} p99 {r['p99_ms']:.1f} ms")
            eng["latency"].append(r)
        eng["peak_rss_kib"] = w.peak_rss_kib()
        w.stop()
    finally:
        lane.cleanup()


def cpu_model(runs: list[dict]) -> dict | None:
    """Least-squares fit of the worker's CPU per message = per_message + events x per_event."""
    pts = [(r["events_per_message"], r["cpu_seconds"]["worker"] / r["messages"] * 1e6)
           for r in runs if r["cpu_seconds"].get("worker") == r["cpu_seconds"].get("worker")]
    xs = {round(x) for x, _ in pts}
    if len(xs) < 2:
        return None
    n = len(pts)
    mx, my = sum(x for x, _ in pts) / n, sum(y for _, y in pts) / n
    b = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
    return {"per_message_us": round(my - b * mx, 1), "per_event_us": round(b, 2),
            "points": [(round(x, 1), round(y, 1)) for x, y in pts]}


def latency_summary(outs, sent: dict, frac: float, cpu: dict) -> dict:
    dec = codec("DecisionBatch").decode
    warm = sent["wall_start"] + 1.0
    lat, decide_lat = [], []
    events = 0
    for o in outs:
        b = dec(o.value)
        events += len(b["decisions"])
        for d in b["decisions"]:
            ev = epoch(d["event_timestamp"])
            if ev < warm:
                continue
            lat.append(o.append_ms / 1000 - ev)
            decide_lat.append(epoch(d["timestamp"]) - ev)
    lat.sort()
    decide_lat.sort()
    ms = lambda xs, q: round(pct(xs, q) * 1000, 2)  # noqa: E731
    return {"fraction": frac, "offered_rate": sent["offered_rate"], "events": events, "messages": len(outs),
            "events_per_message": events / max(1, len(outs)), "measured_events": len(lat),
            "p50_ms": ms(lat, 50), "p95_ms": ms(lat, 95), "p99_ms": ms(lat, 99), "max_ms": ms(lat, 100),
            "decide_p50_ms": ms(decide_lat, 50), "decide_p99_ms": ms(decide_lat, 99),
            "cpu_seconds": cpu, "duration_s": sent["seconds"]}


def phase_baselines(stack: Settings, args, log_dir: Path, out: dict) -> None:
    """One-event messages through (a) a bare Faust agent and (b) a raw loop.

    Each gets its own lane sized to run several seconds (the raw loop is two
    orders of magnitude faster); each repetition is a fresh process in a new
    consumer group reading the same pre-produced input from the start.
    """
    out["baselines"] = res = {}
    for name, module in (("faust", "benchmarks.faust_forward"), ("raw", "benchmarks.raw_forward")):
        lane = Lane(stack, f"base-{name}")
        lane.env.update(args.worker_env)
        try:
            held = args.faust_messages if name == "faust" else args.raw_messages // args.raw_copies
            copies = 1 if name == "faust" else args.raw_copies
            gate, shim = gated_backlog(lane, held, 1, args.identities, 7)
            gate.release(copies)
            n = shim.counters.batches_sent * copies
            log(f"baseline {name}: {n:,} one-event messages pre-produced")
            runs = []
            for rep in range(args.reps):
                group = f"bench-{name}-{uuid.uuid4().hex[:6]}"
                watch = TopicWatch(lane.settings.kafka_bootstrap, lane.topic("decisions"))
                base = watch.highs()
                if name == "faust":
                    lane.env.update(TRUST_APP_ID=group, BENCH_IN=lane.topic("events"), BENCH_OUT=lane.topic("decisions"))
                    p = start_module(lane, module, [], log_dir, f"faust{rep}")
                else:
                    p = start_module(lane, module, ["--in", lane.topic("events"), "--out", lane.topic("decisions"),
                                                    "--group", group], log_dir, f"raw{rep}")
                pids = {"worker": p.pid}
                if broker_pid(stack):
                    pids["broker"] = broker_pid(stack)
                probe = CpuProbe(pids)
                probe.start()
                watch.wait_total(base, n, stall=90)
                cpu = probe.stop()
                end = watch.highs()
                watch.close()
                rss = p.peak_rss_kib()
                p.stop()
                outs = read_range(lane.settings.kafka_bootstrap, lane.topic("decisions"), base, end)
                r = summarise(outs, lambda v: (1, None), cpu, 0.0)
                r["peak_rss_kib"] = rss
                log(f"  -> {r['messages_per_s']:,.0f} msg/s over {r['seconds']:.1f}s, "
                    f"{r.get('worker_cpu_us_per_event', 0):.1f} CPU-us/message")
                runs.append(r)
            res[name] = {"runs": runs, "messages_per_s": median([r["messages_per_s"] for r in runs])}
        finally:
            lane.cleanup()


def phase_scaling(stack: Settings, args, log_dir: Path, out: dict) -> None:
    lane = Lane(stack, "scale")
    lane.env.update(args.worker_env)
    try:
        version = load_policy_file(POLICY).version
        publish(lane.settings, load_policy_file(POLICY), "bench")
        ws = [start_worker(lane, log_dir, f"w{i}") for i in range(2)]
        pids = {f"worker{i}": w.pid for i, w in enumerate(ws)}
        if broker_pid(stack):
            pids["broker"] = broker_pid(stack)
        wait_ready(lane, ws, version, 2)
        runs = []
        for rep in range(args.scale_reps):
            gate, shim = gated_backlog(lane, args.events, args.batch, args.identities, 500 + rep)
            r = measure_burst(lane, gate, shim.counters.batches_sent, lane.topic("decisions"), pids,
                              decision_counter())
            log(f"2 workers: {r['events_per_s']:,.0f} events/s")
            runs.append(r)
        out["scaling"] = {"workers": 2, "runs": runs, "events_per_s": median([r["events_per_s"] for r in runs]),
                          "peak_rss_kib": [w.peak_rss_kib() for w in ws]}
        for w in ws:
            w.stop()
    finally:
        lane.cleanup()


# -- report ------------------------------------------------------------------------


def machine() -> dict:
    mem = next(line for line in open("/proc/meminfo") if line.startswith("MemTotal")).split()[1]
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "?")
    return {"cores": os.cpu_count(), "cpu": cpu, "ram_gib": round(int(mem) / 2**20, 1),
            "python": platform.python_version(), "kernel": platform.release(),
            "kafka": "3.9.1 (KRaft, one broker, 512 MiB heap)",
            **{p: dist_version(p) for p in ("faust-streaming", "aiokafka", "confluent-kafka", "fastavro")},
            "load_average_at_start": os.getloadavg()}


def table(res: dict) -> str:
    if "engine" not in res:  # --only rawengine
        res = dict(res, engine=res["rawengine"])
        res.pop("rawengine")
    eng = res["engine"]
    top = eng["throughput"][str(res["config"]["batch"])]
    lines = ["| what | events/s | messages/s | ev/msg | notes |", "|---|---:|---:|---:|---|"]
    for b, t in sorted(eng["throughput"].items(), key=lambda kv: int(kv[0])):
        runs = t["runs"]
        cpu = median([r.get("worker_cpu_us_per_event", float("nan")) for r in runs])
        lines.append(f"| engine, 1 worker, batches of {b} | {t['events_per_s']:,.0f} | {t['messages_per_s']:,.0f} | "
                     f"{median([r['events_per_message'] for r in runs]):.1f} | worker {cpu:.1f} CPU-µs/event, "
                     "runs " + ", ".join(f"{r['events_per_s']:,.0f}" for r in runs) + " |")
    for name, label in (("faust", "bare Faust forward"), ("raw", "raw confluent-kafka loop")):
        b = res.get("baselines", {}).get(name)
        if b:
            lines.append(f"| {label} (one-event messages) | {b['messages_per_s']:,.0f} | {b['messages_per_s']:,.0f} | 1 | "
                         f"ours = {top['events_per_s'] / b['messages_per_s']:.2f}× its messages/s |")
    raw = res.get("rawengine")
    if raw:
        t = raw["throughput"].get(str(res["config"]["batch"]))
        if t:
            lines.append(f"| engine's BatchDecider on a raw confluent-kafka loop, batches of {res['config']['batch']} | "
                         f"{t['events_per_s']:,.0f} | {t['messages_per_s']:,.0f} | | not Faust (benchmarks/raw_engine.py) |")
    s = res.get("scaling")
    if s:
        lines.append(f"| engine, 2 workers, batches of {res['config']['batch']} | {s['events_per_s']:,.0f} | | | "
                     f"{s['events_per_s'] / top['events_per_s']:.2f}× one worker |")
    lines += ["", "| offered | events/s | ev/msg | p50 ms | p95 ms | p99 ms | max ms |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in eng["latency"]:
        lines.append(f"| {r['fraction']:.0%} | {r['offered_rate']:,.0f} | {r['events_per_message']:.1f} | {r['p50_ms']:.1f} | "
                     f"{r['p95_ms']:.1f} | {r['p99_ms']:.1f} | {r['max_ms']:.1f} |")
    lines.append(f"\nworker peak RSS (VmHWM): {eng['peak_rss_kib'] / 1024:.0f} MiB")
    m = eng.get("cpu_model")
    if m:
        lines.append(f"worker CPU ≈ {m['per_message_us']:.0f} µs per message + {m['per_event_us']:.1f} µs per event "
                     "(least squares over the throughput runs)")
    return "\n".join(lines)


def chart(res: dict, path: Path) -> None:
    if "engine" not in res:
        res = dict(res, engine=res["rawengine"])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eng = res["engine"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.5))
    bars = [(f"engine\nbatch {k}", v["events_per_s"]) for k, v in sorted(eng["throughput"].items(), key=lambda kv: int(kv[0]))]
    for name, label in (("faust", "Faust fwd\n(msgs)"), ("raw", "raw loop\n(msgs)")):
        if name in res.get("baselines", {}):
            bars.append((label, res["baselines"][name]["messages_per_s"]))
    if "scaling" in res:
        bars.append(("engine\n2 workers", res["scaling"]["events_per_s"]))
    raw = res.get("rawengine") if res.get("rawengine") is not eng else None
    if raw and str(res["config"]["batch"]) in raw["throughput"]:
        bars.append(("decider,\nno Faust", raw["throughput"][str(res["config"]["batch"])]["events_per_s"]))
    a.bar([x for x, _ in bars], [y for _, y in bars], color="#4477aa")
    for i, (_, y) in enumerate(bars):
        a.text(i, y, f"{y:,.0f}", ha="center", va="bottom", fontsize=8)
    a.set_ylabel("per second (engine: events; baselines: messages)")
    a.set_title("Throughput, one worker unless noted")
    a.tick_params(axis="x", labelsize=8)
    lat = eng["latency"]
    xs = [r["offered_rate"] for r in lat]
    for key, style in (("p50_ms", "o-"), ("p95_ms", "s-"), ("p99_ms", "^-")):
        b.plot(xs, [r[key] for r in lat], style, label=key.split("_")[0])
    if raw and raw["latency"]:
        rl = raw["latency"]
        for key, style in (("p50_ms", "o--"), ("p99_ms", "^--")):
            b.plot([r["offered_rate"] for r in rl], [r[key] for r in rl], style, alpha=0.6,
                   label=key.split("_")[0] + ", decider without Faust")
    b.axhline(25, color="grey", linestyle=":", label="p99 target 25 ms")
    b.set_yscale("log")
    b.set_xlabel("offered events/s (shim SDK, real time)")
    b.set_ylabel("event timestamp → decision appended (ms)")
    b.set_title("Decision latency vs offered rate")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer events and repetitions (~5 min)")
    ap.add_argument("--events", type=int, help="events per throughput run")
    ap.add_argument("--batch", type=int, default=100, help="shim size cap for the throughput runs (100)")
    ap.add_argument("--identities", type=int, default=40, help="identities in the simulated traffic (40)")
    ap.add_argument("--fractions", default="0.02,0.05,0.1,0.25,0.5,0.75",
                    help="offered rates, as fractions of the max throughput measured first")
    ap.add_argument("--duration", type=float, help="seconds per offered rate")
    ap.add_argument("--linger", type=float, help="shim linger (ms) for the latency runs (default: the SDK's)")
    ap.add_argument("--max-rate", type=float,
                    help="events/s the fractions refer to (default: the max measured by the throughput runs)")
    ap.add_argument("--sweep", help="throughput runs as batch:events[:reps],... (default: 100-event batches; "
                    "the full run adds 1 and 10)")
    ap.add_argument("--only", default="engine,rawengine,baselines,scaling",
                    help="phases to run (rawengine: the same decider on a plain confluent-kafka loop)")
    ap.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                    help="extra environment for workers and the Faust baseline (e.g. PRODUCER_LINGER=0.005)")
    ap.add_argument("--out", type=Path, default=RESULTS / "pipeline_bench.json")
    args = ap.parse_args(argv)
    q = args.quick
    args.events = args.events or (60_000 if q else 200_000)
    args.duration = args.duration or (6.0 if q else 12.0)
    args.reps = 1 if q else 3
    args.scale_reps = 1 if q else 3
    args.faust_messages = 6_000 if q else 15_000
    args.raw_messages, args.raw_copies = (300_000, 5) if q else (1_000_000, 10)
    args.fractions = [float(x) for x in args.fractions.split(",") if x]
    if args.sweep:
        args.sweep = [tuple(int(x) for x in (part.split(":") + ["1"])[:3]) for part in args.sweep.split(",")]
    else:
        args.sweep = [(args.batch, args.events, args.reps)]
        if not q:
            args.sweep = [(1, 10_000, 1), (10, 40_000, 1)] + args.sweep
    if args.batch not in [b for b, _, _ in args.sweep]:
        args.batch = args.sweep[-1][0]
    phases = set(args.only.split(","))
    args.worker_env = dict(kv.split("=", 1) for kv in args.worker_env)

    stack = Settings.from_env()
    log_dir = Path(os.environ.get("BENCH_LOG_DIR", "/tmp")) / f"pipeline-bench-{time.strftime('%Y%m%d-%H%M%S')}"
    log_dir.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {"started": _stamp(), "machine": machine(),
                           "config": {k: v for k, v in vars(args).items() if k not in ("out",)},
                           "logs": str(log_dir)}
    log(f"logs in {log_dir}")
    if "engine" in phases:
        phase_engine(stack, args, log_dir, res)
    if "rawengine" in phases:
        phase_engine(stack, args, log_dir, res, raw=True)
    if "baselines" in phases:
        phase_baselines(stack, args, log_dir, res)
    if "scaling" in phases:
        phase_scaling(stack, args, log_dir, res)
    res["finished"] = _stamp()
    res["machine"]["load_average_at_end"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, default=str) + "\n")
    log(f"wrote {args.out}")
    if "engine" in res or "rawengine" in res:
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
