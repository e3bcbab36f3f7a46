"""Wall-clock time as the project writes it: RFC 3339, UTC, microseconds, `Z`.

Only the edges read the clock; the engine takes `now` from its caller.
"""

from __future__ import annotations

from datetime import datetime, timezone

FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def format_time(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime(FORMAT)


def utc_now() -> str:
    return datetime.now(timezone.utc).strftime(FORMAT)


_SECOND: list = [None, ""]  # the last whole second formatted, and its text up to the seconds


def format_epoch_ns(ns: int) -> str:
    """`FORMAT` of a time in nanoseconds since the epoch (a shim's hot path: the
    text up to the seconds is made once per second, the microseconds appended)."""
    sec, rem = divmod(ns, 1_000_000_000)
    if sec != _SECOND[0]:
        _SECOND[1] = datetime.fromtimestamp(sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        _SECOND[0] = sec
    return f"{_SECOND[1]}.{rem // 1000:06d}Z"
