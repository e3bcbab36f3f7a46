"""The project's one canonical JSON, and the canonical form of a policy graph.

:func:`canonical_json` is used everywhere a value is hashed or compared as
text (policy digests here, the audit archive's hash chain): sorted keys, no
insignificant whitespace, UTF-8 kept, bytes as base64.

A policy graph's canonical form (:func:`policy_json`) is the normalised
document (defaults filled in, argument indices as strings) with sorted keys
everywhere except ``policies``, whose document order is meaning (the first
matching glob wins).  Equal meaning, equal digest.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from typing import Any

from streams.policy.model import SyscallPolicy, ZtaPolicyGraph


def _default(value: Any) -> Any:
    """What JSON cannot hold natively: bytes as base64, other mappings as dicts."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"`{type(value).__name__}` has no canonical JSON form")


# C-accelerated encoders (the audit's hot path encodes twice per archived record)
_SORTED = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_default)
_AS_GIVEN = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=_default)


def canonical_json(value: Any, *, presorted: bool = False) -> str:
    """Sorted keys, no whitespace, UTF-8 kept, bytes as base64.

    With `presorted` the caller has already put every mapping's keys in
    their canonical order (see :func:`policy_json`), and that order is kept.
    """
    return (_AS_GIVEN if presorted else _SORTED).encode(value)


def policy_to_dict(p: SyscallPolicy) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if p.min_trust_score is not None:
        out["min_trust_score"] = p.min_trust_score
    if p.allowed_identities is not None:
        out["allowed_identities"] = list(p.allowed_identities)
    if p.denied_identities is not None:
        out["denied_identities"] = list(p.denied_identities)
    if p.arg_constraints:
        out["arg_constraints"] = {str(i): rx for i, rx in p.arg_constraints}
    if p.custom_validator is not None:
        out["custom_validator"] = p.custom_validator
    for name in ("violation_action", "enforcement_mode", "isolation_level", "forensic_mode"):
        value = getattr(p, name)
        if value is not None:
            out[name] = value.value
    if p.isolation_syscalls:
        out["isolation_syscalls"] = list(p.isolation_syscalls)
    return out


def graph_to_dict(g: ZtaPolicyGraph) -> dict[str, Any]:
    """The normalised document: loading it again gives an equal graph."""
    rules = []
    for r in g.identity_rules:
        rule: dict[str, Any] = {"identity_pattern": r.identity_pattern, "trust_adjustment": r.trust_adjustment}
        if r.syscall_patterns is not None:
            rule["syscall_patterns"] = list(r.syscall_patterns)
        if r.description:
            rule["description"] = r.description
        rules.append(rule)
    tm = g.trust_model
    return {
        "version": g.version,
        "default_action": g.default_action.value,
        "enforcement_mode": g.enforcement_mode.value,
        "trust_thresholds": dict(g.trust_thresholds),
        "trust_model": {"baseline": tm.baseline, "ceiling": tm.ceiling,
                        "violation_penalty": tm.violation_penalty, "recovery_rate": tm.recovery_rate},
        "syscall_classes": {k: list(v) for k, v in g.syscall_classes.items()},
        "identity_rules": rules,
        "policies": {p.syscall: policy_to_dict(p) for p in g.policies},
    }


def _sorted_except_policies(doc: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key in sorted(doc):
        value = doc[key]
        if key == "policies":
            value = {name: _sort_deep(body) for name, body in value.items()}
        else:
            value = _sort_deep(value)
        out[key] = value
    return out


def _sort_deep(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sort_deep(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sort_deep(v) for v in value]
    return value


def policy_json(g: ZtaPolicyGraph) -> str:
    """The canonical JSON of a policy graph (what its digest is taken of)."""
    return canonical_json(_sorted_except_policies(graph_to_dict(g)), presorted=True)


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
