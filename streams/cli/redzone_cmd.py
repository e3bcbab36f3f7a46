"""`trustctl redzone list|show|analyze|terminate|recover`: operate the redzone.

Talks to Redis and Kafka directly through `streams.redzone.service` (no
worker needed): the same atomic transitions, RedzoneEvents and trust resets
as the worker's HTTP API.  Readable tables by default, `--json` for scripts.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from typing import Any

EXIT_REFUSED = 3  # the state machine refused the transition; nothing changed
EXIT_UNKNOWN = 4  # no such process in the redzone
EXIT_UNAVAILABLE = 5  # redis unreachable (or timed out): retry later
EPILOG = (f"exit codes: 0 done; 2 error (bad input; applied in redis but kafka did not confirm); "
          f"{EXIT_REFUSED} transition refused (nothing changed); {EXIT_UNKNOWN} no such process; "
          f"{EXIT_UNAVAILABLE} redis unreachable")


def register(subparsers: argparse._SubParsersAction) -> None:
    rz = subparsers.add_parser("redzone", help="list, inspect, analyze, terminate and recover quarantined processes",
                               epilog=EPILOG)
    sub = rz.add_subparsers(dest="redzone_command", metavar="ACTION")
    sub.required = True

    def add(name: str, help: str, func, process: bool = True, mutates: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, epilog=EPILOG)
        if process:
            p.add_argument("process_id")
        if mutates:
            p.add_argument("--by", help="operator name recorded as `operator:<name>` (default: the user name)")
            p.add_argument("--reason", default="", help="why (recorded in the redzone event)")
        p.add_argument("--json", action="store_true", help="print JSON instead of a readable table")
        p.set_defaults(func=lambda args: _run(func, args))
        return p

    ls = add("list", "processes in the redzone, optionally one status or identity", _list, process=False)
    ls.add_argument("--status", help="active | analyzing | terminated | recovered")
    ls.add_argument("--identity", help="only this identity id")
    show = add("show", "one process: status, isolation, lifecycle, trace size", _show)
    show.add_argument("--analysis", action="store_true",
                      help="print the forensic report instead (read only: no transition)")
    add("analyze", "active -> analyzing, then print the forensic report", _analyze, mutates=True)
    add("terminate", "active|analyzing -> terminated (final)", _terminate, mutates=True)
    add("recover", "active|analyzing -> recovered (final); the identity's trust is reset to the baseline",
        _recover, mutates=True)


def _run(func, args: argparse.Namespace) -> int:
    from streams.errors import RedzoneUnavailable, TransitionError, UnknownProcessError
    from streams.redzone.service import RedzoneService
    from streams.settings import Settings

    async def go() -> int:
        svc = RedzoneService(Settings.from_env())
        try:
            return await func(svc, args)
        finally:
            await svc.close()

    try:
        return asyncio.run(go())
    except TransitionError as exc:
        print(f"trustctl: refused: {exc}; nothing changed", file=sys.stderr)
        return EXIT_REFUSED
    except UnknownProcessError as exc:
        print(f"trustctl: error: {exc}", file=sys.stderr)
        return EXIT_UNKNOWN
    except RedzoneUnavailable as exc:
        from redis.exceptions import AuthenticationError, AuthorizationError

        hint = ("check TRUST_REDIS_USERNAME and TRUST_REDIS_PASSWORD"
                if isinstance(exc.__cause__, (AuthenticationError, AuthorizationError))
                else "retry later (TRUST_REDIS_URL names the server)")
        print(f"trustctl: error: {exc}; {hint}", file=sys.stderr)
        return EXIT_UNAVAILABLE


def _actor(args: argparse.Namespace) -> str:
    return f"operator:{args.by or getpass.getuser()}"


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=False))


async def _list(svc, args) -> int:
    processes = await svc.list_quarantined_processes(args.status, args.identity)
    if args.json:
        from streams.web import summary

        _print_json([summary(p) for p in processes])
        return 0
    if not processes:
        print("no processes in the redzone" + (" with that status/identity" if args.status or args.identity else ""))
        return 0
    print(f"{'process':<20} {'identity':<22} {'status':<10} {'isolation':<12} {'forensic':<8} "
          f"{'trace':>5}  {'quarantined at':<27} reason")
    for p in processes:
        level, _ = p.isolation.as_fields()
        print(f"{p.process_id:<20} {p.identity_id:<22} {p.status.value:<10} {level:<12} "
              f"{p.forensic_mode.value:<8} {len(p.trace):>5}  {p.quarantined_at:<27} {p.reason[:60]}")
    print(f"{len(processes)} process(es)")
    return 0


def _print_process(p) -> None:
    level, names = p.isolation.as_fields()
    rows = [("process", p.process_id), ("identity", p.identity_id), ("container", p.container_id or "-"),
            ("status", p.status.value), ("isolation", level + (f" {', '.join(names)}" if names else "")),
            ("forensic mode", p.forensic_mode.value), ("reason", p.reason), ("reason code", p.reason_code or "-"),
            ("quarantined at", p.quarantined_at), ("updated at", p.updated_at),
            ("policy versions", ", ".join(p.policy_versions) or "-"), ("trace entries", len(p.trace))]
    for k, v in rows:
        print(f"{k:<16} {v}")
    print("history")
    for step in p.history:
        print(f"  {step['at']}  {step['from'] or '-':>9} -> {step['to']:<10} by {step['actor']}")


def _print_report(r: dict) -> None:
    print(f"process {r['process_id']} ({r['identity_id']}): {r['status']}, isolation {r['isolation_level']}, "
          f"forensic mode {r['forensic_mode']}")
    print(f"reason: {r['reason']}" + (f" [{r['reason_code']}]" if r.get("reason_code") else ""))
    if r["forensic_mode"] == "none":
        print(r["note"])
        return
    print(f"trace: {r['trace_entries']} decisions, first seen {r['first_seen']}, last seen {r['last_seen']}")
    for title, key in (("syscalls", "syscall_histogram"), ("outcomes", "outcomes"),
                       ("violations by reason", "violations_by_reason")):
        print(f"{title}: " + (", ".join(f"{k} {n}" for k, n in r[key].items()) or "none"))
    if "policy_versions" in r:
        print(f"policy versions: {', '.join(r['policy_versions']) or '-'}")
        print("trust: " + (" -> ".join(f"{t['trust_score']:g}" for t in r["trust_trajectory"]) or "-"))
    print("timeline")
    for e in r["timeline"]:
        args = f"({', '.join(e['args'])})" if e.get("args") is not None else ""
        trust = f" trust {e['trust_score']:g}" if e.get("trust_score") is not None else ""
        print(f"  {e['timestamp']}  {e['syscall']}{args}  {e['action']}"
              f"{' ' + e['reason_code'] if e['reason_code'] else ''}{trust}")


async def _show(svc, args) -> int:
    if args.analysis:
        report = await svc.analysis_report(args.process_id)
        _print_json(report) if args.json else _print_report(report)
        return 0
    p = await svc.get_quarantined_process(args.process_id)
    _print_json(p.to_dict()) if args.json else _print_process(p)
    return 0


async def _analyze(svc, args) -> int:
    report = await svc.analyze_process(args.process_id, _actor(args), args.reason)
    _print_json(report) if args.json else _print_report(report)
    return 0


async def _transition(svc, args, call, done: str) -> int:
    p = await call(args.process_id, _actor(args), args.reason)
    if args.json:
        _print_json(p.to_dict())
    else:
        print(f"process {p.process_id} ({p.identity_id}) {done}")
    return 0


async def _terminate(svc, args) -> int:
    return await _transition(svc, args, svc.terminate_process, "terminated")


async def _recover(svc, args) -> int:
    return await _transition(svc, args, svc.recover_process,
                             "recovered; its identity's trust is reset to the baseline by the engine")
