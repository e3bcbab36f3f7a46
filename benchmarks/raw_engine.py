"""The decide path without Faust: what the engine costs per event on a plain
confluent-kafka loop (a measurement for `benchmarks.pipeline_bench --only
rawengine`, not a supported way to run the engine).

    TRUST_TOPIC_PREFIX=... python -m benchmarks.raw_engine --group G --policy examples/policy.yaml

Same `BatchDecider` as `trustctl worker`, same inputs and outputs, with the
trust state in a dict whose entries are written to a compacted changelog
topic once per identity per consumed batch (the Faust table writes one per
message).  At-least-once like the engine: every second the producer is
flushed, then offsets are committed.  Left out: policy hot reload (the
document is read from a file), the redzone agent and Redis, trust.control.
"""

from __future__ import annotations

import argparse
import json
import signal
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streams.agents.decide import BatchDecider, Source
from streams.engine import TrustEngine
from streams.policy.loader import load_policy_file
from streams.redzone.view import LocalRedzoneView
from streams.settings import Settings


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--group", required=True)
    ap.add_argument("--policy", type=Path, required=True)
    ap.add_argument("--commit-interval", type=float, default=1.0)
    ap.add_argument("--wait", type=float, default=0.002, help="seconds consume() waits for a batch to fill")
    args = ap.parse_args()
    s = Settings.from_env()
    changelog = f"{args.group}-trust-changelog"
    admin = AdminClient({"bootstrap.servers": s.kafka_bootstrap})
    for f in admin.create_topics([NewTopic(changelog, s.partitions, 1, config={"cleanup.policy": "compact"})]).values():
        try:
            f.result(30)
        except Exception:
            pass
    consumer = Consumer({"bootstrap.servers": s.kafka_bootstrap, "group.id": args.group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    producer = Producer({"bootstrap.servers": s.kafka_bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 2, "partitioner": "murmur2_random"})
    state: dict = {}
    decider = BatchDecider(TrustEngine(load_policy_file(args.policy), LocalRedzoneView(), trust={},
                                       trace_depth=s.trace_depth), state)
    topics = {kind: s.topic(kind) for kind in ("decisions", "violations", "quarantine", "redzone", "dlq")}
    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    consumer.subscribe([s.topic("events")])
    produce, handle = producer.produce, decider.handle
    pending = False
    next_commit = time.monotonic() + args.commit_interval
    while not stop:
        messages = consumer.consume(500, args.wait)
        touched = set()
        for m in messages:
            if m.error():
                continue
            key = m.key()
            for e in handle(key, m.value(), Source(m.topic(), m.partition(), m.offset())):
                while True:
                    try:
                        produce(topics[e.kind], e.value, e.key)
                        break
                    except BufferError:
                        producer.poll(0.01)
            touched.add(key)
            pending = True
        for key in touched:
            ident = key.decode("utf-8", "replace")
            produce(changelog, json.dumps(state.get(ident)).encode(), key)
        producer.poll(0)
        if pending and time.monotonic() >= next_commit:
            producer.flush(30)
            consumer.commit(asynchronous=False)
            pending = False
            next_commit = time.monotonic() + args.commit_interval
    producer.flush(30)
    consumer.close()


if __name__ == "__main__":
    main()
