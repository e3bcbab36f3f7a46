"""A shim as its own process, to be killed -9: `python -m tests.faults.shim_proc ...`.

Sends linux-strace copies from `--start-copy` through the shim SDK at
`--rate` events/s until SIGTERM (or SIGKILL).  Every event is written to
`--sent-file` (one JSON line, flushed) *before* it is handed to the shim, so
the parent knows exactly what this process was given, up to the kill.

Seq numbers survive a restart the way a careful shim keeps them: it reserves
them in blocks in `--seq-file` (written and fsynced before any seq of the
block is used) and a restarted shim with the same id starts at the reserved
mark, above every seq the killed one could have sent.  Batches the killed
process held then show up at the engine as a gap in that shim's seqs on
their partition, instead of being covered by reused numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
from pathlib import Path

from streams.settings import Settings
from streams.shim import ShimProducer
from tests.faults.harness import pace
from tests.faults.workload import strace_copies

BLOCK = 1000  # seqs reserved at a time


def reserve(path: Path, mark: int) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write(f"{mark}\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shim-id", required=True)
    ap.add_argument("--seq-file", type=Path, required=True)
    ap.add_argument("--sent-file", type=Path, required=True)
    ap.add_argument("--start-copy", type=int, default=0)
    ap.add_argument("--rate", type=float, default=300.0)
    args = ap.parse_args(argv)

    first = int(args.seq_file.read_text()) if args.seq_file.exists() else 0
    reserved = first + BLOCK
    reserve(args.seq_file, reserved)
    shim = ShimProducer(Settings.from_env(), shim_id=args.shim_id, first_seq=first)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    out = open(args.sent_file, "a", buffering=1)

    def sent(event: dict) -> None:
        nonlocal reserved
        out.write(json.dumps(event) + "\n")
        out.flush()
        if shim.next_seq >= reserved - BLOCK // 2:  # keep a half block ahead of any batch
            reserved += BLOCK
            reserve(args.seq_file, reserved)

    pace(strace_copies(args.start_copy), shim, args.rate, stop, sent)
    shim.close(60)


if __name__ == "__main__":
    main()
