"""The RedzoneStore contract, run against both implementations.

`memory` needs nothing; `redis` runs on the local stack's Redis under this
test's unique key prefix (marked integration).  What every store must do:
create and widen, ignore a redelivered command, move through the state
machine, refuse (changing nothing), read, list in process-id order, tell
followers of every change after `on_subscribed`, and let exactly one of two
racing transitions win.
"""

from __future__ import annotations

import asyncio
from typing import Callable

import pytest

from streams.errors import TransitionError, UnknownProcessError
from streams.redzone.memory import InMemoryRedzoneStore
from streams.redzone.model import Isolation, QuarantinedProcess
from streams.redzone.store import RedzoneStore

T0, T1, T2 = "2026-11-28T12:00:00.000000Z", "2026-11-28T12:00:01.000000Z", "2026-11-28T12:00:02.000000Z"
DEADLINE = 30.0

Backend = Callable[[], RedzoneStore]  # each call: one more client of the same redzone


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.integration)])
def backend(request) -> Backend:
    if request.param == "memory":
        shared = InMemoryRedzoneStore()
        return lambda: shared
    import redis.asyncio as aioredis

    from streams.redzone.redis_store import RedisRedzoneStore

    stack = request.getfixturevalue("stack")
    prefix = request.getfixturevalue("redis_prefix")
    request.getfixturevalue("redis_factory")()  # its teardown deletes every key under the prefix
    return lambda: RedisRedzoneStore(
        aioredis.Redis.from_url(stack.redis_url, password=stack.redis_password, protocol=stack.redis_protocol),
        prefix)


def command(command_id: str, pid: str = "p-1", level: str = "network", syscalls=(), trace=None) -> dict:
    return {"command_id": command_id, "op": "quarantine", "process_id": pid, "container_id": "c-1",
            "identity": {"id": "svc-a", "process_id": pid}, "reason": "trust too low",
            "reason_code": "trust_below_minimum", "isolation_level": level, "isolation_syscalls": list(syscalls),
            "forensic_mode": "full", "trace": trace if trace is not None else [{"event_id": f"e-{command_id}"}],
            "policy_version": "v1", "source": "engine", "timestamp": T0}


def run(backend: Backend, scenario) -> None:
    """Run `scenario(store)` on a fresh client, closing it afterwards."""
    async def go():
        store = backend()
        try:
            await scenario(store)
        finally:
            await store.close()
    asyncio.run(go())


def test_both_are_a_redzone_store(backend):
    async def scenario(store):
        assert isinstance(store, RedzoneStore)
    run(backend, scenario)


def test_quarantine_creates_then_widens_and_a_redelivered_command_changes_nothing(backend):
    async def scenario(store):
        p, event = await store.quarantine(command("c-1"), T0)
        assert p.status.value == "active" and p.isolation == Isolation.of("network")
        assert (event["from_status"], event["to_status"], event["command_id"]) == (None, "active", "c-1")
        assert await store.get("p-1") == p
        again, none = await store.quarantine(command("c-1"), T1)
        assert none is None and again == p and await store.get("p-1") == p
        wider, event = await store.quarantine(command("c-2", level="filesystem"), T1)
        assert wider.isolation == Isolation.of("network").union(Isolation.of("filesystem"))
        assert (event["from_status"], event["to_status"]) == ("active", "active")
        assert [e["event_id"] for e in wider.trace] == ["e-c-1", "e-c-2"] and wider.updated_at == T1
        assert await store.get("p-1") == wider
    run(backend, scenario)


def test_transitions_follow_the_state_machine(backend):
    async def scenario(store):
        await store.quarantine(command("c-1"), T0)
        p, event = await store.transition("p-1", "analyzing", "operator:alice", T1, "look", "c-7")
        assert p.status.value == "analyzing" and p.in_redzone
        assert (event["from_status"], event["to_status"], event["actor"], event["reason"], event["command_id"]) == (
            "active", "analyzing", "operator:alice", "look", "c-7")
        done, _ = await store.transition("p-1", "terminated", "operator:bob", T2)
        assert [(h["from"], h["to"], h["actor"]) for h in done.history] == [
            (None, "active", "engine"), ("active", "analyzing", "operator:alice"),
            ("analyzing", "terminated", "operator:bob")]
        assert await store.get("p-1") == done and not done.in_redzone
    run(backend, scenario)


