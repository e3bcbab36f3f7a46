"""docs/behaviour.md §2: every rule of the decision, one small test each, on tiny inline policies."""

from __future__ import annotations

import pytest

from streams.engine import TrustEngine
from streams.policy import validators
from streams.policy.evaluate import evaluate
from streams.policy.model import Action, EnforcementMode, IsolationLevel, ReasonCode
from streams.redzone.memory import InMemoryRedzone
from streams.redzone.model import Isolation

NOW = "2026-11-28T12:00:00.000000Z"


def run(cp, ctx, adaptive=None, isolation=None):
    return evaluate(cp, ctx, adaptive, isolation, NOW)


def engine(cp):
    return TrustEngine(cp, InMemoryRedzone())


# --- 1. base trust -------------------------------------------------------------------------

def test_base_trust_is_baseline_for_unseen_identity_without_vector(pol, ev):
    cp = pol({"open_file": {}}, trust_model={"baseline": 0.6})
    assert run(cp, ev()).trust_score == 0.6


def test_base_trust_takes_vector_when_below_baseline(pol, ev):
    cp = pol({"open_file": {}}, trust_model={"baseline": 0.7})
    assert run(cp, ev(score=0.42)).trust_score == 0.42


def test_base_trust_takes_baseline_when_vector_is_higher(pol, ev):
    cp = pol({"open_file": {}}, trust_model={"baseline": 0.7})
    assert run(cp, ev(score=0.99)).trust_score == 0.7


def test_base_trust_uses_adaptive_instead_of_baseline_once_seen(pol, ev):
    cp = pol({"open_file": {}}, trust_model={"baseline": 0.7})
    assert run(cp, ev(), adaptive=0.93).trust_score == 0.93
    assert run(cp, ev(), adaptive=0.31).trust_score == 0.31


def test_base_trust_is_min_of_vector_and_adaptive(pol, ev):
    cp = pol({"open_file": {}})
    assert run(cp, ev(score=0.9), adaptive=0.4).trust_score == 0.4
    assert run(cp, ev(score=0.3), adaptive=0.8).trust_score == 0.3


def test_absent_vector_counts_as_one(pol, ev):
    cp = pol({"open_file": {}}, trust_model={"baseline": 1.0})
    assert run(cp, ev()).trust_score == 1.0


# --- 2. effective trust ----------------------------------------------------------------------

def test_identity_rule_applies_only_to_matching_identity(pol, ev):
    cp = pol({"open_file": {}}, identity_rules=[{"identity_pattern": "svc-pay*", "trust_adjustment": 0.1}])
    assert run(cp, ev(identity="svc-payments")).trust_score == 0.8
    assert run(cp, ev(identity="svc-web")).trust_score == 0.7


def test_identity_rule_with_syscall_patterns_applies_only_to_those_syscalls(pol, ev):
    cp = pol({"open_file": {}, "connect": {}},
             identity_rules=[{"identity_pattern": "*", "trust_adjustment": 0.2,
                              "syscall_patterns": ["open*", "read"]}])
    assert run(cp, ev("open_file")).trust_score == 0.9
    assert run(cp, ev("connect")).trust_score == 0.7


def test_identity_rule_without_syscall_patterns_applies_to_every_syscall(pol, ev):
    cp = pol({"open_file": {}, "connect": {}},
             identity_rules=[{"identity_pattern": "svc-a", "trust_adjustment": -0.2}])
    assert run(cp, ev("open_file")).trust_score == 0.5
    assert run(cp, ev("connect")).trust_score == 0.5


def test_matching_identity_rules_are_summed(pol, ev):
    cp = pol({"open_file": {}}, identity_rules=[
        {"identity_pattern": "svc-*", "trust_adjustment": 0.1},
        {"identity_pattern": "other", "trust_adjustment": 0.5},
        {"identity_pattern": "svc-a", "trust_adjustment": 0.05},
        {"identity_pattern": "*", "trust_adjustment": -0.3},
    ])
    assert run(cp, ev(score=0.6)).trust_score == 0.45  # 0.6 + 0.1 + 0.05 - 0.3


def test_effective_trust_is_clamped_at_one(pol, ev):
    cp = pol({"open_file": {}}, identity_rules=[{"identity_pattern": "*", "trust_adjustment": 0.5}])
    assert run(cp, ev(), adaptive=0.9).trust_score == 1.0


def test_effective_trust_is_clamped_at_zero(pol, ev):
    cp = pol({"open_file": {}}, identity_rules=[{"identity_pattern": "*", "trust_adjustment": -0.9}])
    assert run(cp, ev(score=0.2)).trust_score == 0.0


