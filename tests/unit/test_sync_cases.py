"""`scripts/sync-cases SRC_DIR`: new or changed case folders copied into a cases directory."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "sync-cases"
BASIC = REPO / "tests" / "cases" / "basic"


def sync(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          timeout=60)


def test_copies_new_and_changed_folders_and_says_so(tmp_path: Path):
    src, dest = tmp_path / "src", tmp_path / "dest"
    shutil.copytree(BASIC, src / "basic")
    shutil.copytree(BASIC, src / "second")
    (dest / "basic").mkdir(parents=True)
    for name in ("policy.yaml", "events.jsonl"):
        shutil.copyfile(BASIC / name, dest / "basic" / name)
    (dest / "basic" / "expected.jsonl").write_text("stale\n")
    shutil.copytree(BASIC, dest / "ours-only")

    done = sync(src, "--dest", dest)
    assert done.returncode == 0, done.stderr
    assert "copied basic/expected.jsonl" in done.stdout
    assert "copied new case second/ (3 files)" in done.stdout
    assert "kept ours-only/" in done.stdout
    for case in ("basic", "second"):
        for name in ("policy.yaml", "events.jsonl", "expected.jsonl"):
            assert (dest / case / name).read_bytes() == (BASIC / name).read_bytes()

    again = sync(src, "--dest", dest)
    assert "unchanged basic/" in again.stdout and "unchanged second/" in again.stdout
    assert "copied" not in again.stdout


def test_dry_run_copies_nothing(tmp_path: Path):
    shutil.copytree(BASIC, tmp_path / "src" / "basic")
    done = sync(tmp_path / "src", "--dest", tmp_path / "dest", "--dry-run")
    assert done.returncode == 0 and "would copy new case basic/" in done.stdout
    assert not (tmp_path / "dest").exists()


def test_folder_lacking_a_file_is_skipped_with_exit_1(tmp_path: Path):
    (tmp_path / "src" / "half").mkdir(parents=True)
    shutil.copyfile(BASIC / "policy.yaml", tmp_path / "src" / "half" / "policy.yaml")
    done = sync(tmp_path / "src", "--dest", tmp_path / "dest")
    assert done.returncode == 1
    assert "skipped half/: lacks events.jsonl, expected.jsonl" in done.stderr
    assert not (tmp_path / "dest" / "half").exists()


def test_missing_source_is_an_error(tmp_path: Path):
    done = sync(tmp_path / "nope")
    assert done.returncode == 1 and "is not a directory" in done.stderr
