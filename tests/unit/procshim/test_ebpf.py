"""The eBPF observer's pure parts: actions, the program, records, rendering, the plan."""

from __future__ import annotations

import struct

import pytest

from streams.errors import ConfigError
from streams.procshim import ebpf
from streams.procshim.render import render
from streams.procshim.syscall_table import X86_64
from streams.procshim.trapset import plan_for_policy
from tests.conftest import make_policy


def record(nr: int, args=(0,) * 6, string: bytes | None = None, slen: int | None = None,
           pid: int = 100, tid: int = 101, t: int = 5) -> bytes:
    body = b"" if string is None else string
    n = len(body) if slen is None else slen
    return ebpf.HEADER.pack(t, (pid << 32) | tid, nr, n, *args) + body


def test_the_string_argument_comes_from_the_signatures():
    assert ebpf.string_argument("openat") == 1 and ebpf.string_argument("open") == 0
    assert ebpf.string_argument("newfstatat") == 1 and ebpf.string_argument("execve") == 0
    assert ebpf.string_argument("access") == 0 and ebpf.string_argument("getxattr") == 0
    assert ebpf.string_argument("close") is None and ebpf.string_argument("write") is None
    assert ebpf.string_argument("no_such_call") is None


def test_actions_skip_what_seccomp_traps_and_name_the_string_argument():
    acts = ebpf.actions(["execve", "execveat", "openat"])
    assert X86_64["execve"] not in acts and X86_64["openat"] not in acts
    assert acts[X86_64["close"]] == ebpf.REPORT
    assert acts[X86_64["newfstatat"]] == ebpf.REPORT_STR + 1
    assert acts[X86_64["open"]] == ebpf.REPORT_STR + 0
    assert len(acts) == len(X86_64) - 3 and max(acts) < ebpf.NR_MAX


def test_a_record_is_parsed_with_its_string_complete_or_cut():
    c = ebpf.parse_record(record(262, (0xFFFFFF9C, 0x1000, 0x2000, 0, 0, 0), b"/etc/passwd\0"))
    assert (c.tid, c.pid, c.nr, c.ktime_ns) == (101, 100, 262, 5)
    assert c.args[1] == 0x1000 and c.string == b"/etc/passwd" and c.complete
    cut = ebpf.parse_record(record(2, string=b"x" * ebpf.STRLEN))  # no NUL within STRLEN
    assert cut.string == b"x" * ebpf.STRLEN and not cut.complete
    failed = ebpf.parse_record(record(2, string=b"", slen=-14))  # -EFAULT: not resident yet
    assert failed.string is None and not failed.complete
    plain = ebpf.parse_record(record(3, (7, 0, 0, 0, 0, 0)))
    assert plain.string is None and plain.args[0] == 7


def test_observed_calls_render_like_trapped_ones_odd_strings_escaped():
    acts = ebpf.actions(["execve"])
    odd = b"/tmp/a b\n\"c\"\xff\0"
    c = ebpf.parse_record(record(262, (0xFFFFFF9C, 0x5000, 0x6000, 0x1000, 0, 0), odd))
    args = render("newfstatat", c.args, ebpf.memory_of(c, acts.get(262)))
    assert args == ["AT_FDCWD", '/tmp/a b\\n\\"c\\"\\377', "0x6000", "AT_EMPTY_PATH"]
    unread = ebpf.parse_record(record(262, (0xFFFFFF9C, 0x5000, 0x6000, 0, 0, 0), b"", slen=-14))
    assert render("newfstatat", unread.args, ebpf.memory_of(unread, acts.get(262)))[1] == "0x5000"
    c = ebpf.parse_record(record(257, (0xFFFFFF9C, 0x5000, 0o2000000, 0, 0, 0), b"/etc\0"))
    assert render("openat", c.args, ebpf.memory_of(c, acts.get(257))) == ["AT_FDCWD", "/etc", "O_RDONLY|O_CLOEXEC"]
    w = ebpf.parse_record(record(1, (1, 0x7000, 5, 0, 0, 0)))  # a buffer is not captured: its address
    assert render("write", w.args, ebpf.memory_of(w, acts.get(1))) == ["1", "0x7000", "5"]