def test_rounding_lets_point_seven_plus_point_one_meet_point_eight(pol, ev):
    assert 0.7 + 0.1 < 0.8  # the float trap the spec's rounding rule removes
    cp = pol({"open_file": {"min_trust_score": 0.8}},
             identity_rules=[{"identity_pattern": "*", "trust_adjustment": 0.1}])
    r = run(cp, ev())
    assert r.trust_score == 0.8
    assert r.reason_code is None and r.allowed


def test_effective_trust_is_rounded_to_six_places(pol, ev):
    cp = pol({"open_file": {}}, identity_rules=[{"identity_pattern": "*", "trust_adjustment": 0.1234567}])
    assert run(cp, ev(score=0.5)).trust_score == round(0.5 + 0.1234567, 6) == 0.623457


# --- 3. policy lookup --------------------------------------------------------------------------

def test_exact_key_beats_an_earlier_glob(pol, ev):
    cp = pol({"open*": {"denied_identities": ["*"]}, "open_file": {}})
    assert cp.lookup("open_file").key == "open_file"
    r = run(cp, ev("open_file"))
    assert r.reason_code is None
    assert run(cp, ev("openat")).reason_code is ReasonCode.IDENTITY_DENIED


def test_first_matching_glob_in_document_order_wins(pol, ev):
    cp = pol({"o*": {"min_trust_score": 0.9}, "op*": {}, "open?": {}})
    assert cp.lookup("openat").key == "o*"
    assert run(cp, ev("openat")).reason_code is ReasonCode.TRUST_BELOW_MINIMUM
    cp2 = pol({"op*": {}, "o*": {"min_trust_score": 0.9}})
    assert cp2.lookup("openat").key == "op*"
    assert run(cp2, ev("openat")).reason_code is None


def test_glob_keys_match_the_whole_name_case_sensitively(pol, ev):
    cp = pol({"op?n": {}, "[rw]*": {}})
    assert cp.lookup("open").key == "op?n"
    assert cp.lookup("openat") is None
    assert cp.lookup("OPEN") is None
    assert cp.lookup("reopen").key == "[rw]*"
    assert cp.lookup("xread") is None


def test_no_matching_key_means_no_policy(pol, ev):
    cp = pol({"open*": {}})
    assert cp.lookup("connect") is None
    r = run(cp, ev("connect"))
    assert r.reason_code is ReasonCode.NO_POLICY
    assert not r.allowed and r.action is Action.BLOCK


# --- 4. checks 1-7 and their order ---------------------------------------------------------------

def test_check1_quarantined_blocks_even_a_compliant_event(pol, ev):
    cp = pol({"open_file": {}})
    r = run(cp, ev(), isolation=Isolation.of("full"))
    assert r.reason_code is ReasonCode.QUARANTINED
    assert r.action is Action.BLOCK and not r.allowed


def test_check1_quarantined_beats_no_policy(pol, ev):
    cp = pol({})
    assert run(cp, ev("connect"), isolation=Isolation.of("full")).reason_code is ReasonCode.QUARANTINED


def test_check1_isolation_that_does_not_cover_lets_checks_continue(pol, ev):
    cp = pol({"open_file": {}, "connect": {"min_trust_score": 0.9}})
    assert run(cp, ev("open_file"), isolation=Isolation.of("network")).reason_code is None
    assert run(cp, ev("connect"), isolation=Isolation.of("filesystem")).reason_code \
        is ReasonCode.TRUST_BELOW_MINIMUM


def test_check2_no_policy_with_default_deny(pol, ev):
    r = run(pol({}, default_action="deny"), ev("mount"))
    assert r.reason_code is ReasonCode.NO_POLICY
    assert "mount" in r.reason


def test_check2_default_allow_makes_event_compliant(pol, ev):
    r = run(pol({}, default_action="allow"), ev("mount"))
    assert r.reason_code is None
    assert r.allowed and r.action is Action.ALLOW


def test_check3_identity_denied(pol, ev):
    r = run(pol({"open_file": {"denied_identities": ["svc-untrusted*"]}}), ev(identity="svc-untrusted-1"))
    assert r.reason_code is ReasonCode.IDENTITY_DENIED
    assert "svc-untrusted-1" in r.reason and "svc-untrusted*" in r.reason


def test_check3_denied_identities_absent_denies_no_one(pol, ev):
    assert run(pol({"open_file": {}}), ev(identity="anyone")).reason_code is None


def test_check4_identity_not_allowed(pol, ev):
    r = run(pol({"open_file": {"allowed_identities": ["svc-*"]}}), ev(identity="batch-1"))
    assert r.reason_code is ReasonCode.IDENTITY_NOT_ALLOWED
    assert "batch-1" in r.reason


