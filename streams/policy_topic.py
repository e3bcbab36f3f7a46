"""The compacted `trust.policy` topic: publish a document, read its history.

Documents travel as PolicyDocument envelopes around their canonical JSON,
key `policy`.  Validation happens before anything is written: a document the
engine would refuse never reaches the topic.
"""

from __future__ import annotations

import getpass
import json
import time
from dataclasses import dataclass

from confluent_kafka import KafkaException, TopicPartition

from streams.clock import utc_now
from streams.codec.avro import codec
from streams.errors import ConfigError, PolicyVersionConflict, TrustError
from streams.kafka import clients
from streams.policy.compiled import CompiledPolicy
from streams.policy.loader import load_policy
from streams.settings import Settings

POLICY_KEY = b"policy"


@dataclass(frozen=True, slots=True)
class PublishedPolicy:
    envelope: dict
    offset: int

    @property
    def version(self) -> str:
        return self.envelope["version"]


def envelope_of(cp: CompiledPolicy, published_at: str, by: str | None) -> dict:
    return {"version": cp.version, "digest": cp.digest, "canonical_json": cp.canonical_json,
            "published_at": published_at, "published_by": by}


def compile_envelope(envelope: dict) -> CompiledPolicy:
    """Validate a published envelope; its digest must match its content."""
    cp = load_policy(json.loads(envelope["canonical_json"]), last_updated=envelope["published_at"])
    if cp.digest != envelope["digest"]:
        raise TrustError(f"policy `{envelope['version']}` digest does not match its content")
    return cp


def read_published(settings: Settings, timeout: float = 15.0) -> list[PublishedPolicy]:
    """Every envelope on the policy topic, oldest first (what compaction kept)."""
    topic = settings.topic("policy")
    consumer = clients.consumer(settings, "trustctl-policy-reader")
    try:
        meta = consumer.list_topics(topic, timeout=timeout)
        if meta.topics[topic].error is not None:
            raise ConfigError(f"topic `{topic}` is not available ({meta.topics[topic].error}); "
                              "run `trustctl topics ensure`")
        out = []
        dec = codec("PolicyDocument")
        for p in meta.topics[topic].partitions:
            low, high = _watermarks(consumer, TopicPartition(topic, p), timeout)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, p, low)])
            while True:
                msg = consumer.poll(timeout)
                if msg is None:
                    raise TrustError(f"timed out reading `{topic}` partition {p}")
                if msg.error() is None and msg.value() is not None:
                    out.append(PublishedPolicy(dec.decode(msg.value()), msg.offset()))
                if msg.offset() >= high - 1:
                    break
        return sorted(out, key=lambda p: p.offset)
    except KafkaException as exc:
        raise TrustError(f"cannot read `{topic}` from {settings.kafka_bootstrap}: {exc}") from exc
    finally:
        consumer.close()


def _watermarks(consumer: Consumer, tp: TopicPartition, timeout: float) -> tuple[int, int]:
    """Watermarks, waiting out a new topic's leader election until the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return consumer.get_watermark_offsets(tp, timeout=timeout)
        except KafkaException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def publish(settings: Settings, cp: CompiledPolicy, by: str | None = None) -> str:
    """Publish a compiled policy; returns what happened, in words."""
    published = read_published(settings)
    if published:
        newest = published[-1].envelope
        if newest["version"] == cp.version:
            if newest["digest"] == cp.digest:
                return f"policy {cp.version} is already the newest published version (nothing to do)"
            raise PolicyVersionConflict([("version", f"version `{cp.version}` is already published with "
                                          "other content; give the new document a new version")])
    now = utc_now()
    value = codec("PolicyDocument").encode(envelope_of(cp, now, by or getpass.getuser()))
    errors: list[str] = []
    producer = clients.producer(settings, "trustctl-policy", **{"linger.ms": 0})
    producer.produce(settings.topic("policy"), key=POLICY_KEY, value=value,
                     on_delivery=lambda err, msg: err and errors.append(str(err)))
    if producer.flush(30) or errors:
        raise TrustError(f"policy {cp.version} was not published: {errors or 'delivery timed out'}")
    return f"published policy {cp.version} (sha256 {cp.digest[:16]}...)"
