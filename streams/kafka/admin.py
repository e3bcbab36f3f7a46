"""Creating the topics of the registry (streams/topics.py) and reading group lag.

`topic_specs` is pure: it says what each topic should look like.
`ensure_topics` talks to the broker: creates what is missing, leaves what
exists alone (it reports, but does not change, a partition count that differs
from the settings).  Faust creates its own changelog topics; they are not here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from streams.errors import StackError
from streams.kafka import clients
from streams.settings import Settings
from streams.topics import TOPICS


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
    """Every topic of §4, in table order, then the extension topics (`control`)."""
    return tuple(
        TopicSpec(
            kind=t.kind,
            name=settings.topic(t.kind),
            partitions=1 if t.single_partition else settings.partitions,
            replication_factor=settings.replication_factor,
            config=t.config(),
        )
        for t in TOPICS
    )


TRUST_TABLE = "trust"  # the Faust table of adaptive trust (streams/worker/build.py)


def changelog_spec(settings: Settings) -> TopicSpec:
    """The trust table's changelog, as Faust would create it (compacted, one
    partition per events partition).  Created with the others so a worker's
    first start never subscribes before the broker lists it (docs/reliability.md)."""
    return TopicSpec(kind="trust-changelog", name=f"{settings.app_id}-{TRUST_TABLE}-changelog",
                     partitions=settings.partitions, replication_factor=settings.replication_factor,
                     config={"cleanup.policy": "compact"})


def admin_client(settings: Settings):
    """An AdminClient for the configured brokers (connects lazily)."""
    return clients.admin(settings)


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
    """Create the registry's topics that are missing; idempotent."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    admin = admin or admin_client(settings)
    specs = topic_specs(settings) + (changelog_spec(settings),)
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
    return {tp: high - pos for tp, (pos, high) in group_positions(settings, kinds, timeout).items()}


def group_positions(settings: Settings, kinds: tuple[str, ...] | list[str],
                    timeout: float = 10.0) -> dict[tuple[str, int], tuple[int, int]]:
    """(topic, partition) -> (the engine group's committed offset, the high watermark).

    A partition with no commit counts from its low mark (nothing before it exists).
    """
    from confluent_kafka import TopicPartition

    consumer = clients.consumer(settings, settings.app_id)
    try:
        positions: dict[tuple[str, int], tuple[int, int]] = {}
        for kind in kinds:
            topic = settings.topic(kind)
            parts = consumer.list_topics(topic, timeout=timeout).topics[topic].partitions
            for tp in consumer.committed([TopicPartition(topic, p) for p in parts], timeout=timeout):
                low, high = consumer.get_watermark_offsets(tp, timeout=timeout)
                positions[(topic, tp.partition)] = (tp.offset if tp.offset >= 0 else low, high)
        return positions
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