def test_check4_allowed_identities_absent_allows_anyone(pol, ev):
    assert run(pol({"open_file": {}}), ev(identity="batch-1")).reason_code is None


def test_check4_empty_allowed_identities_allows_no_one(pol, ev):
    assert run(pol({"mount": {"allowed_identities": []}}), ev("mount")).reason_code \
        is ReasonCode.IDENTITY_NOT_ALLOWED


def test_check5_trust_below_minimum(pol, ev):
    r = run(pol({"open_file": {"min_trust_score": 0.5}}), ev(score=0.42))
    assert r.reason_code is ReasonCode.TRUST_BELOW_MINIMUM


def test_check5_trust_equal_to_minimum_passes(pol, ev):
    assert run(pol({"open_file": {"min_trust_score": 0.5}}), ev(score=0.5)).reason_code is None


def test_check5_absent_minimum_is_zero(pol, ev):
    assert run(pol({"open_file": {}}), ev(score=0.0)).reason_code is None


def test_check6_arg_constraint_full_match(pol, ev):
    cp = pol({"open_file": {"arg_constraints": {0: "/(tmp|var)/.*", 1: "r|rb"}}})
    assert run(cp, ev(args=["/tmp/x", "rb"])).reason_code is None
    # re.search / re.match would accept these; a full match must not
    assert run(cp, ev(args=["/tmp/x", "rw"])).reason_code is ReasonCode.ARG_CONSTRAINT
    assert run(cp, ev(args=["/home/tmp/x", "r"])).reason_code is ReasonCode.ARG_CONSTRAINT
    assert run(cp, ev(args=["/tmp/x", "xr"])).reason_code is ReasonCode.ARG_CONSTRAINT
    port = pol({"connect": {"arg_constraints": {1: "443"}}})
    assert run(port, ev("connect", ["h", "443"])).reason_code is None
    assert run(port, ev("connect", ["h", "4430"])).reason_code is ReasonCode.ARG_CONSTRAINT
    assert run(port, ev("connect", ["h", "1443"])).reason_code is ReasonCode.ARG_CONSTRAINT


def test_check6_arg_missing(pol, ev):
    r = run(pol({"open_file": {"arg_constraints": {1: "r"}}}), ev(args=["/tmp/x"]))
    assert r.reason_code is ReasonCode.ARG_MISSING
    assert "1" in r.reason


def test_check6_indices_are_checked_in_ascending_order(pol, ev):
    # written out of order in the document: index 0 must still be checked first
    cp = pol({"open_file": {"arg_constraints": {2: "c", 0: "a"}}})
    assert run(cp, ev(args=["x"])).reason_code is ReasonCode.ARG_CONSTRAINT  # not arg_missing (2)
    assert run(cp, ev(args=["a"])).reason_code is ReasonCode.ARG_MISSING
    assert run(cp, ev(args=["a", "zz", "x"])).reason_code is ReasonCode.ARG_CONSTRAINT
    assert run(cp, ev(args=["a", "zz", "c"])).reason_code is None


def test_check6_arg_constraint_reason_names_index_value_and_pattern(pol, ev):
    r = run(pol({"open_file": {"arg_constraints": {0: "/tmp/.*"}}}), ev(args=["/etc/shadow"]))
    assert "0" in r.reason and "/etc/shadow" in r.reason and "/tmp/.*" in r.reason


def test_check7_custom_validator_refuses(pol, ev):
    r = run(pol({"open_file": {"custom_validator": "no_path_traversal"}}), ev(args=["/tmp/../etc/passwd"]))
    assert r.reason_code is ReasonCode.CUSTOM_VALIDATOR
    assert "no_path_traversal" in r.reason


@pytest.mark.parametrize("args, ok", [
    (["/tmp/x"], True),
    (["/tmp/..x/a..b/c.."], True),
    ([".."], False),
    (["../x"], False),
    (["/tmp/.."], False),
    (["/a/../b"], False),
    (["/tmp/ok", "/tmp/../etc"], False),  # any argument
    ([], True),
])
def test_builtin_no_path_traversal(pol, ev, args, ok):
    r = run(pol({"open_file": {"custom_validator": "no_path_traversal"}}), ev(args=args))
    assert (r.reason_code is None) is ok


