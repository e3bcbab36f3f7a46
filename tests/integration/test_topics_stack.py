"""`ensure_topics` against the real broker, under a throw-away topic prefix."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from streams.kafka.admin import changelog_spec, ensure_topics, topic_specs


def _all(settings):
    return topic_specs(settings) + (changelog_spec(settings),)

pytestmark = pytest.mark.integration


@pytest.fixture
def private_settings(stack, admin):
    tag = uuid.uuid4().hex[:8]
    settings = dataclasses.replace(stack, topic_prefix=f"it.{tag}.trust.", app_id=f"it-{tag}")
    yield settings
    names = [s.name for s in _all(settings)]
    existing = [n for n in names if n in admin.list_topics(timeout=10).topics]
    if existing:
        for future in admin.delete_topics(existing, operation_timeout=30).values():
            future.result(30)


def test_ensure_creates_then_reports_existing(private_settings, admin):
    from confluent_kafka.admin import ConfigResource

    first = ensure_topics(private_settings, admin=admin)
    second = ensure_topics(private_settings, admin=admin)

    names = [s.name for s in _all(private_settings)]
    assert names[-1] == f"{private_settings.app_id}-trust-changelog"
    assert [s.name for s in first.created] == names and first.existing == ()
    assert second.created == () and [s.name for s in second.existing] == names
    assert second.mismatched == {}

    metadata = admin.list_topics(timeout=10).topics
    assert {s.name: len(metadata[s.name].partitions) for s in _all(private_settings)} == {
        s.name: s.partitions for s in _all(private_settings)}
    assert len(metadata[private_settings.topic("policy")].partitions) == 1

    def config(kind: str) -> dict[str, str]:
        resource = ConfigResource("topic", private_settings.topic(kind))
        entries = admin.describe_configs([resource])[resource].result(30)
        return {k: v.value for k, v in entries.items()}

    assert config("policy")["cleanup.policy"] == "compact"
    assert config("dlq")["retention.ms"] == str(14 * 24 * 3600 * 1000)
    assert config("decisions")["retention.ms"] == str(7 * 24 * 3600 * 1000)
