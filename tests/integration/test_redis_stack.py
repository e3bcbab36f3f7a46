"""Redis read/write with redis-py 8 against the stack's Debian Redis 7.

redis-py 8 speaks RESP3 by default; these tests pin that it works with the
server the stack runs (finding recorded in deploy/README.md), and that RESP2
still works for anyone who sets `protocol=2`.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_redis_py_defaults_to_resp3_and_the_server_agrees(redis_factory):
    client = redis_factory(protocol=None)  # None: whatever redis-py defaults to
    connection = client.connection_pool.get_connection()
    try:
        assert connection.protocol == 3
    finally:
        client.connection_pool.release(connection)
    hello = client.execute_command("HELLO")
    assert hello[b"proto"] == 3
    assert hello[b"version"].split(b".")[0] >= b"7"


@pytest.mark.parametrize("protocol", [3, 2])
def test_read_write_round_trip(redis_factory, redis_prefix, protocol):
    r = redis_factory(protocol=protocol, decode_responses=True)
    key = redis_prefix + "k"
    assert r.set(key, "v", ex=60) is True
    assert r.get(key) == "v"
    assert 0 < r.ttl(key) <= 60

    h = redis_prefix + "proc:p-17"
    r.hset(h, mapping={"status": "active", "isolation": "full", "n": 1})
    assert r.hgetall(h) == {"status": "active", "isolation": "full", "n": "1"}
    assert r.hincrby(h, "n", 2) == 3

    s = redis_prefix + "set"
    r.sadd(s, "a", "b", "a")
    assert r.smembers(s) == {"a", "b"}

    z = redis_prefix + "zset"
    r.zadd(z, {"x": 1.5, "y": 0.5})
    pairs = r.zrange(z, 0, -1, withscores=True)
    # The one shape difference met: RESP3 gives [member, score] lists, RESP2 tuples.
    assert [tuple(p) for p in pairs] == [("y", 0.5), ("x", 1.5)]
    assert type(pairs[0]) is (list if protocol == 3 else tuple)

    l = redis_prefix + "trace"
    r.rpush(l, *[f"e{i}" for i in range(70)])
    r.ltrim(l, -64, -1)
    assert r.llen(l) == 64 and r.lindex(l, 0) == "e6"


@pytest.mark.parametrize("protocol", [3, 2])
def test_transactions_and_lua_are_atomic(redis_factory, redis_prefix, protocol):
    r = redis_factory(protocol=protocol, decode_responses=True)
    key = redis_prefix + "status"
    with r.pipeline(transaction=True) as pipe:
        pipe.hset(key, "status", "active").hset(key, "version", 1).hgetall(key)
        *_, snapshot = pipe.execute()
    assert snapshot == {"status": "active", "version": "1"}

    transition = r.register_script(
        "if redis.call('HGET', KEYS[1], 'status') == ARGV[1] then "
        "  redis.call('HSET', KEYS[1], 'status', ARGV[2]) return 1 "
        "else return 0 end"
    )
    assert transition(keys=[key], args=["active", "analyzing"]) == 1
    assert transition(keys=[key], args=["active", "recovered"]) == 0
    assert r.hget(key, "status") == "analyzing"


def test_binary_values_survive(redis_factory, redis_prefix):
    r = redis_factory(protocol=3)  # bytes in, bytes out
    payload = bytes(range(256))
    r.set(redis_prefix + "bin", payload)
    assert r.get(redis_prefix + "bin") == payload


def test_server_persists_with_aof(redis_client):
    config = redis_client.config_get("append*")
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
