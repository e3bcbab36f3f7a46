"""`verify` catches each kind of tampering and says where (no Kafka: archives built in tmp dirs).

Each test builds the same three-file archive, tampers with it the way an
attacker with write access to the directory would, and checks that verify
names the file, the record index and the kind of damage.  The "careful
attacker" variants recompute what they can (the record's own hash, the
manifest's file hash) to show the next layer still catches them.
"""

from __future__ import annotations

import json
from pathlib import Path

import fastavro
import pytest

from streams.audit import samples
from streams.audit.archive import audit_schema, data_name, manifest_name, read_file, sha256_file
from streams.audit.chain import record_hash
from streams.audit.verify import (
    ANCHOR_MISSING,
    BROKEN_FILE_LINK,
    BROKEN_LINK,
    FILE_HASH_MISMATCH,
    HASH_MISMATCH,
    MANIFEST_MISMATCH,
    MISSING_FILE,
    MISSING_MANIFEST,
    OUT_OF_ORDER,
    verify,
)

F1, F2, F3 = data_name(1), data_name(2), data_name(3)


@pytest.fixture
def archive(tmp_path: Path) -> Path:
    msgs = samples.messages(samples.traffic(40), samples.TOPICS)
    manifests = samples.build_archive(tmp_path, msgs, files=3)
    assert [m["file"] for m in manifests] == [F1, F2, F3]
    return tmp_path


def records_of(path: Path) -> list[dict]:
    return list(read_file(path)[1])


def rewrite(path: Path, change) -> None:
    """Rewrite an archive file with changed records, keeping its header metadata."""
    metadata, records = read_file(path)
    records = change(list(records))
    keep = {k: v for k, v in metadata.items() if not k.startswith("avro.")}
    with open(path, "wb") as fo:
        fastavro.writer(fo, audit_schema(), records, codec="deflate", metadata=keep)


def found(report, code: str, file: str | None = None, record: int | None = None) -> list:
    return [p for p in report.problems if p.code == code and (file is None or p.file == file)
            and (record is None or p.record == record)]


def next_in_chain(records: list[dict], index: int) -> int:
    """Index of the next record of the same chain as records[index]."""
    chain = (records[index]["topic"], records[index]["partition"])
    return next(i for i in range(index + 1, len(records))
                if (records[i]["topic"], records[i]["partition"]) == chain)


def test_an_untouched_archive_verifies(archive):
    report = verify(archive)
    assert report.ok, report.problems
    assert report.files == 3 and report.records == 136
    assert report.by_kind == {"decision": 120, "violation": 10, "redzone": 4, "policy": 2}
    assert len(report.heads) == 7
    assert report.last_file_hash == sha256_file(archive / F3)


def test_edited_record_is_found_at_its_index(archive):
    def edit(records):
        payload = json.loads(records[5]["payload"])
        payload["allowed"] = not payload.get("allowed", False)
        records[5]["payload"] = json.dumps(payload)
        return records

    rewrite(archive / F2, edit)
    report = verify(archive)
    assert not report.ok
    assert found(report, HASH_MISMATCH, F2, 5), report.problems
    assert found(report, FILE_HASH_MISMATCH, F2)
    assert found(report, BROKEN_FILE_LINK, F3)  # the next file names F2's old hash
    assert not found(report, BROKEN_LINK)  # one edit, one record blamed: no cascade
    assert "record 5: hash_mismatch" in str(found(report, HASH_MISMATCH)[0])


def test_edited_record_with_recomputed_hash_breaks_the_next_link(archive):
    original = records_of(archive / F2)
    after = next_in_chain(original, 5)

    def edit(records):
        records[5]["identity"] = "svc-innocent"
        records[5]["hash"] = record_hash(records[5])
        return records

    rewrite(archive / F2, edit)
    report = verify(archive)
    assert not found(report, HASH_MISMATCH)
    assert found(report, BROKEN_LINK, F2, after), report.problems


def test_deleted_record(archive):
    original = records_of(archive / F2)
    after = next_in_chain(original, 7)
    rewrite(archive / F2, lambda records: records[:7] + records[8:])
    report = verify(archive)
    [problem] = found(report, BROKEN_LINK)
    assert (problem.file, problem.record) == (F2, after - 1)  # shifted up by the deletion
    assert found(report, MANIFEST_MISMATCH, F2)  # record counts, chains...
    assert found(report, FILE_HASH_MISMATCH, F2)


def test_inserted_record_even_with_a_valid_hash(archive):
    original = records_of(archive / F1)
    at = 4  # the forgery goes after record `at`, which has a successor in its chain
    after = next_in_chain(original, at)

    def insert(records):
        forged = dict(records[at], payload='{"forged":true}')
        forged["prev_hash"] = records[at]["hash"]
        forged["hash"] = record_hash(forged)
        return records[: at + 1] + [forged] + records[at + 1 :]

    rewrite(archive / F1, insert)
    report = verify(archive)
    assert not found(report, HASH_MISMATCH)  # the forgery is self-consistent...
    assert found(report, OUT_OF_ORDER, F1, at + 1)  # ...but reuses a position of its chain
    assert found(report, BROKEN_LINK, F1, after + 1), report.problems  # and the next record no longer links