def test_a_refusal_names_the_state_and_changes_nothing(backend):
    async def scenario(store):
        await store.quarantine(command("c-1"), T0)
        final, _ = await store.transition("p-1", "recovered", "op", T1)
        with pytest.raises(TransitionError, match="cannot go from `recovered` to `terminated` \\(it is final\\)"):
            await store.transition("p-1", "terminated", "op", T2)
        assert await store.get("p-1") == final
        with pytest.raises(UnknownProcessError, match="`p-404`"):
            await store.transition("p-404", "terminated", "op", T2)
        assert await store.get("p-404") is None
        assert [p.process_id for p in await store.all()] == ["p-1"]
        again, none = await store.quarantine(command("c-1"), T2)  # a final process keeps its command ids
        assert none is None and again == final
    run(backend, scenario)


def test_all_lists_every_status_in_process_id_order(backend):
    async def scenario(store):
        assert await store.all() == []
        for pid in ("p-3", "p-1", "p-2"):
            await store.quarantine(command(f"c-{pid}", pid=pid), T0)
        await store.transition("p-2", "terminated", "op", T1)
        listed = await store.all()
        assert [(p.process_id, p.status.value) for p in listed] == [
            ("p-1", "active"), ("p-2", "terminated"), ("p-3", "active")]
        assert all(isinstance(p, QuarantinedProcess) for p in listed)
    run(backend, scenario)


def test_followers_see_every_change_after_subscribing(backend):
    async def scenario(writer):
        await writer.quarantine(command("c-0", pid="p-before"), T0)
        follower = backend()
        seen: list[tuple[str, str]] = []
        resynced: list[str] = []
        subscribed = asyncio.Event()

        async def on_subscribed():
            resynced.extend(p.process_id for p in await follower.all())
            subscribed.set()

        task = asyncio.create_task(follower.follow(lambda p: seen.append((p.process_id, p.status.value)),
                                                   on_subscribed=on_subscribed))
        try:
            await asyncio.wait_for(subscribed.wait(), DEADLINE)
            assert resynced == ["p-before"]
            await writer.quarantine(command("c-1"), T0)
            await writer.quarantine(command("c-1"), T0)  # redelivered: no change, no notification
            await writer.transition("p-1", "analyzing", "op", T1)
            with pytest.raises(TransitionError):
                await writer.transition("p-1", "analyzing", "op", T1)  # refused: no notification
            await writer.transition("p-1", "recovered", "op", T2)

            async def three():
                while len(seen) < 3:
                    await asyncio.sleep(0.005)
            await asyncio.wait_for(three(), DEADLINE)
            assert seen == [("p-1", "active"), ("p-1", "analyzing"), ("p-1", "recovered")]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if follower is not writer:
                await follower.close()
    run(backend, scenario)


def test_of_two_racing_transitions_exactly_one_wins(backend):
    async def scenario(a):
        b = backend()
        try:
            for i in range(5):
                pid = f"p-race-{i}"
                await a.quarantine(command(f"c-{i}", pid=pid), T0)
                results = await asyncio.gather(a.transition(pid, "terminated", "operator:ann", T1),
                                               b.transition(pid, "recovered", "operator:ben", T1),
                                               return_exceptions=True)
                won = [r for r in results if not isinstance(r, BaseException)]
                lost = [r for r in results if isinstance(r, BaseException)]
                assert len(won) == 1 and len(lost) == 1 and isinstance(lost[0], TransitionError), results
                final = won[0][0]
                assert f"cannot go from `{final.status.value}` to" in str(lost[0])
                assert await a.get(pid) == final and len(final.history) == 2
        finally:
            if b is not a:
                await b.close()
    run(backend, scenario)
