"""Exact event accounting for the fault suite: pure functions, no I/O.

A fault scenario sends events with unique ids through the shim, reads every
`DecisionBatch` back from `trust.decisions` (each carries `shim_id`, `seq` and
`partition` of the input batch it answers) and decides the same events
offline with the same policy.  From those three things this module says,
exactly:

- **sent / decided / missing**: event ids sent, sent ids with at least one
  decision, sent ids with none;
- **duplicates**: decisions beyond the first for one event id (redelivery
  after a crash is at-least-once), and how many of those event ids got
  copies that **differ** in a field other than the decision time
  `timestamp` (a redelivered batch must be decided exactly as the first time);
- **mismatches vs replay**: event ids whose decision, decision time apart,
  differs from the offline replay's (trust state lost or applied twice, an
  isolation missed or applied too early), with a count per differing field;
- **seq gaps**: per (shim, partition), numbers missing between the batch
  seqs the engine answered (a gap means batches never reached it);
- **recovery**: from a fault to the first decision made after it, and to the
  moment every partition that was still fed has a decision made after it;
- **redzone**: processes quarantined in Redis against the replay's redzone.

The offline side is :func:`offline`: the engine `trustctl replay` runs
(`streams.replay`: one `TrustEngine` over an in-memory redzone, decision time
= the event's timestamp) that also keeps the redzone it ends with.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from streams.engine import TrustEngine
from streams.errors import EventError
from streams.events import context_from_record
from streams.policy.compiled import CompiledPolicy
from streams.redzone.memory import InMemoryRedzone

DECISION_TIME = "timestamp"  # the one field a redelivered or replayed decision may change
EXAMPLES = 5  # ids kept as examples in an Account


# -- what came out of the stream -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    """One decision as read from `trust.decisions`, with its batch's envelope."""

    decision: Mapping[str, Any]
    shim_id: str
    seq: int
    partition: int  # of the input batch (the DecisionBatch's `partition` field)

    @property
    def event_id(self) -> str:
        return self.decision["event_id"]


def unroll(batch: Mapping[str, Any]) -> list[Received]:
    """The decisions of one decoded DecisionBatch, each with the batch's envelope."""
    return [Received(d, batch["shim_id"], batch["seq"], batch["partition"]) for d in batch["decisions"]]


def differing_fields(a: Mapping[str, Any], b: Mapping[str, Any],
                     ignore: Iterable[str] = (DECISION_TIME,)) -> tuple[str, ...]:
    """Fields (sorted) whose values differ between two decisions, `ignore` aside."""
    skip = set(ignore)
    return tuple(sorted(k for k in set(a) | set(b) if k not in skip and a.get(k) != b.get(k)))


# -- the offline side ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Offline:
    """What `trustctl replay` decides for a sequence of events, and its redzone."""

    decisions: dict[str, dict]  # event id -> decision
    redzone: dict[str, "RedzoneEntry"]  # process id -> entry
    bad: int = 0  # records that were not valid events (none in a fault workload)


@dataclass(frozen=True, slots=True)
class RedzoneEntry:
    """A quarantined process as far as losing or doubling a quarantine shows."""

    status: str
    isolation_level: str
    isolation_syscalls: tuple[str, ...]
    command_ids: frozenset[str]

    @classmethod
    def of(cls, process: Any) -> "RedzoneEntry":
        """From a `QuarantinedProcess` (Redis or memory) or its `to_dict()` form."""
        d = process if isinstance(process, Mapping) else process.to_dict()
        return cls(d["status"], d["isolation_level"], tuple(sorted(d.get("isolation_syscalls") or ())),
                   frozenset(d.get("command_ids") or ()))


