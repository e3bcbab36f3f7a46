"""Decide: one SyscallEventBatch in, its DecisionBatch (plus violations,
quarantine commands and dead letters) out.

`BatchDecider.handle` is the whole path for one Kafka message, top to
bottom, with no I/O of its own: decode -> validate -> evaluate -> update
trust -> encode.  The Faust agent (`streams.worker.build`) feeds it the
messages of a whole take (many messages at once) and sends what it returns.

A batch holds the events bound for one partition (docs/behaviour.md §1.1):
every event's identity must hash to the partition the batch arrived on, or
it goes to the dead-letter topic (naming both partitions) and the rest of
the batch is decided.

Adaptive trust lives in a mapping of identity -> `TrustEntry` (the Faust
table's data in the stream, a dict in tests).  Changed entries are collected
in `dirty` and written to the table's changelog once per commit, not once
per message (`take_dirty`).  A batch at or below the identity's last applied
offset is a redelivery: it is decided from the trust and isolation recorded
for it when it was first applied, and changes nothing (streams/trust_state.py).

`BatchDecider.handle_control` applies TrustControl commands from the control
topic (recovery resets trust to the baseline, docs/behaviour.md §3); with
`command_keys` only signed ones (docs/security.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from operator import itemgetter
from typing import Callable, MutableMapping

from streams import command_signature
from streams.trust_state import QuarantineMark, Step, TrustEntry
from streams.clock import utc_now
from streams.codec.avro import codec
from streams.engine import TrustEngine
from streams.errors import CodecError, EventError, SignatureError
from streams.events import context_from_avro
from streams.metrics import DecideMetrics
from streams.partitioner import partition_of
from streams.redzone.model import Isolation
from streams.signing import Keyring

_ACTION = itemgetter("action")
_EMPTY = TrustEntry()


@dataclass(frozen=True, slots=True)
class Emit:
    """A record to produce: topic kind (see streams/topics.py), key, value."""

    kind: str
    key: bytes | None
    value: bytes


@dataclass(frozen=True, slots=True)
class Source:
    """Where a message came from, for dead letters."""

    topic: str
    partition: int
    offset: int


class _Working:
    """One identity's state while one message is decided."""

    __slots__ = ("entry", "redelivered", "step", "quarantines")

    def __init__(self, entry: TrustEntry, redelivered: bool, step: Step | None):
        self.entry = entry
        self.redelivered = redelivered
        self.step = step
        self.quarantines: list[QuarantineMark] = []


def _isolation_fields(iso) -> tuple[str, tuple[str, ...]] | None:
    if iso is None:
        return None
    level, names = iso.as_fields()
    return level, tuple(names)


