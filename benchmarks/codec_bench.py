"""Avro codec speed on the hot path: the figures behind docs/behaviour.md §1.1's batching.

    python -m benchmarks.codec_bench            # ~20 s
    python -m benchmarks.codec_bench --rounds 50

Measures, with the project's codecs (fastavro underneath):

* decode of one 100-event SyscallEventBatch (what the engine does per message);
* encode of one 100-decision DecisionBatch (what it sends back);
* the same in Confluent wire format, and the strict ``check`` of a batch.

Records are realistic (identity with labels, trust vector, two args).  Runs
are interleaved and the best of many rounds is reported, because the CI and
dev machines are shared and noisy; the best round is the codec's own cost.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

from streams.codec import codec

IDENTITY = {"id": "svc-payments", "process_id": "p-17", "container_id": "c-3",
            "tenant": "acme", "labels": {"team": "pay"}}
TS = "2026-11-28T12:00:00.000000Z"


def _event(i: int) -> dict:
    return {"event_id": f"e-{i}", "syscall": "open_file", "args": ["/tmp/x", "r"],
            "identity": IDENTITY, "trust_vector": {"score": 0.9}, "execution_dna": None,
            "timestamp": TS}


def _decision(i: int) -> dict:
    return {"event_id": f"e-{i}", "syscall": "open_file", "args": ["/tmp/x", "r"],
            "identity": IDENTITY, "allowed": i % 10 != 0, "action": "allow" if i % 10 else "block",
            "reason_code": None if i % 10 else "arg_constraint",
            "reason": "compliant with policy for open_file", "trust_score": 0.8,
            "policy_version": "2026-11-28.1", "mode": "enforce", "enforced": True,
            "timestamp": TS, "event_timestamp": TS}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--size", type=int, default=100, help="events / decisions per batch")
    args = parser.parse_args(argv)

    batch = {"shim_id": "host-1", "seq": 42, "events": [_event(i) for i in range(args.size)]}
    decisions = {"shim_id": "host-1", "seq": 42, "partition": 3,
                 "decisions": [_decision(i) for i in range(args.size)]}
    plain_in, wire_in = codec("SyscallEventBatch"), codec("SyscallEventBatch", schema_id=1)
    plain_out, wire_out = codec("DecisionBatch"), codec("DecisionBatch", schema_id=2)
    plain_bytes, wire_bytes = plain_in.encode(batch), wire_in.encode(batch)

    cases: dict[str, Callable[[], object]] = {
        "decode SyscallEventBatch": lambda: plain_in.decode(plain_bytes),
        "decode SyscallEventBatch (wire format)": lambda: wire_in.decode(wire_bytes),
        "encode DecisionBatch": lambda: plain_out.encode(decisions),
        "encode DecisionBatch (wire format)": lambda: wire_out.encode(decisions),
        "check SyscallEventBatch (strict)": lambda: plain_in.check(batch),
    }
    best = dict.fromkeys(cases, float("inf"))
    for _ in range(args.rounds):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    print(f"batch of {args.size}: {len(plain_bytes)} bytes in, "
          f"{len(plain_out.encode(decisions))} bytes out; best of {args.rounds} rounds")
    for name, seconds in best.items():
        print(f"  {name:40s} {seconds * 1e6:8.0f} us/batch  {seconds * 1e6 / args.size:6.2f} us/item")


if __name__ == "__main__":
    main()