def test_reordered_records_of_one_chain(archive):
    original = records_of(archive / F3)
    first = 2
    second = next_in_chain(original, first)

    def swap(records):
        records[first], records[second] = records[second], records[first]
        return records

    rewrite(archive / F3, swap)
    report = verify(archive)
    flagged = {p.record for p in found(report, BROKEN_LINK, F3)}
    # both moved records, and the record that followed them: the moved stretch, nothing else
    assert {first, second} <= flagged <= set(range(first, second + 2)), report.problems
    assert found(report, OUT_OF_ORDER, F3, second)


def test_deleted_file_in_the_middle(archive):
    (archive / F2).unlink()
    (archive / manifest_name(2)).unlink()
    report = verify(archive)
    assert found(report, MISSING_FILE, F2), report.problems
    assert found(report, BROKEN_LINK, F3)  # F3's chains continue records that are gone


def test_deleted_file_whose_manifest_is_left(archive):
    (archive / F2).unlink()
    report = verify(archive)
    assert [p.code for p in report.problems] == [MISSING_FILE], report.problems
    assert report.problems[0].file == F2


def test_deleted_first_file(archive):
    (archive / F1).unlink()
    (archive / manifest_name(1)).unlink()
    report = verify(archive)
    assert found(report, MISSING_FILE, F1)


def test_deleted_manifest_in_the_middle(archive):
    (archive / manifest_name(2)).unlink()
    report = verify(archive)
    assert [(p.file, p.code) for p in report.problems] == [(F2, MISSING_MANIFEST)]


def test_edited_manifest(archive):
    path = archive / manifest_name(2)
    manifest = json.loads(path.read_text())
    manifest["records"] -= 1
    manifest["event_time"]["min"] = "2026-11-28T00:00:00.000000Z"
    path.write_text(json.dumps(manifest))
    report = verify(archive)
    messages = [p.message for p in found(report, MANIFEST_MISMATCH, F2)]
    assert any(m.startswith("`records`") for m in messages), messages
    assert any(m.startswith("`event_time.min`: manifest says `\"2026-11-28T00:00:00.000000Z\"`") for m in messages)
    assert len(report.problems) == 2


def test_manifest_hash_swapped_for_a_rewritten_file(archive):
    """The careful attacker rewrites a file and its manifest's sha256: the next file's link breaks."""
    rewrite(archive / F2, lambda records: records[:-1])
    path = archive / manifest_name(2)
    manifest = json.loads(path.read_text())
    manifest["sha256"] = sha256_file(archive / F2)
    manifest["size"] = (archive / F2).stat().st_size
    path.write_text(json.dumps(manifest))
    report = verify(archive)
    assert not found(report, FILE_HASH_MISMATCH)
    assert found(report, BROKEN_FILE_LINK, F3), report.problems
    assert found(report, MANIFEST_MISMATCH, F2)


def test_swapped_files(archive):
    for suffix in (".avro", ".manifest.json"):
        a, b = archive / f"audit-0000000002{suffix}", archive / f"audit-0000000003{suffix}"
        tmp = archive / "swap"
        a.rename(tmp), b.rename(a), tmp.rename(b)
    report = verify(archive)
    assert found(report, BROKEN_FILE_LINK, F2) and found(report, BROKEN_FILE_LINK, F3), report.problems
    assert found(report, MISSING_FILE, F2)  # header says it is number 3


def test_truncated_archive_needs_an_anchor(archive):
    head = verify(archive).last_file_hash
    (archive / F3).unlink()
    (archive / manifest_name(3)).unlink()
    assert verify(archive).ok  # a shorter archive is consistent on its own...
    report = verify(archive, anchors=[head])
    assert [p.code for p in report.problems] == [ANCHOR_MISSING]  # ...but not with the head noted before
    assert verify(archive, anchors=[verify(archive).last_file_hash]).ok


def test_a_record_hash_is_an_anchor_too(archive):
    last = records_of(archive / F3)[-1]["hash"]
    assert verify(archive, anchors=[last]).ok


def test_trailing_file_without_manifest_is_an_unfinished_leftover_not_damage(archive):
    (archive / manifest_name(3)).unlink()
    (archive / "audit-0000000004.avro.part").write_bytes(b"partial")
    report = verify(archive)
    assert report.ok and report.files == 2
    assert any("no manifest" in w for w in report.warnings)
    assert any(".part" in w for w in report.warnings)


def test_cli_verify_exit_codes_and_where(archive, capsys):
    from streams.cli.main import main

    assert main(["audit", "verify", "--dir", str(archive)]) == 0
    out = capsys.readouterr().out
    assert "intact: 3 file(s), 136 record(s)" in out and "chain trust.decisions/0: head" in out

    rewrite(archive / F1, lambda records: records[:2] + records[3:])
    assert main(["audit", "verify", "--dir", str(archive), "-q"]) == 1
    out = capsys.readouterr().out
    assert f"{F1}: record " in out and "broken_prev_link" in out and "NOT intact" in out
