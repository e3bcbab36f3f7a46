"""The operator HTTP API's logic and the redzone service, without a worker.

The service runs on the in-memory RedzoneStore (the same pure state machine as
Redis) and records what it would produce instead of talking to Kafka; the
Redis and HTTP paths are tested for real in tests/integration/test_redzone_ops.py.
"""

from __future__ import annotations

import asyncio
import re

import pytest

from streams.codec.avro import codec
from streams.metrics import DecideMetrics, render
from streams.redzone.memory import InMemoryRedzoneStore
from streams.redzone.service import RedzoneService
from streams.settings import Settings
from streams.web import OperatorApi, java_partition
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
    api_owner = OperatorApi(Settings(), RecordingService(Settings()), trust={"svc-a": {"t": 0.42, "c": "c-1"}},
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
