"""The secure stack's pure parts: who may do what, client configs, files made, without a server."""

from __future__ import annotations

import hashlib
import os
import ssl
import stat
import subprocess
from pathlib import Path

import pytest

from streams.errors import ConfigError, StackError
from streams.kafka import clients
from streams.settings import Settings
from streams.stack.acls import ADMIN, Acl, Operation, Pattern, Resource, kafka_acls, redis_acl_lines, redis_users
from streams.stack.kafka import KafkaBroker
from streams.stack.redis import RedisServer
from streams.stack.security import StackSecurity, ensure_certificates

R, W, C, D = Operation.READ, Operation.WRITE, Operation.CREATE, Operation.DESCRIBE


def _settings(tmp_path, **env) -> Settings:
    return Settings.from_env({"TRUST_STACK_DIR": str(tmp_path / "stack"),
                              "TRUST_CACHE_DIR": str(tmp_path / "cache"), **env})


def _topic_rules(user: str, op: Operation, settings: Settings | None = None) -> set[str]:
    rules = kafka_acls(settings or Settings())
    return {a.name for a in rules if a.user == user and a.operation is op and a.resource is Resource.TOPIC}


# -- Kafka ACLs per role -----------------------------------------------------------------

def test_a_shim_may_only_write_syscall_events():
    rules = [a for a in kafka_acls(Settings()) if a.user == "shim"]
    assert rules == [Acl("shim", Resource.TOPIC, Pattern.LITERAL, "trust.syscall-events", W)]


def test_the_engine_reads_its_inputs_and_writes_its_outputs():
    assert _topic_rules("engine", R) == {"trust.syscall-events", "trust.control", "trust.quarantine",
                                         "trust.policy", "forgeone-trust-"}
    assert _topic_rules("engine", W) == {"trust.decisions", "trust.violations", "trust.quarantine",
                                         "trust.redzone-events", "trust.dlq", "trust.control", "forgeone-trust-"}
    # Faust's changelog and assignor topics, under the app id only; its group by name.
    assert _topic_rules("engine", C) == {"forgeone-trust-"}
    engine = [a for a in kafka_acls(Settings()) if a.user == "engine"]
    assert {a.pattern for a in engine if a.name == "forgeone-trust-"} == {Pattern.PREFIXED}
    assert [a for a in engine if a.resource is Resource.GROUP] == [
        Acl("engine", Resource.GROUP, Pattern.LITERAL, "forgeone-trust", R)]


def test_the_auditor_only_reads():
    rules = [a for a in kafka_acls(Settings()) if a.user == "auditor"]
    assert {a.operation for a in rules} == {R, D}
    assert _topic_rules("auditor", R) == {"trust.decisions", "trust.violations", "trust.redzone-events",
                                          "trust.policy"}
    assert {(a.name, a.pattern, a.operation) for a in rules if a.resource is Resource.GROUP} == {
        ("forgeone-trust-audit", Pattern.PREFIXED, R), ("trustctl-", Pattern.PREFIXED, D)}


def test_only_operators_write_policy_and_create_topics():
    rules = kafka_acls(Settings())
    writers = {a.user for a in rules if a.operation is W and a.name == "trust.policy"}
    assert writers == {"operator"}
    assert _topic_rules("operator", W) == {"trust.policy", "trust.control", "trust.quarantine",
                                           "trust.redzone-events"}
    assert _topic_rules("operator", C) == {"trust.", "forgeone-trust-trust-changelog"}  # topics ensure
    # Nobody but the engine (its own topics) and operators (the prefix) may create topics.
    assert {a.user for a in rules if a.operation is C} == {"engine", "operator"}
    assert ADMIN not in {a.user for a in rules}  # the super user needs no ACL


def test_acls_follow_the_prefix_and_app_id():
    s = Settings.from_env({"TRUST_TOPIC_PREFIX": "it.x.", "TRUST_APP_ID": "app-7"})
    names = {a.name for a in kafka_acls(s)}
    assert "it.x.syscall-events" in names and "app-7-" in names and "app-7" in names
    assert not any(n.startswith("trust.") or n.startswith("forgeone-trust") for n in names)
    empty = Settings.from_env({"TRUST_TOPIC_PREFIX": ""})
    operator = [a for a in kafka_acls(empty) if a.user == "operator" and a.operation is C]
    assert operator and all(a.pattern is Pattern.LITERAL and a.name for a in operator)


