"""Signed commands on the real broker and Redis: a worker with TRUST_COMMAND_VERIFY_KEYS
refuses forged trust resets on `trust.control` and forged recover commands on
`trust.quarantine` (nothing changes; each is logged and dead-lettered with its
reason), and applies the genuine ones: the engine's own quarantine, signed with
its key, and an operator's recovery, signed with the operator key.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
import uuid

import pytest
import redis

from streams import command_signature as cs
from streams import signing
from streams.codec.avro import codec
from streams.kafka import clients
from streams.kafka.read import read_to_end
from streams.settings import Settings
from tests.integration.pipeline import TRUSTCTL, Pipeline, normalise, wait_for

pytestmark = pytest.mark.integration

POLICY = """
version: cmd-1
default_action: deny
trust_thresholds: {quarantine: 0.5}
policies:
  read: {}
"""
IDENT, PID = "svc-signed", "p-signed"


@pytest.fixture
def pipeline(stack, tmp_path_factory):
    p = Pipeline(stack, "cmd-signing", tmp_path_factory.mktemp("workers"))
    yield p
    p.cleanup()


def trustctl(p: Pipeline, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([TRUSTCTL, *args], env=p.env, capture_output=True, text=True, timeout=120)


def get_trust(p: Pipeline) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{p.settings.web_port}/trust/{IDENT}", timeout=5) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return json.loads(exc.read())


def redis_entry(p: Pipeline) -> dict | None:
    raw = redis.Redis.from_url(p.settings.redis_url).get(f"{p.settings.redis_prefix}redzone:proc:{PID}")
    return None if raw is None else json.loads(raw)


def event(n: int, syscall: str) -> dict:
    return normalise({"event_id": f"{IDENT}-{n}", "syscall": syscall, "args": ["a"],
                      "identity": {"id": IDENT, "process_id": PID},
                      "timestamp": f"2026-11-28T12:00:{n:02d}.000000Z"})


def all_records(p: Pipeline, kind: str, schema: str) -> list[dict]:
    """Every record of a topic up to its current end."""
    dec = codec(schema).decode
    return [dec(m.value()) for m in read_to_end(p.settings, p.settings.topic(kind))]


def produce(p: Pipeline, kind: str, key: str, values: list[bytes]) -> None:
    """What anyone allowed to write the topic can do (murmur2, like the project's producers)."""
    producer = clients.producer(p.settings, f"mallory-{uuid.uuid4().hex[:6]}", **{"linger.ms": 0})
    for value in values:
        producer.produce(p.settings.topic(kind), key=key.encode(), value=value)
    assert producer.flush(30) == 0


def test_forged_trust_resets_and_recover_commands_change_nothing_and_are_logged(pipeline, tmp_path):
    p = pipeline
    keys = tmp_path / "keys"
    for role in ("engine", "operator"):
        made = trustctl(p, "commands", "keygen", "--role", role, "--out", str(keys))
        assert made.returncode == 0, made.stderr
    p.env.update({"TRUST_ENGINE_SIGNING_KEY": str(keys / "engine-signing.key"),
                  "TRUST_OPERATOR_SIGNING_KEY": str(keys / "operator-signing.key"),
                  "TRUST_COMMAND_VERIFY_KEYS": f"{keys / 'engine-signing.pub'},{keys / 'operator-signing.pub'}"})
    signed = Settings.from_env(p.env)  # p.settings (the attacker's below) has no keys
    ring = cs.command_keyring(signed)
    engine_key = signing.load_signing_key(keys / "engine-signing.key")
    operator_key = signing.load_signing_key(keys / "operator-signing.key")
    stranger = signing.load_signing_key(signing.keygen(tmp_path / "stranger", "k")[0])
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    p.publish(policy)
    p.start()
    p.wait_policy("cmd-1")
    wait_for("the worker ready", lambda: (p.health() or {}).get("status") == "ok")

    # the engine's own quarantine (signed with the engine key) is applied
    p.send([event(1, "read"), event(2, "mount"), event(3, "mount")])  # 0.703 -> 0.553 -> 0.403: quarantine
    wait_for("the engine's quarantine in redis", lambda: redis_entry(p))
    [command] = p.read("quarantine", "QuarantineCommand", 1)
    assert cs.verify_quarantine_command(command, ring)["signature_key_id"] == engine_key.key_id
    [entered] = p.read("redzone", "RedzoneEvent", 1)
    assert (entered["to_status"], cs.verify_redzone_event(entered, ring).get("signature_key_id")) == (
        "active", engine_key.key_id)
    trust = wait_for("the trust entry", lambda: (lambda t: t if t.get("found") else None)(get_trust(p)))
    assert (trust["trust"], trust["last_control_id"]) == (0.403, None)
    in_redzone = redis_entry(p)

    # forged trust resets straight onto trust.control
    reset = {"command_id": "forged-reset", "op": "reset_trust", "identity_id": IDENT, "reason": "trust me",
             "actor": "operator:mallory", "timestamp": "2026-11-28T12:30:00.000000Z"}
    genuine_elsewhere = cs.sign_record("TrustControl", dict(reset, identity_id="svc-other"), operator_key)
    enc = codec("TrustControl").encode
    produce(p, "control", IDENT, [
        enc(reset),                                                       # unsigned
        enc(cs.sign_record("TrustControl", reset, stranger)),             # an unknown key
        enc(dict(genuine_elsewhere, identity_id=IDENT)),                  # a genuine reset, retargeted
    ])
    # forged recover commands straight onto trust.quarantine
    recover = dict(command, op="recover", command_id="forged-recover", source="operator:mallory",
                   timestamp="2026-11-28T12:31:00.000000Z", signature_key_id=None, signature=None)
    qenc = codec("QuarantineCommand").encode
    produce(p, "quarantine", PID, [
        qenc(recover),                                                    # unsigned
        qenc(cs.sign_record("QuarantineCommand", recover, stranger)),     # an unknown key
        qenc(dict(command, op="recover")),                                # the engine's command, op changed
    ])
    dead = p.read("dlq", "DeadLetter", 6)
    by_topic = {}
    for d in dead:
        by_topic.setdefault(d["topic"], []).append(d["error_code"])
    assert by_topic == {p.settings.topic("control"): ["unsigned", "unknown_key", "bad_signature"],
                        p.settings.topic("quarantine"): ["unsigned", "unknown_key", "bad_signature"]}
    assert all("a replay" not in d["reason"] and d["reason"] for d in dead)
    after = get_trust(p)
    assert (after["trust"], after["last_control_id"]) == (0.403, None)
    assert redis_entry(p) == in_redzone and in_redzone["status"] == "active"
    assert [e["to_status"] for e in all_records(p, "redzone", "RedzoneEvent")] == ["active"]  # no transition
    log = p.log_tail(400)
    for topic in ("control", "quarantine"):
        for reason in ("unsigned", "unknown_key", "bad_signature"):
            assert f"command refused ({reason}) at {p.settings.topic(topic)}[" in log, log

    # the operator's genuine recovery (trustctl with the operator key) works end to end
    out = trustctl(p, "redzone", "recover", PID, "--by", "alice", "--json")
    assert out.returncode == 0, out.stderr
    assert redis_entry(p)["status"] == "recovered"
    [control] = [c for c in all_records(p, "control", "TrustControl") if c["actor"] == "operator:alice"]
    assert cs.verify_trust_control(control, ring).get("signature_key_id") == operator_key.key_id
    reset_applied = wait_for("the signed trust reset applied", lambda: (
        lambda t: t if t.get("last_control_id") == control["command_id"] else None)(get_trust(p)))
    assert reset_applied["trust"] == 0.7 == reset_applied["baseline"]
    events = all_records(p, "redzone", "RedzoneEvent")
    assert [e["to_status"] for e in events] == ["active", "recovered"]
    assert cs.verify_redzone_event(events[1], ring)["signature_key_id"] == operator_key.key_id
