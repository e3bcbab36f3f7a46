"""`trustctl policy validate|diff` and `trustctl replay`.

Most tests call the CLI's `main(argv)` in-process (fast, same code path after
argument parsing); `test_real_cli_*` run the installed `trustctl` in a subprocess.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[3]
NOW = "2026-11-28T12:00:00.000000Z"


def event_record(syscall, args=(), *, identity="svc-a", process="p-1", score=None, event_id="e-1"):
    rec = {"event_id": event_id, "syscall": syscall, "args": list(args),
           "identity": {"id": identity, "process_id": process, "container_id": "c-1"}, "timestamp": NOW}
    if score is not None:
        rec["trust_vector"] = {"score": score}
    return rec

POLICY = {
    "version": "cli-1",
    "default_action": "deny",
    "enforcement_mode": "enforce",
    "trust_thresholds": {"quarantine": 0.2},
    "identity_rules": [{"identity_pattern": "svc-pay*", "trust_adjustment": 0.1}],
    "policies": {
        "open_file": {"min_trust_score": 0.5, "arg_constraints": {0: "/tmp/.*"},
                      "custom_validator": "no_path_traversal", "isolation_level": "filesystem"},
        "connect": {"allowed_identities": ["svc-web*"], "violation_action": "quarantine",
                    "isolation_level": "network"},
        "read": {},
    },
}


def cli(trustctl, *args: str) -> subprocess.CompletedProcess:
    """Run `trustctl ARGS` in-process; stdout, stderr and the exit code as a subprocess would give."""
    from streams.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 1
    return subprocess.CompletedProcess(["trustctl", *args], code, out.getvalue(), err.getvalue())


def real_cli(trustctl, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(trustctl + list(args), cwd=REPO, capture_output=True, text=True, timeout=60)


def write_yaml(path: Path, doc) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def sample_events() -> list[dict]:
    return [
        event_record("open_file", ["/tmp/a"], identity="svc-pay", event_id="e-1", score=0.9),
        event_record("open_file", ["/etc/passwd"], identity="svc-web", event_id="e-2"),
        event_record("connect", ["10.0.0.1", "443"], identity="svc-db", process="p-9", event_id="e-3"),
        event_record("socket", ["AF_INET"], identity="svc-db", process="p-9", event_id="e-4"),
        event_record("mount", ["/dev/sda"], identity="svc-web", event_id="e-5", score=0.1),
        event_record("open_file", ["/tmp/../etc"], identity="svc-web", process="p-2", event_id="e-6"),
    ]


# --- policy validate ----------------------------------------------------------------------------

def test_validate_lists_every_error_and_exits_1(trustctl, tmp_path):
    bad = write_yaml(tmp_path / "bad.yaml", {
        "default_action": "maybe",
        "trust_thresholds": {"quarantine": 1.5},
        "policies": {"open_file": {"arg_constraints": {0: "(("}, "custom_validator": "nope",
                                   "colour": "red"}},
    })
    r = cli(trustctl, "policy", "validate", str(bad))
    assert r.returncode == 1
    text = r.stdout + r.stderr
    assert "6 error(s)" in text
    for path in ("version", "default_action", "trust_thresholds.quarantine",
                 "policies.open_file.arg_constraints.0", "policies.open_file.custom_validator",
                 "policies.open_file.colour"):
        assert f"{path}:" in text, path


def test_validate_good_document_exits_0(trustctl, tmp_path):
    good = write_yaml(tmp_path / "good.yaml", POLICY)
    r = cli(trustctl, "policy", "validate", str(good))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "valid" in r.stdout and "cli-1" in r.stdout and "3 policies" in r.stdout
    assert "sha256:" in r.stdout


def test_validate_missing_file_is_an_error(trustctl, tmp_path):
    r = cli(trustctl, "policy", "validate", str(tmp_path / "nope.yaml"))
    assert r.returncode != 0
    assert "nope.yaml" in r.stdout + r.stderr


# --- policy diff ---------------------------------------------------------------------------------

def test_diff_describes_every_kind_of_change(trustctl, tmp_path):
    b_doc = json.loads(json.dumps(POLICY))
    b_doc["version"] = "cli-2"
    b_doc["enforcement_mode"] = "audit"
    b_doc["trust_thresholds"] = {"quarantine": 0.3}
    b_doc["identity_rules"] = [{"identity_pattern": "svc-web*", "trust_adjustment": -0.1}]
    del b_doc["policies"]["read"]
    b_doc["policies"]["ptrace"] = {"violation_action": "quarantine"}
    b_doc["policies"]["open_file"]["min_trust_score"] = 0.6
    del b_doc["policies"]["open_file"]["custom_validator"]
    b_doc["policies"]["connect"]["denied_identities"] = ["svc-web-canary"]
    a = write_yaml(tmp_path / "a.yaml", POLICY)
    b = write_yaml(tmp_path / "b.yaml", b_doc)
    r = cli(trustctl, "policy", "diff", str(a), str(b))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "cli-1" in out and "cli-2" in out
    assert "enforcement_mode" in out and "enforce" in out and "audit" in out
    assert "quarantine" in out and "0.2" in out and "0.3" in out
    assert "policy read: removed" in out
    assert "policy ptrace: added" in out
    assert "policy open_file: min_trust_score changed from 0.5 to 0.6" in out
    assert "policy open_file: removed custom_validator" in out
    assert "policy connect: added denied_identities" in out
    assert "identity rule removed" in out and "svc-pay*" in out
    assert "identity rule added" in out and "svc-web*" in out


def test_diff_reports_policy_order_change(trustctl, tmp_path):
    a = write_yaml(tmp_path / "a.yaml", {"version": "v1", "policies": {"o*": {}, "op*": {}}})
    b = write_yaml(tmp_path / "b.yaml", {"version": "v1", "policies": {"op*": {}, "o*": {}}})
    r = cli(trustctl, "policy", "diff", str(a), str(b))
    assert r.returncode == 0 and "order" in r.stdout


def test_diff_of_equal_documents_says_no_changes(trustctl, tmp_path):
    a = write_yaml(tmp_path / "a.yaml", POLICY)
    b = tmp_path / "b.json"
    b.write_text(json.dumps(POLICY))
    r = cli(trustctl, "policy", "diff", str(a), str(b))
    assert r.returncode == 0
    assert r.stdout.strip() == "no changes in meaning"


# --- replay ----------------------------------------------------------------------------------

@pytest.fixture
def policy_file(tmp_path) -> Path:
    return write_yaml(tmp_path / "policy.yaml", POLICY)


@pytest.fixture
def bad_events(tmp_path) -> Path:
    good = sample_events()
    missing = event_record("read", event_id="e-x")
    del missing["identity"]["process_id"]
    return write_jsonl(tmp_path / "events.jsonl", [
        good[0],                                              # 1
        "{not json",                                          # 2
        good[1],                                              # 3
        "",                                                   # 4 blank: ignored
        missing,                                              # 5
        "[1, 2, 3]",                                          # 6
        {**good[2], "args": "10.0.0.1"},                      # 7
        {**good[3], "trust_vector": {"score": 1.5}},          # 8
        good[4],                                              # 9
    ])


def test_replay_reports_bad_lines_and_continues(trustctl, policy_file, bad_events):
    r = cli(trustctl, "replay", "--policy", str(policy_file), "--events", str(bad_events))
    assert r.returncode == 0, r.stderr
    decisions = [json.loads(line) for line in r.stdout.splitlines()]
    assert [d["event_id"] for d in decisions] == ["e-1", "e-2", "e-5"]
    skipped = [line for line in r.stderr.splitlines() if ": skipped: " in line]
    assert [line.split(": skipped: ")[0] for line in skipped] == [
        f"{bad_events}:{n}" for n in (2, 5, 6, 7, 8)]
    assert "process_id" in skipped[1]
    assert "args" in skipped[3]
    assert "trust_vector.score" in skipped[4]
    assert "5 bad" in r.stderr and "3 decided" in r.stderr


def test_replay_strict_exits_1_on_bad_lines(trustctl, policy_file, bad_events):
    r = cli(trustctl, "replay", "--policy", str(policy_file), "--events", str(bad_events), "--strict")
    assert r.returncode == 1
    assert len(r.stdout.splitlines()) == 3  # good lines are still decided


def test_replay_strict_exits_0_when_all_lines_are_good(trustctl, policy_file, tmp_path):
    events = write_jsonl(tmp_path / "ok.jsonl", sample_events())
    r = cli(trustctl, "replay", "--policy", str(policy_file), "--events", str(events), "--strict")
    assert r.returncode == 0, r.stderr
    assert "0 bad" in r.stderr


def test_replay_decisions_and_summary(trustctl, policy_file, tmp_path):
    events = write_jsonl(tmp_path / "ok.jsonl", sample_events())
    r = cli(trustctl, "replay", "--policy", str(policy_file), "--events", str(events))
    d = {x["event_id"]: x for x in map(json.loads, r.stdout.splitlines())}
    assert d["e-1"]["allowed"] is True and d["e-1"]["trust_score"] == 0.8
    assert d["e-2"]["reason_code"] == "arg_constraint"
    assert d["e-3"]["reason_code"] == "identity_not_allowed" and d["e-3"]["action"] == "quarantine"
    assert d["e-4"]["reason_code"] == "quarantined"  # the very next event of p-9
    assert d["e-5"]["reason_code"] == "no_policy"
    # svc-web lost trust twice (e-2, e-5): 0.7 -> 0.55 -> 0.4, below open_file's 0.5
    assert d["e-6"]["reason_code"] == "trust_below_minimum" and d["e-6"]["trust_score"] == 0.4
    assert all(x["policy_version"] == "cli-1" and x["mode"] == "enforce" for x in d.values())
    assert "replayed 6 events: 6 decided, 0 bad, 5 violations, 1 quarantines" in r.stderr


def test_replay_out_file(trustctl, policy_file, tmp_path):
    events = write_jsonl(tmp_path / "ok.jsonl", sample_events())
    out = tmp_path / "decisions.jsonl"
    r = cli(trustctl, "replay", "--policy", str(policy_file), "--events", str(events), "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    lines = out.read_text().splitlines()
    assert [json.loads(x)["event_id"] for x in lines] == [f"e-{i}" for i in range(1, 7)]
    plain = cli(trustctl, "replay", "--policy", str(policy_file), "--events", str(events))
    assert plain.stdout == out.read_text()


def test_replay_refuses_a_bad_policy(trustctl, tmp_path):
    bad = write_yaml(tmp_path / "bad.yaml", {"version": "v1", "default_action": "maybe"})
    events = write_jsonl(tmp_path / "ok.jsonl", sample_events())
    r = cli(trustctl, "replay", "--policy", str(bad), "--events", str(events))
    assert r.returncode == 2
    assert "default_action" in r.stderr and r.stdout == ""


def test_replay_missing_events_file(trustctl, policy_file, tmp_path):
    r = cli(trustctl, "replay", "--policy", str(policy_file), "--events", str(tmp_path / "none.jsonl"))
    assert r.returncode == 2 and "none.jsonl" in r.stderr


# --- Avro container input ---------------------------------------------------------------------

INLINE_SCHEMA = {
    "type": "record", "name": "SyscallEvent", "namespace": "forgeone.trust",
    "fields": [
        {"name": "event_id", "type": "string"},
        {"name": "syscall", "type": "string"},
        {"name": "args", "type": {"type": "array", "items": "string"}},
        {"name": "identity", "type": {"type": "record", "name": "Identity", "fields": [
            {"name": "id", "type": "string"},
            {"name": "process_id", "type": "string"},
            {"name": "container_id", "type": ["null", "string"], "default": None},
            {"name": "tenant", "type": ["null", "string"], "default": None},
            {"name": "labels", "type": {"type": "map", "values": "string"}, "default": {}},
        ]}},
        {"name": "trust_vector", "type": ["null", {"type": "record", "name": "TrustVector",
                                                   "fields": [{"name": "score", "type": "double"}]}],
         "default": None},
        {"name": "execution_dna", "type": ["null", "string"], "default": None},
        {"name": "timestamp", "type": "string"},
    ],
}


def syscall_event_schema():
    fastavro = pytest.importorskip("fastavro")
    path = REPO / "schemas" / "forgeone.trust.SyscallEvent.avsc"
    if path.is_file():
        return fastavro.schema.load_schema(str(path))
    return fastavro.parse_schema(INLINE_SCHEMA)


def test_avro_container_gives_same_decisions_as_jsonl(trustctl, policy_file, tmp_path):
    import fastavro

    records = sample_events()
    jsonl = write_jsonl(tmp_path / "events.jsonl", records)
    avro = tmp_path / "events.avro"
    avro_records = []
    for rec in records:
        ident = {"container_id": None, "tenant": None, "labels": {}, **rec["identity"]}
        avro_records.append({"trust_vector": None, "execution_dna": None, **rec, "identity": ident})
    with open(avro, "wb") as f:
        fastavro.writer(f, syscall_event_schema(), avro_records)
    a = cli(trustctl, "replay", "--policy", str(policy_file), "--events", str(avro))
    j = cli(trustctl, "replay", "--policy", str(policy_file), "--events", str(jsonl))
    assert a.returncode == 0 and j.returncode == 0, a.stderr + j.stderr
    got_a = [json.loads(x) for x in a.stdout.splitlines()]
    got_j = [json.loads(x) for x in j.stdout.splitlines()]
    assert len(got_a) == len(records)
    assert got_a == got_j
    assert "0 bad" in a.stderr


# --- the installed command itself -------------------------------------------------------------

def test_real_cli_replay_matches_in_process(trustctl, policy_file, bad_events):
    real = real_cli(trustctl, "replay", "--policy", str(policy_file), "--events", str(bad_events), "--strict")
    inproc = cli(trustctl, "replay", "--policy", str(policy_file), "--events", str(bad_events), "--strict")
    assert real.returncode == inproc.returncode == 1
    assert real.stdout == inproc.stdout
    assert real.stderr == inproc.stderr


def test_real_cli_validate_exit_codes(trustctl, tmp_path):
    good = write_yaml(tmp_path / "good.yaml", POLICY)
    bad = write_yaml(tmp_path / "bad.yaml", {"version": "v1", "policies": {"x": {"min_trust_score": 2}}})
    assert real_cli(trustctl, "policy", "validate", str(good)).returncode == 0
    r = real_cli(trustctl, "policy", "validate", str(bad))
    assert r.returncode == 1 and "policies.x.min_trust_score" in r.stdout


def test_replay_skips_undecodable_bytes(trustctl, policy_file, tmp_path):
    events = tmp_path / "bytes.jsonl"
    good = json.dumps(sample_events()[0]).encode()
    events.write_bytes(good + b"\n" + b'{"event_id": "\xff\xfe"}\n' + good.replace(b"e-1", b"e-2") + b"\n")
    r = cli(trustctl, "replay", "--policy", str(policy_file), "--events", str(events))
    assert r.returncode == 0, r.stderr
    assert [json.loads(x)["event_id"] for x in r.stdout.splitlines()] == ["e-1", "e-2"]
    assert f"{events}:2: skipped: " in r.stderr
    assert "1 bad" in r.stderr
