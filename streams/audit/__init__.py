"""Tamper-evident audit trail: an archive sink, verification, export (docs/audit.md).

    chain     pure: canonical JSON, record hashes, one chain per topic-partition
    archive   rotated Avro files with manifests; durable close; crash recovery
    signature Ed25519 signatures of manifests (TRUST_AUDIT_SIGNING_KEY; verify --key)
    verify    finds edited, deleted, inserted, reordered records and files
    export    a period's records for an auditor (jsonl, csv, avro)
    sink      confluent-kafka consumer: commit only what is archived
"""

from __future__ import annotations

from streams.audit.archive import ArchiveWriter, audit_schema, recover
from streams.audit.chain import GENESIS, SOURCES, Chains, SourceMessage, canonical_json, record_hash
from streams.audit.export import FORMATS, Selection, export
from streams.audit.sink import Archiver, Sink, SinkOptions
from streams.audit.verify import Problem, VerifyReport, verify

__all__ = [
    "FORMATS",
    "GENESIS",
    "SOURCES",
    "ArchiveWriter",
    "Archiver",
    "Chains",
    "Problem",
    "Selection",
    "Sink",
    "SinkOptions",
    "SourceMessage",
    "VerifyReport",
    "audit_schema",
    "canonical_json",
    "export",
    "recover",
    "record_hash",
    "verify",
]
