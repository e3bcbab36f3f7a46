"""docs/behaviour.md §1.2: what a policy document may hold, every refusal with its path, defaults, digests."""

from __future__ import annotations

import json
from importlib.metadata import EntryPoint

import pytest
import yaml

from streams.errors import PolicyError
from streams.policy import validators
from streams.policy.canonical import canonical_json, policy_json
from streams.policy.loader import load_policy, load_policy_file, parse_policy
from streams.policy.model import DefaultAction, EnforcementMode, TrustModel

GOOD = {
    "version": "2026-11-28.1",
    "default_action": "deny",
    "enforcement_mode": "enforce",
    "trust_thresholds": {"quarantine": 0.2},
    "trust_model": {"baseline": 0.7, "ceiling": 1.0, "violation_penalty": 0.15, "recovery_rate": 0.01},
    "identity_rules": [{"identity_pattern": "svc-payments*", "trust_adjustment": 0.1,
                        "syscall_patterns": ["open*"], "description": "payments is attested"}],
    "policies": {
        "open_file": {
            "min_trust_score": 0.5,
            "allowed_identities": ["svc-*"],
            "denied_identities": ["svc-untrusted*"],
            "arg_constraints": {0: "/(tmp|var)/.*", 1: "r|rb"},
            "custom_validator": "no_path_traversal",
            "violation_action": "block",
            "enforcement_mode": "audit",
            "isolation_level": "full",
            "isolation_syscalls": [],
            "forensic_mode": "full",
        },
        "connect": {"min_trust_score": 0.6},
        "exec*": {"custom_validator": "no_shell_metachar"},
    },
}


def with_policy(**body):
    return {"version": "v1", "policies": {"open_file": body}}


def refusal(doc) -> dict[str, str]:
    with pytest.raises(PolicyError) as info:
        load_policy(doc)
    return dict(info.value.issues)


def test_good_document_loads():
    cp = load_policy(GOOD)
    assert cp.version == "2026-11-28.1"
    assert [p.syscall for p in cp.graph.policies] == ["open_file", "connect", "exec*"]
    assert cp.graph.policies[0].arg_constraints == ((0, "/(tmp|var)/.*"), (1, "r|rb"))


# --- every refusal of §1.2, with the path of the bad field ----------------------------------

@pytest.mark.parametrize("doc, path", [
    (with_policy(min_trust_score="high"), "policies.open_file.min_trust_score"),
    (with_policy(min_trust_score=True), "policies.open_file.min_trust_score"),
    (with_policy(allowed_identities="svc-*"), "policies.open_file.allowed_identities"),
    (with_policy(denied_identities=["ok", 3]), "policies.open_file.denied_identities.1"),
    (with_policy(arg_constraints=["/tmp/.*"]), "policies.open_file.arg_constraints"),
    (with_policy(isolation_syscalls="ptrace", isolation_level="custom"), "policies.open_file.isolation_syscalls"),
    ({"version": "v1", "policies": {"open_file": "block"}}, "policies.open_file"),
    ({"version": "v1", "policies": ["open_file"]}, "policies"),
    ({"version": "v1", "identity_rules": {"identity_pattern": "x"}}, "identity_rules"),
    ({"version": "v1", "identity_rules": [{"identity_pattern": 5, "trust_adjustment": 0.1}]},
     "identity_rules.0.identity_pattern"),
    ({"version": "v1", "identity_rules": [{"identity_pattern": "x", "trust_adjustment": "a"}]},
     "identity_rules.0.trust_adjustment"),
    ({"version": "v1", "trust_model": {"baseline": "high"}}, "trust_model.baseline"),
    ({"version": "v1", "trust_model": [0.7]}, "trust_model"),
    ({"version": "v1", "trust_thresholds": {"quarantine": "low"}}, "trust_thresholds.quarantine"),
    ({"version": "v1", "syscall_classes": {"network": "connect"}}, "syscall_classes.network"),
    ({"version": 7}, "version"),
])
def test_wrong_type_is_refused_with_its_path(doc, path):
    assert path in refusal(doc)


