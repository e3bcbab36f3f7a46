"""`trustctl worker`: run the streaming engine (several workers share the partitions)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "worker", help="run the streaming engine on Kafka and Redis",
        description="Run one engine worker: decide agent, redzone agent, policy hot reload. "
                    "Start several to share the partitions.")
    p.add_argument("--policy", type=Path,
                   help="publish this policy document first (skipped if it is already the newest)")
    p.add_argument("--web-port", type=int, help="port of the worker's HTTP API (default TRUST_WEB_PORT or 6066)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from streams.settings import Settings

    settings = Settings.from_env()
    if args.web_port:
        settings = dataclasses.replace(settings, web_port=args.web_port)
    from streams.worker.preflight import check_access

    check_access(settings)  # Redis or Kafka refusing these credentials: one line, exit 2
    if args.policy:  # with its .sig beside it, when there is one
        from streams.policy_topic import publish_file

        print(publish_file(settings, args.policy), file=sys.stderr)
    from streams.worker import build_worker

    sys.argv = [sys.argv[0]]  # Faust's worker reads its own command line
    build_worker(settings).run()
    return 0