@pytest.mark.parametrize("args, ok", [
    (["ls -la /etc"], True),
    (["a;b"], False), (["a|b"], False), (["a&b"], False), (["a`b`"], False),
    (["$HOME"], False), (["a<b"], False), (["a>b"], False),
    (["fine", "rm -rf / ;"], False),  # any argument
    (["a(b)*?!#%"], True),
])
def test_builtin_no_shell_metachar(pol, ev, args, ok):
    r = run(pol({"exec": {"custom_validator": "no_shell_metachar"}}), ev("exec", args))
    assert (r.reason_code is None) is ok


def test_registered_validator_receives_the_context(pol, ev, monkeypatch):
    monkeypatch.setattr(validators, "_registry", dict(validators._registry))
    seen = []

    def only_tmp(ctx):
        seen.append(ctx)
        return all(a.startswith("/tmp/") for a in ctx.args)

    validators.register("only_tmp", only_tmp)
    cp = pol({"open_file": {"custom_validator": "only_tmp"}})
    assert run(cp, ev(args=["/tmp/a"])).reason_code is None
    assert run(cp, ev(args=["/etc/a"])).reason_code is ReasonCode.CUSTOM_VALIDATOR
    assert seen[0].syscall == "open_file" and seen[0].args == ("/tmp/a",)


def test_order_denied_beats_not_allowed(pol, ev):
    cp = pol({"open_file": {"allowed_identities": ["svc-*"], "denied_identities": ["batch-*"]}})
    assert run(cp, ev(identity="batch-1")).reason_code is ReasonCode.IDENTITY_DENIED


def test_order_not_allowed_beats_trust(pol, ev):
    cp = pol({"open_file": {"allowed_identities": ["svc-*"], "min_trust_score": 0.9}})
    assert run(cp, ev(identity="batch-1", score=0.1)).reason_code is ReasonCode.IDENTITY_NOT_ALLOWED


def test_order_denied_beats_trust(pol, ev):
    cp = pol({"open_file": {"denied_identities": ["svc-a"], "min_trust_score": 0.9}})
    assert run(cp, ev(score=0.1)).reason_code is ReasonCode.IDENTITY_DENIED


def test_order_trust_beats_args(pol, ev):
    cp = pol({"open_file": {"min_trust_score": 0.9, "arg_constraints": {0: "/tmp/.*"}}})
    assert run(cp, ev(args=[], score=0.1)).reason_code is ReasonCode.TRUST_BELOW_MINIMUM


def test_order_args_beat_custom_validator(pol, ev):
    cp = pol({"open_file": {"arg_constraints": {0: "/tmp/.*"}, "custom_validator": "no_path_traversal"}})
    assert run(cp, ev(args=["/etc/../x"])).reason_code is ReasonCode.ARG_CONSTRAINT
    assert run(cp, ev(args=[])).reason_code is ReasonCode.ARG_MISSING


def test_order_quarantined_beats_identity_denied(pol, ev):
    cp = pol({"open_file": {"denied_identities": ["*"]}})
    assert run(cp, ev(), isolation=Isolation.of("full")).reason_code is ReasonCode.QUARANTINED


def test_reason_names_the_values_for_trust(pol, ev):
    r = run(pol({"open_file": {"min_trust_score": 0.5}}), ev(score=0.42))
    assert r.reason == "trust 0.42 below minimum 0.5 for open_file"


# --- 5. mode ----------------------------------------------------------------------------------

def test_policy_mode_overrides_document_mode(pol, ev):
    cp = pol({"open_file": {"enforcement_mode": "audit", "min_trust_score": 0.9}}, enforcement_mode="enforce")
    r = run(cp, ev(score=0.1))
    assert r.mode is EnforcementMode.AUDIT
    assert r.allowed and not r.enforced
    assert run(cp, ev(score=0.95)).mode is EnforcementMode.AUDIT  # compliant too


def test_policy_without_mode_uses_document_mode(pol, ev):
    cp = pol({"open_file": {}}, enforcement_mode="audit")
    assert run(cp, ev()).mode is EnforcementMode.AUDIT


def test_quarantined_failure_uses_document_mode(pol, ev):
    cp = pol({"open_file": {"enforcement_mode": "permissive"}}, enforcement_mode="enforce")
    r = run(cp, ev(), isolation=Isolation.of("full"))
    assert r.mode is EnforcementMode.ENFORCE and not r.allowed


def test_no_policy_failure_uses_document_mode(pol, ev):
    cp = pol({"open*": {"enforcement_mode": "enforce"}}, enforcement_mode="audit")
    r = run(cp, ev("connect"))
    assert r.reason_code is ReasonCode.NO_POLICY
    assert r.mode is EnforcementMode.AUDIT and r.allowed and not r.enforced


