"""The project's timestamps: one format, and the shim's fast path gives the same text."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from streams.clock import FORMAT, format_epoch_ns, format_time


@pytest.mark.parametrize("ns", [0, 1_796_227_218_614_854_600, 1_796_227_218_999_999_999,
                                1_796_227_219_000_000_000, 951_782_400_000_001_000])  # 2000-02-29
def test_format_epoch_ns_is_strftime_of_the_same_instant(ns):
    expected = datetime.fromtimestamp(ns // 1000 / 1e6, timezone.utc).strftime(FORMAT)
    as_dt = format_time(datetime.fromtimestamp(ns // 1_000_000_000, timezone.utc).replace(
        microsecond=ns % 1_000_000_000 // 1000))
    assert format_epoch_ns(ns) == expected == as_dt


def test_format_epoch_ns_golden():
    assert format_epoch_ns(1_796_227_218_614_854_600) == "2026-12-02T16:00:18.614854Z"
    assert format_epoch_ns(1_796_227_218_000_000_999) == "2026-12-02T16:00:18.000000Z"  # truncated, not rounded
