"""Fidelity against strace: the linux-strace case's commands under the shim and under `strace -f`.

Both see the same commands with the same environment; the shim traps
everything (the case's policy: default deny and a `*` key; `--observer seccomp`, the exact path).  Each call is
reduced to (syscall, args) with addresses masked; the agreement is the size
of the multisets' intersection over the larger one.  Arguments the kernel
fills in (a read buffer, a stat result) do not exist when the shim sees the
call, so the entry-args figure masks those positions on both sides; the
strict figure keeps them.  Target: >= 99% on entry arguments.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from streams.procshim.render import output_positions
from tests.integration.pipeline import TRUSTCTL, Pipeline
from tests.integration.test_procshim import read_all
from tests.integration.test_procshim_observer import _observer_or_skip

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("strace") is None, reason="needs root and strace"),
]

CASE = Path(__file__).resolve().parents[1] / "cases" / "linux-strace"
COMMANDS = [
    ["ls", "-la", "/etc"],
    ["sh", "-c", "cat /etc/passwd | grep root; id; uname -a; ls /root"],
    ["curl", "-s", "-m", "2", "http://127.0.0.1:1/"],
]
ADDR = re.compile(r"0x[0-9a-f]+")
LINE = re.compile(r"^(\w+)\((.*)\)\s+=\s+.*$")


def split_args(text: str) -> list[str]:
    """Top-level comma split of strace's argument text; top-level strings unquoted."""
    out, depth, cur, quoted, i = [], 0, [], False, 0
    while i < len(text):
        c = text[i]
        if quoted:
            cur.append(c)
            if c == "\\":
                cur.append(text[i + 1])
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
            cur.append(c)
        elif c in "{[(":
            depth += 1
            cur.append(c)
        elif c in "}])":
            depth -= 1
            cur.append(c)
        elif c == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    if cur or out:
        out.append("".join(cur).strip())
    return [_unquote(a) for a in out]


def _unquote(arg: str) -> str:
    m = re.fullmatch(r'"(.*)"(\.\.\.)?', arg, re.S)
    return m.group(1) if m else arg


def strace_calls(tmp: Path, env: dict) -> list[tuple[str, list[str]]]:
    calls = []
    for n, cmd in enumerate(COMMANDS):
        prefix = tmp / f"st{n}"
        subprocess.run(["strace", "-f", "-ff", "-qq", "-s", "64", "-o", str(prefix), *cmd], env=env,
                       capture_output=True, timeout=120)
        for f in sorted(tmp.glob(f"st{n}.*")):
            for line in f.read_text(errors="replace").splitlines():
                m = LINE.match(line)
                if m:
                    calls.append((m.group(1), split_args(m.group(2))))
                elif line.startswith(("exit_group(", "exit(")):
                    name, rest = line.split("(", 1)
                    calls.append((name, split_args(rest.rsplit(")", 1)[0])))
    return calls


def shim_calls(p: Pipeline, env: dict, observer: str) -> list[tuple[str, list[str]]]:
    for cmd in COMMANDS:
        # seccomp renders every call from the caller's memory; the eBPF observer (the default
        # for this catch-all policy where it loads) renders from what the kernel captured
        r = subprocess.run([TRUSTCTL, "shim", "-q", "--observer", observer, "--policy", str(CASE / "policy.yaml"),
                            "--", *cmd], env=env, capture_output=True, text=True, timeout=120)
        assert "lost" not in r.stderr, r.stderr
    events = read_all(p, "events", "SyscallEventBatch")
    return [(e["syscall"], list(e["args"])) for b in events for e in b["events"]]


def key(call: tuple[str, list[str]], entry_only: bool) -> tuple:
    name, args = call
    outs = output_positions(name) if entry_only else frozenset()
    return (name, tuple("OUT" if i in outs else ADDR.sub("ADDR", a) for i, a in enumerate(args)))


def agreement(a, b, entry_only: bool) -> tuple[float, Counter, Counter]:
    ca, cb = Counter(key(c, entry_only) for c in a), Counter(key(c, entry_only) for c in b)
    common = sum((ca & cb).values())
    return common / max(sum(ca.values()), sum(cb.values())), ca - cb, cb - ca


def by_syscall(diff: Counter) -> Counter:
    out: Counter = Counter()
    for (name, _args), n in diff.items():
        out[name] += n
    return out


@pytest.mark.parametrize("observer", ["seccomp", "ebpf"])
def test_shim_renders_what_strace_prints(stack, tmp_path, observer):
    if observer == "ebpf":
        _observer_or_skip()
    p = Pipeline(stack, "fidelity", tmp_path)
    env = dict(p.env)
    try:
        shim = shim_calls(p, env, observer)
        strace = strace_calls(tmp_path, env)
    finally:
        p.cleanup()
    strict, _, _ = agreement(shim, strace, entry_only=False)
    entry, only_shim, only_strace = agreement(shim, strace, entry_only=True)
    report = (f"\n{observer}: shim {len(shim)} calls, strace {len(strace)}; agreement strict {strict:.4f}, "
              f"entry args {entry:.4f}\ndiffering calls by syscall: {by_syscall(only_shim).most_common(12)}\n"
              f"only shim: {only_shim.most_common(8)}\nonly strace: {only_strace.most_common(8)}")
    print(report, file=sys.stderr)
    assert len(shim) > 1000
    assert entry >= 0.99, report
