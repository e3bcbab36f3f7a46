"""Bad input at volume, on the real stack: nothing crashes, nothing is dropped silently.

- 10,000 malformed records (random bytes, Avro of other schemas, JSON, 900 KB
  values, empty values, null values, no key) interleaved with valid shim
  traffic on trust.syscall-events: every bad record in trust.dlq exactly once,
  found by its partition and offset, with its error code, a reason, and its
  original key and bytes; every valid event decided as the offline replay
  decides it; the worker alive and healthy.
- Malformed records straight to trust.control: each in the DLQ, the worker alive.
- Poisoned records straight to trust.policy: each refused and logged, the
  running policy stays, the next valid policy is taken, and
  `trustctl policy history` lists them without crashing.
- Odd HTTP requests to the worker's API: never a 500, never a dead worker.
"""

from __future__ import annotations

import http.client
import subprocess
import threading
import uuid

import pytest
from confluent_kafka import Producer

from streams.codec.avro import codec
from streams.policy.loader import load_policy_file
from tests.faults.accounting import account, offline
from tests.faults.harness import DecisionCollector, pace
from tests.faults.malformed import Bad, bad_controls, bad_events, bad_policies
from tests.faults.workload import strace_copies, write_strace_policy
from tests.integration.pipeline import TRUSTCTL, wait_for

pytestmark = pytest.mark.integration

BAD_COUNT = 10_000
RATE = 600.0  # valid events/s; one bad record goes with each valid event


class RawWriter:
    """Writes records as they are (no shim, no validation); remembers where each landed."""

    def __init__(self, settings):
        self.producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 5,
                                  "partitioner": "murmur2_random", "message.max.bytes": 2_000_000})
        self.landed: list[tuple[Bad, str, int, int]] = []  # (bad, topic, partition, offset)
        self.failed: list[str] = []

    def write(self, topic: str, bad: Bad) -> None:
        def done(err, msg, bad=bad):
            if err is not None:
                self.failed.append(f"{bad.kind}: {err}")
            else:
                self.landed.append((bad, msg.topic(), msg.partition(), msg.offset()))
        while True:
            try:
                self.producer.produce(topic, key=bad.key, value=bad.value, on_delivery=done)
                break
            except BufferError:
                self.producer.poll(0.1)
        self.producer.poll(0)

    def flush(self) -> None:
        assert self.producer.flush(120) == 0, "raw records not delivered"
        assert not self.failed, self.failed[:5]


def dead_letters(p, count: int, timeout: float = 300.0) -> list[dict]:
    return p.read("dlq", "DeadLetter", count, timeout)


def assert_each_in_dlq(landed, dead: list[dict]) -> None:
    """Each bad record exactly once in the DLQ, by topic/partition/offset, as written."""
    by_place: dict[tuple, list[dict]] = {}
    for d in dead:
        by_place.setdefault((d["topic"], d["partition"], d["offset"]), []).append(d)
    problems = []
    for bad, topic, partition, offset in landed:
        got = by_place.get((topic, partition, offset), [])
        if len(got) != 1:
            problems.append(f"{bad.kind} at {partition}/{offset}: {len(got)} dead letters")
            continue
        d = got[0]
        if d["error_code"] != bad.code or not d["reason"]:
            problems.append(f"{bad.kind}: error_code {d['error_code']!r}, want {bad.code!r}")
        if d["key"] != bad.key or d["value"] != (bad.value if bad.value is not None else b""):
            problems.append(f"{bad.kind} at {partition}/{offset}: key or value not kept")
    assert not problems, f"{len(problems)} problems, e.g. {problems[:5]}"


def test_ten_thousand_bad_records_among_valid_traffic(pipeline, tmp_path):
    p = pipeline("bad-burst")
    policy = write_strace_policy(tmp_path / "policy.yaml")
    p.publish(policy)
    p.start()
    p.wait_policy(load_policy_file(policy).version)
    collector = DecisionCollector(p.settings)
    collector.start()
    from streams.shim import ShimProducer

    shim = ShimProducer(p.settings, shim_id=f"valid-{uuid.uuid4().hex[:6]}")
    raw = RawWriter(p.settings)
    bads = bad_events(BAD_COUNT)
    events_topic = p.settings.topic("events")
    sent: list[dict] = []

    def interleave(event: dict) -> None:  # one bad record right before each valid event
        sent.append(event)
        bad = next(bads, None)
        if bad is not None:
            raw.write(events_topic, bad)

    pace(strace_copies(), shim, RATE, threading.Event(), interleave, limit=BAD_COUNT)
    assert shim.close(60) == 0 and shim.counters.events_failed == 0
    raw.flush()
    assert len(raw.landed) == BAD_COUNT
    dead = dead_letters(p, BAD_COUNT)
    assert len(dead) == BAD_COUNT, f"{len(dead) - BAD_COUNT} dead letters more than bad records"
    assert_each_in_dlq(raw.landed, dead)
    ids = [e["event_id"] for e in sent]
    collector.drain(set(ids), quiet=60, deadline=300)
    collector.stop()
    acc = account(ids, collector.snapshot(), offline(load_policy_file(policy), sent).decisions)
    print(f"bad burst: {BAD_COUNT} bad records all in the DLQ; valid: {acc.to_dict()}")
    assert acc.lossless and acc.duplicates == 0, acc.to_dict()
    health = p.health()
    assert health and health["status"] == "ok", health
    assert p.worker.poll() is None
    metrics = p.metrics()
    assert metrics.get('trust_dlq_total{error_code="undecodable"}') == BAD_COUNT


