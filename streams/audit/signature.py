"""Signed manifests: the audit archive's checkpoints (like CloudTrail's signed digest files).

The hash chains prove the archive is internally consistent; whoever can
rewrite the directory can also recompute every hash.  A manifest signed with
a key the archive's writers hold but its readers do not (``TRUST_AUDIT_SIGNING_KEY``
on the sink; the public key given to ``trustctl audit verify --key``) cannot be
recomputed: a forged file needs a new manifest (its ``sha256``), and a new
manifest needs the private key.

A signed manifest carries ``signature``::

    {"format": "forgeone.trust.audit-signature/1", "algorithm": "ed25519",
     "key_id": "<32 hex>", "signature": "<base64>"}

over :func:`streams.signing.message` of purpose ``forgeone.trust.audit-manifest/1``
and body = the manifest without its ``signature`` field.  Since a manifest
holds its file's SHA-256, the previous file's hash and every chain's head,
one valid signature vouches for its file and, through the file chain, for
every file before it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from streams import signing
from streams.errors import SignatureError
from streams.signing import BAD_SIGNATURE, UNSIGNED, Keyring, SigningKey

FORMAT = "forgeone.trust.audit-signature/1"
PURPOSE = "forgeone.trust.audit-manifest/1"
FIELD = "signature"


def body(manifest: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in manifest.items() if k != FIELD}


def sign_manifest(manifest: Mapping[str, Any], key: SigningKey) -> dict[str, Any]:
    """A copy of `manifest` with its ``signature``."""
    unsigned = body(manifest)
    raw = key.sign(signing.message(PURPOSE, unsigned))
    return {**unsigned, FIELD: {"format": FORMAT, "algorithm": signing.ALGORITHM, "key_id": key.key_id,
                                "signature": signing.encode_signature(raw)}}


def is_signed(manifest: Mapping[str, Any]) -> bool:
    return manifest.get(FIELD) is not None


def check_manifest(manifest: Mapping[str, Any], keyring: Keyring) -> str:
    """The key id that signed `manifest`; SignatureError (`unsigned`, `bad_signature`,
    `unknown_key`) if it is not validly signed by a key of `keyring`."""
    sig = manifest.get(FIELD)
    if sig is None:
        raise SignatureError("manifest is not signed", UNSIGNED)
    if not isinstance(sig, Mapping) or sig.get("format") != FORMAT:
        found = sig.get("format") if isinstance(sig, Mapping) else sig
        raise SignatureError(f"signature has format `{found}`, expected `{FORMAT}`", BAD_SIGNATURE)
    if sig.get("algorithm") != signing.ALGORITHM:
        raise SignatureError(f"signature algorithm is `{sig.get('algorithm')}`, expected "
                             f"`{signing.ALGORITHM}`", BAD_SIGNATURE)
    raw = signing.decode_signature(sig.get("signature"))
    keyring.verify(sig.get("key_id"), signing.message(PURPOSE, body(manifest)), raw)
    return sig["key_id"]
