"""The operator HTTP API's logic and the redzone service, without a worker.

The service runs on the in-memory RedzoneStore (the same pure state machine as
Redis) and records what it would produce instead of talking to Kafka; the
Redis and HTTP paths are tested for real in tests/integration/test_redzone_ops.py.
"""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from streams.trust_state import TrustEntry
from streams.codec.avro import codec
from streams.errors import RedzoneUnavailable
from streams.metrics import DecideMetrics, render
from streams.redzone.memory import InMemoryRedzoneStore
from streams.redzone.service import RedzoneService
from streams.settings import Settings
from streams.partitioner import partition_of as java_partition
from streams.web import OperatorApi
from tests.conftest import make_policy

NOW = "2026-11-28T12:00:00.000000Z"
TOKEN = "s3cret-token"


class RecordingService(RedzoneService):
    def __init__(self, settings):
        super().__init__(settings, store=InMemoryRedzoneStore(), clock=lambda: NOW)
        self.sent: list[tuple[str, str, dict]] = []

    async def _emit(self, records, applied):
        schemas = {"redzone": "RedzoneEvent", "control": "TrustControl", "quarantine": "QuarantineCommand"}
        self.sent += [(kind, key, codec(schemas[kind]).decode(value)) for kind, key, value in records]


class Watcher:
    def __init__(self):
        self.current = make_policy({"read": {}}, version="v-9", trust_model={"baseline": 0.6})
        self.refused = [("v-bad", "policy refused")]
        self.signing_enabled = False

        class History:
            def versions(self_inner):
                return []
        self.history = History()


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def make_api():
    def make(token: str | None = TOKEN, trust: dict | None = None, owned=frozenset({0, 1, 2, 3, 4, 5})):
        settings = Settings.from_env({"TRUST_OPERATOR_TOKEN": token} if token else {})
        svc = RecordingService(settings)
        run(svc.quarantine("p-1", "svc-a", "by hand", actor="operator:test", isolation_level="network"))
        svc.sent.clear()
        return OperatorApi(settings, svc, trust=trust or {}, owned_partitions=lambda: set(owned),
                           policy=Watcher(), metrics=DecideMetrics(), ready=lambda: True, isolated=lambda: 1)
    return make


def bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def body(raw: bytes | str = b""):
    """A request body reader (what `register` passes: read only when called)."""
    data = raw.encode() if isinstance(raw, str) else raw

    async def read() -> bytes:
        return data
    return read


# -- authorization -----------------------------------------------------------------

@pytest.mark.parametrize("op", ["analyze", "terminate", "recover"])
def test_mutation_without_header_is_401_and_changes_nothing(make_api, op):
    api = make_api()
    reply = run(api.mutate(op, "p-1", {}, body("")))
    assert reply.status == 401 and reply.headers["WWW-Authenticate"].startswith("Bearer")
    assert api.service.store.processes["p-1"].status.value == "active" and api.service.sent == []


@pytest.mark.parametrize("header", ["Bearer wrong", "Basic czNjcmV0LXRva2Vu", f"Bearer {TOKEN}x", "Bearer"])
def test_mutation_with_a_wrong_token_is_403_and_changes_nothing(make_api, header):
    api = make_api()
    reply = run(api.mutate("terminate", "p-1", {"Authorization": header}, body("")))
    assert reply.status == 403 and reply.body["code"] == "forbidden"
    assert api.service.store.processes["p-1"].status.value == "active" and api.service.sent == []


def test_without_a_token_on_the_server_every_mutation_is_403(make_api):
    api = make_api(token=None)
    for headers in ({}, bearer("anything"), bearer("")):
        reply = run(api.mutate("recover", "p-1", headers, body("")))
        assert reply.status == 403 and "TRUST_OPERATOR_TOKEN" in reply.body["error"]
    assert api.service.store.processes["p-1"].status.value == "active" and api.service.sent == []


def test_unknown_process_needs_the_token_before_it_is_a_404(make_api):
    api = make_api()
    assert run(api.mutate("terminate", "nope", {}, body(""))).status == 401
    reply = run(api.call(api.mutate, "terminate", "nope", bearer(TOKEN), body("")))
    assert reply.status == 404 and "`nope`" in reply.body["error"]


