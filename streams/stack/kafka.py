"""The local Kafka broker: one JVM that is both KRaft controller and broker.

Jars come from Maven Central once (deploy/kafka/pom.xml) into
`<cache_dir>/kafka-<version>/libs`; the broker's config, logs and data live in
`<stack_dir>/kafka/`.  Nothing here runs at import time or in a constructor.

Secure (`security` given, `trustctl stack up --secure`): the client listener
is SASL_SSL (SCRAM-SHA-512, the certificate of streams/stack/security.py),
the controller listener SASL_PLAINTEXT (PLAIN) on loopback, and KRaft's
StandardAuthorizer denies whatever no ACL allows; `admin`, the broker's own
user, is the one super user.
"""

from __future__ import annotations

import base64
import logging
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from streams.errors import StackError
from streams.settings import Settings
from streams.stack.acls import ADMIN
from streams.stack.process import (
    RUNNING,
    STOPPED,
    UNHEALTHY,
    Report,
    ServiceStatus,
    StopResult,
    pid_alive,
    port_open,
    read_pid,
    require_loopback,
    rotate,
    tail,
    terminate,
    write_private,
)
from streams.stack.security import SASL_MECHANISM, StackSecurity

KAFKA_VERSION = "3.9.1"
HEAP = "512m"
# Installed from a wheel: the data package streams.stack._kafka (pyproject.toml);
# in a source checkout or an editable install: deploy/kafka/pom.xml.
_INSTALLED_POM = Path(__file__).resolve().parent / "_kafka" / "pom.xml"
_SOURCE_POM = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "pom.xml"
POM = _INSTALLED_POM if _INSTALLED_POM.is_file() else _SOURCE_POM
MAIN_CLASS = "kafka.Kafka"

# librdkafka logs every refused connection; a health probe expects refusals.
_QUIET = logging.getLogger("streams.stack.kafka.probe")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False

LOG4J = """\
# Written by `trustctl stack up`; regenerated on every start.
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.kafka.log.LogCleaner=WARN
log4j.logger.kafka.server.KafkaConfig=WARN
log4j.logger.org.apache.kafka.common.config.AbstractConfig=WARN
log4j.logger.org.apache.kafka.clients=WARN
"""


