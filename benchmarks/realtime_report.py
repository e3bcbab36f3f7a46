"""Figures and words for `benchmarks.realtime_bench`: the CPU fit, the py-spy
summary, the markdown table and the chart.  Pure except `chart` (matplotlib)."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

TARGET_P99_MS = 100.0
TARGET_RATE = 8000.0
TARGET_US_PER_MESSAGE = 250.0
TARGET_US_PER_EVENT = 20.0
PY_SPY_HZ = 100  # py-spy record's default sampling rate

_THREAD_START = {"Thread._bootstrap", "Thread._bootstrap_inner", "Thread.run"}
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::\d+)?\)$")


FIT_FROM_RATE = 1000.0  # below, a message costs a whole wake-up of the worker: the linear model does not hold


def budget(messages: int, events: int) -> float:
    """CPU seconds the targets allow for this much work (250 µs a message + 20 µs an event)."""
    return (TARGET_US_PER_MESSAGE * messages + TARGET_US_PER_EVENT * events) / 1e6


def cpu_model(steps: list[dict], idle_fraction: float, bursts: list[dict]) -> dict | None:
    """Least squares of busy worker CPU per message = per_message + events/message x per_event.

    Busy = the worker's CPU in the window minus what it burns idle over the
    same time (measured before the first rate).  Points: every rate from
    FIT_FROM_RATE up, of every run, and every max-rate burst.  An estimate:
    at low rates each message pays for a wake-up that load amortises."""
    pts = []
    for s in steps:
        w = s["cpu_seconds"].get("worker")
        if w is None or w != w or not s["messages"] or s["offered_rate"] < FIT_FROM_RATE:
            continue
        pts.append((s["events_per_message"], (w - idle_fraction * s["window_s"]) / s["messages"] * 1e6))
    for b in bursts:
        w = b["cpu_seconds"].get("worker")
        if w is not None and w == w and b["messages"]:
            pts.append((b["events_per_message"], w / b["messages"] * 1e6))
    if len({round(x, 1) for x, _ in pts}) < 2:
        return None
    n = len(pts)
    mx, my = sum(x for x, _ in pts) / n, sum(y for _, y in pts) / n
    b = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
    a = my - b * mx
    return {"per_message_us": round(a, 1), "per_event_us": round(b, 2), "idle_fraction": idle_fraction,
            "holds": a > 0 and b > 0,  # a negative part: per-message cost falls with load, the model does not fit
            "points": [(round(x, 2), round(y, 1)) for x, y in pts]}


def _frame(raw: str) -> tuple[str, str]:
    """('func (file)', package) of a py-spy frame 'func (file:line)'."""
    m = _FRAME.match(raw)
    if not m:
        return raw, "?"
    path = m["file"]
    for marker in ("site-packages/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    if "/streams/" in path:
        path = "streams/" + path.split("/streams/", 1)[1]
    top = path.split("/", 1)[0] if "/" in path else path.removesuffix(".py")
    if top == "streams" and "/" in path[8:]:
        top = "streams/" + path[8:].split("/", 1)[0]
    return f"{m['func']} ({path})", top


def profile_summary(collapsed: str, seconds: float, top: int = 15) -> dict[str, Any]:
    """Top self and inclusive frames of a py-spy ``-f raw`` (collapsed stacks) recording."""
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    by_pkg: Counter[str] = Counter()
    by_thread: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";") if f]
        if not frames:
            continue
        leaf, pkg = frames[-1]
        by_thread[next((f for f, _ in frames if f.split(" (")[0] not in _THREAD_START), frames[0][0])] += n
        self_t[leaf] += n
        by_pkg[pkg] += n
        for name in {f for f, _ in frames}:
            incl[name] += n
    pc = lambda n: round(100 * n / total, 1) if total else 0.0  # noqa: E731
    return {"samples": total, "seconds": seconds,
            "busy_fraction": round(total / (seconds * PY_SPY_HZ), 3) if seconds else None,
            "top_self": [(f, pc(n)) for f, n in self_t.most_common(top)],
            "top_inclusive": [(f, pc(n)) for f, n in incl.most_common(top)],
            "self_by_package": [(p, pc(n)) for p, n in by_pkg.most_common(top)],
            "by_thread": [(t, pc(n)) for t, n in by_thread.most_common(6)]}


def _f(x: Any, fmt: str = ",.0f") -> str:
    return "–" if x is None else format(x, fmt)


def table(res: dict) -> str:
    lines = ["| offered ev/s | sent ev/s | ev/msg | decided / sent | p50 ms | p95 ms | p99 ms | max ms | p99 of each run (ms) "
             "| worker CPU-µs/msg | CPU-µs/event | CPU ÷ budget | worker cores | others' cores |",
             "|---:|---:|---:|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    for r in res.get("rates", []):
        runs = ", ".join(_f(x, ",.1f") for x in r["p99_ms_runs"])
        lines.append(f"| {r['offered_rate']:,.0f} | {_f(r['achieved_rate'])} | {r['events_per_message']:.1f} | "
                     f"{_f(r['decided'])} / {_f(r['events'])} | {_f(r['p50_ms'], ',.1f')} | {_f(r['p95_ms'], ',.1f')} | "
                     f"{_f(r['p99_ms'], ',.1f')} | {_f(r['max_ms'], ',.1f')} | {runs} | "
                     f"{_f(r['worker_cpu_us_per_message'])} | {_f(r['worker_cpu_us_per_event'], ',.1f')} | "
                     f"{_f(r['cpu_of_budget'], '.2f')} | {r['worker_cores']:.2f} | {r['others_cores']:.2f} |")
    out = ["\n".join(lines), ""]
    mr, raw = res.get("max_rate"), res.get("raw")
    if mr:
        out.append(f"max sustained rate, one worker: **{mr['events_per_s']:,.0f} events/s** "
                   f"({mr['messages_per_s']:,.0f} messages/s, {mr['events_per_message']:.1f} ev/msg: the default shim "
                   f"batching traffic of {mr['shape_rate']:,.0f} ev/s); runs "
                   + ", ".join(f"{r['events_per_s']:,.0f} (worker {r['cpu_seconds']['worker'] / r['seconds']:.0%} "
                               f"of a core, others {r['cpu_seconds']['others'] / r['seconds']:.2f} cores)"
                               for r in mr["runs"]))
    if raw:
        out.append(f"raw confluent-kafka loop, same run: {raw['messages_per_s']:,.0f} messages/s; runs "
                   + ", ".join(f"{r['messages_per_s']:,.0f}" for r in raw["runs"]))
    if "ratio_to_raw" in res:
        out.append(f"worker events/s ÷ raw loop messages/s = **{res['ratio_to_raw']:.3f}**")
    m = res.get("cpu_model")
    if m:
        out.append(f"worker CPU ≈ {m['per_message_us']:,.0f} µs per message + {m['per_event_us']:.1f} µs per event "
                   f"(least squares over the rates from {FIT_FROM_RATE:,.0f} ev/s and the bursts, idle CPU of "
                   f"{m['idle_fraction']:.1%} of a core taken out; an estimate"
                   + ("" if m["holds"] else "; does NOT hold: a negative part means the cost of a message falls "
                      "with load") + ")")
    out.append(f"CPU ÷ budget: worker CPU ÷ ({TARGET_US_PER_MESSAGE:.0f} µs × messages + {TARGET_US_PER_EVENT:.0f} µs × "
               "events), the CPU targets as one budget: ≤ 1 meets them")
    w = res.get("worker", {})
    if "peak_rss_kib" in w:
        out.append(f"worker peak RSS {w['peak_rss_kib'] / 1024:.0f} MiB")
    p = res.get("profile")
    if p and "top_self" in p:
        out += ["", f"py-spy at {p['step']['offered_rate']:,.0f} ev/s, {p['samples']:,} samples "
                    f"(Python busy {p['busy_fraction']:.0%} of the time): `{p['command']}`", "",
                "| self % | frame | | inclusive % | frame |", "|---:|---|---|---:|---|"]
        for (sf, sp), (inf, ip) in zip(p["top_self"][:12], p["top_inclusive"][:12]):
            out.append(f"| {sp} | `{sf}` | | {ip} | `{inf}` |")
        out.append("\nself time by package: " + ", ".join(f"{k} {v}%" for k, v in p["self_by_package"][:10]))
        out.append("\nsamples by thread (first frame of the thread's own code): "
                   + ", ".join(f"`{k}` {v}%" for k, v in p["by_thread"]))
        st = p["step"]
        out.append(f"\nthat step: worker CPU {st['cpu_seconds']['worker'] / st['window_s']:.0%} of a core (/proc), "
                   f"p99 {_f(st['p99_ms'], ',.0f')} ms under py-spy")
    out += ["", targets(res)]
    return "\n".join(out)


def targets(res: dict) -> str:
    rates = [r for r in res.get("rates", []) if r["offered_rate"] <= TARGET_RATE]
    worst = max((r["p99_ms"] for r in rates if r["p99_ms"] is not None), default=None)
    over = max((r["cpu_of_budget"] for r in rates if r["cpu_of_budget"] is not None), default=None)
    ok_rates = [r["offered_rate"] for r in rates if r["p99_ms"] is not None and r["p99_ms"] <= TARGET_P99_MS]
    m = res.get("cpu_model") or {}
    rows = ["| target | measured | met |", "|---|---|---|",
            f"| p99 ≤ {TARGET_P99_MS:.0f} ms up to {TARGET_RATE:,.0f} ev/s | worst p99 {_f(worst, ',.0f')} ms; "
            f"≤ {TARGET_P99_MS:.0f} ms at {', '.join(f'{x:,.0f}' for x in ok_rates) or 'no rate'} ev/s | "
            f"{'yes' if worst is not None and worst <= TARGET_P99_MS else 'no'} |"]
    if over is not None:
        rows.append(f"| worker CPU ≤ {TARGET_US_PER_MESSAGE:.0f} µs × messages + {TARGET_US_PER_EVENT:.0f} µs × events, "
                    f"every rate | up to {over:.2f}× that | {'yes' if over <= 1 else 'no'} |")
    if m and m["holds"]:
        rows.append(f"| ≤ {TARGET_US_PER_MESSAGE:.0f} µs worker CPU per Kafka message | {m['per_message_us']:,.0f} µs (fit) | "
                    f"{'yes' if m['per_message_us'] <= TARGET_US_PER_MESSAGE else 'no'} |")
        rows.append(f"| ≤ {TARGET_US_PER_EVENT:.0f} µs per event | {m['per_event_us']:.1f} µs (fit) | "
                    f"{'yes' if m['per_event_us'] <= TARGET_US_PER_EVENT else 'no'} |")
    return "\n".join(rows)


def chart(res: dict, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = res["rates"]
    xs = [r["offered_rate"] for r in rates]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.6))
    for key, style in (("p50_ms", "o-"), ("p95_ms", "s-"), ("p99_ms", "^-"), ("max_ms", "v:")):
        a.plot(xs, [r[key] for r in rates], style, label=key.split("_")[0])
    lo = [min(x for x in r["p99_ms_runs"] if x is not None) for r in rates]
    hi = [max(x for x in r["p99_ms_runs"] if x is not None) for r in rates]
    a.fill_between(xs, lo, hi, alpha=0.15, color="C2", label="p99, range over runs")
    a.axhline(TARGET_P99_MS, color="grey", linestyle="--", label=f"target p99 {TARGET_P99_MS:.0f} ms")
    a.set_xscale("log")
    a.set_yscale("log")
    a.set_xlabel("offered events/s (default shim, real time)")
    a.set_ylabel("decision timestamp − event timestamp (ms)")
    a.set_title(f"Decision latency, one worker (medians of {len(res['runs'])} runs)")
    a.legend(fontsize=8)
    b.plot(xs, [r["worker_cpu_us_per_message"] for r in rates], "o-", label="worker CPU-µs per Kafka message")
    b.plot(xs, [r["worker_cpu_us_per_event"] for r in rates], "s-", label="worker CPU-µs per event")
    b.axhline(TARGET_US_PER_MESSAGE, color="C0", linestyle="--", alpha=0.6, label="target 250 µs/message")
    b.axhline(TARGET_US_PER_EVENT, color="C1", linestyle="--", alpha=0.6, label="target 20 µs/event")
    for x, r in zip(xs, rates):
        b.annotate(f"{r['events_per_message']:.1f} ev/msg", (x, r["worker_cpu_us_per_message"]), fontsize=7,
                   textcoords="offset points", xytext=(0, 6), ha="center")
    b.set_xscale("log")
    b.set_yscale("log")
    b.set_xlabel("offered events/s")
    b.set_ylabel("worker CPU µs (/proc utime+stime)")
    b.set_title("Worker CPU vs offered rate")
    b.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
