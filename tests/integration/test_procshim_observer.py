"""The eBPF observer on a real process: every syscall of `ls /etc` under a catch-all policy.

Seccomp keeps trapping execve/execveat and the policy's named key (`openat`); the
observer reports the rest from the kernel's ring buffer.  Needs root (bpf(2),
the raw tracepoint, seccomp notify, cgroup v2); skipped otherwise.
"""

from __future__ import annotations

import os
import subprocess
from collections import Counter

import pytest

from streams.procshim import ebpf
from streams.procshim.workload import CgroupWorkload
from tests.integration.pipeline import TRUSTCTL, Pipeline
from tests.integration.test_procshim import read_all

pytestmark = [pytest.mark.integration]

POLICY = """
version: observer-it-1
default_action: allow
policies:
  "*": {}
  openat:
    arg_constraints: {1: "(?!.*forbidden).*"}
"""


def _observer_or_skip() -> None:
    if os.geteuid() != 0:
        pytest.skip("the eBPF observer needs root (bpf, raw tracepoints, seccomp notify, cgroups)")
    group = CgroupWorkload.create(f"forgeone-observer-probe-{os.getpid()}")
    if group is None:
        pytest.skip("no writable cgroup v2 group here")
    try:
        ebpf.EbpfObserver(str(group.path), ["execve"]).close()
    except OSError as exc:
        pytest.skip(f"the kernel refuses the eBPF observer: {exc}")
    finally:
        group.close()


def test_the_observer_reports_the_untrapped_calls_once_with_the_right_identity(stack, tmp_path):
    _observer_or_skip()
    p = Pipeline(stack, "observer", tmp_path)
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    try:
        r = subprocess.run([TRUSTCTL, "shim", "--identity", "it-observer", "--observer", "ebpf",
                            "--policy", str(policy), "--", "ls", "/etc"],
                           env=p.env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "observer: ebpf" in r.stderr and "seccomp now traps only execve, execveat, openat" in r.stderr
        assert " 0 lost" in r.stderr, r.stderr
        events = [e for b in read_all(p, "events", "SyscallEventBatch") for e in b["events"]]
    finally:
        p.cleanup()
    assert "passwd" in r.stdout
    names = Counter(e["syscall"] for e in events)
    # calls no seccomp filter trapped arrived, from the observer
    assert names["getdents64"] >= 2 and names["close"] >= 3 and names["mmap"] >= 3, names
    assert names["fstat"] + names["newfstatat"] + names["statx"] >= 1, names
    assert names["exit_group"] == 1 and names["execve"] == 1, names
    # the launcher's last calls (closing its sync pipe) are not reported: nothing before the exec
    exec_at = next(e["timestamp"] for e in events if e["syscall"] == "execve")
    assert min(e["timestamp"] for e in events) == exec_at
    ids = {e["identity"]["id"] for e in events}
    pids = {e["identity"]["process_id"] for e in events}
    assert ids == {"it-observer"} and len(pids) == 1 and next(iter(pids)).startswith("ls-"), (ids, pids)
    # openat is trapped (rendered from /proc/pid/mem): its path is there, once per call
    opens = [e["args"] for e in events if e["syscall"] == "openat"]
    assert ["AT_FDCWD", "/etc", "O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_DIRECTORY"] in opens, opens
    # an observed path came from the kernel's capture (ld.so's access/stat calls are observed)
    observed_paths = [e["args"] for e in events if e["syscall"] in ("access", "newfstatat", "statx")]
    assert any(a[0].startswith("/") or a[1].startswith("/") for a in observed_paths), observed_paths
    # nothing reported twice: event ids unique, and no (syscall, args, timestamp) repeats
    assert len({e["event_id"] for e in events}) == len(events)
    seen = Counter((e["syscall"], tuple(e["args"]), e["timestamp"]) for e in events)
    assert max(seen.values()) == 1, seen.most_common(3)
