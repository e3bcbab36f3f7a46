"""Before a worker starts: do Redis and Kafka accept its credentials?

A server that is down is waited out by the running worker (back-off, Faust's
reconnects); a server that refuses the worker's user never starts accepting
it, so the worker stops at once with one line naming the server, the user
and the variables to check (ConfigError: `trustctl: error: ...`, exit 2).
"""

from __future__ import annotations

import asyncio
import logging
import time

from streams.errors import ConfigError
from streams.settings import Settings

log = logging.getLogger("forgeone.trust")

KAFKA_WAIT = 15.0  # seconds to get one answer from the broker before leaving it to Faust
ENGINE_TOPICS = ("events", "control", "quarantine", "policy", "decisions", "violations", "redzone", "dlq")


def check_access(settings: Settings) -> None:
    """Raise ConfigError if Redis or Kafka refuses this worker's credentials."""
    check_redis(settings)
    check_kafka(settings)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_redis(settings: Settings) -> None:
    from redis.exceptions import AuthenticationError, AuthorizationError, NoPermissionError, RedisError

    from streams.redzone.redis_store import public_url, redis_client

    async def ping() -> None:
        client = redis_client(settings)
        try:
            await client.ping()
        finally:
            await client.aclose()

    user = settings.redis_username or "default"
    try:
        asyncio.run(ping())
    except (AuthenticationError, AuthorizationError, NoPermissionError) as exc:
        raise ConfigError(f"redis at `{public_url(settings.redis_url)}` refused user `{user}` "
                          f"({_first_line(exc)}): check TRUST_REDIS_USERNAME and TRUST_REDIS_PASSWORD") from exc
    except (RedisError, OSError) as exc:  # down or unreachable: the worker waits it out
        log.warning("redis at %s does not answer yet (%s); starting anyway",
                    public_url(settings.redis_url), _first_line(exc))


def check_kafka(settings: Settings, wait: float = KAFKA_WAIT) -> None:
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    from streams.kafka import clients

    refused: list[KafkaError] = []
    conf = clients.common_config(settings)
    conf["error_cb"] = lambda err: refused.append(err) if err.code() in (
        KafkaError._AUTHENTICATION, KafkaError._SSL) else None
    admin = AdminClient(conf)
    user = settings.kafka_username or "(none)"
    where = f"kafka at `{settings.kafka_bootstrap}`"
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        admin.poll(0.2)
        if refused:
            raise ConfigError(f"{where} refused user `{user}` over {settings.kafka_security_protocol} "
                              f"({refused[0].str()}): check TRUST_KAFKA_USERNAME, TRUST_KAFKA_PASSWORD, "
                              "TRUST_KAFKA_SECURITY_PROTOCOL and TRUST_KAFKA_CA_FILE")
        try:
            admin.list_topics(timeout=1.0)
        except KafkaException:
            continue
        for kind in ENGINE_TOPICS:  # a topic it may not use is an error; a missing one is not
            topic = settings.topic(kind)
            found = admin.list_topics(topic, timeout=5.0).topics.get(topic)
            if found is not None and found.error is not None \
                    and found.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED:
                raise ConfigError(f"{where} does not let user `{user}` use `{topic}`: not the engine's "
                                  "credentials, or its ACLs are missing (`trustctl stack up --secure` makes them)")
        return
    log.warning("%s does not answer yet; starting anyway", where)