def test_acls_are_sorted_and_unique():
    rules = kafka_acls(Settings())
    assert list(rules) == sorted(set(rules))


# -- Redis ACL users ---------------------------------------------------------------------

def test_redis_users_are_confined_to_the_redzone_keys():
    lines = redis_acl_lines("trust:", {"admin": "a" * 64, "engine": "b" * 64, "operator": "c" * 64})
    assert lines[0] == "user default off resetkeys resetchannels -@all"
    engine = next(line for line in lines if line.startswith("user engine "))
    assert "~trust:redzone:*" in engine and "&trust:redzone:*" in engine and "-@all" in engine
    assert "+@all" not in engine and "+subscribe" in engine and "+flushall" not in engine
    operator = next(line for line in lines if line.startswith("user operator "))
    assert "+subscribe" not in operator and "+publish" in operator
    assert all(f"#{h * 64}" in line for h, line in zip("abc", lines[1:]))
    assert [u.name for u in redis_users("x:")] == ["engine", "operator"]


# -- client configuration ------------------------------------------------------------------

SECURE_ENV = {"TRUST_KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "TRUST_KAFKA_USERNAME": "engine",
              "TRUST_KAFKA_PASSWORD": "s3cret-password"}


def test_plaintext_is_unchanged():
    s = Settings()
    assert clients.security_config(s) == {}
    assert clients.common_config(s)["bootstrap.servers"] == "127.0.0.1:9092"
    assert clients.aiokafka_options(s) == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}
    assert clients.faust_credentials(s) is None and clients.ssl_context(s) is None


def test_sasl_ssl_reaches_every_client_library(tmp_path):
    ca = tmp_path / "ca.pem"
    ensure_certificates(tmp_path)
    s = Settings.from_env({**SECURE_ENV, "TRUST_KAFKA_CA_FILE": str(ca)})
    conf = clients.producer_config(s, "x")
    assert {k: conf[k] for k in ("security.protocol", "sasl.mechanism", "sasl.username", "sasl.password",
                                 "ssl.ca.location", "ssl.endpoint.identification.algorithm")} == {
        "security.protocol": "sasl_ssl", "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "engine",
        "sasl.password": "s3cret-password", "ssl.ca.location": str(ca),
        "ssl.endpoint.identification.algorithm": "https"}
    options = clients.aiokafka_options(s)
    assert options["security_protocol"] == "SASL_SSL" and options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == ("engine", "s3cret-password")
    context = options["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    creds = clients.faust_credentials(s)
    assert creds.protocol.value == "SASL_SSL" and creds.mechanism.value == "SCRAM-SHA-512"
    assert creds.username == "engine" and creds.ssl_context is not None
    assert "s3cret" not in repr(creds) and "s3cret" not in repr(s)


def test_the_shim_takes_the_same_security(tmp_path):
    from streams.shim import ShimProducer

    made = []
    shim = ShimProducer(Settings.from_env(SECURE_ENV), shim_id="t", partitions=1,
                        producer_factory=lambda conf: made.append(conf) or object())
    assert shim._config["sasl.username"] == "engine" and shim._config["security.protocol"] == "sasl_ssl"


def test_sasl_without_credentials_or_with_a_missing_ca_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="`TRUST_KAFKA_PASSWORD` must be set with security protocol `SASL_SSL`"):
        clients.common_config(Settings.from_env({**SECURE_ENV, "TRUST_KAFKA_PASSWORD": ""}))
    with pytest.raises(ConfigError, match="`TRUST_KAFKA_USERNAME`"):
        clients.aiokafka_options(Settings.from_env({**SECURE_ENV, "TRUST_KAFKA_USERNAME": ""}))
    with pytest.raises(ConfigError, match="not a readable file"):
        clients.faust_credentials(Settings.from_env({**SECURE_ENV, "TRUST_KAFKA_CA_FILE": str(tmp_path / "no")}))