def offline(policy: CompiledPolicy, events: Iterable[Mapping[str, Any]]) -> Offline:
    """Decide `events` in order as `streams.replay.replay` does (decision time = the
    event's timestamp); also return the redzone the replay ends with."""
    redzone = InMemoryRedzone()
    engine = TrustEngine(policy, redzone)
    decisions: dict[str, dict] = {}
    bad = 0
    for rec in events:
        try:
            ctx = context_from_record(rec)
        except EventError:
            bad += 1
            continue
        decisions[ctx.event_id] = engine.decide(ctx, ctx.timestamp).decision
    zone = {pid: RedzoneEntry.of(p) for pid, p in redzone.store.processes.items()}
    return Offline(decisions, zone, bad)


# -- the account ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Account:
    sent: int
    decided: int  # distinct sent ids with at least one decision
    missing: int  # sent ids with no decision
    duplicates: int  # decisions beyond the first, summed over event ids
    duplicated_events: int  # event ids decided more than once
    differing_duplicates: int  # of those, ids whose copies differ (decision time apart)
    mismatches: int  # decided ids whose decision differs from the replay's (any copy)
    unexpected: int  # decisions for ids that were never sent
    mismatch_fields: Mapping[str, int] = field(default_factory=dict)  # field -> ids differing in it
    first_copy_mismatches: int = 0  # ids whose first decision already differs from the replay's
    later_copy_mismatches: int = 0  # ids whose redelivered copy (any after the first) differs from it
    missing_examples: tuple[str, ...] = ()
    mismatch_examples: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (id, fields)
    # (id, {field: [replay's value, first copy's, later copies'...]}) for ids whose copies differ
    duplicate_examples: tuple[tuple[str, Mapping[str, list]], ...] = ()

    @property
    def lossless(self) -> bool:
        """Nothing missing, nothing extra, every duplicate identical, replay agrees."""
        return not (self.missing or self.unexpected or self.differing_duplicates or self.mismatches)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent, "decided": self.decided, "missing": self.missing,
            "duplicates": self.duplicates, "duplicated_events": self.duplicated_events,
            "differing_duplicates": self.differing_duplicates, "mismatches": self.mismatches,
            "unexpected": self.unexpected, "mismatch_fields": dict(self.mismatch_fields),
            "first_copy_mismatches": self.first_copy_mismatches,
            "later_copy_mismatches": self.later_copy_mismatches,
            "missing_examples": list(self.missing_examples),
            "mismatch_examples": [[i, list(f)] for i, f in self.mismatch_examples],
            "duplicate_examples": [[i, dict(v)] for i, v in self.duplicate_examples],
        }


def account(sent_ids: Sequence[str], received: Iterable[Received],
            expected: Mapping[str, Mapping[str, Any]]) -> Account:
    """Account for every sent event id: decided once, more than once, or never;
    and every decision against `expected` (the offline replay's, by event id)."""
    copies: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in received:
        copies[r.event_id].append(r.decision)
    sent = set(sent_ids)
    if len(sent) != len(sent_ids):
        raise ValueError(f"event ids must be unique: {len(sent_ids) - len(sent)} repeated")
    missing = [i for i in sent_ids if i not in copies]
    duplicates = duplicated = differing = first_bad = later_bad = 0
    mismatched: list[tuple[str, tuple[str, ...]]] = []
    dup_examples: list[tuple[str, dict[str, list]]] = []
    by_field: Counter[str] = Counter()
    for event_id, got in copies.items():
        if event_id not in sent:
            continue
        want = expected.get(event_id)
        if len(got) > 1:
            duplicated += 1
            duplicates += len(got) - 1
            between = {f for other in got[1:] for f in differing_fields(got[0], other)}
            if between:
                differing += 1
                if len(dup_examples) < EXAMPLES:
                    dup_examples.append((event_id, {f: [None if want is None else want.get(f)]
                                                    + [d.get(f) for d in got] for f in sorted(between)}))
        if want is None:
            fields: set[str] = {"<not in replay>"}
        else:
            fields = {f for d in got for f in differing_fields(want, d)}
            first_bad += bool(differing_fields(want, got[0]))
            later_bad += any(differing_fields(want, d) for d in got[1:])
        if fields:
            mismatched.append((event_id, tuple(sorted(fields))))
            by_field.update(fields)
    unexpected = sum(len(got) for event_id, got in copies.items() if event_id not in sent)
    return Account(
        sent=len(sent_ids), decided=len(sent) - len(missing), missing=len(missing),
        duplicates=duplicates, duplicated_events=duplicated, differing_duplicates=differing,
        mismatches=len(mismatched), unexpected=unexpected, mismatch_fields=dict(sorted(by_field.items())),
        first_copy_mismatches=first_bad, later_copy_mismatches=later_bad,
        missing_examples=tuple(missing[:EXAMPLES]), mismatch_examples=tuple(mismatched[:EXAMPLES]),
        duplicate_examples=tuple(dup_examples))


