"""Offline replay: events from a file, decisions as JSON lines (docs/behaviour.md §2.1).

Streams in constant memory: one event read, decided and written at a time.
A bad line is reported with its number and reason, counted and skipped.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Callable, Iterator

from streams.clock import utc_now
from streams.engine import TrustEngine
from streams.errors import EventError, TrustError
from streams.events import context_from_record
from streams.policy.compiled import CompiledPolicy
from streams.redzone.memory import InMemoryRedzone

AVRO_MAGIC = b"Obj\x01"


@dataclass(slots=True)
class ReplaySummary:
    events: int = 0
    decided: int = 0
    bad: int = 0
    violations: int = 0
    quarantines: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        return (f"replayed {self.events} events: {self.decided} decided, {self.bad} bad, "
                f"{self.violations} violations, {self.quarantines} quarantines")


def iter_records(path: Path) -> Iterator[tuple[int, Any, int]]:
    """(line or record number, record or the exception that spoiled it, bytes read so far)."""
    with open(path, "rb") as f:
        if f.read(4) == AVRO_MAGIC:
            yield from _iter_avro(f)
            return
        f.seek(0)
        done = 0
        for number, raw in enumerate(f, 1):
            done += len(raw)
            if not raw.strip():
                continue
            try:
                yield number, json.loads(raw), done
            except ValueError as exc:
                yield number, EventError(f"not valid JSON: {exc}"), done


def _iter_avro(f: IO[bytes]) -> Iterator[tuple[int, Any, int]]:
    import fastavro  # only here: the engine itself never touches Avro

    f.seek(0)
    number = 0
    try:
        for number, rec in enumerate(fastavro.reader(f), 1):
            yield number, rec, f.tell()
    except (ValueError, EOFError, OSError) as exc:
        raise TrustError(f"avro container is corrupt after record {number}: {exc}") from exc


def replay(policy: CompiledPolicy, events: Path, out: IO[str], *, wall_clock: bool = False,
           on_bad: Callable[[int, str], None] | None = None,
           on_progress: Callable[[int, int], None] | None = None) -> ReplaySummary:
    """Decide every event of `events` in order, writing one decision per line to `out`.

    Decision time is the event's own timestamp (deterministic) unless
    `wall_clock` asks for the time of the replay.
    """
    engine = TrustEngine(policy, InMemoryRedzone())
    summary = ReplaySummary()
    dumps = json.dumps
    write = out.write
    for number, rec, done in iter_records(events):
        summary.events += 1
        try:
            if isinstance(rec, Exception):
                raise rec
            ctx = context_from_record(rec)
        except EventError as exc:
            summary.bad += 1
            if on_bad is not None:
                on_bad(number, str(exc))
            continue
        outcome = engine.decide(ctx, utc_now() if wall_clock else ctx.timestamp)
        summary.decided += 1
        if outcome.violation is not None:
            summary.violations += 1
            code = outcome.violation["reason_code"]
            summary.by_reason[code] = summary.by_reason.get(code, 0) + 1
        if outcome.quarantine is not None:
            summary.quarantines += 1
        write(dumps(outcome.decision))
        write("\n")
        if on_progress is not None and summary.events % 4096 == 0:
            on_progress(summary.events, done)
    return summary


class Progress:
    """A one-line progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, total_bytes: int, stream: IO[str] = sys.stderr):
        self.total = max(total_bytes, 1)
        self.stream = stream
        self.enabled = stream.isatty()
        self.started = time.monotonic()

    def __call__(self, count: int, done: int) -> None:
        if not self.enabled:
            return
        frac = min(done / self.total, 1.0)
        rate = count / max(time.monotonic() - self.started, 1e-9)
        bar = "#" * int(frac * 30)
        self.stream.write(f"\r[{bar:<30}] {frac:6.1%} {count} events {rate:,.0f}/s")
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
