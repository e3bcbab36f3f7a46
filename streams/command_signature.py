"""Signed commands: quarantine commands, trust resets and redzone events carry their
writer's signature; readers with verify keys refuse the unsigned and the forged.

Three records change the redzone or adaptive trust, or report that they did:

    record              topic                    written by                     signed with
    QuarantineCommand   trust.quarantine         the engine / an operator       TRUST_ENGINE_SIGNING_KEY /
                                                                                TRUST_OPERATOR_SIGNING_KEY
    TrustControl        trust.control            an operator (recover)          TRUST_OPERATOR_SIGNING_KEY
    RedzoneEvent        trust.redzone-events     the redzone agent / operator   the engine's / operator's key

Each carries two optional fields at its end, null when unsigned:
``signature_key_id`` and ``signature`` (64 bytes).  What is signed is
:func:`streams.signing.message` of the record's purpose (:data:`PURPOSES`:
a policy or manifest signature, or a signature over another kind of record,
never verifies here) and of the record *as decoded* -- every field, defaults
filled in, ``signature_key_id`` included -- without ``signature``.  Every
field is covered: a changed process id, identity, op, isolation level or
timestamp fails verification.

Readers (the redzone agent, the decide agent's trust resets, a downstream
enforcer) call :func:`verify_record` / :func:`verify_value` with the
keyring of TRUST_COMMAND_VERIFY_KEYS; :class:`SignatureError` says why a
record is refused (``unsigned``, ``bad_signature``, ``unknown_key``, or
``stale``: a genuine command replayed after a newer one, see
:func:`check_not_before`).  The SDK entry points for a downstream enforcer
are :func:`verify_quarantine_command`, :func:`verify_trust_control` and
:func:`verify_redzone_event`.  Formats: docs/security.md.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Mapping


from streams import signing
from streams.codec.avro import codec, decode_evolved
from streams.errors import ConfigError, SignatureError
from streams.signing import BAD_SIGNATURE, UNSIGNED, Keyring, SigningKey, VerifyKey

log = logging.getLogger("forgeone.trust.commands")

SIGNATURE_FIELDS = ("signature_key_id", "signature")
PURPOSES = {
    "QuarantineCommand": "forgeone.trust.quarantine-command/1",
    "TrustControl": "forgeone.trust.trust-control/1",
    "RedzoneEvent": "forgeone.trust.redzone-event/1",
}
STALE = "stale"  # SignatureError reason: genuine, but older than what it would undo
ENGINE, OPERATOR = "engine", "operator"
KEY_NAMES = {ENGINE: "engine-signing", OPERATOR: "operator-signing"}
_ENV = {ENGINE: "TRUST_ENGINE_SIGNING_KEY", OPERATOR: "TRUST_OPERATOR_SIGNING_KEY"}


def _purpose(name: str) -> str:
    try:
        return PURPOSES[name]
    except KeyError:
        raise SignatureError(f"`{name}` records are not signed commands (one of {', '.join(PURPOSES)})",
                             BAD_SIGNATURE) from None


def _label(name: str, record: Mapping[str, Any]) -> str:
    ident = record.get("command_id") or record.get("event_id")
    return f"{name} `{ident}`"


def signed_message(name: str, record: Mapping[str, Any]) -> bytes:
    """The bytes a signature over `record` (a `name` record, as decoded) is made over."""
    body = {k: v for k, v in record.items() if k != "signature"}
    try:
        return signing.message(_purpose(name), body)
    except (TypeError, ValueError) as exc:  # bytes, NaN: not canonical JSON
        raise SignatureError(f"{_label(name, record)} has no canonical form ({exc})", BAD_SIGNATURE) from exc


def sign_record(name: str, record: Mapping[str, Any], key: SigningKey) -> dict[str, Any]:
    """`record` as a reader will decode it, signed with `key`.

    The record goes through its codec first, so what is signed is exactly
    what a reader gets back (defaults filled in, lists not tuples); a record
    the codec refuses raises CodecError and nothing is signed."""
    c = codec(name)
    normal = c.decode(c.encode({**record, "signature_key_id": key.key_id, "signature": None}))
    normal["signature"] = key.sign(signed_message(name, normal))
    return normal


def verify_record(name: str, record: Mapping[str, Any], keyring: Keyring) -> VerifyKey:
    """The trusted key whose signature `record` carries; SignatureError (`unsigned`,
    `bad_signature`, `unknown_key`) otherwise."""
    kid, sig = record.get("signature_key_id"), record.get("signature")
    if kid is None and sig is None:
        raise SignatureError(f"{_label(name, record)} is not signed, and this reader requires a "
                             "signature (TRUST_COMMAND_VERIFY_KEYS)", UNSIGNED)
    if kid is None or sig is None:
        missing = "signature_key_id" if kid is None else "signature"
        raise SignatureError(f"{_label(name, record)}: signature incomplete, `{missing}` missing",
                             BAD_SIGNATURE)
    if not isinstance(sig, (bytes, bytearray)) or len(sig) != signing.SIGNATURE_BYTES:
        raise SignatureError(f"{_label(name, record)}: the signature is not {signing.SIGNATURE_BYTES} bytes",
                             BAD_SIGNATURE)
    try:
        return keyring.verify(kid, signed_message(name, record), bytes(sig))
    except SignatureError as exc:
        raise SignatureError(f"{_label(name, record)}: {exc}", exc.reason) from None


# -- decoding values written before the signature fields existed -------------------


def decode(name: str, value: bytes) -> dict:
    """A `name` value; one written before the signature fields existed reads with
    them null (Avro schema resolution).  CodecError if it is neither shape."""
    _purpose(name)
    return decode_evolved(name, value, SIGNATURE_FIELDS)


def verify_value(name: str, value: bytes | Mapping[str, Any], keyring: Keyring) -> dict:
    """Decode (if bytes) and verify a `name` record; the record, or SignatureError /
    CodecError.  Plain Avro binary: strip a Confluent wire-format header first."""
    record = decode(name, value) if isinstance(value, (bytes, bytearray, memoryview)) else dict(value)
    verify_record(name, record, keyring)
    return record


def verify_quarantine_command(value: bytes | Mapping[str, Any], keyring: Keyring) -> dict:
    """SDK: a `trust.quarantine` value a downstream enforcer may act on, or SignatureError."""
    return verify_value("QuarantineCommand", value, keyring)


def verify_trust_control(value: bytes | Mapping[str, Any], keyring: Keyring) -> dict:
    """SDK: a `trust.control` value, or SignatureError."""
    return verify_value("TrustControl", value, keyring)


def verify_redzone_event(value: bytes | Mapping[str, Any], keyring: Keyring) -> dict:
    """SDK: a `trust.redzone-events` value, or SignatureError."""
    return verify_value("RedzoneEvent", value, keyring)


# -- replay -----------------------------------------------------------------------


def _time(text: Any, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text) if isinstance(text, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise SignatureError(f"{what} is `{text}`, expected an RFC 3339 time with a zone", BAD_SIGNATURE)
    return moment


def check_not_before(name: str, record: Mapping[str, Any], floor: str | None, since: str) -> None:
    """SignatureError(`stale`) if `record` was issued before `floor` (None: no floor).

    A signature stays valid forever, so a captured genuine command could be
    published again later.  Readers refuse one issued before the state it
    would change: a trust reset older than the last reset applied to the
    identity, a transition older than the process's entry into the redzone.
    `since` says what `floor` is, for the message."""
    if floor is None:
        return
    issued = _time(record.get("timestamp"), f"{_label(name, record)} timestamp")
    if issued < _time(floor, since):
        raise SignatureError(f"{_label(name, record)} was issued at {record.get('timestamp')}, before "
                             f"{since} ({floor}): a replay", STALE)


# -- keys from the settings ---------------------------------------------------------


def command_keyring(settings: Any) -> Keyring | None:
    """The keys of TRUST_COMMAND_VERIFY_KEYS; None when unset (nothing is checked)."""
    paths = settings.command_verify_keys
    return signing.load_keyring(paths) if paths else None


def signing_key(settings: Any, role: str, keyring: Keyring | None = None) -> SigningKey | None:
    """The `role` (`engine` or `operator`) signing key, None when unset.

    ConfigError if it does not load, or if verify keys are configured and
    it is not among them (every reader would refuse what it signs)."""
    path = settings.engine_signing_key if role == ENGINE else settings.operator_signing_key
    if path is None:
        return None
    key = signing.load_signing_key(path)
    if keyring is not None and key.key_id not in keyring.keys:
        raise ConfigError(f"{_ENV[role]} `{path}` (key `{key.key_id}`) is not among "
                          f"TRUST_COMMAND_VERIFY_KEYS ({', '.join(keyring.ids())}): readers would refuse "
                          "every command it signs; add its .pub there")
    return key


def engine_signer(settings: Any, keyring: Keyring | None) -> SigningKey | None:
    """A worker's engine key; with verify keys configured it is required (its own
    redzone agent would refuse unsigned quarantine commands)."""
    key = signing_key(settings, ENGINE, keyring)
    if key is None and keyring is not None:
        raise ConfigError("TRUST_COMMAND_VERIFY_KEYS is set but TRUST_ENGINE_SIGNING_KEY is not: the "
                          "redzone agents would refuse every quarantine command this worker issues")
    return key


def refuse(exc: SignatureError, where: str) -> None:
    """Log a refused command (one line, warning level); `where` names the message."""
    log.warning("command refused (%s) at %s, nothing changed: %s", exc.reason, where, exc)
