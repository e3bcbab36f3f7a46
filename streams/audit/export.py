"""Export the records of a period for an auditor: JSON lines, CSV or Avro.

The archive is verified first and the export refused if it does not verify:
handing out records from a tampered archive as if they were evidence is
worse than handing out nothing.  ``verify=False`` exports anyway and the CLI
says so loudly.

Every format keeps each record exactly as hashed (``key`` in base64,
``payload`` as its canonical JSON string), so each exported record can be
checked on its own: a JSON line without its ``hash`` member, in canonical
JSON, hashes to ``hash``.  A period is half-open, ``from <= event_time < to``,
so consecutive periods never share a record.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import IO, Any

import fastavro

from streams.audit.archive import audit_schema, list_archive, read_file
from streams.audit.chain import canonical_json, parse_time, rfc3339
from streams.audit.verify import VerifyReport, verify
from streams.signing import Keyring
from streams.errors import AuditError

FORMATS = ("jsonl", "csv", "avro")
CSV_COLUMNS = ("event_time", "kind", "identity", "topic", "partition", "offset", "batch_index", "key",
               "kafka_timestamp", "archive_time", "payload_schema", "payload", "value_sha256",
               "prev_hash", "hash")


@dataclass(frozen=True)
class Selection:
    """Which records to export: a period of event time and optional filters."""

    start: str | None = None  # normalised RFC 3339, inclusive
    end: str | None = None  # normalised RFC 3339, exclusive
    identity: str | None = None  # shell glob on the record's identity
    kinds: frozenset[str] = frozenset()

    @classmethod
    def of(cls, start: str | None, end: str | None, identity: str | None = None,
           kinds: Iterable[str] = ()) -> "Selection":
        sel = cls(_bound(start, "--from"), _bound(end, "--to"), identity, frozenset(kinds))
        if sel.start and sel.end and sel.end <= sel.start:
            raise AuditError(f"`--to` {end} is not after `--from` {start}: the period is empty")
        return sel

    def wants(self, record: dict[str, Any]) -> bool:
        t = record["event_time"]
        if (self.start and t < self.start) or (self.end and t >= self.end):
            return False
        if self.kinds and record["kind"] not in self.kinds:
            return False
        if self.identity is not None and (record["identity"] is None
                                          or not fnmatchcase(record["identity"], self.identity)):
            return False
        return True

    def may_hold(self, manifest: dict[str, Any] | None) -> bool:
        """Whether a file whose (verified) manifest is this can hold a wanted record."""
        if manifest is None:
            return True
        times = manifest.get("event_time") or {}
        low, high = times.get("min"), times.get("max")
        if low is None or high is None:
            return True
        return not ((self.start and high < self.start) or (self.end and low >= self.end))


def _bound(text: str | None, flag: str) -> str | None:
    if text is None:
        return None
    try:
        return rfc3339(parse_time(text))
    except ValueError:
        raise AuditError(f"`{flag}` `{text}` is not an RFC 3339 time "
                         "(e.g. `2026-11-28T12:00:00Z`)") from None


def exportable(record: dict[str, Any]) -> dict[str, Any]:
    """The record as hashed: JSON-ready, `key` in base64."""
    return json.loads(canonical_json(record))


@dataclass
class ExportResult:
    exported: int
    scanned: int
    files: int
    report: VerifyReport | None


def _files(directory: Path, report: VerifyReport | None) -> list[tuple[Path, dict | None]]:
    if report is not None:
        return list(report.manifests)
    listing = list_archive(directory)
    last = max(listing.manifests, default=0)
    # unverified: every file in order, except a trailing one without manifest (unfinished)
    return [(p, None) for s, p in sorted(listing.data.items()) if s <= last or s in listing.manifests]


def select(directory: Path, selection: Selection, report: VerifyReport | None,
           counts: list[int]) -> Iterator[dict[str, Any]]:
    """The wanted records, in archive order; `counts` gets [scanned, files]."""
    for path, manifest in _files(directory, report):
        if not selection.may_hold(manifest):
            continue
        counts[1] += 1
        _, records = read_file(path)
        for record in records:
            counts[0] += 1
            if selection.wants(record):
                yield record


def export(directory: Path | str, selection: Selection, fmt: str, out: IO, *,
           verify_first: bool = True, on_problem: Callable[[str], None] | None = None,
           keys: Keyring | None = None) -> ExportResult:
    """Write the selected records to `out` (text for jsonl/csv, binary for avro).

    Raises AuditError, writing nothing, when the archive does not verify
    (with `keys`, its manifest signatures included).
    """
    if fmt not in FORMATS:
        raise AuditError(f"unknown format `{fmt}` (one of {', '.join(FORMATS)})")
    directory = Path(directory)
    report = None
    if verify_first:
        report = verify(directory, keys=keys)
        if not report.ok:
            for problem in report.problems:
                (on_problem or (lambda _: None))(str(problem))
            raise AuditError(f"archive `{directory}` does not verify ({len(report.problems)} problem(s)); "
                             "nothing exported (`--no-verify` exports anyway)")
    counts = [0, 0]
    records = select(directory, selection, report, counts)
    if fmt == "avro":
        exported = _write_avro(out, records, selection, report)
    else:
        exported = 0
        writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
        if writer is not None:
            writer.writerow(CSV_COLUMNS)
        for record in records:
            line = exportable(record)
            if writer is None:
                out.write(json.dumps(line, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n")
            else:
                writer.writerow(["" if line[c] is None else line[c] for c in CSV_COLUMNS])
            exported += 1
    return ExportResult(exported, counts[0], counts[1], report)


def _write_avro(out: IO, records: Iterator[dict[str, Any]], selection: Selection,
                report: VerifyReport | None) -> int:
    count = 0

    def counted() -> Iterator[dict[str, Any]]:
        nonlocal count
        for record in records:
            count += 1
            yield record

    metadata = {
        "forgeone.audit.export.from": selection.start or "",
        "forgeone.audit.export.to": selection.end or "",
        "forgeone.audit.export.identity": selection.identity or "",
        "forgeone.audit.export.kinds": ",".join(sorted(selection.kinds)),
        "forgeone.audit.export.verified_head": report.last_file_hash if report else "not verified",
    }
    buffer = out if not isinstance(out, io.TextIOBase) else out.buffer  # type: ignore[attr-defined]
    fastavro.writer(buffer, audit_schema(), counted(), codec="deflate", metadata=metadata)
    return count
