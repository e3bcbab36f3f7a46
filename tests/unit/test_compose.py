"""docker-compose.yml agrees with the code: versions, ports, env names, topics.

Docker is not available on the project's machines, so the compose file is
checked here instead of being run: every number or name it repeats from
streams/settings.py, deploy/kafka/pom.xml or docs/behaviour.md §4 must be the same.
"""

from __future__ import annotations

import inspect
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from streams.kafka.admin import topic_specs
from streams.settings import Settings
from streams.stack import KAFKA_VERSION
from streams.stack.acls import ADMIN, REDIS_ROLES, ROLES, redis_acl_lines
from streams.stack.security import SASL_MECHANISM

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "docs" / "behaviour.md"  # the behaviour spec, same section numbers as the reference

# docs/behaviour.md §4, in table order.
SPEC_TOPICS = [
    "trust.syscall-events",
    "trust.decisions",
    "trust.violations",
    "trust.quarantine",
    "trust.redzone-events",
    "trust.policy",
    "trust.dlq",
    "trust.enforcement",
]
# Beyond the reference's §4 (docs/behaviour.md §4): created after the SPEC topics.
EXTENSION_TOPICS = ["trust.control"]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def _host_port(mapping: str) -> tuple[str, int, int]:
    """'127.0.0.1:9092:9092' -> ('127.0.0.1', 9092, 9092); '9092:9092' -> ('', ...)."""
    parts = mapping.split(":")
    host, host_port, container_port = parts if len(parts) == 3 else ["", *parts]
    return host, int(host_port), int(container_port)


def _listener_ports(value: str) -> dict[str, int]:
    return {name: int(port) for name, port in re.findall(r"(\w+)://[^:,]*:(\d+)", value)}


def _env_names_read_by_settings() -> set[str]:
    return set(re.findall(r'"(TRUST_[A-Z_]+)"', inspect.getsource(Settings.from_env)))


PLAIN = {"kafka", "redis", "topics", "worker"}
SECURE = {"certs", "kafka-secure", "redis-secure", "kafka-acls", "topics-secure", "worker-secure"}


def test_has_the_four_services_and_the_secure_profile(services):
    assert {n for n, s in services.items() if "profiles" not in s} == PLAIN
    assert {n for n, s in services.items() if s.get("profiles") == ["secure"]} == SECURE
    assert set(services) == PLAIN | SECURE


def test_kafka_version_matches_pom_and_stack(services):
    pom = ET.parse(ROOT / "deploy" / "kafka" / "pom.xml").getroot()
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}
    pom_version = pom.find("m:properties/m:kafka.version", ns).text
    assert services["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"
    assert pom_version == KAFKA_VERSION


def test_kafka_ports_match_settings(services):
    defaults = Settings()
    env = services["kafka"]["environment"]
    listeners = _listener_ports(env["KAFKA_LISTENERS"])
    advertised = _listener_ports(env["KAFKA_ADVERTISED_LISTENERS"])
    assert listeners["PLAINTEXT"] == advertised["PLAINTEXT"] == defaults.kafka_port
    assert listeners["CONTROLLER"] == defaults.kafka_controller_port
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].endswith(f":{defaults.kafka_controller_port}")
    assert ("127.0.0.1", defaults.kafka_port, defaults.kafka_port) in [
        _host_port(p) for p in services["kafka"]["ports"]
    ]
    # The engine inside the network talks to the INTERNAL listener.
    for name in ("topics", "worker"):
        bootstrap = services[name]["environment"]["TRUST_KAFKA_BOOTSTRAP"]
        assert bootstrap == f"kafka:{listeners['INTERNAL']}"


def test_kafka_broker_settings_match_the_local_stack(services):
    env = services["kafka"]["environment"]
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_NUM_PARTITIONS"] == str(Settings().partitions)
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "1"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert "-Xmx512m" in env["KAFKA_HEAP_OPTS"]


