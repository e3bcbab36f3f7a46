"""Coverage-guided fuzzing with atheris (libFuzzer), target by target:

    python -m tests.fuzz.atheris_main events -max_total_time=60
    python -m tests.fuzz.atheris_main policy -max_total_time=60
    python -m tests.fuzz.atheris_main http -max_total_time=60

Targets are those of tests/fuzz/targets.py: any exception but the project's
own (`TrustError`) is a crash, reported by libFuzzer with the input that
caused it.  Without a corpus directory among the arguments, a fresh one is
seeded with real inputs (linux-strace batches, the example policy), so the
mutations start from the shape of the real thing.  libFuzzer's last lines
("Done N runs in S second(s)") are the figures in docs/reliability.md.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris

with atheris.instrument_imports(include=["streams"]):
    from streams.codec.avro import codec
    from tests.fuzz import targets

from tests.faults.workload import EXAMPLE_POLICY, STRACE, full_event, strace_events  # noqa: E402

_api = None


def events(data: bytes) -> None:
    targets.event_bytes(data)


def policy(data: bytes) -> None:
    targets.policy_source(data)


def http(data: bytes) -> None:
    global _api
    if _api is None:
        _api = targets.make_api()
    fdp = atheris.FuzzedDataProvider(data)
    handler = targets.HANDLERS[fdp.ConsumeIntInRange(0, len(targets.HANDLERS) - 1)]
    part = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 80))
    query = {fdp.ConsumeUnicodeNoSurrogates(8): fdp.ConsumeUnicodeNoSurrogates(20)
             for _ in range(fdp.ConsumeIntInRange(0, 2))}
    auth = [f"Bearer {targets.TOKEN}", "Bearer wrong", "", fdp.ConsumeUnicodeNoSurrogates(30)]
    headers = {"Authorization": auth[fdp.ConsumeIntInRange(0, 3)]} if fdp.ConsumeBool() else {}
    client = fdp.ConsumeUnicodeNoSurrogates(12)
    targets.http_request(_api, handler, part, query, headers, fdp.ConsumeBytes(70_000), client)


def seeds(target: str, corpus: Path) -> None:
    corpus.mkdir(parents=True, exist_ok=True)
    if target == "events":
        batch = codec("SyscallEventBatch")
        evs = [full_event(e) for e in strace_events()[:40]]
        for i in range(0, 40, 8):
            (corpus / f"batch-{i}").write_bytes(batch.encode({"shim_id": "seed", "seq": i, "events": evs[i:i + 8]}))
    elif target == "policy":
        (corpus / "example.yaml").write_bytes(EXAMPLE_POLICY.read_bytes())
        (corpus / "strace.yaml").write_bytes((STRACE / "policy.yaml").read_bytes())
        (corpus / "small.json").write_bytes(b'{"version": "v", "policies": {"read": {"arg_constraints": {"0": "a.*"}}}}')
    else:
        (corpus / "recover").write_bytes(b"\x07" + b"p-1" * 3 + b'{"reason": "r", "actor": "a"}')


def main() -> None:
    target, args = sys.argv[1], sys.argv[2:]
    fn = {"events": events, "policy": policy, "http": http}[target]
    if not any(not a.startswith("-") for a in args):
        corpus = Path(tempfile.mkdtemp(prefix=f"fuzz-{target}-"))
        seeds(target, corpus)
        args.append(str(corpus))
    atheris.Setup([sys.argv[0], *args], fn)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