def new_cluster_id() -> str:
    """A KRaft cluster id, as `kafka-storage random-uuid` makes it."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


class KafkaBroker:
    name = "kafka"

    def __init__(self, settings: Settings, report: Report, security: StackSecurity | None = None):
        self.settings = settings
        self.report = report
        self.security = security
        host, _, port = settings.kafka_bootstrap.split(",")[0].rpartition(":")
        self.host = require_loopback(host, "TRUST_KAFKA_BOOTSTRAP")
        self.port = int(port)
        self.controller_port = settings.kafka_controller_port
        self.bootstrap = f"{self.host}:{self.port}"
        self.home = settings.stack_dir / "kafka"
        self.data = self.home / "data"
        self.props = self.home / "server.properties"
        self.log4j = self.home / "log4j.properties"
        self.pidfile = self.home / "kafka.pid"
        self.logfile = self.home / "kafka.log"
        self.cluster_id_file = self.home / "cluster.id"
        self.libs = settings.cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"
        self._proc: subprocess.Popen | None = None
        self._launched_at: float | None = None

    # -- observing ---------------------------------------------------------

    @property
    def marker(self) -> str:
        """What the broker's command line contains (tells our JVM from others)."""
        return str(self.props)

    def pid(self) -> int | None:
        pid = read_pid(self.pidfile)
        return pid if pid_alive(pid, self.marker) else None

    def answers(self, timeout: float = 3.0) -> bool:
        """True if the broker answers a metadata request."""
        if not port_open(self.host, self.port):
            return False
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        conf = {"bootstrap.servers": self.bootstrap, "logger": _QUIET}
        if self.security is not None:
            from streams.kafka.clients import security_config

            conf.update(security_config(self.security.admin_settings()))
        admin = AdminClient(conf)
        try:
            return bool(admin.list_topics(timeout=timeout).brokers)
        except KafkaException:
            return False

    def status(self) -> ServiceStatus:
        pid = self.pid()
        ports = f"controller {self.controller_port}"
        if pid is None:
            stale = read_pid(self.pidfile)
            if port_open(self.host, self.port):
                detail = f"port {self.port} is in use by another process"
            elif stale:
                detail = f"stale pid file: pid {stale} is gone"
            else:
                detail = ""
            return ServiceStatus(self.name, STOPPED, None, self.port, detail)
        if self.security is not None:
            ports += f", SASL_SSL {SASL_MECHANISM}, ACLs"
        if self.answers():
            return ServiceStatus(self.name, RUNNING, pid, self.port, ports)
        return ServiceStatus(
            self.name, UNHEALTHY, pid, self.port, f"no metadata answer on {self.bootstrap}"
        )

    # -- starting ----------------------------------------------------------

    def java(self) -> str:
        java = shutil.which("java")
        if not java:
            raise StackError(
                "`java` is not on PATH: install a Java 17 runtime "
                "(`apt-get install -y openjdk-17-jre-headless`) and run `trustctl stack up` again"
            )
        return java

    def ensure_jars(self) -> None:
        if (self.libs / f"kafka_2.13-{KAFKA_VERSION}.jar").exists():
            return
        mvn = shutil.which("mvn")
        if not mvn:
            raise StackError(
                f"`mvn` is not on PATH: install Maven (`apt-get install -y maven`) so the "
                f"Kafka {KAFKA_VERSION} jars can be fetched once into `{self.libs}`"
            )
        if not POM.exists():
            raise StackError(f"`{POM}` is missing: reinstall the package, or run from a source checkout")
        partial = self.libs.with_name("libs.partial")
        shutil.rmtree(partial, ignore_errors=True)
        self.report(f"fetching Kafka {KAFKA_VERSION} jars with Maven into {self.libs} (once)")
        started = time.monotonic()
        cmd = [
            mvn, "-q", "-B", "-Dstyle.color=never", "-f", str(POM),
            "dependency:copy-dependencies", "-DincludeScope=runtime",
            f"-DoutputDirectory={partial}",
        ]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            last = (done.stdout + done.stderr).strip().splitlines()[-5:]
            raise StackError(
                f"fetching the Kafka jars failed (`mvn` exit {done.returncode}): " + " | ".join(last)
            )
        partial.replace(self.libs)
        jars = len(list(self.libs.glob("*.jar")))
        self.report(f"fetched {jars} jars in {time.monotonic() - started:.1f} s")

    def write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        s = self.settings
        client, controller = f"{self.host}:{self.port}", f"{self.host}:{self.controller_port}"
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@{controller}",
            "listeners": f"PLAINTEXT://{client},CONTROLLER://{controller}",
            "advertised.listeners": f"PLAINTEXT://{client}",
            "inter.broker.listener.name": "PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self.data),
            "num.partitions": str(s.partitions),
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": str(s.partitions),
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": str(s.partitions),
            "group.initial.rebalance.delay.ms": "0",
            # After a kill -9 the new incarnation waits for the old one's
            # session to expire (default 9 s): keep that short locally.
            "broker.session.timeout.ms": "4000",
            "broker.heartbeat.interval.ms": "1000",
            "auto.create.topics.enable": "false",
            "log.retention.hours": "168",
            "log.segment.bytes": str(64 * 1024 * 1024),
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "1",
        }
        if self.security is not None:
            props.update(self.secure_props())
        body = "".join(f"{k}={v}\n" for k, v in props.items())
        # 0600: a secure broker's config holds its own password (JAAS).
        write_private(self.props, "# Written by `trustctl stack up`; regenerated on every start.\n" + body)
        self.log4j.write_text(LOG4J)

    def secure_props(self) -> dict[str, str]:
        """SASL_SSL for clients, SASL PLAIN between broker and controller, ACLs on."""
        assert self.security is not None
        sec = self.security
        password = sec.passwords()[ADMIN]
        client, controller = f"{self.host}:{self.port}", f"{self.host}:{self.controller_port}"
        plain = ("org.apache.kafka.common.security.plain.PlainLoginModule required "
                 f'username="{ADMIN}" password="{password}" user_{ADMIN}="{password}";')
        scram = f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{ADMIN}" password="{password}";'
        return {
            "listeners": f"SASL_SSL://{client},CONTROLLER://{controller}",
            "advertised.listeners": f"SASL_SSL://{client}",
            "inter.broker.listener.name": "SASL_SSL",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:SASL_PLAINTEXT",
            "sasl.enabled.mechanisms": SASL_MECHANISM,
            "sasl.mechanism.inter.broker.protocol": SASL_MECHANISM,
            "sasl.mechanism.controller.protocol": "PLAIN",
            "listener.name.controller.sasl.enabled.mechanisms": "PLAIN",
            "listener.name.controller.plain.sasl.jaas.config": plain,
            f"listener.name.sasl_ssl.{SASL_MECHANISM.lower()}.sasl.jaas.config": scram,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(sec.keystore),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(sec.ca_cert),
            "ssl.client.auth": "none",
            "ssl.endpoint.identification.algorithm": "https",
            "authorizer.class.name": "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
            "super.users": f"User:{ADMIN}",
            "allow.everyone.if.no.acl.found": "false",
        }

    def format_storage(self, java: str) -> None:
        """Format the KRaft log directory once, with a cluster id kept beside it."""
        if (self.data / "meta.properties").exists():
            return
        if self.cluster_id_file.exists():
            cluster_id = self.cluster_id_file.read_text().strip()
        else:
            cluster_id = new_cluster_id()
            self.cluster_id_file.write_text(cluster_id + "\n")
        self.report(f"formatting KRaft storage in {self.data} (cluster id {cluster_id})")
        args = [
            "-Xmx256m", f"-Dlog4j.configuration=file:{self.log4j}",
            "-cp", f"{self.libs}/*", "kafka.tools.StorageTool",
            "format", "-t", cluster_id, "-c", str(self.props), "--ignore-formatted",
        ]  # fmt: skip
        if self.security is None:
            done = subprocess.run([java, *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
        else:
            # The broker's own SCRAM user must exist before it can log in to itself;
            # its password goes through a java @argument file (0600), never argv.
            password = self.security.passwords()[ADMIN]
            args += ["--add-scram", f"{SASL_MECHANISM}=[name={ADMIN},password={password}]"]
            argfile = self.home / "format.args"
            write_private(argfile, "".join(f'"{a}"\n' for a in args))
            try:
                done = subprocess.run([java, f"@{argfile}"], capture_output=True, text=True,
                                      stdin=subprocess.DEVNULL)
            finally:
                argfile.unlink(missing_ok=True)
        if done.returncode != 0:
            raise StackError(
                f"formatting the Kafka storage failed (exit {done.returncode}): "
                + " | ".join((done.stdout + done.stderr).strip().splitlines()[-5:])
            )

    def check_ports_free(self) -> None:
        for port, variable in (
            (self.port, "TRUST_KAFKA_BOOTSTRAP"),
            (self.controller_port, "TRUST_KAFKA_CONTROLLER_PORT"),
        ):
            if port_open(self.host, port):
                raise StackError(
                    f"port {port} on {self.host} is already in use by another process: "
                    f"stop it (see `ss -ltnp`) or set `{variable}` to a free port"
                )

    def launch(self) -> None:
        """Start the JVM detached (own session, output to the log file)."""
        java = self.java()
        self.check_ports_free()
        self.ensure_jars()
        self.write_config()
        self.format_storage(java)
        rotate(self.logfile)
        cmd = [
            java, f"-Xmx{HEAP}", f"-Xms{HEAP}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError", "-Djava.awt.headless=true",
            f"-Dlog4j.configuration=file:{self.log4j}", f"-Dkafka.logs.dir={self.home}",
            "-cp", f"{self.libs}/*", MAIN_CLASS, str(self.props),
        ]  # fmt: skip
        self.report(f"starting kafka {KAFKA_VERSION} on {self.bootstrap} (heap {HEAP})")
        self._launched_at = time.monotonic()
        with open(self.logfile, "ab") as log:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.home,
            )
        self.pidfile.write_text(f"{self._proc.pid}\n")

    def wait_ready(self, timeout: float) -> float:
        """Block until the broker answers metadata; seconds since launch."""
        started = self._launched_at or time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None:
                code = self._proc.poll() if self._proc else None
                how = f" with exit code {code}" if code is not None else ""
                raise StackError(
                    f"kafka exited during start-up{how}; last lines of {self.logfile}:\n"
                    + tail(self.logfile, 30)
                )
            if self.answers(timeout=2.0):
                return time.monotonic() - started
            time.sleep(0.25)
        raise StackError(
            f"kafka did not answer on {self.bootstrap} within {timeout:.0f} s "
            f"(`trustctl stack down` stops it); last lines of {self.logfile}:\n"
            + tail(self.logfile, 30)
        )

    # -- stopping ----------------------------------------------------------

    def stop(self, timeout: float) -> StopResult:
        result = terminate(self.name, read_pid(self.pidfile), self.marker, timeout)
        if self._proc is not None:
            self._proc.poll()
        self.pidfile.unlink(missing_ok=True)
        return result
