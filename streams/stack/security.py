"""The secure local stack (`trustctl stack up --secure`): its files, and the
users and ACLs it puts on the running broker.

Everything lives in `<stack_dir>/security/` (mode 0700); what is secret is
written with mode 0600 and never leaves that directory:

    ca.pem, ca.key            a CA made for this stack (EC P-256, 10 years)
    server.pem, server.key    the certificate of Kafka's and Redis's listeners,
                              for `localhost` and `127.0.0.1`, signed by the CA
    kafka-keystore.pem        server.key + server.pem, as Kafka's PEM keystore
    passwords.json            one password per user, for its Kafka and its Redis
                              account: TRUST_STACK_PASSWORD_<USER>, else generated once
    <role>.env                `export TRUST_...` lines for one role (shim, engine,
                              operator, auditor): `. <stack_dir>/security/engine.env`

The passwords reach the broker through its own config (server.properties,
0600) and `kafka-storage format` (an argument file, 0600, removed at once),
and Redis as SHA-256 hashes in redis.conf: never on a command line.
`apply_kafka_security` creates the roles' SCRAM users and makes their ACLs
exactly those of `streams.stack.acls.kafka_acls`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import ipaddress
import json
import os
import re
import secrets
import shlex
import time
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

from streams.errors import StackError
from streams.settings import Settings
from streams.stack.acls import ADMIN, REDIS_ROLES, ROLES, Acl, Operation, Pattern, Resource, kafka_acls
from streams.stack.process import Report, write_private

SASL_MECHANISM = "SCRAM-SHA-512"
SCRAM_ITERATIONS = 8192
CA_DAYS = 3650
CERT_DAYS = 825
RENEW_BEFORE_DAYS = 30
HOSTS = ("localhost",)
ADDRESSES = ("127.0.0.1", "::1")


# What a given password may hold: it goes into JAAS quotes and StorageTool's
# `[name=...,password=...]`, so no quotes, commas, brackets or `=`.
PASSWORD = re.compile(r"[A-Za-z0-9_.~+/@%:!^-]{12,}")


def check_password(user: str, password: str) -> None:
    if not PASSWORD.fullmatch(password):
        raise StackError(f"`TRUST_STACK_PASSWORD_{user.upper()}` must be 12 or more of letters, digits "
                         "and `_.~+/@%:!^-`")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class StackSecurity:
    """The security files of one stack directory (nothing is read or written
    until a method is called)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.dir = settings.stack_dir / "security"
        self.ca_cert = self.dir / "ca.pem"
        self.ca_key = self.dir / "ca.key"
        self.cert = self.dir / "server.pem"
        self.key = self.dir / "server.key"
        self.keystore = self.dir / "kafka-keystore.pem"
        self.passwords_file = self.dir / "passwords.json"

    # -- state -------------------------------------------------------------------------

    def enabled(self) -> bool:
        """True once this stack directory was made secure (it stays so)."""
        return self.passwords_file.exists()

    def passwords(self) -> dict[str, str]:
        """{user: password}: one per user, for its Kafka and its Redis account."""
        try:
            return json.loads(self.passwords_file.read_text())
        except (OSError, ValueError) as exc:
            raise StackError(f"cannot read `{self.passwords_file}`: {exc}") from exc

    def env_file(self, role: str) -> Path:
        return self.dir / f"{role}.env"

    # -- creating ----------------------------------------------------------------------

    def prepare(self, report: Report) -> None:
        """Create what is missing: directory, CA, certificate, passwords, env files."""
        formatted = (self.settings.stack_dir / "kafka" / "data" / "meta.properties").exists()
        if not self.enabled() and formatted:
            raise StackError(
                f"the stack in `{self.settings.stack_dir}` was set up without --secure: "
                "stop it and use another TRUST_STACK_DIR for the secure stack")
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        ensure_certificates(self.dir, HOSTS, report)
        given = dict(self.settings.stack_passwords)
        for user, password in given.items():
            check_password(user, password)
        old = self.passwords() if self.enabled() else {}
        if formatted and given.get(ADMIN, old.get(ADMIN)) != old.get(ADMIN):
            raise StackError("`TRUST_STACK_PASSWORD_ADMIN` differs from the admin password this broker was "
                             f"formatted with (in `{self.passwords_file}`): it cannot change afterwards")
        passwords = {u: given.get(u) or old.get(u) or secrets.token_urlsafe(24) for u in (ADMIN, *ROLES)}
        if passwords != old:
            write_private(self.passwords_file, json.dumps(passwords, indent=2) + "\n")
            made = sorted(u for u in passwords if u not in given and u not in old)
            report(f"passwords in {self.passwords_file} (mode 0600)"
                   + (f"; generated for {', '.join(made)}" if made else ""))
        for role in ROLES:
            body = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in self.role_env(role).items())
            write_private(self.env_file(role), f"# ForgeOne Trust secure stack, role `{role}`. "
                          "Secret: mode 0600, never commit.\n" + body)

    # -- what clients use ----------------------------------------------------------------

    def redis_url(self) -> str:
        url = urlparse(self.settings.redis_url)
        return f"rediss://{url.hostname or '127.0.0.1'}:{self.settings.redis_port}{url.path or '/0'}"

    def role_env(self, role: str) -> dict[str, str]:
        """The environment of one role's processes (Settings.from_env reads it)."""
        s, pw = self.settings, self.passwords()
        env = {
            "TRUST_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
            "TRUST_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "TRUST_KAFKA_SASL_MECHANISM": SASL_MECHANISM,
            "TRUST_KAFKA_USERNAME": role,
            "TRUST_KAFKA_PASSWORD": pw[role],
            "TRUST_KAFKA_CA_FILE": str(self.ca_cert),
            # The names the ACLs were made for.
            "TRUST_TOPIC_PREFIX": s.topic_prefix,
            "TRUST_APP_ID": s.app_id,
        }
        if role in REDIS_ROLES:
            env.update({
                "TRUST_REDIS_URL": self.redis_url(),
                "TRUST_REDIS_CA_FILE": str(self.ca_cert),
                "TRUST_REDIS_USERNAME": role,
                "TRUST_REDIS_PASSWORD": pw[role],
                "TRUST_REDIS_PREFIX": s.redis_prefix,
            })
        return env

    def role_settings(self, role: str) -> Settings:
        """The stack's settings as `role` would have them after sourcing its env file."""
        env = self.role_env(role)
        return Settings.from_env({**_settings_env(self.settings), **env})

    def admin_settings(self) -> Settings:
        """The broker's own user: for the stack's health checks and ACLs only."""
        return dataclasses.replace(
            self.settings, kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism=SASL_MECHANISM,
            kafka_username=ADMIN, kafka_password=self.passwords()[ADMIN],
            kafka_ca_file=self.ca_cert, redis_url=self.redis_url(), redis_username=ADMIN,
            redis_password=self.passwords()[ADMIN], redis_ca_file=self.ca_cert)

    def redis_password_hashes(self) -> dict[str, str]:
        pw = self.passwords()
        return {user: _sha256(pw[user]) for user in (ADMIN, *REDIS_ROLES)}


