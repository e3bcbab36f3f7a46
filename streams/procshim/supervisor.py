"""The shim's supervisor: launch the program under the filter, serve every trapped call.

One thread does the work that touches the tracee: it receives each held
call from the listener fd, renders its arguments, publishes the event
(ShimProducer), and answers the kernel: CONTINUE, EPERM (the actuator's
isolation), or - for a gated call - later, when the engine's decision or
the gate's deadline comes.  A follower thread brings the redzone's commands
and the decisions; the loop applies them between calls.

Every notification gets an answer, whatever happens while handling it (an
error answers CONTINUE, or EPERM for a gated or isolated call).  The
listener fd lives only here: if the supervisor dies, the kernel fails the
held and later trapped calls with ENOSYS rather than hanging the tree.

With a catch-all policy an eBPF observer (streams/procshim/ebpf.py) may report
the syscalls seccomp does not trap: the same loop drains its ring buffer,
after the held calls, and publishes those calls the same way (rendered from what
the kernel captured at entry, dated by the kernel's clock).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.clock import format_epoch_ns, utc_now
from streams.errors import ConfigError, TrustError
from streams.procshim import ebpf, reload
from streams.procshim.actuator import Actuator, Op, Step
from streams.procshim.gate import GateBook
from streams.procshim.notify import Listener, find_listener_fd, take_fd
from streams.procshim.render import render
from streams.procshim.syscall_table import BY_NUMBER
from streams.procshim.trapset import TrapPlan
from streams.procshim.workload import CgroupWorkload, TreeWorkload, container_id_from_cgroup

log = logging.getLogger(__name__)

PR_SET_CHILD_SUBREAPER = 36
EVENT_TIMES = 100_000  # event id -> wall time kept for the enforcement delay
LAUNCH_DEADLINE = 10.0
OBSERVED_PER_TURN = 16  # observed calls published between two looks at the listener (a held call waits)


@dataclass(frozen=True, slots=True)
class ShimOptions:
    argv: list[str]
    path: str  # argv[0] resolved
    identity_id: str
    prog: str
    plan: TrapPlan
    gate_timeout: float = 0.2
    gate_fallback_allow: bool = False
    use_cgroup: bool = True
    quiet: bool = False
    observer: str = "auto"  # auto | ebpf | seccomp (streams.procshim.ebpf.start_for)


class ProcMemory:
    """Reads a tracee's memory through /proc/<pid>/mem (reopened after every exec)."""

    __slots__ = ("fd",)

    def __init__(self, pid: int):
        self.fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY | os.O_CLOEXEC)

    def read(self, addr: int, size: int) -> bytes:
        try:
            return os.pread(self.fd, size, addr)
        except (OSError, OverflowError, ValueError):
            return b""

    def close(self) -> None:
        os.close(self.fd)