@pytest.mark.parametrize("doc, path", [
    (with_policy(min_trust_score=1.5), "policies.open_file.min_trust_score"),
    (with_policy(min_trust_score=-0.1), "policies.open_file.min_trust_score"),
    ({"version": "v1", "trust_thresholds": {"quarantine": 2}}, "trust_thresholds.quarantine"),
    ({"version": "v1", "trust_thresholds": {"quarantine": -0.5}}, "trust_thresholds.quarantine"),
    ({"version": "v1", "trust_model": {"baseline": 1.2}}, "trust_model.baseline"),
    ({"version": "v1", "trust_model": {"ceiling": -1}}, "trust_model.ceiling"),
    ({"version": "v1", "trust_model": {"violation_penalty": 1.01}}, "trust_model.violation_penalty"),
    ({"version": "v1", "trust_model": {"recovery_rate": float("nan")}}, "trust_model.recovery_rate"),
])
def test_score_or_threshold_outside_unit_interval_is_refused(doc, path):
    issues = refusal(doc)
    assert path in issues
    assert "[0, 1]" in issues[path]


def test_bounds_zero_and_one_are_accepted():
    cp = load_policy({"version": "v1", "trust_thresholds": {"quarantine": 0},
                      "trust_model": {"baseline": 1, "ceiling": 1, "violation_penalty": 0, "recovery_rate": 1},
                      "policies": {"a": {"min_trust_score": 0}, "b": {"min_trust_score": 1}}})
    assert cp.graph.trust_thresholds == {"quarantine": 0.0}
    assert cp.graph.trust_model == TrustModel(baseline=1.0, ceiling=1.0, violation_penalty=0.0, recovery_rate=1.0)
    assert [(p.syscall, p.min_trust_score) for p in cp.graph.policies] == [("a", 0.0), ("b", 1.0)]


def test_regex_that_does_not_compile_is_refused_with_its_index():
    issues = refusal(with_policy(arg_constraints={0: "/tmp/.*", 1: "(unclosed"}))
    assert list(issues) == ["policies.open_file.arg_constraints.1"]
    assert "regex" in issues["policies.open_file.arg_constraints.1"]


def test_regex_path_for_index_zero():
    assert "policies.open_file.arg_constraints.0" in refusal(with_policy(arg_constraints={0: "[a-"}))


def test_bad_argument_index_is_refused():
    assert "policies.open_file.arg_constraints.first" in refusal(with_policy(arg_constraints={"first": ".*"}))
    assert "policies.open_file.arg_constraints.-1" in refusal(with_policy(arg_constraints={-1: ".*"}))


def test_unregistered_validator_is_refused():
    issues = refusal(with_policy(custom_validator="no_such_check"))
    msg = issues["policies.open_file.custom_validator"]
    assert "`no_such_check`" in msg and "not registered" in msg


@pytest.mark.parametrize("doc, path, value", [
    ({"version": "v1", "default_action": "maybe"}, "default_action", "maybe"),
    ({"version": "v1", "enforcement_mode": "strict"}, "enforcement_mode", "strict"),
    (with_policy(violation_action="explode"), "policies.open_file.violation_action", "explode"),
    (with_policy(enforcement_mode="loud"), "policies.open_file.enforcement_mode", "loud"),
    (with_policy(isolation_level="partial"), "policies.open_file.isolation_level", "partial"),
    (with_policy(forensic_mode="some"), "policies.open_file.forensic_mode", "some"),
    ({"version": "v1", "default_action": "Deny"}, "default_action", "Deny"),
])
def test_unknown_enum_value_is_refused(doc, path, value):
    issues = refusal(doc)
    assert f"`{value}`" in issues[path]


@pytest.mark.parametrize("doc", [{}, {"policies": {}}, {"version": ""}, {"version": "   "}, {"version": None}])
def test_missing_or_empty_version_is_refused(doc):
    assert "version" in refusal(doc)


@pytest.mark.parametrize("doc, path", [
    ({"version": "v1", "polices": {}}, "polices"),
    (with_policy(min_trust=0.5), "policies.open_file.min_trust"),
    ({"version": "v1", "identity_rules": [{"identity_pattern": "x", "trust_adjustment": 0.1, "weight": 1}]},
     "identity_rules.0.weight"),
    ({"version": "v1", "trust_model": {"baseline": 0.7, "decay": 0.1}}, "trust_model.decay"),
])
def test_unknown_field_is_refused(doc, path):
    assert refusal(doc)[path] == "unknown field"


def test_custom_isolation_needs_syscalls():
    assert "policies.open_file.isolation_syscalls" in refusal(with_policy(isolation_level="custom"))


def test_not_a_mapping_is_refused():
    with pytest.raises(PolicyError):
        load_policy(["version", "v1"])
    with pytest.raises(PolicyError):
        load_policy("version: [unclosed")


