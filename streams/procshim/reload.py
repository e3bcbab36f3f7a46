"""A new policy coming into force while the shim runs (pure).

The shim follows `trust.policy` through the same gate as the workers (with
TRUST_POLICY_VERIFY_KEYS only documents signed by a trusted key, never a
rollback), unless `--policy FILE` pinned one.  When a new version comes into
force:

- the actuator's syscall classes are the new policy's at once (what a
  `network` or `filesystem` isolation denies from the next call on);
- the shim says which syscalls the new policy needs trapped that the running
  filter does not trap.

The running filter itself cannot change: a seccomp filter is fixed once
loaded, and only the filtered process can add one (no supervisor can arm a
running tree, nor a process it is about to exec).  So the syscalls the new
policy needs and the filter lacks are, with the eBPF observer, still
reported (it reports every syscall the filter does not trap); without it,
not seen until the program is started again under the shim.  A quarantine
whose isolation covers one of them freezes the workload instead of denying
calls (the actuator's fail-closed fallback).  A program started under a new
shim gets a filter made for the new policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from streams.procshim.trapset import TrapPlan, plan_for_policy

SHOWN = 12  # untrapped names listed before "and N more"


@dataclass(frozen=True, slots=True)
class PolicySwitch:
    """What a policy coming into force changes for a running shim."""

    version: str
    previous: str
    classes: Mapping[str, frozenset[str]]  # the actuator's classes from now on
    untrapped: tuple[str, ...]  # syscalls the new policy needs trapped that the filter does not trap
    unseen: tuple[str, ...]  # names in the new policy that are no x86-64 syscall
    observed: bool  # an eBPF observer reports every syscall the filter does not trap

    def describe(self) -> str:
        head = f"policy {self.version} in force (was {self.previous})"
        lines = []
        if not self.untrapped:
            lines.append(f"{head}; the running filter traps every syscall it needs")
        else:
            names = ", ".join(self.untrapped[:SHOWN])
            if len(self.untrapped) > SHOWN:
                names += f" and {len(self.untrapped) - SHOWN} more"
            seen = ("the eBPF observer reports them" if self.observed else
                    "they are not seen until the program is started again under the shim "
                    "(a loaded filter cannot be widened)")
            lines.append(f"{head}; {len(self.untrapped)} syscall(s) it needs trapped are not in the running "
                         f"filter: {names}; {seen}, and an isolation covering them freezes the workload")
        if self.unseen:
            lines.append(f"not x86-64 syscalls, never seen: {', '.join(self.unseen)}")
        return "\n".join(lines)


def switch(cp, running: TrapPlan, previous: str) -> PolicySwitch:
    """What `cp` (a CompiledPolicy) coming into force changes, under the `running` plan."""
    wanted = plan_for_policy(cp, gate=running.gated)
    if running.observed:
        wanted = wanted.with_observer()
    untrapped = tuple(sorted(wanted.syscalls - running.syscalls)) if not running.trap_all else ()
    classes = dict(cp.syscall_classes)
    return PolicySwitch(cp.version, previous, classes, untrapped, wanted.unseen, running.observed)
