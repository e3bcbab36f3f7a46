"""The data of a policy document and of one evaluation (docs/behaviour.md §1, §2).

Names follow the seed (`ZtaPolicyGraph`, `SyscallPolicy`, ...) in Python
style.  Everything here is frozen: a loaded policy never changes; a new
version is a new object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Mapping, NamedTuple


class Action(str, Enum):
    """What happens to a syscall (the seed's `ViolationAction`, plus `allow`)."""

    ALLOW = "allow"
    BLOCK = "block"
    QUARANTINE = "quarantine"
    WARN = "warn"


ViolationAction = Action


class EnforcementMode(str, Enum):
    ENFORCE = "enforce"
    AUDIT = "audit"
    PERMISSIVE = "permissive"


class DefaultAction(str, Enum):
    DENY = "deny"
    ALLOW = "allow"


class ReasonCode(str, Enum):
    """Why a check failed, in docs/behaviour.md §2 check order."""

    QUARANTINED = "quarantined"
    NO_POLICY = "no_policy"
    IDENTITY_DENIED = "identity_denied"
    IDENTITY_NOT_ALLOWED = "identity_not_allowed"
    TRUST_BELOW_MINIMUM = "trust_below_minimum"
    ARG_MISSING = "arg_missing"
    ARG_CONSTRAINT = "arg_constraint"
    CUSTOM_VALIDATOR = "custom_validator"


class IsolationLevel(str, Enum):
    FULL = "full"
    NETWORK = "network"
    FILESYSTEM = "filesystem"
    CUSTOM = "custom"


class ForensicMode(str, Enum):
    NONE = "none"
    METADATA = "metadata"
    FULL = "full"


DEFAULT_SYSCALL_CLASSES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "network": (
            "socket", "connect", "bind", "listen", "accept", "accept4",
            "sendto", "sendmsg", "recvfrom", "recvmsg",
        ),
        "filesystem": (
            "open", "openat", "open_file", "creat", "read", "write", "unlink",
            "unlinkat", "rename", "renameat", "mkdir", "rmdir", "chmod", "chown",
            "truncate",
        ),
    }
)


@dataclass(frozen=True, slots=True)
class TrustModel:
    baseline: float = 0.7
    ceiling: float = 1.0
    violation_penalty: float = 0.15
    recovery_rate: float = 0.01


@dataclass(frozen=True, slots=True)
class IdentityRule:
    identity_pattern: str
    trust_adjustment: float
    syscall_patterns: tuple[str, ...] | None = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class SyscallPolicy:
    syscall: str
    min_trust_score: float | None = None
    allowed_identities: tuple[str, ...] | None = None
    denied_identities: tuple[str, ...] | None = None
    arg_constraints: tuple[tuple[int, str], ...] = ()
    custom_validator: str | None = None
    violation_action: Action | None = None
    enforcement_mode: EnforcementMode | None = None
    isolation_level: IsolationLevel | None = None
    isolation_syscalls: tuple[str, ...] = ()
    forensic_mode: ForensicMode | None = None


@dataclass(frozen=True, slots=True)
class ZtaPolicyGraph:
    """A validated policy document (docs/behaviour.md §1.2), in document order."""

    version: str
    policies: tuple[SyscallPolicy, ...] = ()
    trust_thresholds: Mapping[str, float] = field(default_factory=dict)
    identity_rules: tuple[IdentityRule, ...] = ()
    default_action: DefaultAction = DefaultAction.DENY
    enforcement_mode: EnforcementMode = EnforcementMode.ENFORCE
    trust_model: TrustModel = TrustModel()
    syscall_classes: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: DEFAULT_SYSCALL_CLASSES)
    last_updated: str | None = None

    @property
    def quarantine_threshold(self) -> float | None:
        return self.trust_thresholds.get("quarantine")


# The records below flow once per event.  They are NamedTuples, not frozen
# dataclasses: equally immutable, but a frozen dataclass pays one
# object.__setattr__ per field at construction (2.9 us for the result record
# on this machine, against 0.3 us for a NamedTuple), which is most of an
# evaluation's budget.


class TrustVector(NamedTuple):
    score: float


class IdentityContext(NamedTuple):
    id: str
    process_id: str
    container_id: str | None = None
    tenant: str | None = None
    labels: Mapping[str, str] | None = None


class SyscallContext(NamedTuple):
    """One syscall event (docs/behaviour.md §1.1), as the engine sees it."""

    event_id: str
    syscall: str
    args: tuple[str, ...]
    identity: IdentityContext
    timestamp: str
    trust_vector: TrustVector | None = None
    execution_dna: str | None = None


class PolicyEvaluationResult(NamedTuple):
    """The decision for one event: it names its reason, version and mode.

    The last four fields are not part of the decision record but are needed
    to act on it: the isolation and forensic mode a quarantine would use, and
    the adaptive trust after this decision (None when the mode leaves it).
    """

    allowed: bool
    action: Action
    reason_code: ReasonCode | None
    reason: str
    trust_score: float
    policy_version: str
    mode: EnforcementMode
    enforced: bool
    timestamp: str
    isolation_level: IsolationLevel = IsolationLevel.FULL
    isolation_syscalls: tuple[str, ...] = ()
    forensic_mode: ForensicMode = ForensicMode.FULL
    trust_after: float | None = None