def test_right_token_analyzes_with_a_report_and_an_event(make_api):
    api = make_api()
    reply = run(api.mutate("analyze", "p-1", bearer(TOKEN), body('{"actor": "alice", "reason": "look"}')))
    assert reply.status == 200 and reply.body["status"] == "analyzing" and reply.body["forensic_mode"] == "full"
    [(kind, key, event)] = api.service.sent
    assert (kind, key, event["from_status"], event["to_status"]) == ("redzone", "p-1", "active", "analyzing")
    assert (event["actor"], event["reason"]) == ("operator:alice", "look")


def test_recover_emits_the_redzone_event_and_a_trust_reset_for_the_identity(make_api):
    api = make_api()
    reply = run(api.mutate("recover", "p-1", bearer(TOKEN), body("")))
    assert reply.status == 200 and reply.body["status"] == "recovered"
    (k1, key1, event), (k2, key2, control) = api.service.sent
    assert (k1, key1, event["to_status"], event["actor"]) == ("redzone", "p-1", "recovered", "operator:http")
    assert (k2, key2, control["op"], control["identity_id"]) == ("control", "svc-a", "reset_trust", "svc-a")
    assert control["command_id"] in event["reason"]


def test_refused_transition_is_409_naming_the_state_and_emits_nothing(make_api):
    api = make_api()
    run(api.mutate("terminate", "p-1", bearer(TOKEN), body("")))
    api.service.sent.clear()
    reply = run(api.mutate("recover", "p-1", bearer(TOKEN), body("")))
    assert reply.status == 409 and reply.body["current_status"] == "terminated"
    assert reply.body["error"] == "process `p-1` cannot go from `terminated` to `recovered` (it is final)"
    assert api.service.sent == []


def test_bad_body_is_400(make_api):
    api = make_api()
    assert run(api.mutate("terminate", "p-1", bearer(TOKEN), body("[1]"))).status == 400
    assert api.service.store.processes["p-1"].status.value == "active"


# -- reads -----------------------------------------------------------------------

def test_reads_need_no_token_and_change_nothing(make_api):
    api = make_api(token=None)
    listing = run(api.call(api.list_processes, {"status": "active"}))
    assert listing.status == 200 and [p["process_id"] for p in listing.body["processes"]] == ["p-1"]
    assert "trace" not in listing.body["processes"][0]
    assert run(api.call(api.list_processes, {"identity": "svc-b"})).body["count"] == 0
    assert run(api.call(api.list_processes, {"status": "bogus"})).status == 400
    assert run(api.call(api.analysis, "p-1")).body["status"] == "active"
    assert run(api.call(api.show, "p-1")).body["isolation_level"] == "network"
    assert run(api.call(api.show, "p-2")).status == 404
    assert api.service.store.processes["p-1"].status.value == "active" and api.service.sent == []


def test_trust_from_the_local_table_or_a_clear_not_local_answer():
    p = java_partition("svc-a", 6)
    api_owner = OperatorApi(Settings(), RecordingService(Settings()), trust={"svc-a": TrustEntry(trust=0.42, control_id="c-1")},
                            owned_partitions=lambda: {p}, policy=Watcher(), metrics=DecideMetrics(),
                            ready=lambda: True, isolated=lambda: 0)
    found = run(api_owner.trust("svc-a"))
    assert found.status == 200 and found.body["trust"] == 0.42 and found.body["last_control_id"] == "c-1"
    unseen = run(api_owner.trust("svc-new")) if java_partition("svc-new", 6) == p else None
    other = OperatorApi(Settings(), RecordingService(Settings()), trust={}, owned_partitions=lambda: {(p + 1) % 6},
                        policy=Watcher(), metrics=DecideMetrics(), ready=lambda: True, isolated=lambda: 0)
    missing = run(other.trust("svc-a"))
    assert missing.status == 404 and missing.body["local"] is False
    assert f"partition {p}" in missing.body["detail"] and "does not own" in missing.body["detail"]
    assert unseen is None or "not seen yet" in unseen.body["detail"]


def test_policy_and_history(make_api):
    api = make_api()
    assert run(api.policy()).body["version"] == "v-9"
    assert run(api.policy_history()).body["refused"] == [{"version": "v-bad", "error": "policy refused"}]


# -- metrics -----------------------------------------------------------------------