def test_an_empty_batch_goes_to_the_dlq(pipeline, tmp_path):
    p = pipeline("empty-batch")
    policy = write_strace_policy(tmp_path / "policy.yaml")
    p.publish(policy)
    p.start()
    raw = RawWriter(p.settings)
    empty = codec("SyscallEventBatch").encode({"shim_id": "x", "seq": 0, "events": []})
    raw.write(p.settings.topic("events"), Bad("empty batch", b"tool-ls.c0", empty, "event_invalid"))
    raw.flush()
    assert_each_in_dlq(raw.landed, dead_letters(p, 1, timeout=30))


def test_malformed_control_records_go_to_the_dlq_and_the_worker_decides_on(pipeline, tmp_path):
    p = pipeline("bad-control")
    policy = write_strace_policy(tmp_path / "policy.yaml")
    p.publish(policy)
    p.start()
    p.wait_policy(load_policy_file(policy).version)
    raw = RawWriter(p.settings)
    bads = bad_controls()
    for bad in bads:
        raw.write(p.settings.topic("control"), bad)
    raw.flush()
    assert_each_in_dlq(raw.landed, dead_letters(p, len(bads), timeout=120))
    p.send([next(strace_copies())])
    assert len(p.decisions(1)) == 1
    assert p.worker.poll() is None and (p.health() or {}).get("status") == "ok"


def test_poisoned_policy_records_are_refused_and_the_running_policy_stays(pipeline, tmp_path):
    p = pipeline("bad-policy")
    policy = write_strace_policy(tmp_path / "policy.yaml")
    running = load_policy_file(policy).version
    p.publish(policy)
    p.start()
    p.wait_policy(running)
    raw = RawWriter(p.settings)
    bads = []
    for bad in bad_policies(running):  # one at a time: the broker refuses a whole batch for one bad record
        raw.write(p.settings.topic("policy"), bad)
        raw.producer.flush(60)
        if bad.key is None:  # a compacted topic takes no record without a key: the broker says so
            assert raw.failed and "INVALID_RECORD" in raw.failed.pop(), f"a keyless record on {bad.kind}"
            continue
        bads.append(bad)
    raw.flush()
    history = wait_for("every poisoned record refused", lambda: _history(p, len(bads)), timeout=120)
    assert history["in_force"] == running
    assert p.worker.poll() is None and (p.health() or {}).get("policy_version") == running
    # The watcher still works: the next valid policy goes into force.
    newer = tmp_path / "newer.yaml"
    newer.write_text(policy.read_text().replace(running, running + "-next"))
    p.publish(newer)
    p.wait_policy(running + "-next")
    log = p.log_path.read_text(errors="replace")
    assert log.count("refused (") + log.count("ignored (undecodable)") >= len(bads)
    assert max(len(line) for line in log.splitlines()) < 20_000, "a poisoned record wrote a huge log line"
    out = subprocess.run([TRUSTCTL, "policy", "history"], env=p.env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert running + "-next" in out.stdout


def _history(p, refused: int) -> dict | None:
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{p.settings.web_port}/policy/history", timeout=10) as r:
            body = json.loads(r.read())
    except OSError:
        return None
    return body if len(body["refused"]) >= refused else None


ODD_REQUESTS = [
    ("GET", "/redzone/%00", b"", {}),
    ("GET", "/redzone/" + "x" * 4000, b"", {}),
    ("GET", "/redzone/..%2F..%2Fetc%2Fpasswd/analysis", b"", {}),
    ("GET", "/trust/%ff%fe", b"", {}),
    ("GET", "/redzone?status=%ff&identity=" + "y" * 3000, b"", {}),
    ("GET", "/redzone?status=bogus", b"", {}),
    ("POST", "/redzone/p-1/recover", b"\xff\xfe not utf-8", {"Authorization": "Bearer x"}),
    ("POST", "/redzone/p-1/terminate", b"{" * 10_000, {"Authorization": "Bearer \x00"}),
    ("POST", "/redzone/p-1/analyze", b"[]", {"Authorization": "Basic Zm9vOmJhcg=="}),
    ("POST", "/health", b"x", {}),
    ("DELETE", "/policy", b"", {}),
    ("GET", "/metrics?" + "a=b&" * 500, b"", {}),
]


def test_odd_http_requests_never_get_a_500_nor_stop_the_worker(pipeline, tmp_path):
    p = pipeline("http")
    policy = write_strace_policy(tmp_path / "policy.yaml")
    p.publish(policy)
    p.start()
    p.wait_policy(load_policy_file(policy).version)
    statuses = []
    for method, path, body, headers in ODD_REQUESTS:
        conn = http.client.HTTPConnection("127.0.0.1", p.settings.web_port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers)
            statuses.append((method, path[:40], conn.getresponse().status))
        finally:
            conn.close()
    assert all(s < 500 for _, _, s in statuses), statuses
    assert p.worker.poll() is None and (p.health() or {}).get("status") == "ok"
