"""The policy engine: pure, no I/O.

Load a document (:func:`load_policy`), which validates it whole and compiles
it into an indexed :class:`CompiledPolicy`; evaluate events against it with
:func:`evaluate`.  Nothing in this package imports Kafka, Faust, Redis or
fastavro.
"""

from streams.policy.model import (
    Action,
    EnforcementMode,
    ForensicMode,
    IdentityContext,
    IdentityRule,
    IsolationLevel,
    PolicyEvaluationResult,
    ReasonCode,
    SyscallContext,
    SyscallPolicy,
    TrustModel,
    TrustVector,
    ViolationAction,
    ZtaPolicyGraph,
)
from streams.policy.loader import load_policy, load_policy_file, parse_policy
from streams.policy.compiled import CompiledPolicy
from streams.policy.evaluate import evaluate

__all__ = [
    "Action",
    "CompiledPolicy",
    "EnforcementMode",
    "ForensicMode",
    "IdentityContext",
    "IdentityRule",
    "IsolationLevel",
    "PolicyEvaluationResult",
    "ReasonCode",
    "SyscallContext",
    "SyscallPolicy",
    "TrustModel",
    "TrustVector",
    "ViolationAction",
    "ZtaPolicyGraph",
    "evaluate",
    "load_policy",
    "load_policy_file",
    "parse_policy",
]
