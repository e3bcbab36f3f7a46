"""The worker's operator HTTP API, on Faust's web server (127.0.0.1 by default).

    GET  /health                      ready?, policy version, isolated processes
    GET  /metrics                     Prometheus text format
    GET  /redzone[?status=S&identity=I]
    GET  /redzone/{id}                one process (with its trace)
    GET  /redzone/{id}/analysis       the forensic report, read only
    POST /redzone/{id}/analyze        active -> analyzing, answers the report
    POST /redzone/{id}/terminate
    POST /redzone/{id}/recover        -> recovered, the identity's trust reset
    GET  /trust/{identity}            from this worker's part of the trust table
    GET  /policy, /policy/history

GET never changes state: the report has its own read-only URL and the
transition to `analyzing` is a POST.  Mutations need
``Authorization: Bearer <TRUST_OPERATOR_TOKEN>``: no header 401, a wrong
token 403, and with no token set on the worker every mutation is 403 (an
API that cannot authenticate anyone must not let anyone in).  Tokens are
compared with `hmac.compare_digest`; a refused request changes nothing.
A mutation may carry a JSON body ``{"reason": ..., "actor": ...}``; the actor
is recorded as ``operator:<actor>`` (default ``operator:http``).

:class:`OperatorApi` is the logic, framework-free (request parts in, a
:class:`Reply` out) so it is tested without a worker; :func:`register` binds
it to Faust views.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

from streams.clock import utc_now
from streams.trust_state import TrustEntry
from streams.agents.redzone import UNREACHABLE
from streams.errors import (
    CodecError,
    DeliveryError,
    RedzoneError,
    TransitionError,
    TrustError,
    UnknownProcessError,
)
from streams.metrics import CONTENT_TYPE, DecideMetrics, Family, render
from streams.redzone.model import summarize
from streams.redzone.service import STATUSES, RedzoneService
from streams.settings import Settings

log = logging.getLogger("forgeone.trust.web")


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


def error(status: int, message: str, code: str, **extra: Any) -> Reply:
    return Reply(status, {"error": message, "code": code, **extra})


def java_partition(key: str, partitions: int) -> int:
    """Where the shims' partitioner (murmur2, as Java's) puts `key`."""
    from aiokafka.partitioner import murmur2

    return (murmur2(key.encode()) & 0x7FFFFFFF) % partitions


class OperatorApi:
    def __init__(self, settings: Settings, service: RedzoneService, *, trust: Mapping[str, Any],
                 owned_partitions: Callable[[], set[int]], policy: Any, metrics: DecideMetrics,
                 ready: Callable[[], bool], isolated: Callable[[], int],
                 lag: Callable[[], Mapping[tuple[str, int], int]] | None = None):
        self.settings = settings
        self.service = service
        self.trust_table = trust
        self.owned_partitions = owned_partitions
        self.policy_watcher = policy
        self.decide_metrics = metrics
        self.ready = ready
        self.isolated = isolated
        self.lag = lag

    # -- authorization ---------------------------------------------------------
    def authorize(self, headers: Mapping[str, str]) -> Reply | None:
        """None if the request may mutate; otherwise the refusal to send."""
        token = self.settings.operator_token
        if not token:
            return error(403, "mutations are disabled: set TRUST_OPERATOR_TOKEN in the worker's "
                              "environment and send it as `Authorization: Bearer <token>`", "no_token_configured")
        header = headers.get("Authorization") or headers.get("authorization")
        if not header:
            return Reply(401, {"error": "missing `Authorization: Bearer <token>` header", "code": "unauthorized"},
                         headers={"WWW-Authenticate": 'Bearer realm="forgeone-trust"'})
        scheme, _, given = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return error(403, "the operator token is wrong", "forbidden")
        return None

    # -- redzone -----------------------------------------------------------------
    async def list_processes(self, query: Mapping[str, str]) -> Reply:
        status, identity = query.get("status"), query.get("identity")
        processes = await self.service.list_quarantined_processes(status, identity)
        return Reply(200, {"processes": [summary(p) for p in processes], "count": len(processes)})

    async def show(self, process_id: str) -> Reply:
        return Reply(200, (await self.service.get_quarantined_process(process_id)).to_dict())

    async def analysis(self, process_id: str) -> Reply:
        return Reply(200, await self.service.analysis_report(process_id))

    async def mutate(self, op: str, process_id: str, headers: Mapping[str, str], body: str) -> Reply:
        refused = self.authorize(headers)
        if refused is not None:
            return refused
        try:
            data = json.loads(body) if body.strip() else {}
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError:
            return error(400, 'the body must be empty or a JSON object like {"reason": "...", "actor": "..."}',
                         "bad_request")
        actor = f"operator:{data.get('actor') or 'http'}"
        reason = str(data.get("reason") or "")
        try:
            if op == "analyze":
                return Reply(200, await self.service.analyze_process(process_id, actor, reason))
            call = {"terminate": self.service.terminate_process, "recover": self.service.recover_process}[op]
            return Reply(200, summary(await call(process_id, actor, reason)))
        except TransitionError as exc:
            current = await self.service.store.get(process_id)
            return error(409, str(exc), exc.code, current_status=None if current is None else current.status.value)

    # -- trust and policy ---------------------------------------------------------
    async def trust(self, identity: str) -> Reply:
        partition = java_partition(identity, self.settings.partitions)
        owned = sorted(self.owned_partitions())
        entry = self.trust_table.get(identity)
        cp = self.policy_watcher.current
        baseline = None if cp is None else cp.trust_model.baseline
        body: dict[str, Any] = {"identity": identity, "partition": partition, "owned_partitions": owned,
                                "baseline": baseline}
        if entry is None:
            if partition in owned:
                detail = (f"identity `{identity}` has no trust entry on this worker, which owns its "
                          f"partition {partition}: not seen yet, so it starts at the baseline")
            else:
                detail = (f"identity `{identity}` is on partition {partition}, which this worker does not own "
                          f"(it owns {owned or 'none yet'}); only owned partitions of the trust table are "
                          "local here: ask the worker that owns it")
            return Reply(404, {**body, "found": False, "local": partition in owned, "detail": detail})
        entry = TrustEntry.of(entry)
        t = entry.trust
        return Reply(200, {**body, "found": True, "local": True, "trust": baseline if t is None else t,
                           "last_offset": entry.offset, "last_control_id": entry.control_id})

    async def policy(self) -> Reply:
        cp = self.policy_watcher.current
        if cp is None:
            return error(404, "no policy in force yet (publish one: trustctl policy publish FILE)", "no_policy")
        return Reply(200, {"version": cp.version, "digest": cp.digest,
                           "document": json.loads(cp.canonical_json)})

    async def policy_history(self) -> Reply:
        versions = [{"version": v.version, "digest": v.digest, "effective_at": v.effective_at}
                    for v in self.policy_watcher.history.versions()]
        refused = [{"version": v, "error": e} for v, e in self.policy_watcher.refused]
        current = self.policy_watcher.current
        return Reply(200, {"in_force": None if current is None else current.version,
                           "versions": versions, "refused": refused})

    # -- health and metrics ------------------------------------------------------
    async def health(self) -> Reply:
        p = self.policy_watcher.current
        return Reply(200, {"status": "ok" if p is not None and self.ready() else "starting",
                           "policy_version": None if p is None else p.version,
                           "isolated_processes": self.isolated(), "time": utc_now()})

    async def metrics(self) -> Reply:
        families = self.decide_metrics.families()
        errors: list[tuple[dict, int]] = []
        try:
            counts = summarize(await self.service.store.all()).counts
            families.append(Family("trust_quarantined_processes", "gauge",
                                   "processes in the redzone (Redis, all workers) by status",
                                   [({"status": s}, counts.get(s, 0)) for s in STATUSES]))
        except Exception as exc:  # a scrape reports what it could measure
            log.warning("metrics: cannot read the redzone: %s", exc)
            errors.append(({"source": "redis"}, 1))
        if self.lag is not None:
            try:
                lag = await asyncio.get_running_loop().run_in_executor(None, self.lag)
                families.append(Family("trust_consumer_lag", "gauge",
                                       "messages the engine's consumer group has not committed, per partition",
                                       [({"topic": t, "partition": str(p)}, n) for (t, p), n in sorted(lag.items())]))
            except Exception as exc:
                log.warning("metrics: cannot measure consumer lag: %s", exc)
                errors.append(({"source": "kafka"}, 1))
        families.append(Family("trust_metrics_scrape_errors", "gauge",
                               "1 for each source that could not be measured in this scrape", errors))
        return Reply(200, render(families), content_type=CONTENT_TYPE)

    # -- one entry point --------------------------------------------------------
    async def call(self, handler: Callable[..., Awaitable[Reply]], *args: Any) -> Reply:
        """Run a handler, turning the error tree into HTTP statuses."""
        try:
            return await handler(*args)
        except UnknownProcessError as exc:
            return error(404, str(exc), exc.code)
        except (RedzoneError, CodecError) as exc:
            return error(400, str(exc), exc.code)
        except DeliveryError as exc:
            return error(502, str(exc), exc.code)
        except TrustError as exc:
            return error(500, str(exc), exc.code)
        except UNREACHABLE as exc:
            return error(503, f"redis is unreachable: {exc}", "unavailable")


def summary(p) -> dict[str, Any]:
    """A process without its trace and command ids (the list view)."""
    d = p.to_dict()
    d["trace_entries"] = len(d.pop("trace"))
    d.pop("command_ids")
    return d


def register(app, api: OperatorApi) -> None:
    """Add the API's routes to a Faust app's web server."""
    from faust.web import View

    def respond(view, reply: Reply):
        headers = dict(reply.headers)
        if reply.content_type == "application/json":
            return view.json(reply.body, status=reply.status, headers=headers or None)
        return view.text(reply.body, content_type=reply.content_type.split(";")[0],
                         status=reply.status, headers=headers or None)

    def page(path: str, name: str, get=None, post=None) -> None:
        attrs: dict[str, Any] = {"__doc__": f"{path} (streams.web)"}
        if get is not None:
            async def _get(self, request, **match):
                return respond(self, await api.call(get, request, *match.values()))
            attrs["get"] = _get
        if post is not None:
            async def _post(self, request, **match):
                return respond(self, await api.call(post, request, *match.values()))
            attrs["post"] = _post
        app.page(path, name=name)(type(name, (View,), attrs))

    def mutation(op: str):
        async def handler(request, process_id):
            return await api.mutate(op, process_id, request.headers, await request.text())
        return handler

    page("/health", "health", get=lambda request: api.health())
    page("/metrics", "metrics", get=lambda request: api.metrics())
    page("/redzone", "redzone_list", get=lambda request: api.list_processes(request.query))
    page("/redzone/{process_id}", "redzone_show", get=lambda request, pid: api.show(pid))
    page("/redzone/{process_id}/analysis", "redzone_analysis", get=lambda request, pid: api.analysis(pid))
    for op in ("analyze", "terminate", "recover"):
        page(f"/redzone/{{process_id}}/{op}", f"redzone_{op}", post=mutation(op))
    page("/trust/{identity}", "trust", get=lambda request, identity: api.trust(identity))
    page("/policy", "policy", get=lambda request: api.policy())
    page("/policy/history", "policy_history", get=lambda request: api.policy_history())
