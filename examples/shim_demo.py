"""`./run demo`'s real-process scene: a program under `trustctl shim` is quarantined.

    python examples/shim_demo.py   (the engine worker must be running examples/policy.yaml)

The program (the system's python3, `-I -S`, its code in a file under /tmp, so
that the host policy's `openat` and `execve` constraints allow its start-up)
runs under an identity the policy's `connect` entry does not allow. It connects
a UDP socket to 127.0.0.1:9 every 50 ms: each connect is a violation costing
0.05 trust; once the trust after a penalty falls below the quarantine threshold
(0.25) the engine quarantines the process with the `connect` policy's
`network` isolation, the shim's actuator denies the next connect with EPERM,
and the program says so.  Then the scene prints the quarantine command and the
EnforcementAction records (`trustctl tail`).  Skipped, saying why, without root
or seccomp user notification; without cgroup v2 the shim uses signals (a
network isolation needs neither).  Every step has a deadline.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

PYTHON = "/usr/bin/python3"
DEADLINE_S = 25  # the program gives up after this long without being cut off
PROGRAM = """
import errno, socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
start = time.monotonic()
n = 0
while time.monotonic() - start < DEADLINE:
    n += 1
    try:
        s.connect(("127.0.0.1", 9))
    except OSError as exc:
        if exc.errno == errno.EPERM:
            print("program: connect #" + str(n) + " failed with EPERM after "
                  + str(round(time.monotonic() - start, 1)) + " s: the network is cut")
            raise SystemExit(0)
        raise
    if n == 1 or n % 5 == 0:
        print("program: connect #" + str(n) + " ok", flush=True)
    time.sleep(0.05)
print("program: never cut off")
raise SystemExit(3)
"""


def why_skipped() -> str | None:
    if os.geteuid() != 0:
        return "not running as root (the shim needs seccomp user notification and pidfd_getfd)"
    avail = Path("/proc/sys/kernel/seccomp/actions_avail")
    if not avail.exists() or "user_notif" not in avail.read_text():
        return "this kernel offers no seccomp user notification"
    if not os.access(PYTHON, os.X_OK):
        return f"{PYTHON} is missing"
    return None


def tail(kind: str, since: str, identity: str) -> list[dict]:
    out = subprocess.run(["trustctl", "tail", kind, "--since", since, "--timeout", "10"],
                         capture_output=True, text=True, timeout=60)
    rows = []
    for line in out.stdout.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        ident = rec.get("identity_id") or (rec.get("identity") or {}).get("id")
        if ident == identity:
            rows.append(rec)
    return rows


def main() -> int:
    reason = why_skipped()
    if reason:
        print(f"--- real-process scene skipped: {reason}")
        return 0
    cgroup2 = any(" cgroup2 " in line for line in Path("/proc/self/mounts").read_text().splitlines())
    identity = f"demo-shim-{uuid.uuid4().hex[:6]}"
    since = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    work = Path(tempfile.mkdtemp(prefix="forgeone-demo-", dir="/tmp"))
    prog = work / "connector.py"
    prog.write_text(PROGRAM.replace("DEADLINE", str(DEADLINE_S)))
    print(f"--- a real process: trustctl shim --identity {identity} -- python3 {prog}")
    print(f"    ({identity} is not allowed to connect; every connect costs trust until the engine"
          f" quarantines it with network isolation{'' if cgroup2 else '; no cgroup v2: signals for freezes'})")
    cmd = ["trustctl", "shim", "-q", "--identity", identity, "--", PYTHON, "-I", "-S", str(prog)]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=DEADLINE_S + 15)
    except subprocess.TimeoutExpired:
        print("run: the shimmed program did not finish in time", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(out.stdout.rstrip())
    if out.returncode != 0:
        print(f"run: the shimmed program exited {out.returncode}: {out.stderr[-600:]}", file=sys.stderr)
        return 1
    deadline = time.monotonic() + 20
    quarantine, actions = [], []
    while time.monotonic() < deadline and not (quarantine and actions):
        quarantine = quarantine or tail("quarantine", since, identity)
        actions = tail("enforcement", since, identity)
    for q in quarantine[:1]:
        print(f"--- its quarantine command (trustctl tail quarantine): {q['process_id']}, isolation "
              f"{q['isolation_level']}, reason: {q['reason']}")
    print("--- its enforcement actions (trustctl tail enforcement):")
    for a in actions:
        print(json.dumps({k: a[k] for k in ("action", "process_id", "syscall", "mechanism", "delay_ms",
                                            "reason")}))
    return 0 if actions else 1


if __name__ == "__main__":
    sys.exit(main())