def test_redis_port_and_persistence_match_settings(services):
    defaults = Settings()
    redis = services["redis"]
    assert redis["image"] == "redis:7"
    assert ("127.0.0.1", defaults.redis_port, defaults.redis_port) in [_host_port(p) for p in redis["ports"]]
    command = " ".join(redis["command"])
    assert "appendonly yes" in command and "appendfsync everysec" in command
    for name in ("topics", "worker"):
        url = services[name]["environment"]["TRUST_REDIS_URL"]
        assert url == f"redis://redis:{defaults.redis_port}/0"


def test_env_names_are_ones_settings_reads(services):
    known = _env_names_read_by_settings()
    assert {"TRUST_KAFKA_BOOTSTRAP", "TRUST_REDIS_URL", "TRUST_REDIS_PASSWORD"} <= known
    for name, service in services.items():
        used = {k for k in service.get("environment", {}) if k.startswith("TRUST_")}
        assert used <= known, f"{name} sets variables Settings does not read: {used - known}"


def test_password_comes_from_the_host_env_only(services):
    for name in ("redis", "topics", "worker"):
        assert services[name]["environment"]["TRUST_REDIS_PASSWORD"] == "${TRUST_REDIS_PASSWORD:-}"
    assert "requirepass" not in str(services["redis"].get("environment", {}))


def test_engine_services_run_trustctl(services):
    assert services["topics"]["command"] == ["trustctl", "topics", "ensure"]
    assert services["worker"]["command"] == ["trustctl", "worker"]
    for name in ("topics", "worker"):
        assert services[name]["build"]["dockerfile"] == "deploy/Dockerfile"
    assert services["topics"]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["worker"]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    assert dockerfile.startswith("#") and "FROM python:3.11-slim" in dockerfile
    assert 'CMD ["trustctl", "worker"]' in dockerfile


def test_topic_names_match_spec(services):
    env = services["worker"]["environment"]
    settings = Settings.from_env({k: str(v) for k, v in env.items()})
    assert settings.topic_prefix == Settings().topic_prefix
    assert settings.partitions == Settings().partitions
    assert [s.name for s in topic_specs(settings)] == SPEC_TOPICS + EXTENSION_TOPICS
    assert {s.name: s.config["cleanup.policy"] for s in topic_specs(settings)}["trust.policy"] == "compact"


def test_topics_service_comment_lists_every_topic():
    text = (ROOT / "docker-compose.yml").read_text()
    block = text.split("  topics:", 1)[1].split("command:", 1)[0]
    listed = re.findall(r"trust\.[a-z-]+", block.split("list):", 1)[1])
    assert listed == SPEC_TOPICS + EXTENSION_TOPICS


def test_spec_table_lists_the_same_topics():
    section = SPEC.read_text().split("## 4. Topics", 1)[1].split("\n## ", 1)[0]
    assert re.findall(r"^\| `(trust\.[a-z-]+)` \|", section, re.M) == SPEC_TOPICS + EXTENSION_TOPICS


# -- the `secure` profile: what `trustctl stack up --secure` runs, with Docker -------------

def _env(services, name: str) -> dict:
    return services[name]["environment"]


def _settings_of(services, name: str) -> Settings:
    env = {k: str(v) for k, v in _env(services, name).items() if k.startswith("TRUST_")}
    return Settings.from_env(env)


