"""A worker's metrics, and the Prometheus text format they are served in.

Hand-written rather than prometheus_client: the decide path only needs a few
plain counters, and the text format is a dozen lines.  Why the shapes:

- :class:`DecideMetrics` is bumped by the decide agent: decisions by action
  once per batch (`Counter.update`, counted in C, ~0.1 µs per event),
  violations and dead letters as they happen (plain dict increments), and
  the evaluation latency histogram once per batch, not per event.
- Gauges that need I/O (quarantined processes by status from Redis, consumer
  lag from the broker) are measured when ``/metrics`` is scraped, never in
  the decide path; the caller passes them to :func:`render` as families.

Pure: no Faust, Kafka or Redis here.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable, Mapping

# Seconds to decide one batch (decode -> evaluate -> encode), up to 100 events.
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class Histogram:
    """A cumulative-on-render histogram: per-bucket counts, a sum and a count."""

    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS):
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1


class DecideMetrics:
    """Counters the decide agent keeps; only ints and dicts, so counting is cheap."""

    __slots__ = ("events", "batches", "decisions", "violations", "dlq", "controls", "latency",
                 "redelivered", "seq_gaps")

    def __init__(self) -> None:
        self.events = 0
        self.batches = 0
        self.decisions: Counter[str] = Counter()  # action (allow|block|quarantine|warn) -> count
        self.violations: dict[str, int] = {}  # reason_code -> count
        self.dlq: dict[str, int] = {}  # error_code -> count
        self.controls: dict[str, int] = {}  # "applied" | "duplicate" -> count
        self.latency = Histogram()
        self.redelivered: dict[str, int] = {}  # "replayed" (from its step) | "unknown" -> batches
        self.seq_gaps = 0  # batches whose shim seq skipped numbers on their partition

    def families(self) -> list["Family"]:
        h = self.latency
        buckets, running = [], 0
        for bound, n in zip(h.bounds + (float("inf"),), h.counts):
            running += n
            buckets.append(({"le": _number(bound)}, running))
        return [
            Family("trust_events_total", "counter", "syscall events decided by this worker",
                   [({}, self.events)]),
            Family("trust_batches_total", "counter", "event batches decided by this worker",
                   [({}, self.batches)]),
            Family("trust_decisions_total", "counter", "decisions by outcome (the action: allow, block, "
                   "quarantine, warn; in audit mode the would-be action)",
                   [({"action": a}, n) for a, n in sorted(self.decisions.items())]),
            Family("trust_violations_total", "counter", "violation records by reason code",
                   [({"reason_code": code}, n) for code, n in sorted(self.violations.items())]),
            Family("trust_dlq_total", "counter", "dead letters written, by error code",
                   [({"error_code": code}, n) for code, n in sorted(self.dlq.items())]),
            Family("trust_control_commands_total", "counter",
                   "trust control commands (resets) received, applied or duplicate",
                   [({"result": r}, n) for r, n in sorted(self.controls.items())]),
            Family("trust_seq_gaps_total", "counter", "event batches whose shim seq skipped numbers on "
                   "their partition (batches lost between a shim and the engine)", [({}, self.seq_gaps)]),
            Family("trust_redelivered_batches_total", "counter", "batches applied before and delivered "
                   "again, decided from their recorded step or not (unknown)",
                   [({"how": h}, n) for h, n in sorted(self.redelivered.items())]),
            Family("trust_batch_evaluation_seconds", "histogram",
                   "time to decide one event batch (decode, evaluate, encode)",
                   buckets, h.sum, h.count),
        ]


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: samples are (labels, value); histograms add sum and count."""

    name: str
    kind: str  # counter | gauge | histogram
    help: str
    samples: list[tuple[Mapping[str, str], float]] = field(default_factory=list)
    sum: float | None = None
    count: int | None = None


def _number(v: float) -> str:
    if v == float("inf"):
        return "+Inf"
    return repr(float(v)) if isinstance(v, float) and not v.is_integer() else str(int(v))


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(labels: Mapping[str, str]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{_escape(str(v))}"' for k, v in labels.items()) + "}"


def render(families: Iterable[Family]) -> str:
    """Prometheus text exposition format 0.0.4."""
    lines: list[str] = []
    for f in families:
        lines.append(f"# HELP {f.name} {f.help}")
        lines.append(f"# TYPE {f.name} {f.kind}")
        if f.kind == "histogram":
            for labels, value in f.samples:
                lines.append(f"{f.name}_bucket{_labels(labels)} {_number(value)}")
            lines.append(f"{f.name}_sum {repr(float(f.sum or 0.0))}")
            lines.append(f"{f.name}_count {f.count or 0}")
            continue
        for labels, value in f.samples:
            lines.append(f"{f.name}{_labels(labels)} {_number(value)}")
    return "\n".join(lines) + "\n"


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