def test_identity_failure_uses_policy_mode(pol, ev):
    cp = pol({"open_file": {"enforcement_mode": "audit", "denied_identities": ["*"]}})
    assert run(cp, ev()).mode is EnforcementMode.AUDIT


# --- 6. action --------------------------------------------------------------------------------

def test_compliant_action_is_allow(pol, ev):
    r = run(pol({"open_file": {}}), ev())
    assert r.action is Action.ALLOW and r.reason_code is None and r.enforced


def test_violation_without_threshold_blocks(pol, ev):
    r = run(pol({"open_file": {"min_trust_score": 0.9}}), ev(), adaptive=0.01)
    assert r.action is Action.BLOCK and not r.allowed


@pytest.mark.parametrize("action, allowed", [("warn", True), ("allow", True), ("block", False),
                                             ("quarantine", False)])
def test_violation_action_is_used_in_enforce(pol, ev, action, allowed):
    cp = pol({"open_file": {"min_trust_score": 0.9, "violation_action": action}})
    r = run(cp, ev())
    assert r.action is Action(action)
    assert r.allowed is allowed
    assert r.reason_code is ReasonCode.TRUST_BELOW_MINIMUM


def test_violation_action_beats_quarantine_threshold(pol, ev):
    cp = pol({"open_file": {"min_trust_score": 0.9, "violation_action": "block"}},
             trust_thresholds={"quarantine": 0.9})
    assert run(cp, ev()).action is Action.BLOCK


def test_quarantine_when_trust_after_penalty_below_threshold(pol, ev):
    cp = pol({"open_file": {"min_trust_score": 0.9}}, trust_thresholds={"quarantine": 0.2},
             trust_model={"violation_penalty": 0.15})
    assert run(cp, ev(), adaptive=0.3).action is Action.QUARANTINE  # 0.15 < 0.2
    assert run(cp, ev(), adaptive=0.5).action is Action.BLOCK  # 0.35 >= 0.2


def test_quarantine_threshold_compares_rounded_after_penalty(pol, ev):
    assert 0.35 - 0.15 < 0.2  # raw double is below; rounded to 6 places it equals
    cp = pol({"open_file": {"min_trust_score": 0.9}}, trust_thresholds={"quarantine": 0.2},
             trust_model={"violation_penalty": 0.15})
    assert run(cp, ev(), adaptive=0.35).action is Action.BLOCK


def test_quarantine_threshold_uses_adaptive_trust_not_effective_trust(pol, ev):
    # effective trust is low (vector 0.05) but adaptive trust after penalty (0.55) is not
    cp = pol({"open_file": {"min_trust_score": 0.9}}, trust_thresholds={"quarantine": 0.2})
    assert run(cp, ev(score=0.05)).action is Action.BLOCK
    assert run(cp, ev(score=0.9), adaptive=0.1).action is Action.QUARANTINE


def test_no_policy_failure_can_quarantine(pol, ev):
    cp = pol({}, trust_thresholds={"quarantine": 0.6})  # baseline 0.7 - 0.15 = 0.55 < 0.6
    r = run(cp, ev("mount"))
    assert r.reason_code is ReasonCode.NO_POLICY and r.action is Action.QUARANTINE
    assert r.isolation_level is IsolationLevel.FULL


def test_quarantined_failure_always_blocks(pol, ev):
    cp = pol({"open_file": {"violation_action": "quarantine"}, "*": {"violation_action": "warn"}},
             trust_thresholds={"quarantine": 1.0})
    for syscall in ("open_file", "connect"):
        r = run(cp, ev(syscall), adaptive=0.0, isolation=Isolation.of("full"))
        assert r.reason_code is ReasonCode.QUARANTINED and r.action is Action.BLOCK


# --- 7. outcome by mode (TrustEngine) -------------------------------------------------------

def test_enforce_block_outcome(pol, ev):
    e = engine(pol({"open_file": {"min_trust_score": 0.9}}))
    o = e.decide(ev(), NOW)
    assert o.decision["allowed"] is False and o.decision["action"] == "block"
    assert o.decision["enforced"] is True and o.decision["mode"] == "enforce"
    assert o.violation is not None and o.violation["enforced"] is True
    assert o.violation["reason_code"] == "trust_below_minimum"
    assert o.quarantine is None
    assert e.trust["svc-a"] == 0.55


