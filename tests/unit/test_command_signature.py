"""Signed commands without a broker or Redis: the signature itself, the decide agent's
trust resets, the redzone agent, the operators' service, settings and key generation."""

from __future__ import annotations

import asyncio
import copy
import logging
import uuid
from dataclasses import replace

import pytest

from streams import command_signature as cs
from streams import signing
from streams.agents.decide import BatchDecider, Source
from streams.agents.redzone import RedzoneApplier
from streams.cli.main import main
from streams.codec.avro import codec
from streams.engine import TrustEngine
from streams.errors import CodecError, ConfigError, SignatureError
from streams.partitioner import partition_of
from streams.policy import load_policy
from streams.redzone.memory import InMemoryRedzoneStore
from streams.redzone.service import RedzoneService
from streams.redzone.view import LocalRedzoneView
from streams.settings import Settings

NOW = "2026-11-28T12:00:00.000000Z"
LATER = "2026-11-28T12:05:00.000000Z"


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Engine, operator and a stranger's key, and the files of the first two."""
    d = tmp_path_factory.mktemp("keys")
    out = {}
    for role in ("engine", "operator", "stranger"):
        private, public = signing.keygen(d, f"{role}-signing")
        out[role] = signing.load_signing_key(private)
        out[role + "_paths"] = (private, public)
    out["keyring"] = signing.load_keyring([out["engine_paths"][1], out["operator_paths"][1]])
    return out


def settings_with(keys, *, engine=True, operator=True, verify=True) -> Settings:
    return Settings(engine_signing_key=keys["engine_paths"][0] if engine else None,
                    operator_signing_key=keys["operator_paths"][0] if operator else None,
                    command_verify_keys=(keys["engine_paths"][1], keys["operator_paths"][1]) if verify else ())


def quarantine(op: str = "quarantine", pid: str = "p-1", ts: str = NOW, **extra) -> dict:
    cmd = {"command_id": str(uuid.uuid4()), "op": op, "process_id": pid, "container_id": None,
           "identity": {"id": "svc-a", "process_id": pid, "container_id": None, "tenant": None,
                        "labels": {"team": "pay"}},
           "reason": "trust too low", "reason_code": "trust_below_minimum", "isolation_level": "full",
           "isolation_syscalls": [], "forensic_mode": "full",
           "trace": [{"event_id": "e-1", "syscall": "read", "args": ["x"], "allowed": True, "action": "allow",
                      "reason_code": None, "trust_score": 0.703, "policy_version": "v1", "timestamp": ts}],
           "policy_version": "v1", "source": "engine", "event_id": "e-1", "timestamp": ts}
    cmd.update(extra)
    return cmd


def reset(identity: str = "svc-a", ts: str = NOW, command_id: str | None = None) -> dict:
    return {"command_id": command_id or str(uuid.uuid4()), "op": "reset_trust", "identity_id": identity,
            "reason": "process `p-1` recovered by operator:alice", "actor": "operator:alice", "timestamp": ts}


# -- the signature ------------------------------------------------------------------


@pytest.mark.parametrize("name, record", [("QuarantineCommand", quarantine()), ("TrustControl", reset()),
                                          ("RedzoneEvent", {
                                              "event_id": "rz-1", "process_id": "p-1", "identity_id": "svc-a",
                                              "from_status": "active", "to_status": "recovered",
                                              "isolation_level": "full", "isolation_syscalls": [],
                                              "reason": "false alarm", "actor": "operator:alice",
                                              "command_id": None, "timestamp": NOW})])
def test_signed_records_verify_after_the_wire(keys, name, record):
    signed = cs.sign_record(name, record, keys["operator"])
    assert signed["signature_key_id"] == keys["operator"].key_id and len(signed["signature"]) == 64
    value = codec(name).encode(signed)
    back = cs.verify_value(name, value, keys["keyring"])
    assert back == signed
    assert cs.verify_record(name, back, keys["keyring"]).key_id == keys["operator"].key_id