def test_secure_kafka_is_the_local_secure_broker(services):
    env = _env(services, "kafka-secure")
    assert services["kafka-secure"]["image"] == f"apache/kafka:{KAFKA_VERSION}"
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert env["KAFKA_SUPER_USERS"] == f"User:{ADMIN}"
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    protocols = dict(p.split(":") for p in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert protocols == {"SASL_SSL": "SASL_SSL", "CONTROLLER": "SASL_PLAINTEXT", "INTERNAL": "SASL_SSL"}
    assert env["KAFKA_SASL_ENABLED_MECHANISMS"] == SASL_MECHANISM
    assert "PLAINTEXT" not in env["KAFKA_ADVERTISED_LISTENERS"]
    assert env["KAFKA_SSL_KEYSTORE_TYPE"] == "PEM" and env["KAFKA_SSL_CLIENT_AUTH"] == "none"
    for key in ("KAFKA_NUM_PARTITIONS", "KAFKA_AUTO_CREATE_TOPICS_ENABLE", "KAFKA_HEAP_OPTS",
                "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"):
        assert env[key] == _env(services, "kafka")[key], key


def test_secure_ports_beside_the_plain_ones(services):
    listeners = _listener_ports(_env(services, "kafka-secure")["KAFKA_ADVERTISED_LISTENERS"])
    assert ("127.0.0.1", listeners["SASL_SSL"], 9092) in [_host_port(p) for p in services["kafka-secure"]["ports"]]
    plain_host_ports = {_host_port(p)[1] for n in PLAIN for p in services[n].get("ports", [])}
    secure_host_ports = {_host_port(p)[1] for n in SECURE for p in services[n].get("ports", [])}
    assert not plain_host_ports & secure_host_ports


def test_certificate_names_the_hosts_clients_use(services):
    command = " ".join(services["certs"]["command"])
    hosts = set(re.findall(r"--host (\S+)", command))
    for name in ("kafka-acls", "topics-secure", "worker-secure"):
        assert _settings_of(services, name).kafka_bootstrap.split(":")[0] in hosts
    assert "redis-secure" in hosts and "trustctl stack certs --out /certs" in command


def test_secure_roles_and_acls(services):
    acls = _settings_of(services, "kafka-acls")
    assert services["kafka-acls"]["command"] == ["trustctl", "stack", "acls", "--apply"]
    assert (acls.kafka_username, acls.kafka_sasl_mechanism) == (ADMIN, "PLAIN")
    assert {k for k in _env(services, "kafka-acls") if k.startswith("TRUST_STACK_PASSWORD_")} == {
        f"TRUST_STACK_PASSWORD_{u.upper()}" for u in (ADMIN, *ROLES)}
    for name, role in (("topics-secure", "operator"), ("worker-secure", "engine")):
        s = _settings_of(services, name)
        assert (s.kafka_security_protocol, s.kafka_sasl_mechanism) == ("SASL_SSL", SASL_MECHANISM)
        assert s.kafka_username == role and str(s.kafka_ca_file) == "/certs/ca.pem"
        # The ACLs were made for the same names the role uses.
        assert (s.topic_prefix, s.app_id) == (acls.topic_prefix, acls.app_id)
    worker = _settings_of(services, "worker-secure")
    assert worker.redis_url == "rediss://redis-secure:6379/0" and worker.redis_username == "engine"
    assert str(worker.redis_ca_file) == "/certs/ca.pem"


def test_secure_redis_has_the_acl_users_of_the_local_stack(services):
    command = services["redis-secure"]["command"][-1]
    assert "port 0" in command and "tls-port 6379" in command
    user_lines = re.findall(r"printf '(user [^']*)\\n'", command)
    prefix = _settings_of(services, "worker-secure").redis_prefix
    assert user_lines == redis_acl_lines(prefix, {u: "%s" for u in (ADMIN, *REDIS_ROLES)})
    assert {k for k in _env(services, "redis-secure")} == {
        f"TRUST_STACK_PASSWORD_{u.upper()}" for u in (ADMIN, *REDIS_ROLES)}


def test_secure_passwords_come_from_the_host_env_only(services):
    for name in SECURE:
        for key, value in services[name].get("environment", {}).items():
            if "PASSWORD" in key:
                assert re.fullmatch(r"\$\{TRUST_STACK_PASSWORD_[A-Z]+:-\}", str(value)), (name, key)
    jaas = _env(services, "kafka-secure")["KAFKA_LISTENER_NAME_CONTROLLER_PLAIN_SASL_JAAS_CONFIG"]
    assert re.findall(r'"([^"]*)"', jaas) == ["admin", "${TRUST_STACK_PASSWORD_ADMIN:-}",
                                             "${TRUST_STACK_PASSWORD_ADMIN:-}"]
    # Without every password `certs` fails, and every secure server waits for it.
    assert "exit 1" in services["certs"]["command"][-1]
    for name in ("kafka-secure", "redis-secure"):
        assert services[name]["depends_on"]["certs"]["condition"] == "service_completed_successfully"
