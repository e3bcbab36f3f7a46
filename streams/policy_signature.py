"""Signed policy documents: the signature, its file (``doc.yaml.sig``), its envelope fields.

A policy signature binds three things: the document's ``version``, the
SHA-256 ``digest`` of its canonical JSON, and the time it was signed
(``signed_at``, RFC 3339), so a worker can refuse a document signed before
the one in force (a rollback to an older, validly signed policy).  What is
signed is :func:`streams.signing.message` of purpose ``forgeone.trust.policy/1``
and body ``{"version", "digest", "signed_at"}``.

The detached file beside the document (``trustctl policy sign``)::

    {"algorithm": "ed25519", "digest": "<sha256 hex>", "format": "forgeone.trust.policy-signature/1",
     "key_id": "<32 hex>", "signature": "<base64, 64 bytes>", "signed_at": "<RFC 3339>",
     "version": "<version>"}

On ``trust.policy`` the envelope carries ``signature_key_id``, ``signed_at``
and ``signature`` (bytes); version and digest are the envelope's own.  The
verifying side (:class:`streams.policy_topic.PolicyGate`) is near the topic code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from streams import signing
from streams.errors import ConfigError, SignatureError
from streams.signing import BAD_SIGNATURE, UNSIGNED, Keyring, SigningKey

FORMAT = "forgeone.trust.policy-signature/1"
PURPOSE = "forgeone.trust.policy/1"
SIG_SUFFIX = ".sig"
ENVELOPE_FIELDS = ("signature_key_id", "signed_at", "signature")


def signed_time(text: Any) -> datetime:
    """`signed_at` as an aware datetime; SignatureError if it is not an RFC 3339 time with a zone."""
    try:
        moment = datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise SignatureError(f"`signed_at` is `{text}`, expected an RFC 3339 time with a zone",
                             BAD_SIGNATURE)
    return moment


@dataclass(frozen=True, slots=True)
class PolicySignature:
    version: str
    digest: str
    signed_at: str
    key_id: str
    signature: bytes

    def message(self) -> bytes:
        """The bytes the signature is over."""
        return signing.message(PURPOSE, {"version": self.version, "digest": self.digest,
                                         "signed_at": self.signed_at})

    def envelope_fields(self) -> dict[str, Any]:
        return {"signature_key_id": self.key_id, "signed_at": self.signed_at, "signature": self.signature}

    def to_json(self) -> str:
        """The ``.sig`` file's text."""
        return json.dumps({"format": FORMAT, "algorithm": signing.ALGORITHM, "key_id": self.key_id,
                           "version": self.version, "digest": self.digest, "signed_at": self.signed_at,
                           "signature": signing.encode_signature(self.signature)},
                          indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def sign_policy(key: SigningKey, version: str, digest: str, signed_at: str) -> PolicySignature:
    signed_time(signed_at)
    unsigned = PolicySignature(version, digest, signed_at, key.key_id, b"")
    return PolicySignature(version, digest, signed_at, key.key_id, key.sign(unsigned.message()))


def sig_path(document: Path | str) -> Path:
    """Where the signature of `document` lives: ``doc.yaml`` -> ``doc.yaml.sig``."""
    document = Path(document)
    return document.with_name(document.name + SIG_SUFFIX)


def parse_sig(text: str, source: str = "signature") -> PolicySignature:
    """A ``.sig`` file's text; SignatureError naming `source` if it is not one."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise SignatureError(f"`{source}` is not JSON ({exc})", BAD_SIGNATURE) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        found = data.get("format") if isinstance(data, dict) else None
        raise SignatureError(f"`{source}` has format `{found}`, expected `{FORMAT}`", BAD_SIGNATURE)
    if data.get("algorithm") != signing.ALGORITHM:
        raise SignatureError(f"`{source}` has algorithm `{data.get('algorithm')}`, expected "
                             f"`{signing.ALGORITHM}`", BAD_SIGNATURE)
    for name in ("key_id", "version", "digest", "signed_at"):
        if not isinstance(data.get(name), str) or not data[name]:
            raise SignatureError(f"`{source}`: `{name}` is missing or not text", BAD_SIGNATURE)
    signed_time(data["signed_at"])
    return PolicySignature(data["version"], data["digest"], data["signed_at"], data["key_id"],
                           signing.decode_signature(data.get("signature")))


def read_sig(path: Path | str) -> PolicySignature:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"signature file `{path}` cannot be read: {exc.strerror or exc}") from exc
    return parse_sig(text, str(path))


def write_sig(path: Path | str, sig: PolicySignature) -> None:
    Path(path).write_text(sig.to_json(), encoding="utf-8")


def of_envelope(envelope: dict[str, Any]) -> PolicySignature | None:
    """The signature an envelope carries, None if it carries none.

    Version and digest are the envelope's own: the signature covers exactly
    what the envelope claims (the digest is then checked against the content).
    """
    present = [name for name in ENVELOPE_FIELDS if envelope.get(name) is not None]
    if not present:
        return None
    if len(present) != len(ENVELOPE_FIELDS):
        missing = ", ".join(f"`{n}`" for n in ENVELOPE_FIELDS if n not in present)
        raise SignatureError(f"signature incomplete: {missing} missing", BAD_SIGNATURE)
    signed_time(envelope["signed_at"])
    raw = envelope["signature"]
    if not isinstance(raw, (bytes, bytearray)) or len(raw) != signing.SIGNATURE_BYTES:
        raise SignatureError(f"signature is not {signing.SIGNATURE_BYTES} bytes", BAD_SIGNATURE)
    return PolicySignature(envelope["version"], envelope["digest"], envelope["signed_at"],
                           envelope["signature_key_id"], bytes(raw))


def verify_envelope(envelope: dict[str, Any], keyring: Keyring) -> PolicySignature:
    """The envelope's verified signature; SignatureError (`unsigned`, `bad_signature`,
    `unknown_key`) otherwise."""
    sig = of_envelope(envelope)
    if sig is None:
        raise SignatureError(f"policy `{envelope.get('version')}` is not signed, and this reader "
                             "requires a signature (TRUST_POLICY_VERIFY_KEYS)", UNSIGNED)
    keyring.verify(sig.key_id, sig.message(), sig.signature)
    return sig


def matches(sig: PolicySignature, version: str, digest: str, source: str) -> None:
    """SignatureError unless `sig` was made for this version and digest."""
    if (sig.version, sig.digest) != (version, digest):
        raise SignatureError(
            f"`{source}` signs version `{sig.version}` sha256 {sig.digest[:16]}, but the document is "
            f"version `{version}` sha256 {digest[:16]} (sign the document again)", BAD_SIGNATURE)
