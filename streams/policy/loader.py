"""Load a policy document: validate it whole, then compile it.

Validation collects *every* problem with the path of its field
(``policies.open_file.arg_constraints.0: regex does not compile: ...``) and
refuses the document as a whole; nothing half-loaded ever escapes.
"""

from __future__ import annotations

import json
import math
import re
from enum import Enum
from pathlib import Path
from typing import Any, Mapping

import yaml

from streams.errors import PolicyError
from streams.policy import validators
from streams.policy.model import (
    DEFAULT_SYSCALL_CLASSES,
    Action,
    DefaultAction,
    EnforcementMode,
    ForensicMode,
    IdentityRule,
    IsolationLevel,
    SyscallPolicy,
    TrustModel,
    ZtaPolicyGraph,
)

TOP_FIELDS = frozenset(
    {"version", "default_action", "enforcement_mode", "trust_thresholds", "trust_model",
     "syscall_classes", "identity_rules", "policies", "last_updated", "description"}
)
RULE_FIELDS = frozenset({"identity_pattern", "trust_adjustment", "syscall_patterns", "description"})
POLICY_FIELDS = frozenset(
    {"min_trust_score", "allowed_identities", "denied_identities", "arg_constraints",
     "custom_validator", "violation_action", "enforcement_mode", "isolation_level",
     "isolation_syscalls", "forensic_mode", "description"}
)
TRUST_MODEL_FIELDS = ("baseline", "ceiling", "violation_penalty", "recovery_rate")


class _Issues:
    """Collects (path, message) pairs while a document is checked."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, path: str, msg: str) -> None:
        self.items.append((path, msg))

    # Each checker returns the converted value, or None after recording an issue.
    def string(self, value: Any, path: str, *, non_empty: bool = False) -> str | None:
        if not isinstance(value, str):
            self.add(path, f"must be a string, got {_kind(value)}")
            return None
        if non_empty and not value.strip():
            self.add(path, "must not be empty")
            return None
        return value

    def number(self, value: Any, path: str, lo: float, hi: float) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.add(path, f"must be a number, got {_kind(value)}")
            return None
        if math.isnan(value) or not lo <= value <= hi:
            self.add(path, f"`{value}` is outside [{_fmt(lo)}, {_fmt(hi)}]")
            return None
        return float(value)

    def enum(self, value: Any, enum: type[Enum], path: str) -> Any:
        allowed = [m.value for m in enum]
        if not isinstance(value, str) or value not in allowed:
            self.add(path, f"unknown value `{value}`; expected one of {', '.join(allowed)}")
            return None
        return enum(value)

    def mapping(self, value: Any, path: str) -> Mapping | None:
        if not isinstance(value, Mapping):
            self.add(path, f"must be a mapping, got {_kind(value)}")
            return None
        return value

    def str_list(self, value: Any, path: str) -> tuple[str, ...] | None:
        if not isinstance(value, list):
            self.add(path, f"must be a list of strings, got {_kind(value)}")
            return None
        ok = True
        for i, item in enumerate(value):
            ok = self.string(item, f"{path}.{i}") is not None and ok
        return tuple(value) if ok else None

    def unknown_fields(self, value: Mapping, known: frozenset, path: str) -> None:
        for key in value:
            if key not in known:
                self.add(_join(path, str(key)), "unknown field")


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string",
            list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Loader(yaml.SafeLoader):
    """YAML 1.1 safe loader that also reads YAML 1.2 / JSON floats such as `1e-2`."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def parse_text(text: str | bytes, *, source: str = "policy") -> Any:
    """JSON or YAML text to plain data; syntax errors refuse the document."""
    try:
        try:
            return json.loads(text)
        except ValueError:
            pass
        try:
            return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
        except yaml.YAMLError as exc:
            raise PolicyError([("", f"{source} is not valid YAML or JSON: {exc}")]) from exc
    except RecursionError as exc:  # nesting deeper than the parsers go
        raise PolicyError([("", f"{source} is nested too deeply to be a policy document")]) from exc


