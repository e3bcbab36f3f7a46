"""Delay from a violating syscall to isolation in effect, on real processes.

    python -m benchmarks.procshim_delay [--runs 30] [--out benchmarks/results/procshim_delay.json]

A real engine worker (`trustctl worker`, TRUST_FETCH_WAIT_MS=10, the
default) runs on the local stack with its own topic prefix, app id and Redis
prefix, and a policy whose `openat` of a path containing `forbidden` is a
violation with `violation_action: quarantine, isolation_level: network`.
Each run starts a small Python program under `trustctl shim`; the program

1. connects a UDP socket to 127.0.0.1:9 (allowed: the network works),
   (then waits `--warmup` seconds, 0 by default),
2. opens the forbidden path (the violating syscall; the shim lets it run),
3. re-connects that socket every millisecond until connect fails with EPERM.

Two figures per run:

- `program_ms`: from just before the violating `open` to the first EPERM,
  measured by the program itself (monotonic clock): what the workload sees;
- `delay_ms`: the `deny` EnforcementAction's own figure on
  `trust.enforcement`: from the violating event (its timestamp, taken when
  the shim received the call) to the shim answering a connect with EPERM.

Both include up to one 1 ms poll interval of the program.  Needs root.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
import uuid
from pathlib import Path


from benchmarks.pipeline_kit import wait_for
from streams.procshim.actuator import parse_time

POLICY = """
version: procshim-delay-1
default_action: allow
policies:
  openat:
    arg_constraints: {1: "(?!.*forbidden).*"}
    violation_action: quarantine
    isolation_level: network
"""
PROGRAM = """
import errno, json, socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("127.0.0.1", 9))                       # allowed before the violation
time.sleep({warmup})
t0 = time.monotonic()
open({path!r}).close()                            # the violation: quarantine, network
tries = 0
while time.monotonic() - t0 < {deadline}:
    tries += 1
    try:
        s.connect(("127.0.0.1", 9))
    except OSError as exc:
        if exc.errno != errno.EPERM:
            raise
        print(json.dumps({{"program_ms": (time.monotonic() - t0) * 1000, "tries": tries}}))
        raise SystemExit(0)
    time.sleep(0.001)
