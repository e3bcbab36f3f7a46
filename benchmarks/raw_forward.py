"""Baseline (b) of `benchmarks.pipeline_bench`: a plain confluent-kafka
consume -> produce loop, the Kafka client's ceiling for one Python process.

    python -m benchmarks.raw_forward --in TOPIC --out TOPIC --group G

At-least-once like the engine: offsets are committed every second, only
after the producer has flushed everything produced before.  Messages are
forwarded unchanged (key and value), in batches of up to 1000 per `consume`.
Stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import time

from confluent_kafka import Consumer, Producer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--in", dest="source", required=True)
    ap.add_argument("--out", dest="sink", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--commit-interval", type=float, default=1.0)
    args = ap.parse_args()
    bootstrap = os.environ.get("TRUST_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": args.group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    consumer.subscribe([args.source])
    produce, poll, sink = producer.produce, producer.poll, args.sink
    pending = False
    next_commit = time.monotonic() + args.commit_interval
    while not stop:
        for m in consumer.consume(1000, 0.1):
            if m.error():
                continue
            while True:
                try:
                    produce(sink, m.value(), m.key())
                    break
                except BufferError:
                    poll(0.01)
            pending = True
        poll(0)
        if pending and time.monotonic() >= next_commit:
            producer.flush(30)
            consumer.commit(asynchronous=False)
            pending = False
            next_commit = time.monotonic() + args.commit_interval
    producer.flush(30)
    consumer.close()


if __name__ == "__main__":
    main()
