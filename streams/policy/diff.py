"""What changed between two policy graphs, in words an operator can review."""

from __future__ import annotations

import json
from typing import Any

from streams.policy.canonical import graph_to_dict
from streams.policy.model import ZtaPolicyGraph


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value


def _fields(prefix: str, a: dict, b: dict) -> list[str]:
    out = []
    for key in list(a) + [k for k in b if k not in a]:
        if key not in b:
            out.append(f"{prefix}: removed {key} (was {_show(a[key])})")
        elif key not in a:
            out.append(f"{prefix}: added {key} = {_show(b[key])}")
        elif a[key] != b[key]:
            out.append(f"{prefix}: {key} changed from {_show(a[key])} to {_show(b[key])}")
    return out


def diff_graphs(a: ZtaPolicyGraph, b: ZtaPolicyGraph) -> list[str]:
    da, db = graph_to_dict(a), graph_to_dict(b)
    out = []
    if da["version"] != db["version"]:
        out.append(f"version: {da['version']} -> {db['version']}")
    for key in ("default_action", "enforcement_mode"):
        if da[key] != db[key]:
            out.append(f"{key} changed from {da[key]} to {db[key]}")
    for key in ("trust_thresholds", "trust_model", "syscall_classes"):
        out += _fields(key, da[key], db[key])
    out += _rules(da["identity_rules"], db["identity_rules"])
    pa, pb = da["policies"], db["policies"]
    for name in pa:
        if name not in pb:
            out.append(f"policy {name}: removed")
    for name in pb:
        if name not in pa:
            out.append(f"policy {name}: added ({_show(pb[name])})")
        elif pa[name] != pb[name]:
            out += _fields(f"policy {name}", pa[name], pb[name])
    shared_a = [n for n in pa if n in pb]
    shared_b = [n for n in pb if n in pa]
    if shared_a != shared_b:
        out.append("policy order changed (the first matching glob key wins): "
                   + ", ".join(shared_b))
    return out


def _rules(ra: list[dict], rb: list[dict]) -> list[str]:
    out = []
    for rule in ra:
        if rule not in rb:
            out.append(f"identity rule removed: {_show(rule)}")
    for rule in rb:
        if rule not in ra:
            out.append(f"identity rule added: {_show(rule)}")
    if not out and ra != rb:
        out.append("identity rules reordered (adjustments are summed in rule order)")
    return out