class Supervisor:
    def __init__(self, opts: ShimOptions, *, shim, enforcement_sink: Callable[[dict], None],
                 follower=None, classes: dict[str, frozenset[str]] | None = None,
                 policy_gate=None, policy_version: str = "?"):
        """`policy_gate` (a PolicyGate holding the policy in force) takes the documents the
        follower reads from `trust.policy`; without one (a pinned --policy FILE) they are ignored."""
        self.opts = opts
        self.policy_gate = policy_gate
        self.policy_version = policy_version
        self.shim = shim  # ShimProducer (or a fake with send/poll/flush/close)
        self.emit_action = enforcement_sink
        self.follower = follower
        self.host = socket.gethostname()
        self.token = uuid.uuid4().hex[:8]
        self.container_id = container_id_from_cgroup(_read("/proc/self/cgroup"))
        self.actuator = Actuator(identity_id=opts.identity_id, container_id=self.container_id,
                                 shim_id=getattr(shim, "shim_id", "shim"), classes=classes or {},
                                 trapped=opts.plan.syscalls, owned=self._owned,
                                 event_time=self._event_time)
        self.gate = GateBook(opts.gate_timeout, opts.gate_fallback_allow)
        self.gated = opts.plan.gated
        self.plan = opts.plan  # the one loaded: narrower when an observer reports the rest
        self.observer: ebpf.EbpfObserver | None = None
        self._clock_offset = 0
        self.exec_ns = 0  # CLOCK_MONOTONIC when the root's first exec was trapped
        self.workload = None
        self.listener: Listener | None = None
        self.root: int | None = None
        self.root_status: int | None = None
        self.started = False  # the root has reached its first exec
        self._procs: dict[int, str] = {}  # pid -> process id
        self._pids_by_process: dict[str, int] = {}
        self._mem: dict[int, ProcMemory] = {}
        self._times: OrderedDict[str, float] = OrderedDict()
        self._seq = 0
        self.counters = {"calls": 0, "events": 0, "denied": 0, "gated": 0, "gate_timeouts": 0,
                         "observed": 0, "lost": 0, "policies": 0}

    # -- start ----------------------------------------------------------------------

    def launch(self) -> None:
        """Start the launcher, take its listener fd, put it in the cgroup, let it exec."""
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        name = f"forgeone-shim-{os.getpid()}-{self.token}"
        self.workload = CgroupWorkload.create(name) if self.opts.use_cgroup else None
        if self.workload is None:
            self.workload = TreeWorkload()
            self._say("no writable cgroup v2: freeze/kill fall back to signals on the process tree")
        cgroup = str(self.workload.path) if isinstance(self.workload, CgroupWorkload) else None
        self.plan, self.observer, said = ebpf.start_for(self.opts.observer, self.opts.plan, cgroup)
        self.actuator.trapped = self.plan.syscalls
        self._clock_offset = ebpf.clock_offset_ns()
        if said:
            self._say(said)
        r, w = os.pipe()
        cmd = [sys.executable, "-m", "streams.procshim.launch", "--sync", str(r),
               "--trap", self.plan.filter_spec()]
        if os.geteuid() != 0:
            cmd.append("--keep-nnp")
        child = subprocess.Popen(cmd + ["--", self.opts.path, *self.opts.argv], pass_fds=(r,))
        os.close(r)
        self.root = child.pid
        self._child = child
        try:
            deadline = time.monotonic() + LAUNCH_DEADLINE
            while (fd := find_listener_fd(child.pid)) is None:
                if child.poll() is not None:
                    raise ConfigError(f"the launcher exited with {child.returncode} before loading its filter")
                if time.monotonic() > deadline:
                    raise ConfigError("the launcher did not load its seccomp filter in time")
                time.sleep(0.0005)
            self.listener = Listener(take_fd(child.pid, fd))
            self.workload.add(child.pid)
            os.write(w, b"\x01")
        except BaseException:
            os.write(w, b"\x00")
            child.kill()
            child.wait()
            raise
        finally:
            os.close(w)

    # -- the loop -------------------------------------------------------------------

    def run(self) -> int:
        """Serve until every process under the filter is gone; the root's exit code."""
        assert self.listener is not None
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.follower is not None:
            self.follower.wake_fd = wake_w
        poller = select.poll()
        lfd = self.listener.fd
        poller.register(lfd, select.POLLIN)
        poller.register(wake_r, select.POLLIN)
        obs = self.observer
        if obs is not None:
            poller.register(obs.fileno(), select.POLLIN)
        forwarded = {}
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            forwarded[sig] = signal.signal(sig, self._forward)
        forwarded[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the tty sends it to the tree
        hup = False
        receive, handle = self.listener.receive, self._handle
        try:
            while not (hup and self.root_status is not None and not self._observing()):
                timeout = 0.0 if self._observing() else 50.0
                due = self.gate.next_deadline()
                if due is not None:
                    timeout = max(0.0, min(timeout, (due - time.monotonic()) * 1000))
                if self.shim.buffered:
                    timeout = min(timeout, 5.0)
                for fd, ev in poller.poll(timeout):
                    if fd == lfd:
                        if ev & select.POLLIN:
                            m = receive()
                            if m is not None:
                                handle(m)
                        elif ev & (select.POLLHUP | select.POLLERR):
                            hup = True
                            poller.unregister(lfd)
                    elif fd == wake_r:
                        _drain(wake_r)
                        self._inbox()
                if self._observing():
                    self._observe()
                if self.follower is not None and not self.follower.inbox.empty():
                    self._inbox()  # a record routed before wake_fd was set here woke nobody
                if self.gate:
                    self._expire(time.monotonic())
                self.shim.poll(0)
                self._reap()
            return self._exit_code()
        finally:
            for sig, old in forwarded.items():
                signal.signal(sig, old)
            for h in self.gate.drain():  # never leave a held call behind
                self.listener.fail(h.notification_id) if not self.gate.fallback_allow else \
                    self.listener.allow(h.notification_id)
            os.close(wake_r)
            os.close(wake_w)

    def _handle(self, m) -> None:
        self.counters["calls"] += 1
        name = BY_NUMBER.get(m.nr) or f"syscall_{m.nr}"
        pid = m.pid
        if not self.started:
            if pid != self.root or name not in ("execve", "execveat"):
                self.listener.allow(m.id)  # the launcher's own calls before the program runs
                return
            self.started = True
            self.exec_ns = time.monotonic_ns()  # observed calls before this are the launcher's
        answered = False
        try:
            process_id = self._procs.get(pid) or self._new_process(pid)
            mem = self._mem.get(pid)
            if mem is None:
                mem = self._memory(pid, m.id)
            try:
                args = render(name, m.args, mem) if mem is not None else [hex(a) for a in m.args]
            except Exception:  # a renderer bug must never hang the tracee
                log.exception("cannot render %s", name)
                args = [hex(a) for a in m.args]
            # The kernel is answered before the event is built and sent (the arguments are
            # read already): the caller runs while the shim publishes.  A gated call is
            # the exception: it is held until the engine has decided its event.
            wall = time.time()
            event_id = self._next_event_id()
            step = self.actuator.deny(process_id, name, event_id)
            if step is not None:
                self.listener.fail(m.id, errno.EPERM)
                answered = True
                self._publish(process_id, name, args, wall, event_id=event_id)
                self.counters["denied"] += 1
                self._act(step)
            elif name in self.gated:
                self._publish(process_id, name, args, wall, event_id=event_id)
                self.gate.hold(event_id, m.id, pid, process_id, name, time.monotonic())
                self.counters["gated"] += 1
                answered = True
                self.shim.flush(0)  # the engine needs it now
            else:
                self.listener.allow(m.id)
                answered = True
                self._publish(process_id, name, args, wall, event_id=event_id)
        finally:
            if not answered:
                if name in self.gated or self.actuator.isolated.get(self._procs.get(pid, "")):
                    self.listener.fail(m.id, errno.EPERM)
                else:
                    self.listener.allow(m.id)
            if name in ("execve", "execveat"):
                old = self._mem.pop(pid, None)  # the exec replaces the memory it reads
                if old is not None:
                    old.close()

    def _observing(self) -> bool:
        """Whether observed calls wait in the ring."""
        return self.observer is not None and self.observer.pending()

    def _observe(self) -> None:
        """Publish the next observed calls, as trapped ones are (never from /proc/<pid>/mem:
        the caller has moved on; the kernel captured what the call's plan reads: ebpf.plan_of)."""
        acts = self.observer.actions
        for c in self.observer.take(OBSERVED_PER_TURN):
            if not self.started or c.ktime_ns < self.exec_ns:
                continue  # the launcher's last calls: its exec is still held, or was after them
            name = BY_NUMBER.get(c.nr) or f"syscall_{c.nr}"
            process_id = self._procs.get(c.tid) or self._observed_process(c.tid)
            try:
                args = render(name, c.args, ebpf.memory_of(c, acts.get(c.nr)))
            except Exception:
                log.exception("cannot render %s", name)
                args = [hex(a) for a in c.args]
            self._publish(process_id, name, args, wall=(c.ktime_ns + self._clock_offset) / 1e9,
                          timestamp=ebpf.timestamp(c.ktime_ns, self._clock_offset))
            self.counters["observed"] += 1

    def _observed_process(self, tid: int) -> str:
        """An observed thread's process id; the seccomp path registers it fully (its parent's
        isolation), the process may be gone by now."""
        process_id = f"{self.opts.prog}-{tid}"
        self._pids_by_process.setdefault(process_id, tid)
        return process_id

    def _next_event_id(self) -> str:
        self._seq += 1
        return f"{self.opts.prog}-{self.token}-{self._seq}"

    def _publish(self, process_id: str, name: str, args: list[str], wall: float | None = None,
                 timestamp: str | None = None, event_id: str | None = None) -> str:
        """Send one event (`wall`: when the call was seen, else now); its event id."""
        event_id = event_id or self._next_event_id()
        now = time.time() if wall is None else wall
        self._times[event_id] = now
        if len(self._times) > EVENT_TIMES:
            self._times.popitem(last=False)
        self.shim.send({
            "event_id": event_id, "syscall": name, "args": args,
            "identity": {"id": self.opts.identity_id, "process_id": process_id,
                         "container_id": self.container_id, "tenant": None,
                         "labels": {"host": self.host}},
            "trust_vector": None, "execution_dna": None,
            "timestamp": timestamp or (utc_now() if wall is None else _rfc3339(now)),
        })
        self.counters["events"] += 1
        return event_id

    def _new_process(self, pid: int) -> str:
        process_id = f"{self.opts.prog}-{pid}"
        self._procs[pid] = process_id
        self._pids_by_process[process_id] = pid
        if self.actuator.in_redzone:  # only then can a parent's isolation pass on (saves a /proc read)
            parent = self._procs.get(_ppid(pid))
            if parent is not None:
                self.actuator.inherit(process_id, parent)
        return process_id

    def _memory(self, pid: int, nid: int) -> ProcMemory | None:
        try:
            mem = ProcMemory(pid)
        except OSError:
            return None
        if not self.listener.valid(nid):  # the pid may have been reused before the open
            mem.close()
            return None
        self._mem[pid] = mem
        return mem

    # -- the redzone and the engine -----------------------------------------------------

    def _inbox(self) -> None:
        if self.follower is None:
            return
        inbox = self.follower.inbox
        while not inbox.empty():
            kind, record = inbox.get_nowait()
            if kind == "decisions":
                for d in record["decisions"]:
                    self._decided(d)
                continue
            if kind == "policy":
                self._policy(record)
                continue
            steps = self.actuator.on_command(record) if kind == "quarantine" else \
                self.actuator.on_transition(record)
            for step in steps:
                self._act(step)

    def _policy(self, envelope: dict[str, Any]) -> None:
        """A document from `trust.policy`: through the gate; in force, the actuator's classes
        follow it (the filter cannot: streams/procshim/reload.py)."""
        if self.policy_gate is None:
            return
        try:
            cp = self.policy_gate.offer(envelope)
        except TrustError as exc:
            self._say(f"policy {str(envelope.get('version', '?'))[:80]} refused: {exc}")
            return
        if cp.version == self.policy_version:
            return
        sw = reload.switch(cp, self.plan, self.policy_version)
        self.actuator.classes = dict(sw.classes)
        self.policy_version = cp.version
        self.counters["policies"] += 1
        for line in sw.describe().splitlines():
            self._say(line)

    def _decided(self, d: dict[str, Any]) -> None:
        h = self.gate.resolve(d["event_id"])
        if h is None:
            return
        if d["allowed"]:
            self.listener.allow(h.notification_id)
            return
        self.listener.fail(h.notification_id, errno.EPERM)
        self.counters["denied"] += 1
        self._act(Step(Op.DENY, h.process_id, f"gate: the engine denied {h.syscall} "
                       f"({d.get('reason_code')}: {d.get('reason')})", violating_event_id=h.event_id,
                       since=self._times.get(h.event_id), syscall=h.syscall, event_id=h.event_id))

    def _expire(self, now: float) -> None:
        for h in self.gate.expired(now):
            self.counters["gate_timeouts"] += 1
            if self.gate.fallback_allow:
                self.listener.allow(h.notification_id)
                continue
            self.listener.fail(h.notification_id, errno.EPERM)
            self.counters["denied"] += 1
            self._act(Step(Op.DENY, h.process_id, f"gate: no decision for {h.syscall} within "
                           f"{self.gate.timeout * 1000:.0f} ms; the fallback denies it",
                           violating_event_id=h.event_id, since=self._times.get(h.event_id),
                           syscall=h.syscall, event_id=h.event_id))

    def _act(self, step: Step) -> None:
        mechanism, sig = "seccomp", None
        try:
            if step.op is Op.FREEZE:
                mechanism, sig = self.workload.freeze()
            elif step.op is Op.THAW:
                mechanism, sig = self.workload.thaw()
            elif step.op is Op.KILL:
                mechanism, sig = self.workload.kill()
            elif step.op is Op.LIFT:
                mechanism = "none"
        except OSError as exc:
            log.error("cannot %s the workload: %s", step.op.value, exc)
            self._say(f"cannot {step.op.value} the workload: {exc}")
            return
        if step.op is not Op.DENY:
            self._say(f"{step.op.value}: {step.reason}")
        self.emit_action(self.actuator.record(step, mechanism=mechanism, signal=sig, now=time.time(),
                                              timestamp=utc_now()))

    # -- helpers --------------------------------------------------------------------------

    def _owned(self, process_id: str) -> bool:
        return process_id in self._pids_by_process

    def _event_time(self, event_id: str) -> float | None:
        return self._times.get(event_id)

    def _forward(self, signum, _frame) -> None:
        if self.root is not None and self.root_status is None:
            try:
                os.kill(self.root, signum)
            except ProcessLookupError:
                pass

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.root:
                self.root_status = status
                self._child.returncode = os.waitstatus_to_exitcode(status)
            mem = self._mem.pop(pid, None)
            if mem is not None:
                mem.close()
            self._procs.pop(pid, None)  # its process id stays owned: a late quarantine still applies

    def _exit_code(self) -> int:
        code = os.waitstatus_to_exitcode(self.root_status)
        return 128 - code if code < 0 else code

    def close(self) -> None:
        if self.observer is not None:
            self.counters["lost"] = self.observer.lost
            self.observer.close()
            self.observer = None
        for mem in self._mem.values():
            mem.close()
        self._mem.clear()
        if self.listener is not None:
            self.listener.close()
        if self.workload is not None:
            self.workload.close()

    def _say(self, text: str) -> None:
        if not self.opts.quiet:
            print(f"trustctl shim: {text}", file=sys.stderr, flush=True)


def _rfc3339(wall: float) -> str:
    """streams.clock's format (RFC 3339, UTC, microseconds) of a time.time() value."""
    return format_epoch_ns(int(wall * 1_000_000) * 1000)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _ppid(pid: int) -> int:
    stat = _read(f"/proc/{pid}/stat")
    try:
        return int(stat[stat.rindex(")") + 2:].split()[1])
    except (ValueError, IndexError):
        return 0


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""
