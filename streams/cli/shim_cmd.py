"""`trustctl shim -- CMD ARGS...`: run a program under the shim and its actuator.

Every syscall of the program's whole process tree that the policy in force
names is trapped (seccomp user notification), rendered like strace and
published as a SyscallEvent; the actuator applies the redzone to the tree
(docs/behaviour.md §3.1) and `--gate` holds chosen calls until the engine decides them.
Exit code: the program's (128 + N when a signal N ended it).  Needs root or
CAP_SYS_ADMIN + CAP_SYS_PTRACE (docs/shim.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("shim", help="run a program under the kernel shim: events, redzone enforcement, gates")
    p.add_argument("--identity", help="identity id of the events (default tool-<program>)")
    p.add_argument("--policy", type=Path, help="policy file deciding what to trap (default: the one on trust.policy)")
    p.add_argument("--gate", default="", help="comma-separated syscalls held until the engine decides them")
    p.add_argument("--gate-timeout", type=float, default=200.0, help="ms a gated call waits (default 200)")
    p.add_argument("--gate-fallback", choices=("deny", "allow"), default="deny",
                   help="what a gated call gets when no decision arrives in time (default deny)")
    p.add_argument("--no-cgroup", action="store_true", help="do not make a cgroup; freeze/kill with signals")
    p.add_argument("--observer", choices=("auto", "ebpf", "seccomp"), default="auto",
                   help="who reports every syscall under a catch-all policy: an eBPF observer, or seccomp "
                        "trapping them all (default auto: ebpf where the kernel and privileges allow)")
    p.add_argument("--shim-id", help="shim id on the event batches (default host-pid)")
    p.add_argument("-q", "--quiet", action="store_true", help="say nothing on stderr but errors")
    p.add_argument("cmd", nargs=argparse.REMAINDER, help="-- PROGRAM ARGS...")
    p.set_defaults(func=run)


def _policy(args: argparse.Namespace, settings):
    """(the policy, the gate that follows `trust.policy` or None, where the follower starts on it).

    --policy FILE pins a policy (no gate).  Otherwise the policy the workers
    hold in force: the topic replayed through the same gate (with
    TRUST_POLICY_VERIFY_KEYS only documents signed by a trusted key, never a
    rollback), so a forged or invalid document cannot shrink what the shim
    traps; the gate then takes the documents published while the shim runs."""
    from streams.errors import ConfigError
    from streams.policy.loader import load_policy_file
    from streams.policy_topic import read_published, replay
    from streams.signing import load_keyring

    if args.policy is not None:
        return load_policy_file(args.policy), None, {}
    keys = settings.policy_verify_keys
    published = read_published(settings)
    gate = replay(published, load_keyring(keys) if keys else None)
    if gate.history.current is None:
        refused = gate.history.refusals()
        why = f"; the newest refused: {refused[-1].version} ({refused[-1].reason.value}: {refused[-1].message})" \
            if refused else ""
        raise ConfigError(f"no policy in force on `{settings.topic('policy')}`{why}: "
                          "publish one or pass --policy FILE")
    # one partition (streams/topics.py): follow it from just after the last document read
    return gate.history.current, gate, {(settings.topic("policy"), 0): published[-1].offset + 1}


def run(args: argparse.Namespace) -> int:
    from streams.errors import ConfigError
    from streams.procshim.follow import Follower
    from streams.procshim.supervisor import ShimOptions, Supervisor
    from streams.procshim.trapset import plan_for_policy
    from streams.settings import Settings
    from streams.shim import ShimProducer

    cmd = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    if not cmd:
        raise ConfigError("no program given: `trustctl shim [options] -- PROGRAM ARGS...`")
    path = cmd[0] if "/" in cmd[0] else shutil.which(cmd[0])
    if path is None or not os.access(path, os.X_OK):
        raise ConfigError(f"`{cmd[0]}` is not an executable program")
    if args.gate_timeout <= 0:
        raise ConfigError(f"--gate-timeout must be above 0 ms, got `{args.gate_timeout}`")
    prog = os.path.basename(cmd[0])
    settings = Settings.from_env()
    shim = ShimProducer(settings, shim_id=args.shim_id, validate=False)
    shim.start()  # connects while the policy and the redzone follower are read
    policy, policy_gate, starts = _policy(args, settings)
    gate = [g.strip() for g in args.gate.split(",") if g.strip()]
    plan = plan_for_policy(policy, gate=gate)
    identity = args.identity or f"tool-{prog}"
    if not args.quiet:
        print(f"trustctl shim: policy {policy.version}; identity {identity}\n"
              + "\n".join(f"trustctl shim: {line}" for line in plan.describe().splitlines()),
              file=sys.stderr, flush=True)
    opts = ShimOptions(argv=cmd, path=os.path.abspath(path), identity_id=identity, prog=prog, plan=plan,
                       gate_timeout=args.gate_timeout / 1000, gate_fallback_allow=args.gate_fallback == "allow",
                       use_cgroup=not args.no_cgroup, quiet=args.quiet, observer=args.observer)
    kinds = ["quarantine", "redzone"] + (["decisions"] if plan.gated else []) + \
        (["policy"] if policy_gate is not None else [])
    follower = Follower(settings, kinds, process_prefix=f"{prog}-", identity_id=identity, wake_fd=-1)
    follower.assign_at_end(starts)
    actions = _ActionSink(settings)
    shim.connect()  # before the program runs: its first violation must not wait for the producer
    classes = {k: frozenset(v) for k, v in policy.syscall_classes.items()}
    sup = Supervisor(opts, shim=shim, enforcement_sink=actions, follower=follower, classes=classes,
                     policy_gate=policy_gate, policy_version=policy.version)
    code = 1
    try:
        sup.launch()
        follower.start()
        code = sup.run()
    finally:
        sup.close()
        follower.stop()
        undelivered = shim.close(10) + actions.close()
        c = sup.counters
        if not args.quiet:
            print(f"trustctl shim: {c['calls']} calls trapped, {c['events']} events published "
                  f"({shim.counters.events_delivered} delivered), {c['denied']} denied, "
                  f"{c['gated']} gated ({c['gate_timeouts']} timed out), "
                  f"{actions.count} enforcement actions; exit {code}", file=sys.stderr)
        if sup.plan.observed and (not args.quiet or c["lost"]):  # lost events are said even with -q
            print(f"trustctl shim: observer: {c['observed']} calls reported, {c['lost']} lost "
                  f"(the ring buffer was full)", file=sys.stderr)
        failed = shim.counters.events_failed
        if undelivered or failed:  # said even with -q: these events are lost to the engine
            print(f"trustctl shim: {undelivered} record(s) still queued at exit and {failed} event(s) "
                  f"refused or timed out: not delivered to kafka", file=sys.stderr)
    return code


class _ActionSink:
    """EnforcementAction records to `trust.enforcement`, key = process id."""

    def __init__(self, settings):
        from streams.codec.avro import codec
        from streams.kafka import clients

        self.topic = settings.topic("enforcement")
        self.codec = codec("EnforcementAction")
        self.producer = clients.producer(settings, "forgeone-shim-actions", **{"linger.ms": 1})
        self.count = 0

    def __call__(self, record: dict) -> None:
        self.producer.produce(self.topic, key=record["process_id"].encode(), value=self.codec.encode(record))
        self.producer.poll(0)
        self.count += 1

    def close(self) -> int:
        return self.producer.flush(10)
