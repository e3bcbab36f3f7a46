"""`trustctl` entry point: each command group lives in its own module.

A command module exposes ``register(subparsers)`` which adds its parsers and
sets ``func`` (taking the parsed args, returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from streams.errors import TrustError

COMMAND_MODULES = (
    "streams.cli.replay_cmd",
    "streams.cli.policy_cmd",
    "streams.cli.worker_cmd",
    "streams.cli.tail_cmd",
    "streams.cli.produce_cmd",
    "streams.cli.stack_cmd",
    "streams.cli.topics_cmd",
    "streams.cli.redzone_cmd",
    "streams.cli.audit_cmd",
    "streams.cli.shim_cmd",
    "streams.cli.commands_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="trustctl", description="ForgeOne Trust: Zero-Trust syscall enforcement"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except TrustError as exc:
        print(f"trustctl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("trustctl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
