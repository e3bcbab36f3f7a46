"""A real engine worker on the real stack, isolated per test.

Each `Pipeline` gets its own topic prefix, Faust app id, Redis key prefix and
web port, so tests never see each other's data; `trustctl worker` runs as a
subprocess exactly as an operator would start it.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Callable, Mapping

from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from streams.codec.avro import codec
from streams.kafka import clients
from streams.kafka.admin import ensure_topics
from streams.policy.loader import load_policy_file
from streams.policy_topic import publish
from streams.settings import Settings

DEADLINE = 90.0
TRUSTCTL = str(Path(sys.executable).with_name("trustctl"))


def wait_for(what: str, check: Callable[[], object], timeout: float = DEADLINE, every: float = 0.1):
    """Poll `check` until it returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fixed_port() -> int:
    """A free port below the ephemeral range, for a server that is killed and restarted:
    while it is down, clients retrying to connect to an ephemeral-range port can be
    given that very port as their own source port (a TCP self-connect) and hold it."""
    import random

    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(200):
        port = random.randrange(max(low - 12_000, 10_000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise AssertionError("no free port below the ephemeral range")


def normalise(rec: dict) -> dict:
    """Fill the optional SyscallEvent fields an offline JSON line may omit."""
    rec = dict(rec)
    rec.setdefault("trust_vector", None)
    rec.setdefault("execution_dna", None)
    ident = dict(rec["identity"])
    for k in ("container_id", "tenant"):
        ident.setdefault(k, None)
    ident.setdefault("labels", {})
    rec["identity"] = ident
    return rec


class Pipeline:
    """`env` (last, over the isolating names) is the worker's, e.g. a role's credentials;
    `ensure=False` leaves creating the topics to the caller (whose user may)."""

    def __init__(self, stack: Settings, name: str, log_dir: Path, env: Mapping[str, str] | None = None,
                 ensure: bool = True):
        tag = f"{name}-{uuid.uuid4().hex[:6]}"
        self.env = dict(os.environ)
        self.env.update({
            "TRUST_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
            "TRUST_REDIS_URL": stack.redis_url,
            "TRUST_TOPIC_PREFIX": f"it.{tag}.",
            "TRUST_APP_ID": f"it-{tag}",
            "TRUST_REDIS_PREFIX": f"it:{tag}:",
            "TRUST_WEB_PORT": str(free_port()),
        })
        self.env.update(env or {})
        self.settings = Settings.from_env(self.env)
        self.log_path = log_dir / f"worker-{tag}.log"
        self.worker: subprocess.Popen | None = None
        if ensure:
            ensure_topics(self.settings)

    # -- engine -------------------------------------------------------------
    def publish(self, policy: Path, settings: Settings | None = None) -> None:
        publish(settings or self.settings, load_policy_file(policy), "pytest")

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.worker = subprocess.Popen([TRUSTCTL, "worker"], env=self.env, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)

    def health(self) -> dict | None:
        """The /health body (503 too: starting or unavailable), or None while nothing answers."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.settings.web_port}/health", timeout=5) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 503:
                return json.loads(exc.read())
            raise
        except OSError:
            if self.worker is not None and self.worker.poll() is not None:
                raise AssertionError(f"worker exited with {self.worker.returncode}:\n{self.log_tail()}")
            return None

    def wait_policy(self, version: str) -> None:
        wait_for(f"worker running policy {version}",
                 lambda: (self.health() or {}).get("policy_version") == version)

    def kill(self) -> None:
        """kill -9 the worker: no commit, no leaving the consumer group."""
        if self.worker is None:
            return
        self.worker.send_signal(signal.SIGKILL)
        self.worker.wait(10)
        self.worker = None

    def kill9(self) -> float:
        """SIGKILL the worker (no shutdown of any kind); returns when it happened (epoch s)."""
        assert self.worker is not None, "no worker to kill"
        at = kill9(self.worker)
        self.worker = None
        return at

    def launch(self, name: str, web_port: int | None = None) -> "WorkerProcess":
        """Another worker of this pipeline (same group, topics, Redis), on its own web port."""
        env = dict(self.env, TRUST_WEB_PORT=str(web_port or free_port()))
        w = WorkerProcess(env, self.log_path.with_name(f"{self.log_path.stem}-{name}.log"))
        w.start()
        return w

    def metrics(self) -> dict[str, float]:
        """The worker's /metrics as {sample name with labels: value} ({} if it does not answer)."""
        return scrape(self.settings.web_port)

    def stop(self) -> None:
        if self.worker is None:
            return
        self.worker.send_signal(signal.SIGTERM)
        try:
            self.worker.wait(60)
        except subprocess.TimeoutExpired:
            self.worker.kill()
            self.worker.wait(10)
        self.worker = None

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    # -- input --------------------------------------------------------------
    def send(self, events: list[dict], shim_id: str = "pytest-shim", settings: Settings | None = None) -> None:
        from streams.shim import ShimProducer

        shim = ShimProducer(settings=settings or self.settings, shim_id=shim_id)
        for e in events:
            shim.send(normalise(e))
        shim.close()
        assert shim.counters.batches_failed == 0, f"{shim.counters} (delivery failed)"

    # -- output -------------------------------------------------------------
    def read(self, kind: str, schema: str, count: int, timeout: float = DEADLINE,
             unroll: str | None = None, settings: Settings | None = None) -> list[dict]:
        """Exactly `count` records of a topic (batches unrolled), from the start."""
        topic = self.settings.topic(kind)
        dec = codec(schema).decode
        consumer = clients.consumer(settings or self.settings, f"reader-{uuid.uuid4().hex}")
        meta = consumer.list_topics(topic, timeout=10)
        consumer.assign([TopicPartition(topic, p, 0) for p in meta.topics[topic].partitions])
        out: list[dict] = []
        deadline = time.monotonic() + timeout
        try:
            while len(out) < count and time.monotonic() < deadline:
                m = consumer.poll(0.5)
                if m is None or m.error():
                    continue
                rec = dec(m.value())
                out.extend(rec[unroll] if unroll else [rec])
        finally:
            consumer.close()
        assert len(out) >= count, (f"got {len(out)} of {count} records on {topic}\n"
                                   f"worker log:\n{self.log_tail()}")
        return out

    def decisions(self, count: int, timeout: float = DEADLINE, settings: Settings | None = None) -> list[dict]:
        return self.read("decisions", "DecisionBatch", count, timeout, unroll="decisions", settings=settings)

    def decision_reader(self) -> "DecisionReader":
        return DecisionReader(self)

    def cleanup(self) -> None:
        self.stop()
        admin = AdminClient({"bootstrap.servers": self.settings.kafka_bootstrap})
        mine = [t for t in admin.list_topics(timeout=10).topics
                if t.startswith(self.settings.topic_prefix) or t.startswith(self.settings.app_id + "-")]
        if mine:
            for f in admin.delete_topics(mine, operation_timeout=30).values():
                try:
                    f.result(30)
                except Exception:  # deleted already or still being created: not this test's concern
                    pass


class DecisionReader:
    """Reads trust.decisions from the start and counts decisions per event_id.

    `poll_until(check)` keeps reading until `check(counts)` is true or the
    deadline passes; the counts grow across calls (one consumer, never rewound).
    """

    def __init__(self, pipeline: Pipeline):
        self.pipeline = pipeline
        topic = pipeline.settings.topic("decisions")
        self._decode = codec("DecisionBatch").decode
        self._consumer = clients.consumer(pipeline.settings, f"reader-{uuid.uuid4().hex}")
        meta = self._consumer.list_topics(topic, timeout=10)
        self._consumer.assign([TopicPartition(topic, p, 0) for p in meta.topics[topic].partitions])
        self.counts: dict[str, int] = {}

    def poll_until(self, what: str, check: Callable[[dict[str, int]], bool], timeout: float = DEADLINE) -> dict[str, int]:
        deadline = time.monotonic() + timeout
        counts = self.counts
        while not check(counts):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n"
                                     f"worker log:\n{self.pipeline.log_tail()}")
            for m in self._consumer.consume(1000, 0.5):
                if m.error():
                    continue
                for d in self._decode(m.value())["decisions"]:
                    counts[d["event_id"]] = counts.get(d["event_id"], 0) + 1
        return counts

    def close(self) -> None:
        self._consumer.close()


class Load:
    """A shim sending events with unique ids (`<prefix>-<n>`) at a steady rate
    from its own thread, over `identities` identities (so every partition gets
    some), until `stop()`; `sent` holds every id handed to the shim."""

    def __init__(self, pipeline: Pipeline, rate: float = 1000.0, identities: int = 24, prefix: str = "ld",
                 linger_ms: float = 100.0):
        self.pipeline = pipeline
        self.rate = rate
        self.linger_ms = linger_ms
        self.identities = identities
        self.prefix = prefix
        self.sent: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)
        self.error: BaseException | None = None
        self.undelivered = 0

    def start(self) -> "Load":
        self._thread.start()
        return self

    def stop(self) -> list[str]:
        """Stop sending, flush, and return the ids sent (all delivered, or fail)."""
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the load thread did not stop"
        if self.error is not None:
            raise AssertionError(f"the load thread failed: {self.error!r}") from self.error
        assert self.undelivered == 0, f"{self.undelivered} event(s) not delivered to Kafka"
        return self.sent

    def abort(self) -> None:
        """Stop sending (a failing test's cleanup); checks nothing."""
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        from streams.shim import ShimProducer

        try:
            shim = ShimProducer(settings=self.pipeline.settings, shim_id=f"load-{uuid.uuid4().hex[:6]}",
                                linger_ms=self.linger_ms)
            started = time.monotonic()
            n = 0
            while not self._stop.is_set():
                due = int((time.monotonic() - started) * self.rate)
                while n < due:
                    event_id = f"{self.prefix}-{n}"
                    shim.send(normalise({"event_id": event_id, "syscall": "read", "args": ["/etc/hosts"],
                                         "identity": {"id": f"svc-{n % self.identities}", "process_id": "p-1"},
                                         "timestamp": "2026-11-28T12:00:00.000000Z"}))
                    self.sent.append(event_id)
                    n += 1
                shim.poll(0.005)  # paces the loop: batches leave when due, at most 5 ms late
            shim.close(30)
            self.undelivered = shim.counters.events_sent - shim.counters.events_delivered
        except BaseException as exc:  # reported by stop()
            self.error = exc

