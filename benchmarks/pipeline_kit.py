"""Plumbing for `benchmarks.pipeline_bench`: isolated topics, processes, gated
input, watermarks, and reading outputs back with their broker timestamps.

Everything here talks to the real stack named by the usual TRUST_* variables.
Each `Lane` is one isolated set of docs/behaviour.md §4 topics (own prefix, Faust app id,
Redis prefix, web port), like `tests/integration/pipeline.py` makes per test.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, ConfigEntry, AlterConfigOpType

from streams.kafka.admin import ensure_topics
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
TRUSTCTL = str(Path(sys.executable).with_name("trustctl"))
CLK_TCK = os.sysconf("SC_CLK_TCK")
# Output topics of a lane get broker append times: the latency of a decision
# ends when the broker appended it to trust.decisions, not when a client
# handed it to its producer.  Only the timestamp type changes.
APPEND_TIME = {"message.timestamp.type": "LogAppendTime"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, check: Callable[[], Any], timeout: float = 120.0, every: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


# -- /proc: CPU and memory of a process ---------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (10 ms resolution)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU seconds spent not idle by the whole machine (all cores)."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return (sum(parts[:8]) - idle) / CLK_TCK


def vm_kib(pid: int, key: str) -> int:
    """A `/proc/<pid>/status` memory figure (VmHWM = peak RSS, VmRSS) in KiB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def broker_pid(settings: Settings) -> int | None:
    try:
        return int((settings.stack_dir / "kafka" / "kafka.pid").read_text().strip())
    except (OSError, ValueError):
        return None


@dataclass
class CpuProbe:
    """CPU consumed between `start()` and `stop()` by some processes and the machine."""

    pids: dict[str, int]
    _start: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)

    def _sample(self) -> dict[str, float]:
        out = {"machine": machine_busy_seconds(), "bench": time.process_time()}
        for name, pid in self.pids.items():
            try:
                out[name] = cpu_seconds(pid)
            except OSError:
                out[name] = float("nan")
        return out

    def start(self) -> None:
        self._start = self._sample()

    def stop(self) -> dict[str, float]:
        end = self._sample()
        self.used = {k: round(end[k] - self._start[k], 3) for k in end}
        mine = sum(v for k, v in self.used.items() if k != "machine" and v == v)
        self.used["others"] = round(self.used["machine"] - mine, 3)
        return self.used


# -- a lane: one isolated set of topics ----------------------------------------------


class Lane:
    """docs/behaviour.md §4 topics under a fresh prefix, plus the env a worker needs to use them."""

    def __init__(self, stack: Settings, name: str, partitions: int = 6):
        tag = f"{name}-{uuid.uuid4().hex[:6]}"
        self.tag = tag
        self.env = dict(os.environ)
        self.env.update({
            "TRUST_KAFKA_BOOTSTRAP": stack.kafka_bootstrap,
            "TRUST_REDIS_URL": stack.redis_url,
            "TRUST_TOPIC_PREFIX": f"bench.{tag}.",
            "TRUST_APP_ID": f"bench-{tag}",
            "TRUST_REDIS_PREFIX": f"bench:{tag}:",
            "TRUST_WEB_PORT": str(free_port()),
            "TRUST_PARTITIONS": str(partitions),
        })
        if stack.stack_dir:
            self.env["TRUST_STACK_DIR"] = str(stack.stack_dir)
        self.settings = Settings.from_env(self.env)
        self.admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
        ensure_topics(self.settings)
        self._append_time([self.topic(k) for k in ("decisions", "violations", "quarantine")])

    def topic(self, kind: str) -> str:
        return self.settings.topic(kind)

    def _append_time(self, topics: Iterable[str]) -> None:
        resources = [ConfigResource(ConfigResource.Type.TOPIC, t, incremental_configs=[
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in APPEND_TIME.items()])
            for t in topics]
        for f in self.admin.incremental_alter_configs(resources).values():
            f.result(30)

    def group_members(self, group: str) -> int:
        """Members of a consumer group that hold at least one partition (0 if none)."""
        try:
            desc = self.admin.describe_consumer_groups([group])[group].result(10)
        except Exception:
            return 0
        if str(desc.state).rsplit(".", 1)[-1] != "STABLE":
            return 0
        return sum(1 for m in desc.members if m.assignment and m.assignment.topic_partitions)

    def cleanup(self) -> None:
        mine = [t for t in self.admin.list_topics(timeout=10).topics
                if t.startswith(self.settings.topic_prefix) or t.startswith(self.settings.app_id + "-")]
        if mine:
            for f in self.admin.delete_topics(mine, operation_timeout=30).values():
                try:
                    f.result(30)
                except Exception:
                    pass
        try:
            import redis

            r = redis.Redis.from_url(self.settings.redis_url)
            keys = list(r.scan_iter(f"{self.settings.redis_prefix}*", count=1000))
            if keys:
                r.delete(*keys)
        except Exception:
            pass


# -- processes ---------------------------------------------------------------------


class Proc:
    """A subprocess under test: a `trustctl worker`, or a baseline forwarder."""

    def __init__(self, argv: list[str], env: dict, log_path: Path, web_port: int | None = None):
        self.log_path = log_path
        self.web_port = web_port
        log = open(log_path, "ab")
        self.p = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  cwd=ROOT, start_new_session=True)
        log.close()

    @property
    def pid(self) -> int:
        return self.p.pid

    def alive(self) -> bool:
        return self.p.poll() is None

    def check(self) -> None:
        if not self.alive():
            raise RuntimeError(f"{self.log_path.name} exited with {self.p.returncode}:\n{self.log_tail()}")

    def health(self) -> dict | None:
        self.check()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/health", timeout=1) as r:
                return json.loads(r.read())
        except OSError:
            return None

    def peak_rss_kib(self) -> int:
        return vm_kib(self.pid, "VmHWM")

    def stop(self, timeout: float = 60.0) -> None:
        if self.p.poll() is not None:
            return
        self.p.send_signal(signal.SIGTERM)
        try:
            self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait(10)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


