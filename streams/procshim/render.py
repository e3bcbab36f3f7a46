"""Render a trapped syscall's arguments the way strace prints them (pure).

The shim sees a call when it enters the kernel, so it renders what strace
shows for the inputs: `AT_FDCWD`, `O_RDONLY|O_CLOEXEC`, paths and buffers read
from the caller's memory, `{sa_family=AF_UNIX, sun_path="/run/x"}`, argv as a
list.  Top-level strings lose their quotes (the docs/behaviour.md §1.1 events of the
linux-strace case were written that way); strings nested in a structure
keep them.  Buffers are cut at :data:`STRING_LIMIT` bytes (strace -s 64).

Arguments the kernel fills in (a read buffer, a stat result, a pipe's fds)
do not exist yet at entry: they are rendered as the address, as strace does
for a call that failed.  :func:`output_positions` names them, so a
comparison with strace can leave them aside.

Memory is read through a :class:`Memory` (``/proc/<pid>/mem`` in the
supervisor, a dict in the tests).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from typing import Protocol

from streams.procshim import flags as F

STRING_LIMIT = 64
PATH_MAX = 4096
ARRAY_LIMIT = 64
NUL = b"\0"


class Memory(Protocol):
    def read(self, addr: int, size: int) -> bytes:
        """Up to `size` bytes at `addr`; fewer (maybe none) where it is not mapped."""
        ...


def _i32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _i64(v: int) -> int:
    v &= 0xFFFFFFFFFFFFFFFF
    return v - (1 << 64) if v & (1 << 63) else v


def ptr(v: int) -> str:
    return "NULL" if v == 0 else hex(v)


def hexnum(v: int) -> str:
    return "0" if v == 0 else hex(v)


def quote(data: bytes) -> str:
    """strace's escaping of a byte string (without the quotes)."""
    out = []
    n = len(data)
    for i, c in enumerate(data):
        if c == 0x22:
            out.append('\\"')
        elif c == 0x5C:
            out.append("\\\\")
        elif 0x20 <= c < 0x7F:
            out.append(chr(c))
        elif c == 0x09:
            out.append("\\t")
        elif c == 0x0A:
            out.append("\\n")
        elif c == 0x0B:
            out.append("\\v")
        elif c == 0x0C:
            out.append("\\f")
        elif c == 0x0D:
            out.append("\\r")
        elif i + 1 < n and 0x30 <= data[i + 1] <= 0x37:
            out.append(f"\\{c:03o}")
        else:
            out.append(f"\\{c:o}")
    return "".join(out)


def read_cstring(mem: Memory, addr: int, limit: int) -> tuple[bytes, bool]:
    """(bytes before the NUL, whether the NUL was found within `limit`)."""
    if addr == 0:
        return b"", False
    out = b""
    chunk = 256
    while len(out) < limit:
        # never cross a page in one read: the next page may be unmapped
        size = min(chunk, 4096 - ((addr + len(out)) % 4096), limit + 1 - len(out))
        data = mem.read(addr + len(out), size)
        if not data:
            break
        nul = data.find(b"\0")
        if nul >= 0:
            return out + data[:nul], True
        out += data
    return out[:limit], False


def string_at(mem: Memory, addr: int, limit: int = STRING_LIMIT, nested: bool = False) -> str:
    if addr == 0:
        return "NULL"
    data, complete = read_cstring(mem, addr, limit)
    if not data and not complete:
        return hex(addr)
    text = quote(data[:limit])
    return f'"{text}"{"" if complete else "..."}' if nested else text


def path_at(mem: Memory, addr: int) -> str:
    return string_at(mem, addr, PATH_MAX)


def buffer_at(mem: Memory, addr: int, size: int, limit: int = STRING_LIMIT) -> str:
    if addr == 0:
        return "NULL"
    size = max(0, min(size, 1 << 30))
    data = mem.read(addr, min(size, limit))
    if len(data) < min(size, limit):
        return hex(addr)
    return quote(data)


