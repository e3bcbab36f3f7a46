"""The eBPF observer: every syscall of the shim's cgroup, reported through a ring buffer.

A catch-all policy needs every syscall reported; trapping them all with
seccomp costs a round trip to Python per call.  The observer instead loads a
small BPF program on the `sys_enter` raw tracepoint that, in the kernel, keeps
only the calls of the workload's cgroup v2 group and only the syscall numbers
seccomp does not trap (those the seccomp path reports already: nothing is
reported twice), and writes one variable-length record per call into a BPF
ring buffer:

    u64 ktime (CLOCK_MONOTONIC ns) | u64 pid_tgid | u32 nr | u32 0 | u64 args[6]
    | captures: (u32 what | i32 bytes read or -errno | the bytes) ...

What the record captures is the syscall's *capture plan* (:func:`plan_of`),
derived from render.SIGNATURES so that render finds, at the argument's
address, what it reads from the caller's memory on the seccomp path: up to
NCAP captures of (argument index, kind, size), the kind a string
(`bpf_probe_read_user_str`: a path, an xattr name), a fixed-size structure
(a struct sigaction, a sigset, an rlimit, an int option) or a buffer whose
length is another argument, maybe scaled (a sockaddr and its length, the
first STRING_LIMIT bytes of a write, pollfd entries).  The record is built
in a per-CPU scratch map and copied with `bpf_ringbuf_output` at its actual
length (a stat of `/` is an 82-byte record).

A capture can come back -EFAULT when the page is not resident yet: strace
reads after the call, the observer at entry, and cannot fault pages in.
Such an argument is rendered as its address, as the shim does for unreadable
memory.  A record the ring buffer has no room for is counted in the kernel
(`lost`), never hidden.

The program is assembled here (no compiler, no bpftrace, no tracefs): the
design first used bpftrace 0.17, whose printf path (a perf buffer woken per
event, formatted in user space) made the 200k-stat workload 9x slower; a ring
buffer with adaptive wake-ups costs the tracee about two map lookups and a copy.

Needs Linux >= 5.8 (ring buffer), root or CAP_BPF + CAP_PERFMON.  The supervisor
consumes the ring in its own loop (the kernel buffer is the queue).
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from streams.clock import format_epoch_ns
from streams.procshim.render import SIGNATURES, STRING_LIMIT
from streams.procshim.syscall_table import X86_64

STRLEN = 256  # a path's bytes read, its NUL included
CAP = 256  # the most bytes one capture reads
NCAP = 3  # captures per call (mount: two paths and a type)
HEADER = struct.Struct("<QQII6Q")  # ktime, pid_tgid, nr, 0, args
CAPTURE = struct.Struct("<Ii")  # what (the plan's descriptor), bytes read or -errno
OFF_MASK = 1023  # record offsets stay below: HEADER + NCAP * (CAPTURE + CAP) = 864
SCRATCH = OFF_MASK + 1 + CAPTURE.size + CAP  # any bounded offset plus one capture fits
RING_BYTES = 64 << 20
NR_MAX = 512  # the plan map's size (x86-64 numbers are below 470)
assert HEADER.size + NCAP * (CAPTURE.size + CAP) <= OFF_MASK

# capture kinds
STR, FIXED, FROM_ARG = 1, 2, 3
PLAN = struct.Struct("<I4x" + "BBBBI" * NCAP)  # report, then NCAP (arg, kind, len arg, shift, size)


@dataclass(frozen=True, slots=True)
class Capture:
    """What to read at one argument: a string (size: the most bytes, the NUL included),
    `size` bytes, or the argument `len_arg` shifted left by `shift`, at most `size`."""

    arg: int
    kind: int
    size: int
    len_arg: int = 0
    shift: int = 0

    def word(self) -> int:
        """The descriptor's first word, as the record repeats it."""
        return self.arg | self.kind << 8 | self.len_arg << 16 | self.shift << 24


@dataclass(frozen=True, slots=True)
class Captured:
    """Bytes the kernel read at an address; a string without its NUL."""

    addr: int
    data: bytes
    is_string: bool
    complete: bool  # a string whose NUL was read (a buffer: always)


@dataclass(frozen=True, slots=True)
class ObservedCall:
    """One syscall the observer saw at entry."""

    ktime_ns: int
    tid: int
    pid: int  # the thread group
    nr: int
    args: tuple[int, int, int, int, int, int]
    captures: tuple[Captured, ...] = ()  # those read (a failed read is left out)
    failed: int = 0  # captures the kernel could not read (-EFAULT...)


