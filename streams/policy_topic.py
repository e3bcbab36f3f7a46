"""The compacted `trust.policy` topic: publish a document, read its history,
and the gate every published document passes before it goes into force.

Documents travel as PolicyDocument envelopes around their canonical JSON,
key `policy`, signed or not (:mod:`streams.policy_signature`).  Validation
happens before anything is written: a document the engine would refuse never
reaches the topic (with verify keys configured on the publishing side, that
includes its signature).

A record on the topic that is no PolicyDocument (a tombstone, other bytes)
is read as one with no envelope and the reason (`PublishedPolicy.error`),
and an envelope whose content raises anything is refused by the gate:
history lists such records, publish skips them with a warning, and a
worker refuses them (streams/agents/policy.py).
"""

from __future__ import annotations

import getpass
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, TopicPartition

from streams import policy_signature
from streams.clock import utc_now
from streams.codec.avro import codec, decode_evolved
from streams.errors import CodecError, ConfigError, PolicyVersionConflict, SignatureError, TrustError
from streams.kafka import clients
from streams.policy.compiled import CompiledPolicy
from streams.policy.history import PolicyHistory, PolicyRefusal, RefusalReason
from streams.policy.loader import load_policy, load_policy_file
from streams.policy_signature import PolicySignature
from streams.settings import Settings
from streams.signing import Keyring, load_keyring

log = logging.getLogger("forgeone.trust.policy")

POLICY_KEY = b"policy"
ROLLBACK = RefusalReason.ROLLBACK.value


@dataclass(frozen=True, slots=True)
class PublishedPolicy:
    envelope: dict | None  # None: the value does not decode (`error` says why)
    offset: int
    error: str | None = None

    @property
    def version(self) -> str:
        return "?" if self.envelope is None else self.envelope["version"]


def envelope_of(cp: CompiledPolicy, published_at: str, by: str | None,
                signature: PolicySignature | None = None) -> dict:
    envelope = {"version": cp.version, "digest": cp.digest, "canonical_json": cp.canonical_json,
                "published_at": published_at, "published_by": by,
                "signature_key_id": None, "signed_at": None, "signature": None}
    if signature is not None:
        envelope.update(signature.envelope_fields())
    return envelope


def decode_policy(value: bytes | None) -> dict:
    """A PolicyDocument value, also one written before the signature fields existed
    (read through Avro schema resolution: its signature fields are null).

    CodecError for anything else, a tombstone (null value) included."""
    if value is None:
        raise CodecError("a null value (a tombstone) is not a policy document")
    try:
        return decode_evolved("PolicyDocument", value, tuple(policy_signature.ENVELOPE_FIELDS))
    except CodecError:
        raise
    except Exception as exc:  # a decoder bug: the record is refused, never the reader
        raise CodecError(f"cannot decode `PolicyDocument`: {type(exc).__name__}: {exc}") from exc


def compile_envelope(envelope: dict) -> CompiledPolicy:
    """Validate a published envelope; its digest must match its content."""
    try:
        doc = json.loads(envelope["canonical_json"])
    except RecursionError as exc:  # nesting deeper than the parser goes: refused like bad JSON
        raise TrustError(f"policy `{str(envelope['version'])[:80]}` is nested too deeply to be a policy") from exc
    cp = load_policy(doc, last_updated=envelope["published_at"])
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
        for p in meta.topics[topic].partitions:
            low, high = _watermarks(consumer, TopicPartition(topic, p), timeout)
            if high <= low:
                continue
            consumer.assign([TopicPartition(topic, p, low)])
            while True:
                msg = consumer.poll(timeout)
                if msg is None:
                    raise TrustError(f"timed out reading `{topic}` partition {p}")
                if msg.error() is not None:  # not a record (e.g. an authorisation error): say so
                    if msg.error().fatal() or msg.offset() is None:
                        raise TrustError(f"cannot read `{topic}` partition {p}: {msg.error().str()}")
                    continue
                try:  # a tombstone or undecodable value is listed, with why
                    out.append(PublishedPolicy(decode_policy(msg.value()), msg.offset()))
                except CodecError as exc:
                    out.append(PublishedPolicy(None, msg.offset(), str(exc)))
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


