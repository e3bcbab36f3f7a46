"""Redis unreachable, for real: the settings point at a closed local port (the
shared Redis is never touched).  The Redis store raises RedzoneUnavailable,
`trustctl redzone` exits 5 with one line, and a worker keeps running and its
HTTP API answers 503; the same worker checks the API's hardening over real
HTTP (body after authorisation, 400 on bad bodies, 429 per client address).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import subprocess
import uuid

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from streams.errors import RedzoneUnavailable
from streams.redzone.redis_store import redis_store
from streams.settings import Settings
from tests.integration.pipeline import TRUSTCTL, Pipeline, free_port, wait_for

pytestmark = pytest.mark.integration

TOKEN = "it-" + uuid.uuid4().hex
SECRET = "hunter2-" + uuid.uuid4().hex[:6]


@pytest.fixture(scope="module")
def closed_port() -> int:
    return free_port()  # bound then released: nothing listens there


def closed_url(port: int) -> str:
    return f"redis://:{SECRET}@127.0.0.1:{port}/0"


def test_every_redis_store_call_raises_redzone_unavailable_naming_the_url(closed_port):
    store = redis_store(Settings.from_env({"TRUST_REDIS_URL": closed_url(closed_port)}))
    cmd = {"command_id": "c-1", "op": "quarantine", "process_id": "p-1", "identity": {"id": "svc-a"},
           "reason": "r", "isolation_level": "full", "forensic_mode": "full"}
    calls = {"quarantine": lambda: store.quarantine(cmd, "t"), "transition": lambda: store.transition(
        "p-1", "terminated", "op", "t"), "get": lambda: store.get("p-1"), "all": store.all,
        "follow": lambda: store.follow(lambda p: None)}

    async def each(call):
        try:
            await call()
        except RedzoneUnavailable as exc:
            return exc
        raise AssertionError("no error")

    async def go():
        try:
            return {name: await each(call) for name, call in calls.items()}
        finally:
            await store.close()

    for name, exc in asyncio.run(go()).items():
        assert str(exc) == f"redis at `redis://127.0.0.1:{closed_port}/0` is unreachable", name
        assert exc.code == "redzone_unavailable" and SECRET not in str(exc)
        assert isinstance(exc.__cause__, (RedisConnectionError, OSError)), name


@pytest.mark.parametrize("args", [["list"], ["show", "p-1", "--analysis"], ["terminate", "p-1", "--by", "it"]],
                         ids=["list", "show", "terminate"])
def test_trustctl_redzone_exits_5_with_one_clear_line(closed_port, args):
    import os

    env = dict(os.environ, TRUST_REDIS_URL=closed_url(closed_port))
    out = subprocess.run([TRUSTCTL, "redzone", *args], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 5, out.stderr
    assert out.stderr.splitlines() == [
        f"trustctl: error: redis at `redis://127.0.0.1:{closed_port}/0` is unreachable; "
        "retry later (TRUST_REDIS_URL names the server)"]
    assert out.stdout == "" and SECRET not in out.stderr


# -- a worker whose Redis is down ----------------------------------------------------

@pytest.fixture(scope="module")
def worker(stack, tmp_path_factory, closed_port):
    p = Pipeline(stack, "outage", tmp_path_factory.mktemp("outage"))
    p.env["TRUST_REDIS_URL"] = closed_url(closed_port)
    p.env["TRUST_OPERATOR_TOKEN"] = TOKEN
    try:
        p.start()
        wait_for("the worker's HTTP API", p.health)
        yield p
    finally:
        p.cleanup()


def call(p: Pipeline, method: str, path: str, token: str | None = None, body: bytes | None = None,
         source: str = "127.0.0.1") -> tuple[int, dict, str | bytes]:
    """(status, headers, decoded JSON or raw body) of one request, from `source`."""
    conn = http.client.HTTPConnection("127.0.0.1", p.settings.web_port, timeout=30, source_address=(source, 0))
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    try:
        conn.request(method, path, body=body, headers=headers)
        r = conn.getresponse()
        raw = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
    finally:
        conn.close()
    return r.status, hdrs, json.loads(raw) if "json" in hdrs.get("content-type", "") else raw


def test_the_api_answers_503_naming_redis_and_the_worker_keeps_running(worker, closed_port):
    p = worker
    for method, path, token in [("GET", "/redzone", None), ("GET", "/redzone/p-1", None),
                                ("GET", "/redzone/p-1/analysis", None),
                                ("POST", "/redzone/p-1/terminate", TOKEN)]:
        status, _, body = call(p, method, path, token, b"{}" if method == "POST" else None)
        assert status == 503, (path, body)
        assert body["code"] == "redzone_unavailable" and body["cause"] == "redis"
        assert f"`redis://127.0.0.1:{closed_port}/0` is unreachable" in body["error"]
        assert SECRET not in json.dumps(body)
    status, _, text = call(p, "GET", "/metrics")
    assert status == 200 and b'trust_metrics_scrape_errors{source="redis"} 1' in text
    health = p.health()  # a 503: Redis cannot be reached, so the worker is not ready
    assert health["status"] == "unavailable" and health["unreachable"] == ["redis"]
    assert health["checks"]["kafka"] == "ok" and SECRET not in json.dumps(health)
    assert f"cannot reach redis: redis at `redis://127.0.0.1:{closed_port}/0` is unreachable" in health["error"]
    wait_for("the view follower retrying", lambda: "is unreachable for the redzone view; retrying in"
             in p.log_path.read_text(errors="replace"))
    assert p.worker is not None and p.worker.poll() is None


def test_bodies_are_read_only_after_authorisation_and_bad_ones_are_400(worker):
    p = worker
    status, _, body = call(p, "POST", "/redzone/p-1/terminate", "wrong", b"\xff\xfe\x00")
    assert status == 403 and body["code"] == "forbidden"
    status, _, body = call(p, "POST", "/redzone/p-1/terminate", TOKEN, b"\xff\xfe\x00")
    assert status == 400 and body["code"] == "bad_request" and "not UTF-8" in body["error"]
    status, _, body = call(p, "POST", "/redzone/p-1/terminate", TOKEN, b"{oops")
    assert status == 400 and "not JSON" in body["error"]
    status, _, body = call(p, "POST", "/redzone/p-1/terminate", TOKEN, b" " * (64 * 1024 + 10))
    assert status == 413 and body["code"] == "body_too_large"


def test_failed_authentications_are_rate_limited_per_client_address(worker):
    p, guesser = worker, "127.0.0.2"  # another loopback address: other tests' client stays free
    for i in range(5):
        assert call(p, "POST", "/redzone/p-1/recover", f"guess-{i}", source=guesser)[0] == 403
    status, headers, body = call(p, "POST", "/redzone/p-1/recover", TOKEN, b"{}", source=guesser)
    assert status == 429 and body["code"] == "too_many_failures" and "`127.0.0.2`" in body["error"]
    assert 1 <= int(headers["retry-after"]) <= 60
    assert call(p, "POST", "/redzone/p-1/recover", TOKEN, b"{}")[0] == 503  # 127.0.0.1 is not limited