def parse_policy(doc: Any, *, last_updated: str | None = None) -> ZtaPolicyGraph:
    """Validate plain data as a policy document; raise PolicyError with every issue."""
    issues = _Issues()
    if issues.mapping(doc, "") is None:
        raise PolicyError([("", f"a policy document must be a mapping, got {_kind(doc)}")])
    issues.unknown_fields(doc, TOP_FIELDS, "")
    if "version" not in doc:
        issues.add("version", "is required")
        version = None
    else:
        version = issues.string(doc["version"], "version", non_empty=True)
    default_action = _optional_enum(issues, doc, "default_action", DefaultAction, DefaultAction.DENY, "")
    mode = _optional_enum(issues, doc, "enforcement_mode", EnforcementMode, EnforcementMode.ENFORCE, "")
    thresholds = _thresholds(issues, doc.get("trust_thresholds", {}))
    trust_model = _trust_model(issues, doc.get("trust_model", {}))
    classes = _syscall_classes(issues, doc.get("syscall_classes", None))
    rules = _identity_rules(issues, doc.get("identity_rules", []))
    policies = _policies(issues, doc.get("policies", {}))
    if "last_updated" in doc and doc["last_updated"] is not None:
        last_updated = issues.string(doc["last_updated"], "last_updated") or last_updated
    if issues.items:
        raise PolicyError(issues.items)
    return ZtaPolicyGraph(
        version=version,
        policies=policies,
        trust_thresholds=thresholds,
        identity_rules=rules,
        default_action=default_action,
        enforcement_mode=mode,
        trust_model=trust_model,
        syscall_classes=classes,
        last_updated=last_updated,
    )


def _optional_enum(issues: _Issues, m: Mapping, key: str, enum: type[Enum], default: Any, path: str) -> Any:
    if key not in m or m[key] is None:
        return default
    return issues.enum(m[key], enum, _join(path, key))


def _thresholds(issues: _Issues, raw: Any) -> dict[str, float]:
    if raw is None:
        return {}
    if issues.mapping(raw, "trust_thresholds") is None:
        return {}
    out = {}
    for name, value in raw.items():
        score = issues.number(value, f"trust_thresholds.{name}", 0.0, 1.0)
        if score is not None:
            out[str(name)] = score
    return out


def _trust_model(issues: _Issues, raw: Any) -> TrustModel:
    if raw is None:
        return TrustModel()
    if issues.mapping(raw, "trust_model") is None:
        return TrustModel()
    issues.unknown_fields(raw, frozenset(TRUST_MODEL_FIELDS), "trust_model")
    defaults = TrustModel()
    values = {}
    for name in TRUST_MODEL_FIELDS:
        if name in raw:
            values[name] = issues.number(raw[name], f"trust_model.{name}", 0.0, 1.0)
        else:
            values[name] = getattr(defaults, name)
    if None in values.values():
        return defaults
    model = TrustModel(**values)
    if model.baseline > model.ceiling:
        issues.add("trust_model.baseline", f"`{model.baseline}` is above the ceiling `{model.ceiling}`")
    return model


def _syscall_classes(issues: _Issues, raw: Any) -> Mapping[str, tuple[str, ...]]:
    if raw is None:
        return DEFAULT_SYSCALL_CLASSES
    if issues.mapping(raw, "syscall_classes") is None:
        return DEFAULT_SYSCALL_CLASSES
    out = dict(DEFAULT_SYSCALL_CLASSES)
    for name, members in raw.items():
        listed = issues.str_list(members, f"syscall_classes.{name}")
        if listed is not None:
            out[str(name)] = listed
    return out


