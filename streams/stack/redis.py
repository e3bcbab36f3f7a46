"""The local Redis server: Debian's `redis-server`, daemonised, AOF on.

Config, pid file, log and data live in `<stack_dir>/redis/`.  The password
(TRUST_REDIS_PASSWORD) goes only into that directory's `redis.conf`, written
with mode 0600 - never onto a command line and never into the repository.

Secure (`security` given): TLS only (`port 0`, `tls-port`, the stack's
certificate), no default user, and the ACL users of streams/stack/acls.py
with their passwords as SHA-256 hashes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from urllib.parse import urlparse

from streams.errors import StackError
from streams.settings import Settings
from streams.stack.acls import ADMIN, redis_acl_lines
from streams.stack.process import (
    RUNNING,
    STOPPED,
    UNHEALTHY,
    Report,
    ServiceStatus,
    StopResult,
    pid_alive,
    port_open,
    read_pid,
    require_loopback,
    rotate,
    tail,
    terminate,
    write_private,
)
from streams.stack.security import StackSecurity

MARKER = "redis-server"


def _quote(value: str) -> str:
    """A redis.conf string literal."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


class RedisServer:
    name = "redis"

    def __init__(self, settings: Settings, report: Report, security: StackSecurity | None = None):
        self.settings = settings
        self.report = report
        self.security = security
        url = urlparse(settings.redis_url)
        self.host = require_loopback(url.hostname or "127.0.0.1", "TRUST_REDIS_URL")
        self.port = settings.redis_port
        self.password = settings.redis_password
        self.home = settings.stack_dir / "redis"
        self.conf = self.home / "redis.conf"
        self.pidfile = self.home / "redis.pid"
        self.logfile = self.home / "redis.log"
        self._launched_at: float | None = None

    # -- observing ---------------------------------------------------------

    def pid(self) -> int | None:
        pid = read_pid(self.pidfile)
        return pid if pid_alive(pid, MARKER) else None

    def _client(self, timeout: float = 1.0):
        """A client of the stack's own: `admin` over TLS when secure."""
        import redis

        auth: dict = {"password": self.password}
        if self.security is not None:
            auth = {"username": ADMIN, "password": self.security.passwords()[ADMIN],
                    "ssl": True, "ssl_ca_certs": str(self.security.ca_cert)}
        return redis.Redis(host=self.host, port=self.port, socket_connect_timeout=timeout,
                           socket_timeout=timeout, **auth)

    def apply_users(self) -> None:
        """Give a running secure server the ACL users of this start (a role's new
        password, another key prefix) without restarting it; redis.conf has them
        for the next start."""
        import redis

        assert self.security is not None
        client = self._client(timeout=5.0)
        try:
            for line in redis_acl_lines(self.settings.redis_prefix, self.security.redis_password_hashes()):
                _, name, *rules = line.split()
                if name not in (ADMIN, "default"):
                    client.execute_command("ACL", "SETUSER", name, "reset", *rules)
        except redis.RedisError as exc:
            raise StackError(f"setting the redis users failed: {exc}") from exc
        finally:
            client.close()

    def ping(self) -> str | None:
        """None if the server answers PING, else why not."""
        import redis

        client = self._client()
        try:
            client.ping()
            return None
        except redis.AuthenticationError:
            if self.security is not None:
                return f"authentication failed: the server's users differ from {self.security.passwords_file}"
            return "authentication failed: the server's password differs from TRUST_REDIS_PASSWORD"
        except redis.RedisError as exc:
            return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        finally:
            client.close()

    def status(self) -> ServiceStatus:
        pid = self.pid()
        if pid is None:
            stale = read_pid(self.pidfile)
            if port_open(self.host, self.port):
                detail = f"port {self.port} is in use by another process"
            elif stale:
                detail = f"stale pid file: pid {stale} is gone"
            else:
                detail = ""
            return ServiceStatus(self.name, STOPPED, None, self.port, detail)
        problem = self.ping()
        if problem is None:
            detail = "appendonly yes" + (", TLS only, ACL users" if self.security is not None else "")
            return ServiceStatus(self.name, RUNNING, pid, self.port, detail)
        return ServiceStatus(self.name, UNHEALTHY, pid, self.port, problem)

    # -- starting ----------------------------------------------------------

    def binary(self) -> str:
        found = shutil.which("redis-server")
        if found:
            return found
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise StackError(
                "`redis-server` is not installed: run `apt-get install -y redis-server` as root "
                "and `trustctl stack up` again"
            )
        self.report("redis-server is missing: running `apt-get update && apt-get install -y redis-server`")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "redis-server"]):
            done = subprocess.run(cmd, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            if done.returncode != 0:
                last = (done.stdout + done.stderr).strip().splitlines()[-3:]
                raise StackError(f"`{' '.join(cmd)}` failed (exit {done.returncode}): " + " | ".join(last))
        found = shutil.which("redis-server")
        if not found:
            raise StackError("`redis-server` is still missing after `apt-get install -y redis-server`")
        return found

    def write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        lines = [
            "# Written by `trustctl stack up`; regenerated on every start. Mode 0600.",
            f"bind {self.host}",
            "protected-mode yes",
            "daemonize yes",
            f"pidfile {self.pidfile}",
            f"logfile {self.logfile}",
            f"dir {self.home}",
            "appendonly yes",
            "appendfsync everysec",
            'appenddirname "appendonlydir"',
        ]
        if self.security is not None:
            sec = self.security
            lines += ["port 0", f"tls-port {self.port}", f"tls-cert-file {sec.cert}", f"tls-key-file {sec.key}",
                      f"tls-ca-cert-file {sec.ca_cert}", "tls-auth-clients no"]
            lines += redis_acl_lines(self.settings.redis_prefix, sec.redis_password_hashes())
        else:
            lines.append(f"port {self.port}")
            if self.password:
                lines.append(f"requirepass {_quote(self.password)}")
        write_private(self.conf, "\n".join(lines) + "\n")

    def launch(self) -> None:
        binary = self.binary()
        if port_open(self.host, self.port):
            raise StackError(
                f"port {self.port} on {self.host} is already in use by another process: "
                "stop it (see `ss -ltnp`) or point `TRUST_REDIS_URL` at a free port"
            )
        self.write_config()
        rotate(self.logfile)
        self.pidfile.unlink(missing_ok=True)
        self.report(f"starting redis on {self.host}:{self.port} (appendonly, data in {self.home})")
        self._launched_at = time.monotonic()
        done = subprocess.run(
            [binary, str(self.conf)], capture_output=True, text=True, stdin=subprocess.DEVNULL
        )
        if done.returncode != 0:
            raise StackError(
                f"`redis-server` refused to start (exit {done.returncode}): "
                + " | ".join((done.stdout + done.stderr + tail(self.logfile, 5)).strip().splitlines()[-5:])
            )

    def wait_ready(self, timeout: float) -> float:
        """Block until the server answers PING; seconds since launch."""
        started = self._launched_at or time.monotonic()
        deadline = time.monotonic() + timeout
        problem = "no pid file yet"
        while time.monotonic() < deadline:
            pid = self.pid()
            if pid is not None:
                problem = self.ping()
                if problem is None:
                    return time.monotonic() - started
            elif self.pidfile.exists():
                raise StackError(
                    f"redis exited during start-up; last lines of {self.logfile}:\n" + tail(self.logfile, 20)
                )
            time.sleep(0.1)
        raise StackError(
            f"redis did not answer PING on {self.host}:{self.port} within {timeout:.0f} s ({problem}); "
            f"last lines of {self.logfile}:\n" + tail(self.logfile, 20)
        )

    # -- stopping ----------------------------------------------------------

    def stop(self, timeout: float) -> StopResult:
        result = terminate(self.name, read_pid(self.pidfile), MARKER, timeout)
        self.pidfile.unlink(missing_ok=True)
        return result
