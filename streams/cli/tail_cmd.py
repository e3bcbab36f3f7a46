"""`trustctl tail`: decoded records of an output topic, one JSON line each.

What a downstream consumer or an auditor looks at first.  Batches are
unrolled (one line per decision); bytes are shown as base64.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time

from streams.topics import BY_KIND as KINDS  # command word = topic kind


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("tail", help="print decoded records of a topic as JSON lines")
    p.add_argument("what", choices=sorted(KINDS))
    p.add_argument("-f", "--follow", action="store_true", help="keep waiting for new records")
    p.add_argument("-n", "--limit", type=int, help="stop after this many lines")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the broker")
    p.add_argument("--deadline", type=float, help="with --follow: give up after this many seconds")
    p.set_defaults(func=run)


def _jsonable(value):
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def run(args: argparse.Namespace) -> int:
    from confluent_kafka import TopicPartition

    from streams.codec.avro import codec
    from streams.errors import TrustError
    from streams.kafka import clients
    from streams.settings import Settings

    settings = Settings.from_env()
    spec = KINDS[args.what]
    topic, batch_field = settings.topic(spec.kind), spec.batch_field
    from streams import command_signature

    # commands and redzone events written before their signature fields still decode
    decode = (lambda v: command_signature.decode(spec.schema, v)) if spec.schema in command_signature.PURPOSES \
        else codec(spec.schema).decode
    consumer = clients.consumer(settings, "trustctl-tail")
    printed = 0
    try:
        meta = consumer.list_topics(topic, timeout=args.timeout)
        if meta.topics[topic].error is not None:
            raise TrustError(f"topic `{topic}` is not available: {meta.topics[topic].error}")
        parts = sorted(meta.topics[topic].partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=args.timeout) for p in parts}
        consumer.assign([TopicPartition(topic, p, ends[p][0]) for p in parts])
        remaining = {p for p in parts if ends[p][1] > ends[p][0]}
        give_up = time.monotonic() + args.deadline if args.deadline else None
        while args.follow or remaining:
            if give_up is not None and time.monotonic() > give_up:
                print(f"trustctl: {printed} lines before the deadline", file=sys.stderr)
                return 1
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                print(f"trustctl: {msg.error()}", file=sys.stderr)
                continue
            if msg.offset() >= ends[msg.partition()][1] - 1:
                remaining.discard(msg.partition())
            try:
                record = decode(msg.value())
            except TrustError as exc:
                print(f"trustctl: partition {msg.partition()} offset {msg.offset()}: {exc}", file=sys.stderr)
                continue
            for line in (record[batch_field] if batch_field else [record]):
                sys.stdout.write(json.dumps(_jsonable(line)) + "\n")
                printed += 1
                if args.limit and printed >= args.limit:
                    return 0
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0
