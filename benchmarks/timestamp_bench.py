"""Cost of the docs/behaviour.md §1.1 timestamp check on the hot path (every event).

    python -m benchmarks.timestamp_bench             # ~10 s
    python -m benchmarks.timestamp_bench --rounds 20

Times `streams.events.is_rfc3339` on the forms events carry (UTC with
microseconds, an offset, a day 29-31 that takes the memoised calendar check)
and on a refused value, against `context_from_record` of a whole event for
scale.  Best of several rounds (shared, noisy machines: the best round is the
check's own cost); each figure includes the ~20 ns of the timing loop's call.
"""

from __future__ import annotations

import argparse
import timeit

from streams.events import context_from_record, is_rfc3339

FORMS = {
    "UTC, microseconds (the shims' form)": "2026-11-28T12:00:00.000000Z",
    "offset, no fraction": "2026-11-28T12:00:00+02:00",
    "day 30 (memoised calendar check)": "2026-11-30T12:00:00.000000Z",
    "refused (`yesterday`)": "yesterday",
}
EVENT = {"event_id": "e-1", "syscall": "open_file", "args": ["/tmp/x", "r"],
         "identity": {"id": "svc-payments", "process_id": "p-17", "container_id": "c-3"},
         "trust_vector": {"score": 0.9}, "timestamp": FORMS["UTC, microseconds (the shims' form)"]}


def best_ns(fn, number: int, rounds: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=rounds)) / number * 1e9


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--number", type=int, default=200_000)
    args = parser.parse_args(argv)
    for label, text in FORMS.items():
        print(f"is_rfc3339, {label:<40} {best_ns(lambda t=text: is_rfc3339(t), args.number, args.rounds):6.0f} ns")
    print(f"context_from_record, whole event{'':<27} "
          f"{best_ns(lambda: context_from_record(EVENT), args.number, args.rounds):6.0f} ns")


if __name__ == "__main__":
    main()
