"""End-to-end: shim -> Kafka -> worker -> decisions, violations, quarantines, redzone.

The same semantics offline and in the stream: every conformance folder of
tests/cases/ published through the shim must give the decisions of its
expected.jsonl.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from streams.codec.avro import codec
from tests.integration.pipeline import Pipeline, normalise, wait_for
from tests.unit.test_conformance import CASES, case_folders

pytestmark = pytest.mark.integration

CONFORMANCE = case_folders()  # every folder of tests/cases/, found by listing it
FIELDS = ("allowed", "action", "reason_code", "policy_version", "mode")


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def assert_matches(expected: list[dict], got: list[dict]) -> None:
    by_id = {d["event_id"]: d for d in got}
    assert len(by_id) == len(expected), "a decision is missing or duplicated"
    for e in expected:
        g = by_id[e["event_id"]]
        assert {f: g[f] for f in FIELDS} == {f: e[f] for f in FIELDS}, e["event_id"]
        assert abs(g["trust_score"] - e["trust_score"]) <= 1e-6, e["event_id"]


@pytest.fixture
def pipeline(stack, tmp_path_factory, request):
    made = []

    def make(name: str) -> Pipeline:
        p = Pipeline(stack, name, tmp_path_factory.mktemp("workers"))
        made.append(p)
        return p

    yield make
    for p in made:
        p.cleanup()


def event(i: int, syscall: str, args: list[str], identity: str = "svc-a", pid: str = "p-1") -> dict:
    return normalise({"event_id": f"ev-{i}", "syscall": syscall, "args": args,
                      "identity": {"id": identity, "process_id": pid},
                      "timestamp": f"2026-11-28T12:00:{i:02d}.000000Z"})


@pytest.mark.parametrize("case", CONFORMANCE, ids=lambda p: p.name)
def test_conformance_through_the_stream(pipeline, case):
    p = pipeline(case.name)
    p.publish(case / "policy.yaml")
    p.start()
    expected = jsonl(case / "expected.jsonl")
    p.send(jsonl(case / "events.jsonl"))
    assert_matches(expected, p.decisions(len(expected)))


POLICY_V1 = """
version: v1
default_action: deny
policies:
  read: {}
  mount: {}
