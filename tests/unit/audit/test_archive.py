"""Archive files, manifests and crash recovery (streams/audit/archive.py, Archiver), no Kafka."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.audit import samples
from streams.audit.archive import (
    META_PREV,
    META_SEQ,
    data_name,
    manifest_name,
    read_file,
    read_manifest,
    recover,
    sha256_file,
)
from streams.audit.chain import GENESIS
from streams.audit.sink import OFFSET_BEGINNING, _lock, reconcile
from streams.audit.verify import verify
from streams.errors import AuditError


def plan(batches: int = 40, tag: str = "") -> list:
    return samples.messages(samples.traffic(batches, tag=tag), samples.TOPICS)


def archived_keys(directory: Path) -> list[tuple]:
    keys = []
    for seq in sorted(int(p.name[6:16]) for p in directory.glob("audit-*.avro")):
        keys.extend((r["topic"], r["partition"], r["offset"], r["batch_index"])
                    for r in read_file(directory / data_name(seq))[1])
    return keys


def expected_keys(msgs) -> list[tuple]:
    from streams.codec.avro import codec

    keys = []
    for m in msgs:
        n = len(codec("DecisionBatch").decode(m.value)["decisions"]) if m.topic == "trust.decisions" else 1
        keys.extend((m.topic, m.partition, m.offset, i) for i in range(n))
    return keys


def test_manifest_describes_its_file(tmp_path):
    msgs = plan()
    manifests = samples.build_archive(tmp_path, msgs, files=2)
    first, second = manifests
    assert first["prev_file_hash"] == GENESIS
    assert second["prev_file_hash"] == first["sha256"] == sha256_file(tmp_path / data_name(1))
    assert read_manifest(tmp_path / manifest_name(2)) == second
    metadata, records = read_file(tmp_path / data_name(2))
    records = list(records)
    assert metadata[META_SEQ] == "2" and metadata[META_PREV] == first["sha256"]
    assert second["records"] == len(records)
    assert second["first_record_hash"] == records[0]["hash"] and second["last_record_hash"] == records[-1]["hash"]
    chain = second["chains"]["trust.decisions/1"]
    offsets = [r["offset"] for r in records if (r["topic"], r["partition"]) == ("trust.decisions", 1)]
    assert (chain["first_offset"], chain["last_offset"]) == (offsets[0], offsets[-1])
    assert second["event_time"]["min"] <= second["event_time"]["max"]
    # heads are cumulative: a chain only in file 1 is still in file 2's heads
    assert set(first["heads"]) <= set(second["heads"])
    assert sorted(archived_keys(tmp_path)) == sorted(expected_keys(msgs))


def test_empty_close_writes_nothing(tmp_path):
    arch = samples.archiver(tmp_path)
    assert arch.close_file() == (None, {})
    assert not list(tmp_path.glob("audit-*"))


def test_close_file_says_what_to_commit(tmp_path):
    arch = samples.archiver(tmp_path)
    msgs = plan(8)
    for m in msgs:
        arch.add(m)
    manifest, commits = arch.close_file()
    last = {}
    for m in msgs:
        last[(m.topic, m.partition)] = m.offset + 1
    assert commits == last


def test_restart_after_crash_loses_and_duplicates_nothing(tmp_path):
    """Crash with an open file and a finished file whose manifest never got written;
    Kafka then redelivers from the last commit (here: from the start, the worst case)."""
    msgs = plan(60)
    arch = samples.archiver(tmp_path)
    committed: dict = {}
    for m in msgs[:30]:
        arch.add(m)
    committed.update(arch.close_file()[1])
    for m in msgs[30:45]:
        arch.add(m)
    arch.writer.abandon()  # crash: the open file stays `.part`
    assert list(tmp_path.glob("*.part"))
    (tmp_path / data_name(2)).write_bytes(b"renamed but no manifest")  # crash between rename and manifest

    again = samples.archiver(tmp_path)
    assert sorted(again.recovered.discarded) == [data_name(2), data_name(2) + ".part"]
    assert again.writer.seq == 2
    for m in msgs:  # redelivery of everything
        again.add(m)
    again.close_file()
    assert again.skipped == 30
    keys = archived_keys(tmp_path)
    assert len(keys) == len(set(keys)) and sorted(keys) == sorted(expected_keys(msgs))
    assert verify(tmp_path).ok


def test_recover_refuses_a_damaged_archive(tmp_path):
    samples.build_archive(tmp_path, plan(), files=3)
    (tmp_path / manifest_name(2)).unlink()
    with pytest.raises(AuditError, match="damaged.*audit-0000000002.manifest.json"):
        recover(tmp_path)


def test_recover_refuses_when_the_last_file_does_not_match_its_manifest(tmp_path):
    samples.build_archive(tmp_path, plan(), files=2)
    with open(tmp_path / data_name(2), "ab") as fo:
        fo.write(b"x")
    with pytest.raises(AuditError, match="does not match its manifest"):
        recover(tmp_path)


def test_recover_an_empty_directory(tmp_path):
    state = recover(tmp_path / "new")
    assert (state.next_seq, state.prev_file_hash, state.heads) == (1, GENESIS, {})


T = ("trust.decisions", 0)
U = ("trust.decisions", 1)
V = ("trust.policy", 0)


def test_reconcile_the_group_with_the_archive():
    start, catch_up, conflicts = reconcile(
        [T, U, V],
        committed={T: 10, U: 3, V: None},
        archived={T: 10, U: 7, V: None},
    )
    assert start == {T: 10, U: 7, V: OFFSET_BEGINNING}  # the archive wins; nothing yet: from the start
    assert catch_up == {U: 7}  # crashed after the manifest, before the commit
    assert conflicts == []


def test_reconcile_refuses_a_group_ahead_of_the_archive():
    _, _, conflicts = reconcile([T, U], committed={T: 12, U: 5}, archived={T: 10, U: None})
    assert len(conflicts) == 2
    assert "committed offset 12 but the archive ends at offset 9" in conflicts[0]
    assert "before any record" in conflicts[1]


def test_one_sink_per_directory(tmp_path):
    with _lock(tmp_path):
        with pytest.raises(AuditError, match="another audit sink"):
            with _lock(tmp_path):
                pass
    with _lock(tmp_path):  # released
        pass
