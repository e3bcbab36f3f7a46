"""Every Kafka client of the project, built from `Settings` in one place.

confluent-kafka producers, consumers and admin clients (the shim SDK, the
agents' outputs, the CLI, the audit sink) and the aiokafka/Faust options take
their connection settings here, so connection and security options are set
once.  Nothing connects at construction: librdkafka connects in the
background, aiokafka on `start()`.

Security (TRUST_KAFKA_SECURITY_PROTOCOL, _SASL_MECHANISM, _USERNAME,
_PASSWORD, _CA_FILE) is turned into each library's own form here:
librdkafka keys (`security_config`), aiokafka keywords with an SSL context
(`aiokafka_options`) and Faust credentials (`faust_credentials`).  SASL
without a user name or password, or a CA file that does not exist, is a
ConfigError before anything connects: a client never falls back to plaintext.

`produce` is the one delivery/back-pressure loop: when librdkafka's local
queue is full it serves delivery callbacks and retries, up to a deadline.

**A new producer's first record.** Producers are idempotent, and librdkafka
sends nothing before the broker has given the producer its id.  Its first
request for one comes before any broker connection is up and finds none; the
next is a fixed 500 ms timer later, so a new producer's first record waited
~500 ms (BENCHMARKS.md, procshim_delay).  Producers here connect to every
broker at once (`enable.sparse.connections: false`), which gives the id within
a few ms in 20 of 20 tries (sparse: 550 ms in 20 of 20); a metadata request
before the id is there can still push it to the timer.  `ProducerIdWatch`
reads the id's state from librdkafka's statistics (every STATS_INTERVAL_MS,
~0.3 % of a core) and `wait_for_producer_id` polls until it is assigned;
`ready_producer` does both, for a producer whose first record is urgent (an
operator's terminate).
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from typing import Any, Callable

from streams.errors import ConfigError, DeliveryError
from streams.settings import Settings

# librdkafka logs through this logger; it is quiet unless a handler is added.
_LIBRDKAFKA = logging.getLogger("forgeone.trust.librdkafka")
_LIBRDKAFKA.addHandler(logging.NullHandler())
_LIBRDKAFKA.propagate = False
_LOG = logging.getLogger(__name__)

# Java's, aiokafka's and the shim's partitioner for keyed records: a record
# keyed by an identity lands on the partition every other client computes.
PARTITIONER = "murmur2_random"


def _uses_sasl(settings: Settings) -> bool:
    return settings.kafka_security_protocol.startswith("SASL_")


def _uses_tls(settings: Settings) -> bool:
    return settings.kafka_security_protocol in ("SSL", "SASL_SSL")


def check_security(settings: Settings) -> None:
    """Refuse settings a client could only half honour (ConfigError)."""
    protocol = settings.kafka_security_protocol
    if _uses_sasl(settings) and not (settings.kafka_username and settings.kafka_password):
        missing = "TRUST_KAFKA_USERNAME" if not settings.kafka_username else "TRUST_KAFKA_PASSWORD"
        raise ConfigError(f"`{missing}` must be set with security protocol `{protocol}`")
    ca = settings.kafka_ca_file
    if ca is not None and not ca.is_file():
        raise ConfigError(f"`TRUST_KAFKA_CA_FILE` names `{ca}`, which is not a readable file")


def security_config(settings: Settings) -> dict[str, Any]:
    """The librdkafka security keys of the settings (empty for PLAINTEXT)."""
    check_security(settings)
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    conf: dict[str, Any] = {"security.protocol": protocol.lower()}
    if _uses_sasl(settings):
        conf.update({"sasl.mechanism": settings.kafka_sasl_mechanism,
                     "sasl.username": settings.kafka_username,
                     "sasl.password": settings.kafka_password})
    if _uses_tls(settings):
        conf["ssl.endpoint.identification.algorithm"] = "https"  # the broker's name is checked
        if settings.kafka_ca_file is not None:
            conf["ssl.ca.location"] = str(settings.kafka_ca_file)
    return conf


def common_config(settings: Settings) -> dict[str, Any]:
    """Connection settings shared by every confluent-kafka client."""
    conf: dict[str, Any] = {"bootstrap.servers": settings.kafka_bootstrap, "logger": _LIBRDKAFKA}
    conf.update(security_config(settings))
    return conf


def producer_config(settings: Settings, client_id: str, **overrides: Any) -> dict[str, Any]:
    """A durable, idempotent, murmur2-partitioned producer's configuration."""
    conf = common_config(settings)
    conf.update({"client.id": client_id, "acks": "all", "enable.idempotence": True,
                 "partitioner": PARTITIONER, "linger.ms": 2,
                 # connect to every broker as soon as it is known: a sparse producer's
                 # first producer-id request finds no broker up and waits 500 ms (above)
                 "enable.sparse.connections": False})
    conf.update(overrides)
    return conf


def producer(settings: Settings, client_id: str, **overrides: Any):
    """A confluent-kafka Producer (see `producer_config`)."""
    from confluent_kafka import Producer

    return Producer(producer_config(settings, client_id, **overrides))


STATS_INTERVAL_MS = 50
PRODUCER_ID_TIMEOUT = 5.0  # seconds to wait for a producer id before going on without it


