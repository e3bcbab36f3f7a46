"""Process plumbing shared by the stack's services: pid files, liveness,
ports, polling with a deadline, stopping with SIGTERM then SIGKILL.

Only the standard library; Linux `/proc` is used to tell a live process of
ours from a dead one, a zombie, or an unrelated process that reused the pid.
"""

from __future__ import annotations

import fcntl
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from streams.errors import StackError

Report = Callable[[str], None]

RUNNING = "running"
STOPPED = "stopped"
UNHEALTHY = "unhealthy"

LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1"}


@dataclass(frozen=True, slots=True)
class ServiceStatus:
    """What `trustctl stack status` prints for one service."""

    name: str
    state: str  # running | stopped | unhealthy
    pid: int | None
    port: int
    detail: str = ""


@dataclass(frozen=True, slots=True)
class StopResult:
    name: str
    pid: int | None  # None: it was not running
    killed: bool = False  # True: SIGTERM was not enough within the deadline
    seconds: float = 0.0


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int | None, marker: str) -> bool:
    """True if `pid` runs and its command line contains `marker`.

    A zombie counts as dead (and is reaped when it is our child); a pid reused
    by an unrelated program does not count as ours.
    """
    if not pid or pid <= 0:
        return False
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child: nothing to reap
    proc = Path("/proc") / str(pid)
    try:
        stat = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X") and marker in cmdline


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_loopback(host: str, variable: str) -> str:
    if host not in LOOPBACK_NAMES:
        raise StackError(
            f"the local stack only listens on 127.0.0.1, but `{variable}` names host `{host}`"
        )
    return "127.0.0.1" if host == "localhost" else host


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll `condition` until it is true or `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def terminate(name: str, pid: int | None, marker: str, timeout: float) -> StopResult:
    """SIGTERM `pid`, wait up to `timeout` s, then SIGKILL it."""
    if not pid_alive(pid, marker):
        return StopResult(name, None)
    assert pid is not None
    started = time.monotonic()
    _signal(pid, signal.SIGTERM)
    if wait_until(lambda: not pid_alive(pid, marker), timeout, interval=0.1):
        return StopResult(name, pid, False, time.monotonic() - started)
    _signal(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid, marker), 10.0, interval=0.1)
    return StopResult(name, pid, True, time.monotonic() - started)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a text file ('' if there is none)."""
    if lines <= 0:
        return ""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            block = min(size, max(8192, lines * 400))
            while True:
                fh.seek(size - block)
                data = fh.read(block)
                if data.count(b"\n") > lines or block == size:
                    break
                block = min(size, block * 2)
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def rotate(path: Path) -> None:
    """Keep the previous run's log as `<name>.1`, start the new one empty."""
    if path.exists():
        path.replace(path.with_name(path.name + ".1"))


def write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only (0600), also when it existed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)


@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Serialise `up`/`down` of one stack directory between processes."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