def test_a_document_with_several_mistakes_reports_all_of_them():
    doc = {
        "default_action": "maybe",
        "colour": "blue",
        "trust_thresholds": {"quarantine": 3},
        "trust_model": {"baseline": "x"},
        "identity_rules": [{"identity_pattern": "svc-*"}],
        "policies": {
            "open_file": {"min_trust_score": 2, "arg_constraints": {0: "(("},
                          "custom_validator": "nope"},
            "connect": {"violation_action": "explode", "frobs": 1},
            "read": {"min_trust_score": 0.5},
        },
    }
    issues = refusal(doc)
    assert set(issues) == {
        "version", "default_action", "colour", "trust_thresholds.quarantine", "trust_model.baseline",
        "identity_rules.0.trust_adjustment", "policies.open_file.min_trust_score",
        "policies.open_file.arg_constraints.0", "policies.open_file.custom_validator",
        "policies.connect.violation_action", "policies.connect.frobs",
    }


def test_error_message_lists_every_issue_with_its_path():
    with pytest.raises(PolicyError) as info:
        load_policy({"version": "v1", "default_action": "maybe", "policies": {"a": {"min_trust_score": 9}}})
    text = str(info.value)
    assert "2 error(s)" in text
    assert "default_action: unknown value `maybe`" in text
    assert "policies.a.min_trust_score:" in text


# --- defaults ----------------------------------------------------------------------------------

def test_defaults_when_keys_are_absent():
    g = load_policy({"version": "v1"}).graph
    assert g.default_action is DefaultAction.DENY
    assert g.enforcement_mode is EnforcementMode.ENFORCE
    assert dict(g.trust_thresholds) == {}
    assert g.trust_model == TrustModel(baseline=0.7, ceiling=1.0, violation_penalty=0.15, recovery_rate=0.01)
    assert g.identity_rules == ()
    assert g.policies == ()
    assert list(g.syscall_classes["network"]) == [
        "socket", "connect", "bind", "listen", "accept", "accept4", "sendto", "sendmsg", "recvfrom", "recvmsg"]
    assert list(g.syscall_classes["filesystem"]) == [
        "open", "openat", "open_file", "creat", "read", "write", "unlink", "unlinkat", "rename", "renameat",
        "mkdir", "rmdir", "chmod", "chown", "truncate"]


def test_partial_trust_model_keeps_other_defaults():
    tm = load_policy({"version": "v1", "trust_model": {"recovery_rate": 0.05}}).graph.trust_model
    assert tm == TrustModel(recovery_rate=0.05)


def test_policy_defaults():
    p = load_policy({"version": "v1", "policies": {"x": {}}}).graph.policies[0]
    assert p.min_trust_score is None and p.allowed_identities is None and p.denied_identities is None
    assert p.arg_constraints == () and p.custom_validator is None and p.violation_action is None
    assert p.enforcement_mode is None


def test_absent_and_explicit_defaults_have_equal_digests():
    a = load_policy({"version": "v1"})
    b = load_policy({"version": "v1", "default_action": "deny", "enforcement_mode": "enforce",
                     "trust_thresholds": {}, "identity_rules": [], "policies": {},
                     "trust_model": {"baseline": 0.7, "ceiling": 1.0, "violation_penalty": 0.15,
                                     "recovery_rate": 0.01}})
    assert a.digest == b.digest


# --- YAML and JSON, canonical JSON, digest ---------------------------------------------------

def test_yaml_and_json_files_give_equal_digests(tmp_path):
    y = tmp_path / "p.yaml"
    j = tmp_path / "p.json"
    y.write_text(yaml.safe_dump(GOOD, sort_keys=False))
    j.write_text(json.dumps(GOOD))  # argument indices become strings in JSON
    a, b = load_policy_file(y), load_policy_file(j)
    assert a.digest == b.digest
    assert len(a.digest) == 64


def test_json_with_exponent_numbers_loads_like_yaml(tmp_path):
    # json.dumps writes 0.00001 as 1e-05; a JSON document must be read as JSON numbers
    doc = {"version": "v1", "trust_model": {"recovery_rate": 0.00001},
           "policies": {"x": {"min_trust_score": 5e-7}}}
    j = tmp_path / "p.json"
    j.write_text(json.dumps(doc))
    assert "e-05" in j.read_text()
    y = tmp_path / "p.yaml"
    y.write_text("version: v1\ntrust_model: {recovery_rate: 0.00001}\n"
                 "policies: {x: {min_trust_score: 0.0000005}}\n")
    assert load_policy_file(j).digest == load_policy_file(y).digest


def test_canonical_json_keeps_policy_order():
    cp = load_policy({"version": "v1", "policies": {"zz": {}, "aa*": {}, "mm": {}}})
    policies = json.loads(cp.canonical_json)["policies"]
    assert list(policies) == ["zz", "aa*", "mm"]