def _identity_rules(issues: _Issues, raw: Any) -> tuple[IdentityRule, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        issues.add("identity_rules", f"must be a list, got {_kind(raw)}")
        return ()
    rules = []
    for i, item in enumerate(raw):
        path = f"identity_rules.{i}"
        if issues.mapping(item, path) is None:
            continue
        issues.unknown_fields(item, RULE_FIELDS, path)
        pattern = adjustment = None
        if "identity_pattern" not in item:
            issues.add(f"{path}.identity_pattern", "is required")
        else:
            pattern = issues.string(item["identity_pattern"], f"{path}.identity_pattern", non_empty=True)
        if "trust_adjustment" not in item:
            issues.add(f"{path}.trust_adjustment", "is required")
        else:
            adjustment = issues.number(item["trust_adjustment"], f"{path}.trust_adjustment", -1.0, 1.0)
        patterns = None
        if item.get("syscall_patterns") is not None:
            patterns = issues.str_list(item["syscall_patterns"], f"{path}.syscall_patterns")
        description = ""
        if item.get("description") is not None:
            description = issues.string(item["description"], f"{path}.description") or ""
        if pattern is not None and adjustment is not None:
            rules.append(IdentityRule(pattern, adjustment, patterns, description))
    return tuple(rules)


def _policies(issues: _Issues, raw: Any) -> tuple[SyscallPolicy, ...]:
    if raw is None:
        return ()
    if issues.mapping(raw, "policies") is None:
        return ()
    out = []
    for key, body in raw.items():
        path = f"policies.{key}"
        if not isinstance(key, str) or not key:
            issues.add(path, "a policy key must be a non-empty syscall name or glob")
            continue
        policy = _policy(issues, key, {} if body is None else body, path)
        if policy is not None:
            out.append(policy)
    return tuple(out)


def _policy(issues: _Issues, key: str, body: Any, path: str) -> SyscallPolicy | None:
    if issues.mapping(body, path) is None:
        return None
    before = len(issues.items)
    issues.unknown_fields(body, POLICY_FIELDS, path)
    fields: dict[str, Any] = {"syscall": key}
    if body.get("min_trust_score") is not None:
        fields["min_trust_score"] = issues.number(body["min_trust_score"], f"{path}.min_trust_score", 0.0, 1.0)
    for name in ("allowed_identities", "denied_identities"):
        if body.get(name) is not None:
            fields[name] = issues.str_list(body[name], f"{path}.{name}")
    if body.get("arg_constraints") is not None:
        fields["arg_constraints"] = _arg_constraints(issues, body["arg_constraints"], f"{path}.arg_constraints")
    if body.get("custom_validator") is not None:
        name = issues.string(body["custom_validator"], f"{path}.custom_validator", non_empty=True)
        if name is not None and validators.get(name) is None:
            issues.add(f"{path}.custom_validator",
                       f"validator `{name}` is not registered (known: {', '.join(validators.names())})")
        fields["custom_validator"] = name
    for name, enum in (("violation_action", Action), ("enforcement_mode", EnforcementMode),
                       ("isolation_level", IsolationLevel), ("forensic_mode", ForensicMode)):
        fields[name] = _optional_enum(issues, body, name, enum, None, path)
    if body.get("isolation_syscalls") is not None:
        fields["isolation_syscalls"] = issues.str_list(body["isolation_syscalls"], f"{path}.isolation_syscalls")
    if fields.get("isolation_level") is IsolationLevel.CUSTOM and not fields.get("isolation_syscalls"):
        issues.add(f"{path}.isolation_syscalls", "custom isolation needs a non-empty list of syscalls or globs")
    if len(issues.items) > before:
        return None
    return SyscallPolicy(**{k: v for k, v in fields.items() if v is not None})


def _arg_constraints(issues: _Issues, raw: Any, path: str) -> tuple[tuple[int, str], ...]:
    if issues.mapping(raw, path) is None:
        return ()
    out = []
    for key, pattern in raw.items():
        kpath = f"{path}.{key}"
        index = _arg_index(key)
        if index is None:
            issues.add(kpath, f"`{key}` is not an argument index (a whole number >= 0)")
            continue
        if issues.string(pattern, kpath) is None:
            continue
        try:
            re.compile(pattern)
        except re.error as exc:
            issues.add(kpath, f"regex does not compile: {exc}")
            continue
        out.append((index, pattern))
    seen = [i for i, _ in out]
    if len(seen) != len(set(seen)):
        issues.add(path, "an argument index is constrained twice")
    return tuple(sorted(out))


def _arg_index(key: Any) -> int | None:
    if isinstance(key, bool):
        return None
    if isinstance(key, int):
        return key if key >= 0 else None
    if isinstance(key, str) and key.isdigit() and key.isascii():
        return int(key)
    return None


def load_policy(source: Any, *, last_updated: str | None = None):
    """Validate and compile a document given as text or plain data."""
    from streams.policy.compiled import CompiledPolicy

    doc = parse_text(source) if isinstance(source, (str, bytes)) else source
    return CompiledPolicy(parse_policy(doc, last_updated=last_updated))


def load_policy_file(path: str | Path, *, last_updated: str | None = None):
    """Read, validate and compile a YAML or JSON policy file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError([("", f"cannot read policy file `{p}`: {exc.strerror}")]) from exc
    doc = parse_text(text, source=f"`{p}`")
    return load_policy(doc, last_updated=last_updated)
