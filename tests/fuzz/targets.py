"""Fuzz targets: the engine's three doors for untrusted input.

Each target takes raw input and must either succeed or raise an error of the
project's own tree (`streams.errors.TrustError`); any other exception escapes
and is the fuzzer's finding.  Driven by hypothesis (tests/fuzz/test_fuzz.py,
every run) and by atheris (`python -m tests.fuzz.atheris_main`, coverage-
guided, for as long as one wants).

- :func:`event_bytes`: a Kafka value as the decide agent gets it
  (`streams.codec` SyscallEventBatch, then `streams.events.context_from_record`
  on every event); :func:`event_record` the second half alone, on any data.
- :func:`policy_source`: a policy document as text or data
  (`streams.policy.loader.load_policy`).
- :func:`http_request`: one request to the operator API (`streams.web.OperatorApi`)
  on an in-memory redzone: every handler, with any path part, query, headers
  and body; a handler may only raise TrustError, and a reply through
  `OperatorApi.call` is never the generic 500.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from streams.codec.avro import codec
from streams.errors import EventError, PolicyError, TrustError
from streams.events import context_from_record
from streams.metrics import DecideMetrics
from streams.policy.loader import load_policy
from streams.redzone.memory import InMemoryRedzoneStore
from streams.redzone.service import RedzoneService
from streams.settings import Settings
from streams.web import OperatorApi

TOKEN = "fuzz-token"
NOW = "2026-11-28T12:00:00.000000Z"

_batch = codec("SyscallEventBatch")


def event_bytes(data: bytes) -> int:
    """Decode one events-topic value and validate each event; returns events accepted."""
    try:
        batch = _batch.decode(data)
    except TrustError:
        return 0
    ok = 0
    for rec in batch["events"]:
        try:
            context_from_record(rec)
            ok += 1
        except EventError:
            pass
    return ok


def event_record(rec: Any) -> bool:
    """Validate any decoded data as an event: True, or False after an EventError."""
    try:
        context_from_record(rec)
        return True
    except EventError:
        return False


def policy_source(source: Any) -> bool:
    """Load a policy document (text, bytes or data): True, or False after a PolicyError."""
    try:
        cp = load_policy(source)
    except PolicyError:
        return False
    cp.canonical_json  # noqa: B018 - computed as publishing would
    return True


# -- the operator API ---------------------------------------------------------------------


class _OfflineService(RedzoneService):
    """The operators' service on an in-memory redzone; records instead of producing."""

    def __init__(self, settings: Settings):
        super().__init__(settings, store=InMemoryRedzoneStore(), clock=lambda: NOW)
        self.emitted = 0

    async def _emit(self, records, applied):
        self.emitted += len(records)


class _Watcher:
    def __init__(self):
        self.current = load_policy({"version": "fuzz-1", "policies": {"read": {}}})
        self.refused = [("bad", "policy refused")]
        self.signing_enabled = False

        class _History:
            def versions(self):
                return []
        self.history = _History()


def make_api() -> OperatorApi:
    settings = Settings.from_env({"TRUST_OPERATOR_TOKEN": TOKEN})
    svc = _OfflineService(settings)
    asyncio.run(svc.quarantine("p-1", "svc-a", "fuzz", actor="operator:fuzz", isolation_level="network"))
    return OperatorApi(settings, svc, trust={"svc-a": {"trust": 0.5, "offset": 3, "steps": []}},
                       owned_partitions=lambda: {0, 1, 2}, policy=_Watcher(), metrics=DecideMetrics(),
                       ready=lambda: True, isolated=lambda: 1)


HANDLERS = ("health", "metrics", "list", "show", "analysis", "analyze", "terminate", "recover", "trust",
            "policy", "history")


async def _handle(api: OperatorApi, handler: str, part: str, query: Mapping[str, str],
                  headers: Mapping[str, str], body: bytes, client: str):
    async def read() -> bytes:
        return body
    if handler == "health":
        return await api.health()
    if handler == "metrics":
        return await api.metrics()
    if handler == "list":
        return await api.list_processes(query)
    if handler == "show":
        return await api.show(part)
    if handler == "analysis":
        return await api.analysis(part)
    if handler in ("analyze", "terminate", "recover"):
        return await api.mutate(handler, part, headers, read, client)
    if handler == "trust":
        return await api.trust(part)
    if handler == "policy":
        return await api.policy()
    return await api.policy_history()


def http_request(api: OperatorApi, handler: str, part: str, query: Mapping[str, str],
                 headers: Mapping[str, str], body: bytes, client: str = "127.0.0.1") -> int:
    """One request, straight to the handler and through `call`; returns the status."""
    async def go():
        try:
            await _handle(api, handler, part, query, headers, body, client)
        except TrustError:
            pass
        return await api.call(_handle, api, handler, part, query, headers, body, client)
    reply = asyncio.run(go())
    if reply.status == 500 and reply.body.get("code") == "internal":
        raise AssertionError(f"generic 500 for {handler} {part!r} {dict(query)!r} {dict(headers)!r} {body[:80]!r}")
    return reply.status
