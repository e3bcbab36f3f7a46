"""Which syscalls the shim's filter traps, from the policy in force (pure).

Trapped: every syscall a policy key names (globs expanded over the x86-64
table), the syscalls of each `syscall_classes` entry that some policy's
`isolation_level` names (so a quarantine the policy can cause denies them
from the next call on) and of every custom isolation list, the
gated syscalls, and always `execve`/`execveat` (the shim learns of every
program the tree runs).  A key that matches every syscall (`*`) or
`default_action: deny` (every syscall is then decided) traps everything,
unless an eBPF observer (:mod:`streams.procshim.ebpf`) reports what is not
trapped: `TrapPlan.with_observer` then keeps only the named set trapped.

A class no policy names is not trapped: a quarantine with that level (an
operator's command, a later policy version) finds its syscalls untrapped, and
the actuator freezes the workload instead (fail closed).  Trapping `read`,
`write` and `openat` for a `filesystem` isolation no policy can cause would
tax every I/O call of the workload for nothing.

Names the policy uses that are no x86-64 syscall (the reference's `open_file`, a
typo) can never be seen; the plan lists them so the shim says so at start.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from streams.errors import ConfigError
from streams.policy.glob import compile_glob, is_glob
from streams.policy.model import IsolationLevel
from streams.procshim.syscall_table import X86_64

ALWAYS = ("execve", "execveat")
ALL_NAMES = tuple(sorted(X86_64))


@dataclass(frozen=True, slots=True)
class TrapPlan:
    """The filter's trapped set and what it cannot see."""

    trap_all: bool
    syscalls: frozenset[str]  # every trapped name (all of the table when trap_all)
    unseen: tuple[str, ...]  # names/globs in the policy matching no x86-64 syscall
    gated: frozenset[str]
    reason: str  # why this set, in words
    named: frozenset[str] = frozenset()  # what must stay trapped when an observer reports the rest
    observed: bool = False  # an eBPF observer reports every syscall not trapped

    def with_observer(self) -> TrapPlan:
        """This plan when an observer reports every other syscall: only a catch-all plan
        changes; seccomp keeps what is denied, gated or named (exact rendering from the
        caller's memory), and execve/execveat."""
        if not self.trap_all:
            return self
        return TrapPlan(False, self.named, self.unseen, self.gated,
                        f"{self.reason}; the observer reports the others", self.named, True)

    def numbers(self) -> list[int]:
        return sorted(X86_64[n] for n in self.syscalls)

    def filter_spec(self) -> str:
        """The launcher's `--trap` argument."""
        return "all" if self.trap_all else ",".join(str(n) for n in self.numbers())

    def describe(self) -> str:
        if self.observed:
            head = (f"trapping {len(self.syscalls)} syscalls ({self.reason}): {', '.join(sorted(self.syscalls))}\n"
                    f"observer: every other x86-64 syscall ({len(ALL_NAMES) - len(self.syscalls)}) "
                    f"of the workload's cgroup")
        else:
            head = (f"trapping every x86-64 syscall ({len(self.syscalls)}; {self.reason})" if self.trap_all
                    else f"trapping {len(self.syscalls)} syscalls ({self.reason}): "
                    f"{', '.join(sorted(self.syscalls))}")
        lines = [head]
        if self.gated:
            lines.append(f"gated (held until the engine decides): {', '.join(sorted(self.gated))}")
        if self.unseen:
            lines.append(f"not x86-64 syscalls, never seen: {', '.join(self.unseen)}")
        lines.append("not seen: 32-bit (i386/x32) system calls; the filter kills a thread that makes one")
        return "\n".join(lines)


def expand(pattern: str) -> list[str]:
    """The x86-64 syscalls a name or glob denotes (maybe none)."""
    if not is_glob(pattern):
        return [pattern] if pattern in X86_64 else []
    match = compile_glob(pattern)
    return [n for n in ALL_NAMES if match(n)]


def plan_traps(
    policy_keys: Iterable[str],
    *,
    default_deny: bool,
    classes: dict[str, Iterable[str]] | None = None,
    isolation_lists: Iterable[Iterable[str]] = (),
    gate: Iterable[str] = (),
    extra: Iterable[str] = (),
) -> TrapPlan:
    """Compute the trapped set.  `gate` names must be real syscalls (ConfigError)."""
    gated = set()
    for name in gate:
        found = expand(name)
        if not found:
            raise ConfigError(f"`{name}` names no x86-64 syscall; it cannot be gated")
        gated.update(found)
    names: set[str] = set(ALWAYS) | gated
    unseen: list[str] = []
    trap_all = default_deny
    reason = "the policy's default action is deny" if default_deny else ""
    sources: list[str] = list(policy_keys)
    for members in (classes or {}).values():
        sources.extend(members)
    for members in isolation_lists:
        sources.extend(n for n in members if not n.startswith("@"))
    sources.extend(extra)
    for pattern in sources:
        found = expand(pattern)
        if not found:
            if pattern not in unseen:
                unseen.append(pattern)
            continue
        if len(found) == len(ALL_NAMES):
            if not trap_all:
                trap_all = True
                reason = f"the policy key `{pattern}` matches every syscall"
            continue  # a catch-all names nothing in particular
        names.update(found)
    if trap_all:
        return TrapPlan(True, frozenset(ALL_NAMES), tuple(unseen), frozenset(gated), reason, frozenset(names))
    return TrapPlan(False, frozenset(names), tuple(unseen), frozenset(gated),
                    "policy keys, the syscall classes of its isolation levels, isolation lists, gates and exec")


def plan_for_policy(cp, gate: Iterable[str] = (), extra: Iterable[str] = ()) -> TrapPlan:
    """The plan for a CompiledPolicy: its graph's keys, the classes its policies'
    isolation levels name (a policy without one isolates `full`), custom lists."""
    graph = cp.graph
    levels = {(p.isolation_level or IsolationLevel.FULL).value for p in graph.policies}
    return plan_traps(
        [p.syscall for p in graph.policies],
        default_deny=not cp.default_allow,
        classes={k: tuple(v) for k, v in graph.syscall_classes.items() if k in levels},
        isolation_lists=[p.isolation_syscalls for p in graph.policies if p.isolation_syscalls],
        gate=gate,
        extra=extra,
    )
