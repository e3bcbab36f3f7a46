"""Fidelity against strace: the linux-strace case's commands under the shim and under `strace -f`.

Both see the same commands with the same environment; the shim traps
everything (the case's policy: default deny and a `*` key; `--observer seccomp`, the exact path).  Each call is
reduced to (syscall, args) with addresses masked; the agreement is the size
of the multisets' intersection over the larger one.  Arguments the kernel
fills in (a read buffer, a stat result) do not exist when the shim sees the
call, so the entry-args figure masks those positions on both sides; the
strict figure keeps them.  Target: >= 99% on entry arguments, for both
observers (`--observer seccomp`, and `--observer ebpf` where the kernel loads it:
it renders from what the kernel captured at entry, streams/procshim/ebpf.py).

The decisions must agree too: each list is decided under the case's policy by
the pure engine (evaluate), as the shim's identity `tool-<program>` at the
policy's baseline trust (fixed, so trust evolution cannot differ between the
lists); the multisets of (syscall, allowed, action, reason code) agree >= 99%.
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

from streams.events import context_from_record
from streams.policy.evaluate import evaluate
from streams.policy.loader import load_policy_file
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


Call = tuple[str, list[str], str]  # syscall, args, identity


def strace_calls(tmp: Path, env: dict) -> list[Call]:
    calls = []
    for n, cmd in enumerate(COMMANDS):
        identity = f"tool-{cmd[0]}"  # the shim's default: the whole tree is the program's
        prefix = tmp / f"st{n}"
        subprocess.run(["strace", "-f", "-ff", "-qq", "-s", "64", "-o", str(prefix), *cmd], env=env,
                       capture_output=True, timeout=120)
        for f in sorted(tmp.glob(f"st{n}.*")):
            for line in f.read_text(errors="replace").splitlines():
                m = LINE.match(line)
                if m:
                    calls.append((m.group(1), split_args(m.group(2)), identity))
                elif line.startswith(("exit_group(", "exit(")):
                    name, rest = line.split("(", 1)
                    calls.append((name, split_args(rest.rsplit(")", 1)[0]), identity))
    return calls


def shim_calls(p: Pipeline, env: dict, observer: str) -> list[Call]:
    said = {}
    for cmd in COMMANDS:
        # seccomp renders every call from the caller's memory; the eBPF observer (the default
        # for this catch-all policy where it loads) renders from what the kernel captured
        r = subprocess.run([TRUSTCTL, "shim", "-q", "--observer", observer, "--policy", str(CASE / "policy.yaml"),
                            "--", *cmd], env=env, capture_output=True, text=True, timeout=120)
        said[f"tool-{cmd[0]}"] = f"exit {r.returncode}: {r.stderr[-800:]}"
        assert "lost" not in r.stderr, r.stderr
    events = read_all(p, "events", "SyscallEventBatch")
    calls = [(e["syscall"], list(e["args"]), e["identity"]["id"]) for b in events for e in b["events"]]
    seen = Counter(c[2] for c in calls)
    for identity, text in said.items():
        assert seen[identity] > 0, f"no events of {identity} on the topic; the shim said {text}"
    return calls


def key(call: Call, entry_only: bool) -> tuple:
    name, args, _ = call
    outs = output_positions(name) if entry_only else frozenset()
    return (name, tuple("OUT" if i in outs else ADDR.sub("ADDR", a) for i, a in enumerate(args)))


def agreement(a, b, entry_only: bool) -> tuple[float, Counter, Counter]:
    return overlap(Counter(key(c, entry_only) for c in a), Counter(key(c, entry_only) for c in b))


def overlap(ca: Counter, cb: Counter) -> tuple[float, Counter, Counter]:
    common = sum((ca & cb).values())
    return common / max(sum(ca.values()), sum(cb.values())), ca - cb, cb - ca


def by_syscall(diff: Counter) -> Counter:
    out: Counter = Counter()
    for k, n in diff.items():
        out[k[0]] += n
    return out


def decisions(calls: list[Call]) -> Counter:
    """(syscall, allowed, action, reason code) of each call under the case's policy."""
    cp = load_policy_file(CASE / "policy.yaml")
    now = "2026-11-28T12:00:00Z"
    out: Counter = Counter()
    for n, (name, args, identity) in enumerate(calls):
        ctx = context_from_record({"event_id": f"e{n}", "syscall": name, "args": args, "timestamp": now,
                                   "identity": {"id": identity, "process_id": f"{identity}-1"}})
        r = evaluate(cp, ctx, cp.baseline, None, now)
        out[(name, r.allowed, r.action.value, None if r.reason_code is None else r.reason_code.value)] += 1
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
    dec_shim = decisions(shim)
    decided, d_shim, d_strace = overlap(dec_shim, decisions(strace))
    mix: Counter = Counter()
    for (_name, *verdict), n in dec_shim.items():
        mix[tuple(verdict)] += n
    report = (f"\n{observer}: shim {len(shim)} calls, strace {len(strace)}; agreement strict {strict:.4f}, "
              f"entry args {entry:.4f}, decisions {decided:.4f}\ndecision mix (shim): {dict(mix)}\n"
              f"differing calls by syscall: {by_syscall(only_shim).most_common(12)}\n"
              f"only shim: {only_shim.most_common(8)}\nonly strace: {only_strace.most_common(8)}\n"
              f"decisions only shim: {d_shim.most_common(8)}\ndecisions only strace: {d_strace.most_common(8)}")
    print(report, file=sys.stderr)
    assert len(shim) > 1000
    assert entry >= 0.99, report
    assert decided >= 0.99, report
    assert len(mix) > 1, report  # the policy decides these calls differently, not all alike
