"""The topics of SPEC §4 and creating them (confluent-kafka AdminClient).

`topic_specs` is pure: it says what each topic should look like.
`ensure_topics` talks to the broker: creates what is missing, leaves what
exists alone (it reports, but does not change, a partition count that differs
from the settings).  Faust creates its own changelog topics; they are not here.

Retention (documented in deploy/README.md):

    trust.syscall-events   1 day     high volume; the decisions keep the trace
    trust.decisions        7 days
    trust.violations       7 days
    trust.quarantine       7 days
    trust.redzone-events   7 days    audit trail of redzone transitions
    trust.policy           compacted, kept forever; 1 partition (one key, read whole by every worker)
    trust.dlq              14 days   time to look at and replay bad input
    trust.control          7 days    beyond SPEC §4: operator commands to the decide
                                     agent (trust resets); key = identity id, as many
                                     partitions as the events (co-partitioned)
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from streams.errors import StackError
from streams.settings import TOPIC_NAMES, Settings

DAY_MS = 24 * 60 * 60 * 1000

TOPIC_CONFIG: dict[str, dict[str, str]] = {
    "events": {"cleanup.policy": "delete", "retention.ms": str(1 * DAY_MS)},
    "decisions": {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
    "violations": {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
    "quarantine": {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
    "redzone": {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
    "policy": {"cleanup.policy": "compact", "retention.ms": "-1"},
    "dlq": {"cleanup.policy": "delete", "retention.ms": str(14 * DAY_MS)},
    "control": {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
    "enforcement": {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)},
}

_QUIET = logging.getLogger("streams.kafka.admin.librdkafka")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


@dataclass(frozen=True, slots=True)
class TopicSpec:
    kind: str
    name: str
    partitions: int
    replication_factor: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class EnsureReport:
    created: tuple[TopicSpec, ...]
    existing: tuple[TopicSpec, ...]
    # name -> partition count found, for existing topics that differ from the spec
    mismatched: dict[str, int] = field(default_factory=dict)


def topic_specs(settings: Settings) -> tuple[TopicSpec, ...]:
    """Every topic of SPEC §4, in table order, then the extension topics (`control`)."""
    if set(TOPIC_CONFIG) != set(TOPIC_NAMES):
        raise AssertionError("TOPIC_CONFIG and settings.TOPIC_NAMES list different kinds")
    return tuple(
        TopicSpec(
            kind=kind,
            name=settings.topic(kind),
            partitions=1 if kind == "policy" else settings.partitions,
            replication_factor=settings.replication_factor,
            config=dict(TOPIC_CONFIG[kind]),
        )
        for kind in TOPIC_NAMES
    )


def admin_client(settings: Settings):
    """An AdminClient for the configured brokers (connects lazily)."""
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": settings.kafka_bootstrap, "logger": _QUIET})


def topic_partitions(admin, timeout: float) -> dict[str, int]:
    """Topic name -> partition count, from one metadata request."""
    from confluent_kafka import KafkaException

    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise StackError(
            f"kafka did not answer within {timeout:.0f} s ({exc.args[0].str()}): "
            "is it running? (`trustctl stack up`)"
        ) from exc
    return {name: len(t.partitions) for name, t in metadata.topics.items() if t.error is None}


def ensure_topics(settings: Settings, timeout: float = 30.0, admin=None) -> EnsureReport:
    """Create the topics of SPEC §4 that are missing; idempotent."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    admin = admin or admin_client(settings)
    specs = topic_specs(settings)
    found = topic_partitions(admin, timeout)
    missing = [s for s in specs if s.name not in found]
    created: list[TopicSpec] = []
    if missing:
        futures = admin.create_topics(
            [NewTopic(s.name, s.partitions, s.replication_factor, config=s.config) for s in missing],
            operation_timeout=timeout,
            request_timeout=timeout,
        )
        for spec in missing:
            try:
                futures[spec.name].result()
                created.append(spec)
            except KafkaException as exc:
                error = exc.args[0]
                if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue  # created by someone else meanwhile: counts as existing
                raise StackError(f"could not create topic `{spec.name}`: {error.str()}") from exc
        _wait_visible(admin, [s.name for s in created], timeout)
        found = topic_partitions(admin, timeout)
    created_names = {s.name for s in created}
    existing = [s for s in specs if s.name not in created_names]
    mismatched = {
        s.name: found[s.name]
        for s in existing
        if s.name in found and found[s.name] != s.partitions
    }
    return EnsureReport(tuple(created), tuple(existing), mismatched)


def group_lag(settings: Settings, kinds: tuple[str, ...] | list[str],
              timeout: float = 10.0) -> dict[tuple[str, int], int]:
    """(topic, partition) -> messages the engine's consumer group has not committed yet.

    From the broker (committed offsets vs high watermarks), so it covers every
    worker of the group; a partition with no commit counts from its low mark.
    """
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": settings.app_id,
                         "enable.auto.commit": False, "logger": _QUIET})
    try:
        lag: dict[tuple[str, int], int] = {}
        for kind in kinds:
            topic = settings.topic(kind)
            parts = consumer.list_topics(topic, timeout=timeout).topics[topic].partitions
            for tp in consumer.committed([TopicPartition(topic, p) for p in parts], timeout=timeout):
                low, high = consumer.get_watermark_offsets(tp, timeout=timeout)
                lag[(topic, tp.partition)] = high - (tp.offset if tp.offset >= 0 else low)
        return lag
    finally:
        consumer.close()


def _wait_visible(admin, names: list[str], timeout: float) -> None:
    """Poll metadata until every new topic is there with its partitions led."""
    deadline = time.monotonic() + timeout
    while names:
        metadata = admin.list_topics(timeout=timeout)
        ready = all(
            name in metadata.topics
            and metadata.topics[name].error is None
            and metadata.topics[name].partitions
            and all(p.leader >= 0 for p in metadata.topics[name].partitions.values())
            for name in names
        )
        if ready:
            return
        if time.monotonic() >= deadline:
            raise StackError(f"new topics did not show in the metadata within {timeout:.0f} s")
        time.sleep(0.1)
