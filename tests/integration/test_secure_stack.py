"""The secure stack for real: SASL_SSL + ACLs on Kafka, TLS + ACL users on Redis.

One secure stack for this module, on its own ports and in its own directory
(the shared stack on 9092/6379 is never touched), stopped at the end.  With
it: the engine decides end to end with each role's own credentials, and what
a role may not do is refused by the servers themselves.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams import stack as local_stack
from streams.errors import ConfigError
from streams.kafka import clients
from streams.kafka.admin import ensure_topics
from streams.settings import Settings
from streams.stack.security import StackSecurity
from tests.integration.pipeline import TRUSTCTL, Pipeline, free_port, normalise, wait_for

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 180.0  # a second JVM on a loaded 2-core machine
DEADLINE = 120.0


@pytest.fixture(scope="module")
def secure(tmp_path_factory) -> Iterator[StackSecurity]:
    base = tmp_path_factory.mktemp("secure-stack")
    tag = uuid.uuid4().hex[:6]
    env = {k: v for k, v in os.environ.items() if k == "TRUST_CACHE_DIR"}  # the Kafka jars, shared
    env.update({
        "TRUST_STACK_DIR": str(base / "stack"),
        "TRUST_KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "TRUST_KAFKA_CONTROLLER_PORT": str(free_port()),
        "TRUST_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "TRUST_TOPIC_PREFIX": f"sec.{tag}.",
        "TRUST_APP_ID": f"sec-{tag}",
        "TRUST_REDIS_PREFIX": f"sec:{tag}:",
    })
    settings = Settings.from_env(env)
    assert settings.kafka_port != 9092 and settings.redis_port != 6379
    try:
        local_stack.up(settings, report=lambda m: print(f"secure stack: {m}", file=sys.stderr),
                       kafka_timeout=START_TIMEOUT, secure=True)
        security = StackSecurity(settings)
        ensure_topics(security.role_settings("operator"), timeout=60.0)
        yield security
    finally:
        local_stack.down(settings)


def as_role(security: StackSecurity, role: str) -> Settings:
    return security.role_settings(role)


def deliver(settings: Settings, kind: str, value: bytes = b"x", timeout: float = 30.0) -> str | None:
    """Produce one record; None if the broker took it, else the error's name.

    Not idempotent: an idempotent producer of a user that may write no topic at
    all is refused earlier, as a whole (CLUSTER_AUTHORIZATION_FAILED)."""
    errors: list = []
    delivered: list = []
    producer = clients.producer(settings, f"pytest-{uuid.uuid4().hex[:6]}", **{
        "message.timeout.ms": int(timeout * 1000), "enable.idempotence": False,
        "error_cb": lambda err: err.fatal() and errors.append(err)})
    clients.produce(producer, settings.topic(kind), value, b"k",
                    lambda err, msg: (errors if err else delivered).append(err))
    producer.flush(timeout + 5)
    assert errors or delivered, "no delivery report"
    return errors[0].name() if errors else None


def events(n: int) -> list[dict]:
    return [normalise({"event_id": f"sec-{i}", "syscall": "read", "args": ["3"],
                       "identity": {"id": "svc-sec", "process_id": "p-1"},
                       "timestamp": f"2026-11-28T12:00:{i:02d}.000000Z"}) for i in range(n)]


POLICY = ROOT / "examples" / "policy.yaml"


def test_pipeline_decides_end_to_end_with_role_credentials(secure, tmp_path):
    engine = secure.role_env("engine")
    p = Pipeline(secure.settings, "secure", tmp_path, env=engine, ensure=False)
    assert p.settings.kafka_username == "engine" and p.settings.redis_url.startswith("rediss://")
    try:
        p.publish(POLICY, settings=as_role(secure, "operator"))
        p.start()
        wait_for("the worker to load the policy", lambda: (p.health() or {}).get("policy_version"),
                 timeout=DEADLINE)
        sent = events(20)
        p.send(sent, shim_id="secure-shim", settings=as_role(secure, "shim"))
        got = p.decisions(len(sent), timeout=DEADLINE, settings=as_role(secure, "auditor"))
        assert sorted(d["event_id"] for d in got) == sorted(e["event_id"] for e in sent)
    finally:
        p.stop()
    assert "Authenticated as engine via SCRAM-SHA-512" in p.log_path.read_text(errors="replace")


def test_clients_without_credentials_or_over_plaintext_are_refused(secure):
    operator = as_role(secure, "operator")
    plaintext = dataclasses.replace(operator, kafka_security_protocol="PLAINTEXT")
    tls_only = dataclasses.replace(operator, kafka_security_protocol="SSL")  # TLS, but no SASL user
    for settings in (plaintext, tls_only):
        with pytest.raises(Exception) as refused:
            clients.admin(settings).list_topics(timeout=5)
        assert "Failed to get metadata" in str(refused.value), settings.kafka_security_protocol
    wrong = dataclasses.replace(operator, kafka_password="not-the-password")
    with pytest.raises(ConfigError, match="refused user `operator` over SASL_SSL"):
        from streams.worker.preflight import check_kafka

        check_kafka(wrong, wait=30.0)


def test_a_shim_cannot_write_policy_and_an_auditor_cannot_write(secure):
    shim, auditor = as_role(secure, "shim"), as_role(secure, "auditor")
    assert deliver(shim, "policy") == "TOPIC_AUTHORIZATION_FAILED"
    assert deliver(shim, "decisions") == "TOPIC_AUTHORIZATION_FAILED"
    for kind in ("decisions", "policy", "events"):
        assert deliver(auditor, kind) == "TOPIC_AUTHORIZATION_FAILED", kind
    # What each role may do, it can: the refusals above are the ACLs, not the connection.
    assert deliver(shim, "events", value=b"not avro: the engine dead-letters it") is None
    assert deliver(as_role(secure, "operator"), "control", value=b"not avro either") is None


def test_redis_refuses_plaintext_strangers_and_other_keys(secure):
    import redis

    engine = as_role(secure, "engine")
    port = engine.redis_port
    tls = {"ssl": True, "ssl_ca_certs": str(secure.ca_cert), "socket_timeout": 5, "socket_connect_timeout": 5}
    with pytest.raises(redis.ConnectionError):
        redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, socket_connect_timeout=5).ping()  # plaintext
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=port, **tls).ping()  # no user: `default` is off
    r = redis.Redis(host="127.0.0.1", port=port, username="engine", password=engine.redis_password, **tls)
    try:
        zone = f"{engine.redis_prefix}redzone:"
        r.set(zone + "probe", "1")
        assert r.get(zone + "probe") == b"1"
        with pytest.raises(redis.exceptions.NoPermissionError):
            r.get("some-other-key")
        with pytest.raises(redis.exceptions.NoPermissionError):
            r.flushall()
        with pytest.raises(redis.exceptions.NoPermissionError):
            r.delete(zone + "probe")  # not a command the store uses
    finally:
        r.close()


def test_the_worker_and_trustctl_redzone_refuse_a_rejected_redis_user(secure):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRUST_")}
    env.update(secure.role_env("engine"), TRUST_REDIS_PASSWORD="not-the-password",
               TRUST_WEB_PORT=str(free_port()), PYTHONPATH=str(ROOT))
    done = subprocess.run([TRUSTCTL, "worker"], env=env, capture_output=True, text=True, timeout=DEADLINE)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "refused user `engine`" in lines[0] and "not-the-password" not in lines[0]
    listed = subprocess.run([TRUSTCTL, "redzone", "list"], env=env, capture_output=True, text=True,
                            timeout=DEADLINE)
    assert listed.returncode == 5
    assert "refused the credentials; check TRUST_REDIS_USERNAME" in listed.stderr
    ok = dict(env, TRUST_REDIS_PASSWORD=secure.role_env("operator")["TRUST_REDIS_PASSWORD"],
              TRUST_REDIS_USERNAME="operator")
    assert subprocess.run([TRUSTCTL, "redzone", "list"], env=ok, capture_output=True, text=True,
                          timeout=DEADLINE).returncode == 0
