"""Decide: one SyscallEventBatch in, its DecisionBatch (plus violations,
quarantine commands and dead letters) out.

`BatchDecider.handle` is the whole path for one Kafka message, top to
bottom, with no I/O of its own: decode -> validate -> evaluate -> update
trust -> encode.  The Faust agent (`streams.worker.build`) only feeds it messages and
sends what it returns.

Adaptive trust lives in a mapping keyed by identity (a changelog-backed
Faust table in the stream).  Each entry remembers the last batch applied per
shim (`shim_id` -> `seq`) and the trust before it, so a batch redelivered
after a crash is decided again from the same starting trust (same decisions)
and an older one changes no trust at all: no penalty is ever applied twice.

`BatchDecider.handle_control` applies TrustControl commands from the control
topic (recovery resets trust to the baseline, SPEC §3).  They reach the same
agent as the events, co-partitioned by identity, so the trust table stays the
one owner of trust and the write lands on the identity's changelog partition.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, Callable, MutableMapping

from streams.clock import utc_now
from streams.codec.avro import codec
from streams.engine import TrustEngine
from streams.errors import CodecError, EventError
from streams.events import context_from_record
from streams.metrics import DecideMetrics

SHIMS_REMEMBERED = 16  # per identity; a shim restarts under a new shim_id
_ACTION = itemgetter("action")


@dataclass(frozen=True, slots=True)
class Emit:
    """A record to produce: topic kind (SPEC §4, see Settings.topic), key, value."""

    kind: str
    key: bytes | None
    value: bytes


@dataclass(frozen=True, slots=True)
class Source:
    """Where a message came from, for dead letters."""

    topic: str
    partition: int
    offset: int


class BatchDecider:
    def __init__(self, engine: TrustEngine, state: MutableMapping[str, Any],
                 clock: Callable[[], str] = utc_now, metrics: DecideMetrics | None = None):
        self.engine = engine
        self.state = state
        self.clock = clock
        self.metrics = DecideMetrics() if metrics is None else metrics
        self._control_in = codec("TrustControl")
        self._batch_in = codec("SyscallEventBatch")
        self._decisions_out = codec("DecisionBatch")
        self._violation_out = codec("Violation")
        self._quarantine_out = codec("QuarantineCommand")
        self._dlq_out = codec("DeadLetter")

    def handle(self, key: bytes | None, value: bytes, source: Source) -> list[Emit]:
        started = time.perf_counter()
        out = self._handle(key, value, source)
        m = self.metrics
        m.batches += 1
        m.latency.observe(time.perf_counter() - started)
        return out

    def _handle(self, key: bytes | None, value: bytes, source: Source) -> list[Emit]:
        try:
            batch = self._batch_in.decode(value)
        except CodecError as exc:
            return [self._dead(key, value, source, str(exc), "undecodable")]
        if not key:
            return [self._dead(key, value, source, "message has no key (the identity id)", "no_key")]
        identity = key.decode("utf-8", "replace")
        shim, seq = batch["shim_id"], batch["seq"]
        entry = self.state.get(identity) or {}
        seen = (entry.get("s") or {}).get(shim)
        redelivered_last = entry.get("k") == f"{shim}:{seq}"
        stale = seen is not None and seq <= seen and not redelivered_last
        start = entry.get("b") if redelivered_last else entry.get("t")
        trust = self.engine.trust
        trust.clear()
        if start is not None:
            trust[identity] = start

        out: list[Emit] = []
        decisions = []
        now = self.clock()
        by_reason = self.metrics.violations
        for index, rec in enumerate(batch["events"]):
            try:
                ctx = context_from_record(rec)
                if ctx.identity.id != identity:
                    raise EventError(f"event identity `{ctx.identity.id}` differs from the batch key `{identity}`")
            except EventError as exc:
                out.append(self._dead(key, value, source, str(exc), "event_invalid", index))
                continue
            outcome = self.engine.decide(ctx, now, update_trust=not stale)
            decisions.append(outcome.decision)
            if outcome.violation is not None:
                code = outcome.decision["reason_code"]
                by_reason[code] = by_reason.get(code, 0) + 1
                out.append(Emit("violations", key, self._violation_out.encode(outcome.violation)))
            if outcome.quarantine is not None:
                pid = outcome.quarantine["process_id"].encode()
                out.append(Emit("quarantine", pid, self._quarantine_out.encode(outcome.quarantine)))
        self.metrics.events += len(decisions)
        self.metrics.decisions.update(map(_ACTION, decisions))  # once per batch, counted in C
        if decisions:
            record = {"shim_id": shim, "seq": seq, "partition": source.partition, "decisions": decisions}
            out.insert(0, Emit("decisions", key, self._decisions_out.encode(record)))
        if not stale:
            shims = dict(entry.get("s") or {})
            shims.pop(shim, None)
            shims[shim] = seq
            while len(shims) > SHIMS_REMEMBERED:  # oldest first: dicts keep insertion order
                del shims[next(iter(shims))]
            new = {"t": trust.get(identity), "b": start, "k": f"{shim}:{seq}", "s": shims}
            if "c" in entry:
                new["c"] = entry["c"]
            self.state[identity] = new
        return out

    def handle_control(self, key: bytes | None, value: bytes, source: Source) -> list[Emit]:
        """Apply one TrustControl command; only dead letters come out.

        `reset_trust` sets the identity's trust to the running policy's
        baseline.  The entry remembers the last applied command id (`c`), so
        a redelivered reset, even after later events, resets nothing again.
        A reset is a barrier: it forgets the last batch (`k`, `b`), so a batch
        applied before it and redelivered after it is decided from the reset
        trust without changing it (its seq is not above the one remembered).
        """
        try:
            cmd = self._control_in.decode(value)
        except CodecError as exc:
            return [self._dead(key, value, source, str(exc), "undecodable")]
        identity = cmd["identity_id"]
        if key is None or key.decode("utf-8", "replace") != identity:
            return [self._dead(key, value, source, f"control key `{key!r}` is not the identity id "
                               f"`{identity}` (the trust table is partitioned by it)", "control_key")]
        entry = self.state.get(identity) or {}
        controls = self.metrics.controls
        if entry.get("c") == cmd["command_id"]:
            controls["duplicate"] = controls.get("duplicate", 0) + 1
            return []
        # op is `reset_trust`, the one symbol of TrustControlOp.
        self.state[identity] = {"t": self.engine.policy.trust_model.baseline, "b": None, "k": None,
                                "s": dict(entry.get("s") or {}), "c": cmd["command_id"]}
        self.engine.forget_history(identity)
        controls["applied"] = controls.get("applied", 0) + 1
        return []

    def _dead(self, key: bytes | None, value: bytes, source: Source, reason: str, code: str,
              index: int | None = None) -> Emit:
        self.metrics.dlq[code] = self.metrics.dlq.get(code, 0) + 1
        record = {"topic": source.topic, "partition": source.partition, "offset": source.offset,
                  "key": key, "value": value, "reason": reason, "error_code": code,
                  "event_index": index, "timestamp": self.clock()}
        return Emit("dlq", key, self._dlq_out.encode(record))
