"""The eBPF observer's pure parts: capture plans, the program, records, rendering, the trap plan."""

from __future__ import annotations

import struct

import pytest

from streams.errors import ConfigError
from streams.procshim import ebpf
from streams.procshim.render import render
from streams.procshim.syscall_table import X86_64
from streams.procshim.trapset import plan_for_policy
from tests.conftest import make_policy


def record(nr: int, args=(0,) * 6, captures=(), pid: int = 100, tid: int = 101, t: int = 5) -> bytes:
    """A ring record; captures: (Capture, bytes read or -errno as an int)."""
    body = b""
    for c, got in captures:
        if isinstance(got, int):
            body += ebpf.CAPTURE.pack(c.word(), got)
        else:
            body += ebpf.CAPTURE.pack(c.word(), len(got)) + got
    return ebpf.HEADER.pack(t, (pid << 32) | tid, nr, 0, *args) + body


def plan(name: str):
    return ebpf.plan_of(name)


def test_the_capture_plan_comes_from_the_signatures():
    S, F, A = ebpf.STR, ebpf.FIXED, ebpf.FROM_ARG
    assert plan("openat") == (ebpf.Capture(1, S, ebpf.STRLEN),) and plan("open")[0].arg == 0
    assert plan("newfstatat") == (ebpf.Capture(1, S, ebpf.STRLEN),)
    assert plan("getxattr") == (ebpf.Capture(0, S, ebpf.STRLEN), ebpf.Capture(1, S, 66))  # the name: -s 64
    assert [c.arg for c in plan("renameat2")] == [1, 3] and [c.arg for c in plan("symlinkat")] == [0, 2]
    assert plan("rt_sigaction") == (ebpf.Capture(1, F, 32),)
    assert plan("rt_sigprocmask") == (ebpf.Capture(1, F, 8),)
    assert plan("connect") == (ebpf.Capture(1, A, 128, 2),)
    assert plan("sendto") == (ebpf.Capture(1, A, 64, 2), ebpf.Capture(4, A, 128, 5))
    assert plan("write") == (ebpf.Capture(1, A, 64, 2),)
    assert plan("poll") == (ebpf.Capture(0, A, ebpf.CAP, 1, 3),)  # 8-byte pollfds
    assert plan("setsockopt") == (ebpf.Capture(3, F, 4),)
    assert plan("close") == () and plan("read") == () and plan("no_such_call") == ()
    # every signature's memory reads fit the record
    for name in ebpf.X86_64:
        assert len(plan(name)) <= ebpf.NCAP and all(c.size <= ebpf.CAP for c in plan(name)), name


def test_actions_skip_what_seccomp_traps_and_carry_each_plan():
    acts = ebpf.actions(["execve", "execveat", "openat"])
    assert X86_64["execve"] not in acts and X86_64["openat"] not in acts
    assert acts[X86_64["close"]] == ()
    assert acts[X86_64["newfstatat"]] == plan("newfstatat")
    assert len(acts) == len(X86_64) - 3 and max(acts) < ebpf.NR_MAX


def test_a_plan_value_is_what_the_program_reads():
    raw = ebpf.plan_value(plan("sendto"))
    assert len(raw) == ebpf.PLAN.size == 8 + 8 * ebpf.NCAP
    report, *fields = ebpf.PLAN.unpack(raw)
    assert report == 1 and fields[:10] == [1, ebpf.FROM_ARG, 2, 0, 64, 4, ebpf.FROM_ARG, 5, 0, 128]
    assert fields[10:] == [0] * 5  # no third capture: kind 0 ends the record
    assert ebpf.PLAN.unpack(ebpf.plan_value(()))[0] == 1  # reported, nothing read


def test_a_record_is_parsed_with_its_captures_complete_cut_or_failed():
    p = plan("openat")[0]
    c = ebpf.parse_record(record(257, (0xFFFFFF9C, 0x1000, 0x2000, 0, 0, 0), [(p, b"/etc/passwd\0")]))
    assert (c.tid, c.pid, c.nr, c.ktime_ns) == (101, 100, 257, 5)
    assert c.captures == (ebpf.Captured(0x1000, b"/etc/passwd", True, True),) and c.failed == 0
    # the helper NUL-terminates a cut string: all STRLEN bytes read means maybe more
    cut = ebpf.parse_record(record(257, (0, 0x1000, 0, 0, 0, 0), [(p, b"x" * (ebpf.STRLEN - 1) + b"\0")]))
    assert cut.captures[0].data == b"x" * (ebpf.STRLEN - 1) and not cut.captures[0].complete
    failed = ebpf.parse_record(record(257, (0, 0x1000, 0, 0, 0, 0), [(p, -14)]))  # -EFAULT
    assert failed.captures == () and failed.failed == 1
    plain = ebpf.parse_record(record(3, (7, 0, 0, 0, 0, 0)))
    assert plain.captures == () and plain.args[0] == 7
    a, b = plan("linkat")
    two = ebpf.parse_record(record(265, (0xFFFFFF9C, 0x1000, 0xFFFFFF9C, 0x3000, 0, 0),
                                   [(a, -14), (b, b"/tmp/new\0")]))
    assert two.captures == (ebpf.Captured(0x3000, b"/tmp/new", True, True),) and two.failed == 1