def test_enforce_quarantine_outcome_sends_command(pol, ev):
    rz = InMemoryRedzone()
    e = TrustEngine(pol({"open_file": {"violation_action": "quarantine", "min_trust_score": 0.9,
                                       "isolation_level": "network", "forensic_mode": "metadata"}}), rz)
    o = e.decide(ev(args=["/tmp/x"]), NOW)
    assert o.decision["allowed"] is False and o.decision["action"] == "quarantine"
    assert o.violation is not None
    q = o.quarantine
    assert q is not None and q["process_id"] == "p-1" and q["identity"]["id"] == "svc-a"
    assert q["isolation_level"] == "network" and q["forensic_mode"] == "metadata"
    assert q["reason"] == o.decision["reason"]
    assert q["trace"] and q["trace"][-1]["event_id"] == "e-1" and q["trace"][-1]["args"] is None
    assert rz.isolation_of("p-1") is not None
    assert e.trust["svc-a"] == 0.55


@pytest.mark.parametrize("action", ["warn", "allow"])
def test_enforce_warn_or_allow_is_allowed_but_recorded(pol, ev, action):
    e = engine(pol({"open_file": {"min_trust_score": 0.9, "violation_action": action}}))
    o = e.decide(ev(), NOW)
    assert o.decision["allowed"] is True and o.decision["action"] == action
    assert o.violation is not None and o.quarantine is None
    assert e.trust["svc-a"] == 0.55


def test_audit_outcome_records_would_be_quarantine_without_command(pol, ev):
    rz = InMemoryRedzone()
    e = TrustEngine(pol({"open_file": {"min_trust_score": 0.9, "violation_action": "quarantine"}},
                        enforcement_mode="audit"), rz)
    o = e.decide(ev(), NOW)
    assert o.decision["allowed"] is True and o.decision["action"] == "quarantine"
    assert o.decision["enforced"] is False
    assert o.violation is not None and o.violation["enforced"] is False
    assert o.quarantine is None and rz.isolation_of("p-1") is None and rz.list() == []
    assert e.trust["svc-a"] == 0.55
    assert e.decide(ev(event_id="e-2"), NOW).decision["reason_code"] != "quarantined"


def test_permissive_outcome_has_no_record_no_command_no_trust_update(pol, ev):
    rz = InMemoryRedzone()
    e = TrustEngine(pol({"open_file": {"min_trust_score": 0.9, "violation_action": "quarantine"},
                         "read": {}}, enforcement_mode="permissive"), rz)
    o = e.decide(ev(), NOW)
    assert o.decision["allowed"] is True and o.decision["mode"] == "permissive"
    assert o.decision["enforced"] is False
    assert o.violation is None and o.quarantine is None and rz.list() == []
    assert "svc-a" not in e.trust
    e.decide(ev("read"), NOW)  # compliant: no recovery either
    assert "svc-a" not in e.trust


def test_compliant_enforce_outcome(pol, ev):
    e = engine(pol({"open_file": {}}))
    o = e.decide(ev(), NOW)
    assert o.decision["allowed"] is True and o.decision["reason_code"] is None
    assert o.violation is None and o.quarantine is None


def test_decision_record_has_spec_fields(pol, ev):
    o = engine(pol({"open_file": {}})).decide(ev(args=["/tmp/x"]), "2030-01-01T00:00:00.000000Z")
    assert list(o.decision) == ["event_id", "syscall", "args", "identity", "allowed", "action",
                                "reason_code", "reason", "trust_score", "policy_version", "mode",
                                "enforced", "timestamp", "event_timestamp"]
    assert o.decision["timestamp"] == "2030-01-01T00:00:00.000000Z"
    assert o.decision["event_timestamp"] == NOW
    assert o.decision["policy_version"] == "v1"


def test_default_allow_through_engine(pol, ev):
    e = engine(pol({}, default_action="allow"))
    o = e.decide(ev("mount"), NOW)
    assert o.decision["allowed"] is True and o.decision["action"] == "allow"
    assert o.violation is None
    assert e.trust["svc-a"] == 0.703  # 0.7 + 0.01 * (1 - 0.7)


# --- 2.3 adaptive trust updates --------------------------------------------------------------

def test_violation_penalty_floors_at_zero(pol, ev):
    r = run(pol({"open_file": {"min_trust_score": 0.9}}, trust_model={"violation_penalty": 0.15}),
            ev(), adaptive=0.1)
    assert r.trust_after == 0.0


def test_violation_penalty_is_rounded(pol, ev):
    r = run(pol({"open_file": {"min_trust_score": 0.9}}), ev())
    assert r.trust_after == 0.55  # 0.7 - 0.15 = 0.5499999999999999 before rounding


def test_recovery_moves_toward_ceiling(pol, ev):
    cp = pol({"open_file": {}}, trust_model={"recovery_rate": 0.1, "ceiling": 0.9})
    assert run(cp, ev(), adaptive=0.5).trust_after == 0.54  # 0.5 + 0.1 * (0.9 - 0.5)


