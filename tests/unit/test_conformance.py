"""Every folder of tests/cases/, run through the real `trustctl replay` CLI.

The comparison is the one tests/cases/README.md prescribes: same count; per
event equal `event_id`, `allowed`, `action`, `reason_code`, `policy_version`,
`mode`, and `trust_score` within 1e-6.  Folders are found by listing
tests/cases/, so a new one is picked up; none at all fails (never skips).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

EXACT = ("event_id", "allowed", "action", "reason_code", "policy_version", "mode")
TOLERANCE = 1e-6
CASES = Path(__file__).resolve().parents[1] / "cases"


def case_folders() -> list[Path]:
    """Every folder of tests/cases/, by name (shared with the pipeline test)."""
    return sorted(p for p in CASES.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def cases() -> list:
    return [pytest.param(p, id=p.name) for p in case_folders()] or [pytest.param(None, id="no-cases")]


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("case", cases())
def test_conformance_case(case: Path | None, tmp_path: Path, trustctl: list[str], repo: Path):
    if case is None:
        pytest.fail(f"no conformance cases under {CASES}")
    for name in ("policy.yaml", "events.jsonl", "expected.jsonl"):
        assert (case / name).is_file(), f"{case.name} lacks {name}"
    out = tmp_path / "got.jsonl"
    proc = subprocess.run(
        trustctl + ["replay", "--policy", str(case / "policy.yaml"),
                          "--events", str(case / "events.jsonl"), "--out", str(out)],
        cwd=repo, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    got, expected = read_jsonl(out), read_jsonl(case / "expected.jsonl")
    assert len(got) == len(expected), f"{len(got)} decisions for {len(expected)} expected"
    mismatches = []
    for i, (g, e) in enumerate(zip(got, expected), 1):
        for key in EXACT:
            if g.get(key) != e[key]:
                mismatches.append(f"line {i} ({e['event_id']}): {key} is {g.get(key)!r}, expected {e[key]!r}")
        if abs(g["trust_score"] - e["trust_score"]) > TOLERANCE:
            mismatches.append(f"line {i} ({e['event_id']}): trust_score is {g['trust_score']!r}, "
                              f"expected {e['trust_score']!r}")
    assert not mismatches, f"{len(mismatches)} mismatch(es):\n" + "\n".join(mismatches[:20])


def test_conformance_cases_are_found():
    assert {"basic", "linux-strace"} <= {p.name for p in case_folders()}
