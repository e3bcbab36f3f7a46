"""`trustctl audit sink|verify|export|keygen`: the tamper-evident audit trail (docs/audit.md).

The sink signs each manifest when TRUST_AUDIT_SIGNING_KEY names a private key
file; `verify --key PUB` then also checks those signatures (docs/security.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

KIND_CHOICES = ("decision", "violation", "redzone", "policy")


def register(subparsers: argparse._SubParsersAction) -> None:
    audit = subparsers.add_parser("audit", help="archive, verify and export the audit trail")
    sub = audit.add_subparsers(dest="audit_command", metavar="SUBCOMMAND")
    sub.required = True

    s = sub.add_parser("sink", help="archive decisions, violations, redzone events and policy changes")
    s.add_argument("--dir", required=True, type=Path, help="archive directory (one sink per directory)")
    s.add_argument("--max-bytes", type=int, default=64 * 1024 * 1024,
                   help="start a new file after this many bytes (default 64 MiB)")
    s.add_argument("--max-seconds", type=float, default=300.0,
                   help="start a new file after this many seconds (default 300)")
    s.add_argument("--group", help="consumer group (default <TRUST_APP_ID>-audit)")
    s.add_argument("--compression", choices=("deflate", "null"), default="deflate")
    s.set_defaults(func=sink)

    v = sub.add_parser("verify", help="check every record, link, file and manifest; exit 1 if tampered")
    v.add_argument("--dir", required=True, type=Path)
    v.add_argument("--anchor", action="append", default=[], metavar="HASH",
                   help="a file or record hash noted earlier that must still be in the archive")
    v.add_argument("--key", action="append", default=[], type=Path, metavar="PUB",
                   help="public key of the sink (repeatable): every manifest must be signed by one of them")
    v.add_argument("-q", "--quiet", action="store_true", help="only the summary and problems")
    v.set_defaults(func=verify)

    e = sub.add_parser("export", help="the records of a period, for an auditor")
    e.add_argument("--dir", required=True, type=Path)
    e.add_argument("--from", dest="start", metavar="T1", help="RFC 3339 time, inclusive")
    e.add_argument("--to", dest="end", metavar="T2", help="RFC 3339 time, exclusive")
    e.add_argument("--format", choices=("jsonl", "csv", "avro"), default="jsonl")
    e.add_argument("--identity", metavar="X", help="only records about this identity (shell glob)")
    e.add_argument("--kind", action="append", choices=KIND_CHOICES, default=[],
                   help="only this kind (repeatable)")
    e.add_argument("--out", type=Path, help="output file (default stdout)")
    e.add_argument("--no-verify", action="store_true", help="export without verifying first (warned)")
    e.add_argument("--key", action="append", default=[], type=Path, metavar="PUB",
                   help="also check the manifest signatures with this public key (repeatable)")
    e.set_defaults(func=export)

    k = sub.add_parser("keygen", help="a new ed25519 key pair for signing manifests: "
                                      "DIR/audit-signing.key (0600) and DIR/audit-signing.pub")
    k.add_argument("--out", required=True, type=Path, metavar="DIR")
    k.set_defaults(func=keygen)


def sink(args: argparse.Namespace) -> int:
    from streams.audit.sink import Sink, SinkOptions
    from streams.errors import ConfigError
    from streams.settings import Settings

    if args.max_bytes <= 0 or args.max_seconds <= 0:
        raise ConfigError("`--max-bytes` and `--max-seconds` must be positive")
    settings = Settings.from_env()
    options = SinkOptions(directory=args.dir, group=args.group or f"{settings.app_id}-audit",
                          max_bytes=args.max_bytes, max_seconds=args.max_seconds,
                          compression=args.compression)
    Sink(settings, options).run()
    return 0


def verify(args: argparse.Namespace) -> int:
    from streams.audit.verify import verify as run_verify
    from streams.signing import load_keyring

    report = run_verify(args.dir, anchors=args.anchor, keys=load_keyring(args.key) if args.key else None)
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for problem in report.problems:
        print(str(problem))
    if not args.quiet and report.ok:
        for cid, head in sorted(report.heads.items()):
            print(f"chain {cid}: head offset {head.offset} hash {head.hash}")
    print(report.summary())
    return 0 if report.ok else 1


def export(args: argparse.Namespace) -> int:
    from streams.audit.export import Selection, export as run_export

    from streams.signing import load_keyring

    selection = Selection.of(args.start, args.end, args.identity, args.kind)
    keys = load_keyring(args.key) if args.key else None
    if args.no_verify:
        print("trustctl: WARNING: exporting WITHOUT verifying the archive; these records may have "
              "been altered and must not be used as evidence", file=sys.stderr)
    binary = args.format == "avro"
    if args.out is None:
        out = sys.stdout.buffer if binary else sys.stdout
        close = False
    else:
        out = open(args.out, "wb" if binary else "w", encoding=None if binary else "utf-8",
                   newline=None if binary else "")
        close = True
    try:
        result = run_export(args.dir, selection, args.format, out, verify_first=not args.no_verify,
                            on_problem=lambda line: print(line, file=sys.stderr), keys=keys)
    except Exception:
        if close:
            out.close()
            args.out.unlink(missing_ok=True)
        raise
    if close:
        out.close()
    else:
        out.flush()
    state = "verified" if result.report is not None else "NOT verified"
    print(f"exported {result.exported} record(s) of {result.scanned} read in {result.files} file(s); "
          f"archive {state}", file=sys.stderr)
    return 0


KEY_NAME = "audit-signing"


def keygen(args: argparse.Namespace) -> int:
    from streams.signing import keygen as make_keys, load_verify_key

    private, public = make_keys(args.out, KEY_NAME)
    print(f"wrote {private} (private, mode 0600: the sink's TRUST_AUDIT_SIGNING_KEY) and {public} "
          f"(key id {load_verify_key(public).key_id}; give it to `trustctl audit verify --key`)")
    return 0
