"""Argument rendering against strace's output (linux-strace case), with a fake memory."""

from __future__ import annotations

import struct

import pytest

from streams.procshim.render import output_positions, quote, render


class FakeMemory:
    """Bytes placed at addresses; reads past them come back short, like unmapped pages."""

    def __init__(self):
        self.blocks: dict[int, bytes] = {}
        self.next = 0x10000

    def put(self, data: bytes) -> int:
        addr = self.next
        self.blocks[addr] = data
        self.next += (len(data) // 4096 + 1) * 4096
        return addr

    def cstr(self, s: str) -> int:
        return self.put(s.encode() + b"\0")

    def read(self, addr: int, size: int) -> bytes:
        for base, data in self.blocks.items():
            if base <= addr < base + len(data):
                off = addr - base
                return data[off:off + size]
        return b""


AT_FDCWD = (1 << 64) - 100 & 0xFFFFFFFF  # as the kernel passes an int in a 64-bit register


@pytest.fixture
def mem():
    return FakeMemory()


def test_openat_as_strace_prints_it(mem):
    path = mem.cstr("/etc/ld.so.cache")
    assert render("openat", (AT_FDCWD, path, 0o2000000, 0, 0, 0), mem) == [
        "AT_FDCWD", "/etc/ld.so.cache", "O_RDONLY|O_CLOEXEC"]


def test_openat_with_o_creat_shows_the_mode(mem):
    path = mem.cstr("/tmp/x")
    assert render("openat", (AT_FDCWD, path, 0o1101, 0o644, 0, 0), mem) == [
        "AT_FDCWD", "/tmp/x", "O_WRONLY|O_CREAT|O_TRUNC", "0644"]


def test_execve_argv_as_a_list_and_envp_counted(mem):
    strs = [mem.cstr(s) for s in ("ls", "-la", "/etc")]
    argv = mem.put(struct.pack("<4Q", *strs, 0))
    env = [mem.cstr(f"K{i}=v") for i in range(35)]
    envp = mem.put(struct.pack(f"<{len(env) + 1}Q", *env, 0))
    out = render("execve", (mem.cstr("/usr/bin/ls"), argv, envp, 0, 0, 0), mem)
    assert out == ["/usr/bin/ls", '["ls", "-la", "/etc"]', f"{hex(envp)} /* 35 vars */"]


def test_connect_unix_and_inet_sockaddrs(mem):
    sun = mem.put(struct.pack("<H", 1) + b"/var/run/nscd/socket".ljust(108, b"\0"))
    assert render("connect", (3, sun, 110, 0, 0, 0), mem) == [
        "3", '{sa_family=AF_UNIX, sun_path="/var/run/nscd/socket"}', "110"]
    sin = mem.put(struct.pack("<H", 2) + struct.pack(">H", 1) + bytes([127, 0, 0, 1]) + b"\0" * 8)
    assert render("connect", (5, sin, 16, 0, 0, 0), mem) == [
        "5", '{sa_family=AF_INET, sin_port=htons(1), sin_addr=inet_addr("127.0.0.1")}', "16"]


def test_mmap_socket_and_flag_sets(mem):
    assert render("mmap", (0, 8192, 3, 0x22, (1 << 64) - 1, 0), mem) == [
        "NULL", "8192", "PROT_READ|PROT_WRITE", "MAP_PRIVATE|MAP_ANONYMOUS", "-1", "0"]
    assert render("mmap", (0x7F31E92D8000, 110592, 5, 0x812, 3, 0x7000), mem) == [
        "0x7f31e92d8000", "110592", "PROT_READ|PROT_EXEC", "MAP_PRIVATE|MAP_FIXED|MAP_DENYWRITE", "3", "0x7000"]
    assert render("socket", (1, 0o2004001, 0, 0, 0, 0), mem) == [
        "AF_UNIX", "SOCK_STREAM|SOCK_CLOEXEC|SOCK_NONBLOCK", "0"]
    assert render("socket", (2, 1, 6, 0, 0, 0), mem) == ["AF_INET", "SOCK_STREAM", "IPPROTO_TCP"]
    assert render("access", (mem.cstr("/etc/ld.so.preload"), 4, 0, 0, 0, 0), mem) == ["/etc/ld.so.preload", "R_OK"]
    assert render("newfstatat", (3, mem.cstr(""), 0x7FF0, 0x1000, 0, 0), mem) == [
        "3", "", "0x7ff0", "AT_EMPTY_PATH"]


def test_write_buffer_is_escaped_and_cut_at_64_bytes(mem):
    data = b"total 696\n" + b"x" * 100
    buf = mem.put(data)
    out = render("write", (1, buf, len(data), 0, 0, 0), mem)
    assert out == ["1", quote(data[:64]), str(len(data))]
    assert quote(b"\x7fELF\x02\x01\x01\x00\x008") == "\\177ELF\\2\\1\\1\\0\\08"
    assert quote(b"\x00\x31") == "\\0001"  # an octal digit next: three digits


def test_signals_and_sigaction(mem):
    act = mem.put(struct.pack("<QQQQ", 0x55896EE54DC0, 0x04000000, 0x7F142C3F2050, 0xFFFFFFFE7FFFFFFF))
    assert render("rt_sigaction", (17, act, 0, 8, 0, 0), mem) == [
        "SIGCHLD", "{sa_handler=0x55896ee54dc0, sa_mask=~[RTMIN RT_1], sa_flags=SA_RESTORER, "
                   "sa_restorer=0x7f142c3f2050}", "NULL", "8"]


def test_clone_futex_and_unknown_syscalls(mem):
    assert render("clone", (0x1200011, 0, 0, 0x7F142C3B3A10, 0, 0), mem) == [
        "child_stack=NULL", "flags=CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD",
        "child_tidptr=0x7f142c3b3a10"]
    assert render("futex", (0x7F31E92C3A4C, 129, 2147483647, 0, 0, 0), mem) == [
        "0x7f31e92c3a4c", "FUTEX_WAKE_PRIVATE", "2147483647"]
    assert render("no_such_call", (1, 0, 16, 0, 0, 0), mem) == ["0x1", "0", "0x10", "0", "0", "0"]


def test_unreadable_memory_shows_the_address(mem):
    assert render("openat", (AT_FDCWD, 0xDEAD000, 0, 0, 0, 0), mem) == ["AT_FDCWD", "0xdead000", "O_RDONLY"]


def test_output_positions_are_what_the_kernel_fills_in():
    assert output_positions("read") == {1}
    assert output_positions("newfstatat") == {2}
    assert output_positions("openat") == frozenset()


def test_open_flags_in_strace_order(mem):
    path = mem.cstr("/etc")
    assert render("openat", (AT_FDCWD, path, 0o2204000, 0, 0, 0), mem)[2] == \
        "O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_DIRECTORY"