"""


def test_policy_published_mid_stream_changes_later_decisions(pipeline, tmp_path):
    p = pipeline("hot-reload")
    (tmp_path / "v1.yaml").write_text(POLICY_V1)
    (tmp_path / "v2.yaml").write_text(POLICY_V1.replace("version: v1", "version: v2").replace("  mount: {}\n", ""))
    p.publish(tmp_path / "v1.yaml")
    p.start()
    p.send([event(1, "read", ["a"]), event(2, "mount", ["/dev/x"])])
    first = p.decisions(2)
    assert {d["policy_version"] for d in first} == {"v1"}
    assert all(d["allowed"] for d in first)
    p.publish(tmp_path / "v2.yaml")
    p.wait_policy("v2")
    p.send([event(3, "read", ["a"]), event(4, "mount", ["/dev/x"])])
    later = {d["event_id"]: d for d in p.decisions(4)}
    assert later["ev-3"]["policy_version"] == later["ev-4"]["policy_version"] == "v2"
    assert later["ev-4"]["allowed"] is False and later["ev-4"]["reason_code"] == "no_policy"


def test_malformed_input_goes_to_the_dlq_and_the_rest_is_decided(pipeline, tmp_path, producer_factory):
    p = pipeline("dlq")
    (tmp_path / "p.yaml").write_text(POLICY_V1)
    p.publish(tmp_path / "p.yaml")
    p.start()
    producer = producer_factory(partitioner="murmur2_random")
    enc = codec("SyscallEventBatch").encode
    bad_event = event(2, "read", ["a"])
    bad_event["identity"]["process_id"] = ""
    good_then_bad = enc({"shim_id": "raw", "seq": 1, "events": [event(1, "read", ["a"]), bad_event,
                                                                  event(3, "read", ["b"])]})
    producer.produce(p.settings.topic("events"), key=b"svc-a", value=b"\x07not avro at all")
    producer.produce(p.settings.topic("events"), key=b"svc-a", value=good_then_bad)
    producer.flush(30)
    dead = p.read("dlq", "DeadLetter", 2)
    reasons = {d["error_code"]: d for d in dead}
    assert reasons["undecodable"]["value"] == b"\x07not avro at all"
    assert reasons["event_invalid"]["event_index"] == 1 and "process_id" in reasons["event_invalid"]["reason"]
    assert reasons["event_invalid"]["topic"] == p.settings.topic("events")
    assert sorted(d["event_id"] for d in p.decisions(2)) == ["ev-1", "ev-3"]


def test_event_with_a_timestamp_that_is_not_rfc3339_goes_to_the_dlq_naming_the_field(pipeline, tmp_path):
    p = pipeline("timestamp")
    (tmp_path / "p.yaml").write_text(POLICY_V1)
    p.publish(tmp_path / "p.yaml")
    p.start()
    bad = event(2, "read", ["a"])
    bad["timestamp"] = "yesterday"
    p.send([event(1, "read", ["a"]), bad, event(3, "ptrace", ["1"]), event(4, "read", ["b"])])
    [dead] = p.read("dlq", "DeadLetter", 1)
    assert dead["error_code"] == "event_invalid" and dead["event_index"] == 1
    assert "`timestamp`" in dead["reason"] and "yesterday" in dead["reason"]
    assert dead["topic"] == p.settings.topic("events")
    decided = {d["event_id"]: d for d in p.decisions(3)}
    assert sorted(decided) == ["ev-1", "ev-3", "ev-4"]
    assert decided["ev-1"]["allowed"] and decided["ev-4"]["allowed"]
    assert decided["ev-3"]["reason_code"] == "no_policy"


def test_worker_restarted_mid_stream_gives_the_same_decisions(pipeline):
    case = CASES / "basic"
    p = pipeline("restart")
    p.publish(case / "policy.yaml")
    p.start()
    events, expected = jsonl(case / "events.jsonl"), jsonl(case / "expected.jsonl")
    half = len(events) // 2
    p.send(events[:half], shim_id="shim-a")
    p.decisions(half)
    p.stop()
    p.start()
    p.send(events[half:], shim_id="shim-b")
    got = p.decisions(len(expected))
    assert_matches(expected, got)


QUARANTINE_POLICY = """
version: q1
default_action: deny
policies:
  ptrace: {violation_action: quarantine, isolation_level: network, allowed_identities: []}
  connect: {}
  read: {}
"""


def test_quarantine_reaches_redis_and_blocks_what_its_isolation_covers(pipeline, tmp_path):
    p = pipeline("quarantine")
    (tmp_path / "q.yaml").write_text(QUARANTINE_POLICY)
    p.publish(tmp_path / "q.yaml")
    p.start()
    p.send([event(1, "ptrace", ["1"])])
    r = redis.Redis.from_url(p.settings.redis_url, decode_responses=True)
    key = f"{p.settings.redis_prefix}redzone:proc:p-1"
    entry = json.loads(wait_for("the quarantine in redis", lambda: r.get(key)))
    assert entry["status"] == "active" and entry["isolation_level"] == "network"
    [event_rec] = p.read("redzone", "RedzoneEvent", 1)
    assert event_rec["to_status"] == "active" and event_rec["process_id"] == "p-1"
    p.send([event(2, "connect", ["3", "x"]), event(3, "read", ["a"]),
            event(4, "connect", ["3", "x"], pid="p-2")], shim_id="later")
    by_id = {d["event_id"]: d for d in p.decisions(4)}
    assert by_id["ev-2"]["reason_code"] == "quarantined" and not by_id["ev-2"]["allowed"]
    assert by_id["ev-3"]["allowed"] and by_id["ev-3"]["reason_code"] is None
    assert by_id["ev-4"]["allowed"]  # another process of the same identity is not isolated
