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
