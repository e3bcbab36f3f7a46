"""The local stack's pure parts, without starting anything."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from streams.errors import StackError
from streams.kafka.admin import topic_specs
from streams.topics import DAY_MS
from streams.settings import Settings
from streams.stack.kafka import KafkaBroker, new_cluster_id
from streams.stack.process import pid_alive, require_loopback, tail, wait_until, write_private
from streams.stack.redis import RedisServer


def _settings(tmp_path, **env) -> Settings:
    return Settings.from_env({"TRUST_STACK_DIR": str(tmp_path / "stack"),
                              "TRUST_CACHE_DIR": str(tmp_path / "cache"), **env})


def test_cluster_id_looks_like_kafkas():
    ids = {new_cluster_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_-]{21}", i) for i in ids)


def test_broker_config_is_single_node_kraft(tmp_path):
    broker = KafkaBroker(_settings(tmp_path), report=lambda m: None)
    broker.write_config()
    props = dict(
        line.split("=", 1) for line in broker.props.read_text().splitlines() if not line.startswith("#")
    )
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093"
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.min.isr"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["num.partitions"] == "6"
    assert props["log.dirs"] == str(tmp_path / "stack" / "kafka" / "data")


def test_redis_password_only_in_a_private_file(tmp_path):
    server = RedisServer(_settings(tmp_path, TRUST_REDIS_PASSWORD='p "w\\x'), report=lambda m: None)
    server.write_config()
    assert os.stat(server.conf).st_mode & 0o777 == 0o600
    text = server.conf.read_text()
    assert 'requirepass "p \\"w\\\\x"' in text
    assert "appendonly yes" in text and "appendfsync everysec" in text
    assert "port 6379" in text and "daemonize yes" in text


def test_no_password_no_requirepass(tmp_path):
    server = RedisServer(_settings(tmp_path), report=lambda m: None)
    server.write_config()
    assert "requirepass" not in server.conf.read_text()


def test_only_loopback_hosts(tmp_path):
    assert require_loopback("localhost", "X") == "127.0.0.1"
    with pytest.raises(StackError, match="`TRUST_REDIS_URL` names host `10.1.2.3`"):
        RedisServer(_settings(tmp_path, TRUST_REDIS_URL="redis://10.1.2.3:6379/0"), lambda m: None)


def test_pid_alive_needs_the_marker_and_ignores_zombies():
    assert pid_alive(os.getpid(), "python") or pid_alive(os.getpid(), sys.executable)
    assert not pid_alive(os.getpid(), "no-such-marker-xyz")
    assert not pid_alive(None, "x") and not pid_alive(0, "x")
    child = subprocess.Popen(["sleep", "0"])
    stat = f"/proc/{child.pid}/stat"
    assert wait_until(lambda: open(stat).read().rsplit(")", 1)[1].split()[0] == "Z", 10.0, 0.01)
    assert not pid_alive(child.pid, "sleep")  # a zombie is dead (and gets reaped)
    assert not os.path.exists(stat)
    child.wait()


def test_tail_and_private_write(tmp_path):
    log = tmp_path / "log"
    log.write_text("".join(f"line {i}\n" for i in range(1000)))
    assert tail(log, 3) == "line 997\nline 998\nline 999"
    assert tail(tmp_path / "missing", 3) == ""
    secret = tmp_path / "secret"
    secret.write_text("old")
    secret.chmod(0o644)
    write_private(secret, "new")
    assert secret.read_text() == "new" and os.stat(secret).st_mode & 0o777 == 0o600


def test_topic_specs_cover_spec_section_4():
    specs = {s.kind: s for s in topic_specs(Settings())}
    assert set(specs) == {"events", "decisions", "violations", "quarantine", "redzone", "policy", "dlq",
                          "enforcement", "control"}
    assert all(s.partitions == 6 and s.replication_factor == 1
               for s in specs.values() if s.kind != "policy")
    assert specs["policy"].partitions == 1  # one key, read whole by every worker
    assert specs["policy"].config["cleanup.policy"] == "compact"
    assert specs["dlq"].config["retention.ms"] == str(14 * DAY_MS)
    for kind in ("decisions", "violations", "redzone", "control"):
        assert specs[kind].config["retention.ms"] == str(7 * DAY_MS)
    # Co-partitioned with the events: the decide agent reads both into one trust table.
    assert specs["control"].partitions == specs["events"].partitions
    assert specs["control"].name == "trust.control"
