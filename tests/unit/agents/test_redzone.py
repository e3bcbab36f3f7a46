"""The redzone agent without a broker or Redis: the applier and the view follower
on the in-memory RedzoneStore, a fixed clock, and a store that has an outage."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from streams.agents.decide import Source
from streams.agents.redzone import RedzoneApplier, RedzoneFollower, unapplied
from streams.codec.avro import codec
from streams.errors import RedzoneUnavailable
from streams.redzone.memory import InMemoryRedzoneStore
from streams.redzone.model import Isolation
from streams.redzone.redis_store import MAX_BACKOFF, Backoff, public_url, with_retry
from streams.redzone.view import LocalRedzoneView
from streams.settings import Settings

NOW = "2026-11-28T12:00:00.000000Z"
SRC = Source("trust.quarantine", 2, 17)
DEADLINE = 10.0


def command(op: str = "quarantine", pid: str = "p-1", command_id: str | None = None,
            level: str = "network") -> dict:
    return {"command_id": command_id or str(uuid.uuid4()), "op": op, "process_id": pid, "container_id": None,
            "identity": {"id": "svc-a", "process_id": pid, "container_id": None, "tenant": None, "labels": {}},
            "reason": "trust too low", "reason_code": "trust_below_minimum", "isolation_level": level,
            "isolation_syscalls": [], "forensic_mode": "full", "trace": [], "policy_version": "v1",
            "source": "engine", "event_id": None, "timestamp": "2026-11-28T11:59:59.000000Z"}


def encoded(cmd: dict) -> bytes:
    return codec("QuarantineCommand").encode(cmd)


def decoded(emits, kind: str) -> list[dict]:
    schema = {"redzone": "RedzoneEvent", "dlq": "DeadLetter"}[kind]
    return [codec(schema).decode(e.value) for e in emits if e.kind == kind]


class Sleeps:
    """An injected sleep that records the delays and returns at once."""

    def __init__(self):
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class Outage:
    """A RedzoneStore whose first `failures` calls of `methods` find Redis down."""

    def __init__(self, store: InMemoryRedzoneStore, failures: int, methods=("quarantine", "transition", "follow")):
        self.store, self.left, self.methods = store, failures, methods
        self.calls = 0

    def __getattr__(self, name):
        real = getattr(self.store, name)
        if name not in self.methods:
            return real

        async def call(*args, **kwargs):
            self.calls += 1
            if self.left > 0:
                self.left -= 1
                raise RedzoneUnavailable("redis at `redis://127.0.0.1:1/0` is unreachable",
                                         "redis://127.0.0.1:1/0")
            return await real(*args, **kwargs)
        return call


def applier(store, sleep=None) -> RedzoneApplier:
    return RedzoneApplier(Settings(), store=store, clock=lambda: NOW, sleep=sleep or Sleeps())


# -- the applier -----------------------------------------------------------------

def test_quarantine_is_applied_once_with_the_injected_time():
    store = InMemoryRedzoneStore()
    a = applier(store)
    cmd = command(command_id="c-1")
    [event] = decoded(asyncio.run(a.handle(b"p-1", encoded(cmd), SRC)), "redzone")
    assert (event["to_status"], event["timestamp"], event["command_id"]) == ("active", NOW, "c-1")
    assert store.processes["p-1"].quarantined_at == NOW
    assert store.processes["p-1"].isolation == Isolation.of("network")
    assert asyncio.run(a.handle(b"p-1", encoded(cmd), SRC)) == []  # redelivered: nothing new
    assert len(store.events) == 1


def test_a_transition_command_moves_the_process():
    store = InMemoryRedzoneStore()
    a = applier(store)
    asyncio.run(a.handle(b"p-1", encoded(command()), SRC))
    [event] = decoded(asyncio.run(a.handle(b"p-1", encoded(command("terminate", command_id="c-9")), SRC)),
                      "redzone")
    assert (event["from_status"], event["to_status"], event["command_id"]) == ("active", "terminated", "c-9")
    assert store.processes["p-1"].history[-1] == {"from": "active", "to": "terminated", "at": NOW,
                                                   "actor": "engine"}


def test_a_refused_command_is_dead_lettered_with_its_code_and_the_injected_time():
    store = InMemoryRedzoneStore()
    value = encoded(command("recover", pid="p-404"))
    [dead] = decoded(asyncio.run(applier(store).handle(b"p-404", value, SRC)), "dlq")
    assert dead["error_code"] == "redzone_unknown_process" and "`p-404`" in dead["reason"]
    assert (dead["topic"], dead["partition"], dead["offset"], dead["value"]) == ("trust.quarantine", 2, 17, value)
    assert dead["timestamp"] == NOW and store.processes == {}


def test_an_undecodable_command_is_dead_lettered():
    [dead] = decoded(asyncio.run(applier(InMemoryRedzoneStore()).handle(b"k", b"\x00junk", SRC)), "dlq")
    assert dead["error_code"] == "undecodable" and dead["value"] == b"\x00junk" and dead["timestamp"] == NOW


def test_redis_down_the_command_is_retried_with_back_off_and_applied_not_dropped():
    store, sleeps = InMemoryRedzoneStore(), Sleeps()
    flaky = Outage(store, failures=4)
    emits = asyncio.run(applier(flaky, sleeps).handle(b"p-1", encoded(command()), SRC))
    assert [e["to_status"] for e in decoded(emits, "redzone")] == ["active"] and not decoded(emits, "dlq")
    assert sleeps.delays == [0.2, 0.4, 0.8, 1.6] and flaky.calls == 5
    assert store.processes["p-1"].in_redzone


def test_with_retry_retries_only_an_outage():
    sleeps = Sleeps()

    async def refused():
        raise ValueError("not an outage")

    with pytest.raises(ValueError):
        asyncio.run(with_retry("testing", refused, sleep=sleeps))
    assert sleeps.delays == []


def test_backoff_doubles_up_to_the_cap_and_resets():
    b = Backoff()
    delays = [b.next() for _ in range(12)]
    assert delays[:4] == [0.2, 0.4, 0.8, 1.6] and delays[-1] == MAX_BACKOFF == max(delays)
    b.reset()
    assert b.next() == 0.2


@pytest.mark.parametrize("url, shown", [
    ("redis://:secret@10.0.0.5:6380/2", "redis://10.0.0.5:6380/2"),
    ("redis://alice:secret@host/0", "redis://host/0"),
    ("rediss://host:6379/0?password=secret", "rediss://host:6379/0"),
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
])
def test_public_url_never_shows_a_password(url, shown):
    assert public_url(url) == shown


# -- the follower -------------------------------------------------------------------

async def until(what: str, check) -> None:
    """Poll `check` on the loop until it holds; fail at the deadline."""
    async def poll():
        while not check():
            await asyncio.sleep(0.001)
    try:
        await asyncio.wait_for(poll(), DEADLINE)
    except asyncio.TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def test_the_follower_loads_the_view_then_follows_changes():
    async def scenario():
        store, view = InMemoryRedzoneStore(), LocalRedzoneView()
        await store.quarantine(command(pid="p-old"), NOW)
        follower = RedzoneFollower(Settings(), view, store=store, sleep=Sleeps())
        task = asyncio.create_task(follower.follow())
        try:
            await asyncio.wait_for(follower.ready.wait(), DEADLINE)
            assert view.isolation_of("p-old") == Isolation.of("network")
            await store.quarantine(command(pid="p-new", level="full"), NOW)
            await until("p-new in the view", lambda: view.isolation_of("p-new") is not None)
            await store.transition("p-old", "recovered", "operator:alice", NOW)
            await until("p-old released", lambda: view.isolation_of("p-old") is None)
            assert len(view) == 1
        finally:
            task.cancel()
    asyncio.run(scenario())


def test_the_follower_waits_out_an_outage_with_back_off():
    async def scenario():
        store, view, sleeps = InMemoryRedzoneStore(), LocalRedzoneView(), Sleeps()
        await store.quarantine(command(), NOW)
        follower = RedzoneFollower(Settings(), view, store=Outage(store, failures=3), sleep=sleeps)
        task = asyncio.create_task(follower.follow())
        try:
            await asyncio.wait_for(follower.ready.wait(), DEADLINE)
        finally:
            task.cancel()
        assert sleeps.delays == [0.2, 0.4, 0.8] and view.isolation_of("p-1") is not None
        assert follower._backoff.next() == 0.2  # reset once resynced
    asyncio.run(scenario())


# -- catching up with the commands published before the start (fail closed) -----------------------

P0, P1 = ("trust.quarantine", 0), ("trust.quarantine", 1)


def test_unapplied_counts_commands_below_the_ends_read_at_start():
    assert unapplied({P0: 5, P1: 3}, {P0: 5, P1: 3}) == 0
    assert unapplied({P0: 5, P1: 3}, {P0: 2, P1: 3}) == 3
    assert unapplied({P0: 5}, {P0: 9}) == 0  # commands after the start do not hold it
    assert unapplied({P0: 5}, {}) == 5  # a partition with no answer is not applied


class Positions:
    """The group's (committed, high) per partition, one answer per call; errors raised."""

    def __init__(self, *answers):
        self.answers, self.calls = list(answers), 0

    def __call__(self):
        self.calls += 1
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer


