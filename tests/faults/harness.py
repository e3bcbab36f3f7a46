"""The fault suite's moving parts on the real stack: a paced shim, a decision
collector, and the record of one scenario's result.

- :class:`PacedSender` feeds events through one `ShimProducer` (the shim SDK,
  in a thread) at a steady rate until stopped; `sent` is exactly the events
  handed to the shim, in order.
- :class:`DecisionCollector` reads `trust.decisions` from the start of every
  partition, all the time, keeping every decision with its batch envelope
  (:class:`tests.faults.accounting.Received`).
- :func:`record` appends a scenario's result to the results file
  (`TRUST_FAULTS_OUT`, default `build/faults/results.jsonl`) that
  `python -m tests.faults report` turns into the tables of docs/reliability.md.

Waiting is polling a condition with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from streams.codec.avro import codec
from streams.settings import Settings
from streams.shim import ShimProducer
from tests.faults.accounting import Received, epoch, unroll
from tests.faults.workload import REPO

RESULTS = Path(os.environ.get("TRUST_FAULTS_OUT") or REPO / "build" / "faults" / "results.jsonl")


def pace(events: Iterator[dict], shim: ShimProducer, rate: float, stop: threading.Event,
         on_sent: Callable[[dict], None], limit: int | None = None) -> None:
    """Send `events` through `shim` at `rate` events/s until `stop` is set (or `limit` sent).

    Between sends the shim is polled (its batches leave on time and delivery
    reports are served); a late sender catches up in a burst of at most a second.
    """
    started = time.monotonic()
    n = 0
    for event in events:
        if stop.is_set() or (limit is not None and n >= limit):
            return
        due = started + n / rate
        now = time.monotonic()
        if due > now:
            shim.poll(due - now)
        elif now - due > 1.0:  # far behind (a stalled machine): do not burst more than a second
            started += now - due - 1.0
        on_sent(event)
        shim.send(event)
        n += 1


class PacedSender(threading.Thread):
    """One shim sending at `rate` events/s from `events` until :meth:`finish`."""

    def __init__(self, settings: Settings, events: Iterator[dict], rate: float, shim_id: str | None = None,
                 limit: int | None = None):
        super().__init__(daemon=True, name="paced-sender")
        self.shim = ShimProducer(settings, shim_id=shim_id or f"faults-{uuid.uuid4().hex[:6]}",
                                 # a broker outage is waited out, not turned into lost batches
                                 config={"message.timeout.ms": 600_000})
        self.events = events
        self.rate = rate
        self.limit = limit
        self.sent: list[dict] = []
        self.error: BaseException | None = None
        self.unflushed = 0
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            pace(self.events, self.shim, self.rate, self._halt, self.sent.append, self.limit)
        except BaseException as exc:  # reported by finish()
            self.error = exc
        finally:
            self.unflushed = self.shim.close(timeout=600)

    def finish(self, timeout: float = 660.0) -> list[dict]:
        """Stop sending, deliver what the shim holds, and return the events sent."""
        self._halt.set()
        self.join(timeout)
        if self.error is not None:
            raise AssertionError(f"the sender failed: {self.error!r}") from self.error
        assert not self.is_alive(), "the sender did not finish"
        return self.sent

    @property
    def count(self) -> int:
        return len(self.sent)


class DecisionCollector(threading.Thread):
    """Every DecisionBatch on the decisions topic, from the start, as it arrives."""

    def __init__(self, settings: Settings):
        super().__init__(daemon=True, name="decision-collector")
        self.settings = settings
        self.records: list[Received] = []
        self._times: list[tuple[float, int]] = []  # (decision time, partition) per record
        self._ids: set[str] = set()
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self.last_arrival = time.monotonic()

    def run(self) -> None:
        topic = self.settings.topic("decisions")
        decode = codec("DecisionBatch").decode
        consumer = Consumer({"bootstrap.servers": self.settings.kafka_bootstrap,
                             "group.id": f"faults-{uuid.uuid4().hex}", "enable.auto.commit": False,
                             "auto.offset.reset": "earliest"})
        meta = consumer.list_topics(topic, timeout=30)
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.topics[topic].partitions])
        try:
            while not self._halt.is_set():
                for m in consumer.consume(500, 0.5):
                    if m.error() or m.value() is None:
                        continue
                    got = unroll(decode(m.value()))
                    with self._lock:
                        self.records.extend(got)
                        self._times.extend((epoch(r.decision["timestamp"]), r.partition) for r in got)
                        self._ids.update(r.event_id for r in got)
                        self.last_arrival = time.monotonic()
        finally:
            consumer.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(30)

    def snapshot(self) -> list[Received]:
        with self._lock:
            return list(self.records)

    @property
    def decided(self) -> int:
        with self._lock:
            return len(self._ids)

    def decided_after(self, at: float) -> int:
        """Decisions made (worker clock) after `at` (epoch seconds)."""
        with self._lock:
            times = list(self._times)
        return sum(1 for t, _ in times if t > at)

    def partitions_after(self, at: float) -> int:
        """Partitions with a decision made after `at`."""
        with self._lock:
            times = list(self._times)
        return len({p for t, p in times if t > at})

    def has(self, event_ids: set[str]) -> bool:
        with self._lock:
            return event_ids <= self._ids

    def drain(self, event_ids: set[str], quiet: float = 60.0, deadline: float = 600.0) -> bool:
        """Wait until every id in `event_ids` is decided, or nothing new arrived for
        `quiet` seconds (what is missing then stays missing), or `deadline`.
        True if all arrived."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.has(event_ids):
                return True
            if time.monotonic() - self.last_arrival > quiet:
                return False
            time.sleep(0.5)
        return False


def record(result: dict[str, Any], path: Path = RESULTS) -> Path:
    """Append one scenario's result (one JSON line) to the results file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(result, sort_keys=True) + "\n")
    return path
