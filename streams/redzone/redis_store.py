"""The redzone in Redis: the RedzoneStore the stream and the operators use.

Each process is one JSON value under ``{prefix}proc:{process_id}``, indexed by
the set ``{prefix}pids``.  Every change runs in WATCH/MULTI: read, decide with
the pure state machine, write; if another writer touched the key meanwhile
the transaction retries, so of two racing operators exactly one transition
wins and the other is refused naming the state it found.  Each change is also
PUBLISHed on ``{prefix}changes`` so every worker's view follows at once.

Redis unreachable (refused, timed out, credentials refused) is raised as
RedzoneUnavailable naming the server's URL without its password; callers
that must not give up (the redzone agent, the view follower) retry with
:func:`with_retry` / :class:`Backoff`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any, Awaitable, Callable, Iterator, Mapping, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.exceptions import AuthenticationError, AuthorizationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

from streams.errors import RedzoneUnavailable
from streams.redzone.model import Change, QuarantinedProcess, QuarantineStatus, moving, quarantining
from streams.redzone.store import OnChange
from streams.settings import Settings

log = logging.getLogger("forgeone.trust.redzone")

UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError)  # what an outage looks like
FIRST_BACKOFF = 0.2  # seconds before the first retry
MAX_BACKOFF = 30.0  # the longest wait between retries

T = TypeVar("T")


# -- connecting --------------------------------------------------------------------

def public_url(url: str) -> str:
    """`url` without its password (user info and query dropped): safe to log and show."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _client_url(client: aioredis.Redis) -> str:
    """Where a client points, from its pool's settings (which never print a password)."""
    kw = getattr(getattr(client, "connection_pool", None), "connection_kwargs", {}) or {}
    if kw.get("path"):
        return f"unix://{kw['path']}"
    return f"redis://{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"


def redis_client(settings: Settings) -> aioredis.Redis:
    """An asyncio client for the settings' server; it connects on first use.

    TRUST_REDIS_USERNAME / TRUST_REDIS_PASSWORD authenticate an ACL user;
    a `rediss://` URL speaks TLS, checked against TRUST_REDIS_CA_FILE (else
    the system's CAs) and the URL's host name."""
    tls: dict[str, Any] = {}
    if urlsplit(settings.redis_url).scheme == "rediss":
        tls = {"ssl_cert_reqs": "required", "ssl_check_hostname": True}
        if settings.redis_ca_file is not None:
            tls["ssl_ca_certs"] = str(settings.redis_ca_file)
    return aioredis.Redis.from_url(settings.redis_url, username=settings.redis_username,
                                   password=settings.redis_password,
                                   protocol=settings.redis_protocol, socket_timeout=10,
                                   socket_connect_timeout=5, health_check_interval=30, **tls)


def settings_prefix(settings: Settings) -> str:
    return settings.redis_prefix + "redzone:"


def redis_store(settings: Settings) -> "RedisRedzoneStore":
    """The redzone store the settings name (no network until first use)."""
    return RedisRedzoneStore(redis_client(settings), settings_prefix(settings),
                             url=public_url(settings.redis_url))


def unavailable(url: str, exc: BaseException) -> RedzoneUnavailable:
    """The project's error for one outage (chain the cause with ``raise ... from exc``)."""
    if isinstance(exc, (AuthenticationError, AuthorizationError)):
        what = "refused the credentials"
    elif isinstance(exc, (RedisTimeoutError, TimeoutError)):
        what = "did not answer in time"
    else:
        what = "is unreachable"
    return RedzoneUnavailable(f"redis at `{url}` {what}", url)


@contextlib.contextmanager
def _outage_as_unavailable(url: str) -> Iterator[None]:
    try:
        yield
    except UNREACHABLE as exc:
        raise unavailable(url, exc) from exc


# -- retrying -----------------------------------------------------------------------

class Backoff:
    """Delays that double from `first` up to `cap`; `reset` after a success."""

    def __init__(self, first: float = FIRST_BACKOFF, cap: float = MAX_BACKOFF):
        self.first, self.cap = first, cap
        self._next = first

    def next(self) -> float:
        delay = self._next
        self._next = min(delay * 2, self.cap)
        return delay

    def reset(self) -> None:
        self._next = self.first