_FIXED = {"sigaction": 32, "rlim": 16, "sigaltstack": 24}


def plan_of(name: str) -> tuple[Capture, ...]:
    """What the kernel reads for a call of `name`: render's memory reads at entry (pure)."""
    if name in ("open", "creat"):
        return (Capture(0, STR, STRLEN),)
    if name == "openat":
        return (Capture(1, STR, STRLEN),)
    out = []
    for i, kind in enumerate(SIGNATURES.get(name, ())):
        kind, _, ref = kind.partition(":")
        if kind == "path":
            out.append(Capture(i, STR, STRLEN))
        elif kind == "cstr":  # strace -s 64: one more byte tells a longer string
            out.append(Capture(i, STR, STRING_LIMIT + 2))
        elif kind in _FIXED:
            out.append(Capture(i, FIXED, _FIXED[kind]))
        elif kind in ("sigset", "optval"):
            out.append(Capture(i, FIXED, 8 if kind == "sigset" else 4))
        elif kind == "str":
            out.append(Capture(i, FROM_ARG, STRING_LIMIT, int(ref)))
        elif kind == "sockaddr":
            out.append(Capture(i, FROM_ARG, 128, int(ref)))
        elif kind == "poll":  # struct pollfd: 8 bytes
            out.append(Capture(i, FROM_ARG, CAP, int(ref), 3))
    return tuple(out[:NCAP])


def actions(skip: Iterable[str]) -> dict[int, tuple[Capture, ...]]:
    """syscall number -> its capture plan, for every syscall not in `skip` (pure)."""
    skipped = set(skip)
    return {nr: plan_of(name) for name, nr in X86_64.items() if name not in skipped and nr < NR_MAX}


def plan_value(plan: tuple[Capture, ...]) -> bytes:
    """The plan map's value: reported, and the captures (pure)."""
    fields: list[int] = []
    for k in range(NCAP):
        c = plan[k] if k < len(plan) else None
        fields += [0, 0, 0, 0, 0] if c is None else [c.arg, c.kind, c.len_arg, c.shift, c.size]
    return PLAN.pack(1, *fields)


def parse_record(buf: bytes | memoryview) -> ObservedCall:
    """A ring record -> ObservedCall (pure)."""
    ktime, pid_tgid, nr, _, *args = HEADER.unpack_from(buf)
    at, end = HEADER.size, len(buf)
    got, failed = [], 0
    while at + CAPTURE.size <= end:
        what, n = CAPTURE.unpack_from(buf, at)
        at += CAPTURE.size
        if n <= 0:
            failed += 1
            continue
        raw = bytes(buf[at:at + n])
        at += n
        size = _STR_SIZE.get((nr, what))
        if size is not None:  # a string: the helper NUL-terminates a cut one too (all `size` read)
            got.append(Captured(args[what & 0xFF], raw[:-1], True, n < size))
        else:
            got.append(Captured(args[what & 0xFF], raw, False, True))
    return ObservedCall(ktime, pid_tgid & 0xFFFFFFFF, pid_tgid >> 32, nr, tuple(args), tuple(got), failed)


# (nr, a string capture's descriptor word) -> its size: whether all of it was read
_STR_SIZE = {(nr, c.word()): c.size for name, nr in X86_64.items() for c in plan_of(name) if c.kind == STR}


class CapturedMemory:
    """render.Memory over what the kernel captured: any other read finds nothing
    (the process has moved on; /proc/<pid>/mem is never read for observed calls)."""

    __slots__ = ("regions",)

    def __init__(self, captures: Iterable[Captured]):
        self.regions = [(c.addr, c.data + b"\0" if c.is_string and c.complete else c.data)
                        for c in captures if c.addr]

    def read(self, addr: int, size: int) -> bytes:
        for base, data in self.regions:
            off = addr - base
            if 0 <= off < len(data):
                return data[off:off + size]
        return b""


# -- the program -----------------------------------------------------------------------
# struct bpf_insn: u8 code, u8 dst:4 src:4, s16 off, s32 imm.  A program is a list of
# instructions (bytes), labels (":name") and jumps to labels (Jump).


