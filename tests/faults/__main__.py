"""`python -m tests.faults report [RESULTS]`: the fault suite's results as Markdown tables.

One table per scenario (its latest run in the results file, by default
`build/faults/results.jsonl`, what `./run faults` writes), as they go into
docs/reliability.md, "Fault suite results".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tests.faults.harness import RESULTS


def _n(x) -> str:
    return f"{x:,}" if isinstance(x, int) else str(x)


def _seconds(x) -> str:
    return "never" if x is None else f"{x:.1f} s"


def table(r: dict) -> str:
    a = r["account"]
    recs = r.get("recovery") or []
    if recs:
        firsts = [_seconds(x["first_decision_s"]) for x in recs]
        alls = [_seconds(x["all_partitions_s"]) for x in recs]
        recovery = "; ".join(f"{f} / {b}" for f, b in zip(firsts, alls))
    else:
        recovery = "n/a (no engine fault)"
    fields = ", ".join(f"{k} {v:,}" for k, v in a.get("mismatch_fields", {}).items())
    lines = [
        f"### {r['scenario']}",
        "",
        f"Run {r.get('when', '?')[:16].replace('T', ' ')} UTC, commit `{r.get('commit', '?')}`, "
        f"{r.get('rate', 0):.0f} events/s" + (f", {r['duration_s']:.0f} s of traffic" if r.get("duration_s") else "")
        + ".",
        "",
        "| sent | decided | missing | duplicates (events) | differing duplicates | mismatches vs replay "
        "| recovery: first decision / every partition |",
        "|---:|---:|---:|---:|---:|---:|---|",
        f"| {_n(a['sent'])} | {_n(a['decided'])} | {_n(a['missing'])} | {_n(a['duplicates'])} "
        f"({_n(a['duplicated_events'])}) | {_n(a['differing_duplicates'])} | {_n(a['mismatches'])}"
        f"{f' ({fields})' if fields else ''} | {recovery} |",
        "",
    ]
    notes = []
    if recs:
        notes.append("faults at " + ", ".join(f"t+{x['at_s']:.0f} s ({x['fault']})" for x in recs))
    gaps = r.get("seq_gaps") or []
    if gaps:
        notes.append(f"{len(gaps)} seq gap(s) in the answered batches: "
                     + ", ".join(f"partition {p} after seq {a_} up to {b}" for _, p, a_, b in gaps[:6])
                     + (" ..." if len(gaps) > 6 else ""))
    for key, what in (("broker_down_s", "broker down"), ("redis_down_s", "redis down")):
        if key in r:
            notes.append(f"{what} {r[key]} s")
    if "decided_while_redis_down" in r:
        notes.append(f"{_n(r['decided_while_redis_down'])} decisions and {r['quarantines_while_redis_down']} "
                     "quarantines made while redis was down")
    if "redzone" in r:
        z = r["redzone"]
        notes.append(f"redzone after: {z['actual']} processes, expected {z['expected']} (replay); lost "
                     f"{len(z['lost'])}, extra {len(z['extra'])}, differing {len(z['differing'])}")
    if "lost_in_killed_shim" in r:
        notes.append(f"{r['sent_before_kill']:,} events handed to the killed shim, {r['lost_in_killed_shim']} "
                     f"never reached the engine (partitions {r['partitions_with_loss']}); the engine's "
                     f"`trust_seq_gaps_total` = {r['engine_seq_gaps']:.0f}")
    shim = r.get("shim")
    if shim and (shim.get("events_failed") or shim.get("unflushed_batches")):
        notes.append(f"shim: {shim['events_failed']} events failed, {shim['unflushed_batches']} batches unflushed")
    if r.get("notes"):
        notes.extend(r["notes"])
    if a.get("differing_duplicates") or a.get("mismatches"):
        notes.append(f"of the ids differing from replay, {a.get('first_copy_mismatches', '?')} differ in their first "
                     f"decision, {a.get('later_copy_mismatches', '?')} in a redelivered copy")
    for event_id, values in (a.get("duplicate_examples") or [])[:2]:
        shown = "; ".join(f"{f}: replay {v[0]}, copies {', '.join(map(str, v[1:]))}" for f, v in values.items())
        notes.append(f"e.g. `{event_id}`: {shown}")
    lines += [f"- {n}" for n in notes]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.faults")
    sub = ap.add_subparsers(dest="cmd", required=True)
    rep = sub.add_parser("report", help="Markdown tables of the latest run of each scenario")
    rep.add_argument("results", nargs="?", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if not args.results.exists():
        print(f"no results at {args.results} (run `./run faults` first)", file=sys.stderr)
        return 1
    latest: dict[str, dict] = {}
    for line in args.results.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            latest[r["scenario"]] = r
    print("\n".join(table(r) for r in latest.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