# -- faults: kill -9, more workers, a private stack ------------------------------------


def kill9(proc: subprocess.Popen) -> float:
    """SIGKILL `proc` and reap it; returns when it was dead (epoch seconds): a decision
    stamped later was made by someone else."""
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    return time.time()


def scrape(port: int) -> dict[str, float]:
    """Prometheus text from 127.0.0.1:`port`/metrics as {name{labels}: value}; {} if no answer."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


class WorkerProcess:
    """One `trustctl worker` subprocess with its own environment and log."""

    def __init__(self, env: dict, log_path: Path):
        self.env = env
        self.log_path = log_path
        self.port = int(env["TRUST_WEB_PORT"])
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([TRUSTCTL, "worker"], env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def health(self) -> dict | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            return None

    def kill9(self) -> float:
        assert self.proc is not None, "no worker to kill"
        at = kill9(self.proc)
        self.proc = None
        return at

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class PrivateStack:
    """A Kafka broker and/or Redis server of a test's own (other ports, data under
    `root`), to kill -9 and restart without touching the shared stack.

    Built on the same classes as `trustctl stack up` (streams.stack); the Kafka
    jars come from the shared cache.  `down()` stops what is still running.
    """

    def __init__(self, root: Path, kafka: bool = True, redis: bool = True, base: Settings | None = None):
        base = base or Settings.from_env()
        env = {
            "TRUST_STACK_DIR": str(root),
            "TRUST_CACHE_DIR": str(base.cache_dir),
            "TRUST_KAFKA_BOOTSTRAP": f"127.0.0.1:{fixed_port()}" if kafka else base.kafka_bootstrap,
            "TRUST_KAFKA_CONTROLLER_PORT": str(fixed_port()),
            "TRUST_REDIS_URL": f"redis://127.0.0.1:{fixed_port()}/0" if redis else base.redis_url,
        }
        if not redis and base.redis_password:
            env["TRUST_REDIS_PASSWORD"] = base.redis_password
        self.settings = Settings.from_env(env)
        self.names = tuple(n for n, on in (("kafka", kafka), ("redis", redis)) if on)
        self.log: list[str] = []

    def _service(self, name: str):
        from streams.stack.kafka import KafkaBroker
        from streams.stack.redis import RedisServer

        return {"kafka": KafkaBroker, "redis": RedisServer}[name](self.settings, self.log.append)

    def up(self, name: str | None = None, timeout: float = 180.0) -> float:
        """Start the service(s) and wait until they answer; returns the seconds it took."""
        started = time.monotonic()
        for n in (name,) if name else self.names:
            service = self._service(n)
            if service.pid() is None:
                service.launch()
            service.wait_ready(timeout)
        return time.monotonic() - started

    def pid(self, name: str) -> int | None:
        return self._service(name).pid()

    def kill9(self, name: str) -> float:
        """SIGKILL the service's process (the JVM, the redis-server); returns when (epoch s)."""
        pid = self.pid(name)
        assert pid is not None, f"private {name} is not running"
        at = time.time()
        os.kill(pid, signal.SIGKILL)
        service = self._service(name)
        wait_for(f"private {name} (pid {pid}) to die", lambda: service.pid() is None, timeout=30)
        # A dying process gives its memory back before it closes its sockets: its
        # command line is gone (pid() says dead) while its ports may still listen.
        from streams.stack.process import port_open

        ports = ([self.settings.kafka_port, self.settings.kafka_controller_port] if name == "kafka"
                 else [self.settings.redis_port])
        wait_for(f"private {name}'s ports {ports} closed",
                 lambda: not any(port_open("127.0.0.1", p, timeout=0.2) for p in ports), timeout=30)
        return at

    def down(self) -> None:
        for n in self.names:
            try:
                self._service(n).stop(30.0)
            except Exception:  # a teardown goes on with the next service
                pass