raise SystemExit(3)
"""
TRUSTCTL = str(Path(sys.executable).with_name("trustctl"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



def health(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            return json.loads(r.read())
    except Exception:  # starting, 503, nothing listening yet
        return {}


def read_all(settings, kind: str, schema: str, stamp: bool = False) -> list[dict]:
    """Every record on one of the lane's topics now."""
    from streams.codec.avro import codec
    from streams.kafka.read import read_to_end

    dec, out = codec(schema).decode, []
    for m in read_to_end(settings, settings.topic(kind)):
        rec = dec(m.value())
        if stamp:
            rec["_broker_ts"] = m.timestamp()[1] / 1000
        out.append(rec)
    return out


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def summary(values: list[float]) -> dict:
    return {"p50": round(statistics.median(values), 2), "p99": round(pct(values, 99), 2),
            "min": round(min(values), 2), "max": round(max(values), 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--warmup", type=float, default=0.0,
                    help="seconds the program waits between its start-up and the violation")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/procshim_delay.json"))
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("needs root (seccomp user notification, pidfd_getfd)", file=sys.stderr)
        return 2
    from confluent_kafka.admin import AdminClient

    from streams.kafka.admin import ensure_topics
    from streams.policy.loader import load_policy_file
    from streams.policy_topic import publish
    from streams.settings import Settings

    tag = f"delay-{uuid.uuid4().hex[:6]}"
    env = dict(os.environ, TRUST_TOPIC_PREFIX=f"bench.{tag}.", TRUST_APP_ID=f"bench-{tag}",
               TRUST_REDIS_PREFIX=f"bench:{tag}:", TRUST_WEB_PORT=str(free_port()),
               TRUST_FETCH_WAIT_MS=os.environ.get("TRUST_FETCH_WAIT_MS", "10"))
    settings = Settings.from_env(env)
    ensure_topics(settings)
    work = Path(tempfile.mkdtemp(prefix="procshim-delay-"))
    policy = work / "policy.yaml"
    policy.write_text(POLICY)
    forbidden = work / "forbidden-secret"
    forbidden.write_text("s3cret")
    publish(settings, load_policy_file(policy), "procshim_delay")
    log = open(work / "worker.log", "ab")
    worker = subprocess.Popen([TRUSTCTL, "worker"], env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    runs: list[dict] = []
    try:
        wait_for("the worker ready on procshim-delay-1",
                 lambda: (health(settings.web_port).get("status") == "ok"
                          and health(settings.web_port).get("policy_version") == "procshim-delay-1"))
        code = textwrap.dedent(PROGRAM.format(path=str(forbidden), deadline=10, warmup=args.warmup))
        for i in range(args.runs):
            identity = f"delay-{i}-{uuid.uuid4().hex[:6]}"
            t = time.perf_counter()
            out = subprocess.run([TRUSTCTL, "shim", "-q", "--identity", identity, "--", sys.executable, "-c", code],
                                 env=env, capture_output=True, text=True, timeout=120)
            wall = time.perf_counter() - t
            if out.returncode != 0:
                raise RuntimeError(f"run {i} exited {out.returncode}: {out.stdout[-300:]} {out.stderr[-800:]}")
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row.update(identity=identity, wall_s=round(wall, 3))
            runs.append(row)
            print(f"run {i:3d}: program {row['program_ms']:7.2f} ms  ({row['tries']} connects)", flush=True)
        ids = {r["identity"]: r for r in runs}

        def matched():
            denies = {a["identity_id"]: a for a in read_all(settings, "enforcement", "EnforcementAction")
                      if a["action"] == "deny" and a["identity_id"] in ids}
            return denies if len(denies) == len(ids) else None
        commands = {q["command_id"]: q for q in read_all(settings, "quarantine", "QuarantineCommand")}
        # when the violating event's batch reached the broker (CreateTime: the shim's produce call)
        sent = {e["event_id"]: b["_broker_ts"] for b in read_all(settings, "events", "SyscallEventBatch", True)
                for e in b["events"]}
        decided = {d["event_id"]: (d["timestamp"], b["_broker_ts"])
                   for b in read_all(settings, "decisions", "DecisionBatch", True) for d in b["decisions"]}
        for ident, a in wait_for("every run's deny action", matched, timeout=60).items():
            row = ids[ident]
            row["delay_ms"] = a["delay_ms"]
            row["syscall"] = a["syscall"]
            # the split: violating event -> the engine's command stamped, the rest in the shim
            q = commands.get(a["command_id"])
            if q is not None:
                event_at = parse_time(a["timestamp"]) - a["delay_ms"] / 1000
                row["engine_ms"] = round((parse_time(q["timestamp"]) - event_at) * 1000, 2)
                if q["event_id"] in decided:
                    row["decided_ms"] = round((parse_time(decided[q["event_id"]][0]) - event_at) * 1000, 2)
                if q["event_id"] in sent:
                    row["produced_ms"] = round((sent[q["event_id"]] - event_at) * 1000, 2)
    finally:
        worker.terminate()
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
        admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
        mine = [t for t in admin.list_topics(timeout=10).topics
                if t.startswith(settings.topic_prefix) or t.startswith(settings.app_id + "-")]
        for f in (admin.delete_topics(mine, operation_timeout=30).values() if mine else ()):
            try:
                f.result(30)
            except Exception:  # deleted already: not this benchmark's concern
                pass
    result = {
        "method": "violating openat -> quarantine (network) -> first EPERM on a UDP connect retried every 1 ms",
        "runs": len(runs), "warmup_s": args.warmup, "fetch_wait_ms": int(env["TRUST_FETCH_WAIT_MS"]),
        "program_ms": summary([r["program_ms"] for r in runs]),
        "delay_ms": summary([r["delay_ms"] for r in runs]),
        "produced_ms": summary([r["produced_ms"] for r in runs if "produced_ms" in r] or [float("nan")]),
        "decided_ms": summary([r["decided_ms"] for r in runs if "decided_ms" in r] or [float("nan")]),
        "engine_ms": summary([r["engine_ms"] for r in runs if "engine_ms" in r] or [float("nan")]),
        "samples": runs,
    }
    print(f"\nprogram side (violating open -> first EPERM): {result['program_ms']}")
    print(f"enforcement delay_ms (violating event -> deny):  {result['delay_ms']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"of which violating event -> its batch produced to trust.syscall-events: {result['produced_ms']}")
    print(f"of which violating event -> quarantine command stamped: {result['engine_ms']}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
