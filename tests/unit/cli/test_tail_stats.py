"""`trustctl tail decisions --stats`: count and latency percentiles of decisions (pure part)."""

from __future__ import annotations

import argparse

import pytest

from streams.cli.tail_cmd import LatencyStats, parse_time, percentile, register, run
from streams.errors import TrustError


def parse(*argv: str) -> argparse.Namespace:
    # Only tail's parser: building trustctl's whole parser imports every command
    # module, which must not happen under capture (streams.replay binds stderr).
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(list(argv))


def decision(event_ts: str, ts: str) -> dict:
    return {"event_id": "e", "event_timestamp": event_ts, "timestamp": ts}


def test_latency_is_decision_time_minus_event_time():
    s = LatencyStats()
    s.add(decision("2026-11-28T12:00:00.000000Z", "2026-11-28T12:00:00.012500Z"))
    s.add(decision("2026-11-28T12:00:59.990000Z", "2026-11-28T12:01:00.010000Z"))  # across a minute
    assert s.seconds == pytest.approx([0.0125, 0.02])
    assert s.summary() == {"decisions": 2, "p50_ms": 12.5, "p95_ms": 20.0, "p99_ms": 20.0, "max_ms": 20.0}


def test_percentiles_are_nearest_rank_over_every_decision():
    s = LatencyStats()
    for ms in range(100, 0, -1):  # 1..100 ms, in any order
        s.add(decision("2026-11-28T12:00:00.000000Z", f"2026-11-28T12:00:00.{ms * 1000:06d}Z"))
    assert s.summary() == {"decisions": 100, "p50_ms": 50.0, "p95_ms": 95.0, "p99_ms": 99.0, "max_ms": 100.0}


def test_percentile_nearest_rank_small_lists():
    assert percentile([7.0], 50) == 7.0
    assert percentile([1.0, 2.0], 50) == 1.0
    assert percentile([1.0, 2.0], 51) == 2.0
    assert percentile([1.0, 2.0, 3.0], 99) == 3.0


def test_decisions_whose_times_do_not_parse_are_counted_apart():
    s = LatencyStats()
    s.add(decision("2026-11-28T12:00:00.000000Z", "2026-11-28T12:00:00.001000Z"))
    s.add(decision("yesterday", "2026-11-28T12:00:00.001000Z"))
    s.add({"event_id": "no times"})
    assert s.summary() == {"decisions": 3, "p50_ms": 1.0, "p95_ms": 1.0, "p99_ms": 1.0, "max_ms": 1.0,
                           "unparsed": 2}


def test_clock_skew_shows_as_negative_latency_not_hidden():
    s = LatencyStats()
    s.add(decision("2026-11-28T12:00:00.005000Z", "2026-11-28T12:00:00.001000Z"))
    assert s.summary()["max_ms"] == -4.0


def test_no_decisions_no_percentiles():
    assert LatencyStats().summary() == {"decisions": 0, "p50_ms": None, "p95_ms": None, "p99_ms": None,
                                        "max_ms": None}


def test_since_takes_rfc3339_times_and_names_a_bad_one():
    assert parse_time("2026-11-28T12:00:00Z").timestamp() == 1795867200.0
    assert parse_time("2026-11-28T12:00:00").timestamp() == 1795867200.0  # no offset: UTC
    with pytest.raises(TrustError, match="`noon`"):
        parse_time("noon")


def test_stats_refuses_other_records():
    with pytest.raises(TrustError, match="`--stats` reads decisions, not `violations`"):
        run(parse("tail", "violations", "--stats"))  # refused before any broker is asked


def test_a_bad_since_is_refused_before_the_broker():
    with pytest.raises(TrustError, match="`noon`"):
        run(parse("tail", "decisions", "--since", "noon"))


def test_tail_parses_stats_and_since():
    args = parse("tail", "decisions", "--stats", "--since", "2026-11-28T12:00:00Z")
    assert args.stats and args.since == "2026-11-28T12:00:00Z"
