"""Poisoned records on the real stack: a worker refuses them, says so in its
log and /metrics, and keeps deciding; a restarted worker reads past them.

- trust.policy: a tombstone, bytes that are not a PolicyDocument, an envelope
  whose canonical JSON is not JSON (these used to crash the worker at every
  start); `trustctl policy history` lists them, `publish` skips them;
- trust.syscall-events, trust.control, trust.quarantine: a tombstone each,
  dead-lettered;
- events with 900 KB arguments: their decisions, violations and the
  quarantine they cause all arrive (cut to fit), the process is quarantined
  in Redis, and later events are decided;
- /health: 200 with both dependencies checked;
- bytes that are not UTF-8 in a path, a query or a body: a 4xx, never a 500.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from streams.codec.avro import codec
from streams.policy.loader import load_policy_file
from streams.policy_topic import envelope_of
from tests.integration.pipeline import DEADLINE, TRUSTCTL, Pipeline, normalise, wait_for

pytestmark = pytest.mark.integration

POLICY = """
version: p-1
trust_thresholds: {quarantine: 0.5}
trust_model: {baseline: 0.7, violation_penalty: 0.15, recovery_rate: 0.01}
policies:
  read: {}
  openat:
    arg_constraints: {0: "/tmp/.*"}
    forensic_mode: full