def test_metrics_are_prometheus_text(make_api):
    api = make_api()
    m = api.decide_metrics
    m.events, m.batches = 5, 2
    m.decisions.update({"allow": 4, "block": 1})
    m.violations["no_policy"] = 1
    m.dlq["undecodable"] = 2
    m.latency.observe(0.0003)
    m.latency.observe(2.0)
    reply = run(api.metrics())
    text = reply.body
    assert reply.content_type.startswith("text/plain; version=0.0.4")
    assert "trust_events_total 5\n" in text
    assert 'trust_decisions_total{action="block"} 1\n' in text
    assert 'trust_violations_total{reason_code="no_policy"} 1\n' in text
    assert 'trust_dlq_total{error_code="undecodable"} 2\n' in text
    assert 'trust_quarantined_processes{status="active"} 1\n' in text
    assert 'trust_batch_evaluation_seconds_bucket{le="0.0005"} 1\n' in text
    assert 'trust_batch_evaluation_seconds_bucket{le="+Inf"} 2\n' in text
    assert "trust_batch_evaluation_seconds_count 2\n" in text
    for line in text.splitlines():  # every line is a comment or `name{labels} value`
        assert line.startswith("# ") or re.fullmatch(r'[a-z_]+(\{[^}]*\})? [0-9.e+-]+|[a-z_]+(\{[^}]*\})? \+Inf', line), line


def test_render_escapes_label_values():
    from streams.metrics import Family

    text = render([Family("x", "gauge", "h", [({"a": 'q"\\\n'}, 1)])])
    assert text.endswith('x{a="q\\"\\\\\\n"} 1\n')


# -- hardening: token, body, rate limit, outages, no tracebacks ----------------------

class Reader:
    """A body reader that records whether the API read the body."""

    def __init__(self, raw: bytes = b""):
        self.raw, self.read = raw, False

    async def __call__(self) -> bytes:
        self.read = True
        return self.raw