def _i(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return struct.pack("<BBhi", code, (src << 4) | dst, off, imm)


def _ld64(dst: int, value: int, src: int = 0) -> bytes:
    return _i(0x18, dst, src, 0, value & 0xFFFFFFFF) + _i(0, 0, 0, 0, (value >> 32) & 0xFFFFFFFF)


def _map(dst: int, fd: int) -> bytes:
    return _ld64(dst, fd, src=1)  # BPF_PSEUDO_MAP_FD


@dataclass(frozen=True, slots=True)
class Jump:
    code: int
    label: str
    dst: int = 0
    src: int = 0
    imm: int = 0


def assemble(items: list) -> bytes:
    """Resolve the labels of a program (pure)."""
    at, labels = 0, {}
    for it in items:
        if isinstance(it, str):
            labels[it.lstrip(":")] = at
        else:
            at += 1 if isinstance(it, Jump) else len(it) // 8
    code, at = [], 0
    for it in items:
        if isinstance(it, str):
            continue
        if isinstance(it, Jump):
            at += 1
            code.append(_i(it.code, it.dst, it.src, labels[it.label] - at, it.imm))
        else:
            at += len(it) // 8
            code.append(it)
    return b"".join(code)


MOV_X, MOV_K, ADD_K, ADD_X, AND_K, LSH_K, LSH_X = 0xBF, 0xB7, 0x07, 0x0F, 0x57, 0x67, 0x6F
LDX_DW, LDX_W, LDX_B, STX_DW, STX_W, ST_W = 0x79, 0x61, 0x71, 0x7B, 0x63, 0x62
JEQ_K, JNE_K, JGT_K, JGT_X, JNE_X, JSLT_K, JSLE_K, JA = 0x15, 0x55, 0x25, 0x2D, 0x5D, 0xC5, 0xD5, 0x05
CALL, EXIT, XADD_DW = 0x85, 0x95, 0xDB
H_LOOKUP, H_KTIME, H_PID_TGID, H_CGROUP_ID = 1, 5, 14, 80
H_READ_USER, H_READ_KERNEL, H_READ_USER_STR, H_RB_OUTPUT = 112, 113, 114, 130
# pt_regs offsets of the x86-64 syscall arguments: di, si, dx, r10, r8, r9
PT_REGS_ARGS = (112, 104, 96, 56, 72, 64)
PT_REGS_SIZE = 120  # r15 .. di
REGS = -8 - PT_REGS_SIZE  # the caller's pt_regs on the stack: [-128, -8)
ARGS = 24  # the args' offset in the record


def _capture(k: int) -> list:
    """Capture k of the plan (r8) into the record (r6) at offset r9; r9 moves past it."""
    d = 8 + 8 * k  # the descriptor in the plan value
    nxt = f"cap{k + 1}" if k + 1 < NCAP else "output"
    return [
        _i(LDX_B, 1, 8, d + 1), Jump(JEQ_K, "output", 1),   # r1 = kind; none: the record is whole
        _i(AND_K, 9, imm=OFF_MASK),                          # (bounds the offset for the verifier)
        _i(LDX_W, 2, 8, d), _i(MOV_X, 3, 6), _i(ADD_X, 3, 9), _i(STX_W, 3, 2, 0),  # what
        _i(AND_K, 2, imm=7), _i(LSH_K, 2, imm=3), _i(MOV_X, 3, 6), _i(ADD_X, 3, 2),
        _i(LDX_DW, 3, 3, ARGS),                              # r3 = the argument: the address
        _i(LDX_W, 7, 8, d + 4),                              # r7 = size
        Jump(JEQ_K, f"str{k}", 1, imm=STR),
        Jump(JEQ_K, f"size{k}", 1, imm=FIXED),
        _i(LDX_B, 2, 8, d + 2), _i(AND_K, 2, imm=7), _i(LSH_K, 2, imm=3),
        _i(MOV_X, 1, 6), _i(ADD_X, 1, 2), _i(LDX_DW, 1, 1, ARGS),  # r1 = the length argument
        _i(LDX_B, 2, 8, d + 3), _i(AND_K, 2, imm=7), _i(LSH_X, 1, 2),
        Jump(JGT_X, f"size{k}", 1, 7), _i(MOV_X, 7, 1),      # r7 = min(length << shift, size)
        f":size{k}",
        Jump(JGT_K, f"big{k}", 7, imm=CAP), Jump(JA, f"bytes{k}"), f":big{k}", _i(MOV_K, 7, imm=CAP),
        f":bytes{k}",
        _i(MOV_X, 1, 6), _i(ADD_X, 1, 9), _i(ADD_K, 1, imm=CAPTURE.size), _i(MOV_X, 2, 7),
        _i(CALL, imm=H_READ_USER),
        Jump(JSLT_K, f"status{k}", 0, imm=0), _i(MOV_X, 0, 7),  # read: its size
        Jump(JA, f"status{k}"),
        f":str{k}",
        Jump(JGT_K, f"sbig{k}", 7, imm=CAP), Jump(JA, f"sread{k}"), f":sbig{k}", _i(MOV_K, 7, imm=CAP),
        f":sread{k}",
        _i(MOV_X, 1, 6), _i(ADD_X, 1, 9), _i(ADD_K, 1, imm=CAPTURE.size), _i(MOV_X, 2, 7),
        _i(CALL, imm=H_READ_USER_STR),                       # bytes with the NUL, or -errno
        f":status{k}",
        _i(MOV_X, 1, 6), _i(ADD_X, 1, 9), _i(STX_W, 1, 0, 4),
        _i(ADD_K, 9, imm=CAPTURE.size),
        Jump(JSLE_K, nxt, 0, imm=0), _i(ADD_X, 9, 0),
    ] + ([f":{nxt}"] if k + 1 < NCAP else [])


def program(cgroup_id: int, action_fd: int, ring_fd: int, lost_fd: int, scratch_fd: int) -> bytes:
    """The raw-tracepoint program (pure).  ctx: u64[2] = {struct pt_regs *, syscall nr}.
    The record is built in the per-CPU scratch map and copied with bpf_ringbuf_output,
    its length the header plus the captures actually read."""
    p: list = [
        _i(MOV_X, 6, 1),                                   # r6 = ctx
        _i(CALL, imm=H_CGROUP_ID),
        _ld64(1, cgroup_id),
        Jump(JNE_X, "out", 0, 1),                          # another cgroup
        _i(LDX_DW, 7, 6, 8),                               # r7 = nr
        _i(STX_W, 10, 7, -4),
        _map(1, action_fd), _i(MOV_X, 2, 10), _i(ADD_K, 2, imm=-4),
        _i(CALL, imm=H_LOOKUP),
        Jump(JEQ_K, "out", 0),                             # nr out of the map
        _i(MOV_X, 8, 0),                                   # r8 = the plan
        _i(LDX_W, 1, 8, 0), Jump(JEQ_K, "out", 1, imm=0),  # seccomp reports it
        _i(MOV_X, 1, 10), _i(ADD_K, 1, imm=REGS), _i(MOV_K, 2, imm=PT_REGS_SIZE),
        _i(LDX_DW, 3, 6, 0), _i(CALL, imm=H_READ_KERNEL),  # pt_regs -> stack
        _i(ST_W, 10, off=-4, imm=0),
        _map(1, scratch_fd), _i(MOV_X, 2, 10), _i(ADD_K, 2, imm=-4),
        _i(CALL, imm=H_LOOKUP),
        Jump(JEQ_K, "out", 0),
        _i(MOV_X, 6, 0),                                   # r6 = the record
        _i(STX_W, 6, 7, 16), _i(ST_W, 6, off=20, imm=0),
        _i(CALL, imm=H_KTIME), _i(STX_DW, 6, 0, 0),
        _i(CALL, imm=H_PID_TGID), _i(STX_DW, 6, 0, 8),
    ]
    for k, reg_off in enumerate(PT_REGS_ARGS):
        p += [_i(LDX_DW, 1, 10, REGS + reg_off), _i(STX_DW, 6, 1, ARGS + 8 * k)]
    p += [_i(MOV_K, 9, imm=HEADER.size)]
    for k in range(NCAP):
        p += _capture(k)
    p += [
        ":output",
        _i(AND_K, 9, imm=OFF_MASK),
        _map(1, ring_fd), _i(MOV_X, 2, 6), _i(MOV_X, 3, 9), _i(MOV_K, 4, imm=0),
        _i(CALL, imm=H_RB_OUTPUT),
        Jump(JSLT_K, "lost", 0, imm=0),
        ":out",
        _i(MOV_K, 0, imm=0), _i(EXIT),
        ":lost",
        _i(ST_W, 10, off=-4, imm=0),
        _map(1, lost_fd), _i(MOV_X, 2, 10), _i(ADD_K, 2, imm=-4),
        _i(CALL, imm=H_LOOKUP),
        Jump(JEQ_K, "out", 0),
        _i(MOV_K, 1, imm=1), _i(XADD_DW, 0, 1, 0),
        Jump(JA, "out"),
    ]
    return assemble(p)


# -- the bpf(2) calls --------------------------------------------------------------------

SYS_BPF = 321
MAP_CREATE, MAP_LOOKUP, MAP_UPDATE, PROG_LOAD, RAW_TP_OPEN = 0, 1, 2, 5, 17
MAP_ARRAY, MAP_PERCPU_ARRAY, MAP_RINGBUF = 2, 6, 27
PROG_RAW_TRACEPOINT = 17
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _bpf(cmd: int, attr: bytes) -> int:
    buf = ctypes.create_string_buffer(attr, 128)
    r = _libc.syscall(ctypes.c_long(SYS_BPF), ctypes.c_long(cmd), buf, ctypes.c_uint(128))
    if r < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"bpf({cmd}): {os.strerror(err)}")
    return r