"""
HUGE = "/etc/" + "A" * 900_000


@pytest.fixture(scope="module")
def pipe(stack, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("poison")
    (tmp / "policy.yaml").write_text(POLICY)
    p = Pipeline(stack, "poison", tmp)
    p.policy_path = tmp / "policy.yaml"
    try:
        p.publish(p.policy_path)
        p.start()
        p.wait_policy("p-1")
        yield p
    finally:
        p.cleanup()


def event(event_id: str, syscall: str = "read", args: list[str] | None = None, identity: str = "svc-a",
          pid: str = "p-1") -> dict:
    return normalise({"event_id": event_id, "syscall": syscall, "args": args or ["x"],
                      "identity": {"id": identity, "process_id": pid},
                      "timestamp": "2026-11-28T12:00:00.000000Z"})


def produce_raw(p: Pipeline, kind: str, key: bytes | None, value: bytes | None) -> None:
    producer = Producer({"bootstrap.servers": p.settings.kafka_bootstrap})
    errors: list = []
    producer.produce(p.settings.topic(kind), value=value, key=key,
                     on_delivery=lambda err, msg: err and errors.append(err))
    assert producer.flush(30) == 0 and not errors, errors


def find(p: Pipeline, kind: str, schema: str, match, unroll: str | None = None,
         timeout: float = DEADLINE) -> list[dict]:
    """The records of a topic, from the start, once `match(records)` is truthy."""
    topic = p.settings.topic(kind)
    dec = codec(schema).decode
    consumer = Consumer({"bootstrap.servers": p.settings.kafka_bootstrap, "group.id": f"r-{uuid.uuid4().hex}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest",
                         "fetch.message.max.bytes": 2_000_000})
    meta = consumer.list_topics(topic, timeout=10)
    consumer.assign([TopicPartition(topic, q, 0) for q in meta.topics[topic].partitions])
    out: list[dict] = []
    try:
        def more():
            m = consumer.poll(0.5)
            if m is not None and not m.error():
                rec = dec(m.value())
                out.extend(rec[unroll] if unroll else [rec])
            return match(out)
        wait_for(f"records on {topic}", more, timeout, every=0)
    finally:
        consumer.close()
    return out


def decided(p: Pipeline, *event_ids: str) -> dict[str, dict]:
    want = set(event_ids)
    got = find(p, "decisions", "DecisionBatch", lambda ds: want <= {d["event_id"] for d in ds}, "decisions")
    return {d["event_id"]: d for d in got if d["event_id"] in want}


def http(p: Pipeline, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{p.settings.web_port}{path}", timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def metric(p: Pipeline, sample: str) -> bool:
    return sample in http(p, "/metrics")[1].decode().splitlines()


def assert_alive(p: Pipeline) -> None:
    assert p.worker is not None and p.worker.poll() is None, p.log_tail()


def test_poisoned_policy_records_are_refused_and_the_worker_keeps_deciding(pipe):
    p = pipe
    bad = envelope_of(load_policy_file(p.policy_path), "2026-11-28T12:00:00.000000Z", "pytest")
    bad.update(version="p-bad", canonical_json="{not json")
    produce_raw(p, "policy", b"policy", None)  # a tombstone
    produce_raw(p, "policy", b"policy", b"\x00not a policy document")
    produce_raw(p, "policy", b"policy", codec("PolicyDocument").encode(bad))
    wait_for("the refusals counted", lambda: metric(
        p, 'trust_policy_records_refused_total{reason="undecodable"} 2') and metric(
        p, 'trust_policy_records_refused_total{reason="invalid"} 1'))
    p.send([event("after-poison")])
    assert decided(p, "after-poison")["after-poison"]["policy_version"] == "p-1"
    history = json.loads(http(p, "/policy/history")[1])
    assert history["in_force"] == "p-1" and [r["version"] for r in history["refused"]] == ["?", "?", "p-bad"]
    log = p.log_path.read_text(errors="replace")
    assert "ignored (undecodable), running version stays p-1" in log and "tombstone" in log
    assert "policy p-bad refused (invalid), running version stays p-1" in log
    assert_alive(p)


def test_trustctl_history_lists_the_poison_and_publish_skips_it(pipe, tmp_path):
    p = pipe
    out = subprocess.run([TRUSTCTL, "policy", "history"], env=p.env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "refused (undecodable)" in out.stdout and "tombstone" in out.stdout
    assert "p-bad" in out.stdout and out.stdout.rstrip().endswith("in force: p-1")
    (tmp_path / "p2.yaml").write_text(POLICY.replace("p-1", "p-2"))
    out = subprocess.run([TRUSTCTL, "policy", "publish", str(tmp_path / "p2.yaml")], env=p.env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "published policy p-2" in out.stdout and "skipped" in out.stderr
    p.wait_policy("p-2")


def test_a_restarted_worker_reads_past_the_poison_and_decides(pipe):
    p = pipe
    p.stop()
    p.start()
    p.wait_policy("p-2")
    p.send([event("after-restart")])
    assert decided(p, "after-restart")["after-restart"]["policy_version"] == "p-2"
    assert_alive(p)


def test_tombstones_on_events_control_and_quarantine_are_dead_lettered(pipe):
    p = pipe
    for kind in ("events", "control", "quarantine"):
        produce_raw(p, kind, b"svc-a", None)
    topics = {p.settings.topic(k) for k in ("events", "control", "quarantine")}
    dead = find(p, "dlq", "DeadLetter", lambda ds: topics <= {d["topic"] for d in ds if d["value"] == b""})
    for d in dead:
        if d["topic"] in topics and d["value"] == b"":
            assert d["error_code"] == "undecodable" and d["key"] == b"svc-a"
    p.send([event("after-tombstones")])
    decided(p, "after-tombstones")
    assert_alive(p)


def test_huge_arguments_kill_nothing_and_the_quarantine_reaches_the_redzone(pipe, redis_factory):
    p = pipe
    big = [event(f"big-{i}", "openat", [HUGE], identity="svc-big", pid="p-big") for i in range(2)]
    for e in big:  # one event per message: a message of two would be over the shim's limit
        p.send([e])
    p.send([event("after-big")])
    got = decided(p, "big-0", "big-1", "after-big")
    assert got["big-1"]["action"] == "quarantine"
    for d in (got["big-0"], got["big-1"]):
        assert d["args"][0].startswith("/etc/AAAA") and d["args"][0].endswith(" bytes]")
    violations = find(p, "violations", "Violation",
                      lambda vs: {"big-0", "big-1"} <= {v["event_id"] for v in vs})
    assert {v["event_id"] for v in violations} >= {"big-0", "big-1"}
    [cmd] = [c for c in find(p, "quarantine", "QuarantineCommand",
                             lambda cs: any(c["process_id"] == "p-big" for c in cs)) if c["process_id"] == "p-big"]
    assert [t["event_id"] for t in cmd["trace"]] == ["big-0", "big-1"]
    assert all(t["args"][0].endswith("...[truncated, 900005 bytes]") for t in cmd["trace"])
    r = redis_factory(decode_responses=True)
    key = f"{p.settings.redis_prefix}redzone:proc:p-big"
    wait_for("p-big in the redzone", lambda: r.get(key))
    assert json.loads(r.get(key))["status"] == "active"
    for kind in ("decisions", "violations"):  # 1.8 MB each (the argument, and again in the reason)
        assert metric(p, f'trust_outputs_replaced_total{{kind="{kind}",how="truncated"}} 2'), kind
    log = p.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "a `decisions` record of 18" in log
    assert_alive(p)


def test_health_is_ok_with_both_dependencies_checked(pipe):
    status, body = http(pipe, "/health")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok" and health["ready"] is True
    assert health["checks"] == {"kafka": "ok", "redis": "ok"}


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/redzone/%ff%fe", None), ("GET", "/redzone/%ff/analysis", None), ("GET", "/trust/%ff", None),
    ("GET", "/redzone?status=%ff&identity=%fe", None), ("POST", "/redzone/%ff/terminate", b"\xff\xfe"),
    ("POST", "/redzone/p-1/terminate", b"\xff\xfe"),
], ids=["show", "analysis", "trust", "list", "mutate-path", "mutate-body"])
def test_bytes_that_are_not_utf8_never_get_a_500(pipe, method, path, body):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", pipe.settings.web_port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={"Authorization": "Bearer wrong"} if body else {})
        r = conn.getresponse()
        status, raw = r.status, r.read()
    finally:
        conn.close()
    assert 400 <= status < 500 and b"Traceback" not in raw, (status, raw[:300])
    assert isinstance(json.loads(raw), dict)


def test_the_kafka_probe_names_an_unreachable_broker(stack):
    import asyncio

    from streams.settings import Settings
    from streams.web import Probe
    from streams.worker.build import _kafka_probe
    from tests.integration.pipeline import free_port

    closed = f"127.0.0.1:{free_port()}"
    down = Probe(_kafka_probe(Settings(kafka_bootstrap=closed)), timeout=10)
    up = Probe(_kafka_probe(stack), timeout=10)
    assert asyncio.run(up.error()) is None
    error = asyncio.run(down.error())
    assert error is not None and error.startswith(f"kafka at `{closed}` is unreachable")
