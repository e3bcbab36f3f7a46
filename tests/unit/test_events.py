"""docs/behaviour.md §1.1: `timestamp` is an RFC 3339 date-time with a time zone, else the event is invalid.

The check lives in `context_from_record`, the one validation used offline
(`trustctl replay`: the line is reported and skipped, the rest decided) and in
the stream (the decide agent: the event goes to the DLQ, the rest decided).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from streams.errors import EventError
from streams.events import context_from_record, is_rfc3339
from tests.conftest import REPO, event_record

VALID = [
    "2026-11-28T12:00:00.000000Z",
    "2026-11-28T12:00:00Z",
    "2026-11-28T12:00:00.5Z",
    "2026-11-28T12:00:00.123456789Z",
    "2026-11-28T12:00:00+02:00",
    "2026-11-28T12:00:00-05:30",
    "2026-11-28T12:00:00.250+00:00",
    "2026-11-28t12:00:00z",  # RFC 3339 §5.6: `T` and `Z` may be lower case
    "2024-02-29T00:00:00Z",  # a leap year
    "2000-02-29T00:00:00Z",  # divisible by 400
    "2026-12-31T23:59:60Z",  # a leap second
    "2026-01-31T00:00:00Z",
    "2026-04-30T23:59:59.999999Z",
]

INVALID = [
    "yesterday",
    "1732795200",                       # a bare number, as text
    "2026-11-28T12:00:00",              # no zone
    "2026-11-28T12:00:00.000000",       # no zone, with fraction
    "2026-11-28",                       # a date only
    "12:00:00Z",                        # a time only
    "2026-11-28 12:00:00Z",             # a space instead of `T`
    "2026-11-28T12:00Z",                # no seconds
    "2026-11-28T12:00:00.Z",            # an empty fraction
    "2026-11-28T12:00:00+0200",         # offset without colon
    "2026-11-28T12:00:00+02",           # offset without minutes
    "2026-11-28T12:00:00 Z",
    "2026-11-28T24:00:00Z",             # hour 24
    "2026-11-28T12:60:00Z",             # minute 60
    "2026-11-28T12:00:61Z",
    "2026-13-01T00:00:00Z",             # month 13
    "2026-00-10T00:00:00Z",
    "2026-11-00T00:00:00Z",             # day 0
    "2026-11-31T00:00:00Z",             # November has 30 days
    "2026-02-29T00:00:00Z",             # not a leap year
    "1900-02-29T00:00:00Z",             # divisible by 100, not by 400
    "2026-11-32T00:00:00Z",
    "26-11-28T12:00:00Z",               # two-digit year
    "２０２６-11-28T12:00:00Z",          # non-ASCII digits
    " 2026-11-28T12:00:00Z",            # surrounding space
    "2026-11-28T12:00:00Z\n",
    "2026-11-28T12:00:00ZZ",
]


@pytest.mark.parametrize("text", VALID)
def test_valid_forms_are_accepted(text):
    assert is_rfc3339(text)
    assert context_from_record(event_record(timestamp=text)).timestamp == text


@pytest.mark.parametrize("text", INVALID)
def test_invalid_forms_are_refused_naming_the_field(text):
    assert not is_rfc3339(text)
    with pytest.raises(EventError) as info:
        context_from_record(event_record(timestamp=text))
    message = str(info.value)
    assert "`timestamp`" in message and "RFC 3339" in message
    assert repr(text) in message  # names the bad value


@pytest.mark.parametrize("value", [1732795200, 1732795200.5, True, ["2026-11-28T12:00:00Z"]])
def test_non_string_timestamp_is_refused_naming_the_field(value):
    with pytest.raises(EventError, match="`timestamp` must be a string"):
        context_from_record(event_record(timestamp=value))


@pytest.mark.parametrize("value", [None, ""])
def test_missing_or_empty_timestamp_is_refused(value):
    with pytest.raises(EventError, match="`timestamp`"):
        context_from_record(event_record(timestamp=value))


def test_calendar_check_gives_the_same_answer_when_memoised():
    for _ in range(2):
        assert is_rfc3339("2026-09-30T00:00:00Z") and not is_rfc3339("2026-09-31T00:00:00Z")


POLICY = "version: ts-1\ndefault_action: deny\npolicies:\n  read: {}\n"


def test_replay_reports_the_bad_timestamp_line_and_decides_the_rest(tmp_path: Path, trustctl):
    events = tmp_path / "events.jsonl"
    records = [event_record("read", ["a"], event_id="e-1"),
               event_record("read", ["b"], event_id="e-2", timestamp="yesterday"),
               event_record("read", ["c"], event_id="e-3", timestamp="2026-11-28T12:00:00"),
               event_record("read", ["d"], event_id="e-4", timestamp="2026-11-28T13:00:00+01:00")]
    events.write_text("".join(json.dumps(r) + "\n" for r in records))
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    proc = subprocess.run(trustctl + ["replay", "--policy", str(policy), "--events", str(events)],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr  # bad lines fail only with --strict
    skipped = [line for line in proc.stderr.splitlines() if ": skipped: " in line]
    assert [line.split(": skipped: ")[0] for line in skipped] == [f"{events}:2", f"{events}:3"]
    assert all("`timestamp`" in line for line in skipped)
    assert "'yesterday'" in skipped[0]
    decided = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [d["event_id"] for d in decided] == ["e-1", "e-4"]
    assert all(d["allowed"] for d in decided)
    assert decided[1]["event_timestamp"] == "2026-11-28T13:00:00+01:00"

    strict = subprocess.run(trustctl + ["replay", "--policy", str(policy), "--events", str(events), "--strict"],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert strict.returncode == 1


def test_decide_path_dead_letters_the_bad_timestamp_naming_the_field_and_decides_the_rest():
    from streams.agents.decide import BatchDecider, Source
    from streams.codec.avro import codec
    from streams.engine import TrustEngine
    from streams.policy import load_policy
    from streams.redzone.view import LocalRedzoneView

    def rec(i: int, timestamp: str) -> dict:
        return {"event_id": f"e-{i}", "syscall": "read", "args": ["x"],
                "identity": {"id": "svc-a", "process_id": "p-1", "container_id": None, "tenant": None,
                             "labels": {}},
                "trust_vector": None, "execution_dna": None, "timestamp": timestamp}

    engine = TrustEngine(load_policy({"version": "ts-1", "policies": {"read": {}}}), LocalRedzoneView(), trust={})
    decider = BatchDecider(engine, {}, clock=lambda: "2026-11-28T13:00:00.000000Z")
    value = codec("SyscallEventBatch").encode({"shim_id": "s", "seq": 1, "events": [
        rec(1, "2026-11-28T12:00:01Z"), rec(2, "yesterday"), rec(3, "2026-11-28T12:00:03+00:00")]})
    emits = decider.handle(b"svc-a", value, Source("trust.syscall-events", 0, 7))
    [dead] = [codec("DeadLetter").decode(e.value) for e in emits if e.kind == "dlq"]
    assert dead["error_code"] == "event_invalid" and dead["event_index"] == 1
    assert "`timestamp`" in dead["reason"] and "'yesterday'" in dead["reason"]
    assert dead["value"] == value and dead["offset"] == 7
    [out] = [codec("DecisionBatch").decode(e.value) for e in emits if e.kind == "decisions"]
    assert [d["event_id"] for d in out["decisions"]] == ["e-1", "e-3"]


def test_the_avro_fast_path_builds_the_same_contexts_as_the_full_check():
    """context_from_avro trusts the schema for types; for every decoded event it
    must give exactly what context_from_record gives (and refuse the same)."""
    import json

    from streams.codec.avro import codec
    from streams.events import context_from_avro

    from tests.integration.pipeline import normalise

    enc = codec("SyscallEvent")
    root = Path(__file__).resolve().parents[1] / "cases"
    records = [json.loads(line) for case in sorted(root.iterdir()) if case.is_dir()
               for line in (case / "events.jsonl").read_text().splitlines() if line.strip()]
    assert len(records) > 100
    for rec in records:
        decoded = enc.decode(enc.encode(normalise(rec)))
        assert context_from_avro(decoded) == context_from_record(decoded)
    bad = enc.decode(enc.encode(normalise(dict(records[0], timestamp="yesterday"))))
    with pytest.raises(EventError, match="timestamp"):
        context_from_avro(bad)
    empty = enc.decode(enc.encode(normalise(dict(records[0], event_id=""))))
    with pytest.raises(EventError, match="event_id"):
        context_from_avro(empty)