@pytest.mark.parametrize("change", [
    lambda c: c.update(op="recover"),
    lambda c: c.update(process_id="p-2"),
    lambda c: c["identity"].update(id="svc-b"),
    lambda c: c["identity"]["labels"].update(team="ops"),
    lambda c: c.update(isolation_level="network"),
    lambda c: c["trace"][0].update(trust_score=0.9),
    lambda c: c.update(timestamp=LATER),
    lambda c: c.update(source="operator:mallory"),
])
def test_any_changed_field_fails_verification(keys, change):
    signed = cs.sign_record("QuarantineCommand", quarantine(), keys["engine"])
    forged = copy.deepcopy(signed)
    change(forged)
    with pytest.raises(SignatureError) as info:
        cs.verify_quarantine_command(codec("QuarantineCommand").encode(forged), keys["keyring"])
    assert info.value.reason == signing.BAD_SIGNATURE and "does not verify" in str(info.value)


def test_unsigned_incomplete_unknown_key_and_wrong_length_are_refused(keys):
    ring = keys["keyring"]
    with pytest.raises(SignatureError) as info:
        cs.verify_trust_control(codec("TrustControl").encode(reset(command_id="c-1")), ring)
    assert info.value.reason == signing.UNSIGNED and "TrustControl `c-1` is not signed" in str(info.value)
    signed = cs.sign_record("TrustControl", reset(), keys["operator"])
    with pytest.raises(SignatureError, match="`signature` missing") as info:
        cs.verify_trust_control(dict(signed, signature=None), ring)
    assert info.value.reason == signing.BAD_SIGNATURE
    with pytest.raises(SignatureError, match="not 64 bytes"):
        cs.verify_trust_control(dict(signed, signature=signed["signature"][:10]), ring)
    stranger = cs.sign_record("TrustControl", reset(), keys["stranger"])
    with pytest.raises(SignatureError, match="unknown key") as info:
        cs.verify_trust_control(stranger, ring)
    assert info.value.reason == signing.UNKNOWN_KEY
    # the stranger's signature under a trusted key's id does not verify either
    with pytest.raises(SignatureError) as info:
        cs.verify_trust_control(dict(stranger, signature_key_id=keys["operator"].key_id), ring)
    assert info.value.reason == signing.BAD_SIGNATURE


def test_a_signature_of_another_purpose_does_not_pass_for_a_command(keys):
    """A policy signature, or one over a record of another kind, is never a command's."""
    record = cs.sign_record("TrustControl", reset(), keys["operator"])
    body = {k: v for k, v in record.items() if k != "signature"}
    as_policy = keys["operator"].sign(signing.message("forgeone.trust.policy/1", body))
    with pytest.raises(SignatureError, match="does not verify"):
        cs.verify_trust_control(dict(record, signature=as_policy), keys["keyring"])
    assert cs.signed_message("TrustControl", record) != cs.signed_message("QuarantineCommand", record)


def test_records_the_codec_refuses_are_not_signed(keys):
    with pytest.raises(CodecError):
        cs.sign_record("QuarantineCommand", quarantine(isolation_level="partial"), keys["engine"])


# Wire bytes of these schemas before the signature fields existed (the golden
# values of that time): they must still read, with the signature fields null.
BEFORE_SIGNATURES = {
    "TrustControl": "0874632d3100187376632d7061796d656e74735470726f636573732060702d313760207265636f7665726564206279"
                    "206f70657261746f723a616c6963651c6f70657261746f723a616c69636536323032362d31312d32385431323a3030"
                    "3a30302e3030303135305a",
}