def _map_create(kind: int, key: int, value: int, entries: int) -> int:
    return _bpf(MAP_CREATE, struct.pack("<IIIII", kind, key, value, entries, 0))


def _map_update(fd: int, key: bytes, value: bytes) -> None:
    k, v = ctypes.create_string_buffer(key), ctypes.create_string_buffer(value)
    _bpf(MAP_UPDATE, struct.pack("<IIQQQ", fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0))


def _map_lookup(fd: int, key: bytes, size: int) -> bytes:
    k, v = ctypes.create_string_buffer(key), ctypes.create_string_buffer(size)
    _bpf(MAP_LOOKUP, struct.pack("<IIQQQ", fd, 0, ctypes.addressof(k), ctypes.addressof(v), 0))
    return v.raw[:size]


def _prog_load(code: bytes) -> int:
    insns = ctypes.create_string_buffer(code, len(code))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(1 << 16)
    attr = struct.pack("<IIQQIIQ", PROG_RAW_TRACEPOINT, len(code) // 8, ctypes.addressof(insns),
                       ctypes.addressof(lic), 0, 0, 0)
    try:
        return _bpf(PROG_LOAD, attr)
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EINVAL):
            raise
    attr = struct.pack("<IIQQIIQ", PROG_RAW_TRACEPOINT, len(code) // 8, ctypes.addressof(insns),
                       ctypes.addressof(lic), 1, len(log), ctypes.addressof(log))
    try:
        return _bpf(PROG_LOAD, attr)
    except OSError as exc:
        tail = log.value.decode(errors="replace").strip().splitlines()[-6:]
        raise OSError(exc.errno, f"the kernel refused the observer program: {'; '.join(tail)}") from exc