def publish(settings: Settings, cp: CompiledPolicy, by: str | None = None,
            signature: PolicySignature | None = None) -> str:
    """Publish a compiled policy, with its signature if given; returns what happened, in words.

    With verify keys configured here (TRUST_POLICY_VERIFY_KEYS), the document
    goes through the same gate as on a worker first: one the workers would
    refuse (unsigned, badly signed, unknown key, rollback) is not published.
    """
    if signature is not None:
        policy_signature.matches(signature, cp.version, cp.digest, "the signature")
    published = read_published(settings)
    for p in published:
        if p.envelope is None:  # a poisoned record: the workers refuse it too
            log.warning("warning: `%s` offset %d skipped: %s", settings.topic("policy"), p.offset, p.error)
    decoded = [p.envelope for p in published if p.envelope is not None]
    if decoded:
        newest = decoded[-1]
        if newest["version"] == cp.version:
            if newest["digest"] != cp.digest:
                raise PolicyVersionConflict([("version", f"version `{cp.version}` is already published "
                                              "with other content; give the new document a new version")])
            if signature is None or _signature_of(newest) == signature:
                return f"policy {cp.version} is already the newest published version (nothing to do)"
            # the same document, now signed (or signed again): publish it with its signature
    envelope = envelope_of(cp, utc_now(), by or getpass.getuser(), signature)
    if settings.policy_verify_keys:
        gate = replay(published, load_keyring(settings.policy_verify_keys))
        gate.offer(envelope)  # raises, saying why, if the workers would refuse it
    value = codec("PolicyDocument").encode(envelope)
    errors: list[str] = []
    producer = clients.producer(settings, "trustctl-policy", **{"linger.ms": 0})
    producer.produce(settings.topic("policy"), key=POLICY_KEY, value=value,
                     on_delivery=lambda err, msg: err and errors.append(str(err)))
    if producer.flush(30) or errors:
        raise TrustError(f"policy {cp.version} was not published: {errors or 'delivery timed out'}")
    signed = "" if signature is None else f", signed by key {signature.key_id[:16]} at {signature.signed_at}"
    return f"published policy {cp.version} (sha256 {cp.digest[:16]}...{signed})"


def publish_file(settings: Settings, path: Path | str, by: str | None = None) -> str:
    """Publish the document at `path`, with `path`.sig when that file exists."""
    cp = load_policy_file(path)
    sig_file = policy_signature.sig_path(path)
    signature = policy_signature.read_sig(sig_file) if sig_file.exists() else None
    if signature is not None:
        policy_signature.matches(signature, cp.version, cp.digest, str(sig_file))
    return publish(settings, cp, by, signature)


def _signature_of(envelope: dict) -> PolicySignature | None:
    try:
        return policy_signature.of_envelope(envelope)
    except SignatureError:
        return None


# -- the gate ---------------------------------------------------------------------


class PolicyGate:
    """Decides whether a published envelope goes into force; records every refusal.

    Without a keyring, as docs/behaviour.md §1.2 says: a valid document with a new version
    (or the running one again) is accepted.  With one, the envelope must
    first carry a signature by a trusted key that verifies over its version,
    digest and signing time, and be signed *after* the document in force
    (otherwise a validly signed old document could be replayed: a rollback).
    Order: signature, rollback, validity, version conflict.  Pure: no Kafka.
    """

    def __init__(self, keyring: Keyring | None = None, history: PolicyHistory | None = None):
        self.keyring = keyring if keyring else None
        self.history = history if history is not None else PolicyHistory()

    @property
    def signing_enabled(self) -> bool:
        return self.keyring is not None

    def offer(self, envelope: dict) -> CompiledPolicy:
        """The policy in force after `envelope`; raise TrustError (recorded) if it is refused."""
        version = str(envelope.get("version", "?"))
        try:
            sig = None
            if self.keyring is not None:
                sig = policy_signature.verify_envelope(envelope, self.keyring)
                self._check_rollback(envelope, sig)
            cp = compile_envelope(envelope)
            return self.history.accept(cp, envelope["published_at"],
                                       signed_at=sig.signed_at if sig else None,
                                       key_id=sig.key_id if sig else None)
        except SignatureError as exc:
            self._refuse(envelope, exc.reason, exc)
            raise
        except PolicyVersionConflict as exc:
            self._refuse(envelope, RefusalReason.VERSION_CONFLICT, exc)
            raise
        except TrustError as exc:
            self._refuse(envelope, RefusalReason.INVALID, exc)
            raise
        except Exception as exc:  # KeyError, TypeError, ValueError, RecursionError (JSON nested too deep)...
            message = f"policy `{version}` is not a valid envelope: {type(exc).__name__}: {exc}"
            self._refuse(envelope, RefusalReason.INVALID, message)
            raise TrustError(message) from exc

    def refuse_undecodable(self, error: Exception) -> PolicyRefusal:
        return self.history.refuse("?", None, None, RefusalReason.UNDECODABLE, str(error))

    def _check_rollback(self, envelope: dict, sig: PolicySignature) -> None:
        cur = self.history.in_force
        if cur is None or (cur.version, cur.digest) == (envelope["version"], envelope["digest"]):
            return  # nothing in force yet, or the running document again (a no-op)
        if cur.signed_at is None:
            return
        if policy_signature.signed_time(sig.signed_at) <= policy_signature.signed_time(cur.signed_at):
            raise SignatureError(
                f"policy `{envelope['version']}` was signed at {sig.signed_at}, not after the policy in "
                f"force `{cur.version}` (signed at {cur.signed_at}): a rollback", ROLLBACK)

    def _refuse(self, envelope: dict, reason: str, exc: Exception | str) -> None:
        text = str(exc).strip()
        self.history.refuse(str(envelope.get("version", "?")), envelope.get("digest"),
                            envelope.get("published_at"), reason, text)


def replay(published: list[PublishedPolicy], keyring: Keyring | None = None) -> PolicyGate:
    """A gate that has seen `published` in order, as a worker reading the topic would."""
    gate = PolicyGate(keyring)
    for p in published:
        if p.envelope is None:
            gate.refuse_undecodable(p.error or "undecodable")
            continue
        try:
            gate.offer(p.envelope)
        except TrustError:
            pass
    return gate