def test_values_written_before_the_signature_fields_still_decode(keys):
    old = bytes.fromhex(BEFORE_SIGNATURES["TrustControl"])
    record = cs.decode("TrustControl", old)
    assert record["command_id"] == "tc-1" and record["signature_key_id"] is None and record["signature"] is None
    with pytest.raises(SignatureError) as info:
        cs.verify_trust_control(old, keys["keyring"])
    assert info.value.reason == signing.UNSIGNED
    for name in cs.PURPOSES:  # every old-shape value: the current value without its two null unions
        current = cs.sign_record(name, _record(name), keys["operator"])
        unsigned = codec(name).encode(dict(current, signature_key_id=None, signature=None))
        assert cs.decode(name, unsigned[:-2]) == dict(current, signature_key_id=None, signature=None)
    with pytest.raises(CodecError):
        cs.decode("TrustControl", old + b"\x07junk")
    with pytest.raises(CodecError):
        cs.decode("TrustControl", old[:-3])


def _record(name: str) -> dict:
    if name == "QuarantineCommand":
        return quarantine()
    if name == "TrustControl":
        return reset()
    return {"event_id": "rz-1", "process_id": "p-1", "identity_id": "svc-a", "from_status": None,
            "to_status": "active", "isolation_level": "full", "isolation_syscalls": [], "reason": "r",
            "actor": "engine", "command_id": "q-1", "timestamp": NOW}


def test_not_before_refuses_only_older_commands():
    cs.check_not_before("TrustControl", reset(ts=LATER), None, "nothing")
    cs.check_not_before("TrustControl", reset(ts=LATER), NOW, "the last reset")
    cs.check_not_before("TrustControl", reset(ts=NOW), NOW, "the last reset")
    with pytest.raises(SignatureError, match="before the last reset") as info:
        cs.check_not_before("TrustControl", reset(ts=NOW), LATER, "the last reset")
    assert info.value.reason == cs.STALE
    with pytest.raises(SignatureError, match="expected an RFC 3339 time"):
        cs.check_not_before("TrustControl", reset(ts="yesterday"), NOW, "the last reset")


# -- settings and keys -------------------------------------------------------------------


def test_settings_read_the_command_keys_from_the_environment():
    s = Settings.from_env({"TRUST_ENGINE_SIGNING_KEY": "/k/engine.key", "TRUST_OPERATOR_SIGNING_KEY": "/k/op.key",
                           "TRUST_COMMAND_VERIFY_KEYS": "/k/engine.pub, /k/op.pub,"})
    assert (str(s.engine_signing_key), str(s.operator_signing_key)) == ("/k/engine.key", "/k/op.key")
    assert [str(p) for p in s.command_verify_keys] == ["/k/engine.pub", "/k/op.pub"]
    empty = Settings.from_env({})
    assert (empty.engine_signing_key, empty.operator_signing_key, empty.command_verify_keys) == (None, None, ())


def test_signing_keys_must_be_among_the_verify_keys(keys):
    ring = keys["keyring"]
    assert cs.engine_signer(Settings(), None) is None  # signing off: nothing needed
    assert cs.engine_signer(settings_with(keys), ring).key_id == keys["engine"].key_id
    with pytest.raises(ConfigError, match="TRUST_ENGINE_SIGNING_KEY is not"):
        cs.engine_signer(settings_with(keys, engine=False), ring)
    stranger = replace(Settings(), engine_signing_key=keys["stranger_paths"][0])
    with pytest.raises(ConfigError, match="is not among TRUST_COMMAND_VERIFY_KEYS"):
        cs.engine_signer(stranger, ring)
    with pytest.raises(ConfigError, match="cannot be read"):
        cs.command_keyring(replace(Settings(), command_verify_keys=(keys["engine_paths"][1].with_name("nope"),)))