def _render(name: str, args: tuple, captures) -> list[str]:
    c = ebpf.parse_record(record(X86_64[name], args, captures))
    return render(name, c.args, ebpf.memory_of(c, ebpf.actions([]).get(c.nr)))


def test_observed_calls_render_like_trapped_ones_odd_strings_escaped():
    odd = b"/tmp/a b\n\"c\"\xff\0"
    p = plan("newfstatat")
    args = _render("newfstatat", (0xFFFFFF9C, 0x5000, 0x6000, 0x1000, 0, 0), [(p[0], odd)])
    assert args == ["AT_FDCWD", '/tmp/a b\\n\\"c\\"\\377', "0x6000", "AT_EMPTY_PATH"]
    assert _render("newfstatat", (0xFFFFFF9C, 0x5000, 0x6000, 0, 0, 0), [(p[0], -14)])[1] == "0x5000"
    assert _render("openat", (0xFFFFFF9C, 0x5000, 0o2000000, 0, 0, 0), [(plan("openat")[0], b"/etc\0")]) \
        == ["AT_FDCWD", "/etc", "O_RDONLY|O_CLOEXEC"]
    assert _render("write", (1, 0x7000, 5, 0, 0, 0), [(plan("write")[0], -14)]) == ["1", "0x7000", "5"]


def test_structures_second_paths_and_buffers_render_from_the_captures():
    sa = struct.pack("<QQQQ", 1, 0x04000000 | 0x10000000, 0x7F00, 1 << 12)  # SIG_IGN, [PIPE]
    assert _render("rt_sigaction", (13, 0x100, 0, 8, 0, 0), [(plan("rt_sigaction")[0], sa)]) == \
        ["SIGPIPE", "{sa_handler=SIG_IGN, sa_mask=[PIPE], sa_flags=SA_RESTORER|SA_RESTART, "
                    "sa_restorer=0x7f00}", "NULL", "8"]
    assert _render("rt_sigprocmask", (2, 0x100, 0x200, 8, 0, 0), [(plan("rt_sigprocmask")[0], b"\0" * 8)]) == \
        ["SIG_SETMASK", "[]", "0x200", "8"]
    a, b = plan("getxattr")
    assert _render("getxattr", (0x100, 0x200, 0, 0, 0, 0), [(a, b"/etc\0"), (b, b"system.posix_acl_access\0")]) \
        == ["/etc", "system.posix_acl_access", "NULL", "0"]
    a, b = plan("renameat")
    assert _render("renameat", (0xFFFFFF9C, 0x100, 5, 0x200, 0, 0), [(a, b"old\0"), (b, b"new\0")]) == \
        ["AT_FDCWD", "old", "5", "new"]
    sun = struct.pack("<H", 1) + b"/run/x\0"
    assert _render("connect", (3, 0x100, len(sun), 0, 0, 0), [(plan("connect")[0], sun)]) == \
        ["3", '{sa_family=AF_UNIX, sun_path="/run/x"}', str(len(sun))]
    assert _render("write", (1, 0x100, 6, 0, 0, 0), [(plan("write")[0], b"hello\n")]) == ["1", "hello\\n", "6"]
    pfd = struct.pack("<ihh", 3, 1, 0)
    assert _render("poll", (0x100, 1, 0, 0, 0, 0), [(plan("poll")[0], pfd)]) == \
        ["[{fd=3, events=POLLIN}]", "1", "0"]
    assert _render("setsockopt", (3, 1, 2, 0x100, 4, 0), [(plan("setsockopt")[0], struct.pack("<i", 1))])[3] == "[1]"


def test_captured_memory_serves_only_what_was_read():
    m = ebpf.CapturedMemory([ebpf.Captured(0x1000, b"abc", True, True), ebpf.Captured(0x2000, b"xy", False, True),
                             ebpf.Captured(0x3000, b"cut", True, False)])
    assert m.read(0x1000, 256) == b"abc\0" and m.read(0x1001, 2) == b"bc"
    assert m.read(0x2000, 8) == b"xy" and m.read(0x3000, 8) == b"cut"  # no NUL: a cut string
    assert m.read(0xFFF, 4) == b"" and m.read(0x4000, 4) == b""
    assert ebpf.CapturedMemory([]).read(0x1000, 8) == b""


def _insns(code: bytes):
    return [struct.unpack_from("<BBhi", code, i) for i in range(0, len(code), 8)]


def test_the_program_embeds_the_cgroup_and_maps_and_every_jump_lands_inside():
    code = ebpf.program(0x1122334455, 11, 12, 13, 14)
    assert len(code) % 8 == 0
    ins = _insns(code)
    lds = [(i, ins[i], ins[i + 1]) for i in range(len(ins)) if ins[i][0] == 0x18]
    cg = [(a[3] & 0xFFFFFFFF) | (b[3] << 32) for _, a, b in lds if a[1] >> 4 == 0]
    assert cg == [0x1122334455]
    assert sorted(a[3] for _, a, _ in lds if a[1] >> 4 == 1) == [11, 12, 13, 14]  # pseudo map fds
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
