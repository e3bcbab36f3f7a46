"""Forensic analysis of a quarantined process: a report from its stored trace.

The source is the trace the quarantine commands carried (the identity's last
decisions, `streams.engine.trace_entry`), appended per command by
`model.apply_quarantine`.  What the report may show follows the process's
forensic mode (docs/behaviour.md §3), whatever the entries happen to hold:

- `full`: syscall histogram, outcomes, violations by reason code, a timeline
  with arguments and trust, the trust trajectory, first and last seen, and
  the policy versions involved;
- `metadata`: syscall names and outcomes only - histogram, outcomes,
  violations by reason code, a timeline without arguments or trust, first
  and last seen;
- `none`: no trace is kept, so the quarantine's reason is all there is.

A process quarantined again carries overlapping traces (each command holds
the last N decisions); entries are counted once per event id, in the order
the engine saw them.  Pure: no Redis, no Kafka.
"""

from __future__ import annotations

from typing import Any, Iterable

from streams.policy.model import ForensicMode
from streams.redzone.model import QuarantinedProcess

METADATA_FIELDS = ("timestamp", "event_id", "syscall", "allowed", "action", "reason_code")
FULL_FIELDS = METADATA_FIELDS + ("args", "trust_score", "policy_version")


def _counts(values: Iterable[Any]) -> dict[str, int]:
    """Occurrences per value, most frequent first (ties by name), for stable output."""
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def unique_entries(trace: Iterable[dict]) -> tuple[list[dict], int]:
    """Trace entries once per event id (first occurrence kept), and how many repeats were dropped."""
    seen: set[str] = set()
    out: list[dict] = []
    dropped = 0
    for e in trace:
        eid = e.get("event_id")
        if eid in seen:
            dropped += 1
            continue
        seen.add(eid)
        out.append(e)
    return out, dropped


def process_summary(p: QuarantinedProcess) -> dict[str, Any]:
    """What every report starts with: the process, its isolation and its lifecycle."""
    level, names = p.isolation.as_fields()
    return {
        "process_id": p.process_id, "identity_id": p.identity_id, "container_id": p.container_id,
        "status": p.status.value, "isolation_level": level, "isolation_syscalls": names,
        "forensic_mode": p.forensic_mode.value, "reason": p.reason, "reason_code": p.reason_code,
        "quarantined_at": p.quarantined_at, "updated_at": p.updated_at, "history": list(p.history),
    }


def forensic_report(p: QuarantinedProcess) -> dict[str, Any]:
    """The analysis report of `p`, fitting its forensic mode (see the module docstring)."""
    report = process_summary(p)
    mode = p.forensic_mode
    if mode is ForensicMode.NONE:
        report["trace_entries"] = 0
        report["note"] = "forensic mode `none`: no trace was kept; the reason is all there is"
        return report
    entries, dropped = unique_entries(p.trace)
    fields = FULL_FIELDS if mode is ForensicMode.FULL else METADATA_FIELDS
    stamps = [e["timestamp"] for e in entries if e.get("timestamp")]
    report.update({
        "trace_entries": len(entries),
        "duplicate_entries_dropped": dropped,
        # RFC 3339 UTC stamps of one fixed width sort as text.
        "first_seen": min(stamps) if stamps else None,
        "last_seen": max(stamps) if stamps else None,
        "syscall_histogram": _counts(e["syscall"] for e in entries),
        "outcomes": _counts(e["action"] for e in entries),
        "violations_by_reason": _counts(e["reason_code"] for e in entries if e.get("reason_code")),
        "timeline": [{f: e.get(f) for f in fields} for e in entries],
    })
    if mode is ForensicMode.FULL:
        versions: list[str] = []
        for v in [e.get("policy_version") for e in entries] + list(p.policy_versions):
            if v and v not in versions:
                versions.append(v)
        report["trust_trajectory"] = [
            {"timestamp": e.get("timestamp"), "event_id": e.get("event_id"), "trust_score": e["trust_score"]}
            for e in entries if e.get("trust_score") is not None
        ]
        report["policy_versions"] = versions
    return report
