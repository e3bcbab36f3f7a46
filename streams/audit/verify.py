"""Verify an archive: every record, every link, every file, every manifest.

Verification replays both chains from the start.  For each file, in sequence
order: its SHA-256 against its manifest, its header's previous-file hash
against the previous file's real hash, then each record's hash against its
content and its ``prev_hash`` against the head of its chain, and finally the
manifest against what the records say.  Each finding names the file, the
record index (0-based, in file order) where it applies, and what is wrong,
so one edit shows up at the record that was edited, not as a cascade: after
a finding the check carries on from what the archive *says* (the stored
hash), so the next record is judged on its own.

What a hash chain cannot see on its own: cutting off the end of the archive
(the last files and their manifests) leaves a shorter archive that is
consistent.  ``anchors`` closes that gap: pass a file or record hash noted
earlier (the report prints the current head), and verify fails unless the
archive still contains it.

Nor can it see an archive rewritten from the point of an edit with every
hash recomputed.  ``keys`` (the sink's public key) closes that one: every
manifest from the first signed one on, and the newest in any case, must be
validly signed by one of them (:mod:`streams.audit.signature`).  Unsigned
manifests *before* the first signed one (signing switched on for an existing
archive) are vouched for by it through the file chain, and only warned about.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streams.audit.archive import (
    META_PREV,
    META_SEQ,
    FileSummary,
    data_name,
    heads_of,
    list_archive,
    manifest_name,
    read_file,
    read_manifest,
    sha256_file,
)
from streams.audit.chain import GENESIS, KINDS, ChainHead, chain_id, record_hash
from streams.audit.signature import check_manifest, is_signed
from streams.errors import AuditError, SignatureError
from streams.signing import UNKNOWN_KEY as _UNKNOWN_KEY_REASON, Keyring

# codes of findings (stable: tests and scripts match on them)
HASH_MISMATCH = "hash_mismatch"
BROKEN_LINK = "broken_prev_link"
OUT_OF_ORDER = "out_of_order"
FILE_HASH_MISMATCH = "file_hash_mismatch"
BROKEN_FILE_LINK = "broken_file_link"
MISSING_FILE = "missing_file"
MISSING_MANIFEST = "missing_manifest"
MANIFEST_MISMATCH = "manifest_mismatch"
UNREADABLE = "unreadable"
ANCHOR_MISSING = "anchor_missing"
UNSIGNED_MANIFEST = "unsigned_manifest"
BAD_SIGNATURE = "bad_signature"
UNKNOWN_KEY = "unknown_key"

_COMPARED = ("records", "records_by_kind", "first_record_hash", "last_record_hash",
             "chains", "event_time", "archive_time", "heads")


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    record: int | None
    code: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.record is None else f"{self.file}: record {self.record}"
        return f"{where}: {self.code}: {self.message}"


@dataclass
class VerifyReport:
    directory: Path
    files: int = 0
    records: int = 0
    by_kind: dict[str, int] = field(default_factory=lambda: {k: 0 for k in KINDS})
    heads: dict[str, ChainHead] = field(default_factory=dict)
    last_file: str | None = None
    last_file_hash: str = GENESIS
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    # per file: (name, manifest or None) of every file verified, for export
    manifests: list[tuple[Path, dict[str, Any] | None]] = field(default_factory=list)
    signed_by: set[str] | None = None  # key ids of valid manifest signatures; None: not checked

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in self.by_kind.items())
        state = "intact" if self.ok else f"NOT intact: {len(self.problems)} problem(s)"
        signed = "" if self.signed_by is None else (
            "; manifest signatures checked" + (f" (key {', '.join(sorted(self.signed_by))})"
                                               if self.signed_by else ""))
        return (f"{state}: {self.files} file(s), {self.records} record(s) ({kinds}), "
                f"{len(self.heads)} chain(s); head {self.last_file or '-'} sha256 {self.last_file_hash}"
                + signed)


class _Verifier:
    def __init__(self, directory: Path, anchors: Iterable[str], keys: Keyring | None = None):
        self.report = VerifyReport(directory)
        self.keys = keys
        self.first_signed: str | None = None  # name of the first signed manifest
        self.unsigned_before: list[str] = []  # unsigned manifests before it
        self.newest_manifest: tuple[str, bool] | None = None  # (name, signed) of the newest one
        self.heads: dict[str, ChainHead] = {}
        self.where: dict[str, tuple[str, int]] = {}  # chain -> (file, index) of its head
        self.prev_file: tuple[str, str | None] = ("(start of archive)", GENESIS)
        self.anchors = {a.strip().lower() for a in anchors if a.strip()}
        self.seen_anchors: set[str] = set()

    def problem(self, file: str, record: int | None, code: str, message: str) -> None:
        self.report.problems.append(Problem(file, record, code, message))

    def run(self) -> VerifyReport:
        listing = list_archive(self.report.directory)
        for part in listing.parts:
            self.report.warnings.append(f"{part.name}: unfinished file of a running or stopped sink; not verified")
        for name in listing.others:
            self.report.warnings.append(f"{name}: not an archive file; ignored")
        seqs = listing.seqs
        last = max(seqs, default=0)
        for seq in range(1, last + 1):
            data, manifest_path = listing.data.get(seq), listing.manifests.get(seq)
            name = data_name(seq)
            if data is None and manifest_path is None:
                self.problem(name, None, MISSING_FILE,
                             "missing file in chain: neither the file nor its manifest is present")
                self.prev_file = (name, None)
                continue
            manifest = self._manifest(manifest_path, name) if manifest_path else None
            if self.keys is not None and manifest is not None:
                self._signature(manifest_name(seq), manifest)
            if data is None:
                self.problem(name, None, MISSING_FILE, f"missing file in chain: `{manifest_name(seq)}` "
                             "is present but the file it describes is not")
                self._resync(name, manifest)
                continue
            if manifest_path is None and seq == last:
                self.report.warnings.append(
                    f"{name}: no manifest: a sink stopped before finishing this file; it is not part of "
                    "the archive (its records were not committed) and the sink discards it on restart")
                break
            if manifest_path is None:
                self.problem(name, None, MISSING_MANIFEST, f"`{manifest_name(seq)}` is missing")
            self._file(seq, data, manifest)
        if self.keys is not None:
            self._signatures_end()
        for anchor in sorted(self.anchors - self.seen_anchors):
            self.problem("(archive)", None, ANCHOR_MISSING,
                         f"anchor `{anchor}` is neither a file nor a record hash of this archive "
                         "(files were removed from its end, or it was rewritten)")
        self.report.heads = dict(self.heads)
        return self.report

    def _signature(self, name: str, manifest: dict[str, Any]) -> None:
        assert self.keys is not None
        signed = is_signed(manifest)
        self.newest_manifest = (name, signed)
        if not signed:
            if self.first_signed is None:
                self.unsigned_before.append(name)
            else:
                self.problem(name, None, UNSIGNED_MANIFEST,
                             f"manifest is not signed, but `{self.first_signed}` before it is: signing "
                             "does not stop by itself (the manifest was rewritten without the key)")
            return
        try:
            key = check_manifest(manifest, self.keys)
        except SignatureError as exc:
            code = UNKNOWN_KEY if exc.reason == _UNKNOWN_KEY_REASON else BAD_SIGNATURE
            self.problem(name, None, code, f"manifest {exc} (forged or rewritten without the key)")
            return
        if self.report.signed_by is not None:
            self.report.signed_by.add(key)
        self.first_signed = self.first_signed or name

    def _signatures_end(self) -> None:
        if self.newest_manifest is not None and not self.newest_manifest[1]:
            self.problem(self.newest_manifest[0], None, UNSIGNED_MANIFEST,
                         "the newest manifest is not signed, so nothing vouches for the archive (it was "
                         "written without TRUST_AUDIT_SIGNING_KEY, or forged without the key)")
        elif self.unsigned_before:
            self.report.warnings.append(
                f"{len(self.unsigned_before)} manifest(s) from `{self.unsigned_before[0]}` to "
                f"`{self.unsigned_before[-1]}` are not signed (written before signing was on); the signed "
                f"`{self.first_signed}` vouches for them through the file chain")

    def _manifest(self, path: Path, name: str) -> dict[str, Any] | None:
        try:
            return read_manifest(path)
        except AuditError as exc:
            self.problem(name, None, UNREADABLE, str(exc))
            return None

    def _resync(self, name: str, manifest: dict[str, Any] | None) -> None:
        """Carry on after a file that cannot be read, from what its manifest claims."""
        if manifest is None:
            self.prev_file = (name, None)
            return
        self.prev_file = (name, manifest.get("sha256"))
        try:
            self.heads = heads_of(manifest)
        except AuditError:
            pass

    def _file(self, seq: int, path: Path, manifest: dict[str, Any] | None) -> None:
        name = path.name
        actual = sha256_file(path)
        if actual in self.anchors:
            self.seen_anchors.add(actual)
        if manifest is not None:
            self._check_manifest_identity(seq, name, actual, path.stat().st_size, manifest)
        try:
            metadata, records = read_file(path)
        except AuditError as exc:
            self.problem(name, None, UNREADABLE, str(exc))
            self._resync(name, manifest)
            return
        header_prev = metadata.get(META_PREV)
        prev_name, prev_hash = self.prev_file
        if prev_hash is not None and header_prev != prev_hash:
            self.problem(name, None, BROKEN_FILE_LINK,
                         f"previous-file hash in the header is `{header_prev}` but the previous file "
                         f"`{prev_name}` hashes to `{prev_hash}` (a file before this one was removed, "
                         "added or rewritten)")
        if manifest is not None and manifest.get("prev_file_hash") != header_prev:
            self.problem(name, None, MANIFEST_MISMATCH,
                         f"`prev_file_hash`: manifest says `{manifest.get('prev_file_hash')}`, "
                         f"file header says `{header_prev}`")
        if metadata.get(META_SEQ) != str(seq):
            self.problem(name, None, MISSING_FILE if metadata.get(META_SEQ) else UNREADABLE,
                         f"file is named as number {seq} of the chain but its header says "
                         f"`{metadata.get(META_SEQ)}` (renamed or moved)")
        summary = FileSummary(heads=dict(self.heads))
        index = -1
        try:
            for index, record in enumerate(records):
                self._record(name, index, record)
                summary.add(record)
        except Exception as exc:  # a damaged block: nothing after it can be read
            self.problem(name, index + 1, UNREADABLE, f"record does not decode ({exc}); "
                         "the rest of the file is not verified")
            self._resync(name, manifest)
            return
        self.heads = dict(summary.heads)
        if manifest is not None:
            self._compare(name, summary.as_dict(), manifest)
        self.prev_file = (name, actual)
        report = self.report
        report.files += 1
        report.records += summary.records
        for kind, n in summary.by_kind.items():
            report.by_kind[kind] = report.by_kind.get(kind, 0) + n
        report.last_file, report.last_file_hash = name, actual
        report.manifests.append((path, manifest))

    def _check_manifest_identity(self, seq: int, name: str, actual: str, size: int,
                                 manifest: dict[str, Any]) -> None:
        if manifest.get("sha256") != actual:
            self.problem(name, None, FILE_HASH_MISMATCH,
                         f"file hash mismatch: manifest says `{manifest.get('sha256')}`, "
                         f"the file hashes to `{actual}` (the file was changed after it was archived)")
        for key, expected in (("file", name), ("seq", seq), ("size", size)):
            if manifest.get(key) != expected:
                self.problem(name, None, MANIFEST_MISMATCH,
                             f"`{key}`: manifest says `{manifest.get(key)}`, expected `{expected}`")

    def _record(self, name: str, index: int, record: dict[str, Any]) -> None:
        stored = record.get("hash")
        computed = record_hash(record)
        if stored in self.anchors:
            self.seen_anchors.add(stored)
        if computed != stored:
            self.problem(name, index, HASH_MISMATCH,
                         f"hash mismatch: stored `{stored}`, the content hashes to `{computed}` "
                         "(the record was edited)")
        cid = chain_id(record["topic"], record["partition"])
        head = self.heads.get(cid)
        expected = GENESIS if head is None else head.hash
        if record["prev_hash"] != expected:
            before = ("the chain's start" if head is None else
                      "record {1} of `{0}`".format(*self.where[cid]) if cid in self.where
                      else "the head recorded by the previous manifest")
            self.problem(name, index, BROKEN_LINK,
                         f"broken prev link in chain `{cid}` at offset {record['offset']}: prev_hash is "
                         f"`{record['prev_hash']}` but {before} has hash `{expected}` (a record "
                         "was deleted, inserted or moved)")
        if head is not None and (record["offset"], record["batch_index"]) <= (head.offset, head.batch_index):
            self.problem(name, index, OUT_OF_ORDER,
                         f"offset {record['offset']}/{record['batch_index']} in chain `{cid}` is not after "
                         f"the previous record's {head.offset}/{head.batch_index}")
        self.heads[cid] = ChainHead(stored, record["offset"], record["batch_index"])
        self.where[cid] = (name, index)

    def _compare(self, name: str, found: dict[str, Any], manifest: dict[str, Any]) -> None:
        for key in _COMPARED:
            for path, claimed, actual in _differences(key, manifest.get(key), found[key]):
                self.problem(name, None, MANIFEST_MISMATCH,
                             f"`{path}`: manifest says {_short(claimed)}, the file has {_short(actual)}")


def _differences(path: str, claimed: Any, actual: Any) -> list[tuple[str, Any, Any]]:
    """The innermost fields where two JSON values differ, with their dotted paths."""
    if isinstance(claimed, dict) and isinstance(actual, dict):
        out: list[tuple[str, Any, Any]] = []
        for key in sorted(set(claimed) | set(actual), key=str):
            out.extend(_differences(f"{path}.{key}", claimed.get(key), actual.get(key)))
        return out
    return [] if claimed == actual else [(path, claimed, actual)]


def _short(value: Any, limit: int = 100) -> str:
    text = f"`{json.dumps(value)}`"
    return text if len(text) <= limit else text[: limit - 5] + "...`"


def verify(directory: Path | str, anchors: Iterable[str] = (), keys: Keyring | None = None) -> VerifyReport:
    """Check the whole archive in `directory`; the report lists every problem found.

    With `keys`, manifests must also be signed by one of them (see the module doc)."""
    verifier = _Verifier(Path(directory), anchors, keys)
    if keys is not None:
        verifier.report.signed_by = set()
    return verifier.run()
