"""The shim's overhead on real programs, against strace, in the same run.

    python -m benchmarks.procshim_bench [--quick] [--catch-all] [--out FILE]

Workloads (each times itself, so start-up costs of the tracers are left out;
the total wall time is reported too):

- `stat`: 200,000 ``os.stat`` in Python (``newfstatat``, not trapped);
- `cat`: 2,000 ``cat /etc/hostname`` started by ``sh`` (exec, open, read,
  write: trapped);
- `tar`: ``tar -cf`` of Python's standard library (~7,700 files) to a file;
- `git status`: 40 ``git status --porcelain`` of this repository.

Modes: untraced; ``trustctl shim`` with a policy naming execve, connect,
ptrace and mount (plus the syscall classes its isolation levels name: none,
every entry isolates `full`; the trapped set is in the output), and the same
keys isolating `network` and `filesystem` ("both classes": read, write,
openat... trapped too); ``strace -f`` (every
syscall, ptrace stops); ``strace -f --seccomp-bpf -e trace=<the shim's trapped set>`` for each.
With ``--catch-all`` the policy is ``"*"`` plus an ``openat`` key (every
syscall reported): untraced, the shim with ``--observer seccomp`` (trapping
everything), the shim with ``--observer ebpf`` (seccomp traps execve, execveat
and openat; the eBPF observer reports the rest), and ``strace -f``; the
observer's lost records are reported too.

Medians of 3 (1 with --quick); for the shim, the events it published (its
exit summary) per wall second.  Needs root, strace, and the broker (the
shim publishes every event; its topics get a private prefix, deleted after).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from streams.policy.loader import load_policy
from streams.procshim.trapset import plan_for_policy

POLICY = """
version: shim-bench-1
default_action: allow
policies:
  execve: {}
  connect: {}
  ptrace: {}
  mount: {}
"""
# The same keys, isolating with both classes: the filter also traps the network
# and filesystem classes (read, write, openat, ...) so a quarantine can deny them.
POLICY_ALL = """
version: shim-bench-all-1
default_action: allow
policies:
  "*": {}
  openat: {}
