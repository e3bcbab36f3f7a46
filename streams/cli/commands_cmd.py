"""`trustctl commands keygen`: the key pairs that sign quarantine commands, trust
resets and redzone events (docs/security.md, "Signed commands")."""

from __future__ import annotations

import argparse
from pathlib import Path

ROLES = ("engine", "operator")
ENV = {"engine": "TRUST_ENGINE_SIGNING_KEY", "operator": "TRUST_OPERATOR_SIGNING_KEY"}
WHERE = {"engine": "on the workers", "operator": "where operators run trustctl redzone (and on workers "
                                                 "serving the HTTP API's mutations)"}


def register(subparsers: argparse._SubParsersAction) -> None:
    cmds = subparsers.add_parser("commands", help="keys for signed quarantine commands and trust resets")
    sub = cmds.add_subparsers(dest="commands_command", metavar="ACTION")
    sub.required = True
    k = sub.add_parser("keygen", help="a new ed25519 key pair: DIR/engine-signing.key or "
                                      "DIR/operator-signing.key (0600) and its .pub")
    k.add_argument("--role", required=True, choices=ROLES,
                   help="engine: signs the engine's quarantine commands; operator: operators' changes")
    k.add_argument("--out", required=True, type=Path, metavar="DIR")
    k.set_defaults(func=keygen)


def keygen(args: argparse.Namespace) -> int:
    from streams.command_signature import KEY_NAMES
    from streams.signing import keygen as make_keys, load_verify_key

    private, public = make_keys(args.out, KEY_NAMES[args.role])
    print(f"wrote {private} (private, mode 0600: {ENV[args.role]}, {WHERE[args.role]}) and {public} "
          f"(key id {load_verify_key(public).key_id}; list it in TRUST_COMMAND_VERIFY_KEYS on every worker)")
    return 0
