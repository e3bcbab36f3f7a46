"""Settings: one object, read from the environment, defaults for the local stack.

Secrets (the Redis password, the operator token) only ever come from the
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
    fetch_wait_ms: int | None = None
    schema_dir: Path | None = None  # None: the installed schemas (streams/codec/avro.py)
    codec_compiled: bool = True  # False: fastavro alone (for comparisons in benchmarks)
    event_loop: str = "uvloop"  # the worker's asyncio loop: `uvloop` or `aio` (the standard one)
    # Signing (docs/security.md): paths only, the keys stay in their files.
    policy_verify_keys: tuple[Path, ...] = ()
    audit_signing_key: Path | None = None
    engine_signing_key: Path | None = None  # signs the engine's quarantine commands
    operator_signing_key: Path | None = None  # signs operators' transitions and trust resets
    command_verify_keys: tuple[Path, ...] = ()  # unset: command signatures not checked

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
            fetch_wait_ms=_int(env, "TRUST_FETCH_WAIT_MS", 0) or None,
            schema_dir=Path(env["TRUST_SCHEMA_DIR"]) if env.get("TRUST_SCHEMA_DIR") else None,
            codec_compiled=env.get("TRUST_CODEC_COMPILED", "1") != "0",
            event_loop=_choice(env, "TRUST_EVENT_LOOP", ("aio", "uvloop"), d.event_loop),
            policy_verify_keys=tuple(Path(p.strip()) for p in env.get("TRUST_POLICY_VERIFY_KEYS", "").split(",")
                                     if p.strip()),
            audit_signing_key=Path(env["TRUST_AUDIT_SIGNING_KEY"]) if env.get("TRUST_AUDIT_SIGNING_KEY") else None,
            engine_signing_key=_path(env, "TRUST_ENGINE_SIGNING_KEY"),
            operator_signing_key=_path(env, "TRUST_OPERATOR_SIGNING_KEY"),
            command_verify_keys=tuple(Path(p.strip()) for p in env.get("TRUST_COMMAND_VERIFY_KEYS", "").split(",")
                                      if p.strip()),
        )
