"""The public surface: what users import, script and call.

Kernel shims import the SDK, operators script `trustctl` and the HTTP API,
deployments set environment variables.  Everything named here stays put
through internal reshaping; removing or renaming any of it is a breaking
change.  `tests/unit/test_public_surface.py` checks the code still offers
all of it (adding is fine).
"""

from __future__ import annotations

# Python modules -> names users import from them.
PYTHON: dict[str, tuple[str, ...]] = {
    "streams.shim": ("ShimProducer", "ShimCounters", "EventBatcher", "default_shim_id"),
    "streams.simulate": ("generate",),
    "streams.partitioner": ("partition_of", "murmur2"),
    "streams.settings": ("Settings",),
    "streams.errors": ("TrustError", "ConfigError", "EventError", "CodecError", "PolicyError",
                       "DeliveryError", "RedzoneUnavailable"),
    "streams.policy": ("load_policy",),
    "streams.worker": ("build_worker", "Worker"),
}

# The shim SDK's constructor and methods (keyword arguments by name).
SHIM_PRODUCER_ARGS = ("settings", "shim_id", "topic", "linger_ms", "max_batch", "schema_id", "config",
                      "validate", "first_seq", "partitions")
SHIM_PRODUCER_METHODS = ("send", "poll", "flush", "close", "counters", "buffered", "next_seq", "partitions")

# `trustctl` commands -> their long options.
COMMANDS: dict[str, tuple[str, ...]] = {
    "replay": ("--policy", "--events", "--out", "--strict", "--wall-clock"),
    "policy validate": (),
    "policy diff": (),
    "policy publish": ("--by",),
    "policy history": (),
    "policy keygen": ("--out",),
    "policy sign": ("--key",),
    "worker": ("--policy", "--web-port"),
    "tail": ("--follow", "--limit", "--timeout", "--deadline"),
    "produce": ("--events", "--shim-id"),
    "simulate": ("--rate", "--identities", "--duration", "--seed"),
    "stack up": ("--timeout",),
    "stack down": ("--timeout",),
    "stack status": (),
    "stack logs": ("--lines",),
    "topics ensure": ("--timeout",),
    "redzone list": ("--status", "--identity", "--json"),
    "redzone show": ("--analysis", "--json"),
    "redzone analyze": ("--by", "--reason", "--json"),
    "redzone terminate": ("--by", "--reason", "--json"),
    "redzone recover": ("--by", "--reason", "--json"),
    "audit sink": ("--dir", "--group", "--max-bytes", "--max-seconds", "--compression"),
    "audit verify": ("--dir", "--anchor", "--quiet", "--key"),
    "audit export": ("--dir", "--from", "--to", "--format", "--identity", "--kind", "--out", "--no-verify"),
    "audit keygen": ("--out",),
    "commands keygen": ("--role", "--out"),
    "shim": ("--identity", "--policy", "--gate", "--gate-timeout", "--gate-fallback", "--no-cgroup", "--shim-id"),
}

# The operators' HTTP API (method, route).
ROUTES: tuple[tuple[str, str], ...] = (
    ("GET", "/health"), ("GET", "/metrics"), ("GET", "/redzone"), ("GET", "/redzone/{process_id}"),
    ("GET", "/redzone/{process_id}/analysis"), ("POST", "/redzone/{process_id}/analyze"),
    ("POST", "/redzone/{process_id}/terminate"), ("POST", "/redzone/{process_id}/recover"),
    ("GET", "/trust/{identity}"), ("GET", "/policy"), ("GET", "/policy/history"),
)

# Environment variables a deployment may set (all read by streams.settings).
ENVIRONMENT: tuple[str, ...] = (
    "TRUST_KAFKA_BOOTSTRAP", "TRUST_KAFKA_CONTROLLER_PORT", "TRUST_REDIS_URL", "TRUST_REDIS_PASSWORD",
    "TRUST_REDIS_PROTOCOL", "TRUST_REDIS_PREFIX", "TRUST_TOPIC_PREFIX", "TRUST_PARTITIONS",
    "TRUST_REPLICATION_FACTOR", "TRUST_SCHEMA_REGISTRY_URL", "TRUST_STACK_DIR", "TRUST_CACHE_DIR",
    "TRUST_APP_ID", "TRUST_WEB_HOST", "TRUST_WEB_PORT", "TRUST_OPERATOR_TOKEN", "TRUST_TRACE_DEPTH",
    "TRUST_FETCH_WAIT_MS", "TRUST_POLICY_VERIFY_KEYS", "TRUST_AUDIT_SIGNING_KEY", "TRUST_EVENT_LOOP", "TRUST_WORKER_ID",
    "TRUST_ENGINE_SIGNING_KEY", "TRUST_OPERATOR_SIGNING_KEY", "TRUST_COMMAND_VERIFY_KEYS",
)
