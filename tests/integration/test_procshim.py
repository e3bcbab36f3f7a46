"""`trustctl shim` on real processes, with a real engine worker, broker and Redis.

Needs root (seccomp user notification, pidfd_getfd, cgroup v2); skipped otherwise.
One worker serves the module; each test runs its own program under the shim
with its own identity, and waits on conditions with deadlines.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from streams.codec.avro import codec
from streams.kafka.read import read_to_end
from tests.integration.pipeline import TRUSTCTL, Pipeline, wait_for

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(os.geteuid() != 0, reason="the shim needs root (seccomp notify, pidfd_getfd, cgroups)"),
]

POLICY = """
version: procshim-it-1
default_action: allow
policies:
  openat:
    arg_constraints: {1: "(?!.*forbidden).*"}
    violation_action: quarantine
    isolation_level: network
  mkdir: {allowed_identities: [], violation_action: quarantine, isolation_level: full}
  execve:
    arg_constraints: {0: "/(usr/)?bin/(sh|dash|true)|.*/python[0-9.]*"}
    violation_action: block
"""
PY = sys.executable
PROG = os.path.basename(PY)


@pytest.fixture(scope="module")
def worker(stack, tmp_path_factory):
    p = Pipeline(stack, "procshim", tmp_path_factory.mktemp("procshim"))
    p.env["TRUST_FETCH_WAIT_MS"] = "10"
    policy = tmp_path_factory.mktemp("policy") / "p.yaml"
    policy.write_text(POLICY)
    p.policy_file = policy
    try:
        p.publish(policy)
        p.start()
        p.wait_policy("procshim-it-1")
        wait_for("the worker ready", lambda: (p.health() or {}).get("status") == "ok")
        yield p
    finally:
        p.cleanup()


def shim(p: Pipeline, code: str, *extra: str, argv: list[str] | None = None) -> tuple[subprocess.Popen, str]:
    identity = f"it-{uuid.uuid4().hex[:8]}"
    cmd = [TRUSTCTL, "shim", "--identity", identity, *extra, "--"]
    cmd += argv if argv is not None else [PY, "-c", textwrap.dedent(code)]
    proc = subprocess.Popen(cmd, env=p.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, identity


def finish(proc: subprocess.Popen, timeout: float = 120) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def read_all(p: Pipeline, kind: str, schema: str) -> list[dict]:
    """Every record on a topic now (up to the end watermarks)."""
    dec = codec(schema).decode
    return [dec(m.value()) for m in read_to_end(p.settings, p.settings.topic(kind))]


def enforcement(p: Pipeline, pred, what: str) -> dict:
    return wait_for(what, lambda: next((a for a in read_all(p, "enforcement", "EnforcementAction") if pred(a)),
                                       None), every=0.3)


def quarantine_of(p: Pipeline, identity: str) -> dict:
    return wait_for(f"the quarantine of {identity}",
                    lambda: next((q for q in read_all(p, "quarantine", "QuarantineCommand")
                                  if q["identity"]["id"] == identity), None), every=0.3)


def frozen(pid: int) -> bool:
    line = next((l for l in Path(f"/proc/{pid}/cgroup").read_text().splitlines() if l.startswith("0::")), None)
    mount = next(l.split()[1] for l in Path("/proc/self/mounts").read_text().splitlines() if " cgroup2 " in l)
    events = Path(mount) / line[3:].lstrip("/") / "cgroup.events"
    return "frozen 1" in events.read_text()


@pytest.fixture
def port():
    """A TCP port on 127.0.0.1 that accepts connections (the programs' allowed network)."""
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def test_forbidden_read_quarantines_with_network_isolation_and_the_next_connect_fails(worker, port, tmp_path):
    secret = tmp_path / "forbidden-secret"
    secret.write_text("s3cret")
    code = f"""
        import errno, socket, time
        socks = [socket.socket() for _ in range(400)]
        socks[0].connect(("127.0.0.1", {port}))          # allowed before the violation
        open({str(secret)!r}).read()                      # the violation: quarantine, network
        for i, s in enumerate(socks[1:], 1):
            try:
                s.connect(("127.0.0.1", {port}))
            except OSError as exc:
                print(f"denied {{i}} {{exc.errno}}")
                raise SystemExit(0 if exc.errno == errno.EPERM else 3)
            time.sleep(0.25)
        raise SystemExit(4)
    """
    proc, identity = shim(worker, code)
    rc, out, err = finish(proc)
    assert rc == 0, f"rc {rc}\n{out}\n{err}"
    assert out.startswith("denied ") and out.split()[2] == "1", out  # errno 1 = EPERM
    q = quarantine_of(worker, identity)
    assert q["isolation_level"] == "network"
    deny = enforcement(worker, lambda a: a["identity_id"] == identity and a["action"] == "deny",
                       "the deny action")
    assert deny["syscall"] == "connect" and deny["process_id"] == q["process_id"]
    assert deny["command_id"] == q["command_id"] and deny["mechanism"] == "seccomp"
    assert deny["violating_event_id"] == q["event_id"] and deny["delay_ms"] > 0


def test_a_process_started_by_an_isolated_one_is_isolated_too(worker, port, tmp_path):
    secret = tmp_path / "forbidden-child"
    secret.write_text("x")
    child = f"""
import errno, socket, sys
try:
    socket.socket().connect(("127.0.0.1", {port}))
except OSError as exc:
    sys.exit(0 if exc.errno == errno.EPERM else 3)
sys.exit(5)
"""
    code = f"""
        import errno, socket, subprocess, sys, time
        socket.socket().connect(("127.0.0.1", {port}))    # allowed before the violation
        open({str(secret)!r}).read()                      # the violation: quarantine, network
        for _ in range(480):                              # until the isolation is in effect here
            try:
                socket.socket().connect(("127.0.0.1", {port}))
            except OSError as exc:
                if exc.errno == errno.EPERM:
                    break
            time.sleep(0.25)
        else:
            raise SystemExit(4)
        raise SystemExit(subprocess.run([sys.executable, "-c", {child!r}]).returncode)
    """
    proc, identity = shim(worker, code)
    rc, out, err = finish(proc)
    assert rc == 0, f"rc {rc} (3: the child's connect failed otherwise, 5: it connected)\n{out}\n{err}"
    q = quarantine_of(worker, identity)
    denied = wait_for("a deny for the child", lambda: [
        a for a in read_all(worker, "enforcement", "EnforcementAction")
        if a["identity_id"] == identity and a["action"] == "deny" and a["process_id"] != q["process_id"]],
        every=0.3)
    assert denied[0]["syscall"] in ("socket", "connect")  # the network class: its socket() already fails
    assert denied[0]["command_id"] == q["command_id"]


def test_full_isolation_freezes_and_recovery_lets_it_finish(worker, tmp_path):
    go, done = tmp_path / "go", tmp_path / "done"
    code = f"""
        import os, time
        os.mkdir({str(tmp_path / 'd')!r})                 # the violation: quarantine, full
        deadline = time.time() + 120
        while not os.path.exists({str(go)!r}) and time.time() < deadline:
            time.sleep(0.01)
        open({str(done)!r}, "w").write("ok")
    """
    proc, identity = shim(worker, code)
    q = quarantine_of(worker, identity)
    assert q["isolation_level"] == "full"
    freeze = enforcement(worker, lambda a: a["identity_id"] == identity and a["action"] == "freeze",
                         "the freeze action")
    assert freeze["mechanism"] in ("cgroup", "signal")
    root = int(q["process_id"].rsplit("-", 1)[1])
    if freeze["mechanism"] == "cgroup":
        assert frozen(root)
    go.write_text("go")
    assert proc.poll() is None and not done.exists()
    r = subprocess.run([TRUSTCTL, "redzone", "recover", q["process_id"], "--by", "pytest"], env=worker.env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rc, out, err = finish(proc)
    assert rc == 0, err
    assert done.read_text() == "ok"
    thaw = enforcement(worker, lambda a: a["identity_id"] == identity and a["action"] == "thaw", "the thaw")
    assert thaw["transition_id"] is not None


def test_terminate_kills_the_program(worker, tmp_path):
    secret = tmp_path / "forbidden-2"
    secret.write_text("x")
    code = f"""
        import time
        open({str(secret)!r}).read()
        time.sleep(120)
    """
    proc, identity = shim(worker, code)
    q = quarantine_of(worker, identity)
    r = subprocess.run([TRUSTCTL, "redzone", "terminate", q["process_id"], "--by", "pytest"], env=worker.env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rc, out, err = finish(proc, timeout=60)
    assert rc == 128 + signal.SIGKILL, err
    kill = enforcement(worker, lambda a: a["identity_id"] == identity and a["action"] == "kill", "the kill")
    assert kill["process_id"] == q["process_id"]


def test_gate_denies_a_forbidden_exec_at_the_first_attempt(worker):
    proc, identity = shim(worker, "", "--gate", "execve", "--gate-timeout", "30000",
                          argv=["sh", "-c", "/usr/bin/id; echo rc=$?"])
    rc, out, err = finish(proc)
    assert rc == 0, err
    assert "rc=126" in out and "uid=" not in out, out  # sh: Permission denied -> 126
    deny = enforcement(worker, lambda a: a["identity_id"] == identity and a["action"] == "deny", "the deny")
    assert deny["syscall"] == "execve"
    assert deny["reason"].startswith("gate: the engine denied execve"), deny["reason"]


def test_a_killed_shim_leaves_no_tracee_hung(worker, tmp_path):
    marker = tmp_path / "running"
    code = f"""
        import time
        open({str(marker)!r}, "w").write("1")
        deadline = time.time() + 120
        while time.time() < deadline:
            open("/etc/hostname").read()                  # trapped: fails once the shim is gone
            time.sleep(0.01)
    """
    proc, _ = shim(worker, code, "--gate", "openat", "--gate-timeout", "60000")
    wait_for("the program running", marker.exists)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert children, "the shim has no child"
    tracee = int(children[0])
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)

    def gone():
        try:
            stat = Path(f"/proc/{tracee}/stat").read_text()
        except FileNotFoundError:
            return True
        return stat[stat.rindex(")") + 2] in "ZX"
    wait_for("the tracee to end once its shim is gone", gone, timeout=60)


POLICY_2 = POLICY.replace("procshim-it-1", "procshim-it-2") + """
syscall_classes:
  network: [socket, connect, bind, listen, accept, accept4, sendto, sendmsg, recvfrom, recvmsg, getppid]
"""


def test_a_policy_published_while_the_shim_runs_comes_into_force(worker, tmp_path):
    # Last in the module: the worker then runs procshim-it-2.  Its network class also
    # names getppid, which the running filter (made for procshim-it-1) does not trap:
    # the shim says so at once, and a network quarantine freezes the workload instead
    # of denying calls (fail closed).
    go, secret, log = tmp_path / "go", tmp_path / "forbidden-3", tmp_path / "shim.err"
    secret.write_text("x")
    code = f"""
        import os, time
        deadline = time.time() + 120
        while not os.path.exists({str(go)!r}) and time.time() < deadline:
            time.sleep(0.01)
        open({str(secret)!r}).read()                      # the violation: quarantine, network
        time.sleep(120)
    """
    identity = f"it-{uuid.uuid4().hex[:8]}"
    with open(log, "w") as err:
        proc = subprocess.Popen([TRUSTCTL, "shim", "--identity", identity, "--", PY, "-c", textwrap.dedent(code)],
                                env=worker.env, stdout=subprocess.DEVNULL, stderr=err, text=True)
    try:
        wait_for("the shim started", lambda: "policy procshim-it-1" in log.read_text())
        v2 = tmp_path / "p2.yaml"
        v2.write_text(POLICY_2)
        worker.publish(v2)
        worker.wait_policy("procshim-it-2")
        said = wait_for("the shim to take procshim-it-2",
                        lambda: next((line for line in log.read_text().splitlines()
                                      if "policy procshim-it-2 in force (was procshim-it-1)" in line), None))
        assert "not in the running filter: getppid" in said, said
        go.write_text("go")
        q = quarantine_of(worker, identity)
        assert q["isolation_level"] == "network"
        freeze = enforcement(worker, lambda a: a["identity_id"] == identity and a["action"] == "freeze",
                             "the freeze action")
        assert "getppid, which this shim does not trap" in freeze["reason"], freeze["reason"]
        r = subprocess.run([TRUSTCTL, "redzone", "terminate", q["process_id"], "--by", "pytest"],
                           env=worker.env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert proc.wait(60) == 128 + signal.SIGKILL, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