class Clock:
    def __init__(self, t: float = 1000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_the_token_is_compared_in_constant_time(make_api, monkeypatch):
    import hmac

    import streams.web

    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(streams.web.hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    api = make_api()
    assert api.authorize(bearer("short")).status == 403
    assert api.authorize(bearer(TOKEN)) is None
    assert len(calls) == 2 and all(len(a) == len(b) == 32 for a, b in calls)  # digests: lengths never differ


@pytest.mark.parametrize("headers", [{}, bearer("wrong")])
def test_authorization_is_checked_before_the_body_is_read(make_api, headers):
    api = make_api()
    reader = Reader(b"\xff\xfe not even utf-8")
    assert run(api.mutate("terminate", "p-1", headers, reader)).status in (401, 403)
    assert reader.read is False


@pytest.mark.parametrize("raw, says", [
    (b"\xff\xfe{}", "not UTF-8"),
    (b"{not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (b"[" * 20_000 + b"]" * 20_000, "not JSON"),  # nested past the parser's recursion limit
    (b'{"reason": "x", "actr": "alice"}', "unknown field `actr`"),
    (b'{"actor": {"name": "alice"}}', "field `actor` must be a string"),
], ids=["not-utf8", "not-json", "not-object", "too-deep", "unknown-field", "not-a-string"])
def test_a_malformed_body_is_400_json_and_changes_nothing(make_api, raw, says):
    api = make_api()
    reply = run(api.call(api.mutate, "terminate", "p-1", bearer(TOKEN), body(raw)))
    assert reply.status == 400 and reply.body["code"] == "bad_request" and says in reply.body["error"]
    assert reply.content_type == "application/json"
    assert api.service.store.processes["p-1"].status.value == "active" and api.service.sent == []


def test_a_body_too_large_is_413(make_api):
    from streams.web import MAX_BODY

    api = make_api()
    reply = run(api.mutate("terminate", "p-1", bearer(TOKEN), body(b" " * (MAX_BODY + 1))))
    assert reply.status == 413 and reply.body["code"] == "body_too_large"
    assert api.service.store.processes["p-1"].status.value == "active"


def test_empty_or_null_fields_take_the_defaults(make_api):
    api = make_api()
    reply = run(api.mutate("terminate", "p-1", bearer(TOKEN), body(b'{"actor": null, "reason": ""}')))
    assert reply.status == 200
    [(_, _, event)] = api.service.sent
    assert event["actor"] == "operator:http" and event["reason"] == "terminated by operator:http"


def test_failed_authentications_are_rate_limited_per_client(make_api):
    from streams.web import AuthFailureLimiter

    clock = Clock()
    api = make_api()
    api.limiter = AuthFailureLimiter(limit=5, window=60.0, clock=clock)
    for i in range(5):
        clock.t += 1
        assert run(api.mutate("terminate", "p-1", bearer(f"guess-{i}"), body(), "10.0.0.9")).status == 403
    reader = Reader()
    blocked = run(api.mutate("terminate", "p-1", bearer(TOKEN), reader, "10.0.0.9"))  # even the right token
    assert blocked.status == 429 and blocked.body["code"] == "too_many_failures" and reader.read is False
    assert blocked.headers["Retry-After"] == "56"  # the first failure (t=1001) leaves the window at t=1061
    assert run(api.mutate("analyze", "p-1", bearer(TOKEN), body(), "10.0.0.7")).status == 200  # another client
    clock.t = 1061.0
    assert run(api.mutate("terminate", "p-1", bearer(TOKEN), body(), "10.0.0.9")).status == 200
    assert api.service.store.processes["p-1"].status.value == "terminated"


def test_the_limiter_counts_a_sliding_window_and_forgets_on_success():
    from streams.web import AuthFailureLimiter

    clock = Clock(0.0)
    lim = AuthFailureLimiter(limit=3, window=10.0, clock=clock)
    for t in (0.0, 4.0, 8.0):
        clock.t = t
        assert lim.retry_after("a") is None
        lim.failed("a")
    assert lim.retry_after("a") == pytest.approx(2.0) and lim.retry_after("b") is None
    clock.t = 10.0  # the failure at 0 left the window
    assert lim.retry_after("a") is None
    lim.failed("a")
    assert lim.retry_after("a") == pytest.approx(4.0)
    lim.succeeded("a")
    assert lim.retry_after("a") is None


def test_the_limiter_tracks_a_bounded_number_of_clients():
    from streams.web import AuthFailureLimiter

    clock = Clock(0.0)
    lim = AuthFailureLimiter(limit=1, window=60.0, clock=clock, max_clients=3)
    for client in ("a", "b", "c", "d"):
        lim.failed(client)
    assert len(lim._failures) == 3 and lim.retry_after("a") is None and lim.retry_after("d") is not None


def test_no_token_configured_is_not_counted_as_a_guess(make_api):
    api = make_api(token=None)
    for _ in range(10):
        assert run(api.mutate("terminate", "p-1", bearer("x"), body(), "10.0.0.9")).status == 403


class DownStore:
    """A RedzoneStore whose Redis is down (what the Redis adapter raises)."""

    def __getattr__(self, name):
        async def down(*args, **kwargs):
            raise RedzoneUnavailable("redis at `redis://127.0.0.1:1/0` is unreachable", "redis://127.0.0.1:1/0")
        return down


def test_redis_unreachable_is_503_naming_the_cause(make_api):
    api = make_api()
    api.service._store = DownStore()
    for reply in (run(api.call(api.list_processes, {})), run(api.call(api.show, "p-1")),
                  run(api.call(api.analysis, "p-1")),
                  run(api.call(api.mutate, "recover", "p-1", bearer(TOKEN), body()))):
        assert reply.status == 503 and reply.body["code"] == "redzone_unavailable"
        assert reply.body["cause"] == "redis" and "`redis://127.0.0.1:1/0` is unreachable" in reply.body["error"]
    assert api.service.sent == []
    metrics = run(api.call(api.metrics))
    assert metrics.status == 200 and 'trust_metrics_scrape_errors{source="redis"} 1' in metrics.body


def test_an_unexpected_error_is_a_generic_500_and_logged(make_api, caplog):
    api = make_api()

    async def broken():
        raise RuntimeError("secret internals at 0xdeadbeef")

    with caplog.at_level("ERROR", logger="forgeone.trust.web"):
        reply = run(api.call(broken))
    assert reply.status == 500 and reply.body == {
        "error": "internal error; the worker's log has the details", "code": "internal"}
    assert "secret" not in json.dumps(reply.body) and "Traceback" not in json.dumps(reply.body)
    assert "secret internals" in caplog.text and "Traceback" in caplog.text
