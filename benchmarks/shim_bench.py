"""The shim SDK: messages per event by linger and size cap, and how fast a shim pushes.

    python -m benchmarks.shim_bench                 # ~1 min; the broker parts need the local stack
    python -m benchmarks.shim_bench --only model    # no broker, a few seconds

* ``model``: the batching alone (the SDK's pure ``EventBatcher``) in virtual
  time: Poisson arrivals at 2,000 and 8,000 events/s over `--identities`
  identity ids (uniform), a batch leaving when its oldest event is `linger`
  old (a shim polls at least that often) or it holds `max_batch`.  Per
  partition (`--partitions`, the events topic's count; murmur2 as the
  producer) and, for comparison, per identity (the SDK before).  Reports
  messages per event, events per message and the wait in the shim's buffer
  (mean, p99); and the worker CPU those messages cost with the per-message
  and per-event figures fitted in BENCHMARKS.md (1,058 µs + 47 µs per event).
* ``cpu``: ``ShimProducer.send`` over a producer that drops everything, with
  and without the strict per-event check: the SDK's own µs per event.
* ``push``: as fast as possible to a fresh topic on the real broker (all
  acknowledged): events/s a shim can push, and its CPU per event.
* ``paced``: real time at 2,000 and 8,000 events/s for `--seconds` each
  with the SDK's defaults: messages per event on the real broker.
"""

from __future__ import annotations

import argparse
import random
import resource
import sys
import time
import uuid
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.partitioner import PartitionMap  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.shim import DEFAULT_LINGER_MS, DEFAULT_MAX_BATCH, EventBatcher, ShimProducer  # noqa: E402

PER_MESSAGE_US, PER_EVENT_US = 1058.0, 47.0  # worker CPU fit, BENCHMARKS.md


def _event(identity: str, n: int) -> dict:
    return {"event_id": f"{identity}-{n}", "syscall": "openat",
            "args": ["AT_FDCWD", "/usr/lib/x86_64-linux-gnu/libc.so.6", "O_RDONLY|O_CLOEXEC"],
            "identity": {"id": identity, "process_id": f"p-{identity}", "container_id": None,
                         "tenant": "acme", "labels": {"team": "core"}},
            "trust_vector": {"score": 0.9}, "execution_dna": None,
            "timestamp": "2026-11-28T12:00:00.000000Z"}


def _identities(n: int) -> list[str]:
    return [f"svc-{i:02d}" for i in range(n)]


def _pct(xs: list[float], q: float) -> float:
    return xs[min(len(xs) - 1, int(q / 100 * len(xs)))]


def model(rate: float, linger_ms: float, max_batch: int, identities: list[str], partitions: int,
          per: str, seconds: float = 20.0, seed: int = 1) -> dict:
    """Batching in virtual time; `per` is "partition" or "identity"."""
    rng = random.Random(seed)
    pmap = PartitionMap(partitions)
    key_of = pmap if per == "partition" else (lambda identity: identity)
    b = EventBatcher(linger_ms / 1000, max_batch)
    waits: list[float] = []
    messages = events = 0

    def leave(at: float, batch: list[float]) -> None:
        nonlocal messages
        messages += 1
        waits.extend(at - t for t in batch)

    t = 0.0
    while t < seconds:
        t += rng.expovariate(rate)
        while (due := b.next_due()) is not None and due <= t:  # the shim polls: batches leave when due
            for _, batch in b.due(due):
                leave(due, batch)
        full = b.add(key_of(rng.choice(identities)), t, t)
        events += 1
        if full is not None:
            leave(t, full)
    while (due := b.next_due()) is not None:
        for _, batch in b.due(due):
            leave(due, batch)
    waits.sort()
    msg_rate = messages / seconds
    return {"per": per, "rate": rate, "linger_ms": linger_ms, "max_batch": max_batch,
            "msg_per_event": messages / events, "events_per_msg": events / messages, "msg_per_s": msg_rate,
            "wait_mean_ms": 1000 * sum(waits) / len(waits), "wait_p99_ms": 1000 * _pct(waits, 99),
            "worker_cpu": (msg_rate * PER_MESSAGE_US + rate * PER_EVENT_US) / 1e6}


class _Null:
    def __init__(self, config: dict) -> None:
        pass

    def produce(self, topic, value, key, on_delivery) -> None:
        pass

    def poll(self, timeout: float) -> int:
        return 0

    def flush(self, timeout: float) -> int:
        return 0

    def __len__(self) -> int:
        return 0


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu(n: int, identities: list[str], validate: bool) -> dict:
    events = [_event(identities[i % len(identities)], i) for i in range(n)]
    shim = ShimProducer(Settings.from_env(), shim_id="bench", partitions=6, validate=validate,
                        producer_factory=_Null)
    started, c0 = time.perf_counter(), _cpu()
    for e in events:
        shim.send(e)
    shim.flush()
    took = time.perf_counter() - started
    return {"validate": validate, "events": n, "us_per_event": 1e6 * took / n,
            "cpu_us_per_event": 1e6 * (_cpu() - c0) / n, "batches": shim.counters.batches_sent}


def _topic(settings: Settings, partitions: int):
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    name = f"bench.shim.{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        t = admin.list_topics(name, timeout=5).topics.get(name)
        if t is not None and t.error is None and len(t.partitions) == partitions \
                and all(p.leader >= 0 for p in t.partitions.values()):
            break
        time.sleep(0.05)
    return admin, name


