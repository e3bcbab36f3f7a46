"""The archive directory: rotated Avro container files, each with a manifest.

Layout (``seq`` counts from 1, ten digits so names sort in chain order)::

    audit-0000000001.avro            AuditRecord container file
    audit-0000000001.manifest.json   what the file holds, and its SHA-256
    audit-0000000002.avro.part       the file being written (no manifest yet)
    .lock                            held by the one sink writing here

Each file carries the SHA-256 of the previous file in its Avro header
(``forgeone.audit.prev_file_hash``) and its manifest repeats it, so files form
a chain of their own on top of the per-partition record chains: removing,
adding or rewriting a file breaks the link of the file after it.

Closing a file is the durability point: the records are flushed and the file
fsynced, renamed to its final name, its manifest written and fsynced the same
way, then the directory fsynced.  Only then may the caller commit Kafka
offsets.  A crash at any moment leaves either a ``.part`` file or a final file
without a manifest; :func:`recover` discards both (their records were never
committed, so Kafka delivers them again).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import fastavro
from fastavro.write import Writer

from streams.audit.chain import GENESIS, KINDS, ChainHead, chain_id
from streams.audit.signature import sign_manifest
from streams.codec.avro import SchemaSet
from streams.errors import AuditError
from streams.signing import SigningKey

FORMAT = "forgeone.trust.audit/1"
SCHEMA_NAME = "AuditRecord"
META_FORMAT = "forgeone.audit.format"
META_SEQ = "forgeone.audit.seq"
META_PREV = "forgeone.audit.prev_file_hash"
PART = ".part"
LOCK = ".lock"
_NAME = re.compile(r"^audit-(\d{10})\.(avro|manifest\.json)$")

_SCHEMAS = SchemaSet(Path(__file__).resolve().parent / "schemas")


def audit_schema() -> dict:
    """The parsed AuditRecord schema (self-contained: it names no other file)."""
    return _SCHEMAS.parsed(SCHEMA_NAME)


def data_name(seq: int) -> str:
    return f"audit-{seq:010d}.avro"


def manifest_name(seq: int) -> str:
    return f"audit-{seq:010d}.manifest.json"


def parse_name(name: str) -> tuple[int, str] | None:
    """``audit-0000000007.avro`` -> (7, "avro"); None for any other name."""
    match = _NAME.match(name)
    return (int(match.group(1)), match.group(2)) if match else None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fo:
        for chunk in iter(lambda: fo.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fsync_dir(directory: Path) -> None:
    """Make renames in `directory` durable (a file's fsync does not cover its name)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- what a file holds ------------------------------------------------------------


@dataclass
class FileSummary:
    """Everything a manifest says about a file's records, computed from them.

    The sink fills one while writing; verify fills one while reading and
    compares: the manifest is a claim, the records are the evidence.
    """

    heads: dict[str, ChainHead]
    records: int = 0
    by_kind: dict[str, int] = field(default_factory=lambda: {k: 0 for k in KINDS})
    chains: dict[str, dict[str, Any]] = field(default_factory=dict)
    first_hash: str | None = None
    last_hash: str | None = None
    event_min: str | None = None
    event_max: str | None = None
    archive_first: str | None = None
    archive_last: str | None = None

    def add(self, record: Mapping[str, Any]) -> None:
        cid = chain_id(record["topic"], record["partition"])
        chain = self.chains.get(cid)
        if chain is None:
            chain = self.chains[cid] = {
                "topic": record["topic"], "partition": record["partition"],
                "first_offset": record["offset"], "first_prev_hash": record["prev_hash"], "records": 0,
            }
        chain["last_offset"] = record["offset"]
        chain["last_hash"] = record["hash"]
        chain["records"] += 1
        self.heads[cid] = ChainHead(record["hash"], record["offset"], record["batch_index"])
        self.records += 1
        self.by_kind[record["kind"]] = self.by_kind.get(record["kind"], 0) + 1
        self.first_hash = self.first_hash or record["hash"]
        self.last_hash = record["hash"]
        t = record["event_time"]
        self.event_min = t if self.event_min is None or t < self.event_min else self.event_min
        self.event_max = t if self.event_max is None or t > self.event_max else self.event_max
        self.archive_first = self.archive_first or record["archive_time"]
        self.archive_last = record["archive_time"]

    def as_dict(self) -> dict[str, Any]:
        """The manifest fields that follow from the records alone."""
        return {
            "records": self.records,
            "records_by_kind": dict(self.by_kind),
            "first_record_hash": self.first_hash,
            "last_record_hash": self.last_hash,
            "chains": {cid: dict(c) for cid, c in sorted(self.chains.items())},
            "event_time": {"min": self.event_min, "max": self.event_max},
            "archive_time": {"first": self.archive_first, "last": self.archive_last},
            "heads": {cid: _head_json(h) for cid, h in sorted(self.heads.items())},
        }


def _head_json(head: ChainHead) -> dict[str, Any]:
    return {"hash": head.hash, "offset": head.offset, "batch_index": head.batch_index}


def heads_of(manifest: Mapping[str, Any]) -> dict[str, ChainHead]:
    """The chain heads a manifest recorded (cumulative over the archive so far)."""
    try:
        return {cid: ChainHead(h["hash"], int(h["offset"]), int(h["batch_index"]))
                for cid, h in manifest["heads"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise AuditError(f"manifest `{manifest.get('file')}` has no readable `heads` ({exc})") from exc


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AuditError(f"manifest `{path.name}` cannot be read: {exc}") from exc
    if not isinstance(data, dict):
        raise AuditError(f"manifest `{path.name}` is not a JSON object")
    return data


def read_file(path: Path) -> tuple[dict[str, str], Iterator[dict[str, Any]]]:
    """Header metadata and records of an archive file, read with its own schema.

    Records are hashed as written, so they are never read through a newer
    reader schema (defaults filled in would change the canonical JSON).
    """
    fo = open(path, "rb")
    try:
        reader = fastavro.reader(fo)
    except Exception as exc:
        fo.close()
        raise AuditError(f"`{path.name}` is not a readable avro container file: {exc}") from exc

    def records() -> Iterator[dict[str, Any]]:
        with fo:
            yield from reader

    return dict(reader.metadata), records()


# -- the archive as a whole -------------------------------------------------------


@dataclass(frozen=True)
class Listing:
    """The files of an archive directory, by sequence number."""

    data: dict[int, Path]
    manifests: dict[int, Path]
    parts: tuple[Path, ...]
    others: tuple[str, ...]

    @property
    def seqs(self) -> list[int]:
        return sorted(set(self.data) | set(self.manifests))


def list_archive(directory: Path) -> Listing:
    if not directory.is_dir():
        raise AuditError(f"archive directory `{directory}` does not exist")
    data: dict[int, Path] = {}
    manifests: dict[int, Path] = {}
    parts: list[Path] = []
    others: list[str] = []
    for path in sorted(directory.iterdir()):
        parsed = parse_name(path.name)
        if parsed is not None:
            (data if parsed[1] == "avro" else manifests)[parsed[0]] = path
        elif path.name.endswith(PART):
            parts.append(path)
        elif path.name != LOCK:
            others.append(path.name)
    return Listing(data, manifests, tuple(parts), tuple(others))


@dataclass(frozen=True)
class Recovered:
    """Where a sink resumes: next file, previous file hash, chain heads."""

    next_seq: int
    prev_file_hash: str
    heads: dict[str, ChainHead]
    discarded: tuple[str, ...]


def recover(directory: Path) -> Recovered:
    """Discard unfinished files and read where the archive ends.

    Only what a crash can leave is discarded (``.part`` files; final files
    after the last manifest).  Anything else that is out of place - a
    manifest without its file, a file in the middle without a manifest, a
    last file whose hash is not the manifest's - stops the sink: it is damage
    to look at with ``trustctl audit verify``, not something to write over.
    """
    directory.mkdir(parents=True, exist_ok=True)
    listing = list_archive(directory)
    last = max(listing.manifests, default=0)
    discarded = [p for p in listing.parts] + [p for s, p in listing.data.items() if s > last]
    for path in discarded:
        path.unlink()
    if discarded:
        fsync_dir(directory)
    for seq in range(1, last + 1):
        if seq not in listing.manifests or seq not in listing.data:
            missing = manifest_name(seq) if seq not in listing.manifests else data_name(seq)
            raise AuditError(f"archive `{directory}` is damaged: `{missing}` is missing "
                             "(run `trustctl audit verify`)")
    if last == 0:
        return Recovered(1, GENESIS, {}, tuple(p.name for p in discarded))
    manifest = read_manifest(listing.manifests[last])
    found = sha256_file(listing.data[last])
    if manifest.get("sha256") != found:
        raise AuditError(f"archive `{directory}` is damaged: `{data_name(last)}` does not match "
                         "its manifest's sha256 (run `trustctl audit verify`)")
    return Recovered(last + 1, found, heads_of(manifest), tuple(p.name for p in discarded))


class ArchiveWriter:
    """Writes sealed records into rotated files; `close_file` makes them durable.

    Owns no clock: callers pass `created_at` (STYLE: time is injected).
    With a `signer`, every manifest is signed (:mod:`streams.audit.signature`).
    """

    def __init__(self, directory: Path, recovered: Recovered, *, compression: str = "deflate",
                 signer: SigningKey | None = None):
        self.directory = directory
        self.compression = compression
        self.signer = signer
        self.seq = recovered.next_seq
        self.prev_file_hash = recovered.prev_file_hash
        self.heads = dict(recovered.heads)
        self._fo: BinaryIO | None = None
        self._writer: Writer | None = None
        self._summary: FileSummary | None = None

    @property
    def records_in_file(self) -> int:
        return self._summary.records if self._summary else 0

    @property
    def bytes_in_file(self) -> int:
        """Bytes written to the open file so far (blocks still buffered not counted)."""
        if self._fo is None or self._writer is None:
            return 0
        return self._fo.tell() + self._writer.io.tell()

    def _part(self) -> Path:
        return self.directory / (data_name(self.seq) + PART)

    def _open(self) -> None:
        self._fo = open(self._part(), "wb")
        metadata = {META_FORMAT: FORMAT, META_SEQ: str(self.seq), META_PREV: self.prev_file_hash}
        self._writer = Writer(self._fo, audit_schema(), codec=self.compression, metadata=metadata)
        self._summary = FileSummary(heads=dict(self.heads))

    def append(self, record: Mapping[str, Any]) -> None:
        """Add one sealed record to the open file (opened on first use)."""
        if self._writer is None:
            self._open()
        assert self._writer is not None and self._summary is not None
        try:
            self._writer.write(record)
        except Exception as exc:  # fastavro: a record the schema refuses
            raise AuditError(f"cannot write audit record at `{record.get('topic')}` offset "
                             f"{record.get('offset')}: {exc}") from exc
        self._summary.add(record)

    def close_file(self, created_at: str) -> dict[str, Any] | None:
        """Flush, fsync and name the open file, write its manifest; None if empty.

        When this returns, the records are durable and their offsets may be
        committed; the manifest is returned (its `chains` say what to commit).
        """
        if self._writer is None:
            return None
        assert self._fo is not None and self._summary is not None
        self._writer.flush()
        self._fo.flush()
        os.fsync(self._fo.fileno())
        self._fo.close()
        final = self.directory / data_name(self.seq)
        os.replace(self._part(), final)
        fsync_dir(self.directory)
        sha = sha256_file(final)
        manifest = {
            "format": FORMAT,
            "file": final.name,
            "seq": self.seq,
            "sha256": sha,
            "size": final.stat().st_size,
            "prev_file_hash": self.prev_file_hash,
            "created_at": created_at,
            **self._summary.as_dict(),
        }
        if self.signer is not None:
            manifest = sign_manifest(manifest, self.signer)
        write_manifest(self.directory / manifest_name(self.seq), manifest)
        self.heads = dict(self._summary.heads)
        self.prev_file_hash = sha
        self.seq += 1
        self._fo = self._writer = self._summary = None
        return manifest

    def abandon(self) -> None:
        """Close the open file without finishing it (it stays a ``.part``)."""
        if self._fo is not None:
            self._fo.close()
        self._fo = self._writer = self._summary = None


def write_manifest(path: Path, manifest: Mapping[str, Any]) -> None:
    """Write `manifest` durably: temp file, fsync, rename, fsync the directory."""
    part = path.with_name(path.name + PART)
    with open(part, "w", encoding="utf-8") as fo:
        json.dump(manifest, fo, indent=2, sort_keys=True)
        fo.write("\n")
        fo.flush()
        os.fsync(fo.fileno())
    os.replace(part, path)
    fsync_dir(path.parent)
