"""Redzone operations for operators (the seed's API), on the Redis store.

    svc = RedzoneService(Settings.from_env())
    await svc.analyze_process("p-17", actor="operator:alice")   # active -> analyzing, a report
    await svc.recover_process("p-17", actor="operator:alice")   # -> recovered, trust reset

Every change runs through the pure state machine (`model.py`) inside the
store's WATCH/MULTI transaction, so of two operators racing on one process
exactly one transition wins and the other gets a TransitionError naming the
state it found; a refused operation changes and emits nothing.

Only after Redis has committed a change is it published: a RedzoneEvent on
the redzone topic for every transition, and for a recovery a TrustControl
`reset_trust` on the control topic.  The decide agent applies that reset in
its trust table (the one owner of adaptive trust), so recovery never writes
trust from here.  If Kafka does not confirm, DeliveryError says the change
is applied but its record was not delivered.

Redis unreachable is RedzoneUnavailable (from the store), raised to the
caller: an operator is answered at once, never kept waiting on retries.

With TRUST_OPERATOR_SIGNING_KEY every record published is signed with it
(docs/security.md).  With TRUST_COMMAND_VERIFY_KEYS set here but no signing
key, a change is refused before anything is touched: the workers would
refuse its unsigned records (a recovery whose trust reset never applies).

No network in `__init__`: the Redis client connects on first use and the
Kafka producer is created on the first record.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, Callable, Mapping

from streams import command_signature
from streams.clock import utc_now
from streams.codec.avro import codec
from streams.errors import ConfigError, DeliveryError, RedzoneError
from streams.redzone.analysis import forensic_report
from streams.redzone.model import QuarantinedProcess, QuarantineStatus, unknown_process
from streams.redzone.store import RedzoneStore
from streams.settings import Settings

FLUSH_TIMEOUT = 15.0  # seconds Kafka may take to confirm a record
STATUSES = tuple(s.value for s in QuarantineStatus)


def parse_status(status: str | QuarantineStatus | None) -> QuarantineStatus | None:
    if status is None or isinstance(status, QuarantineStatus):
        return status
    try:
        return QuarantineStatus(status)
    except ValueError:
        raise RedzoneError(f"unknown status `{status}` (one of {', '.join(STATUSES)})") from None


class RedzoneService:
    def __init__(self, settings: Settings, store: RedzoneStore | None = None,
                 clock: Callable[[], str] = utc_now):
        self.settings = settings
        self.clock = clock
        self._store = store
        self._producer: Any = None
        self._event = codec("RedzoneEvent")
        self._control = codec("TrustControl")
        self._command = codec("QuarantineCommand")
        keyring = command_signature.command_keyring(settings)
        self._verifying = keyring is not None
        self._key = command_signature.signing_key(settings, command_signature.OPERATOR, keyring)

    @property
    def store(self) -> RedzoneStore:
        """The store given, else the settings' Redis (connected on first use)."""
        if self._store is None:
            from streams.redzone.redis_store import redis_store

            self._store = redis_store(self.settings)
        return self._store

    # -- reading ---------------------------------------------------------------
    async def get_quarantined_process(self, process_id: str) -> QuarantinedProcess:
        p = await self.store.get(process_id)
        if p is None:
            raise unknown_process(process_id)
        return p

    async def list_quarantined_processes(self, status: str | QuarantineStatus | None = None,
                                         identity: str | None = None) -> list[QuarantinedProcess]:
        """Every process in Redis, optionally only one status and/or one identity."""
        wanted = parse_status(status)
        return [p for p in await self.store.all()
                if (wanted is None or p.status is wanted) and (identity is None or p.identity_id == identity)]

    async def analysis_report(self, process_id: str) -> dict[str, Any]:
        """The forensic report, read only: no transition (what GET .../analysis serves)."""
        return forensic_report(await self.get_quarantined_process(process_id))

    # -- changing --------------------------------------------------------------
    async def quarantine(self, process_id: str, identity: str | Mapping[str, Any], reason: str, *,
                         actor: str, isolation_level: str = "full", isolation_syscalls: tuple[str, ...] = (),
                         forensic_mode: str = "full", container_id: str | None = None,
                         trace: tuple[dict, ...] = ()) -> QuarantinedProcess:
        """Quarantine a process by hand (or widen its isolation if it is in the redzone).

        Applied to Redis at once; the command is also published on the
        quarantine topic for downstream enforcers (the redzone agent finds its
        id already applied and does nothing)."""
        ident = {"id": identity, "process_id": process_id, "container_id": container_id,
                 "tenant": None, "labels": {}} if isinstance(identity, str) else dict(identity)
        cmd = {"command_id": str(uuid.uuid4()), "op": "quarantine", "process_id": process_id,
               "container_id": container_id, "identity": ident, "reason": reason, "reason_code": None,
               "isolation_level": isolation_level, "isolation_syscalls": list(isolation_syscalls),
               "forensic_mode": forensic_mode, "trace": list(trace), "policy_version": None,
               "source": actor, "event_id": None, "timestamp": self.clock()}
        self._command.check(cmd)  # an unknown level or mode is refused before anything changes
        self._check_signing()
        cmd = self._signed("QuarantineCommand", cmd)
        process, event = await self.store.quarantine(cmd, cmd["timestamp"])
        records = [("quarantine", process_id, self._command.encode(cmd))]
        if event is not None:
            records.append(("redzone", process_id, self._event.encode(self._signed("RedzoneEvent", event))))
        await self._emit(records, f"process `{process_id}` is quarantined")
        return process

    async def analyze_process(self, process_id: str, actor: str, reason: str = "") -> dict[str, Any]:
        """Active -> Analyzing, then the forensic report of the process."""
        process = await self._transition(process_id, QuarantineStatus.ANALYZING, actor,
                                          reason or f"analysis started by {actor}")
        return forensic_report(process)

    async def terminate_process(self, process_id: str, actor: str, reason: str = "") -> QuarantinedProcess:
        return await self._transition(process_id, QuarantineStatus.TERMINATED, actor,
                                      reason or f"terminated by {actor}")

    async def recover_process(self, process_id: str, actor: str, reason: str = "") -> QuarantinedProcess:
        """-> Recovered, and the identity's trust reset to the baseline by the decide agent."""
        control_id = str(uuid.uuid4())
        process = await self._transition(
            process_id, QuarantineStatus.RECOVERED, actor,
            reason or f"recovered by {actor}; trust reset to the baseline (control {control_id})",
            control=control_id)
        return process

    async def _transition(self, process_id: str, target: QuarantineStatus, actor: str, reason: str,
                          control: str | None = None) -> QuarantinedProcess:
        if not actor:
            raise RedzoneError("an operation needs an actor (who does it), e.g. `operator:alice`")
        self._check_signing()
        now = self.clock()
        process, event = await self.store.transition(process_id, target, actor, now, reason)
        records = [("redzone", process_id, self._event.encode(self._signed("RedzoneEvent", event)))]
        if control is not None:
            records.append(("control", process.identity_id, self._control.encode(self._signed("TrustControl", {
                "command_id": control, "op": "reset_trust", "identity_id": process.identity_id,
                "reason": f"process `{process_id}` recovered by {actor}", "actor": actor, "timestamp": now}))))
        await self._emit(records, f"process `{process_id}` is `{target.value}`")
        return process

    def _check_signing(self) -> None:
        """ConfigError, before any change, if verify keys are configured here but no key is."""
        if self._key is None and self._verifying:
            raise ConfigError("TRUST_COMMAND_VERIFY_KEYS is set but TRUST_OPERATOR_SIGNING_KEY is not: "
                              "the workers would refuse this change's unsigned records; nothing changed")

    def _signed(self, name: str, record: dict) -> dict:
        """`record` signed with the operator key; unchanged without one."""
        return record if self._key is None else command_signature.sign_record(name, record, self._key)

    # -- kafka -------------------------------------------------------------------
    def producer(self):
        if self._producer is None:
            from streams.kafka import clients

            # murmur2: the shims' partitioner, so a control record for an
            # identity lands on the partition number its events use.  Ready: a
            # new producer's first record would wait ~500 ms for its producer
            # id, and an operator's terminate is the record that stops a process.
            self._producer = clients.ready_producer(self.settings, f"{self.settings.app_id}-operator",
                                                    **{"linger.ms": 0})
        return self._producer

    async def _emit(self, records: list[tuple[str, str, bytes]], applied: str) -> None:
        producer = await asyncio.get_running_loop().run_in_executor(None, self.producer)
        errors: list[str] = []
        for kind, key, value in records:
            producer.produce(self.settings.topic(kind), key=key.encode(), value=value,
                             on_delivery=lambda err, msg: err and errors.append(str(err)))
        left = await asyncio.get_running_loop().run_in_executor(None, producer.flush, FLUSH_TIMEOUT)
        if left or errors:
            raise DeliveryError(f"{applied} in redis, but kafka did not confirm its records "
                                f"({'; '.join(errors) or 'timed out'})")

    async def close(self) -> None:
        if self._producer is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._producer.flush, FLUSH_TIMEOUT)
        if self._store is not None:
            await self._store.close()
