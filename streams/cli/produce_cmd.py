"""`trustctl produce` and `trustctl simulate`: be a kernel shim from the command line."""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("produce", help="publish a JSON-lines or Avro file of events through the shim SDK")
    p.add_argument("--events", required=True, type=Path)
    p.add_argument("--shim-id", help="shim id on the batches (default host-pid)")
    p.set_defaults(func=produce)
    s = subparsers.add_parser(
        "simulate", help="generate realistic mixed shim traffic",
        description="Realistic mixed shim traffic through the shim SDK, paced in real time; each event is "
                    "stamped with the wall clock as it is sent, so `trustctl tail decisions --stats` shows "
                    "the decision latency.")
    s.add_argument("--rate", type=float, default=1000.0, help="events per second (default 1000)")
    s.add_argument("--identities", type=int, default=50,
                   help="simulated processes, spread over the 7 tool identities (default 50)")
    s.add_argument("--duration", type=float, default=10.0, help="seconds (default 10)")
    s.add_argument("--seed", type=int, default=7)
    s.set_defaults(func=simulate)


def _report(shim, started: float) -> None:
    c = shim.counters
    took = time.monotonic() - started
    print(f"sent {c.events_sent} events in {c.batches_sent} batches in {took:.1f}s; "
          f"delivered {c.events_delivered}, failed {c.events_failed}", file=sys.stderr)


def produce(args: argparse.Namespace) -> int:
    from streams.errors import TrustError
    from streams.replay import Progress, iter_records
    from streams.shim import ShimProducer

    progress = Progress(args.events.stat().st_size)
    shim = ShimProducer(shim_id=args.shim_id)
    started = time.monotonic()
    bad = 0
    try:
        for number, rec, done in iter_records(args.events):
            try:
                if isinstance(rec, Exception):
                    raise rec
                shim.send(_complete(rec))
            except TrustError as exc:
                bad += 1
                print(f"{args.events}:{number}: skipped: {exc}", file=sys.stderr)
            if number % 4096 == 0:
                progress(number, done)
    finally:
        progress.close()
        shim.close()
    _report(shim, started)
    return 1 if shim.counters.events_failed else 0


def _complete(rec: dict) -> dict:
    """Offline lines may omit optional fields; the Avro record has them all."""
    rec.setdefault("trust_vector", None)
    rec.setdefault("execution_dna", None)
    ident = rec.get("identity")
    if isinstance(ident, dict):
        ident.setdefault("container_id", None)
        ident.setdefault("tenant", None)
        ident.setdefault("labels", {})
    return rec


def simulate(args: argparse.Namespace) -> int:
    from streams.shim import ShimProducer
    from streams.simulate import WallClock, generate

    shim = ShimProducer()
    total = int(args.rate * args.duration)
    stamp = WallClock()
    started = time.monotonic()
    try:
        for i, event in enumerate(itertools.islice(generate(args.identities, args.seed), total)):
            # The event happens now: decision `timestamp` - `event_timestamp`
            # is then the time it took through the shim, Kafka and the engine.
            event["timestamp"] = stamp()
            shim.send(event)
            # Pace to the rate, serving batches and delivery reports meanwhile.
            while (ahead := (i + 1) / args.rate - (time.monotonic() - started)) > 0.001:
                shim.poll(min(ahead, 0.05))
    finally:
        shim.close()
    _report(shim, started)
    return 1 if shim.counters.events_failed else 0