def test_settings_refuse_unknown_protocols_and_flags():
    with pytest.raises(ConfigError, match="`TRUST_KAFKA_SECURITY_PROTOCOL` must be one of"):
        Settings.from_env({"TRUST_KAFKA_SECURITY_PROTOCOL": "TLS"})
    with pytest.raises(ConfigError, match="`TRUST_KAFKA_SASL_MECHANISM`"):
        Settings.from_env({"TRUST_KAFKA_SASL_MECHANISM": "GSSAPI"})
    with pytest.raises(ConfigError, match="`TRUST_STACK_SECURE` must be 1 or 0, got `maybe`"):
        Settings.from_env({"TRUST_STACK_SECURE": "maybe"})
    s = Settings.from_env({"TRUST_STACK_SECURE": "1", "TRUST_STACK_PASSWORD_ENGINE": "e" * 12})
    assert s.stack_secure and s.stack_passwords == (("engine", "e" * 12),)
    assert "eeeeeeeeeeee" not in repr(s)


def test_redis_client_sends_the_user_and_checks_tls(tmp_path):
    from streams.redzone.redis_store import redis_client

    s = Settings.from_env({"TRUST_REDIS_URL": "rediss://127.0.0.1:16379/0", "TRUST_REDIS_USERNAME": "engine",
                           "TRUST_REDIS_PASSWORD": "pw", "TRUST_REDIS_CA_FILE": str(tmp_path / "ca.pem")})
    kw = redis_client(s).connection_pool.connection_kwargs
    assert (kw["username"], kw["password"]) == ("engine", "pw")
    assert kw["ssl_ca_certs"] == str(tmp_path / "ca.pem") and kw["ssl_check_hostname"] is True
    plain = redis_client(Settings()).connection_pool.connection_kwargs
    assert "ssl_ca_certs" not in plain and plain["username"] is None


# -- the stack's files ----------------------------------------------------------------------

def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_prepare_makes_private_files_and_role_envs(tmp_path):
    s = _settings(tmp_path, TRUST_KAFKA_BOOTSTRAP="127.0.0.1:19092", TRUST_REDIS_URL="redis://127.0.0.1:16379/0",
                  TRUST_STACK_PASSWORD_SHIM="given-shim-password")
    sec = StackSecurity(s)
    sec.prepare(lambda m: None)
    assert _mode(sec.dir) == 0o700
    for private in (sec.ca_key, sec.key, sec.keystore, sec.passwords_file, *map(sec.env_file, ("shim", "engine"))):
        assert _mode(private) == 0o600, private
    pw = sec.passwords()
    assert pw["shim"] == "given-shim-password" and len(set(pw.values())) == 5
    engine = sec.role_settings("engine")
    assert (engine.kafka_security_protocol, engine.kafka_username, engine.kafka_password) == (
        "SASL_SSL", "engine", pw["engine"])
    assert engine.redis_url == "rediss://127.0.0.1:16379/0" and engine.redis_password == pw["engine"]
    assert engine.kafka_ca_file == sec.ca_cert == engine.redis_ca_file
    shim_env = sec.env_file("shim").read_text()
    assert "export TRUST_KAFKA_USERNAME=shim" in shim_env and "REDIS" not in shim_env
    # Sourcing the file gives the same settings.
    out = subprocess.run(["sh", "-c", f". {sec.env_file('engine')}; env"], capture_output=True, text=True,
                         env={"PATH": os.environ["PATH"]}, check=True).stdout
    env = dict(line.split("=", 1) for line in out.splitlines() if line.startswith("TRUST_"))
    assert env["TRUST_KAFKA_PASSWORD"] == pw["engine"] and env["TRUST_REDIS_USERNAME"] == "engine"
    before = sec.passwords_file.read_text()
    sec.prepare(lambda m: None)  # idempotent: nothing regenerated
    assert sec.passwords_file.read_text() == before


def test_prepare_refuses_a_plain_stack_bad_passwords_and_a_new_admin_password(tmp_path):
    s = _settings(tmp_path)
    (s.stack_dir / "kafka" / "data").mkdir(parents=True)
    (s.stack_dir / "kafka" / "data" / "meta.properties").write_text("x")
    with pytest.raises(StackError, match="set up without --secure"):
        StackSecurity(s).prepare(lambda m: None)
    with pytest.raises(StackError, match="`TRUST_STACK_PASSWORD_ENGINE` must be 12 or more"):
        StackSecurity(_settings(tmp_path / "b", TRUST_STACK_PASSWORD_ENGINE='x"y,z]' * 3)).prepare(lambda m: None)
    c = _settings(tmp_path / "c")
    StackSecurity(c).prepare(lambda m: None)
    (c.stack_dir / "kafka" / "data").mkdir(parents=True)
    (c.stack_dir / "kafka" / "data" / "meta.properties").write_text("x")
    with pytest.raises(StackError, match="cannot change afterwards"):
        StackSecurity(_settings(tmp_path / "c", TRUST_STACK_PASSWORD_ADMIN="another-admin-pw")).prepare(lambda m: None)


