"""The worker's operator HTTP API, on Faust's web server (127.0.0.1 by default).

    GET  /health                      ready?, policy version, isolated processes; 503 unless ready
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
compared in constant time (`hmac.compare_digest` of their SHA-256, so not
even the length leaks); a refused request changes nothing.  The header is
checked before the body is read.  A client address with 5 failed
authentications in 60 s is answered 429 with `Retry-After` until the oldest
leaves the window (:class:`AuthFailureLimiter`).

A mutation may carry a UTF-8 JSON body ``{"reason": ..., "actor": ...}``
(strings; any other field, or a body that is not such JSON, is a 400; more
than 64 KiB a 413); the actor is recorded as ``operator:<actor>`` (default
``operator:http``).

``/health`` tells the truth: 200 with ``"status": "ok"`` only when the
worker decides (a policy in force, its redzone view loaded) and the broker
and Redis answer; otherwise 503 with ``"status": "starting"`` or
``"unavailable"``, ``unreachable`` naming the dependency (``kafka``,
``redis``) and ``error`` saying why.  Each dependency is probed off the
decide path (:class:`Probe`: Redis with one async read, Kafka with a
metadata request in a thread), at most once per ``Probe.TTL`` seconds
whatever the request rate, each probe bounded by a timeout.

Every answer is JSON (but /metrics): ``{"error": ..., "code": ...}`` on
failure.  Redis unreachable is a 503 naming the server (``code``
`redzone_unavailable`); Kafka not confirming a change is a 502; anything
unexpected is logged with its traceback and answered 500 with a generic body,
so no response ever carries a stack trace.

:class:`OperatorApi` is the logic, framework-free (request parts in, a
:class:`Reply` out) so it is tested without a worker; :func:`register` binds
it to Faust views.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping

from streams.clock import utc_now
from streams.errors import (
    CodecError,
    DeliveryError,
    RedzoneError,
    RedzoneUnavailable,
    TransitionError,
    TrustError,
    UnknownProcessError,
)
from streams.partitioner import partition_of
from streams.metrics import CONTENT_TYPE, DecideMetrics, Family, render
from streams.redzone.model import summarize
from streams.redzone.service import STATUSES, RedzoneService
from streams.settings import Settings
from streams.trust_state import TrustEntry

log = logging.getLogger("forgeone.trust.web")

MAX_BODY = 64 * 1024  # bytes a mutation's body may have
BODY_FIELDS = ("reason", "actor")
BODY_HINT = 'send no body or a JSON object like {"reason": "...", "actor": "..."}'


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: Any
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


def error(status: int, message: str, code: str, **extra: Any) -> Reply:
    return Reply(status, {"error": message, "code": code, **extra})


class Probe:
    """Whether one dependency answers, measured at most once per `ttl` seconds.

    `check` is an async callable that raises when the dependency cannot be
    reached; it runs under `timeout`.  Concurrent callers share one probe in
    flight; a caller that goes away does not cancel it.  Time is injected.
    """

    TTL = 1.5

    def __init__(self, check: Callable[[], Awaitable[Any]], ttl: float = TTL, timeout: float = 2.0,
                 clock: Callable[[], float] = time.monotonic):
        self.check, self.ttl, self.timeout, self.clock = check, ttl, timeout, clock
        self._at: float | None = None
        self._error: str | None = None
        self._running: asyncio.Future | None = None

    async def error(self) -> str | None:
        """None if the dependency answered (recently), else why not."""
        if self._at is not None and self.clock() - self._at < self.ttl:
            return self._error
        if self._running is None:
            self._running = asyncio.ensure_future(self._probe())
        return await asyncio.shield(self._running)

    async def _probe(self) -> str | None:
        try:
            await asyncio.wait_for(self.check(), self.timeout)
            error = None
        except asyncio.TimeoutError:
            error = f"no answer within {self.timeout:g} s"
        except Exception as exc:
            error = str(exc) or type(exc).__name__
        self._at, self._error, self._running = self.clock(), error, None
        return error


class AuthFailureLimiter:
    """Failed authentications per client address, in a sliding window.

    After `limit` failures within `window` seconds a client is refused
    (:meth:`retry_after` says for how long) until the oldest of them leaves
    the window.  Pure: time comes from the injected monotonic `clock`.  At
    most `max_clients` addresses are tracked (the oldest dropped first).
    """

    def __init__(self, limit: int = 5, window: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = 10_000):
        self.limit, self.window, self.clock, self.max_clients = limit, window, clock, max_clients
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, client: str, now: float) -> deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times

    def retry_after(self, client: str) -> float | None:
        """Seconds until `client` may try again, or None if it may now."""
        now = self.clock()
        times = self._recent(client, now)
        if times is None or len(times) < self.limit:
            return None
        return times[0] + self.window - now

    def failed(self, client: str) -> None:
        now = self.clock()
        times = self._recent(client, now)
        if times is None:
            if len(self._failures) >= self.max_clients:
                for other in list(self._failures):
                    self._recent(other, now)
                while len(self._failures) >= self.max_clients:
                    del self._failures[next(iter(self._failures))]
            times = self._failures[client] = deque(maxlen=self.limit)
        times.append(now)

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)


def body_fields(raw: bytes) -> dict[str, str]:
    """A mutation's optional fields from its body; ValueError (a readable message) if malformed."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the body is not UTF-8") from None
    if not text.strip():
        return {}
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise ValueError("the body is not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("the body is not a JSON object")
    for name, value in data.items():
        if name not in BODY_FIELDS:
            raise ValueError(f"unknown field `{name}` (allowed: {', '.join(BODY_FIELDS)})")
        if value is not None and not isinstance(value, str):
            raise ValueError(f"field `{name}` must be a string")
    return {k: v for k, v in data.items() if v}


def _same_token(given: str, expected: str) -> bool:
    """Constant time, whatever the lengths: compare digests."""
    def digest(t: str) -> bytes:
        return hashlib.sha256(t.encode("utf-8", "surrogatepass")).digest()
    return hmac.compare_digest(digest(given), digest(expected))


class OperatorApi:
    def __init__(self, settings: Settings, service: RedzoneService, *, trust: Mapping[str, Any],
                 owned_partitions: Callable[[], set[int]], policy: Any, metrics: DecideMetrics,
                 ready: Callable[[], bool], isolated: Callable[[], int],
                 lag: Callable[[], Mapping[tuple[str, int], int]] | None = None,
                 limiter: AuthFailureLimiter | None = None, probes: Mapping[str, Probe] | None = None):
        """`probes`: dependency name (``kafka``, ``redis``) -> its Probe, for /health."""
        self.settings = settings
        self.limiter = limiter if limiter is not None else AuthFailureLimiter()
        self.service = service
        self.trust_table = trust
        self.owned_partitions = owned_partitions
        self.policy_watcher = policy
        self.decide_metrics = metrics
        self.ready = ready
        self.isolated = isolated
        self.lag = lag
        self.probes = dict(probes or {})

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
        if scheme.lower() != "bearer" or not _same_token(given.strip(), token):
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

    async def mutate(self, op: str, process_id: str, headers: Mapping[str, str],
                     read_body: Callable[[], Awaitable[bytes]], client: str = "unknown") -> Reply:
        """One transition: rate limit, then the token, and only then the body."""
        wait = self.limiter.retry_after(client)
        if wait is not None:
            seconds = max(1, math.ceil(wait))
            return Reply(429, {"error": f"too many failed authentications from `{client}`; "
                                        f"retry in {seconds} s", "code": "too_many_failures"},
                         headers={"Retry-After": str(seconds)})
        refused = self.authorize(headers)
        if refused is not None:
            if refused.body["code"] in ("unauthorized", "forbidden"):  # not: no token configured
                self.limiter.failed(client)
            return refused
        self.limiter.succeeded(client)
        raw = await read_body()
        if len(raw) > MAX_BODY:
            return error(413, f"the body is larger than {MAX_BODY} bytes; {BODY_HINT}", "body_too_large")
        try:
            data = body_fields(raw)
        except ValueError as exc:
            return error(400, f"{exc}; {BODY_HINT}", "bad_request")
        actor = f"operator:{data.get('actor') or 'http'}"
        reason = data.get("reason", "")
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
        partition = partition_of(identity, self.settings.partitions)
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
        names = list(self.probes)
        errors = await asyncio.gather(*(self.probes[n].error() for n in names))
        unreachable = [(n, e) for n, e in zip(names, errors) if e is not None]
        p = self.policy_watcher.current
        deciding = p is not None and self.ready()
        status = "unavailable" if unreachable else "ok" if deciding else "starting"
        body: dict[str, Any] = {"status": status, "ready": status == "ok",
                                "policy_version": None if p is None else p.version,
                                "isolated_processes": self.isolated(),
                                "policy_signing": bool(getattr(self.policy_watcher, "signing_enabled", False)),
                                "checks": {n: e or "ok" for n, e in zip(names, errors)}, "time": utc_now()}
        if unreachable:
            body["unreachable"] = [n for n, _ in unreachable]
            body["error"] = "; ".join(f"cannot reach {n}: {e}" for n, e in unreachable)
        elif not deciding:
            body["error"] = ("no valid policy in force yet" if p is None else
                             "the redzone view is not loaded yet (quarantines published before the start "
                             "are being applied)")
        return Reply(200 if status == "ok" else 503, body)

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
        """Run a handler, turning the error tree into HTTP statuses; never a traceback."""
        try:
            return await handler(*args)
        except RedzoneUnavailable as exc:
            return error(503, f"{exc}; retry later", exc.code, cause="redis")
        except UnknownProcessError as exc:
            return error(404, str(exc), exc.code)
        except (RedzoneError, CodecError) as exc:
            return error(400, str(exc), exc.code)
        except DeliveryError as exc:
            return error(502, str(exc), exc.code)
        except TrustError as exc:
            return error(500, str(exc), exc.code)
        except Exception:
            log.exception("operator API: unexpected error")
            return error(500, "internal error; the worker's log has the details", "internal")


def summary(p) -> dict[str, Any]:
    """A process without its trace and command ids (the list view)."""
    d = p.to_dict()
    d["trace_entries"] = len(d.pop("trace"))
    d.pop("command_ids")
    return d


async def read_body(request) -> bytes:
    """At most MAX_BODY + 1 bytes of an aiohttp request's body: enough to tell one too large."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(16 * 1024):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_BODY:
            break
    return b"".join(chunks)


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
            return await api.mutate(op, process_id, request.headers, lambda: read_body(request),
                                    request.remote or "unknown")
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
