"""Settings: one object, read from the environment, defaults for the local stack.

Secrets (the Kafka and Redis passwords, the operator token) only ever come from the
environment; nothing here has a secret default.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from streams.errors import ConfigError
from streams.topics import TOPICS

# Kind -> topic name suffix, from the one topic registry (streams/topics.py).
TOPIC_NAMES = {t.kind: t.suffix for t in TOPICS}


def _int(env: dict, name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"`{name}` must be a whole number, got `{raw}`") from None


def _choice(env: dict, name: str, choices: tuple[str, ...], default: str) -> str:
    raw = env.get(name) or default
    if raw not in choices:
        raise ConfigError(f"`{name}` must be one of {', '.join(choices)}, got `{raw}`")
    return raw


KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN")


def _upper_choice(env: dict, name: str, default: str, allowed: tuple[str, ...]) -> str:
    raw = (env.get(name) or default).strip().upper()
    if raw not in allowed:
        raise ConfigError(f"`{name}` must be one of {', '.join(allowed)}, got `{env.get(name)}`")
    return raw


def _flag(env: dict, name: str) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise ConfigError(f"`{name}` must be 1 or 0, got `{env.get(name)}`")


def _path(env: dict, name: str) -> Path | None:
    return Path(env[name]) if env.get(name) else None


@dataclass(frozen=True, slots=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_controller_port: int = 9093
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_password: str | None = field(default=None, repr=False)
    redis_protocol: int = 3
    redis_prefix: str = "trust:"
    topic_prefix: str = "trust."
    partitions: int = 6
    replication_factor: int = 1
    schema_registry_url: str | None = None
    stack_dir: Path = Path.home() / ".local" / "share" / "forgeone-trust" / "stack"
    cache_dir: Path = Path.home() / ".cache" / "forgeone-trust"
    app_id: str = "forgeone-trust"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    operator_token: str | None = field(default=None, repr=False)
    trace_depth: int = 64
    fetch_wait_ms: int = 10  # the consumer's fetch wait (Faust hard-codes 1,500 ms: seconds of latency)
    schema_dir: Path | None = None  # None: the installed schemas (streams/codec/avro.py)
    codec_compiled: bool = True  # False: fastavro alone (for comparisons in benchmarks)
    worker_id: str | None = None  # static group membership id; None: derived (streams/worker/faustfix.py)
    event_loop: str = "uvloop"  # the worker's asyncio loop: `uvloop` or `aio` (the standard one)
    # Signing (docs/security.md): paths only, the keys stay in their files.
    policy_verify_keys: tuple[Path, ...] = ()
    audit_signing_key: Path | None = None
    engine_signing_key: Path | None = None  # signs the engine's quarantine commands
    operator_signing_key: Path | None = None  # signs operators' transitions and trust resets
    command_verify_keys: tuple[Path, ...] = ()  # unset: command signatures not checked
    # Kafka and Redis security (docs/security.md, deploy/README.md "--secure"): the
    # passwords only from the environment, never from a file the repository holds.
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "SCRAM-SHA-512"
    kafka_username: str | None = None
    kafka_password: str | None = field(default=None, repr=False)
    kafka_ca_file: Path | None = None
    redis_username: str | None = None
    redis_ca_file: Path | None = None
    stack_secure: bool = False
    # (user, password) the secure stack gives its users instead of generated ones.
    stack_passwords: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def topic(self, kind: str) -> str:
        """Full topic name for a kind of docs/behaviour.md §4 (`events`, `decisions`, ...)."""
        try:
            return self.topic_prefix + TOPIC_NAMES[kind]
        except KeyError:
            raise ConfigError(f"unknown topic kind `{kind}`") from None

    @property
    def redis_port(self) -> int:
        from urllib.parse import urlparse

        return urlparse(self.redis_url).port or 6379

    @property
    def kafka_port(self) -> int:
        return int(self.kafka_bootstrap.split(",")[0].rsplit(":", 1)[1])

    @classmethod
    def from_env(cls, env: dict | None = None) -> "Settings":
        env = dict(os.environ if env is None else env)
        d = cls()
        return cls(
            kafka_bootstrap=env.get("TRUST_KAFKA_BOOTSTRAP") or d.kafka_bootstrap,
            kafka_controller_port=_int(env, "TRUST_KAFKA_CONTROLLER_PORT", d.kafka_controller_port),
            redis_url=env.get("TRUST_REDIS_URL") or d.redis_url,
            redis_password=env.get("TRUST_REDIS_PASSWORD") or None,
            redis_protocol=_int(env, "TRUST_REDIS_PROTOCOL", d.redis_protocol),
            redis_prefix=env.get("TRUST_REDIS_PREFIX") or d.redis_prefix,
            topic_prefix=env.get("TRUST_TOPIC_PREFIX", d.topic_prefix),
            partitions=_int(env, "TRUST_PARTITIONS", d.partitions),
            replication_factor=_int(env, "TRUST_REPLICATION_FACTOR", d.replication_factor),
            schema_registry_url=env.get("TRUST_SCHEMA_REGISTRY_URL") or None,
            stack_dir=Path(env["TRUST_STACK_DIR"]) if env.get("TRUST_STACK_DIR") else d.stack_dir,
            cache_dir=Path(env["TRUST_CACHE_DIR"]) if env.get("TRUST_CACHE_DIR") else d.cache_dir,
            app_id=env.get("TRUST_APP_ID") or d.app_id,
            web_host=env.get("TRUST_WEB_HOST") or d.web_host,
            web_port=_int(env, "TRUST_WEB_PORT", d.web_port),
            operator_token=env.get("TRUST_OPERATOR_TOKEN") or None,
            trace_depth=_int(env, "TRUST_TRACE_DEPTH", d.trace_depth),
            fetch_wait_ms=_int(env, "TRUST_FETCH_WAIT_MS", d.fetch_wait_ms),
            schema_dir=Path(env["TRUST_SCHEMA_DIR"]) if env.get("TRUST_SCHEMA_DIR") else None,
            codec_compiled=env.get("TRUST_CODEC_COMPILED", "1") != "0",
            worker_id=env.get("TRUST_WORKER_ID") or None,
            event_loop=_choice(env, "TRUST_EVENT_LOOP", ("aio", "uvloop"), d.event_loop),
            policy_verify_keys=tuple(Path(p.strip()) for p in env.get("TRUST_POLICY_VERIFY_KEYS", "").split(",")
                                     if p.strip()),
            audit_signing_key=Path(env["TRUST_AUDIT_SIGNING_KEY"]) if env.get("TRUST_AUDIT_SIGNING_KEY") else None,
            engine_signing_key=_path(env, "TRUST_ENGINE_SIGNING_KEY"),
            operator_signing_key=_path(env, "TRUST_OPERATOR_SIGNING_KEY"),
            command_verify_keys=tuple(Path(p.strip()) for p in env.get("TRUST_COMMAND_VERIFY_KEYS", "").split(",")
                                      if p.strip()),
            kafka_security_protocol=_upper_choice(env, "TRUST_KAFKA_SECURITY_PROTOCOL", d.kafka_security_protocol,
                                            KAFKA_SECURITY_PROTOCOLS),
            kafka_sasl_mechanism=_upper_choice(env, "TRUST_KAFKA_SASL_MECHANISM", d.kafka_sasl_mechanism,
                                         KAFKA_SASL_MECHANISMS),
            kafka_username=env.get("TRUST_KAFKA_USERNAME") or None,
            kafka_password=env.get("TRUST_KAFKA_PASSWORD") or None,
            kafka_ca_file=_path(env, "TRUST_KAFKA_CA_FILE"),
            redis_username=env.get("TRUST_REDIS_USERNAME") or None,
            redis_ca_file=_path(env, "TRUST_REDIS_CA_FILE"),
            stack_secure=_flag(env, "TRUST_STACK_SECURE"),
            stack_passwords=tuple((user, env[name]) for user, name in (
                ("admin", "TRUST_STACK_PASSWORD_ADMIN"), ("shim", "TRUST_STACK_PASSWORD_SHIM"),
                ("engine", "TRUST_STACK_PASSWORD_ENGINE"), ("operator", "TRUST_STACK_PASSWORD_OPERATOR"),
                ("auditor", "TRUST_STACK_PASSWORD_AUDITOR")) if env.get(name)),
        )
