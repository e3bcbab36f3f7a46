"""Syscall events (SPEC §1.1): plain records <-> the engine's SyscallContext.

Validation here is what sends a bad event to the dead-letter topic: every
refusal is an EventError whose message names the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams.errors import EventError
from streams.policy.model import IdentityContext, SyscallContext, TrustVector

_OPTIONAL_IDENTITY = ("container_id", "tenant")


def _need_str(d: Mapping, key: str, where: str) -> str:
    value = d.get(key)
    if value is None:
        raise EventError(f"`{where}{key}` is required")
    if not isinstance(value, str):
        raise EventError(f"`{where}{key}` must be a string, got `{value!r}`")
    if not value:
        raise EventError(f"`{where}{key}` must not be empty")
    return value


def context_from_record(rec: Any) -> SyscallContext:
    """Validate one event record (decoded JSON or Avro) and build its context."""
    if not isinstance(rec, Mapping):
        raise EventError(f"an event must be an object, got `{type(rec).__name__}`")
    event_id = _need_str(rec, "event_id", "")
    syscall = _need_str(rec, "syscall", "")
    args = rec.get("args")
    if not isinstance(args, (list, tuple)):
        raise EventError("`args` is required and must be a list of strings")
    for i, a in enumerate(args):
        if not isinstance(a, str):
            raise EventError(f"`args.{i}` must be a string, got `{a!r}`")
    ident = rec.get("identity")
    if not isinstance(ident, Mapping):
        raise EventError("`identity` is required and must be an object")
    identity = IdentityContext(
        id=_need_str(ident, "id", "identity."),
        process_id=_need_str(ident, "process_id", "identity."),
        container_id=_opt_str(ident, "container_id"),
        tenant=_opt_str(ident, "tenant"),
        labels=_labels(ident.get("labels")),
    )
    timestamp = _need_str(rec, "timestamp", "")
    tv = rec.get("trust_vector")
    vector = None
    if tv is not None:
        score = tv.get("score") if isinstance(tv, Mapping) else None
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
            raise EventError(f"`trust_vector.score` must be a number in [0, 1], got `{score!r}`")
        vector = TrustVector(float(score))
    dna = rec.get("execution_dna")
    if dna is not None and not isinstance(dna, str):
        raise EventError("`execution_dna` must be a string or null")
    return SyscallContext(event_id, syscall, tuple(args), identity, timestamp, vector, dna)


def _opt_str(d: Mapping, key: str) -> str | None:
    value = d.get(key)
    if value is not None and not isinstance(value, str):
        raise EventError(f"`identity.{key}` must be a string or null, got `{value!r}`")
    return value


def _labels(value: Any) -> Mapping[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise EventError("`identity.labels` must be an object of strings")
    return value


def identity_record(i: IdentityContext) -> dict[str, Any]:
    return {"id": i.id, "process_id": i.process_id, "container_id": i.container_id,
            "tenant": i.tenant, "labels": dict(i.labels) if i.labels else {}}