def _words(mem: Memory, addr: int, count: int) -> list[int] | None:
    data = mem.read(addr, 8 * count)
    if len(data) < 8:
        return None
    return list(struct.unpack(f"<{len(data) // 8}Q", data[: len(data) // 8 * 8]))


def argv_at(mem: Memory, addr: int, limit: int = STRING_LIMIT) -> str:
    if addr == 0:
        return "NULL"
    items: list[str] = []
    pos = addr
    while True:
        words = _words(mem, pos, 16)
        if words is None:
            return hex(addr) if not items else "[" + ", ".join(items) + ", ...]"
        for w in words:
            if w == 0:
                return "[" + ", ".join(items) + "]"
            if len(items) >= ARRAY_LIMIT:
                return "[" + ", ".join(items) + ", ...]"
            items.append(string_at(mem, w, limit, nested=True))
        pos += 8 * len(words)


def envp_at(mem: Memory, addr: int) -> str:
    if addr == 0:
        return "NULL"
    count = 0
    pos = addr
    while count < 100000:
        words = _words(mem, pos, 64)
        if words is None:
            return hex(addr)
        for w in words:
            if w == 0:
                return f"{hex(addr)} /* {count} var{'' if count == 1 else 's'} */"
            count += 1
        pos += 8 * len(words)
    return hex(addr)


def sockaddr_at(mem: Memory, addr: int, size: int) -> str:
    if addr == 0:
        return "NULL"
    size = min(max(size, 0), 128)
    data = mem.read(addr, size)
    if len(data) < min(size, 2) or size < 2:
        return hex(addr)
    family = struct.unpack_from("<H", data)[0]
    name = F.AF.get(family, str(family))
    if family == 1:  # AF_UNIX
        raw = data[2:]
        if not raw:
            return f"{{sa_family={name}}}"
        if raw[0] == 0:  # abstract: the whole length counts, NULs included
            return f'{{sa_family={name}, sun_path=@"{quote(raw[1:])}"}}'
        path = quote(raw.split(NUL, 1)[0])
        return f'{{sa_family={name}, sun_path="{path}"}}'
    if family == 2 and len(data) >= 8:
        port = struct.unpack_from(">H", data, 2)[0]
        ip = str(ipaddress.IPv4Address(data[4:8]))
        return f'{{sa_family={name}, sin_port=htons({port}), sin_addr=inet_addr("{ip}")}}'
    if family == 10 and len(data) >= 28:
        port = struct.unpack_from(">H", data, 2)[0]
        flow = struct.unpack_from(">I", data, 4)[0]
        ip = str(ipaddress.IPv6Address(data[8:24]))
        scope = struct.unpack_from("<I", data, 24)[0]
        return (f"{{sa_family={name}, sin6_port=htons({port}), sin6_flowinfo=htonl({flow}), "
                f'inet_pton({name}, "{ip}", &sin6_addr), sin6_scope_id={scope}}}')
    if family == 16 and len(data) >= 12:
        pid, groups = struct.unpack_from("<II", data, 4)
        return f"{{sa_family={name}, nl_pid={pid}, nl_groups={groups:08x}}}"
    return f'{{sa_family={name}, sa_data="{quote(data[2:])}"}}'


def sigaction_at(mem: Memory, addr: int) -> str:
    if addr == 0:
        return "NULL"
    data = mem.read(addr, 32)
    if len(data) < 32:
        return hex(addr)
    handler, flags, restorer, mask = struct.unpack("<QQQQ", data)
    h = {0: "SIG_DFL", 1: "SIG_IGN"}.get(handler, hex(handler))
    out = f"{{sa_handler={h}, sa_mask={F.sigset(mask)}, sa_flags={F.flag_set(flags, F.SIGACTION)}"
    if flags & 0x04000000:
        out += f", sa_restorer={hex(restorer)}"
    return out + "}"


def sigset_at(mem: Memory, addr: int, size: int) -> str:
    if addr == 0:
        return "NULL"
    data = mem.read(addr, 8)
    if len(data) < 8 or size != 8:
        return hex(addr)
    return F.sigset(struct.unpack("<Q", data)[0])


def pollfds_at(mem: Memory, addr: int, count: int) -> str:
    if addr == 0:
        return "NULL"
    count = min(count, ARRAY_LIMIT)
    data = mem.read(addr, 8 * count)
    if len(data) < 8 * count:
        return hex(addr)
    items = []
    for i in range(count):
        fd, events, _ = struct.unpack_from("<ihh", data, 8 * i)
        items.append(f"{{fd={fd}, events={F.flag_set(events & 0xFFFF, F.POLL_EVENTS)}}}")
    return "[" + ", ".join(items) + "]"


def int_at(mem: Memory, addr: int, size: int) -> str:
    if addr == 0:
        return "NULL"
    data = mem.read(addr, 4)
    if size < 4 or len(data) < 4:
        return hex(addr)
    return f"[{struct.unpack('<i', data)[0]}]"


def rlimit_at(mem: Memory, addr: int) -> str:
    if addr == 0:
        return "NULL"
    data = mem.read(addr, 16)
    if len(data) < 16:
        return hex(addr)

    def one(v: int) -> str:
        if v == 0xFFFFFFFFFFFFFFFF:
            return "RLIM64_INFINITY"
        return f"{v // 1024}*1024" if v and v % 1024 == 0 else str(v)

    cur, mx = struct.unpack("<QQ", data)
    return f"{{rlim_cur={one(cur)}, rlim_max={one(mx)}}}"


def sigaltstack_at(mem: Memory, addr: int) -> str:
    if addr == 0:
        return "NULL"
    data = mem.read(addr, 24)
    if len(data) < 24:
        return hex(addr)
    sp, fl, size = struct.unpack("<QiiQ", data)[0], struct.unpack_from("<i", data, 8)[0], \
        struct.unpack_from("<Q", data, 16)[0]
    flags = {0: "0", 1: "SS_ONSTACK", 2: "SS_DISABLE"}.get(fl, hex(fl))
    return f"{{ss_sp={ptr(sp)}, ss_flags={flags}, ss_size={size}}}"


# -- one renderer per argument kind: (value, all args, memory) -> text ---------------

Kind = Callable[[int, tuple, Memory], str]
KINDS: dict[str, Kind] = {
    "fd": lambda v, a, m: str(_i32(v)),
    "int": lambda v, a, m: str(_i32(v)),
    "long": lambda v, a, m: str(_i64(v)),
    "uint": lambda v, a, m: str(v & 0xFFFFFFFFFFFFFFFF),
    "u32": lambda v, a, m: str(v & 0xFFFFFFFF),
    "hex": lambda v, a, m: hexnum(v),
    "ptr": lambda v, a, m: ptr(v),
    "out": lambda v, a, m: ptr(v),
    "octal": lambda v, a, m: f"0{v & 0o7777:o}" if v & 0o7777 else "000",
    "dirfd": lambda v, a, m: "AT_FDCWD" if _i32(v) == -100 else str(_i32(v)),
    "path": lambda v, a, m: path_at(m, v),
    "cstr": lambda v, a, m: string_at(m, v),
    "argv": lambda v, a, m: argv_at(m, v),
    "envp": lambda v, a, m: envp_at(m, v),
    "oflags": lambda v, a, m: F.open_flags(v),
    "atflags": lambda v, a, m: F.flag_set(v & 0xFFFFFFFF, F.AT_FLAGS),
    "statxflags": lambda v, a, m: _statx_flags(v),
    "statxmask": lambda v, a, m: F.flag_set(v & 0xFFFFFFFF, F.STATX_MASK),
    "amode": lambda v, a, m: F.flag_set(v & 7, F.ACCESS, "F_OK"),
    "prot": lambda v, a, m: F.flag_set(v & 0xFFFFFFFF, F.PROT, "PROT_NONE"),
    "mapflags": lambda v, a, m: _map_flags(v),
    "af": lambda v, a, m: F.AF.get(v & 0xFFFFFFFF, str(_i32(v))),
    "socktype": lambda v, a, m: _sock_type(v),
    "sockproto": lambda v, a, m: _sock_proto(a[0], v),
    "msgflags": lambda v, a, m: F.flag_set(v & 0xFFFFFFFF, F.MSG_FLAGS),
    "sig": lambda v, a, m: F.signal_name(_i32(v)),
    "whence": lambda v, a, m: F.WHENCE.get(v & 0xFFFFFFFF, str(_i32(v))),
    "archprctl": lambda v, a, m: F.ARCH_PRCTL.get(v & 0xFFFFFFFF, hex(v)),
    "rlimit": lambda v, a, m: F.RLIMIT.get(v & 0xFFFFFFFF, str(_i32(v))),
    "rlim": lambda v, a, m: rlimit_at(m, v),
    "sighow": lambda v, a, m: F.SIG_HOW.get(v & 0xFFFFFFFF, str(_i32(v))),
    "sigaction": lambda v, a, m: sigaction_at(m, v),
    "sigaltstack": lambda v, a, m: sigaltstack_at(m, v),
    "waitopts": lambda v, a, m: F.flag_set(v & 0xFFFFFFFF, F.WAIT_OPTS),
    "fadvise": lambda v, a, m: F.FADVISE.get(v & 0xFFFFFFFF, str(_i32(v))),
    "splice": lambda v, a, m: F.flag_set(v & 0xFFFFFFFF, F.SPLICE),
    "grnd": lambda v, a, m: F.flag_set(v & 0xFFFFFFFF, F.GRND),
    "sol": lambda v, a, m: F.SOL.get(v & 0xFFFFFFFF, str(_i32(v))),
    "sockopt": lambda v, a, m: _sockopt(a[1], v),
    "ioctl": lambda v, a, m: F.IOCTL.get(v & 0xFFFFFFFF, hex(v & 0xFFFFFFFF)),
    "mountflags": lambda v, a, m: F.flag_set(v & 0xFFFFFFFF, F.MOUNT_FLAGS),
    "ptrace": lambda v, a, m: F.PTRACE.get(v & 0xFFFFFFFF, hex(v)),
    "renameflags": lambda v, a, m: F.flag_set(v & 0xFFFFFFFF, F.RENAME),
    "unlinkflags": lambda v, a, m: F.flag_set(v & 0xFFFFFFFF, F.UNLINKAT),
    "sockflags": lambda v, a, m: F.flag_set(v & 0xFFFFFFFF, F.SOCK_FLAGS),
    "pipeflags": lambda v, a, m: F.flag_set(v & 0xFFFFFFFF, F.O_FLAGS),
}


def _statx_flags(v: int) -> str:
    v &= 0xFFFFFFFF
    sync = "AT_STATX_SYNC_AS_STAT" if not v & 0x6000 else ""
    rest = F.flag_set(v, F.AT_FLAGS, "")
    return "|".join(p for p in (sync, rest) if p) or "0"


def _map_flags(v: int) -> str:
    v &= 0xFFFFFFFF
    kind = F.MAP_TYPE.get(v & 0x3, hex(v & 0x3))
    rest = F.flag_set(v & ~0x3, F.MAP_FLAGS, "")
    return f"{kind}|{rest}" if rest else kind


def _sock_type(v: int) -> str:
    v &= 0xFFFFFFFF
    base = F.SOCK_TYPE.get(v & 0xF, str(v & 0xF))
    rest = F.flag_set(v & ~0xF, F.SOCK_FLAGS, "")
    return f"{base}|{rest}" if rest else base


def _sock_proto(domain: int, v: int) -> str:
    domain &= 0xFFFFFFFF
    v &= 0xFFFFFFFF
    if domain in (2, 10):
        return F.IPPROTO.get(v, str(v))
    if domain == 16:
        return F.NETLINK.get(v, str(v))
    return str(v)


def _sockopt(level: int, v: int) -> str:
    level &= 0xFFFFFFFF
    v &= 0xFFFFFFFF
    if level == 1:
        return F.SO_OPTS.get(v, str(v))
    if level == 6:
        return F.TCP_OPTS.get(v, str(v))
    return str(v)


# -- signatures: the kind of each argument, strace's order ----------------------------
# `str:N` is a buffer whose length is argument N, `sockaddr:N` an address whose
# length is argument N, `sigset:N` a set of N bytes, `poll:N` N pollfd entries.
# `out` / `outbuf` are filled in by the kernel (rendered as addresses).

SIGNATURES: dict[str, tuple[str, ...]] = {
    "read": ("fd", "outbuf", "uint"), "write": ("fd", "str:2", "uint"),
    "pread64": ("fd", "outbuf", "uint", "long"), "pwrite64": ("fd", "str:2", "uint", "long"),
    "readv": ("fd", "out", "int"), "writev": ("fd", "ptr", "int"),
    "close": ("fd",), "close_range": ("u32", "u32", "u32"),
    "stat": ("path", "out"), "lstat": ("path", "out"), "fstat": ("fd", "out"),
    "newfstatat": ("dirfd", "path", "out", "atflags"),
    "statx": ("dirfd", "path", "statxflags", "statxmask", "out"),
    "statfs": ("path", "out"), "fstatfs": ("fd", "out"),
    "access": ("path", "amode"), "faccessat": ("dirfd", "path", "amode"),
    "faccessat2": ("dirfd", "path", "amode", "atflags"),
    "lseek": ("fd", "long", "whence"),
    "mmap": ("ptr", "uint", "prot", "mapflags", "fd", "hex"),
    "mprotect": ("ptr", "uint", "prot"), "munmap": ("ptr", "uint"), "brk": ("ptr",),
    "rt_sigaction": ("sig", "sigaction", "out", "uint"),
    "rt_sigprocmask": ("sighow", "sigset:3", "out", "uint"),
    "ioctl": ("fd", "ioctl", "ptr"),
    "getxattr": ("path", "cstr", "out", "uint"), "lgetxattr": ("path", "cstr", "out", "uint"),
    "fgetxattr": ("fd", "cstr", "out", "uint"),
    "listxattr": ("path", "out", "uint"), "llistxattr": ("path", "out", "uint"),
    "set_robust_list": ("ptr", "uint"), "set_tid_address": ("ptr",),
    "rseq": ("ptr", "hex", "hex", "hex"), "arch_prctl": ("archprctl", "ptr"),
    "prlimit64": ("int", "rlimit", "rlim", "out"), "getrlimit": ("rlimit", "out"),
    "exit_group": ("int",), "exit": ("int",),
    "getdents64": ("fd", "out", "uint"), "getdents": ("fd", "out", "uint"),
    "readlink": ("path", "outbuf", "uint"), "readlinkat": ("dirfd", "path", "outbuf", "uint"),
    "socket": ("af", "socktype", "sockproto"),
    "socketpair": ("af", "socktype", "sockproto", "out"),
    "connect": ("fd", "sockaddr:2", "u32"), "bind": ("fd", "sockaddr:2", "u32"),
    "listen": ("fd", "int"), "accept": ("fd", "out", "out"), "accept4": ("fd", "out", "out", "sockflags"),
    "sendto": ("fd", "str:2", "uint", "msgflags", "sockaddr:5", "u32"),
    "recvfrom": ("fd", "outbuf", "uint", "msgflags", "out", "out"),
    "sendmsg": ("fd", "ptr", "msgflags"), "recvmsg": ("fd", "out", "msgflags"),
    "shutdown": ("fd", "int"), "getsockname": ("fd", "out", "out"), "getpeername": ("fd", "out", "out"),
    "setsockopt": ("fd", "sol", "sockopt", "optval:4", "u32"),
    "getsockopt": ("fd", "sol", "sockopt", "out", "out"),
    "poll": ("poll:1", "u32", "int"),
    "dup": ("fd",), "dup2": ("fd", "fd"), "dup3": ("fd", "fd", "pipeflags"),
    "pipe": ("out",), "pipe2": ("out", "pipeflags"),
    "fadvise64": ("fd", "long", "long", "fadvise"),
    "sigaltstack": ("sigaltstack", "out"),
    "splice": ("fd", "ptr", "fd", "ptr", "uint", "splice"),
    "uname": ("out",), "sysinfo": ("out",),
    "wait4": ("int", "out", "waitopts", "out"),
    "getrandom": ("outbuf", "uint", "grnd"),
    "rt_sigreturn": (), "getpid": (), "getppid": (), "gettid": (), "getuid": (), "geteuid": (),
    "getgid": (), "getegid": (), "vfork": (), "fork": (), "sched_yield": (), "setsid": (),
    "getpgrp": (), "pause": (), "sync": (),
    "getgroups": ("int", "out"),
    "kill": ("int", "sig"), "tgkill": ("int", "int", "sig"), "tkill": ("int", "sig"),
    "chdir": ("path",), "fchdir": ("fd",), "getcwd": ("outbuf", "uint"),
    "mkdir": ("path", "octal"), "mkdirat": ("dirfd", "path", "octal"), "rmdir": ("path",),
    "unlink": ("path",), "unlinkat": ("dirfd", "path", "unlinkflags"),
    "rename": ("path", "path"), "renameat": ("dirfd", "path", "dirfd", "path"),
    "renameat2": ("dirfd", "path", "dirfd", "path", "renameflags"),
    "link": ("path", "path"), "symlink": ("path", "path"),
    "linkat": ("dirfd", "path", "dirfd", "path", "atflags"),
    "symlinkat": ("path", "dirfd", "path"),
    "chmod": ("path", "octal"), "fchmod": ("fd", "octal"), "fchmodat": ("dirfd", "path", "octal"),
    "chown": ("path", "int", "int"), "lchown": ("path", "int", "int"), "fchown": ("fd", "int", "int"),
    "fchownat": ("dirfd", "path", "int", "int", "atflags"),
    "truncate": ("path", "long"), "ftruncate": ("fd", "long"),
    "creat": ("path", "octal"),
    "umask": ("octal",),
    "execve": ("path", "argv", "envp"),
    "execveat": ("dirfd", "path", "argv", "envp", "atflags"),
    "ptrace": ("ptrace", "int", "ptr", "ptr"),
    "mount": ("path", "path", "cstr", "mountflags", "ptr"),
    "umount2": ("path", "int"),
    "chroot": ("path",), "pivot_root": ("path", "path"),
    "setuid": ("int",), "setgid": ("int",), "nanosleep": ("ptr", "out"),
    "clock_nanosleep": ("int", "int", "ptr", "out"),
}

SPECIAL = frozenset({"open", "openat", "futex", "clone", "fcntl"})


def output_positions(name: str, args: tuple[int, ...] = ()) -> frozenset[int]:
    """Argument positions the kernel writes (unknown at entry)."""
    sig = SIGNATURES.get(name)
    if sig is None:
        return frozenset()
    return frozenset(i for i, k in enumerate(sig) if k in ("out", "outbuf"))


def render(name: str, args: tuple[int, ...], mem: Memory) -> list[str]:
    """The strace rendering of one call's arguments, as a list of strings."""
    if name in SPECIAL:
        return _special(name, args, mem)
    sig = SIGNATURES.get(name)
    if sig is None:
        return [hexnum(a) for a in args]
    out = []
    for i, kind in enumerate(sig):
        v = args[i]
        if kind == "outbuf":
            out.append(ptr(v))
        elif ":" in kind:
            kind, ref = kind.split(":")
            n = args[int(ref)]
            if kind == "str":
                out.append(buffer_at(mem, v, n))
            elif kind == "sockaddr":
                out.append(sockaddr_at(mem, v, n & 0xFFFFFFFF))
            elif kind == "sigset":
                out.append(sigset_at(mem, v, n))
            elif kind == "poll":
                out.append(pollfds_at(mem, v, n & 0xFFFFFFFF))
            elif kind == "optval":
                out.append(int_at(mem, v, n & 0xFFFFFFFF))
        else:
            out.append(KINDS[kind](v, args, mem))
    return out


def _special(name: str, a: tuple[int, ...], mem: Memory) -> list[str]:
    if name in ("open", "openat"):
        head = [path_at(mem, a[0])] if name == "open" else [KINDS["dirfd"](a[0], a, mem), path_at(mem, a[1])]
        fl = a[1] if name == "open" else a[2]
        mode = a[2] if name == "open" else a[3]
        out = head + [F.open_flags(fl)]
        if fl & 0o100 or fl & 0o20200000 == 0o20200000:
            out.append(KINDS["octal"](mode, a, mem))
        return out
    if name == "futex":
        op = a[1] & 0xFFFFFFFF
        base = op & 0x7F
        opname = F.FUTEX_OPS.get(base, str(base))
        if op & 128:
            opname += "_PRIVATE"
        if op & 256:
            opname = "FUTEX_CLOCK_REALTIME|" + opname
        out = [ptr(a[0]), opname, str(_i32(a[2]))]
        if base in (0, 9, 11, 6, 13):  # waits take a timeout
            out.append(ptr(a[3]))
            if base == 9:
                out += [ptr(a[4]), "FUTEX_BITSET_MATCH_ANY" if a[5] & 0xFFFFFFFF == 0xFFFFFFFF else hex(a[5])]
        elif base in (3, 4):
            out += [str(_i32(a[3])), ptr(a[4])] + ([str(_i32(a[5]))] if base == 4 else [])
        return out
    if name == "clone":
        fl = a[0]
        sig = fl & 0xFF
        names = F.flag_set(fl & ~0xFF, F.CLONE_FLAGS, "")
        if sig:
            names = f"{names}|{F.signal_name(sig)}" if names else F.signal_name(sig)
        out = [f"child_stack={ptr(a[1])}", f"flags={names or '0'}"]
        if fl & 0x100000:
            out.append(f"parent_tid={ptr(a[2])}")
        if fl & (0x1000000 | 0x200000):
            out.append(f"child_tidptr={ptr(a[3])}")
        if fl & 0x80000:
            out.append(f"tls={ptr(a[4])}")
        return out
    if name == "fcntl":
        cmd = a[1] & 0xFFFFFFFF
        out = [str(_i32(a[0])), F.FCNTL.get(cmd, hex(cmd))]
        if cmd in (0, 1030, 8, 1024, 1031):
            out.append(str(_i32(a[2])))
        elif cmd == 2:
            out.append("FD_CLOEXEC" if a[2] & 1 else "0")
        elif cmd == 4:
            out.append(F.open_flags(a[2]))
        elif cmd in (5, 6, 7):
            out.append(ptr(a[2]))
        return out
    raise AssertionError(name)