def follower_with(positions, clock=lambda: 0.0) -> tuple[RedzoneFollower, Sleeps]:
    sleeps = Sleeps()
    return RedzoneFollower(Settings(), LocalRedzoneView(), store=InMemoryRedzoneStore(), sleep=sleeps,
                           positions=positions, clock=clock), sleeps


def test_catch_up_waits_until_the_commands_before_the_start_are_applied():
    positions = Positions({P0: (1, 4), P1: (0, 0)},   # the ends at start: 4 and 0
                          {P0: (2, 6), P1: (0, 1)},   # 2 applied; new commands arrive
                          {P0: (3, 9), P1: (0, 2)},
                          {P0: (4, 9), P1: (0, 3)})   # the 4 before the start are applied
    follower, sleeps = follower_with(positions)
    asyncio.run(asyncio.wait_for(follower.catch_up(), DEADLINE))
    assert positions.calls == 4 and follower.unapplied == 0
    assert sleeps.delays == [RedzoneFollower.POLL] * 2


def test_catch_up_has_no_deadline_and_says_why_it_waits(caplog):
    # Redis down, the redzone agent stuck: the worker decides nothing rather than
    # decide a quarantined process's events as free; it warns every WARN_EVERY s.
    now = [0.0]
    stuck = {P0: (1, 3)}
    positions = Positions(*([stuck] * 400), {P0: (3, 3)})
    follower, sleeps = follower_with(positions, clock=lambda: now[0])

    async def advancing(delay):
        now[0] += delay
    follower._sleep = advancing
    with caplog.at_level("WARNING", "forgeone.trust.redzone"):
        asyncio.run(asyncio.wait_for(follower.catch_up(), DEADLINE))
    warnings = [r.getMessage() for r in caplog.records if "still unapplied" in r.getMessage()]
    assert len(warnings) == int(399 * RedzoneFollower.POLL // RedzoneFollower.WARN_EVERY)  # 79.8 s: 2
    assert warnings[0].startswith("2 quarantine command(s)") and "deciding nothing" in warnings[0]
    assert follower.unapplied == 0 and not follower.ready.is_set()  # ready comes with the resync


def test_catch_up_retries_a_broker_that_does_not_answer():
    positions = Positions(RuntimeError("broker down"), RuntimeError("broker down"),
                          {P0: (0, 0)}, {P0: (0, 0)})
    follower, sleeps = follower_with(positions)
    asyncio.run(asyncio.wait_for(follower.catch_up(), DEADLINE))
    assert sleeps.delays == [0.2, 0.4] and positions.calls == 4
