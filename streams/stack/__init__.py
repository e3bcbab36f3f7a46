"""The local real stack: a KRaft Kafka broker and a Redis server as plain
processes (no Docker), with data under TRUST_STACK_DIR.

    up(settings)      start what is not running, wait until both answer;
                      returns the names of the services it started
    up(settings, secure=True)   the same with SASL_SSL, ACLs, Redis TLS and
                      ACL users (streams/stack/security.py); a stack
                      directory made secure stays secure
    down(settings)    SIGTERM, wait with a deadline, SIGKILL what is left
    status(settings)  one ServiceStatus per service
    log_path(...)     where a service writes its log

Every function is idempotent.  See deploy/README.md.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

from streams.errors import StackError
from streams.settings import Settings
from streams.stack.kafka import KAFKA_VERSION, KafkaBroker
from streams.stack.process import (
    RUNNING,
    STOPPED,
    UNHEALTHY,
    Report,
    ServiceStatus,
    StopResult,
    locked,
)
from streams.stack.redis import RedisServer
from streams.stack.security import StackSecurity, apply_kafka_security

__all__ = [
    "KAFKA_VERSION",
    "RUNNING",
    "SERVICES",
    "STOPPED",
    "UNHEALTHY",
    "ServiceStatus",
    "StackSecurity",
    "StopResult",
    "down",
    "log_path",
    "status",
    "up",
]

SERVICES = ("kafka", "redis")
KAFKA_START_TIMEOUT = 60.0
REDIS_START_TIMEOUT = 15.0
STOP_TIMEOUT = 30.0


def _stderr(message: str) -> None:
    print(f"stack: {message}", file=sys.stderr, flush=True)


def security(settings: Settings) -> StackSecurity | None:
    """The stack's security files if its directory was made secure, else None."""
    sec = StackSecurity(settings)
    return sec if sec.enabled() else None


def _services(
    settings: Settings, report: Report, names: Iterable[str] | None = None
) -> list[KafkaBroker | RedisServer]:
    chosen = SERVICES if names is None else tuple(names)
    unknown = [n for n in chosen if n not in SERVICES]
    if unknown:
        raise StackError(f"unknown service `{unknown[0]}` (known: {', '.join(SERVICES)})")
    built = {"kafka": KafkaBroker, "redis": RedisServer}
    sec = security(settings)
    return [built[n](settings, report, sec) for n in chosen]


def up(
    settings: Settings,
    report: Report = _stderr,
    kafka_timeout: float = KAFKA_START_TIMEOUT,
    secure: bool = False,
) -> list[str]:
    """Start whatever is not running and wait until each service answers.

    The broker is launched first so that its JVM warms up while Redis starts.
    A service whose process runs but does not answer is waited for, not
    restarted.  Returns the names of the services this call started.

    `secure` (or TRUST_STACK_SECURE, or a stack directory made secure before)
    first creates the security files, and once the broker answers makes its
    users and ACLs those of streams/stack/acls.py.
    """
    with locked(settings.stack_dir):
        sec = StackSecurity(settings)
        if secure or settings.stack_secure or sec.enabled():
            sec.prepare(report)
        services = _services(settings, report)
        started: list[KafkaBroker | RedisServer] = []
        for service in services:
            if service.pid() is None:
                service.launch()
                started.append(service)
        for service in reversed(services):  # Redis answers first
            timeout = kafka_timeout if service.name == "kafka" else REDIS_START_TIMEOUT
            waited = service.wait_ready(timeout)
            if service in started:
                report(f"{service.name} ready on port {service.port} (pid {service.pid()}, {waited:.1f} s)")
            elif waited > 0.5:
                report(f"{service.name} was running and answered after {waited:.1f} s")
        if sec.enabled():
            for service in services:
                if isinstance(service, RedisServer) and service not in started:
                    service.apply_users()  # a new start has them from redis.conf
            apply_kafka_security(sec, report, timeout=kafka_timeout)
            report(f"credentials per role (mode 0600): {sec.dir}/{{shim,engine,operator,auditor}}.env; "
                   f"e.g. `. {sec.env_file('engine')}`")
        return [s.name for s in started]


def down(
    settings: Settings,
    names: Iterable[str] | None = None,
    report: Report = _stderr,
    timeout: float = STOP_TIMEOUT,
) -> list[StopResult]:
    """Stop the services (all by default): SIGTERM, then SIGKILL after `timeout` s."""
    with locked(settings.stack_dir):
        return [service.stop(timeout) for service in _services(settings, report, names)]


def status(settings: Settings) -> list[ServiceStatus]:
    return [service.status() for service in _services(settings, _stderr)]


def log_path(settings: Settings, name: str) -> Path:
    return _services(settings, _stderr, [name])[0].logfile
