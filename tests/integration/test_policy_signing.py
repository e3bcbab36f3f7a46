"""Signed policies on the real broker: a worker with TRUST_POLICY_VERIFY_KEYS keeps its
running version against an unsigned, a badly signed, an unknown-key and a rolled-back
document written straight to `trust.policy`, and switches to a good one.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import urllib.request

import pytest

from streams import signing
from streams.policy.loader import load_policy_file
from streams.policy_signature import read_sig, sig_path, sign_policy
from streams.policy_topic import publish
from tests.integration.pipeline import TRUSTCTL, Pipeline, normalise, wait_for

pytestmark = pytest.mark.integration

POLICY = """
version: {version}
default_action: {default}
policies:
  read: {{}}
"""


@pytest.fixture
def pipeline(stack, tmp_path_factory):
    p = Pipeline(stack, "signing", tmp_path_factory.mktemp("workers"))
    yield p
    p.cleanup()


def trustctl(p: Pipeline, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([TRUSTCTL, *args], env=env or p.env, capture_output=True, text=True, timeout=120)


def policy_history(p: Pipeline) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{p.settings.web_port}/policy/history", timeout=5) as r:
        return json.loads(r.read())


def event(i: int) -> dict:
    return normalise({"event_id": f"ev-{i}", "syscall": "mount", "args": ["/dev/x"],
                      "identity": {"id": "svc-a", "process_id": "p-1"},
                      "timestamp": f"2026-11-28T12:00:{i:02d}.000000Z"})


def test_a_signing_worker_refuses_forged_and_replayed_policies(pipeline, tmp_path):
    p = pipeline
    ours = tmp_path / "ours"
    assert trustctl(p, "policy", "keygen", "--out", str(ours)).returncode == 0
    key = signing.load_signing_key(ours / "policy-signing.key")
    stranger = signing.load_signing_key(signing.keygen(tmp_path / "stranger", "k")[0])
    p.env["TRUST_POLICY_VERIFY_KEYS"] = str(ours / "policy-signing.pub")  # the worker's and trustctl's env
    # p.settings (what the "attacker" publishes with below) has no keys: nothing is checked before writing

    docs = {}
    for version, default in (("v1", "deny"), ("v2", "deny"), ("v3-allow", "allow")):
        docs[version] = tmp_path / f"{version}.yaml"
        docs[version].write_text(POLICY.format(version=version, default=default))
    for version in ("v1", "v2"):
        signed = trustctl(p, "policy", "sign", "--key", str(ours / "policy-signing.key"), str(docs[version]))
        assert signed.returncode == 0, signed.stderr

    out = trustctl(p, "policy", "publish", str(docs["v1"]))
    assert out.returncode == 0 and "signed by key" in out.stdout, out.stderr
    p.start()
    p.wait_policy("v1")
    assert trustctl(p, "policy", "publish", str(docs["v2"])).returncode == 0
    p.wait_policy("v2")

    # trustctl with the verify keys refuses, before writing, what the workers would refuse
    refused_locally = trustctl(p, "policy", "publish", str(docs["v3-allow"]))
    assert refused_locally.returncode == 2 and "not signed" in refused_locally.stderr

    # someone with write access to the topic tries four ways to get `default_action: allow` in force
    allow = load_policy_file(docs["v3-allow"])
    good = sign_policy(key, allow.version, allow.digest, "2026-11-28T12:00:00.000000Z")
    flipped = dataclasses.replace(good, signature=bytes([good.signature[0] ^ 1]) + good.signature[1:])
    publish(p.settings, allow, "mallory")  # unsigned
    publish(p.settings, allow, "mallory", flipped)  # badly signed
    publish(p.settings, allow, "mallory", sign_policy(stranger, allow.version, allow.digest, good.signed_at))
    publish(p.settings, load_policy_file(docs["v1"]), "mallory", read_sig(sig_path(docs["v1"])))  # replay v1

    refused = wait_for("four refusals in the worker's policy history",
                       lambda: (lambda r: r if len(r) >= 4 else None)(policy_history(p)["refused"]))
    assert [(r["version"], r["error"].split(":")[0]) for r in refused] == [
        ("v3-allow", "unsigned"), ("v3-allow", "bad_signature"), ("v3-allow", "unknown_key"),
        ("v1", "rollback")]
    assert p.health()["policy_version"] == "v2"
    assert policy_history(p)["in_force"] == "v2"
    p.send([event(1)])
    decision = p.decisions(1)[0]
    assert (decision["policy_version"], decision["allowed"], decision["reason_code"]) == ("v2", False, "no_policy")
    log = p.log_tail(200)
    for reason in ("unsigned", "bad_signature", "unknown_key", "rollback"):
        assert f"refused ({reason}), running version stays v2" in log

    history = trustctl(p, "policy", "history")
    assert history.returncode == 0, history.stderr
    statuses = [line.split()[-1] if "accepted" in line else line.split("refused (")[1].split(")")[0]
                for line in history.stdout.splitlines() if "accepted" in line or "refused (" in line]
    assert statuses == ["accepted", "accepted", "unsigned", "bad_signature", "unknown_key", "rollback"]
    assert history.stdout.rstrip().endswith("in force: v2")

    # the same document, properly signed later than v2, goes into force
    signed = trustctl(p, "policy", "sign", "--key", str(ours / "policy-signing.key"), str(docs["v3-allow"]))
    assert signed.returncode == 0, signed.stderr
    assert trustctl(p, "policy", "publish", str(docs["v3-allow"])).returncode == 0
    p.wait_policy("v3-allow")
    p.send([event(2)])
    later = {d["event_id"]: d for d in p.decisions(2)}
    assert (later["ev-2"]["policy_version"], later["ev-2"]["allowed"]) == ("v3-allow", True)
