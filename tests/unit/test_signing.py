"""Ed25519 primitives (streams/signing.py): key files, key ids, messages, verification."""

from __future__ import annotations

import base64
import hashlib
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from streams import signing
from streams.errors import ConfigError, SignatureError
from streams.settings import Settings


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return signing.keygen(tmp_path / "keys", "test")


def test_keygen_writes_a_private_key_only_its_owner_reads(keys):
    private, public = keys
    assert (private.name, public.name) == ("test.key", "test.pub")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert private.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")


def test_keygen_never_overwrites_a_key(keys):
    private, _ = keys
    before = private.read_bytes()
    with pytest.raises(ConfigError, match="already exists"):
        signing.keygen(private.parent, "test")
    assert private.read_bytes() == before


def test_key_id_is_the_sha256_of_the_raw_public_key(keys):
    private, public = keys
    sk, vk = signing.load_signing_key(private), signing.load_verify_key(public)
    raw = vk.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert sk.key_id == vk.key_id == hashlib.sha256(raw).hexdigest()[:32]
    assert sk.public().key_id == vk.key_id


def test_a_private_key_others_can_read_is_refused(keys):
    private, _ = keys
    private.chmod(0o640)
    with pytest.raises(ConfigError, match=r"readable by others \(mode 0640\).*chmod 600"):
        signing.load_signing_key(private)


def test_files_that_are_not_ed25519_keys_are_refused(tmp_path, keys):
    _, public = keys
    with pytest.raises(ConfigError, match="cannot be read"):
        signing.load_verify_key(tmp_path / "missing.pub")
    with pytest.raises(ConfigError, match="not a PEM public key"):
        signing.load_verify_key(keys[0])  # a private key where a public one belongs
    other = tmp_path / "x25519.pub"
    other.write_bytes(X25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(ConfigError, match="not an ed25519 key"):
        signing.load_verify_key(other)
    with pytest.raises(ConfigError, match="not an unencrypted PEM private key"):
        bad = tmp_path / "bad.key"
        bad.write_bytes(public.read_bytes())
        bad.chmod(0o600)
        signing.load_signing_key(bad)


def test_message_is_canonical_and_bound_to_its_purpose():
    a = signing.message("p/1", {"b": 1, "a": "é"})
    assert a == signing.message("p/1", {"a": "é", "b": 1})
    assert a == '{"body":{"a":"é","b":1},"purpose":"p/1"}'.encode()
    assert a != signing.message("p/2", {"a": "é", "b": 1})


def test_sign_and_verify_through_a_keyring(keys):
    sk = signing.load_signing_key(keys[0])
    ring = signing.load_keyring([keys[1]])
    data = signing.message("p/1", {"x": 1})
    sig = sk.sign(data)
    assert ring.verify(sk.key_id, data, sig).key_id == sk.key_id
    with pytest.raises(SignatureError, match="does not verify") as info:
        ring.verify(sk.key_id, signing.message("p/1", {"x": 2}), sig)
    assert info.value.reason == signing.BAD_SIGNATURE
    with pytest.raises(SignatureError, match="unknown key `feed`") as info:
        ring.verify("feed", data, sig)
    assert info.value.reason == signing.UNKNOWN_KEY


def test_another_keys_signature_under_a_trusted_key_id_does_not_verify(tmp_path, keys):
    other = signing.load_signing_key(signing.keygen(tmp_path / "other", "o")[0])
    ring = signing.load_keyring([keys[1]])
    trusted_id = ring.ids()[0]
    data = b"anything"
    with pytest.raises(SignatureError) as info:
        ring.verify(trusted_id, data, other.sign(data))
    assert info.value.reason == signing.BAD_SIGNATURE


@pytest.mark.parametrize("text, problem", [
    (None, "expected base64"),
    ("not base64!", "not valid base64"),
    (base64.b64encode(b"short").decode(), "5 bytes"),
])
def test_malformed_signatures_are_refused(text, problem):
    with pytest.raises(SignatureError, match=problem):
        signing.decode_signature(text)


def test_settings_read_key_paths_from_the_environment(tmp_path):
    s = Settings.from_env({"TRUST_POLICY_VERIFY_KEYS": f" {tmp_path}/a.pub, ,{tmp_path}/b.pub ",
                           "TRUST_AUDIT_SIGNING_KEY": f"{tmp_path}/audit.key"})
    assert s.policy_verify_keys == (tmp_path / "a.pub", tmp_path / "b.pub")
    assert s.audit_signing_key == tmp_path / "audit.key"
    d = Settings.from_env({})
    assert d.policy_verify_keys == () and d.audit_signing_key is None
