"""Signed policy documents (no Kafka): the signature file, the gate a worker runs, the watcher, the CLI.

A worker with verify keys refuses a document that is unsigned, badly signed,
signed by an unknown key or signed no later than the one in force, records
why in its history, and keeps the running version; without keys it behaves
as before.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from streams import signing
from streams.agents.policy import PolicyWatcher
from streams.codec.avro import codec
from streams.errors import SignatureError, TrustError
from streams.policy.canonical import digest
from streams.policy.history import RefusalReason
from streams.policy.loader import load_policy
from streams.policy_signature import (
    FORMAT,
    of_envelope,
    parse_sig,
    read_sig,
    sig_path,
    sign_policy,
    write_sig,
)
from streams.policy_topic import PolicyGate, PublishedPolicy, decode_policy, envelope_of, publish_file, replay
from streams.settings import Settings

T1, T2, T3 = "2026-11-28T12:00:00.000000Z", "2026-11-28T13:00:00.000000Z", "2026-11-28T14:00:00.000000Z"


@pytest.fixture
def keypair(tmp_path: Path):
    private, public = signing.keygen(tmp_path / "keys", "policy-signing")
    return signing.load_signing_key(private), public


@pytest.fixture
def stranger(tmp_path: Path):
    private, _ = signing.keygen(tmp_path / "stranger", "policy-signing")
    return signing.load_signing_key(private)


def policy(version: str, default_action: str = "deny"):
    return load_policy({"version": version, "default_action": default_action, "policies": {"read": {}}})


def signed(cp, key, signed_at: str, published_at: str = T3) -> dict:
    return envelope_of(cp, published_at, "pytest", sign_policy(key, cp.version, cp.digest, signed_at))


def unsigned(cp, published_at: str = T3) -> dict:
    return envelope_of(cp, published_at, "pytest")


def refused_reasons(gate: PolicyGate) -> list[tuple[str, str]]:
    return [(r.version, r.reason.value) for r in gate.history.refusals()]


# -- the signature file --------------------------------------------------------------------


def test_signature_file_round_trips_and_names_what_it_signs(keypair, tmp_path):
    key, _ = keypair
    cp = policy("v1")
    sig = sign_policy(key, cp.version, cp.digest, T1)
    path = sig_path(tmp_path / "doc.yaml")
    assert path.name == "doc.yaml.sig"
    write_sig(path, sig)
    data = json.loads(path.read_text())
    assert data == {"format": FORMAT, "algorithm": "ed25519", "key_id": key.key_id, "version": "v1",
                    "digest": cp.digest, "signed_at": T1, "signature": signing.encode_signature(sig.signature)}
    assert read_sig(path) == sig


def test_the_signature_is_over_version_digest_and_time_and_nothing_else(keypair):
    key, public = keypair
    cp = policy("v1")
    sig = sign_policy(key, cp.version, cp.digest, T1)
    expected = json.dumps({"body": {"digest": cp.digest, "signed_at": T1, "version": "v1"},
                           "purpose": "forgeone.trust.policy/1"}, separators=(",", ":")).encode()
    assert sig.message() == expected
    assert signing.load_verify_key(public).verifies(expected, sig.signature)


@pytest.mark.parametrize("change, problem", [
    (lambda d: d.update(format="other/1"), "format `other/1`"),
    (lambda d: d.update(algorithm="rsa"), "algorithm `rsa`"),
    (lambda d: d.pop("digest"), "`digest` is missing"),
    (lambda d: d.update(signed_at="yesterday"), "`signed_at` is `yesterday`"),
    (lambda d: d.update(signed_at="2026-11-28T12:00:00"), "with a zone"),
    (lambda d: d.update(signature="AAAA"), "3 bytes"),
])
def test_malformed_signature_files_are_refused(keypair, change, problem):
    key, _ = keypair
    cp = policy("v1")
    data = json.loads(sign_policy(key, cp.version, cp.digest, T1).to_json())
    change(data)
    with pytest.raises(SignatureError, match=problem):
        parse_sig(json.dumps(data), "doc.yaml.sig")


def test_signed_envelope_travels_through_avro(keypair):
    key, _ = keypair
    env = signed(policy("v1"), key, T1)
    back = decode_policy(codec("PolicyDocument").encode(env))
    assert of_envelope(back) == of_envelope(env) and of_envelope(env).signed_at == T1
    assert of_envelope(unsigned(policy("v1"))) is None


# -- the gate ------------------------------------------------------------------------------


def test_without_keys_the_gate_accepts_signed_and_unsigned_documents_as_before(keypair):
    key, _ = keypair
    gate = PolicyGate()
    assert not gate.signing_enabled
    assert gate.offer(unsigned(policy("v1"))).version == "v1"
    assert gate.offer(signed(policy("v2"), key, T1)).version == "v2"
    assert gate.offer(unsigned(policy("v0"))).version == "v0"  # no signing time to compare
    assert [v.signed_at for v in gate.history.versions()] == [None, None, None]


def test_with_keys_each_bad_document_is_refused_and_the_running_version_stays(keypair, stranger):
    key, public = keypair
    gate = PolicyGate(signing.load_keyring([public]))
    assert gate.signing_enabled
    v1 = gate.offer(signed(policy("v1"), key, T1))
    running = gate.offer(signed(policy("v2"), key, T2))
    assert running.version == "v2"

    allow = policy("v3-allow", default_action="allow")
    tampered = signed(allow, key, T3)
    tampered["signature"] = bytes([tampered["signature"][0] ^ 1]) + tampered["signature"][1:]
    attempts = [
        ("unsigned", unsigned(allow)),
        ("bad_signature", tampered),
        ("unknown_key", signed(allow, stranger, T3)),
        ("rollback", signed(policy("v1"), key, T1)),  # the genuine v1 envelope, replayed
        ("rollback", signed(allow, key, T2)),  # signed at the same time as v2
    ]
    for reason, envelope in attempts:
        with pytest.raises(SignatureError) as info:
            gate.offer(envelope)
        assert info.value.reason == reason
        assert gate.history.current is running
    assert refused_reasons(gate) == [("v3-allow", "unsigned"), ("v3-allow", "bad_signature"),
                                     ("v3-allow", "unknown_key"), ("v1", "rollback"), ("v3-allow", "rollback")]
    assert "not after the policy in force `v2`" in gate.history.refusals()[3].message
    assert [v.version for v in gate.history.versions()] == ["v1", "v2"]
    assert v1.version == "v1"

    good = gate.offer(signed(allow, key, T3))
    assert good.version == "v3-allow" and gate.history.in_force.signed_at == T3
    assert gate.history.in_force.key_id == key.key_id


def test_content_changed_under_a_valid_signature_is_refused(keypair):
    key, public = keypair
    gate = PolicyGate(signing.load_keyring([public]))
    env = signed(policy("v1"), key, T1)
    allow = policy("v1", default_action="allow")
    # the attacker swaps in other content with its own (correct) digest: the signature no longer fits
    swapped = dict(env, canonical_json=allow.canonical_json, digest=allow.digest)
    with pytest.raises(SignatureError, match="does not verify"):
        gate.offer(swapped)
    # other content under the signed digest: the digest check refuses it
    with pytest.raises(TrustError, match="digest does not match"):
        gate.offer(dict(env, canonical_json=allow.canonical_json))
    assert refused_reasons(gate) == [("v1", "bad_signature"), ("v1", "invalid")]
    assert gate.history.current is None


def test_the_running_document_again_is_a_no_op_and_a_later_revert_is_accepted(keypair):
    key, public = keypair
    gate = PolicyGate(signing.load_keyring([public]))
    v1 = gate.offer(signed(policy("v1"), key, T1))
    assert gate.offer(signed(policy("v1"), key, T1)) is v1  # redelivered: no-op, not a rollback
    gate.offer(signed(policy("v2"), key, T2))
    back = gate.offer(signed(policy("v1"), key, T3))  # an operator re-signs v1 later: a real revert
    assert back.version == "v1" and gate.history.refusals() == []


def test_invalid_documents_and_version_conflicts_keep_their_reasons_with_keys(keypair):
    key, public = keypair
    gate = PolicyGate(signing.load_keyring([public]))
    gate.offer(signed(policy("v1"), key, T1))
    conflict = policy("v1", default_action="allow")
    with pytest.raises(TrustError):
        gate.offer(signed(conflict, key, T2))
    body = '{"version":"v9","policies":{"read":{"min_trust_score":7}}}'
    bad = {"version": "v9", "digest": digest(body), "canonical_json": body, "published_at": T3,
           "published_by": None}
    sig = sign_policy(key, "v9", digest(body), T3)
    with pytest.raises(TrustError):
        gate.offer({**bad, **sig.envelope_fields()})
    assert refused_reasons(gate) == [("v1", "version_conflict"), ("v9", "invalid")]
    assert gate.history.current.version == "v1"


def test_replay_is_what_a_worker_reading_the_topic_from_the_start_ends_with(keypair, stranger):
    key, public = keypair
    published = [PublishedPolicy(signed(policy("v1"), key, T1), 0),
                 PublishedPolicy(unsigned(policy("v2")), 1),
                 PublishedPolicy(None, 2, "cannot decode `PolicyDocument`: the value is truncated"),
                 PublishedPolicy(signed(policy("v3"), stranger, T3), 3)]
    gate = replay(published, signing.load_keyring([public]))
    assert gate.history.current.version == "v1"
    assert refused_reasons(gate) == [("v2", "unsigned"), ("?", "undecodable"), ("v3", "unknown_key")]
    assert replay(published).history.current.version == "v3"  # without keys: as before


# -- the worker's watcher ------------------------------------------------------------------


def test_watcher_with_keys_refuses_logs_and_keeps_the_running_version(keypair, caplog):
    key, public = keypair
    watcher = PolicyWatcher(Settings(policy_verify_keys=(public,)))
    switched = []
    watcher.on_switch = switched.append
    assert watcher.signing_enabled
    assert watcher.offer(signed(policy("v1"), key, T2))
    with caplog.at_level(logging.ERROR, logger="forgeone.trust.policy"):
        assert not watcher.offer(unsigned(policy("v2", default_action="allow")))
        assert not watcher.offer(signed(policy("v0"), key, T1))
    assert watcher.current.version == "v1" and [cp.version for cp in switched] == ["v1"]
    assert "policy v2 refused (unsigned), running version stays v1" in caplog.text
    assert "policy v0 refused (rollback), running version stays v1" in caplog.text
    assert [(v, e.split(":")[0]) for v, e in watcher.refused] == [("v2", "unsigned"), ("v0", "rollback")]
    assert [r.reason for r in watcher.refusals()] == [RefusalReason.UNSIGNED, RefusalReason.ROLLBACK]


def test_watcher_without_keys_is_as_before():
    watcher = PolicyWatcher(Settings())
    assert not watcher.signing_enabled
    assert watcher.offer(unsigned(policy("v1")))
    assert watcher.current.version == "v1" and watcher.refused == []


def test_watcher_records_an_undecodable_message(keypair):
    watcher = PolicyWatcher(Settings())
    watcher._offer_bytes(decode_policy, b"\x00garbage")
    assert [r.reason for r in watcher.refusals()] == [RefusalReason.UNDECODABLE]


def test_a_verify_key_that_does_not_load_stops_the_watcher(tmp_path):
    from streams.errors import ConfigError

    with pytest.raises(ConfigError, match="cannot be read"):
        PolicyWatcher(Settings(policy_verify_keys=(tmp_path / "missing.pub",)))


# -- the CLI -------------------------------------------------------------------------------


def test_cli_keygen_sign_and_a_signature_that_does_not_fit_is_not_published(tmp_path, capsys):
    from streams.cli.main import main

    assert main(["policy", "keygen", "--out", str(tmp_path / "k")]) == 0
    key = tmp_path / "k" / "policy-signing.key"
    assert key.is_file() and (tmp_path / "k" / "policy-signing.pub").is_file()
    doc = tmp_path / "doc.yaml"
    doc.write_text("version: v1\ndefault_action: deny\npolicies: {read: {}}\n")
    assert main(["policy", "sign", "--key", str(key), str(doc)]) == 0
    out = capsys.readouterr().out
    sig = read_sig(tmp_path / "doc.yaml.sig")
    assert f"signed policy v1 (sha256 {sig.digest[:16]}" in out and sig.version == "v1"
    assert signing.load_verify_key(tmp_path / "k" / "policy-signing.pub").verifies(sig.message(), sig.signature)

    doc.write_text("version: v1\ndefault_action: allow\npolicies: {read: {}}\n")  # edited after signing
    with pytest.raises(SignatureError, match="sign the document again"):
        publish_file(Settings(kafka_bootstrap="127.0.0.1:1"), doc)  # refused before any broker is asked


# -- the process shim takes the policy the workers hold in force ----------------------------------


def test_the_shim_traps_for_the_policy_in_force_not_the_newest_message(keypair, stranger, monkeypatch):
    import argparse

    from streams.cli import shim_cmd

    key, public = keypair
    published = [PublishedPolicy(signed(policy("v1"), key, T1), 0),
                 PublishedPolicy(signed(load_policy({"version": "v2-forged", "default_action": "allow",
                                                     "policies": {}}), stranger, T3), 1)]
    monkeypatch.setattr("streams.policy_topic.read_published", lambda settings: published)
    args = argparse.Namespace(policy=None)
    settings = Settings(policy_verify_keys=(public,))
    cp, gate, starts = shim_cmd._policy(args, settings)
    assert cp.version == "v1"  # the forged, emptier one is refused
    assert gate.signing_enabled and starts == {("trust.policy", 0): 2}  # followed from after the last read
    assert shim_cmd._policy(args, Settings())[0].version == "v2-forged"  # without keys: the newest valid

    monkeypatch.setattr("streams.policy_topic.read_published", lambda settings: published[1:])
    with pytest.raises(TrustError, match=r"no policy in force .*v2-forged \(unknown_key"):
        shim_cmd._policy(args, settings)