def test_certificate_chain_and_names(tmp_path):
    from cryptography import x509

    ensure_certificates(tmp_path, ("localhost", "kafka-secure"))
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    cert = x509.load_pem_x509_certificate((tmp_path / "server.pem").read_bytes())
    cert.verify_directly_issued_by(ca)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"localhost", "kafka-secure"}
    assert {str(a) for a in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    assert (tmp_path / "kafka-keystore.pem").read_text().startswith("-----BEGIN PRIVATE KEY-----")
    # Python's TLS accepts the pair (a server context loads it; a client trusts the CA).
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
    ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    first = (tmp_path / "server.pem").read_bytes()
    ensure_certificates(tmp_path, ("localhost", "kafka-secure"))
    assert (tmp_path / "server.pem").read_bytes() == first  # kept while valid, same names
    ensure_certificates(tmp_path, ("localhost", "kafka-secure", "redis-secure"))
    assert (tmp_path / "server.pem").read_bytes() != first  # another name: a new certificate


def test_secure_broker_config(tmp_path):
    s = _settings(tmp_path, TRUST_KAFKA_BOOTSTRAP="127.0.0.1:19092", TRUST_KAFKA_CONTROLLER_PORT="19093")
    sec = StackSecurity(s)
    sec.prepare(lambda m: None)
    broker = KafkaBroker(s, lambda m: None, sec)
    broker.write_config()
    assert _mode(broker.props) == 0o600
    props = dict(line.split("=", 1) for line in broker.props.read_text().splitlines() if not line.startswith("#"))
    assert props["listeners"] == "SASL_SSL://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["advertised.listeners"] == "SASL_SSL://127.0.0.1:19092"
    assert props["listener.security.protocol.map"] == "SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT"
    assert props["authorizer.class.name"] == "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
    assert props["super.users"] == "User:admin" and props["allow.everyone.if.no.acl.found"] == "false"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512" and props["ssl.keystore.type"] == "PEM"
    assert sec.passwords()["admin"] in props["listener.name.controller.plain.sasl.jaas.config"]
    assert "PLAINTEXT://" not in props["listeners"].replace("SASL_PLAINTEXT", "")


def test_format_passes_the_admin_password_in_a_removed_file_not_argv(tmp_path):
    s = _settings(tmp_path)
    sec = StackSecurity(s)
    sec.prepare(lambda m: None)
    broker = KafkaBroker(s, lambda m: None, sec)
    broker.write_config()
    seen = tmp_path / "seen"
    java = tmp_path / "java"  # records its argv and the argument file it was given
    java.write_text(f'#!/bin/sh\necho "$@" > {seen}\ncat "${{1#@}}" >> {seen}\n')
    java.chmod(0o700)
    broker.format_storage(str(java))
    argv, *argfile = seen.read_text().splitlines()
    password = sec.passwords()["admin"]
    assert password not in argv and argv.startswith("@")
    assert f'"SCRAM-SHA-512=[name=admin,password={password}]"' in argfile
    assert not Path(argv[1:]).exists()  # removed after use


def test_secure_redis_config(tmp_path):
    s = _settings(tmp_path, TRUST_REDIS_URL="redis://127.0.0.1:16379/0", TRUST_REDIS_PASSWORD="ignored-here")
    sec = StackSecurity(s)
    sec.prepare(lambda m: None)
    server = RedisServer(s, lambda m: None, sec)
    server.write_config()
    text = server.conf.read_text()
    assert _mode(server.conf) == 0o600
    lines = text.splitlines()
    assert "port 0" in lines and "tls-port 16379" in lines and f"tls-cert-file {sec.cert}" in lines
    assert "requirepass" not in text and "user default off resetkeys resetchannels -@all" in lines
    for user, password in sec.passwords().items():
        assert password not in text
        if user in ("admin", "engine", "operator"):
            assert "#" + hashlib.sha256(password.encode()).hexdigest() in text