def start_worker(lane: Lane, log_dir: Path, name: str = "worker") -> Proc:
    env = dict(lane.env)
    port = free_port() if name != "worker" else lane.settings.web_port
    env["TRUST_WEB_PORT"] = str(port)
    return Proc([TRUSTCTL, "worker"], env, log_dir / f"{name}-{lane.tag}.log", web_port=port)


def start_module(lane: Lane, module: str, args: list[str], log_dir: Path, name: str) -> Proc:
    env = dict(lane.env)
    env["TRUST_WEB_PORT"] = str(free_port())
    return Proc([sys.executable, "-m", module, *args], env, log_dir / f"{name}-{lane.tag}.log")


# -- input: the shim SDK, held back until released ------------------------------------


class GatedProducer:
    """A ProducerLike for ShimProducer that holds every message until `release()`.

    The shim batches and encodes exactly as in production; the messages then
    go to the broker in one burst through a real confluent-kafka producer with
    the shim's own config, so a worker under test starts with its whole backlog.
    """

    def __init__(self, config: dict):
        self.config = config
        self.held: list[tuple[str, bytes, bytes, Callable]] = []
        self.real: Producer | None = None

    def produce(self, topic: str, value: bytes, key: bytes, on_delivery: Callable) -> None:
        if self.real is not None:
            self.real.produce(topic, value=value, key=key, on_delivery=on_delivery)
        else:
            self.held.append((topic, value, key, on_delivery))

    def poll(self, timeout: float) -> int:
        return self.real.poll(timeout) if self.real is not None else 0

    def flush(self, timeout: float) -> int:
        return self.real.flush(timeout) if self.real is not None else len(self.held)

    def __len__(self) -> int:
        return len(self.real) if self.real is not None else len(self.held)

    def list_topics(self, topic: str | None = None, timeout: float = -1):
        """Metadata from the broker (the shim reads the partition count at its first send)."""
        return Producer(self.config).list_topics(topic, timeout=timeout)

    def release(self, copies: int = 1) -> float:
        """Produce everything held (`copies` times over); return when the broker
        has it all (seconds taken).  Copies are for the forwarding baselines,
        which need more messages than the shim is worth running for."""
        started = time.monotonic()
        self.real = Producer(self.config)
        for copy in range(copies):
            for topic, value, key, cb in self.held:
                while True:
                    try:
                        self.real.produce(topic, value=value, key=key, on_delivery=cb if copy == 0 else None)
                        break
                    except BufferError:
                        self.real.poll(0.05)
                self.real.poll(0)
        self.held = []
        left = self.real.flush(60)
        if left:
            raise RuntimeError(f"{left} message(s) not delivered on release")
        return time.monotonic() - started


# -- output: watermarks and records with their append times ----------------------------


class TopicWatch:
    """High watermarks of one topic's partitions (cheap: no messages read)."""

    def __init__(self, bootstrap: str, topic: str):
        self.topic = topic
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-watch-{uuid.uuid4().hex}",
                           "enable.auto.commit": False})
        meta = self.c.list_topics(topic, timeout=10)
        self.partitions = sorted(meta.topics[topic].partitions)

    def highs(self) -> dict[int, int]:
        return {p: self.c.get_watermark_offsets(TopicPartition(self.topic, p), timeout=5, cached=False)[1]
                for p in self.partitions}

    def wait_total(self, base: dict[int, int], expected: int, stall: float = 60.0,
                   every: float = 0.05, on_first: Callable[[], None] | None = None) -> float:
        """Wait until `expected` messages arrived after `base`; return the monotonic time."""
        last_total, last_change = -1, time.monotonic()
        first_seen = False
        while True:
            highs = self.highs()
            total = sum(highs[p] - base.get(p, 0) for p in highs)
            now = time.monotonic()
            if total and not first_seen:
                first_seen = True
                if on_first is not None:
                    on_first()
            if total >= expected:
                return now
            if total != last_total:
                last_total, last_change = total, now
            elif now - last_change > stall:
                raise TimeoutError(f"{self.topic}: {total} of {expected} messages, nothing new for {stall:.0f}s")
            time.sleep(every)

    def close(self) -> None:
        self.c.close()


@dataclass(slots=True)
class Out:
    partition: int
    offset: int
    append_ms: int
    value: bytes


def read_range(bootstrap: str, topic: str, start: dict[int, int], end: dict[int, int]) -> list[Out]:
    """Every message of `topic` in [start, end) per partition, with its timestamp."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-read-{uuid.uuid4().hex}",
                  "enable.auto.commit": False, "fetch.max.bytes": 52428800})
    want = {p: end[p] for p in end if end[p] > start.get(p, 0)}
    c.assign([TopicPartition(topic, p, start.get(p, 0)) for p in want])
    out: list[Out] = []
    deadline = time.monotonic() + 120
    remaining = dict(want)
    try:
        while remaining and time.monotonic() < deadline:
            for m in c.consume(5000, 0.5):
                if m.error():
                    continue
                p = m.partition()
                if p not in remaining or m.offset() >= want[p]:
                    continue
                out.append(Out(p, m.offset(), m.timestamp()[1], m.value()))
                if m.offset() + 1 >= want[p]:
                    remaining.pop(p, None)
    finally:
        c.close()
    if remaining:
        raise TimeoutError(f"{topic}: could not read up to {want}")
    return out
