"""Realistic mixed syscall traffic for demos and benchmarks (`trustctl simulate`).

Mostly compliant host activity under `examples/policy.yaml` (tools reading
libraries, spawning helpers, talking to localhost), some violations (reads of
/etc/shadow, connections to remote ports), and now and then an attacker whose
trust collapses until the engine quarantines it.  Seeded: the same arguments
give the same events.

The generated timestamps are synthetic (50 µs apart from `start`): fine for
offline files, meaningless for latency.  A sender in real time stamps each
event with :class:`WallClock` as it hands it to the shim (`trustctl
simulate`, `benchmarks.realtime_bench` do), so decision `timestamp` -
`event_timestamp` is the time the event took through Kafka and the engine.
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta, timezone
from typing import Callable, Iterator

from streams.clock import format_time

TOOLS = ("tool-sh", "tool-ls", "tool-git", "tool-py", "tool-tar", "tool-curl", "tool-gcc")
COMPLIANT = (
    ("openat", ["AT_FDCWD", "/usr/lib/x86_64-linux-gnu/libc.so.6", "O_RDONLY|O_CLOEXEC"]),
    ("openat", ["AT_FDCWD", "/etc/ld.so.cache", "O_RDONLY|O_CLOEXEC"]),
    ("read", ["3", "832"]),
    ("mmap", ["NULL", "8192", "PROT_READ|PROT_WRITE", "MAP_PRIVATE|MAP_ANONYMOUS", "-1", "0"]),
    ("fstat", ["3"]),
    ("close", ["3"]),
    ("execve", ["/usr/bin/true", "[\"true\"]", "0x7ffe /* 30 vars */"]),
)
VIOLATIONS = (
    ("openat", ["AT_FDCWD", "/etc/shadow", "O_RDONLY"]),
    ("openat", ["AT_FDCWD", "/tmp/../../etc/shadow", "O_RDONLY"]),
    ("connect", ["3", "{sa_family=AF_INET, sin_port=htons(22), sin_addr=inet_addr(\"10.1.2.3\")}", "16"]),
)
ATTACK = (
    ("ptrace", ["PTRACE_ATTACH", "1"]),
    ("mount", ["/dev/sda1", "/mnt", "ext4"]),
    ("openat", ["AT_FDCWD", "/etc/shadow", "O_RDONLY"]),
)


class WallClock:
    """The wall clock as a SPEC timestamp (RFC 3339, UTC, microseconds, `Z`), cheaply.

    ``format_time(datetime.now(...))`` costs several µs; a real-time sender
    stamps thousands of events a second on the cores the engine needs, so the
    date part is formatted once a second and only the microseconds per call.
    Truncates to the microsecond (``datetime.fromtimestamp`` rounds: they can
    differ by 1 µs).
    """

    __slots__ = ("_time", "_sec", "_prefix")

    def __init__(self, time_fn: Callable[[], float] = time.time):
        self._time = time_fn
        self._sec = -1
        self._prefix = ""

    def __call__(self) -> str:
        t = self._time()
        sec = int(t)
        if sec != self._sec:
            self._sec, self._prefix = sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return f"{self._prefix}.{int((t - sec) * 1e6):06d}Z"


def generate(identities: int, seed: int = 7, violation_rate: float = 0.03,
             attacker_every: int = 5000, start: datetime | None = None) -> Iterator[dict]:
    """An endless stream of SyscallEvent records (docs/behaviour.md §1.1)."""
    rng = random.Random(seed)
    t = start or datetime.now(timezone.utc)
    names = [(TOOLS[i % len(TOOLS)], f"{TOOLS[i % len(TOOLS)][5:]}-{1000 + i}") for i in range(identities)]
    n = 0
    attack: list = []
    while True:
        n += 1
        t += timedelta(microseconds=50)
        if n % attacker_every == 0:
            attack = [("tool-intruder", f"intruder-{n}", sc, args) for sc, args in ATTACK * 2]
        if attack:
            identity, pid, syscall, args = attack.pop(0)
        else:
            identity, pid = names[rng.randrange(len(names))]
            pool = VIOLATIONS if rng.random() < violation_rate else COMPLIANT
            syscall, args = pool[rng.randrange(len(pool))]
        yield {
            "event_id": f"sim-{seed}-{n}", "syscall": syscall, "args": list(args),
            "identity": {"id": identity, "process_id": pid, "container_id": "host", "tenant": None,
                         "labels": {}},
            "trust_vector": None, "execution_dna": None,
            "timestamp": format_time(t),
        }
