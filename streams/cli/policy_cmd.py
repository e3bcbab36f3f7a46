"""`trustctl policy validate|diff`: check and compare policy documents offline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streams.errors import PolicyError
from streams.policy.diff import diff_graphs
from streams.policy.loader import load_policy_file


def register(subparsers: argparse._SubParsersAction) -> None:
    policy = subparsers.add_parser("policy", help="validate, compare and publish policy documents")
    sub = policy.add_subparsers(dest="policy_command", metavar="ACTION")
    sub.required = True
    v = sub.add_parser("validate", help="list every error of a policy document (exit 1 if any)")
    v.add_argument("path", type=Path)
    v.set_defaults(func=validate)
    d = sub.add_parser("diff", help="what changed from policy A to policy B, in words")
    d.add_argument("a", type=Path)
    d.add_argument("b", type=Path)
    d.set_defaults(func=diff)


def validate(args: argparse.Namespace) -> int:
    try:
        cp = load_policy_file(args.path)
    except PolicyError as exc:
        print(f"{args.path}: {len(exc.issues)} error(s)")
        for path, msg in exc.issues:
            print(f"  {path or '(document)'}: {msg}")
        return 1
    g = cp.graph
    print(f"{args.path}: valid; version {g.version}, {len(g.policies)} policies, "
          f"{len(g.identity_rules)} identity rules, digest sha256:{cp.digest}")
    return 0


def diff(args: argparse.Namespace) -> int:
    a, b = load_policy_file(args.a), load_policy_file(args.b)
    changes = diff_graphs(a.graph, b.graph)
    if not changes:
        print("no changes in meaning" + ("" if a.digest == b.digest else " (digests differ)"))
        return 0
    for line in changes:
        print(line)
    return 0