def test_captured_memory_serves_only_the_string():
    m = ebpf.CapturedMemory(0x1000, b"abc", True)
    assert m.read(0x1000, 256) == b"abc\0" and m.read(0x1001, 2) == b"bc"
    assert m.read(0xFFF, 4) == b"" and m.read(0x2000, 4) == b""
    assert ebpf.CapturedMemory(0x1000, None, False).read(0x1000, 8) == b""


def _insns(code: bytes):
    return [struct.unpack_from("<BBhi", code, i) for i in range(0, len(code), 8)]


def test_the_program_embeds_the_cgroup_and_maps_and_every_jump_lands_inside():
    code = ebpf.program(0x1122334455, 11, 12, 13)
    assert len(code) % 8 == 0
    ins = _insns(code)
    lds = [(i, ins[i], ins[i + 1]) for i in range(len(ins)) if ins[i][0] == 0x18]
    cg = [(a[3] & 0xFFFFFFFF) | (b[3] << 32) for _, a, b in lds if a[1] >> 4 == 0]
    assert cg == [0x1122334455]
    assert sorted(a[3] for _, a, _ in lds if a[1] >> 4 == 1) == [11, 12, 13]  # pseudo map fds
    for i, (op, _regs, off, _imm) in enumerate(ins):
        if op & 0x07 == 0x05 and op not in (0x85, 0x95):  # BPF_JMP class, not call/exit
            assert 0 <= i + 1 + off < len(ins), (i, op, off)
    assert ins[-1][0] == 0x05 or any(op == 0x95 for op, *_ in ins)


def test_assemble_resolves_labels_forwards_and_backwards():
    code = ebpf.assemble([ebpf.Jump(0x05, "end"), ":top", ebpf._i(0xB7, 0, imm=1),
                          ebpf.Jump(0x05, "top"), ":end", ebpf._i(0x95)])
    offs = [off for _op, _r, off, _imm in _insns(code)]
    assert offs == [2, 0, -2, 0]


def test_with_an_observer_a_catch_all_keeps_only_the_named_syscalls_trapped():
    plan = plan_for_policy(make_policy({"*": {}, "openat": {}, "connect": {"isolation_level": "network"}},
                                       default_action="allow"), gate=["mount"])
    assert plan.trap_all
    seen = plan.with_observer()
    assert seen.observed and not seen.trap_all
    assert {"openat", "connect", "socket", "mount", "execve", "execveat"} <= seen.syscalls  # network class kept
    assert "newfstatat" not in seen.syscalls and "getdents64" not in seen.syscalls
    assert seen.gated == {"mount"} and seen.filter_spec() != "all"
    assert "observer: every other x86-64 syscall" in seen.describe()
    named = plan_for_policy(make_policy({"openat": {}}, default_action="allow"))
    assert named.with_observer() is named  # nothing to observe: the policy names what it decides
    deny = plan_for_policy(make_policy({"read": {}})).with_observer()
    assert deny.syscalls == {"read", "execve", "execveat"}


def test_start_for_says_why_it_stays_with_seccomp():
    plan = plan_for_policy(make_policy({"*": {}}, default_action="allow"))
    same, obs, said = ebpf.start_for("seccomp", plan, "/nonexistent")
    assert same is plan and obs is None and "--observer seccomp" in said
    same, obs, said = ebpf.start_for("auto", plan, None)
    assert same is plan and obs is None and "no cgroup v2 group" in said
    with pytest.raises(ConfigError, match="--observer ebpf: no cgroup v2"):
        ebpf.start_for("ebpf", plan, None)
    with pytest.raises(ConfigError, match="`bpftrace`"):
        ebpf.start_for("bpftrace", plan, None)
    named = plan_for_policy(make_policy({"openat": {}}, default_action="allow"))
    assert ebpf.start_for("ebpf", named, None) == (named, None, None)


def test_kernel_times_become_rfc3339_utc():
    assert ebpf.timestamp(1_500_000, 1_700_000_000_000_000_000) == "2023-11-14T22:13:20.001500Z"
