"""`streams.simulate` and `trustctl simulate`: wall-clock stamps on simulated events."""

from __future__ import annotations

import argparse
import itertools
import time
from datetime import datetime, timezone

import pytest

from streams.clock import format_time
from streams.simulate import WallClock, generate


def epoch(ts: str) -> float:
    return datetime.fromisoformat(ts).timestamp()


@pytest.mark.parametrize("t", [0.0, 1764680400.0, 1764680400.5, 1764680400.999999, 1764680459.123456,
                               1798761599.999998])
def test_wall_clock_formats_the_time_as_the_spec_writes_it(t):
    got = WallClock(lambda: t)()
    want = format_time(datetime.fromtimestamp(t, timezone.utc))
    assert len(got) == len(want) == 27 and got.endswith("Z")
    # Truncated to the microsecond where datetime rounds: at most 1 µs apart.
    assert abs(epoch(got) - epoch(want)) <= 1.5e-6
    assert got[:19] == time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(t)))


def test_wall_clock_follows_its_clock_across_seconds():
    times = iter([100.25, 100.75, 101.0, 161.5])
    stamp = WallClock(lambda: next(times))
    assert [stamp() for _ in range(4)] == ["1970-01-01T00:01:40.250000Z", "1970-01-01T00:01:40.750000Z",
                                           "1970-01-01T00:01:41.000000Z", "1970-01-01T00:02:41.500000Z"]


def test_generated_events_keep_their_seeded_synthetic_times():
    start = datetime(2026, 11, 28, 12, tzinfo=timezone.utc)
    a = list(itertools.islice(generate(5, seed=3, start=start), 50))
    b = list(itertools.islice(generate(5, seed=3, start=start), 50))
    assert a == b
    assert a[0]["timestamp"] == "2026-11-28T12:00:00.000050Z"
    assert a[-1]["timestamp"] == "2026-11-28T12:00:00.002500Z"


class FakeShim:
    instances: list["FakeShim"] = []

    def __init__(self, *args, **kwargs):
        self.sent: list[tuple[float, dict]] = []
        FakeShim.instances.append(self)

        class Counters:
            events_sent = batches_sent = events_delivered = events_failed = 0

        self.counters = Counters()

    def send(self, event):
        self.sent.append((time.time(), dict(event)))
        self.counters.events_sent += 1

    def poll(self, timeout=0.0):
        time.sleep(timeout)
        return 0

    def close(self, timeout=10.0):
        return 0


def test_simulate_stamps_each_event_with_the_wall_clock_when_it_is_sent(monkeypatch):
    import streams.shim
    from streams.cli.produce_cmd import simulate

    monkeypatch.setattr(streams.shim, "ShimProducer", FakeShim)
    FakeShim.instances.clear()
    before = time.time()
    assert simulate(argparse.Namespace(rate=2000.0, identities=10, duration=0.1, seed=7)) == 0
    after = time.time()
    sent = FakeShim.instances[0].sent
    assert len(sent) == 200
    stamps = [epoch(e["timestamp"]) for _, e in sent]
    assert before - 1e-6 <= stamps[0] and stamps[-1] <= after
    assert stamps == sorted(stamps)
    # Stamped as handed to send(), not 50 µs apart: paced at 2,000 events/s the
    # 200 events span about 0.1 s, and each stamp precedes its send by little.
    assert stamps[-1] - stamps[0] > 0.05
    assert all(0 <= at - s < 0.05 for (at, _), s in zip(sent, stamps))
    assert [e["event_id"] for _, e in sent] == [e["event_id"] for e in itertools.islice(generate(10, 7), 200)]
