"""Signed manifests (streams/audit/signature.py): a forger without the key is caught.

The hash chains alone cannot tell a genuine archive from one rewritten from
scratch with every hash recomputed; these tests build exactly that forgery
and show `verify` passes it without a key and fails it, naming the manifest,
with the sink's public key.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streams import signing
from streams.audit import samples
from streams.audit.archive import (
    ArchiveWriter,
    Recovered,
    list_archive,
    manifest_name,
    read_file,
    read_manifest,
    write_manifest,
)
from streams.audit.chain import GENESIS, Chains
from streams.audit.signature import FORMAT, check_manifest
from streams.audit.verify import BAD_SIGNATURE, UNKNOWN_KEY, UNSIGNED_MANIFEST, verify
from streams.errors import ConfigError, SignatureError

M1, M2, M3 = manifest_name(1), manifest_name(2), manifest_name(3)


@pytest.fixture
def key(tmp_path: Path):
    private, public = signing.keygen(tmp_path / "keys", "audit-signing")
    return signing.load_signing_key(private), public


@pytest.fixture
def archive(tmp_path: Path, key) -> Path:
    directory = tmp_path / "archive"
    msgs = samples.messages(samples.traffic(40), samples.TOPICS)
    samples.build_archive(directory, msgs, files=3, signer=key[0])
    return directory


def keyring(public: Path) -> signing.Keyring:
    return signing.load_keyring([public])


def codes(report) -> list[tuple[str, str]]:
    return [(p.file, p.code) for p in report.problems]


def forge(directory: Path, edit) -> None:
    """What someone who can rewrite the directory but has no private key does:
    edit a record, then rebuild every file, chain and manifest from scratch."""
    listing = list_archive(directory)
    files = [(list(read_file(listing.data[s])[1]), read_manifest(listing.manifests[s])) for s in listing.seqs]
    for path in [*listing.data.values(), *listing.manifests.values()]:
        path.unlink()
    chains = Chains()
    writer = ArchiveWriter(directory, Recovered(1, GENESIS, {}, ()))
    for index, (records, manifest) in enumerate(files):
        for record in records:
            writer.append(chains.seal(edit(index, record)))
        writer.close_file(manifest["created_at"])


def allow_the_first_blocked_decision_of_file_2(index: int, record: dict) -> dict:
    if index == 1 and not getattr(allow_the_first_blocked_decision_of_file_2, "done", False):
        if record["kind"] == "decision" and '"allowed":false' in record["payload"]:
            record["payload"] = record["payload"].replace('"allowed":false', '"allowed":true')
            allow_the_first_blocked_decision_of_file_2.done = True
    return record


@pytest.fixture(autouse=True)
def _reset_forger():
    allow_the_first_blocked_decision_of_file_2.done = False


def test_every_manifest_is_signed_and_a_genuine_archive_verifies(archive, key):
    sk, public = key
    for seq in (1, 2, 3):
        manifest = read_manifest(archive / manifest_name(seq))
        assert manifest["signature"]["format"] == FORMAT and manifest["signature"]["key_id"] == sk.key_id
        assert check_manifest(manifest, keyring(public)) == sk.key_id
    report = verify(archive, keys=keyring(public))
    assert report.ok, report.problems
    assert report.signed_by == {sk.key_id}
    assert report.summary().endswith(f"manifest signatures checked (key {sk.key_id})")
    assert verify(archive).ok  # without a key: as before


def test_a_forgery_with_recomputed_chains_passes_the_chains_but_not_the_signatures(archive, key):
    _, public = key
    forge(archive, allow_the_first_blocked_decision_of_file_2)
    assert allow_the_first_blocked_decision_of_file_2.done
    assert verify(archive).ok  # the hash chains alone are consistent again: the gap signing closes
    report = verify(archive, keys=keyring(public))
    assert not report.ok
    assert codes(report) == [(M3, UNSIGNED_MANIFEST)]
    assert "newest manifest is not signed" in report.problems[0].message


def test_a_forgery_wearing_the_old_signatures_fails_at_every_manifest(archive, key):
    _, public = key
    old = {seq: read_manifest(archive / manifest_name(seq))["signature"] for seq in (1, 2, 3)}
    forge(archive, allow_the_first_blocked_decision_of_file_2)
    for seq, sig in old.items():
        path = archive / manifest_name(seq)
        write_manifest(path, {**read_manifest(path), "signature": sig})
    report = verify(archive, keys=keyring(public))
    assert codes(report) == [(M1, BAD_SIGNATURE), (M2, BAD_SIGNATURE), (M3, BAD_SIGNATURE)]
    assert "does not verify" in report.problems[0].message


def test_an_edited_manifest_field_no_check_compares_is_caught_by_its_signature(archive, key):
    _, public = key
    path = archive / M2
    write_manifest(path, {**read_manifest(path), "created_at": "2030-01-01T00:00:00.000000Z"})
    assert verify(archive).ok
    assert codes(verify(archive, keys=keyring(public))) == [(M2, BAD_SIGNATURE)]


def test_a_signature_dropped_from_one_manifest_is_caught(archive, key):
    _, public = key
    path = archive / M2
    write_manifest(path, {k: v for k, v in read_manifest(path).items() if k != "signature"})
    report = verify(archive, keys=keyring(public))
    assert codes(report) == [(M2, UNSIGNED_MANIFEST)]
    assert f"`{M1}` before it is" in report.problems[0].message


def test_a_key_the_reader_does_not_trust(archive, tmp_path):
    _, other = signing.keygen(tmp_path / "other", "audit-signing")
    report = verify(archive, keys=keyring(other))
    assert codes(report) == [(M1, UNKNOWN_KEY), (M2, UNKNOWN_KEY), (M3, UNKNOWN_KEY)]


def test_an_unsigned_archive_fails_with_a_key(tmp_path, key):
    _, public = key
    samples.build_archive(tmp_path / "plain", samples.messages(samples.traffic(10), samples.TOPICS), files=2)
    assert codes(verify(tmp_path / "plain", keys=keyring(public))) == [(manifest_name(2), UNSIGNED_MANIFEST)]


def test_signing_switched_on_for_an_existing_archive(tmp_path, key):
    sk, public = key
    msgs = samples.messages(samples.traffic(40), samples.TOPICS)
    arch = samples.archiver(tmp_path / "a")
    third = len(msgs) // 3
    for i, msg in enumerate(msgs, 1):
        arch.add(msg)
        if i in (third, 2 * third):
            arch.close_file()
        if i == 2 * third:
            arch.writer.signer = sk  # from file 3 on
    arch.close_file()
    report = verify(tmp_path / "a", keys=keyring(public))
    assert report.ok, report.problems
    assert any(f"from `{M1}` to `{M2}` are not signed" in w and f"`{M3}` vouches" in w for w in report.warnings)
    # an edit in an unsigned file forces a rewrite of the signed one after it
    forge(tmp_path / "a", lambda index, r: dict(r, identity="svc-x") if index == 0 else r)
    assert (M3, UNSIGNED_MANIFEST) in codes(verify(tmp_path / "a", keys=keyring(public)))


def test_check_manifest_reasons(archive, key):
    _, public = key
    manifest = read_manifest(archive / M1)
    ring = keyring(public)
    for change, reason in [
        (lambda m: m.pop("signature"), "unsigned"),
        (lambda m: m["signature"].update(format="x/1"), "bad_signature"),
        (lambda m: m["signature"].update(signature="!!"), "bad_signature"),
        (lambda m: m.update(records=m["records"] + 1), "bad_signature"),
        (lambda m: m["signature"].update(key_id="00"), "unknown_key"),
    ]:
        m = json.loads(json.dumps(manifest))
        change(m)
        with pytest.raises(SignatureError) as info:
            check_manifest(m, ring)
        assert info.value.reason == reason


def test_cli_keygen_and_verify_with_key(tmp_path, capsys):
    from streams.cli.main import main

    assert main(["audit", "keygen", "--out", str(tmp_path / "k")]) == 0
    private, public = tmp_path / "k" / "audit-signing.key", tmp_path / "k" / "audit-signing.pub"
    assert "audit-signing.pub" in capsys.readouterr().out
    directory = tmp_path / "archive"
    samples.build_archive(directory, samples.messages(samples.traffic(40), samples.TOPICS), files=3,
                          signer=signing.load_signing_key(private))
    assert main(["audit", "verify", "--dir", str(directory), "--key", str(public), "-q"]) == 0
    assert "manifest signatures checked" in capsys.readouterr().out
    forge(directory, allow_the_first_blocked_decision_of_file_2)
    assert main(["audit", "verify", "--dir", str(directory), "-q"]) == 0  # the chains alone: fooled
    capsys.readouterr()
    assert main(["audit", "verify", "--dir", str(directory), "--key", str(public), "-q"]) == 1
    out = capsys.readouterr().out
    assert f"{M3}: {UNSIGNED_MANIFEST}: " in out and "NOT intact" in out
    assert main(["audit", "export", "--dir", str(directory), "--key", str(public)]) == 2
    assert "does not verify" in capsys.readouterr().err


def test_sink_refuses_to_start_with_an_unreadable_signing_key(tmp_path):
    from streams.audit.sink import Sink, SinkOptions
    from streams.settings import Settings

    settings = Settings(kafka_bootstrap="127.0.0.1:1", audit_signing_key=tmp_path / "missing.key")
    with pytest.raises(ConfigError, match="cannot be read"):
        Sink(settings, SinkOptions(directory=tmp_path / "a", group="g"), report=lambda _: None).run()
    assert not (tmp_path / "a").exists()