def _settings_env(s: Settings) -> dict[str, str]:
    """The non-secret settings as environment variables (the base of a role's env)."""
    return {"TRUST_KAFKA_CONTROLLER_PORT": str(s.kafka_controller_port), "TRUST_PARTITIONS": str(s.partitions),
            "TRUST_REPLICATION_FACTOR": str(s.replication_factor), "TRUST_STACK_DIR": str(s.stack_dir),
            "TRUST_CACHE_DIR": str(s.cache_dir), "TRUST_WEB_HOST": s.web_host, "TRUST_WEB_PORT": str(s.web_port),
            "TRUST_REDIS_URL": s.redis_url, "TRUST_REDIS_PREFIX": s.redis_prefix}


# -- certificates ------------------------------------------------------------------------

def ensure_certificates(directory: Path, hosts: tuple[str, ...] = HOSTS, report: Report = lambda m: None) -> None:
    """A CA (ca.pem, ca.key) and a server certificate it signs (server.pem,
    server.key, and both as kafka-keystore.pem) for `hosts` (names or IP
    addresses; 127.0.0.1 and ::1 always), in `directory`; keys mode 0600.
    Kept while valid for 30 more days and naming the same hosts."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    directory.mkdir(parents=True, exist_ok=True)
    ca_cert, ca_key = directory / "ca.pem", directory / "ca.key"
    cert, key, keystore = directory / "server.pem", directory / "server.key", directory / "kafka-keystore.pem"
    now = dt.datetime.now(dt.timezone.utc)
    names = _alt_names(hosts)
    if not (ca_cert.exists() and ca_key.exists()):
        k, c = _make_ca(now)
        write_private(ca_key, _key_pem(k))
        ca_cert.write_bytes(c.public_bytes(serialization.Encoding.PEM))
        cert.unlink(missing_ok=True)
        report(f"made a CA: {ca_cert}")
    if cert.exists() and key.exists() and keystore.exists():
        current = x509.load_pem_x509_certificate(cert.read_bytes())
        san = current.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        fresh = current.not_valid_after_utc - now > dt.timedelta(days=RENEW_BEFORE_DAYS)
        if fresh and set(san) == set(names):
            return
    signer = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    k, c = _make_server_cert(signer, x509.load_pem_x509_certificate(ca_cert.read_bytes()), now, names)
    cert_pem = c.public_bytes(serialization.Encoding.PEM).decode()
    write_private(key, _key_pem(k))
    cert.write_text(cert_pem)
    write_private(keystore, _key_pem(k) + cert_pem)
    report(f"made the server certificate {cert} ({', '.join(dict.fromkeys((*hosts, *ADDRESSES)))}; "
           f"{CERT_DAYS} days)")


def _alt_names(hosts: tuple[str, ...]) -> list:
    from cryptography import x509

    out: list = []
    for h in dict.fromkeys((*hosts, *ADDRESSES)):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            out.append(x509.DNSName(h))
    return out


def _key_pem(key) -> str:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _make_ca(now: dt.datetime):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ForgeOne Trust local stack CA")])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _make_server_cert(ca_key, ca_cert, now: dt.datetime, names: list):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


# -- users and ACLs on the running broker --------------------------------------------------

def _binding(acl: Acl):
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType

    return AclBinding(ResourceType[acl.resource.name], acl.name, ResourcePatternType[acl.pattern.name],
                      acl.principal, "*", AclOperation[acl.operation.name], AclPermissionType.ALLOW)


def _as_acl(binding) -> Acl | None:
    """An existing binding as one of ours, or None if it is nothing `kafka_acls` makes."""
    try:
        if binding.host != "*" or binding.permission_type.name != "ALLOW":
            return None
        return Acl(binding.principal.split(":", 1)[1], Resource[binding.restype.name],
                   Pattern[binding.resource_pattern_type.name], binding.name, Operation[binding.operation.name])
    except KeyError:
        return None


def apply_kafka_security(security: StackSecurity, report: Report, timeout: float = 60.0) -> None:
    """The local secure stack's users and ACLs; returns once the last role can log
    in (users and ACLs go through one metadata log, in order: both are in force)."""
    passwords = security.passwords()
    apply_kafka_acls(security.admin_settings(), security.settings, {r: passwords[r] for r in ROLES},
                     report, timeout)
    _wait_login(security.role_settings(ROLES[-1]), timeout)


def apply_kafka_acls(admin_settings: Settings, settings: Settings, passwords: Mapping[str, str],
                     report: Report, timeout: float = 60.0) -> None:
    """As `admin_settings` (a super user): make the roles' ACLs exactly
    `kafka_acls(settings)`, then set the SCRAM password of each role in
    `passwords` (ACLs first: a user never exists without its limits)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (
        AclBindingFilter,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
        ScramCredentialInfo,
        ScramMechanism,
        UserScramCredentialUpsertion,
    )

    from streams.kafka import clients

    admin = clients.admin(admin_settings)
    wanted = set(kafka_acls(settings))
    try:
        found = admin.describe_acls(AclBindingFilter(
            ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
            AclPermissionType.ANY)).result(timeout)
        ours = {f"User:{r}" for r in ROLES}
        stale = [b for b in found if b.principal in ours and _as_acl(b) not in wanted]
        have = {_as_acl(b) for b in found if b.principal in ours}
        if stale:
            for future in admin.delete_acls([_exact(b) for b in stale], request_timeout=timeout).values():
                future.result(timeout)
        missing = sorted(wanted - have)
        if missing:
            for future in admin.create_acls([_binding(a) for a in missing], request_timeout=timeout).values():
                future.result(timeout)
        info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS)
        upserts = [UserScramCredentialUpsertion(r, info, passwords[r].encode()) for r in ROLES if r in passwords]
        if upserts:
            for future in admin.alter_user_scram_credentials(upserts, request_timeout=timeout).values():
                future.result(timeout)
    except KafkaException as exc:
        err = exc.args[0]
        detail = err.str() if len(err.str()) < 160 else err.str()[:160] + "..."
        raise StackError(f"setting the users and ACLs on kafka failed ({err.name()}): {detail}") from exc
    users = [r for r in ROLES if r in passwords]
    report(f"kafka: {len(wanted)} ACLs ({len(missing)} added, {len(stale)} removed); "
           f"SCRAM passwords set for {', '.join(users) or 'no user'}")


def _exact(binding):
    from confluent_kafka.admin import AclBindingFilter

    return AclBindingFilter(binding.restype, binding.name, binding.resource_pattern_type, binding.principal,
                            binding.host, binding.operation, binding.permission_type)


def _wait_login(settings: Settings, timeout: float) -> None:
    from confluent_kafka import KafkaException

    from streams.kafka import clients

    deadline = time.monotonic() + timeout
    while True:
        client = clients.admin(settings)
        try:
            client.list_topics(timeout=5)
            return
        except KafkaException as exc:
            if time.monotonic() > deadline:
                raise StackError(f"user `{settings.kafka_username}` cannot log in to kafka "
                                 f"{timeout:.0f} s after it was created: {exc.args[0].str()}") from exc
        time.sleep(0.25)
