"""Kafka's default partitioner in pure Python (docs/behaviour.md §1.1): golden vectors from
Kafka's and librdkafka's own test suites; agreement with the real producer is
in tests/integration/test_shim.py."""

from __future__ import annotations

import ctypes

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.errors import ConfigError
from streams.partitioner import PartitionMap, murmur2, partition_for_key, partition_of, to_positive

# apache/kafka clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java, testMurmur2
KAFKA_JAVA = {
    b"21": -973932308,
    b"foobar": -790332482,
    b"a-little-bit-long-string": -985981536,
    b"a-little-bit-longer-string": -1486304829,
    b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
    b"abc": 479470107,
}

# confluentinc/librdkafka src/rdmurmur2.c, unittest_murmur2 ("java_murmur2_results",
# int32_t written in hex); the suffixes are its unaligned cases.
_PRE = b"PreAmbleWillBeRemoved,ThePrePartThatIs"
LIBRDKAFKA = {
    b"kafka": 0xD067CF64,
    b"giberish123456789": 0x8F552B0C,
    b"1234": 0x9FC97B14,
    b"234": 0xE7C009CA,
    b"34": 0x873930DA,
    b"4": 0x5A4B5CA1,
    _PRE: 0x78424F1C,
    _PRE[1:]: 0x4A62B377,
    _PRE[2:]: 0xE0E4E09E,
    _PRE[3:]: 0x62B8B43F,
    b"": 0x106E08D9,
}


@pytest.mark.parametrize(("key", "expected"), KAFKA_JAVA.items(), ids=[k.decode() for k in KAFKA_JAVA])
def test_murmur2_matches_kafkas_java_client(key, expected):
    assert murmur2(key) == expected


@pytest.mark.parametrize(("key", "expected"), LIBRDKAFKA.items(), ids=[k.decode()[:12] or "empty" for k in LIBRDKAFKA])
def test_murmur2_matches_librdkafka(key, expected):
    assert murmur2(key) == ctypes.c_int32(expected).value


def test_to_positive_clears_the_sign_bit_like_java():
    assert to_positive(-973932308) == -973932308 & 0x7FFFFFFF == 1173551340
    assert to_positive(-(2**31)) == 0  # not abs(): Java's toPositive(Integer.MIN_VALUE) is 0
    assert to_positive(479470107) == 479470107


def test_partition_is_positive_murmur2_modulo_the_count():
    # "foobar": murmur2 -790332482 -> toPositive 1357151166
    assert partition_for_key(b"foobar", 6) == 1357151166 % 6 == 0
    assert partition_for_key(b"foobar", 7) == 1357151166 % 7
    assert partition_of("foobar", 6) == 0
    assert all(partition_of("foobar", 1) == 0 for _ in range(3))


def test_identities_are_hashed_as_utf8():
    name = "svc-zahlungsverkehr-ü€"
    assert partition_of(name, 12) == partition_for_key(name.encode("utf-8"), 12)
    assert murmur2(name.encode("utf-8")) != murmur2(name.encode("utf-16-le"))


@pytest.mark.parametrize("bad", [0, -1])
def test_a_partition_count_below_one_is_refused(bad):
    with pytest.raises(ConfigError, match=f"`{bad}`"):
        partition_for_key(b"x", bad)
    with pytest.raises(ConfigError, match=f"`{bad}`"):
        PartitionMap(bad)


@given(st.binary(max_size=64))
def test_agrees_with_aiokafkas_murmur2(key):
    # aiokafka's partitioner (the Faust side of the engine) is an independent implementation.
    from aiokafka.partitioner import murmur2 as aiokafka_murmur2

    assert to_positive(murmur2(key)) == aiokafka_murmur2(key) & 0x7FFFFFFF
    assert -(2**31) <= murmur2(key) < 2**31


def test_partition_map_memoises_and_stays_bounded():
    m = PartitionMap(6, max_entries=3)
    assert [m(i) for i in ("a", "b", "c")] == [partition_of(i, 6) for i in ("a", "b", "c")]
    assert len(m._cache) == 3
    assert m("d") == partition_of("d", 6)
    assert len(m._cache) == 1  # forgot everything, then remembered d
    assert m.partitions == 6


def test_misplaced_names_both_partitions():
    m = PartitionMap(6)
    home = partition_of("svc-payments", 6)
    assert m.misplaced("svc-payments", home) is None
    other = (home + 1) % 6
    assert m.misplaced("svc-payments", other) == (
        f"identity `svc-payments` belongs to partition {home} of 6, not partition {other} where its event arrived"
    )