def test_trustctl_commands_keygen(tmp_path, capsys):
    assert main(["commands", "keygen", "--role", "operator", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    key = signing.load_signing_key(tmp_path / "operator-signing.key")
    assert key.key_id in out and "TRUST_OPERATOR_SIGNING_KEY" in out
    assert (tmp_path / "operator-signing.key").stat().st_mode & 0o077 == 0
    assert main(["commands", "keygen", "--role", "operator", "--out", str(tmp_path)]) == 2  # never overwrites


# -- the engine and the decide agent --------------------------------------------------------

POLICY = {"version": "t-1", "trust_thresholds": {"quarantine": 0.5},
          "trust_model": {"baseline": 0.7, "violation_penalty": 0.15, "recovery_rate": 0.1},
          "policies": {"read": {}}}
PARTITIONS = 6
CONTROL = Source("trust.control", partition_of("svc-a", PARTITIONS), 7)


def event_batch(n: int, syscall: str = "mount") -> bytes:
    events = [{"event_id": f"e-{i}", "syscall": syscall, "args": ["x"],
               "identity": {"id": "svc-a", "process_id": "p-1", "container_id": None, "tenant": None, "labels": {}},
               "trust_vector": None, "execution_dna": None, "timestamp": NOW} for i in range(n)]
    return codec("SyscallEventBatch").encode({"shim_id": "s", "seq": 1, "events": events})


def decider(keys, verify: bool = True) -> BatchDecider:
    engine = TrustEngine(load_policy(POLICY), LocalRedzoneView(), trust={},
                         sign_quarantine=lambda c: cs.sign_record("QuarantineCommand", c, keys["engine"]))
    return BatchDecider(engine, {}, clock=lambda: LATER, partitions=PARTITIONS,
                        command_keys=keys["keyring"] if verify else None)


def test_the_engine_signs_its_quarantine_commands(keys):
    d = decider(keys)
    emits = d.handle(b"svc-a", event_batch(2), Source("trust.syscall-events", CONTROL.partition, 1))
    [value] = [e.value for e in emits if e.kind == "quarantine"]
    cmd = cs.verify_quarantine_command(value, keys["keyring"])
    assert (cmd["source"], cmd["signature_key_id"]) == ("engine", keys["engine"].key_id)
    assert d.engine.redzone.isolation_of("p-1") is not None  # applied locally as before


def dead(emits) -> list[dict]:
    return [codec("DeadLetter").decode(e.value) for e in emits if e.kind == "dlq"]


def test_forged_trust_resets_change_nothing_and_are_logged(keys, caplog):
    d = decider(keys)
    d.handle(b"svc-a", event_batch(2), Source("trust.syscall-events", CONTROL.partition, 1))
    before = d.state["svc-a"]
    assert before.trust == 0.4
    genuine = cs.sign_record("TrustControl", reset(), keys["operator"])
    tampered = dict(genuine, identity_id="svc-a", reason="nothing to see")
    forged = {
        "unsigned": reset(),
        "unknown_key": cs.sign_record("TrustControl", reset(), keys["stranger"]),
        "bad_signature": tampered,
    }
    with caplog.at_level(logging.WARNING, logger="forgeone.trust.commands"):
        for reason, record in forged.items():
            [dlq] = dead(d.handle_control(b"svc-a", codec("TrustControl").encode(record), CONTROL))
            assert (dlq["error_code"], dlq["topic"], dlq["offset"]) == (reason, "trust.control", 7)
            assert dlq["value"] == codec("TrustControl").encode(record)
    assert d.state["svc-a"] == before
    assert d.metrics.controls == {"refused": 3}
    assert d.metrics.dlq == {"unsigned": 1, "unknown_key": 1, "bad_signature": 1}
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and all("nothing changed" in line and "trust.control[" in line for line in lines)
    assert "command refused (unknown_key)" in lines[1]

    assert d.handle_control(b"svc-a", codec("TrustControl").encode(genuine), CONTROL) == []
    assert d.state["svc-a"].trust == 0.7 and d.state["svc-a"].control_at == NOW


def test_a_replayed_older_reset_is_refused_as_stale(keys):
    d = decider(keys)
    first = cs.sign_record("TrustControl", reset(ts=NOW), keys["operator"])
    second = cs.sign_record("TrustControl", reset(ts=LATER), keys["operator"])
    value = codec("TrustControl").encode
    assert d.handle_control(b"svc-a", value(first), CONTROL) == []
    assert d.handle_control(b"svc-a", value(second), CONTROL) == []
    d.handle(b"svc-a", event_batch(1), Source("trust.syscall-events", CONTROL.partition, 5))
    lowered = d.state["svc-a"]
    [dlq] = dead(d.handle_control(b"svc-a", value(first), CONTROL))  # the attacker replays the first
    assert dlq["error_code"] == "stale" and "a replay" in dlq["reason"]
    assert d.handle_control(b"svc-a", value(second), CONTROL) == []  # the latest again: a duplicate
    assert d.state["svc-a"] == lowered
    assert d.metrics.controls == {"applied": 2, "refused": 1, "duplicate": 1}


def test_without_verify_keys_resets_are_applied_as_before(keys):
    d = decider(keys, verify=False)
    assert d.handle_control(b"svc-a", codec("TrustControl").encode(reset(ts=LATER)), CONTROL) == []
    assert d.handle_control(b"svc-a", codec("TrustControl").encode(reset(ts=NOW)), CONTROL) == []
    assert d.metrics.controls == {"applied": 2}


# -- the redzone agent ------------------------------------------------------------------------

QSRC = Source("trust.quarantine", 2, 17)


def run(coro):
    return asyncio.run(coro)


def applier(keys, store, verify: bool = True) -> RedzoneApplier:
    return RedzoneApplier(settings_with(keys, verify=verify), store=store, clock=lambda: LATER)


def test_the_redzone_agent_applies_signed_commands_and_signs_its_events(keys):
    store = InMemoryRedzoneStore()
    a = applier(keys, store)
    value = codec("QuarantineCommand").encode(cs.sign_record("QuarantineCommand", quarantine(), keys["engine"]))
    [emit] = run(a.handle(b"p-1", value, QSRC))
    event = cs.verify_redzone_event(emit.value, keys["keyring"])
    assert (event["to_status"], event["signature_key_id"]) == ("active", keys["engine"].key_id)
    assert store.processes["p-1"].in_redzone


def test_forged_quarantine_commands_leave_the_redzone_unchanged(keys, caplog):
    store = InMemoryRedzoneStore()
    a = applier(keys, store)
    genuine = cs.sign_record("QuarantineCommand", quarantine(), keys["engine"])
    run(a.handle(b"p-1", codec("QuarantineCommand").encode(genuine), QSRC))
    before = dict(store.processes)
    forged = {
        "unsigned": quarantine("recover", ts=LATER),
        "unknown_key": cs.sign_record("QuarantineCommand", quarantine("recover", ts=LATER), keys["stranger"]),
        "bad_signature": dict(genuine, op="recover", command_id="c-forged"),  # a genuine command, op changed
    }
    with caplog.at_level(logging.WARNING, logger="forgeone.trust.commands"):
        for reason, cmd in forged.items():
            value = codec("QuarantineCommand").encode(cmd)
            [dlq] = dead(run(a.handle(b"p-1", value, QSRC)))
            assert (dlq["error_code"], dlq["value"]) == (reason, value)
    assert store.processes == before and len(store.events) == 1 and a.refused == 3
    assert sum("command refused" in r.getMessage() for r in caplog.records) == 3
    # an unsigned quarantine of another process is refused too
    [dlq] = dead(run(a.handle(b"p-9", codec("QuarantineCommand").encode(quarantine(pid="p-9")), QSRC)))
    assert dlq["error_code"] == "unsigned" and "p-9" not in store.processes


def test_a_genuine_transition_from_before_the_quarantine_is_a_replay(keys):
    store = InMemoryRedzoneStore()
    a = applier(keys, store)  # the clock says LATER: the process enters the redzone then
    q = cs.sign_record("QuarantineCommand", quarantine(), keys["engine"])
    run(a.handle(b"p-1", codec("QuarantineCommand").encode(q), QSRC))
    old = cs.sign_record("QuarantineCommand", quarantine("recover", ts=NOW, source="operator:alice"),
                         keys["operator"])
    [dlq] = dead(run(a.handle(b"p-1", codec("QuarantineCommand").encode(old), QSRC)))
    assert dlq["error_code"] == "stale" and store.processes["p-1"].in_redzone
    fresh = cs.sign_record("QuarantineCommand", quarantine("recover", ts="2026-11-28T12:06:00.000000Z",
                                                           source="operator:alice"), keys["operator"])
    [emit] = run(a.handle(b"p-1", codec("QuarantineCommand").encode(fresh), QSRC))
    assert emit.kind == "redzone" and store.processes["p-1"].status.value == "recovered"


def test_without_verify_keys_the_redzone_agent_applies_unsigned_commands(keys):
    store = InMemoryRedzoneStore()
    [emit] = run(applier(keys, store, verify=False).handle(
        b"p-1", codec("QuarantineCommand").encode(quarantine()), QSRC))
    assert emit.kind == "redzone" and store.processes["p-1"].in_redzone


# -- the operators' service ----------------------------------------------------------------------


class Recorder(RedzoneService):
    """The service with Kafka replaced by a list of (kind, key, decoded record)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.published: list[tuple[str, str, dict]] = []

    async def _emit(self, records, applied):
        names = {"redzone": "RedzoneEvent", "control": "TrustControl", "quarantine": "QuarantineCommand"}
        self.published += [(kind, key, cs.decode(names[kind], value)) for kind, key, value in records]


def test_operators_sign_quarantines_transitions_and_trust_resets(keys):
    svc = Recorder(settings_with(keys), store=InMemoryRedzoneStore(), clock=lambda: NOW)
    run(svc.quarantine("p-1", "svc-a", "by hand", actor="operator:alice"))
    run(svc.recover_process("p-1", "operator:alice"))
    kinds = [(kind, rec["signature_key_id"]) for kind, _, rec in svc.published]
    op = keys["operator"].key_id
    assert kinds == [("quarantine", op), ("redzone", op), ("redzone", op), ("control", op)]
    names = {"redzone": "RedzoneEvent", "control": "TrustControl", "quarantine": "QuarantineCommand"}
    for kind, _, rec in svc.published:
        cs.verify_record(names[kind], rec, keys["keyring"])


def test_verify_keys_without_an_operator_key_refuse_before_any_change(keys):
    store = InMemoryRedzoneStore()
    run(store.quarantine(quarantine(), NOW))
    svc = Recorder(settings_with(keys, operator=False), store=store, clock=lambda: NOW)
    for call in (lambda: svc.recover_process("p-1", "operator:alice"),
                 lambda: svc.quarantine("p-2", "svc-a", "by hand", actor="operator:alice")):
        with pytest.raises(ConfigError, match="TRUST_OPERATOR_SIGNING_KEY is not"):
            run(call())
    assert store.processes["p-1"].in_redzone and "p-2" not in store.processes and svc.published == []
    unsigned = Recorder(Settings(), store=store, clock=lambda: NOW)  # signing off: as before
    run(unsigned.terminate_process("p-1", "operator:alice"))
    assert [rec["signature"] for _, _, rec in unsigned.published] == [None]


def test_the_audit_sink_reads_redzone_events_written_before_the_signature_fields(tmp_path):
    from streams.audit.sink import Sink, SinkOptions

    event = dict(_record("RedzoneEvent"), signature_key_id=None, signature=None)
    old = codec("RedzoneEvent").encode(event)[:-2]  # the shape before the two null unions existed
    settings = Settings()
    _, decoders = Sink(settings, SinkOptions(tmp_path, "g"))._sources()
    assert decoders[settings.topic("redzone")](old) == event