def test_digest_changes_when_policy_order_changes():
    a = load_policy({"version": "v1", "policies": {"o*": {"min_trust_score": 0.9}, "op*": {}}})
    b = load_policy({"version": "v1", "policies": {"op*": {}, "o*": {"min_trust_score": 0.9}}})
    assert a.digest != b.digest


def test_digest_ignores_order_of_other_keys():
    a = load_policy({"version": "v1", "default_action": "allow", "trust_model": {"baseline": 0.5, "ceiling": 0.9},
                     "policies": {"x": {"min_trust_score": 0.5, "allowed_identities": ["a"]}}})
    b = load_policy({"policies": {"x": {"allowed_identities": ["a"], "min_trust_score": 0.5}},
                     "trust_model": {"ceiling": 0.9, "baseline": 0.5}, "default_action": "allow", "version": "v1"})
    assert a.digest == b.digest
    assert a.canonical_json == b.canonical_json


def test_digest_changes_with_meaning():
    a = load_policy({"version": "v1", "policies": {"x": {"min_trust_score": 0.5}}})
    b = load_policy({"version": "v1", "policies": {"x": {"min_trust_score": 0.6}}})
    assert a.digest != b.digest


def test_canonical_json_reloads_to_the_same_digest():
    cp = load_policy(GOOD)
    again = load_policy(json.loads(cp.canonical_json))
    assert again.digest == cp.digest
    assert policy_json(again.graph) == cp.canonical_json


def test_policy_json_is_canonical_json_except_for_the_order_of_policies():
    cp = load_policy({"version": "v1", "policies": {"zz": {"min_trust_score": 0.5}, "aa*": {}}})
    doc = json.loads(cp.canonical_json)
    assert list(doc["policies"]) == ["zz", "aa*"]
    in_doc_order = '"zz":{"min_trust_score":0.5},"aa*":{}'
    assert in_doc_order in cp.canonical_json
    assert canonical_json(doc) == cp.canonical_json.replace(in_doc_order, '"aa*":{},"zz":{"min_trust_score":0.5}')


# --- validators from the registry and from entry points ----------------------------------------

@pytest.fixture
def clean_registry(monkeypatch):
    monkeypatch.setattr(validators, "_registry", dict(validators._registry))
    monkeypatch.setattr(validators, "_entry_points_loaded", validators._entry_points_loaded)


def test_registered_validator_is_accepted_then_gone_after_cleanup(clean_registry):
    validators.register("only_tmp_x", lambda ctx: True)
    p = parse_policy(with_policy(custom_validator="only_tmp_x")).policies[0]
    assert p.custom_validator == "only_tmp_x"
    assert "only_tmp_x" in validators.names()


def test_entry_point_validators_are_loaded(clean_registry, monkeypatch):
    ep = EntryPoint(name="ep_check", value="os.path:isabs", group=validators.ENTRY_POINT_GROUP)
    calls = []

    def fake_entry_points(*, group):
        calls.append(group)
        return [ep] if group == validators.ENTRY_POINT_GROUP else []

    monkeypatch.setattr(validators, "entry_points", fake_entry_points)
    monkeypatch.setattr(validators, "_entry_points_loaded", False)
    load_policy(with_policy(custom_validator="ep_check"))
    assert calls == [validators.ENTRY_POINT_GROUP]
    assert "ep_check" in validators.names()


def test_builtin_validators_are_registered():
    assert {"no_path_traversal", "no_shell_metachar"} <= set(validators.names())


def test_a_real_installed_entry_point_registers_a_validator(tmp_path, monkeypatch):
    """A distribution on sys.path declaring `forgeone_trust.validators` (no fakes)."""
    (tmp_path / "acme_validators.py").write_text(
        "def no_tmp(ctx):\n    return not any(a.startswith('/tmp') for a in ctx.args)\n")
    dist = tmp_path / "acme_validators-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-validators\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[forgeone_trust.validators]\nno_tmp = acme_validators:no_tmp\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(validators, "_registry", dict(validators._registry))
    monkeypatch.setattr(validators, "_entry_points_loaded", False)
    from streams.policy import evaluate
    from tests.conftest import make_ctx, make_policy

    cp = make_policy({"write": {"custom_validator": "no_tmp"}})
    assert evaluate(cp, make_ctx("write", ["/tmp/x"]), None, None, "t").reason_code.value == "custom_validator"
    assert evaluate(cp, make_ctx("write", ["/srv/x"]), None, None, "t").allowed
