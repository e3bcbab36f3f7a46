"""A custom validator that raises or returns a non-bool fails closed (docs/behaviour.md §2.2).

The event gets check 7's failure (`custom_validator`) with a reason naming the
validator and the error; later events are evaluated as usual, offline and in
the decide agent.
"""

from __future__ import annotations

import pytest

from streams.agents.decide import BatchDecider, Source
from streams.codec.avro import codec
from streams.engine import TrustEngine
from streams.policy import load_policy, validators
from streams.policy.compiled import guarded_validator
from streams.policy.evaluate import evaluate
from streams.policy.model import Action, ReasonCode
from streams.redzone.memory import InMemoryRedzone
from streams.redzone.view import LocalRedzoneView
from tests.conftest import make_ctx

NOW = "2026-11-28T12:00:00.000000Z"


def divides(ctx) -> bool:
    """Raises ZeroDivisionError on an argument `0`, else True."""
    return all(1 / int(a) > 0 for a in ctx.args)


def counts(ctx):
    """Returns the number of arguments: truthy, but not a bool."""
    return len(ctx.args)


def picky(ctx) -> bool:
    """A well-behaved validator: refuses `/etc/...`."""
    return not any(a.startswith("/etc/") for a in ctx.args)


@pytest.fixture(autouse=True)
def registry(monkeypatch):
    monkeypatch.setattr(validators, "_registry", dict(validators._registry))
    for name, fn in (("divides", divides), ("counts", counts), ("picky", picky)):
        validators.register(name, fn)


def policy(validator: str):
    return load_policy({"version": "v-fc", "policies": {"open_file": {"custom_validator": validator}}})


def run(cp, *args: str):
    return evaluate(cp, make_ctx("open_file", list(args)), None, None, NOW)


def test_validator_that_raises_fails_the_event_naming_the_error():
    r = run(policy("divides"), "0")
    assert r.reason_code is ReasonCode.CUSTOM_VALIDATOR
    assert r.allowed is False and r.action is Action.BLOCK
    assert r.reason == "validator `divides` failed: ZeroDivisionError: division by zero"


def test_validator_that_raises_leaves_later_events_to_their_own_verdict():
    cp = policy("divides")
    results = [run(cp, a) for a in ("1", "0", "2", "x", "3")]
    assert [r.reason_code for r in results] == [None, ReasonCode.CUSTOM_VALIDATOR, None,
                                                  ReasonCode.CUSTOM_VALIDATOR, None]
    assert "ValueError: invalid literal for int()" in results[3].reason


@pytest.mark.parametrize("args, shown", [(("a",), "1"), ((), "0")])
def test_validator_returning_a_non_bool_fails_the_event(args, shown):
    r = run(policy("counts"), *args)  # 1 is truthy, 0 falsy: neither is a verdict
    assert r.reason_code is ReasonCode.CUSTOM_VALIDATOR and r.allowed is False
    assert r.reason == f"validator `counts` failed: it returned `{shown}`, not a bool"


def test_a_well_behaved_validator_keeps_its_verdicts_and_reason():
    cp = policy("picky")
    assert run(cp, "/tmp/a").reason_code is None
    refused = run(cp, "/etc/shadow")
    assert refused.reason_code is ReasonCode.CUSTOM_VALIDATOR
    assert refused.reason == "custom validator picky refused open_file"


def test_guard_makes_a_multi_line_error_one_line():
    def boom(ctx):
        raise RuntimeError("first line\nsecond line")

    failure = guarded_validator("boom", boom, (ReasonCode.CUSTOM_VALIDATOR, "refused"))(make_ctx())
    assert failure == (ReasonCode.CUSTOM_VALIDATOR, "validator `boom` failed: RuntimeError: first line second line")


def test_engine_penalises_the_failed_event_and_goes_on():
    engine = TrustEngine(policy("divides"), InMemoryRedzone())
    outcomes = [engine.decide(make_ctx("open_file", [a], event_id=f"e-{i}"), NOW) for i, a in enumerate("101")]
    assert [o.decision["allowed"] for o in outcomes] == [True, False, True]
    assert outcomes[1].violation["reason_code"] == "custom_validator"
    assert [o.decision["trust_score"] for o in outcomes] == [0.7, 0.703, 0.553]


def test_decide_agent_keeps_going_after_a_validator_error():
    engine = TrustEngine(policy("divides"), LocalRedzoneView(), trust={})
    decider = BatchDecider(engine, {}, clock=lambda: "2026-11-28T13:00:00.000000Z")

    def event(i: int, arg: str) -> dict:
        return {"event_id": f"e-{i}", "syscall": "open_file", "args": [arg],
                "identity": {"id": "svc-a", "process_id": "p-1", "container_id": None, "tenant": None,
                             "labels": {}},
                "trust_vector": None, "execution_dna": None, "timestamp": f"2026-11-28T12:00:0{i}Z"}

    enc = codec("SyscallEventBatch").encode
    src = Source("trust.syscall-events", 0, 1)
    first = decider.handle(b"svc-a", enc({"shim_id": "s", "seq": 1, "events": [event(1, "1"), event(2, "0"),
                                                                               event(3, "2")]}), src)
    second = decider.handle(b"svc-a", enc({"shim_id": "s", "seq": 2, "events": [event(4, "4")]}), src)

    def decisions(emits):
        return [d for e in emits if e.kind == "decisions" for d in codec("DecisionBatch").decode(e.value)["decisions"]]

    got = decisions(first) + decisions(second)
    assert [(d["event_id"], d["allowed"], d["reason_code"]) for d in got] == [
        ("e-1", True, None), ("e-2", False, "custom_validator"), ("e-3", True, None), ("e-4", True, None)]
    assert got[1]["reason"] == "validator `divides` failed: ZeroDivisionError: division by zero"
    [violation] = [codec("Violation").decode(e.value) for e in first if e.kind == "violations"]
    assert violation["event_id"] == "e-2" and violation["reason_code"] == "custom_validator"
    assert not [e for e in first + second if e.kind == "dlq"]
