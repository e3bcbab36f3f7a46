"""One error tree for the whole project.

    TrustError                      base; every error the project raises on purpose
    ├── ConfigError                 a setting or environment variable is wrong
    ├── PolicyError                 a policy document is refused (carries every issue)
    │   └── PolicyVersionConflict   same version, different content
    ├── EventError                  an event is missing a field or has a wrong type
    ├── CodecError                  bytes that do not decode / a record that does not encode
    ├── RedzoneError                the redzone refused an operation
    │   ├── TransitionError         a status transition the state machine forbids
    │   └── UnknownProcessError     no such quarantined process
    ├── RedzoneUnavailable          the redzone's store (Redis) cannot be reached: retry later
    ├── DeliveryError               a record could not be delivered to Kafka
    ├── StackError                  the local Kafka/Redis stack could not be run
    ├── AuditError                  the audit archive cannot be written, read or trusted
    └── SignatureError              a signature is missing, malformed, from an unknown key,
                                    stale, or does not verify (``reason`` says which)

Messages are lowercase, name the offending value in backticks and never name
internal types.  Library errors are translated at the edge with
``raise ... from exc``.
"""

from __future__ import annotations


class TrustError(Exception):
    """Base of every error the project raises on purpose."""

    code = "trust_error"


class ConfigError(TrustError):
    code = "config"


class PolicyError(TrustError):
    """A policy document refused as a whole; ``issues`` holds every problem."""

    code = "policy_invalid"

    def __init__(self, issues: list[tuple[str, str]] | tuple[tuple[str, str], ...]):
        self.issues = tuple(issues)
        lines = [f"{path}: {msg}" if path else msg for path, msg in self.issues]
        super().__init__(
            f"policy refused with {len(lines)} error(s):\n  " + "\n  ".join(lines)
        )


class PolicyVersionConflict(PolicyError):
    code = "policy_version_conflict"


class EventError(TrustError):
    code = "event_invalid"


class CodecError(TrustError):
    code = "codec"


class RedzoneError(TrustError):
    code = "redzone"


class TransitionError(RedzoneError):
    code = "redzone_transition"


class UnknownProcessError(RedzoneError):
    code = "redzone_unknown_process"


class RedzoneUnavailable(TrustError):
    """The redzone's store cannot be reached (an outage, not a refusal: retry later).

    Deliberately not a RedzoneError: a refusal is final for its command (the
    redzone agent dead-letters it), an outage is not (the agent retries).
    ``url`` names the store without credentials.
    """

    code = "redzone_unavailable"

    def __init__(self, message: str, url: str = ""):
        super().__init__(message)
        self.url = url


class DeliveryError(TrustError):
    """Kafka did not confirm a record (the change it reports may already be applied)."""

    code = "delivery"


class StackError(TrustError):
    code = "stack"


class AuditError(TrustError):
    """The audit archive cannot be written or read, or disagrees with Kafka."""

    code = "audit"


class SignatureError(TrustError):
    """A signature or key refused; ``reason`` is a stable code (``unsigned``, ``bad_signature``...)."""

    code = "signature"

    def __init__(self, message: str, reason: str = "bad_signature"):
        super().__init__(message)
        self.reason = reason