async def with_retry(what: str, fn: Callable[..., Awaitable[T]], *args: Any,
                     sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
                     on_retry: Callable[[], None] | None = None) -> T:
    """Run `fn(*args)` until the store answers, backing off from 0.2 s to 30 s.

    Only RedzoneUnavailable is retried (`on_retry` is called before each
    retry, to count them); a refusal (any other error) is raised."""
    backoff = Backoff()
    while True:
        try:
            return await fn(*args)
        except RedzoneUnavailable as exc:
            if on_retry is not None:
                on_retry()
            delay = backoff.next()
            log.warning("%s while %s; retrying in %.1fs", exc, what, delay)
            await sleep(delay)


# -- the store ----------------------------------------------------------------------

def _dump(p: QuarantinedProcess) -> str:
    return json.dumps(p.to_dict(), separators=(",", ":"))


def _load(raw: bytes | str | None) -> QuarantinedProcess | None:
    return None if raw is None else QuarantinedProcess.from_dict(json.loads(raw))


class RedisRedzoneStore:
    """RedzoneStore on Redis (see the module docstring)."""

    def __init__(self, client: aioredis.Redis, prefix: str = "trust:redzone:", url: str | None = None):
        self.r = client
        self.prefix = prefix
        self.index_key = prefix + "pids"
        self.channel = prefix + "changes"
        self.url = url or _client_url(client)

    def key(self, process_id: str) -> str:
        return f"{self.prefix}proc:{process_id}"

    async def _change(self, process_id: str, change: Change) -> tuple[QuarantinedProcess, dict | None]:
        key = self.key(process_id)
        with _outage_as_unavailable(self.url):
            async with self.r.pipeline(transaction=True) as pipe:
                while True:
                    try:
                        await pipe.watch(key)
                        updated, event = change(_load(await pipe.get(key)))
                        if event is None:
                            await pipe.unwatch()
                            return updated, None
                        body = _dump(updated)
                        pipe.multi()
                        pipe.set(key, body)
                        pipe.sadd(self.index_key, process_id)
                        pipe.publish(self.channel, body)
                        await pipe.execute()
                        return updated, event
                    except WatchError:
                        continue

    async def quarantine(self, cmd: Mapping[str, Any], now: str) -> tuple[QuarantinedProcess, dict | None]:
        """Apply a QuarantineCommand; a command already applied yields no event."""
        return await self._change(cmd["process_id"], quarantining(cmd, now))

    async def transition(self, process_id: str, target: QuarantineStatus | str, actor: str, now: str,
                         reason: str = "", command_id: str | None = None,
                         ) -> tuple[QuarantinedProcess, dict]:
        """Move a process; TransitionError (naming both states) if the machine refuses."""
        return await self._change(process_id, moving(process_id, target, actor, now, reason,  # type: ignore[return-value]
                                                     command_id))

    async def get(self, process_id: str) -> QuarantinedProcess | None:
        with _outage_as_unavailable(self.url):
            return _load(await self.r.get(self.key(process_id)))

    async def all(self) -> list[QuarantinedProcess]:
        with _outage_as_unavailable(self.url):
            members = await self.r.smembers(self.index_key)
            pids = sorted(p.decode() if isinstance(p, bytes) else p for p in members)
            if not pids:
                return []
            raws = await self.r.mget([self.key(p) for p in pids])
        return [p for p in map(_load, raws) if p is not None]

    async def follow(self, on_change: OnChange,
                     on_subscribed: Callable[[], Awaitable[None]] | None = None) -> None:
        """Call `on_change` for every change published, until cancelled.

        `on_subscribed` runs once the subscription stands (a resync there
        misses nothing: later changes arrive as messages)."""
        with _outage_as_unavailable(self.url):
            pubsub = self.r.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                if on_subscribed is not None:
                    await on_subscribed()
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        result = on_change(_load(message["data"]))  # type: ignore[arg-type]
                        if result is not None:
                            await result
            finally:
                with contextlib.suppress(*UNREACHABLE):
                    await pubsub.aclose()

    async def close(self) -> None:
        await self.r.aclose()