class ProducerIdWatch:
    """A librdkafka `stats_cb` noting when the idempotent producer has its id.

    `chain` (a caller's own stats_cb) still gets every report."""

    __slots__ = ("assigned", "_chain")

    def __init__(self, chain: Callable[[str], None] | None = None, assigned: bool = False):
        self.assigned = assigned
        self._chain = chain

    def __call__(self, stats_json: str) -> None:
        if not self.assigned and '"Assigned"' in stats_json:
            try:
                state = json.loads(stats_json).get("eos", {}).get("idemp_state")
            except ValueError:
                state = None
            self.assigned = state == "Assigned"
        if self._chain is not None:
            self._chain(stats_json)


def watch_producer_id(conf: dict[str, Any]) -> ProducerIdWatch:
    """Hook a ProducerIdWatch into a producer configuration (changed in place).

    A producer that is not idempotent needs no id: its watch is assigned already."""
    if str(conf.get("enable.idempotence", False)).lower() not in ("true", "1"):
        return ProducerIdWatch(assigned=True)
    watch = ProducerIdWatch(conf.get("stats_cb"))
    conf.setdefault("statistics.interval.ms", STATS_INTERVAL_MS)
    conf["stats_cb"] = watch
    return watch


def wait_for_producer_id(producer, watch: ProducerIdWatch, timeout: float = PRODUCER_ID_TIMEOUT) -> bool:
    """Poll `producer` until `watch` sees its id, up to `timeout` seconds; whether it did.

    Late, records are still taken: they wait in the producer for the id."""
    deadline = time.monotonic() + timeout
    while not watch.assigned and time.monotonic() < deadline:
        producer.poll(0.005)
    return watch.assigned


def ready_producer(settings: Settings, client_id: str, timeout: float = PRODUCER_ID_TIMEOUT, **overrides: Any):
    """A confluent-kafka Producer (see `producer_config`) that has its producer id,
    so its first record leaves at once (a warning is logged if the id is late)."""
    from confluent_kafka import Producer

    conf = producer_config(settings, client_id, **overrides)
    watch = watch_producer_id(conf)
    made = Producer(conf)
    if not wait_for_producer_id(made, watch, timeout):
        _LOG.warning("producer %s: no producer id from `%s` after %.1f s; its records wait for it",
                     client_id, settings.kafka_bootstrap, timeout)
    return made


def consumer(settings: Settings, group_id: str, **overrides: Any):
    """A confluent-kafka Consumer that commits only when told to, from the earliest offset."""
    from confluent_kafka import Consumer

    conf = common_config(settings)
    conf.update({"group.id": group_id, "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    conf.update(overrides)
    return Consumer(conf)


def admin(settings: Settings):
    """A confluent-kafka AdminClient."""
    from confluent_kafka.admin import AdminClient

    return AdminClient(common_config(settings))


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    """The TLS context of aiokafka and Faust (None without TLS): the broker's
    certificate must chain to TRUST_KAFKA_CA_FILE (else the system's CAs) and
    name the host the client connects to."""
    check_security(settings)
    if not _uses_tls(settings):
        return None
    ca = settings.kafka_ca_file
    return ssl.create_default_context(cafile=str(ca) if ca is not None else None)


def aiokafka_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for an aiokafka client (the policy watcher's consumer)."""
    check_security(settings)
    options: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap,
                               "security_protocol": settings.kafka_security_protocol}
    if _uses_sasl(settings):
        options.update({"sasl_mechanism": settings.kafka_sasl_mechanism,
                        "sasl_plain_username": settings.kafka_username,
                        "sasl_plain_password": settings.kafka_password})
    if _uses_tls(settings):
        options["ssl_context"] = ssl_context(settings)
    return options


def faust_broker(settings: Settings) -> list[str]:
    """The `broker` of a Faust app."""
    return [f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")]


def faust_credentials(settings: Settings):
    """The `broker_credentials` of a Faust app (None for PLAINTEXT)."""
    import faust

    check_security(settings)
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    if protocol == "SSL":
        return faust.SSLCredentials(ssl_context(settings))
    # SASLCredentials speaks SASL_SSL when it has a context, SASL_PLAINTEXT without.
    return faust.SASLCredentials(username=settings.kafka_username, password=settings.kafka_password,
                                 ssl_context=ssl_context(settings), mechanism=settings.kafka_sasl_mechanism)


def produce(p, topic: str, value: bytes | None, key: bytes | None,
            on_delivery: Callable | None = None, *, partition: int | None = None,
            timeout: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
    """Hand one record to librdkafka, waiting for room in its queue if it is full.

    Raises DeliveryError when the queue stays full for `timeout` seconds (the
    broker is gone): the caller decides what that means for its input.
    """
    kwargs: dict[str, Any] = {"on_delivery": on_delivery}
    if partition is not None:
        kwargs["partition"] = partition
    deadline = None
    while True:
        try:
            p.produce(topic, value, key, **kwargs)
            return
        except BufferError:  # local queue full: serve callbacks, then retry
            now = clock()
            if deadline is None:
                deadline = now + timeout
            elif now >= deadline:
                raise DeliveryError(f"the producer's queue for `{topic}` stayed full for "
                                    f"{timeout:.0f} s: is the broker reachable?") from None
            p.poll(0.05)
