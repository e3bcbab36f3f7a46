"""The agents' outputs (decisions, violations, quarantine commands, redzone
events, dead letters) on one confluent-kafka producer.

No output is ever dropped without a trace, whatever Kafka answers:

- a record refused at once because it is too large (librdkafka's
  `message.max.bytes`) is made to fit (:func:`streams.oversize.fit`: a
  DecisionBatch split into consecutive batches, long values cut with a
  marker) and the result sent instead;
- a record refused at once for another reason (unknown topic, a bad
  argument), or one that cannot be made to fit, is replaced by a dead letter
  on `trust.dlq` naming the topic it was bound for and why, with the record's
  first `DEAD_KEEP` bytes (`error_code` `output_refused`);
- a record the broker refuses as too large (a topic with a smaller
  `max.message.bytes`) is sent again, made to fit a quarter of its size;
  Kafka refuses the whole produce batch, so a small record refused with it
  is sent again once as is;
- anything else (the broker unreachable until librdkafka's queue stays full,
  a delivery failure, a replacement refused too) marks the producer failed
  for good: `flush` raises from then on, so Faust never commits an offset
  past an output that was not acknowledged, and a restarted worker decides
  that input again.

Each replacement is logged and counted (`trust_outputs_replaced_total`), and
so is every dead letter sent (a log line each, at most `LogBudget` lines per
window, then a count of those not logged).
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from streams.clock import utc_now
from streams.codec.avro import codec
from streams.errors import DeliveryError
from streams.kafka import clients
from streams.metrics import DecideMetrics
from streams.oversize import fit
from streams.settings import Settings

log = logging.getLogger("forgeone.trust.outputs")

RECORD_LIMIT = 900_000  # bytes of key and value a replacement may have (librdkafka refuses above 1,000,000)
DEAD_KEEP = 64 * 1024  # bytes of a refused record kept in the dead letter that replaces it
RETRY_FLOOR = 16 * 1024  # a record the broker refuses at or below this size is sent again as is, once
SCHEMAS = {"decisions": "DecisionBatch", "violations": "Violation", "quarantine": "QuarantineCommand",
           "redzone": "RedzoneEvent", "dlq": "DeadLetter"}
SPLIT = {"decisions": "decisions"}  # the list a record of that kind may be split on


class LogBudget:
    """At most `lines` log lines per `window` seconds; `take` says whether one may be
    written now, and how many were held back since the last one.  Time is injected."""

    def __init__(self, lines: int = 20, window: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.lines, self.window, self.clock = lines, window, clock
        self._start = None
        self._used = 0
        self._held = 0

    def take(self) -> int | None:
        """None: do not log this one; else the number held back before it (0 usually)."""
        now = self.clock()
        if self._start is None or now - self._start >= self.window:
            self._start, self._used = now, 0
        if self._used >= self.lines:
            self._held += 1
            return None
        self._used += 1
        held, self._held = self._held, 0
        return held


def _too_large(err) -> bool:
    from confluent_kafka import KafkaError

    return err is not None and err.code() == KafkaError.MSG_SIZE_TOO_LARGE


def _kafka_error(exc: BaseException):
    """The KafkaError inside a KafkaException, else None."""
    args = getattr(exc, "args", ())
    err = args[0] if args else None
    return err if hasattr(err, "code") and hasattr(err, "name") else None


def _why(exc: BaseException) -> str:
    err = _kafka_error(exc)
    if err is not None:
        return f"{err.name()}: {err.str()}"
    return f"{type(exc).__name__}: {exc}"


class OutputProducer:
    """The agents' outputs on one confluent-kafka producer.

    A Faust send is an awaited coroutine through aiokafka's Python sender:
    hundreds of microseconds of CPU per record on the project machines.
    librdkafka batches in its own thread, so a record costs one `produce`
    call here.  `flush` runs before every Faust offset commit (see
    streams/worker/faustkit.py), so a committed offset never covers an output
    not yet acknowledged.  Created on first use, not at construction (or
    given, for tests).
    """

    KINDS = ("decisions", "violations", "quarantine", "redzone", "dlq")

    def __init__(self, s: Settings, metrics: DecideMetrics | None = None, producer=None,
                 clock: Callable[[], str] = utc_now, budget: LogBudget | None = None,
                 record_limit: int = RECORD_LIMIT):
        """`record_limit`: the bytes of key and value a replacement may have (below
        the producer's `message.max.bytes`)."""
        self._settings = s
        self.record_limit = record_limit
        self._topics = {kind: s.topic(kind) for kind in self.KINDS}
        self._kind_of = {topic: kind for kind, topic in self._topics.items()}
        self._producer = producer
        self._error: str | None = None  # set once, for good: no commit may follow
        self.metrics = metrics if metrics is not None else DecideMetrics()
        self.clock = clock
        self._budget = budget if budget is not None else LogBudget()
        self._dead_in = codec("DeadLetter")

    @property
    def failed(self) -> str | None:
        """Why outputs may be lost (offsets must stay uncommitted), or None."""
        return self._error

    def _client(self):
        if self._producer is None:
            self._producer = clients.producer(self._settings, f"{self._settings.app_id}-outputs")
        return self._producer

    def send(self, emits) -> None:
        p = self._client()
        topics, delivered, produce = self._topics, self._delivered, clients.produce
        for i, e in enumerate(emits):
            try:
                produce(p, topics[e.kind], e.value, e.key, delivered)
            except DeliveryError as exc:  # librdkafka's queue stayed full: the broker is gone
                left = len(emits) - i
                self._count(e.kind, "undeliverable", left)
                self._fail(f"{left} output record(s) not handed to the producer: {exc}")
                break
            except Exception as exc:  # refused at once: too large, unknown topic, bad argument...
                self._replace(e.kind, e.key, e.value, _why(exc), self.record_limit,
                              fits=_too_large(_kafka_error(exc)))
                continue
            if e.kind == "dlq":
                self._log_dead(e.value)
        p.poll(0)

    # -- refusals -------------------------------------------------------------------

    def _replace(self, kind: str, key: bytes | None, value: bytes, why: str, limit: int,
                 fits: bool) -> None:
        """Send what replaces a refused record: it made to fit (when size was the
        problem), else a dead letter naming why."""
        size = len(value)
        if fits and kind in SCHEMAS:
            try:
                schema = codec(SCHEMAS[kind])
                pieces, how, unfit = fit(schema.decode(value), schema.encode,
                                         limit - len(key or b""), SPLIT.get(kind))
            except Exception as exc:  # not decodable as its kind: dead-letter it whole
                pieces, how, unfit = [], "dead_lettered", [value]
                why = f"{why}; and it does not decode: {exc}"
            for piece in pieces:
                if not self._produce(kind, key, piece, self._delivered):
                    return
            if pieces:
                self._count(kind, how)
                self._note(f"a `{kind}` record of {size} bytes was refused ({why}); "
                           f"sent {how.replace('+', ' and ')} as {len(pieces)} record(s) instead")
            for part in unfit:
                self._dead_letter(kind, key, part, f"{why}; it cannot be made to fit in {limit} bytes")
            return
        self._dead_letter(kind, key, value, why)

    def _dead_letter(self, kind: str, key: bytes | None, value: bytes, why: str) -> None:
        topic = self._topics.get(kind, kind)
        keep = min(len(value), DEAD_KEEP, self.record_limit // 4)
        reason = (f"a `{kind}` record of {len(value)} bytes for `{topic}` was refused by Kafka ({why}); "
                  f"its first {keep} bytes are kept")
        record = {"topic": topic, "partition": -1, "offset": -1,
                  "key": None if key is None else key[:keep], "value": bytes(value[:keep]),
                  "reason": reason, "error_code": "output_refused", "event_index": None,
                  "timestamp": self.clock()}
        if kind == "dlq":  # a dead letter for a dead letter would be refused the same way
            self._count(kind, "undeliverable")
            self._fail(reason)
            return
        if not self._produce("dlq", record["key"], codec("DeadLetter").encode(record), self._delivered_dead):
            return
        self.metrics.bump(self.metrics.dlq, "output_refused")
        self._count(kind, "dead_lettered")
        self._note(reason + "; a dead letter says so")

    def _produce(self, kind: str, key: bytes | None, value: bytes, on_delivery) -> bool:
        try:
            clients.produce(self._client(), self._topics[kind], value, key, on_delivery)
            return True
        except Exception as exc:
            self._count(kind, "undeliverable")
            self._fail(f"a replacement `{kind}` record was refused too: {_why(exc)}")
            return False

    def _delivered(self, err, msg) -> None:
        if err is None:
            return
        value, kind = msg.value(), self._kind_of.get(msg.topic())
        if _too_large(err) and value is not None and kind is not None:
            why = f"{err.name()}: {err.str()}"
            if len(value) > RETRY_FLOOR:
                self._replace(kind, msg.key(), value, f"the broker said {why}", len(value) // 4, fits=True)
            elif self._produce(kind, msg.key(), value, self._delivered_retry):
                self._count(kind, "retried")
            return
        self._fail(f"a `{kind or msg.topic()}` record was not delivered: {err.name()}: {err.str()}")

    def _delivered_retry(self, err, msg) -> None:
        if err is not None:
            self._fail(f"a `{self._kind_of.get(msg.topic(), msg.topic())}` record of {len(msg.value() or b'')} "
                       f"bytes was not delivered, sent twice: {err.name()}: {err.str()}")

    def _delivered_dead(self, err, msg) -> None:
        if err is not None:
            self._fail(f"a dead letter replacing a refused output was not delivered: {err.name()}: {err.str()}")

    def _fail(self, why: str) -> None:
        if self._error is None:
            self._error = why
            log.error("outputs: %s; offsets stay uncommitted from now on", why)
        elif self._budget.take() is not None:
            log.error("outputs: %s", why)

    def _count(self, kind: str, how: str, n: int = 1) -> None:
        self.metrics.bump(self.metrics.outputs_replaced, (kind, how), n)

    def _note(self, line: str) -> None:
        held = self._budget.take()
        if held is not None:
            log.warning("outputs: %s%s", line, f" ({held} similar line(s) not logged)" if held else "")

    def _log_dead(self, value: bytes) -> None:
        held = self._budget.take()
        if held is None:
            return
        try:
            d = self._dead_in.decode(value)
            line = (f"dead letter ({d['error_code']}) for {d['topic']}[{d['partition']}]@{d['offset']}"
                    f"{'' if d['event_index'] is None else ' event ' + str(d['event_index'])}: "
                    f"{d['reason'][:300]}")
        except Exception as exc:  # logging must not lose the record
            line = f"dead letter of {len(value)} bytes (its reason does not decode: {exc})"
        log.warning("%s%s", line, f" ({held} similar line(s) not logged)" if held else "")

    def flush(self) -> None:
        """Wait until every output is acknowledged; raise if one never will be."""
        if self._producer is not None:
            left = self._producer.flush(30)
            if left or self._error is not None:
                raise DeliveryError(f"outputs not delivered ({left} queued, error {self._error}); "
                                    "offsets stay uncommitted")
