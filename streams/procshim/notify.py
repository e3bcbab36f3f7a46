"""Seccomp user notification, the kernel side of the shim (Linux >= 5.5).

The launcher (:mod:`streams.procshim.launch`) loads a filter built with
libseccomp (through ``pyseccomp``) whose trapped syscalls return
``SECCOMP_RET_USER_NOTIF``; the kernel then holds each such call until the
supervisor answers on the listener fd.  The supervisor side needs no
libseccomp: three ioctls on that fd, done here with :func:`fcntl.ioctl`.

Traps learnt the hard way:

- ``NOTIF_RECV`` wants a zeroed buffer on every call (the kernel refuses a
  dirty one with EINVAL).
- Every notification must be answered, or the thread that made the call
  waits for good.  A response to a call the kernel dropped (the thread was
  killed or interrupted) fails with ENOENT: harmless.
- The listener fd is created close-on-exec; the launcher never passes it on,
  so when the supervisor dies the last copy closes and the kernel fails every
  held and future trapped call with ENOSYS instead of hanging the tree.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from dataclasses import dataclass

# <linux/seccomp.h>: _IOWR('!', 0, struct seccomp_notif) and friends.
_NOTIF = struct.Struct("=QIIiIQ6Q")  # id, pid, flags, nr, arch, ip, args[6]: 80 bytes
_RESP = struct.Struct("=QqiI")  # id, val, error, flags: 24 bytes
IOCTL_NOTIF_RECV = (3 << 30) | (_NOTIF.size << 16) | (ord("!") << 8) | 0
IOCTL_NOTIF_SEND = (3 << 30) | (_RESP.size << 16) | (ord("!") << 8) | 1
IOCTL_NOTIF_ID_VALID = (1 << 30) | (8 << 16) | (ord("!") << 8) | 2
USER_NOTIF_FLAG_CONTINUE = 1
AUDIT_ARCH_X86_64 = 0xC000003E
LISTENER_LINK = "anon_inode:seccomp notify"


@dataclass(frozen=True, slots=True)
class Notification:
    """One trapped syscall the kernel holds until it is answered."""

    id: int
    pid: int
    nr: int
    arch: int
    args: tuple[int, int, int, int, int, int]


def parse_notification(buf: bytes | bytearray) -> Notification:
    nid, pid, _flags, nr, arch, _ip, *args = _NOTIF.unpack(buf)
    return Notification(nid, pid, nr, arch, tuple(args))


class Listener:
    """The supervisor's end of a seccomp filter: receive, answer, check."""

    def __init__(self, fd: int):
        self.fd = fd
        os.set_blocking(fd, True)

    def fileno(self) -> int:
        return self.fd

    def receive(self) -> Notification | None:
        """The next held call, or None when there was none after all (ENOENT:
        its thread died or was interrupted between poll and receive)."""
        buf = bytearray(_NOTIF.size)  # zeroed on every call, as the kernel requires
        try:
            fcntl.ioctl(self.fd, IOCTL_NOTIF_RECV, buf, True)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.EINTR):
                return None
            raise
        return parse_notification(buf)

    def allow(self, nid: int) -> bool:
        """Let the call run as if never trapped.  False when it is gone."""
        return self._send(nid, 0, USER_NOTIF_FLAG_CONTINUE)

    def fail(self, nid: int, err: int = errno.EPERM) -> bool:
        """Fail the call with -`err`, the kernel never runs it."""
        return self._send(nid, -err, 0)

    def valid(self, nid: int) -> bool:
        """Whether the call is still held (its memory read so far is that caller's)."""
        try:
            fcntl.ioctl(self.fd, IOCTL_NOTIF_ID_VALID, struct.pack("=Q", nid))
            return True
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return False
            raise

    def _send(self, nid: int, error: int, flags: int) -> bool:
        buf = bytearray(_RESP.pack(nid, 0, error, flags))
        try:
            fcntl.ioctl(self.fd, IOCTL_NOTIF_SEND, buf, True)
            return True
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                return False
            raise

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def find_listener_fd(pid: int) -> int | None:
    """The number of `pid`'s seccomp listener fd, from /proc/<pid>/fd."""
    base = f"/proc/{pid}/fd"
    try:
        names = os.listdir(base)
    except FileNotFoundError:
        return None
    for name in names:
        try:
            if os.readlink(f"{base}/{name}") == LISTENER_LINK:
                return int(name)
        except OSError:
            continue
    return None


def take_fd(pid: int, target_fd: int) -> int:
    """A copy of another process's fd (pidfd_getfd, Linux >= 5.6, needs ptrace rights)."""
    pidfd = os.pidfd_open(pid)
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.syscall(438, pidfd, target_fd, 0)  # SYS_pidfd_getfd on x86-64
        if fd < 0:
            err = ctypes.get_errno()
            raise OSError(err, f"pidfd_getfd: {os.strerror(err)}")
        return fd
    finally:
        os.close(pidfd)
