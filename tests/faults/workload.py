"""Realistic traffic for the fault suite: unique event ids, endless, deterministic.

- :func:`strace_copies`: the real syscalls of tests/cases/linux-strace (`ls`,
  a shell pipeline, `curl`), copy after copy.  Copy *k* is one more host
  running the same tools: its event ids, identities and process ids carry
  the suffix `.c<k>`, so copies spread over the partitions and each has its
  own adaptive trust.  :func:`strace_policy` is the case's policy with every
  identity pattern widened from `tool-ls` to `tool-ls.*`, so each copy is
  decided exactly as the original (checked in test_accounting.py).
- :func:`simulated`: `streams.simulate` traffic under examples/policy.yaml,
  with an attacker every `attacker_every` events: its ptrace is quarantined,
  so quarantines keep happening (the Redis scenario needs them).

Pure: no Kafka.  Events are full SyscallEvent records (optional fields
present) as the shim's strict check wants them.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from streams.simulate import generate
from tests.integration.pipeline import normalise

REPO = Path(__file__).resolve().parents[2]
STRACE = REPO / "tests" / "cases" / "linux-strace"
EXAMPLE_POLICY = REPO / "examples" / "policy.yaml"


def full_event(rec: dict[str, Any]) -> dict[str, Any]:
    """A SyscallEvent record with every optional field present (the Avro shape)."""
    return normalise(rec)


def strace_events() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (STRACE / "events.jsonl").read_text().splitlines() if line.strip()]


def strace_copy(events: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """Copy `k` of the case's events: ids, identity and process suffixed `.c<k>`."""
    out = []
    for e in events:
        e = copy.deepcopy(e)
        e["event_id"] = f"{e['event_id']}.c{k}"
        e["identity"]["id"] = f"{e['identity']['id']}.c{k}"
        e["identity"]["process_id"] = f"{e['identity']['process_id']}.c{k}"
        out.append(full_event(e))
    return out


def strace_copies(start: int = 0) -> Iterator[dict[str, Any]]:
    """Copy after copy of the linux-strace events, endlessly, from copy `start`."""
    events = strace_events()
    k = start
    while True:
        yield from strace_copy(events, k)
        k += 1


def _widen(pattern: str) -> str:
    return pattern if pattern.endswith("*") else pattern + ".*"


def strace_policy_doc() -> dict[str, Any]:
    """The linux-strace policy with identity patterns matching every copy."""
    doc = yaml.safe_load((STRACE / "policy.yaml").read_text())
    for rule in doc.get("identity_rules", []):
        rule["identity_pattern"] = _widen(rule["identity_pattern"])
    for pol in doc.get("policies", {}).values():
        for key in ("allowed_identities", "denied_identities"):
            if pol.get(key):
                pol[key] = [_widen(p) for p in pol[key]]
    doc["version"] = f"{doc['version']}-copies"
    return doc


def write_strace_policy(path: Path) -> Path:
    path.write_text(yaml.safe_dump(strace_policy_doc(), sort_keys=False))
    return path


def simulated(seed: int, identities: int = 40, attacker_every: int = 300) -> Iterator[dict[str, Any]]:
    """streams.simulate traffic (fixed start time, so a seed gives the same events)."""
    start = datetime(2026, 11, 28, 12, 0, tzinfo=timezone.utc)
    for e in generate(identities, seed=seed, attacker_every=attacker_every, start=start):
        yield full_event(e)
