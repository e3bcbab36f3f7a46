"""`trustctl policy validate|diff|keygen|sign|publish|history`: check, compare, sign and publish
policy documents (signatures: docs/security.md)."""

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
    k = sub.add_parser("keygen", help="a new ed25519 key pair: DIR/policy-signing.key (0600) and .pub")
    k.add_argument("--out", required=True, type=Path, metavar="DIR")
    k.set_defaults(func=keygen)
    s = sub.add_parser("sign", help="sign a policy document: writes PATH.sig beside it")
    s.add_argument("--key", required=True, type=Path, metavar="K", help="the private key file")
    s.add_argument("path", type=Path)
    s.set_defaults(func=sign)
    pub = sub.add_parser("publish", help="validate, then publish to the policy topic (workers switch live); "
                                         "PATH.sig goes with it when it exists")
    pub.add_argument("path", type=Path)
    pub.add_argument("--by", help="who publishes (recorded in the history; default: the user name)")
    pub.set_defaults(func=publish)
    h = sub.add_parser("history", help="every published version with its digest, effective time, signature "
                                       "and status (signatures checked with TRUST_POLICY_VERIFY_KEYS)")
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


KEY_NAME = "policy-signing"


def keygen(args: argparse.Namespace) -> int:
    from streams.signing import keygen as make_keys, load_verify_key

    private, public = make_keys(args.out, KEY_NAME)
    print(f"wrote {private} (private, mode 0600: keep it off the workers) and {public} "
          f"(key id {load_verify_key(public).key_id}; list it in TRUST_POLICY_VERIFY_KEYS)")
    return 0


def sign(args: argparse.Namespace) -> int:
    from streams.clock import utc_now
    from streams.policy_signature import sig_path, sign_policy, write_sig
    from streams.signing import load_signing_key

    key = load_signing_key(args.key)
    cp = load_policy_file(args.path)
    sig = sign_policy(key, cp.version, cp.digest, utc_now())
    out = sig_path(args.path)
    write_sig(out, sig)
    print(f"signed policy {cp.version} (sha256 {cp.digest[:16]}...) with key {key.key_id} "
          f"at {sig.signed_at}: {out}")
    return 0


def publish(args: argparse.Namespace) -> int:
    from streams.policy_topic import publish_file
    from streams.settings import Settings

    print(publish_file(Settings.from_env(), args.path, args.by))
    return 0


def history(args: argparse.Namespace) -> int:
    from streams.errors import TrustError
    from streams.policy_topic import PolicyGate, read_published
    from streams.settings import Settings
    from streams.signing import load_keyring

    settings = Settings.from_env()
    published = read_published(settings)
    gate = PolicyGate(load_keyring(settings.policy_verify_keys) if settings.policy_verify_keys else None)
    print(f"signatures checked with key(s) {', '.join(gate.keyring.ids())}" if gate.keyring else
          "signatures not checked (TRUST_POLICY_VERIFY_KEYS unset)")
    if not published:
        print("no policy published yet")
        return 0
    print(f"{'offset':>6}  {'version':<28} {'sha256':<16}  {'effective at':<27} {'by':<12} "
          f"{'signed':<27} status")
    for p in published:
        e = p.envelope
        if e is None:
            gate.refuse_undecodable(p.error or "undecodable")
            print(f"{p.offset:>6}  {'?':<28} {'-':<16}  {'-':<27} {'-':<12} {'-':<27} refused (undecodable): "
                  f"{p.error}")
            continue
        try:
            gate.offer(e)
            status = "accepted"
        except TrustError as exc:
            refusal = gate.history.refusals()[-1]
            status = f"refused ({refusal.reason.value}): " + str(exc).splitlines()[-1].strip()
        signed = f"{e['signed_at']}" if e.get("signed_at") else "unsigned"
        print(f"{p.offset:>6}  {e['version']:<28} {e['digest'][:16]}  {e['published_at']:<27} "
              f"{(e.get('published_by') or '-'):<12} {signed:<27} {status}")
    current = gate.history.current
    print(f"in force: {current.version if current else 'none'}")
    return 0
