"""`trustctl replay`: decide a file of events offline, exactly as the stream would."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streams.policy.loader import load_policy_file
from streams.replay import Progress, replay


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "replay", help="decide a JSON-lines or Avro file of syscall events offline",
        description="Decide every event of FILE against the policy, in order; one decision "
                    "per JSON line (docs/behaviour.md §2.1). Decision time is the event's timestamp unless "
                    "--wall-clock.")
    p.add_argument("--policy", required=True, type=Path, help="policy document (YAML or JSON)")
    p.add_argument("--events", required=True, type=Path, help="JSON lines or Avro container file")
    p.add_argument("--out", type=Path, help="write decisions here instead of stdout")
    p.add_argument("--strict", action="store_true", help="exit 1 if any input line was bad")
    p.add_argument("--wall-clock", action="store_true", help="stamp decisions with the current time")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    policy = load_policy_file(args.policy)
    if not args.events.is_file():
        print(f"trustctl: error: events file `{args.events}` does not exist", file=sys.stderr)
        return 2

    def on_bad(number: int, reason: str) -> None:
        print(f"{args.events}:{number}: skipped: {reason}", file=sys.stderr)

    progress = Progress(args.events.stat().st_size)
    out = open(args.out, "w", encoding="utf-8", buffering=1 << 20) if args.out else sys.stdout
    try:
        summary = replay(policy, args.events, out, wall_clock=args.wall_clock,
                         on_bad=on_bad, on_progress=progress)
    finally:
        progress.close()
        if args.out:
            out.close()
        else:
            out.flush()
    print(summary.line(), file=sys.stderr)
    return 1 if args.strict and summary.bad else 0
