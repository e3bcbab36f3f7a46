"""`trustctl stack up|down|status|logs`: the local Kafka broker and Redis server."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from streams.settings import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stack",
        help="run the local Kafka broker and Redis server (no Docker)",
        description="Run the local Kafka broker (KRaft) and Redis server as plain processes; "
        "data under TRUST_STACK_DIR. See deploy/README.md.",
    )
    actions = parser.add_subparsers(dest="stack_action", metavar="ACTION")
    actions.required = True

    up = actions.add_parser("up", help="start what is not running and wait until it answers")
    up.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the broker (60)")
    up.add_argument("--secure", action="store_true",
                    help="SASL_SSL + ACLs on Kafka, TLS + ACL users on Redis, one credentials file per "
                         "role in TRUST_STACK_DIR/security (also TRUST_STACK_SECURE=1); a directory "
                         "made secure stays secure")
    up.set_defaults(func=_up)

    down = actions.add_parser("down", help="stop both services (SIGTERM, SIGKILL after --timeout)")
    down.add_argument("--timeout", type=float, default=30.0, help="seconds before SIGKILL (30)")
    down.set_defaults(func=_down)

    status = actions.add_parser("status", help="running/stopped/unhealthy, pid and port")
    status.set_defaults(func=_status)

    acls = actions.add_parser(
        "acls", help="the roles' Kafka ACLs for these settings; --apply puts them on the broker",
        description="List the ACLs of the roles shim, engine, operator and auditor for TRUST_TOPIC_PREFIX and "
                    "TRUST_APP_ID (docs/security.md). With --apply, connect with the TRUST_KAFKA_* credentials "
                    "of a super user, make the roles' ACLs exactly these and set the SCRAM password of each "
                    "role given as TRUST_STACK_PASSWORD_<ROLE>.")
    acls.add_argument("--apply", action="store_true", help="apply them to TRUST_KAFKA_BOOTSTRAP")
    acls.set_defaults(func=_acls)

    certs = actions.add_parser(
        "certs", help="a CA and a server certificate (what --secure makes), for servers elsewhere",
        description="Write ca.pem, ca.key, server.pem, server.key and kafka-keystore.pem (keys mode 0600) "
                    "into DIR, for localhost, 127.0.0.1 and every --host; kept while valid.")
    certs.add_argument("--out", required=True, type=Path, metavar="DIR")
    certs.add_argument("--host", action="append", default=[], help="another name of the servers (repeatable)")
    certs.set_defaults(func=_certs)

    logs = actions.add_parser("logs", help="print the end of a service's log")
    logs.add_argument("service", nargs="?", choices=("kafka", "redis"), help="default: both")
    logs.add_argument("-n", "--lines", type=int, default=50, help="number of lines (50)")
    logs.set_defaults(func=_logs)


def _up(args: argparse.Namespace) -> int:
    from streams import stack

    settings = Settings.from_env()
    started = stack.up(settings, kafka_timeout=args.timeout, secure=args.secure)
    _print_status(stack.status(settings))
    if not started:
        print("stack: already running", file=sys.stderr)
    return 0


def _down(args: argparse.Namespace) -> int:
    from streams import stack

    for result in stack.down(Settings.from_env(), timeout=args.timeout):
        if result.pid is None:
            print(f"{result.name}: was not running")
        elif result.killed:
            print(
                f"{result.name}: did not stop within {args.timeout:.0f} s after SIGTERM, "
                f"killed with SIGKILL (pid {result.pid})"
            )
        else:
            print(f"{result.name}: stopped (pid {result.pid}, {result.seconds:.1f} s)")
    return 0


def _status(args: argparse.Namespace) -> int:
    from streams import stack

    statuses = stack.status(Settings.from_env())
    _print_status(statuses)
    return 0 if all(s.state == stack.RUNNING for s in statuses) else 1


def _print_status(statuses) -> None:
    for s in statuses:
        pid = f"pid {s.pid}" if s.pid else "-"
        detail = f"  ({s.detail})" if s.detail else ""
        print(f"{s.name:<6} {s.state:<10} {pid:<11} port {s.port}{detail}")


def _acls(args: argparse.Namespace) -> int:
    from streams.stack.acls import ADMIN, kafka_acls

    settings = Settings.from_env()
    rules = kafka_acls(settings)
    if args.apply:
        from streams.stack.security import apply_kafka_acls

        passwords = {u: p for u, p in settings.stack_passwords if u != ADMIN}
        apply_kafka_acls(settings, settings, passwords, lambda m: print(f"stack: {m}", file=sys.stderr))
        return 0
    print(f"{'user':<9} {'operation':<9} {'resource':<8} {'pattern':<8} name")
    for r in rules:
        print(f"{r.user:<9} {r.operation.value:<9} {r.resource.value:<8} {r.pattern.value:<8} {r.name}")
    return 0


def _certs(args: argparse.Namespace) -> int:
    from streams.stack.security import HOSTS, ensure_certificates

    ensure_certificates(args.out, (*HOSTS, *args.host), report=print)
    return 0


def _logs(args: argparse.Namespace) -> int:
    from streams import stack
    from streams.stack.process import tail

    settings = Settings.from_env()
    names = [args.service] if args.service else list(stack.SERVICES)
    for name in names:
        path = stack.log_path(settings, name)
        if len(names) > 1:
            print(f"==> {path} <==")
        text = tail(path, args.lines)
        if text:
            print(text)
        elif not path.exists():
            print(f"({name} has not written a log yet: {path})")
    return 0
