"""Ed25519 signing primitives: key files, key ids, canonical messages, sign, verify.

Used by signed policy documents (:mod:`streams.policy_signature`) and signed
audit manifests (:mod:`streams.audit.signature`); the formats built on top
are in ``docs/security.md``.

Key files are PEM: the private key PKCS#8, unencrypted, mode 0600 (a key
that group or others can read is refused, as ssh does); the public key
SubjectPublicKeyInfo.  A key's id is the first 32 hex digits of the SHA-256
of its raw 32-byte public key: it names the key in signatures and logs, and
picks the key to verify with.  It is not a security boundary (a signature
verifies under one key only), so its length only has to keep ids unique.

What is signed is always :func:`message`: the canonical JSON (sorted keys,
no whitespace, UTF-8) of ``{"purpose": P, "body": B}``.  The purpose keeps
one kind of signature from being replayed as another (a policy signature is
not a manifest signature).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from streams.errors import ConfigError, SignatureError

ALGORITHM = "ed25519"
PRIVATE_SUFFIX = ".key"
PUBLIC_SUFFIX = ".pub"
SIGNATURE_BYTES = 64

# SignatureError reasons (stable codes)
UNSIGNED = "unsigned"
BAD_SIGNATURE = "bad_signature"
UNKNOWN_KEY = "unknown_key"


def key_id(public: Ed25519PublicKey) -> str:
    """First 32 hex digits of SHA-256 of the raw public key."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


def message(purpose: str, body: Mapping[str, Any]) -> bytes:
    """The canonical bytes signed for `body` under `purpose`."""
    return json.dumps({"purpose": purpose, "body": body}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False).encode("utf-8")


def encode_signature(signature: bytes) -> str:
    return base64.b64encode(signature).decode("ascii")


def decode_signature(text: Any) -> bytes:
    """Base64 text -> the 64 signature bytes; SignatureError if it is not that."""
    if not isinstance(text, str):
        raise SignatureError(f"signature is `{text!r}`, expected base64 text", BAD_SIGNATURE)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SignatureError(f"signature `{text[:24]}` is not valid base64", BAD_SIGNATURE) from exc
    if len(raw) != SIGNATURE_BYTES:
        raise SignatureError(f"signature has {len(raw)} bytes, an ed25519 signature has "
                             f"{SIGNATURE_BYTES}", BAD_SIGNATURE)
    return raw


@dataclass(frozen=True, slots=True)
class SigningKey:
    """A private key, ready to sign."""

    key_id: str
    private: Ed25519PrivateKey = field(repr=False)
    path: Path | None = None

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)

    def public(self) -> VerifyKey:
        return VerifyKey(self.key_id, self.private.public_key(), self.path)


@dataclass(frozen=True, slots=True)
class VerifyKey:
    """A public key, ready to verify."""

    key_id: str
    public: Ed25519PublicKey = field(repr=False)
    path: Path | None = None

    def verifies(self, data: bytes, signature: bytes) -> bool:
        try:
            self.public.verify(signature, data)
        except InvalidSignature:
            return False
        return True


class Keyring:
    """The public keys a reader trusts, by key id."""

    def __init__(self, keys: Iterable[VerifyKey] = ()):
        self.keys: dict[str, VerifyKey] = {}
        for k in keys:
            self.keys[k.key_id] = k

    def __len__(self) -> int:
        return len(self.keys)

    def __bool__(self) -> bool:
        return bool(self.keys)

    def ids(self) -> list[str]:
        return sorted(self.keys)

    def verify(self, kid: Any, data: bytes, signature: bytes) -> VerifyKey:
        """The key that verifies `signature` over `data`, or SignatureError saying why not."""
        key = self.keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            known = ", ".join(f"`{k}`" for k in self.ids()) or "none"
            raise SignatureError(f"signed by unknown key `{kid}` (trusted: {known})", UNKNOWN_KEY)
        if not key.verifies(data, signature):
            raise SignatureError(f"signature by key `{kid}` does not verify (the signed content "
                                 "was changed, or the signature is not this key's)", BAD_SIGNATURE)
        return key


# -- key files -------------------------------------------------------------------


def keygen(directory: Path | str, name: str) -> tuple[Path, Path]:
    """Write ``DIR/NAME.key`` (mode 0600) and ``DIR/NAME.pub``; never overwrites."""
    directory = Path(directory)
    private_path, public_path = directory / (name + PRIVATE_SUFFIX), directory / (name + PUBLIC_SUFFIX)
    for path in (private_path, public_path):
        if path.exists():
            raise ConfigError(f"`{path}` already exists; not overwriting a key (move it away first)")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    private = Ed25519PrivateKey.generate()
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    pub = private.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    _write_new(private_path, pem, 0o600)
    _write_new(public_path, pub, 0o644)
    return private_path, public_path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise ConfigError(f"`{path}` already exists; not overwriting a key (move it away first)") from None
    try:
        os.fchmod(fd, mode)  # the umask may have taken bits away; never added any
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} `{path}` cannot be read: {exc.strerror or exc}") from exc


def load_signing_key(path: Path | str) -> SigningKey:
    """A private key file; refused if group or others may read it."""
    path = Path(path)
    data = _read(path, "signing key")
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(f"signing key `{path}` is readable by others (mode {mode:04o}); "
                          f"`chmod 600 {path}`")
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"signing key `{path}` is not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(private, Ed25519PrivateKey):
        raise ConfigError(f"signing key `{path}` is not an ed25519 key")
    return SigningKey(key_id(private.public_key()), private, path)


def load_verify_key(path: Path | str) -> VerifyKey:
    path = Path(path)
    data = _read(path, "public key")
    try:
        public = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"public key `{path}` is not a PEM public key ({exc})") from exc
    if not isinstance(public, Ed25519PublicKey):
        raise ConfigError(f"public key `{path}` is not an ed25519 key")
    return VerifyKey(key_id(public), public, path)


def load_keyring(paths: Iterable[Path | str]) -> Keyring:
    """Every public key of `paths`; ConfigError on the first that does not load."""
    return Keyring(load_verify_key(p) for p in paths)