def _raw_tp_open(name: bytes, prog_fd: int) -> int:
    n = ctypes.create_string_buffer(name)
    return _bpf(RAW_TP_OPEN, struct.pack("<QI", ctypes.addressof(n), prog_fd))


# -- the consumer -------------------------------------------------------------------------

BUSY, DISCARD = 1 << 31, 1 << 30


class Ring:
    """User-space side of a BPF ring buffer map (consumer page rw, producer + data ro,
    the data mapped twice so a record wrapping the end reads contiguously)."""

    def __init__(self, fd: int, size: int):
        self.fd, self.size, self.mask = fd, size, size - 1
        page = mmap.PAGESIZE
        self.cons = mmap.mmap(fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self.prod = mmap.mmap(fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self.view = memoryview(self.prod)
        self.page = page

    def pending(self) -> bool:
        return struct.unpack_from("<Q", self.prod, 0)[0] != struct.unpack_from("<Q", self.cons, 0)[0]

    def take(self, limit: int) -> Iterator[ObservedCall]:
        """Up to `limit` committed records, oldest first."""
        cons = struct.unpack_from("<Q", self.cons, 0)[0]
        prod = struct.unpack_from("<Q", self.prod, 0)[0]
        view, base, mask = self.view, self.page, self.mask
        n = 0
        while cons < prod and n < limit:
            at = base + (cons & mask)
            hdr = struct.unpack_from("<I", view, at)[0]
            if hdr & BUSY:
                break
            length = hdr & ~(BUSY | DISCARD)
            if not hdr & DISCARD:
                yield parse_record(view[at + 8:at + 8 + length])
                n += 1
            cons += (length + 8 + 7) & ~7
            struct.pack_into("<Q", self.cons, 0, cons)

    def close(self) -> None:
        self.view.release()
        self.prod.close()
        self.cons.close()


class EbpfObserver:
    """The loaded program, its maps and ring; `close()` detaches it."""

    def __init__(self, cgroup_path: str, skip: Iterable[str], ring_bytes: int = RING_BYTES):
        self.fds: list[int] = []
        self.ring: Ring | None = None
        self.actions = actions(skip)
        try:
            cgroup_id = os.stat(cgroup_path).st_ino
            self.action_fd = self._keep(_map_create(MAP_ARRAY, 4, PLAN.size, NR_MAX))
            for nr, plan in self.actions.items():
                _map_update(self.action_fd, struct.pack("<I", nr), plan_value(plan))
            self.lost_fd = self._keep(_map_create(MAP_ARRAY, 4, 8, 1))
            self.ring_fd = self._keep(_map_create(MAP_RINGBUF, 0, 0, ring_bytes))
            scratch = self._keep(_map_create(MAP_PERCPU_ARRAY, 4, SCRATCH, 1))
            prog = self._keep(_prog_load(program(cgroup_id, self.action_fd, self.ring_fd, self.lost_fd,
                                                 scratch)))
            self.ring = Ring(self.ring_fd, ring_bytes)
            self._keep(_raw_tp_open(b"sys_enter", prog))  # attached from here on: no unobserved window
        except BaseException:
            self.close()
            raise
        self.seen = 0

    def _keep(self, fd: int) -> int:
        self.fds.append(fd)
        return fd

    def fileno(self) -> int:
        return self.ring_fd

    def take(self, limit: int = 256) -> list[ObservedCall]:
        out = list(self.ring.take(limit))
        self.seen += len(out)
        return out

    def pending(self) -> bool:
        return self.ring.pending()

    @property
    def lost(self) -> int:
        return struct.unpack("<Q", _map_lookup(self.lost_fd, struct.pack("<I", 0), 8))[0]

    def describe(self) -> str:
        return f"ebpf (sys_enter raw tracepoint, ring buffer), reporting {len(self.actions)} other syscalls"

    def close(self) -> None:
        if self.ring is not None:
            self.ring.close()
            self.ring = None
        for fd in reversed(self.fds):  # the link first: detached before the maps go
            os.close(fd)
        self.fds.clear()


def unavailable(*, cgroup: bool) -> str | None:
    """Why the observer cannot run here, or None (cheap checks; loading may still fail)."""
    if not cgroup:
        return "no cgroup v2 group for the workload (the observer filters on it)"
    if os.geteuid() != 0:
        caps = _effective_caps()
        if not (caps >> 39 & 1 and caps >> 38 & 1):  # CAP_BPF, CAP_PERFMON
            return "needs root or CAP_BPF + CAP_PERFMON"
    return None


def _effective_caps() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


# -- the supervisor's side ------------------------------------------------------------------

OBSERVERS = ("auto", "ebpf", "seccomp")


def start_for(mode: str, plan, cgroup_path: str | None):
    """(the plan to load, the observer or None, what to say at start).

    Only a catch-all plan wants an observer.  `auto` falls back to seccomp
    trapping everything, saying why; `ebpf` refuses to run without it (ConfigError)."""
    from streams.errors import ConfigError

    if mode not in OBSERVERS:
        raise ConfigError(f"`{mode}` is no observer; use one of {', '.join(OBSERVERS)}")
    if not plan.trap_all:
        return plan, None, None
    if mode == "seccomp":
        return plan, None, "observer: seccomp, trapping every syscall (--observer seccomp)"
    why = unavailable(cgroup=cgroup_path is not None)
    if why is None:
        observed = plan.with_observer()
        try:
            obs = EbpfObserver(cgroup_path, observed.syscalls)
        except OSError as exc:
            why = f"cannot load the eBPF observer: {exc.strerror or exc}"
        else:
            return observed, obs, (f"observer: {obs.describe()}; seccomp now traps only "
                                   f"{', '.join(sorted(observed.syscalls))}")
    if mode == "ebpf":
        raise ConfigError(f"--observer ebpf: {why}")
    return plan, None, f"observer: seccomp, trapping every syscall ({why})"


def memory_of(call: ObservedCall, plan: tuple[Capture, ...] | None = None) -> CapturedMemory:
    """The render.Memory of an observed call: what the kernel captured, at the arguments'
    addresses (the record says which argument each capture is: `plan` is not needed)."""
    return CapturedMemory(call.captures)


def clock_offset_ns() -> int:
    """Wall time minus CLOCK_MONOTONIC (the kernel's ktime), to date observed calls."""
    return time.time_ns() - time.monotonic_ns()


def timestamp(ktime_ns: int, offset_ns: int) -> str:
    """RFC 3339 UTC with microseconds (streams.clock's format) of a kernel time."""
    return format_epoch_ns(ktime_ns + offset_ns)
