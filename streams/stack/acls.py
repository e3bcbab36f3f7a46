"""Who may do what on the secure stack: Kafka ACLs and Redis ACL users, as data.

Pure: no Kafka or Redis client is imported.  `kafka_acls` is what
`trustctl stack up --secure` makes the broker hold (anything else granted to
these users is removed); `redis_acl_lines` is what goes into redis.conf.
docs/security.md has the same tables in words.

Kafka principals are SCRAM users, one per role:

    shim      writes syscall events, nothing else
    engine    reads events, control, quarantine, policy; writes decisions,
              violations, quarantine, redzone events, dead letters and control
              (the recover of its operator HTTP API resets trust there); owns
              its consumer group and its Faust topics (`<app id>-...`)
    operator  writes policy, control, quarantine, redzone events; reads every
              topic of the prefix; creates the topics (`trustctl topics ensure`,
              the trust table's changelog included)
    auditor   reads decisions, violations, redzone events, policy; its own
              consumer groups (`<app id>-audit...`)

and `admin`, the broker's own user (inter-broker and controller traffic, the
stack's health checks, these ACLs): a super user, never handed to a client.
Operators and auditors may also Describe `trustctl-...` groups, which
trustctl's readers name without joining them.  No transactional ids are
granted: the engine runs at-least-once, without Kafka transactions
(streams/worker/build.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from streams.settings import Settings
from streams.topics import TOPICS

ADMIN = "admin"
ROLES = ("shim", "engine", "operator", "auditor")
REDIS_ROLES = ("engine", "operator")  # who talks to Redis at all


class Resource(str, Enum):
    TOPIC = "topic"
    GROUP = "group"


class Pattern(str, Enum):
    LITERAL = "literal"
    PREFIXED = "prefixed"


class Operation(str, Enum):
    READ = "read"  # implies describe
    WRITE = "write"  # implies describe
    CREATE = "create"
    DESCRIBE = "describe"


@dataclass(frozen=True, slots=True, order=True)
class Acl:
    """One ALLOW rule for a user, from any host."""

    user: str
    resource: Resource
    pattern: Pattern
    name: str
    operation: Operation

    @property
    def principal(self) -> str:
        return f"User:{self.user}"


TOOL_GROUPS = "trustctl-"  # group names of trustctl's own consumers

# Topic kinds (streams/topics.py) per role and operation.
SHIM_WRITES = ("events",)
ENGINE_READS = ("events", "control", "quarantine", "policy")
ENGINE_WRITES = ("decisions", "violations", "quarantine", "redzone", "dlq", "control")
OPERATOR_WRITES = ("policy", "control", "quarantine", "redzone")
AUDITOR_READS = ("decisions", "violations", "redzone", "policy")


def kafka_acls(settings: Settings) -> tuple[Acl, ...]:
    """Every ALLOW rule of the four roles for the settings' topic prefix and app id, sorted."""
    topic, app_id = settings.topic, settings.app_id
    T, G = Resource.TOPIC, Resource.GROUP
    LIT, PRE = Pattern.LITERAL, Pattern.PREFIXED
    R, W, C, D = Operation.READ, Operation.WRITE, Operation.CREATE, Operation.DESCRIBE
    rules: list[Acl] = []
    rules += [Acl("shim", T, LIT, topic(k), W) for k in SHIM_WRITES]
    rules += [Acl("engine", T, LIT, topic(k), R) for k in ENGINE_READS]
    rules += [Acl("engine", T, LIT, topic(k), W) for k in ENGINE_WRITES]
    # Faust's own topics: the trust table's changelog, the assignor's leader topic.
    rules += [Acl("engine", T, PRE, f"{app_id}-", op) for op in (C, R, W)]
    rules += [Acl("engine", G, LIT, app_id, R)]
    rules += [Acl("operator", T, LIT, topic(k), W) for k in OPERATOR_WRITES]
    if settings.topic_prefix:
        rules += [Acl("operator", T, PRE, settings.topic_prefix, op) for op in (R, C)]
    else:  # no prefix to match on: each topic by name
        rules += [Acl("operator", T, LIT, topic(t.kind), op) for t in TOPICS for op in (R, C)]
    # `trustctl topics ensure` also creates the trust table's changelog (streams/kafka/admin.py).
    rules += [Acl("operator", T, LIT, f"{app_id}-trust-changelog", op) for op in (C, D)]
    rules += [Acl("auditor", T, LIT, topic(k), R) for k in AUDITOR_READS]
    rules += [Acl("auditor", G, PRE, f"{app_id}-audit", R)]
    # trustctl's readers (tail, policy history) assign partitions without joining a
    # group, but librdkafka still looks up their group's coordinator: Describe only.
    rules += [Acl(role, G, PRE, TOOL_GROUPS, D) for role in ("operator", "auditor")]
    return tuple(sorted(set(rules)))


# -- Redis ------------------------------------------------------------------------

# What redis-py sends on connecting (HELLO; its CLIENT SETINFO may fail) and on a pub/sub
# health check (PING), then what the redzone store runs (streams/redzone/redis_store.py).
REDIS_CONNECT = ("hello", "ping")
REDIS_STORE = ("get", "set", "mget", "sadd", "smembers", "watch", "unwatch", "multi", "exec",
               "discard", "publish")
REDIS_FOLLOW = ("subscribe", "unsubscribe")


@dataclass(frozen=True, slots=True)
class RedisUser:
    name: str
    keys: str  # one key pattern
    channels: str  # one pub/sub channel pattern
    commands: tuple[str, ...]


def redis_users(redis_prefix: str) -> tuple[RedisUser, ...]:
    """The engine (store and follower) and the operators (store only), on the
    redzone's keys and channel (`<TRUST_REDIS_PREFIX>redzone:*`) only."""
    zone = f"{redis_prefix}redzone:*"
    return (
        RedisUser("engine", zone, zone, REDIS_CONNECT + REDIS_STORE + REDIS_FOLLOW),
        RedisUser("operator", zone, zone, REDIS_CONNECT + REDIS_STORE),
    )


def redis_acl_lines(redis_prefix: str, password_sha256: dict[str, str]) -> list[str]:
    """`user ...` lines of redis.conf: no default user, `admin` for the stack
    itself, the roles of `redis_users`; passwords only as SHA-256 hashes."""
    lines = ["user default off resetkeys resetchannels -@all",
             f"user {ADMIN} on #{password_sha256[ADMIN]} ~* &* +@all"]
    for user in redis_users(redis_prefix):
        allowed = " ".join(f"+{c}" for c in user.commands)
        lines.append(f"user {user.name} on #{password_sha256[user.name]} resetkeys ~{user.keys} "
                     f"resetchannels &{user.channels} -@all {allowed}")
    return lines
