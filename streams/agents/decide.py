"""Decide: one SyscallEventBatch in, its DecisionBatch (plus violations,
quarantine commands and dead letters) out.

`BatchDecider.handle` is the whole path for one Kafka message, top to
bottom, with no I/O of its own: decode -> validate -> evaluate -> update
trust -> encode.  The Faust agent in `streams.app` only feeds it messages and
sends what it returns.

Adaptive trust lives in a mapping keyed by identity (a changelog-backed
Faust table in the stream).  Each entry remembers the last batch applied per
shim (`shim_id` -> `seq`) and the trust before it, so a batch redelivered
after a crash is decided again from the same starting trust (same decisions)
and an older one changes no trust at all: no penalty is ever applied twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, MutableMapping

from streams.clock import utc_now
from streams.codec.avro import codec
from streams.engine import TrustEngine
from streams.errors import CodecError, EventError
from streams.events import context_from_record


SHIMS_REMEMBERED = 16  # per identity; a shim restarts under a new shim_id




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
                 clock: Callable[[], str] = utc_now):
        self.engine = engine
        self.state = state
        self.clock = clock
        self._batch_in = codec("SyscallEventBatch")
        self._decisions_out = codec("DecisionBatch")
        self._violation_out = codec("Violation")
        self._quarantine_out = codec("QuarantineCommand")
        self._dlq_out = codec("DeadLetter")

    def handle(self, key: bytes | None, value: bytes, source: Source) -> list[Emit]:
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
                out.append(Emit("violations", key, self._violation_out.encode(outcome.violation)))
            if outcome.quarantine is not None:
                pid = outcome.quarantine["process_id"].encode()
                out.append(Emit("quarantine", pid, self._quarantine_out.encode(outcome.quarantine)))
        if decisions:
            record = {"shim_id": shim, "seq": seq, "partition": source.partition, "decisions": decisions}
            out.insert(0, Emit("decisions", key, self._decisions_out.encode(record)))
        if not stale:
            shims = dict(entry.get("s") or {})
            shims.pop(shim, None)
            shims[shim] = seq
            while len(shims) > SHIMS_REMEMBERED:  # oldest first: dicts keep insertion order
                del shims[next(iter(shims))]
            self.state[identity] = {"t": trust.get(identity), "b": start, "k": f"{shim}:{seq}", "s": shims}
        return out

    def _dead(self, key: bytes | None, value: bytes, source: Source, reason: str, code: str,
              index: int | None = None) -> Emit:
        record = {"topic": source.topic, "partition": source.partition, "offset": source.offset,
                  "key": key, "value": value, "reason": reason, "error_code": code,
                  "event_index": index, "timestamp": self.clock()}
        return Emit("dlq", key, self._dlq_out.encode(record))