class BatchDecider:
    def __init__(self, engine: TrustEngine, state: MutableMapping[str, TrustEntry],
                 clock: Callable[[], str] = utc_now, metrics: DecideMetrics | None = None,
                 partitions: int | None = None,
                 committed: Callable[[int], int | None] = lambda partition: None,
                 command_keys: Keyring | None = None):
        """`partitions`: the events topic's partition count (None: no partition check).
        `committed(partition)`: the partition's last committed offset, if known,
        below which recorded steps can be dropped.  `command_keys`: trust resets
        must be signed by one of these keys (None: not checked)."""
        self.command_keys = command_keys
        self.engine = engine
        self.state = state
        self.clock = clock
        self.metrics = DecideMetrics() if metrics is None else metrics
        self.partitions = partitions
        self.committed = committed
        self.dirty: dict[str, int] = {}  # identity -> partition, written at the next commit
        self._home: dict[str, int] = {}  # identity -> its partition (memo of partition_of)
        self._seqs: dict[tuple[int, str], int] = {}  # (partition, shim) -> last seq seen
        self._batch_in = codec("SyscallEventBatch")
        self._decisions_out = codec("DecisionBatch")
        self._violation_out = codec("Violation")
        self._quarantine_out = codec("QuarantineCommand")
        self._dlq_out = codec("DeadLetter")

    def take_dirty(self) -> dict[str, int]:
        """The identities changed since the last call (-> their partition); clears it."""
        dirty, self.dirty = self.dirty, {}
        return dirty

    def handle(self, key: bytes | None, value: bytes, source: Source) -> list[Emit]:
        started = time.perf_counter()
        out = self._handle(key, value, source)
        m = self.metrics
        m.batches += 1
        m.latency.observe(time.perf_counter() - started)
        return out

    def _home_of(self, identity: str) -> int:
        home = self._home.get(identity)
        if home is None:
            if len(self._home) > 100_000:
                self._home.clear()
            home = self._home[identity] = partition_of(identity, self.partitions)
        return home

    def _handle(self, key: bytes | None, value: bytes, source: Source) -> list[Emit]:
        try:
            batch = self._batch_in.decode(value)
        except CodecError as exc:
            return [self._dead(key, value, source, str(exc), "undecodable")]
        except Exception as exc:  # a decoder bug must not stop the agent: dead-letter the message
            return [self._dead(key, value, source, f"undecodable: {type(exc).__name__}: {exc}", "undecodable")]
        partition, offset = source.partition, source.offset
        self._track_seq(partition, batch["shim_id"], batch["seq"])
        if not batch["events"]:
            return [self._dead(key, value, source, "a batch holds 1 or more events, this one none",
                               "event_invalid")]
        engine, state, trust = self.engine, self.state, self.engine.trust
        view = engine.redzone
        trust.clear()
        working: dict[str, _Working] = {}
        out: list[Emit] = []
        decisions = []
        now = self.clock()
        by_reason = self.metrics.violations
        check_home = self.partitions is not None
        for index, rec in enumerate(batch["events"]):
            try:
                ctx = context_from_avro(rec)
            except EventError as exc:
                out.append(self._dead(key, value, source, str(exc), "event_invalid", index))
                continue
            identity = ctx.identity.id
            if check_home and self._home_of(identity) != partition:
                out.append(self._dead(key, value, source, (
                    f"event identity `{identity}` belongs to partition {self._home_of(identity)}, "
                    f"not partition {partition} it arrived on"), "wrong_partition", index))
                continue
            w = working.get(identity)
            if w is None:
                w = working[identity] = self._start(identity, offset)
            pid = ctx.identity.process_id
            if w.redelivered:
                ignore, before = w.entry.isolation_before(pid, offset, index)
                iso = (None if before is None else Isolation.of(before[0], before[1])) if ignore \
                    else view.isolation_of(pid)
            else:
                iso = view.isolation_of(pid)
            # engine.trust is this message's scratch: a redelivery advances it
            # event by event as the first delivery did, and is never stored.
            outcome = engine.decide(ctx, now, isolation=iso)
            decisions.append(outcome.decision)
            if outcome.violation is not None:
                code = outcome.decision["reason_code"]
                by_reason[code] = by_reason.get(code, 0) + 1
                out.append(Emit("violations", identity.encode(), self._violation_out.encode(outcome.violation)))
            if outcome.quarantine is not None:
                if not w.redelivered:
                    w.quarantines.append(QuarantineMark(index, pid, _isolation_fields(iso)))
                out.append(Emit("quarantine", pid.encode(), self._quarantine_out.encode(outcome.quarantine)))
        self.metrics.events += len(decisions)
        self.metrics.decisions.update(map(_ACTION, decisions))  # once per batch, counted in C
        if decisions:
            record = {"shim_id": batch["shim_id"], "seq": batch["seq"], "partition": partition,
                      "decisions": decisions}
            out.insert(0, Emit("decisions", key, self._decisions_out.encode(record)))
        committed = self.committed(partition)
        for identity, w in working.items():
            if w.redelivered:
                continue
            step = Step(offset, w.entry.trust, tuple(w.quarantines))
            state[identity] = w.entry.applied(offset, trust.get(identity), step, committed)
            self.dirty[identity] = partition
        return out

    def _start(self, identity: str, offset: int) -> _Working:
        """Load an identity's entry for the message at `offset` and set its starting trust."""
        entry = TrustEntry.of(self.state.get(identity)) or _EMPTY
        if offset > entry.offset:
            w = _Working(entry, False, None)
            start = entry.trust
        else:  # applied before: decide it as it was decided then, change nothing
            step = entry.step_at(offset)
            w = _Working(entry, True, step)
            redelivered = self.metrics.redelivered
            if step is None:  # older than every recorded step: nothing to decide it from but now
                redelivered["unknown"] = redelivered.get("unknown", 0) + 1
                start = entry.trust
            else:
                redelivered["replayed"] = redelivered.get("replayed", 0) + 1
                start = step.trust_before
        if start is not None:
            self.engine.trust[identity] = start
        return w

    def _track_seq(self, partition: int, shim: str, seq: int) -> None:
        last = self._seqs.get((partition, shim))
        if last is not None and seq > last + 1:
            self.metrics.seq_gaps += 1
        if last is None or seq > last:
            if len(self._seqs) > 100_000:
                self._seqs.clear()
            self._seqs[(partition, shim)] = seq

    def handle_control(self, key: bytes | None, value: bytes, source: Source) -> list[Emit]:
        """Apply one TrustControl command; only dead letters come out.

        `reset_trust` sets the identity's trust to the running policy's
        baseline.  The entry remembers the last applied command id, so a
        redelivered reset, even after later events, resets nothing again.
        With `command_keys`, an unsigned, forged or unknown-key reset, or a
        genuine one older than the last applied (a replay), changes nothing:
        it is logged, counted and dead-lettered with its reason.
        """
        try:
            cmd = command_signature.decode("TrustControl", value)
        except CodecError as exc:
            return [self._dead(key, value, source, str(exc), "undecodable")]
        except Exception as exc:
            return [self._dead(key, value, source, f"undecodable: {type(exc).__name__}: {exc}", "undecodable")]
        keys = self.command_keys
        controls = self.metrics.controls
        try:
            if keys is not None:
                command_signature.verify_record("TrustControl", cmd, keys)
            identity = cmd["identity_id"]
            if key is None or key.decode("utf-8", "replace") != identity:
                return [self._dead(key, value, source, f"control key `{key!r}` is not the identity id "
                                   f"`{identity}` (the trust table is partitioned by it)", "control_key")]
            entry = TrustEntry.of(self.state.get(identity)) or _EMPTY
            if entry.control_id == cmd["command_id"]:
                controls["duplicate"] = controls.get("duplicate", 0) + 1
                return []
            if keys is not None:
                command_signature.check_not_before("TrustControl", cmd, entry.control_at,
                                                   f"the last trust reset of `{identity}`")
        except SignatureError as exc:
            command_signature.refuse(exc, f"{source.topic}[{source.partition}]@{source.offset}")
            controls["refused"] = controls.get("refused", 0) + 1
            return [self._dead(key, value, source, str(exc), exc.reason)]
        # op is `reset_trust`, the one symbol of TrustControlOp.
        self.state[identity] = entry.reset(self.engine.policy.trust_model.baseline, cmd["command_id"],
                                           cmd["timestamp"])
        self.dirty[identity] = source.partition
        self.engine.forget_history(identity)
        controls["applied"] = controls.get("applied", 0) + 1
        return []

    def _dead(self, key: bytes | None, value: bytes | None, source: Source, reason: str, code: str,
              index: int | None = None) -> Emit:
        self.metrics.dlq[code] = self.metrics.dlq.get(code, 0) + 1
        record = {"topic": source.topic, "partition": source.partition, "offset": source.offset,
                  "key": key, "value": value if value is not None else b"", "reason": reason,
                  "error_code": code, "event_index": index, "timestamp": self.clock()}
        return Emit("dlq", key, self._dlq_out.encode(record))
