"""Redzone operations on the real stack: the service on Redis, the CLI, the
worker's HTTP API, the trust reset through the control topic, and two
operators racing on one process.

One worker (with an operator token) serves the whole module; every test
uses its own identities and process ids.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.error
import urllib.request
import uuid

import pytest
import redis

from streams.codec.avro import codec
from streams.errors import TransitionError
from streams.kafka.read import read_to_end
from streams.redzone.service import RedzoneService
from tests.integration.pipeline import TRUSTCTL, Pipeline, normalise, wait_for

pytestmark = pytest.mark.integration

TOKEN = "it-" + uuid.uuid4().hex
POLICY = """
version: ops-1
default_action: deny
trust_thresholds: {quarantine: 0.5}
policies:
  read: {}
  ptrace: {violation_action: quarantine, allowed_identities: [], forensic_mode: metadata,
           isolation_level: network}
"""


@pytest.fixture(scope="module")
def worker(stack, tmp_path_factory):
    p = Pipeline(stack, "redzone-ops", tmp_path_factory.mktemp("ops"))
    p.env["TRUST_OPERATOR_TOKEN"] = TOKEN
    policy = tmp_path_factory.mktemp("policy") / "p.yaml"
    policy.write_text(POLICY)
    try:
        p.publish(policy)
        p.start()
        p.wait_policy("ops-1")
        wait_for("the worker ready", lambda: (p.health() or {}).get("status") == "ok")
        yield p
    finally:
        p.cleanup()


def run(coro):
    return asyncio.run(coro)


async def with_service(p: Pipeline, fn):
    svc = RedzoneService(p.settings)
    try:
        return await fn(svc)
    finally:
        await svc.close()


def operator_quarantine(p: Pipeline, pid: str, identity: str, **kw):
    return run(with_service(p, lambda s: s.quarantine(pid, identity, "by hand", actor="operator:pytest", **kw)))


def http(p: Pipeline, method: str, path: str, token: str | None = None, body: dict | None = None):
    """(status, decoded body) of one request to the worker's API."""
    req = urllib.request.Request(f"http://127.0.0.1:{p.settings.web_port}{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode())
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw, status, ctype = r.read(), r.status, r.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        raw, status, ctype = exc.read(), exc.code, exc.headers.get("Content-Type", "")
    return status, json.loads(raw) if "json" in ctype else raw.decode()


def cli(p: Pipeline, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([TRUSTCTL, "redzone", *args], env=p.env, capture_output=True, text=True, timeout=60)


def records(p: Pipeline, kind: str, schema: str) -> list[dict]:
    """Every record on a topic up to its current end (what producers have confirmed)."""
    dec = codec(schema).decode
    return [dec(m.value()) for m in read_to_end(p.settings, p.settings.topic(kind))]


def transitions(p: Pipeline, pid: str) -> list[tuple]:
    return [(e["from_status"], e["to_status"]) for e in records(p, "redzone", "RedzoneEvent")
            if e["process_id"] == pid]


def redis_entry(p: Pipeline, pid: str) -> dict | None:
    raw = redis.Redis.from_url(p.settings.redis_url).get(f"{p.settings.redis_prefix}redzone:proc:{pid}")
    return None if raw is None else json.loads(raw)


def event(n: int, syscall: str, identity: str, pid: str, args=("a",)) -> dict:
    return normalise({"event_id": f"{identity}-{n}", "syscall": syscall, "args": list(args),
                      "identity": {"id": identity, "process_id": pid},
                      "timestamp": f"2026-11-28T12:00:{n:02d}.000000Z"})


# -- the whole loop ---------------------------------------------------------------

def test_quarantine_analyze_recover_resets_trust_for_later_decisions(worker):
    p, ident, pid = worker, "svc-recover", "p-recover"
    # 0.7 read -> 0.703; mount (no policy) -> 0.553; mount -> 0.403 < 0.5: quarantine
    p.send([event(1, "read", ident, pid), event(2, "mount", ident, pid), event(3, "mount", ident, pid)],
           shim_id="shim-1")
    first = {d["event_id"]: d for d in p.decisions(3) if d["identity"]["id"] == ident}
    assert first[f"{ident}-3"]["action"] == "quarantine"
    wait_for("the quarantine in redis", lambda: redis_entry(p, pid))
    status, trust = http(p, "GET", f"/trust/{ident}")
    assert status == 200 and trust["trust"] == 0.403 and trust["local"] is True

    status, report = http(p, "POST", f"/redzone/{pid}/analyze", TOKEN, {"actor": "alice"})
    assert status == 200 and report["status"] == "analyzing" and report["forensic_mode"] == "full"
    assert report["syscall_histogram"] == {"mount": 2, "read": 1}
    assert report["violations_by_reason"] == {"no_policy": 2}
    assert [t["trust_score"] for t in report["trust_trajectory"]] == [0.7, 0.703, 0.553]
    assert report["policy_versions"] == ["ops-1"]

    status, body = http(p, "POST", f"/redzone/{pid}/recover", TOKEN, {"actor": "alice", "reason": "false alarm"})
    assert status == 200 and body["status"] == "recovered"
    [control] = [c for c in records(p, "control", "TrustControl") if c["identity_id"] == ident]
    assert (control["op"], control["actor"]) == ("reset_trust", "operator:alice")
    reset = wait_for("the trust reset applied by the decide agent",
                     lambda: (lambda r: r[1] if r[1].get("last_control_id") == control["command_id"] else None)(
                         http(p, "GET", f"/trust/{ident}")))
    assert reset["trust"] == 0.7 == reset["baseline"]
    # Trust is per identity: a fresh process of it shows the reset (p-recover's own
    # release reaches the worker's view through Redis, asynchronously).
    p.send([event(4, "read", ident, "p-recover-2"), event(5, "read", ident, "p-recover-2")], shim_id="shim-2")
    later = {d["event_id"]: d for d in p.decisions(5) if d["identity"]["id"] == ident}
    assert later[f"{ident}-4"]["trust_score"] == 0.7 and later[f"{ident}-4"]["allowed"]
    assert later[f"{ident}-5"]["trust_score"] == 0.703
    assert transitions(p, pid) == [(None, "active"), ("active", "analyzing"), ("analyzing", "recovered")]


# -- terminate and refusals (CLI) ---------------------------------------------------

def test_terminate_and_every_refused_transition_changes_nothing(worker):
    p, pid = worker, "p-term"
    operator_quarantine(p, pid, "svc-term", forensic_mode="metadata")
    out = cli(p, "analyze", pid, "--by", "bob")
    assert out.returncode == 0, out.stderr
    assert f"process {pid} (svc-term): analyzing" in out.stdout
    refused = cli(p, "analyze", pid)
    assert refused.returncode == 3
    assert f"process `{pid}` cannot go from `analyzing` to `analyzing`" in refused.stderr
    assert "nothing changed" in refused.stderr
    done = cli(p, "terminate", pid, "--by", "bob", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["status"] == "terminated"
    before = redis_entry(p, pid)
    for op in ("analyze", "terminate", "recover"):
        r = cli(p, op, pid)
        assert r.returncode == 3, r.stderr
        target = {"analyze": "analyzing", "terminate": "terminated", "recover": "recovered"}[op]
        assert f"cannot go from `terminated` to `{target}` (it is final)" in r.stderr
    assert redis_entry(p, pid) == before
    assert transitions(p, pid) == [(None, "active"), ("active", "analyzing"), ("analyzing", "terminated")]
    assert not [c for c in records(p, "control", "TrustControl") if c["identity_id"] == "svc-term"]

    missing = cli(p, "terminate", "no-such-process")
    assert missing.returncode == 4 and "`no-such-process` is not in the redzone" in missing.stderr
    listing = cli(p, "list", "--status", "terminated", "--json")
    assert [x["process_id"] for x in json.loads(listing.stdout) if x["identity_id"] == "svc-term"] == [pid]
    assert "no processes" in cli(p, "list", "--identity", "nobody").stdout
    bad = cli(p, "list", "--status", "frozen")
    assert bad.returncode == 2 and "unknown status `frozen`" in bad.stderr


# -- HTTP API and its token ---------------------------------------------------------

def test_http_mutations_need_the_right_token(worker):
    p, pid = worker, "p-http"
    operator_quarantine(p, pid, "svc-http", isolation_level="network")
    before = redis_entry(p, pid)
    status, body = http(p, "POST", f"/redzone/{pid}/terminate")
    assert status == 401 and "Authorization" in body["error"]
    status, body = http(p, "POST", f"/redzone/{pid}/terminate", "wrong-token")
    assert status == 403 and body["code"] == "forbidden"
    assert redis_entry(p, pid) == before and transitions(p, pid) == [(None, "active")]

    status, report = http(p, "GET", f"/redzone/{pid}/analysis")  # read only
    assert status == 200 and report["status"] == "active"
    assert redis_entry(p, pid) == before
    status, one = http(p, "GET", f"/redzone/{pid}")
    assert status == 200 and one["isolation_level"] == "network"
    assert http(p, "GET", "/redzone?identity=svc-http")[1]["count"] == 1
    assert http(p, "GET", "/redzone/nope")[0] == 404
    assert http(p, "GET", f"/redzone/{pid}/terminate")[0] == 405

    status, body = http(p, "POST", f"/redzone/{pid}/terminate", TOKEN, {"actor": "carol"})
    assert status == 200 and body["status"] == "terminated"
    status, body = http(p, "POST", f"/redzone/{pid}/recover", TOKEN)
    assert status == 409 and body["current_status"] == "terminated"
    assert "cannot go from `terminated` to `recovered`" in body["error"]
    assert transitions(p, pid) == [(None, "active"), ("active", "terminated")]


def test_http_reads_policy_trust_and_metrics(worker):
    p = worker
    status, policy = http(p, "GET", "/policy")
    assert status == 200 and policy["version"] == "ops-1" and "read" in policy["document"]["policies"]
    status, history = http(p, "GET", "/policy/history")
    assert status == 200 and [v["version"] for v in history["versions"]] == ["ops-1"]
    status, trust = http(p, "GET", "/trust/svc-never-seen")
    assert status == 404 and trust["found"] is False and "not seen yet" in trust["detail"]
    status, text = http(p, "GET", "/metrics")
    assert status == 200 and "# TYPE trust_events_total counter" in text
    assert 'trust_quarantined_processes{status="active"}' in text
    assert f'trust_consumer_lag{{topic="{p.settings.topic("events")}",partition="0"}}' in text
    assert "trust_metrics_scrape_errors" in text and 'source="' not in text


# -- two operators racing --------------------------------------------------------------

def test_two_operators_racing_exactly_one_transition_wins(worker):
    p = worker
    pids = [f"p-race-{i}" for i in range(8)]
    for pid in pids:
        operator_quarantine(p, pid, "svc-race")

    async def race():
        a, b = RedzoneService(p.settings), RedzoneService(p.settings)
        try:
            results = []
            for pid in pids:
                results.append(await asyncio.gather(a.terminate_process(pid, "operator:ann"),
                                                    b.recover_process(pid, "operator:ben"),
                                                    return_exceptions=True))
            both_analyze = await asyncio.gather(a.analyze_process("p-race-x", "operator:ann"),
                                                b.analyze_process("p-race-x", "operator:ben"),
                                                return_exceptions=True)
            return results, both_analyze
        finally:
            await a.close()
            await b.close()

    operator_quarantine(p, "p-race-x", "svc-race")
    results, both_analyze = run(race())
    winners = {"terminated": 0, "recovered": 0}
    for pid, (term, rec) in zip(pids, results):
        won = [r for r in (term, rec) if not isinstance(r, Exception)]
        lost = [r for r in (term, rec) if isinstance(r, Exception)]
        assert len(won) == 1 and len(lost) == 1, (pid, term, rec)
        final = won[0].status.value
        winners[final] += 1
        assert isinstance(lost[0], TransitionError)
        assert f"cannot go from `{final}` to" in str(lost[0]) and "(it is final)" in str(lost[0])
        assert redis_entry(p, pid)["status"] == final
        assert transitions(p, pid) == [(None, "active"), ("active", final)]
    [ok] = [r for r in both_analyze if not isinstance(r, Exception)]
    [refused] = [r for r in both_analyze if isinstance(r, Exception)]
    assert ok["status"] == "analyzing" and "cannot go from `analyzing` to `analyzing`" in str(refused)
    resets = [c for c in records(p, "control", "TrustControl") if c["identity_id"] == "svc-race"]
    assert len(resets) == winners["recovered"]
