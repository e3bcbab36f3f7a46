"""`trustctl audit export`: period, identity and kind filters; formats; refusing a tampered archive."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

import fastavro
import pytest

from streams.audit import samples
from streams.audit.archive import data_name, read_file
from streams.audit.chain import canonical_json, record_hash
from streams.audit.export import Selection, export
from streams.cli.main import main
from streams.errors import AuditError


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    samples.build_archive(tmp_path, samples.messages(samples.traffic(40), samples.TOPICS), files=3)
    return tmp_path


def all_records(directory: Path) -> list[dict]:
    return [r for seq in (1, 2, 3) for r in read_file(directory / data_name(seq))[1]]


def jsonl(directory: Path, selection: Selection) -> list[dict]:
    out = io.StringIO()
    export(directory, selection, "jsonl", out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_period_is_half_open_by_event_time(archive):
    # traffic: batch i at T0 + i seconds
    lines = jsonl(archive, Selection.of("2026-11-28T12:00:10Z", "2026-11-28T12:00:20Z"))
    times = {line["event_time"] for line in lines}
    assert min(times) == samples.at(10) and max(times) == samples.at(19)
    expected = [r for r in all_records(archive) if samples.at(10) <= r["event_time"] < samples.at(20)]
    assert [line["hash"] for line in lines] == [r["hash"] for r in expected]


def test_period_with_offsets_is_compared_in_utc(archive):
    lines = jsonl(archive, Selection.of("2026-11-28T13:00:10+01:00", "2026-11-28T13:00:11+01:00"))
    assert {line["event_time"] for line in lines} == {samples.at(10)}


def test_identity_and_kind_filters(archive):
    lines = jsonl(archive, Selection.of(None, None, identity="svc-3"))
    assert lines and {line["identity"] for line in lines} == {"svc-3"}
    glob = jsonl(archive, Selection.of(None, None, identity="svc-[12]", kinds=["violation"]))
    assert glob and {line["identity"] for line in glob} <= {"svc-1", "svc-2"}
    assert {line["kind"] for line in glob} == {"violation"}
    policies = jsonl(archive, Selection.of(None, None, kinds=["policy"]))
    assert len(policies) == 2 and all(line["identity"] is None for line in policies)


def test_each_exported_line_can_be_checked_on_its_own(archive):
    for line in jsonl(archive, Selection.of(None, None, identity="svc-0")):
        body = {k: v for k, v in line.items() if k != "hash"}
        digest = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"),
                                           ensure_ascii=False).encode()).hexdigest()
        assert digest == line["hash"]


def test_csv(archive):
    out = io.StringIO()
    result = export(archive, Selection.of(None, "2026-11-28T12:00:05Z"), "csv", out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(rows) == result.exported > 0
    assert rows[0]["event_time"] == samples.at(0) and json.loads(rows[0]["payload"])["event_id"] == "e-0-0"


def test_avro_keeps_the_records_as_archived(archive, tmp_path):
    out = io.BytesIO()
    result = export(archive, Selection.of(samples.at(3), samples.at(4)), "avro", out)
    out.seek(0)
    reader = fastavro.reader(out)
    records = list(reader)
    assert len(records) == result.exported > 0
    assert all(record_hash(r) == r["hash"] for r in records)
    assert reader.metadata["forgeone.audit.export.from"] == samples.at(3)


def test_files_outside_the_period_are_not_read(archive):
    result = export(archive, Selection.of("2026-11-28T12:00:38Z", None), "jsonl", io.StringIO())
    assert result.files == 1 and result.exported > 0


def test_a_tampered_archive_is_not_exported(archive):
    path = archive / data_name(2)
    metadata, records = read_file(path)
    records = list(records)
    records[0]["identity"] = "svc-someone-else"
    with open(path, "wb") as fo:
        from streams.audit.archive import audit_schema

        fastavro.writer(fo, audit_schema(), records,
                        metadata={k: v for k, v in metadata.items() if not k.startswith("avro.")})
    problems: list[str] = []
    out = io.StringIO()
    with pytest.raises(AuditError, match="does not verify"):
        export(archive, Selection.of(None, None), "jsonl", out, on_problem=problems.append)
    assert out.getvalue() == "" and any("hash_mismatch" in p for p in problems)
    result = export(archive, Selection.of(None, None), "jsonl", out, verify_first=False)
    assert result.report is None and result.exported == 136


def test_bad_periods_are_refused():
    with pytest.raises(AuditError, match="not an RFC 3339 time"):
        Selection.of("yesterday", None)
    with pytest.raises(AuditError, match="period is empty"):
        Selection.of(samples.at(5), samples.at(5))


def test_cli_export(archive, tmp_path, capsys):
    out = tmp_path / "out.csv"
    code = main(["audit", "export", "--dir", str(archive), "--from", "2026-11-28T12:00:00Z",
                 "--to", "2026-11-28T12:00:02Z", "--format", "csv", "--identity", "svc-1", "--out", str(out)])
    assert code == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 3 and {r["identity"] for r in rows} == {"svc-1"}
    assert "exported 3 record(s)" in capsys.readouterr().err

    (archive / data_name(1)).unlink()
    code = main(["audit", "export", "--dir", str(archive), "--format", "jsonl", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "missing_file" in err and "nothing exported" in err
    assert not out.exists()
    code = main(["audit", "export", "--dir", str(archive), "--no-verify", "--kind", "policy"])
    captured = capsys.readouterr()
    assert code == 0 and "WARNING: exporting WITHOUT verifying" in captured.err
    assert all(json.loads(line)["kind"] == "policy" for line in captured.out.splitlines())


def test_canonical_payload_roundtrips(archive):
    for r in all_records(archive)[:20]:
        assert canonical_json(json.loads(r["payload"])) == r["payload"]