def push(settings: Settings, topic: str, n: int, identities: list[str], validate: bool, **shim_args) -> dict:
    events = [_event(identities[i % len(identities)], i) for i in range(n)]
    shim = ShimProducer(settings, topic=topic, shim_id=f"bench-{uuid.uuid4().hex[:6]}", validate=validate,
                        **shim_args)
    shim.send(events[0])  # the metadata read is not what is measured
    started, c0 = time.perf_counter(), _cpu()
    for e in events[1:]:
        shim.send(e)
    left = shim.close(60)
    took = time.perf_counter() - started
    c = shim.counters
    return {"validate": validate, "events": c.events_delivered, "left": left, "events_per_s": (n - 1) / took,
            "cpu_us_per_event": 1e6 * (_cpu() - c0) / (n - 1), "events_per_msg": c.events_sent / c.batches_sent}


def paced(settings: Settings, topic: str, rate: float, seconds: float, identities: list[str], **shim_args) -> dict:
    rng = random.Random(3)
    n = int(rate * seconds)
    events = [_event(rng.choice(identities), i) for i in range(n)]
    shim = ShimProducer(settings, topic=topic, shim_id=f"bench-{uuid.uuid4().hex[:6]}", validate=False,
                        **shim_args)
    shim.send(events[0])
    started, c0 = time.monotonic(), _cpu()
    i = 1
    while i < n:
        due = min(n, int((time.monotonic() - started) * rate) + 1)
        while i < due:
            shim.send(events[i])
            i += 1
        ahead = started + i / rate - time.monotonic()
        if ahead > 0:
            shim.poll(min(max(ahead, 0.001), 0.02))
    took = time.monotonic() - started
    used = _cpu() - c0
    shim.close(30)
    c = shim.counters
    return {"rate": rate, "offered": n / took, "messages": c.batches_sent, "events": c.events_sent,
            "msg_per_event": c.batches_sent / c.events_sent, "events_per_msg": c.events_sent / c.batches_sent,
            "shim_cpu": used / took, "delivered": c.events_delivered}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="model,cpu,push,paced")
    p.add_argument("--identities", type=int, default=40)
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--lingers", default="1,2,5,10,20")
    p.add_argument("--caps", default="50,100,200")
    p.add_argument("--events", type=int, default=50_000, help="for cpu and push")
    p.add_argument("--seconds", type=float, default=5.0, help="per paced rate")
    p.add_argument("--linger", type=float, default=DEFAULT_LINGER_MS, help="ms, for push and paced")
    p.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH, help="for push and paced")
    args = p.parse_args(argv)
    only = set(args.only.split(","))
    ids = _identities(args.identities)
    pmap = PartitionMap(args.partitions)
    spread = [sum(pmap(i) == k for i in ids) for k in range(args.partitions)]
    print(f"{args.identities} identities over {args.partitions} partitions: {spread} per partition")

    if "model" in only:
        print("\nper      rate  linger cap  msg/ev  ev/msg   msg/s  wait mean/p99 ms  worker CPU (fit)")
        for rate in (2000.0, 8000.0):
            for per in ("identity", "partition"):
                for linger in map(float, args.lingers.split(",")):
                    for cap in map(int, args.caps.split(",")):
                        r = model(rate, linger, cap, ids, args.partitions, per)
                        print(f"{per:9} {rate:5.0f} {linger:5.0f} {cap:4d}  {r['msg_per_event']:.3f} "
                              f"{r['events_per_msg']:6.1f} {r['msg_per_s']:7.0f}  "
                              f"{r['wait_mean_ms']:5.2f} / {r['wait_p99_ms']:5.2f}     {100 * r['worker_cpu']:4.0f} %")
    if "cpu" in only:
        print()
        for validate in (True, False):
            r = cpu(args.events, ids, validate)
            print(f"send() without Kafka, validate={validate}: {r['us_per_event']:.1f} µs/event "
                  f"({1e6 / r['us_per_event']:,.0f} events/s), {r['batches']} batches")
    settings = Settings.from_env()
    shim_args = {"linger_ms": args.linger, "max_batch": args.max_batch}
    if only & {"push", "paced"}:
        admin, topic = _topic(settings, args.partitions)
        try:
            if "push" in only:
                print(f"\nlinger {args.linger} ms, cap {args.max_batch}:")
                for validate in (True, False):
                    r = push(settings, topic, args.events, ids, validate, **shim_args)
                    print(f"push to the broker, validate={validate}: {r['events_per_s']:,.0f} events/s acknowledged, "
                          f"{r['cpu_us_per_event']:.1f} CPU-µs/event, {r['events_per_msg']:.1f} events/message, "
                          f"{r['left']} left")
            if "paced" in only:
                print(f"\npaced, linger {args.linger} ms, cap {args.max_batch}:")
                for rate in (2000.0, 8000.0):
                    r = paced(settings, topic, rate, args.seconds, ids, **shim_args)
                    print(f"  {rate:5.0f} events/s (offered {r['offered']:.0f}): {r['messages']} messages for "
                          f"{r['events']} events = {r['msg_per_event']:.3f} msg/event "
                          f"({r['events_per_msg']:.1f} ev/msg, {r['messages'] / args.seconds:.0f} msg/s), "
                          f"shim CPU {100 * r['shim_cpu']:.0f} %, delivered {r['delivered']}")
        finally:
            admin.delete_topics([topic], operation_timeout=30)[topic].result(30)


if __name__ == "__main__":
    main()