"""
POLICY_CLASSES = POLICY.replace("shim-bench-1", "shim-bench-classes-1").replace(
    "connect: {}", "connect: {isolation_level: network}").replace("mount: {}", "mount: {isolation_level: filesystem}")
STAT = "import os, time\nt = time.perf_counter()\nfor _ in range({n}): os.stat('/')\nprint(time.perf_counter() - t)\n"
CAT = 's=$(date +%s%N); i=0; while [ $i -lt {n} ]; do cat /etc/hostname >/dev/null; i=$((i+1)); done; ' \
      'e=$(date +%s%N); echo $(( (e - s) / 1000 ))'


# Real tools: `tar` of a source tree (Python's standard library, ~7,700 files,
# site-packages left out) into a file, and `git status` of this repository.
TAR = 's=$(date +%s%N); tar -cf {out} --exclude=site-packages -C {tree} .; ' \
      'e=$(date +%s%N); echo $(( (e - s) / 1000 ))'
GIT = 's=$(date +%s%N); i=0; while [ $i -lt {n} ]; do git -C {repo} status --porcelain >/dev/null; ' \
      'i=$((i+1)); done; e=$(date +%s%N); echo $(( (e - s) / 1000 ))'


def workloads(quick: bool) -> dict[str, tuple[list[str], float]]:
    """name -> (argv, divisor turning the printed number into seconds)."""
    n_stat, n_cat, n_git = (50_000, 500, 10) if quick else (200_000, 2_000, 40)
    tree = os.path.dirname(os.__file__) if not quick else os.path.join(os.path.dirname(os.__file__), "email")
    repo = Path(__file__).resolve().parents[1]
    out = os.path.join(tempfile.gettempdir(), f"procshim-bench-{os.getpid()}.tar")
    loads = {
        f"stat x{n_stat}": ([sys.executable, "-c", STAT.format(n=n_stat)], 1.0),
        f"cat x{n_cat} in sh": (["sh", "-c", CAT.format(n=n_cat)], 1e6),
        f"tar of {os.path.basename(tree)}/": (["sh", "-c", TAR.format(out=out, tree=tree)], 1e6),
    }
    if (repo / ".git").exists() and shutil.which("git"):
        loads[f"git status x{n_git}"] = (["sh", "-c", GIT.format(n=n_git, repo=repo)], 1e6)
    return loads


EVENTS = re.compile(r"(\d+) calls trapped, (\d+) events published")
LOST = re.compile(r"observer: (\d+) calls reported, (\d+) lost")


def run_once(prefix: list[str], argv: list[str], divisor: float,
             env: dict) -> tuple[float, float, int | None, int | None]:
    """(the loop's own seconds, wall seconds, events the shim published or None, observer's lost or None)."""
    t = time.perf_counter()
    out = subprocess.run(prefix + argv, env=env, capture_output=True, text=True, timeout=900)
    wall = time.perf_counter() - t
    if out.returncode != 0:
        raise RuntimeError(f"{prefix + argv[:1]} exited {out.returncode}: {out.stderr[-500:]}")
    inner = float(out.stdout.strip().splitlines()[-1]) / divisor
    found = EVENTS.search(out.stderr)
    lost = LOST.search(out.stderr)
    return inner, wall, int(found.group(2)) if found else None, int(lost.group(2)) if lost else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--catch-all", action="store_true", help="a `*` policy: seccomp vs the eBPF observer")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = Path(f"benchmarks/results/procshim_bench{'_catchall' if args.catch_all else ''}.json")
    if os.geteuid() != 0 or shutil.which("strace") is None:
        print("needs root and strace (apt-get install strace)", file=sys.stderr)
        return 2
    from streams.kafka.admin import ensure_topics
    from streams.settings import Settings

    env = dict(os.environ, TRUST_TOPIC_PREFIX=f"bench.shim.{uuid.uuid4().hex[:6]}.")
    settings = Settings.from_env(env)
    ensure_topics(settings)
    policy_file = Path(tempfile.mkdtemp()) / "policy.yaml"
    policy_file.write_text(POLICY)
    trapped = sorted(plan_for_policy(load_policy(POLICY)).syscalls)
    trapped_classes = sorted(plan_for_policy(load_policy(POLICY_CLASSES)).syscalls)
    classes_file = policy_file.with_name("policy-classes.yaml")
    classes_file.write_text(POLICY_CLASSES)
    trustctl = str(Path(sys.executable).with_name("trustctl"))
    modes = {
        "untraced": [],
        "shim": [trustctl, "shim", "--policy", str(policy_file), "--"],
        "strace -f": ["strace", "-f", "-qq", "-o", "/dev/null"],
        "strace -f --seccomp-bpf": ["strace", "-f", "-qq", "--seccomp-bpf", "-e", "trace=" + ",".join(trapped),
                                    "-o", "/dev/null"],
        "shim, both classes": [trustctl, "shim", "--policy", str(classes_file), "--"],
        "strace -f --seccomp-bpf, both classes": ["strace", "-f", "-qq", "--seccomp-bpf", "-e",
                                                  "trace=" + ",".join(trapped_classes), "-o", "/dev/null"],
    }
    if args.catch_all:
        all_file = policy_file.with_name("policy-all.yaml")
        all_file.write_text(POLICY_ALL)
        modes = {
            "untraced": [],
            "shim, seccomp traps all": [trustctl, "shim", "--observer", "seccomp", "--policy", str(all_file), "--"],
            "shim, eBPF observer": [trustctl, "shim", "--observer", "ebpf", "--policy", str(all_file), "--"],
            "strace -f": ["strace", "-f", "-qq", "-o", "/dev/null"],
        }
    reps = 1 if args.quick else 3
    results: dict = {"trapped": trapped, "trapped_both_classes": trapped_classes, "reps": reps, "workloads": {}}
    try:
        for name, (cmd, div) in workloads(args.quick).items():
            rows = {}
            for mode, prefix in modes.items():
                runs = [run_once(prefix, cmd, div, env) for _ in range(reps)]
                rows[mode] = {"inner_s": statistics.median(r[0] for r in runs),
                              "wall_s": statistics.median(r[1] for r in runs)}
                if runs[0][2] is not None:
                    rows[mode]["events"] = runs[0][2]
                    rows[mode]["events_per_s"] = round(statistics.median(r[2] / r[1] for r in runs))
                if runs[0][3] is not None:
                    rows[mode]["lost"] = [r[3] for r in runs]
            base = rows["untraced"]
            for row in rows.values():
                row["inner_x"] = round(row["inner_s"] / base["inner_s"], 2)
                row["wall_x"] = round(row["wall_s"] / base["wall_s"], 2)
            results["workloads"][name] = rows
            print(f"\n{name} (median of {reps}; x = vs untraced)")
            for mode, row in rows.items():
                print(f"  {mode:38s} loop {row['inner_s']:8.3f}s {row['inner_x']:6.2f}x   "
                      f"wall {row['wall_s']:8.3f}s {row['wall_x']:6.2f}x"
                      + (f"   {row['events']} events, {row['events_per_s']}/s" if "events" in row else "")
                      + (f", lost {row['lost']}" if "lost" in row else ""))
    finally:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(settings.topic_prefix)]
        if mine:
            for f in admin.delete_topics(mine, operation_timeout=30).values():
                try:
                    f.result(30)
                except Exception:
                    pass
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
