"""The workload a shim launched: its cgroup v2 child group, else its process tree.

`CgroupWorkload` makes `<cgroup2 mount>/<the shim's own group>/forgeone-shim-<pid>`,
moves the launcher into it before it execs the program (so every descendant
is born inside), and freezes (`cgroup.freeze`), thaws and kills
(`cgroup.kill`, Linux >= 5.14) the whole group.  `TreeWorkload` is the
fallback without a writable cgroup2: SIGSTOP / SIGCONT / SIGKILL to the root
process and every descendant found in /proc (a process that double-forks
away between the scan and the signal escapes it: the documented limit).
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Protocol

_CONTAINER = re.compile(
    r"(?:docker[-/]|cri-containerd-|crio-|libpod-|containerd/|kubepods.*?/pod[^/]*/)([0-9a-f]{12,64})")


class Workload(Protocol):
    kind: str

    def add(self, pid: int) -> None: ...
    def freeze(self) -> tuple[str, str | None]: ...
    def thaw(self) -> tuple[str, str | None]: ...
    def kill(self) -> tuple[str, str | None]: ...
    def close(self) -> None: ...


def container_id_from_cgroup(text: str) -> str:
    """The container id in a /proc/<pid>/cgroup text (12 hex chars), else `host`."""
    for line in text.splitlines():
        m = _CONTAINER.search(line)
        if m:
            return m.group(1)[:12]
    return "host"


def cgroup2_mount(mounts: str) -> str | None:
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "cgroup2":
            return parts[1]
    return None


def own_cgroup2_path(cgroup_text: str) -> str | None:
    for line in cgroup_text.splitlines():
        if line.startswith("0::"):
            return line[3:] or "/"
    return None


class CgroupWorkload:
    kind = "cgroup"

    def __init__(self, path: Path):
        self.path = path
        self.can_kill = (path / "cgroup.kill").exists()

    @classmethod
    def create(cls, name: str) -> "CgroupWorkload | None":
        """A new child group of the shim's own cgroup2 group, or None where not possible."""
        try:
            mount = cgroup2_mount(Path("/proc/self/mounts").read_text())
            own = own_cgroup2_path(Path("/proc/self/cgroup").read_text())
        except OSError:
            return None
        if mount is None or own is None:
            return None
        path = Path(mount) / own.lstrip("/") / name
        try:
            path.mkdir()
        except OSError:
            return None
        if not (path / "cgroup.freeze").exists():
            path.rmdir()
            return None
        return cls(path)

    def add(self, pid: int) -> None:
        (self.path / "cgroup.procs").write_text(str(pid))

    def pids(self) -> list[int]:
        try:
            return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
        except OSError:
            return []

    def _events(self) -> dict[str, str]:
        try:
            return dict(line.split(" ", 1) for line in (self.path / "cgroup.events").read_text().splitlines())
        except OSError:
            return {}

    def freeze(self) -> tuple[str, str | None]:
        (self.path / "cgroup.freeze").write_text("1")
        deadline = time.monotonic() + 2.0
        while self._events().get("frozen") != "1" and time.monotonic() < deadline and self.pids():
            time.sleep(0.002)
        return "cgroup", None

    def thaw(self) -> tuple[str, str | None]:
        (self.path / "cgroup.freeze").write_text("0")
        return "cgroup", None

    def kill(self) -> tuple[str, str | None]:
        if self.can_kill:
            (self.path / "cgroup.kill").write_text("1")
            return "cgroup", None
        for pid in self.pids():
            _signal(pid, signal.SIGKILL)
        (self.path / "cgroup.freeze").write_text("0")  # a frozen task dies only once thawed
        return "signal", "SIGKILL"

    @property
    def populated(self) -> bool:
        return self._events().get("populated") == "1"

    def close(self) -> None:
        """Remove the group once it is empty (a frozen leftover is thawed first)."""
        deadline = time.monotonic() + 5.0
        while True:
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    return
                time.sleep(0.01)


class TreeWorkload:
    kind = "tree"

    def __init__(self) -> None:
        self.root: int | None = None

    def add(self, pid: int) -> None:
        self.root = pid

    def pids(self) -> list[int]:
        if self.root is None:
            return []
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            children.setdefault(ppid, []).append(int(entry))
        out, todo = [], [self.root]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(children.get(pid, ()))
        return out

    def _all(self, sig: int, name: str) -> tuple[str, str | None]:
        for pid in self.pids():
            _signal(pid, sig)
        return "signal", name

    def freeze(self) -> tuple[str, str | None]:
        return self._all(signal.SIGSTOP, "SIGSTOP")

    def thaw(self) -> tuple[str, str | None]:
        return self._all(signal.SIGCONT, "SIGCONT")

    def kill(self) -> tuple[str, str | None]:
        return self._all(signal.SIGKILL, "SIGKILL")

    def close(self) -> None:
        pass


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