def test_recovery_never_passes_ceiling(pol, ev):
    cp = pol({"open_file": {}}, trust_model={"recovery_rate": 1.0, "ceiling": 0.9})
    assert run(cp, ev(), adaptive=0.5).trust_after == 0.9


def test_decision_uses_trust_before_its_own_update(pol, ev):
    e = engine(pol({"open_file": {"min_trust_score": 0.9}}))
    first = e.decide(ev(event_id="e-1"), NOW)
    assert first.decision["trust_score"] == 0.7
    assert first.violation["trust_after"] == 0.55
    second = e.decide(ev(event_id="e-2"), NOW)
    assert second.decision["trust_score"] == 0.55
    assert e.trust["svc-a"] == 0.4


def test_trust_is_per_identity(pol, ev):
    e = engine(pol({"open_file": {"min_trust_score": 0.9}}))
    e.decide(ev(identity="svc-a"), NOW)
    assert e.decide(ev(identity="svc-b", event_id="e-2"), NOW).decision["trust_score"] == 0.7


def test_quarantined_failure_does_not_change_trust(pol, ev):
    cp = pol({"open_file": {}})
    r = run(cp, ev(), adaptive=0.4, isolation=Isolation.of("full"))
    assert r.trust_after is None
    rz = InMemoryRedzone()
    e = TrustEngine(cp, rz, trust={"svc-a": 0.4})
    rz.quarantine({"command_id": "c1", "process_id": "p-1", "identity": {"id": "svc-a"},
                   "isolation_level": "full", "forensic_mode": "full", "reason": "test"}, NOW)
    o = e.decide(ev(), NOW)
    assert o.decision["reason_code"] == "quarantined"
    assert o.violation is not None and o.quarantine is None
    assert e.trust["svc-a"] == 0.4


def test_audit_mode_updates_trust(pol, ev):
    e = engine(pol({"open_file": {"min_trust_score": 0.9}}, enforcement_mode="audit"))
    e.decide(ev(), NOW)
    assert e.trust["svc-a"] == 0.55


# --- quarantine takes effect at once; isolation coverage --------------------------------------

def test_quarantine_applies_to_the_very_next_event_of_that_process(pol, ev):
    cp = pol({"open_file": {"min_trust_score": 0.9, "violation_action": "quarantine"}, "read": {}})
    e = engine(cp)
    assert e.decide(ev(score=0.1, event_id="e-1"), NOW).quarantine is not None
    nxt = e.decide(ev("read", event_id="e-2"), NOW)
    assert nxt.decision["reason_code"] == "quarantined" and nxt.decision["allowed"] is False
    other = e.decide(ev("read", process="p-2", event_id="e-3"), NOW)
    assert other.decision["reason_code"] is None


@pytest.mark.parametrize("level, syscalls, covered, free", [
    ("full", [], ["connect", "open_file", "anything"], []),
    ("network", [], ["connect", "socket", "sendto"], ["open_file", "read", "ptrace"]),
    ("filesystem", [], ["open_file", "openat", "unlink"], ["connect", "ptrace"]),
    ("custom", ["ptrace", "exec_*"], ["ptrace", "exec_binary"], ["exec", "mmap", "connect"]),
])
def test_isolation_coverage(pol, ev, level, syscalls, covered, free):
    cp = pol({}, default_action="allow")
    iso = Isolation.of(level, syscalls)
    for s in covered:
        assert run(cp, ev(s), isolation=iso).reason_code is ReasonCode.QUARANTINED, s
    for s in free:
        assert run(cp, ev(s), isolation=iso).reason_code is None, s


def test_isolation_classes_come_from_the_document(pol, ev):
    cp = pol({}, default_action="allow", syscall_classes={"network": ["frobnicate"]})
    assert run(cp, ev("frobnicate"), isolation=Isolation.of("network")).reason_code is ReasonCode.QUARANTINED
    assert run(cp, ev("connect"), isolation=Isolation.of("network")).reason_code is None


def test_policy_isolation_level_limits_the_quarantine(pol, ev):
    cp = pol({"connect": {"min_trust_score": 0.9, "violation_action": "quarantine",
                          "isolation_level": "network"}, "open_file": {}, "socket": {}})
    e = engine(cp)
    e.decide(ev("connect", event_id="e-1"), NOW)
    assert e.decide(ev("socket", event_id="e-2"), NOW).decision["reason_code"] == "quarantined"
    assert e.decide(ev("open_file", event_id="e-3"), NOW).decision["reason_code"] is None


