"""`trustctl policy validate|diff`: check and compare policy documents offline."""

from __future__ import annotations

import argparse
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
    pub = sub.add_parser("publish", help="validate, then publish to the policy topic (workers switch live)")
    pub.add_argument("path", type=Path)
    pub.add_argument("--by", help="who publishes (recorded in the history; default: the user name)")
    pub.set_defaults(func=publish)
    h = sub.add_parser("history", help="every published version with its digest and effective time")
    h.set_defaults(func=history)


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


def publish(args: argparse.Namespace) -> int:
    from streams.policy_topic import publish as publish_policy
    from streams.settings import Settings

    print(publish_policy(Settings.from_env(), load_policy_file(args.path), args.by))
    return 0


def history(args: argparse.Namespace) -> int:
    from streams.policy.history import PolicyHistory
    from streams.policy_topic import compile_envelope, read_published
    from streams.settings import Settings
    from streams.errors import TrustError

    published = read_published(Settings.from_env())
    if not published:
        print("no policy published yet")
        return 0
    running = PolicyHistory()
    print(f"{'offset':>6}  {'version':<28} {'sha256':<16}  {'effective at':<27} {'by':<12} status")
    for p in published:
        e = p.envelope
        try:
            running.accept(compile_envelope(e), e["published_at"])
            status = "accepted"
        except TrustError as exc:
            status = "refused: " + str(exc).splitlines()[-1].strip()
        print(f"{p.offset:>6}  {e['version']:<28} {e['digest'][:16]}  {e['published_at']:<27} "
              f"{(e.get('published_by') or '-'):<12} {status}")
    current = running.current
    print(f"in force: {current.version if current else 'none'}")
    return 0
