"""Two workers share the partitions; the redzone (Redis) is one for both."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest
import redis
from confluent_kafka import Producer

from streams.codec.avro import codec
from tests.integration.pipeline import TRUSTCTL, Pipeline, free_port, normalise, wait_for

pytestmark = pytest.mark.integration

POLICY = """
version: two-1
default_action: allow
policies: {}
"""


def test_an_operator_quarantine_blocks_the_process_on_every_worker(stack, tmp_path):
    p = Pipeline(stack, "two-workers", tmp_path)
    second = None
    try:
        (tmp_path / "p.yaml").write_text(POLICY)
        p.publish(tmp_path / "p.yaml")
        p.start()
        env = dict(p.env, TRUST_WEB_PORT=str(free_port()))
        second = subprocess.Popen([TRUSTCTL, "worker"], env=env, stdout=open(tmp_path / "w2.log", "wb"),
                                  stderr=subprocess.STDOUT, start_new_session=True)
        command = {
            "command_id": str(uuid.uuid4()), "op": "quarantine", "process_id": "shared-proc",
            "container_id": None, "identity": {"id": "svc-x", "process_id": "shared-proc",
                                               "container_id": None, "tenant": None, "labels": {}},
            "reason": "operator: suspicious beaconing", "reason_code": None, "isolation_level": "full",
            "isolation_syscalls": [], "forensic_mode": "metadata", "trace": [], "policy_version": None,
            "source": "operator:alice", "event_id": None, "timestamp": "2026-11-28T12:00:00.000000Z"}
        producer = Producer({"bootstrap.servers": p.settings.kafka_bootstrap})
        producer.produce(p.settings.topic("quarantine"), key=b"shared-proc",
                         value=codec("QuarantineCommand").encode(command))
        producer.flush(30)
        r = redis.Redis.from_url(p.settings.redis_url, decode_responses=True)
        key = f"{p.settings.redis_prefix}redzone:proc:shared-proc"
        entry = json.loads(wait_for("the operator's quarantine in redis", lambda: r.get(key)))
        assert entry["status"] == "active" and entry["history"][0]["actor"] == "operator:alice"
        # Events of the quarantined process under many identities land on every
        # partition, so both workers decide some of them; all must be blocked.
        identities = [f"svc-{i}" for i in range(24)]
        events = [normalise({"event_id": f"q-{i}", "syscall": "read", "args": [],
                             "identity": {"id": ident, "process_id": "shared-proc"},
                             "timestamp": "2026-11-28T12:00:01.000000Z"})
                  for i, ident in enumerate(identities)]
        events += [normalise({"event_id": f"free-{i}", "syscall": "read", "args": [],
                              "identity": {"id": ident, "process_id": f"other-{i}"},
                              "timestamp": "2026-11-28T12:00:01.000000Z"})
                   for i, ident in enumerate(identities)]
        p.send(events)
        decisions = {d["event_id"]: d for d in p.decisions(len(events))}
        assert all(decisions[f"q-{i}"]["reason_code"] == "quarantined" for i in range(24))
        assert all(decisions[f"free-{i}"]["allowed"] for i in range(24))
        assert len({d["event_id"] for d in decisions.values()}) == len(events)
    finally:
        if second is not None:
            second.terminate()
            second.wait(60)
        p.cleanup()