def test_requarantine_takes_the_union_and_never_narrows(pol, ev):
    cp = pol({"connect": {"min_trust_score": 0.9, "violation_action": "quarantine", "isolation_level": "network"},
              "ptrace": {"min_trust_score": 0.9, "violation_action": "quarantine", "isolation_level": "custom",
                         "isolation_syscalls": ["ptrace", "mm*"]},
              "open_file": {}, "mmap": {}, "socket": {}, "getpid": {}})
    rz = InMemoryRedzone()
    e = TrustEngine(cp, rz)
    e.decide(ev("connect", event_id="e-1"), NOW)
    # ptrace is not covered by network isolation, so it is evaluated and quarantines again
    assert e.decide(ev("ptrace", event_id="e-2"), NOW).quarantine is not None
    assert len(rz.list()) == 1
    for s, expected in (("socket", "quarantined"), ("mmap", "quarantined"), ("ptrace", "quarantined"),
                        ("open_file", None), ("getpid", None)):
        got = e.decide(ev(s, event_id=f"x-{s}"), NOW).decision["reason_code"]
        assert got == expected, s


def test_requarantine_after_full_stays_full(pol, ev):
    rz = InMemoryRedzone()
    base = {"process_id": "p-1", "identity": {"id": "svc-a"}, "forensic_mode": "full", "reason": "r"}
    rz.quarantine({**base, "command_id": "c1", "isolation_level": "full"}, NOW)
    rz.quarantine({**base, "command_id": "c2", "isolation_level": "network"}, NOW)
    cp = pol({}, default_action="allow")
    assert run(cp, ev("open_file"), isolation=rz.isolation_of("p-1")).reason_code is ReasonCode.QUARANTINED


def test_recovery_resets_adaptive_trust_to_baseline(pol, ev):
    e = engine(pol({"open_file": {"min_trust_score": 0.9}}, trust_model={"baseline": 0.6}))
    e.decide(ev(event_id="e-1"), NOW)
    e.decide(ev(event_id="e-2"), NOW)
    assert e.trust["svc-a"] == 0.3
    e.reset_trust("svc-a")
    assert e.trust["svc-a"] == 0.6
    assert e.decide(ev(event_id="e-3"), NOW).decision["trust_score"] == 0.6


# --- forensic trace of a quarantine command ------------------------------------------------------

def _quarantining(pol, forensic):
    body = {"min_trust_score": 0.9, "violation_action": "quarantine", "isolation_level": "custom",
            "isolation_syscalls": ["never"]}
    if forensic is not None:
        body["forensic_mode"] = forensic
    return pol({"open_file": body, "read": {}})


def test_forensic_full_trace_keeps_the_last_n_decisions_with_args(pol, ev):
    e = TrustEngine(_quarantining(pol, None), InMemoryRedzone(), trace_depth=3)
    for i in range(5):
        e.decide(ev("read", [f"fd{i}"], event_id=f"r-{i}"), NOW)
    q = e.decide(ev(args=["/tmp/x"], event_id="q-1"), NOW).quarantine
    assert q["forensic_mode"] == "full"
    assert [t["event_id"] for t in q["trace"]] == ["r-3", "r-4", "q-1"]
    assert q["trace"][0]["args"] == ["fd3"] and q["trace"][0]["syscall"] == "read"


def test_forensic_metadata_trace_drops_arguments(pol, ev):
    e = engine(_quarantining(pol, "metadata"))
    e.decide(ev("read", ["secret"], event_id="r-1"), NOW)
    q = e.decide(ev(args=["/tmp/x"], event_id="q-1"), NOW).quarantine
    assert [t["event_id"] for t in q["trace"]] == ["r-1", "q-1"]
    assert all(t["args"] is None for t in q["trace"])
    assert q["trace"][0]["syscall"] == "read" and q["trace"][0]["allowed"] is True


def test_forensic_none_keeps_no_trace(pol, ev):
    e = engine(_quarantining(pol, "none"))
    e.decide(ev("read", ["x"], event_id="r-1"), NOW)
    q = e.decide(ev(args=["/tmp/x"], event_id="q-1"), NOW).quarantine
    assert q["forensic_mode"] == "none" and q["trace"] == []


def test_same_event_redelivered_yields_the_same_command_id(pol, ev):
    cp = _quarantining(pol, None)
    a = engine(cp).decide(ev(event_id="q-1"), NOW).quarantine
    b = engine(cp).decide(ev(event_id="q-1"), NOW).quarantine
    c = engine(cp).decide(ev(event_id="q-2"), NOW).quarantine
    assert a["command_id"] == b["command_id"] != c["command_id"]