# -- seq gaps ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeqGap:
    """Batches `after`+1 .. `before`-1 of `shim_id` on `partition` never answered."""

    shim_id: str
    partition: int
    after: int
    before: int

    @property
    def batches(self) -> int:
        return self.before - self.after - 1


def seq_gaps(received: Iterable[Received]) -> list[SeqGap]:
    """Holes in each (shim, partition)'s answered seqs, as the decider counts them
    (`seq > last + 1`), over distinct seqs (a redelivered batch repeats its seq).

    Only batches with at least one decision have a DecisionBatch: a batch whose
    every event went to the dead-letter topic would look like a gap here.
    """
    seen: dict[tuple[str, int], set[int]] = defaultdict(set)
    for r in received:
        seen[(r.shim_id, r.partition)].add(r.seq)
    gaps = []
    for (shim, partition), seqs in sorted(seen.items()):
        ordered = sorted(seqs)
        gaps += [SeqGap(shim, partition, a, b) for a, b in zip(ordered, ordered[1:]) if b > a + 1]
    return gaps


# -- recovery ------------------------------------------------------------------------


def epoch(rfc3339: str) -> float:
    """Seconds since the epoch of an RFC 3339 time as the engine writes it."""
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00").replace("z", "+00:00")).timestamp()


@dataclass(frozen=True, slots=True)
class Recovery:
    """Seconds from a fault to the first decision made after it (any partition), and
    until every partition decided after the fault has had one (None: never)."""

    first: float | None
    all_partitions: float | None
    partitions: int  # partitions with a decision after the fault


def recovery(fault_at: float, received: Iterable[Received], until: float | None = None) -> Recovery:
    """Recovery after a fault at `fault_at` (epoch seconds), from decision times
    (the worker's clock: the `timestamp` of each decision); decisions at or after
    `until` (the next fault) are not counted."""
    first_per_partition: dict[int, float] = {}
    for r in received:
        t = epoch(r.decision[DECISION_TIME])
        if t <= fault_at or (until is not None and t >= until):
            continue
        known = first_per_partition.get(r.partition)
        if known is None or t < known:
            first_per_partition[r.partition] = t
    if not first_per_partition:
        return Recovery(None, None, 0)
    times = first_per_partition.values()
    return Recovery(min(times) - fault_at, max(times) - fault_at, len(first_per_partition))


# -- the redzone ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RedzoneDiff:
    expected: int  # processes in the replay's redzone
    actual: int
    lost: tuple[str, ...]  # expected, absent from the actual redzone
    extra: tuple[str, ...]  # in the actual redzone, not expected
    differing: tuple[str, ...]  # in both, with another status, isolation or command ids

    @property
    def equal(self) -> bool:
        return not (self.lost or self.extra or self.differing)

    def to_dict(self) -> dict[str, Any]:
        return {"expected": self.expected, "actual": self.actual, "lost": list(self.lost),
                "extra": list(self.extra), "differing": list(self.differing)}


def redzone_diff(expected: Mapping[str, RedzoneEntry], actual: Mapping[str, RedzoneEntry]) -> RedzoneDiff:
    lost = tuple(sorted(set(expected) - set(actual)))
    extra = tuple(sorted(set(actual) - set(expected)))
    differing = tuple(sorted(p for p in set(expected) & set(actual) if expected[p] != actual[p]))
    return RedzoneDiff(len(expected), len(actual), lost, extra, differing)
