"""The compiled engine's caches never change a decision: cleared, cold or warm."""

from __future__ import annotations

import random

from streams.policy import compiled, evaluate, validators
from streams.policy.model import SyscallContext
from tests.conftest import make_ctx, make_policy

POLICIES = {
    "open": {"min_trust_score": 0.5, "arg_constraints": {0: "/tmp/.*"}, "custom_validator": "no_path_traversal"},
    "x*": {"allowed_identities": ["svc-*"], "denied_identities": ["svc-bad*"]},
}


def decisions(cp, events):
    return [evaluate(cp, ctx, t, None, "now")[:9] for ctx, t in events]


def workload(n=3000, seed=3):
    rng = random.Random(seed)
    out = []
    for i in range(n):
        syscall = rng.choice(["open", "xattr", "xfer", "read"])
        args = [rng.choice(["/tmp/a", "/tmp/../etc", "/etc/x", f"/tmp/{i % 97}"])]
        ident = rng.choice(["svc-a", "svc-bad1", "other", f"svc-{i % 50}"])
        t = rng.choice([None, 0.4, 0.55, round(rng.random(), 6)])
        out.append((make_ctx(syscall, args, identity=ident), t))
    return out


def test_tiny_cache_limits_force_clears_and_change_nothing(monkeypatch):
    events = workload()
    expected = decisions(make_policy(POLICIES), events)
    monkeypatch.setattr(compiled, "_MEMO_LIMIT", 3)
    monkeypatch.setattr(compiled, "_ARGS_MEMO_LIMIT", 2)
    monkeypatch.setattr(compiled, "_IDENTITY_LIMIT", 2)
    cp = make_policy(POLICIES)
    assert decisions(cp, events) == expected
    assert len(cp.plans) <= 2  # the caches were really cleared along the way
    assert len(cp.after_compliant) <= 3 and len(cp.after_violation) <= 3


def test_args_given_as_a_list_decide_like_a_tuple():
    cp = make_policy(POLICIES)
    ctx = make_ctx("open", ["/tmp/a"])
    as_list = SyscallContext(*ctx[:2], list(ctx.args), *ctx[3:])
    assert evaluate(cp, as_list, None, None, "now") == evaluate(cp, ctx, None, None, "now")


def test_a_third_party_validator_is_called_on_every_event(monkeypatch):
    monkeypatch.setattr(validators, "_registry", dict(validators._registry))
    calls = []
    answers = iter([True, False])

    def flaky(ctx):
        calls.append(ctx.event_id)
        return next(answers)

    validators.register("flaky", flaky)
    cp = make_policy({"write": {"custom_validator": "flaky"}})
    first = evaluate(cp, make_ctx("write", ["same"], event_id="e-1"), None, None, "now")
    second = evaluate(cp, make_ctx("write", ["same"], event_id="e-2"), None, None, "now")
    assert calls == ["e-1", "e-2"]
    assert first.allowed and second.reason_code.value == "custom_validator"
