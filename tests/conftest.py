"""Shared fixtures: tiny inline policies and events for the unit tests."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from streams.events import context_from_record
from streams.policy.loader import load_policy
from streams.policy.model import SyscallContext

REPO = Path(__file__).resolve().parents[1]
NOW = "2026-11-28T12:00:00.000000Z"


def event_record(syscall: str = "open_file", args: tuple[str, ...] | list[str] = (), *,
                 identity: str = "svc-a", process: str = "p-1", score: float | None = None,
                 event_id: str = "e-1", timestamp: str = NOW) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "event_id": event_id, "syscall": syscall, "args": list(args),
        "identity": {"id": identity, "process_id": process, "container_id": "c-1"},
        "timestamp": timestamp,
    }
    if score is not None:
        rec["trust_vector"] = {"score": score}
    return rec


def make_ctx(syscall: str = "open_file", args: tuple[str, ...] | list[str] = (), **kw) -> SyscallContext:
    return context_from_record(event_record(syscall, args, **kw))


def make_policy(policies: dict | None = None, **top: Any):
    doc = {"version": "v1", **top}
    doc["policies"] = policies or {}
    return load_policy(doc)


def trustctl_cmd() -> list[str]:
    """The real `trustctl` next to this interpreter, else `python -m streams.cli.main`."""
    script = Path(sys.executable).with_name("trustctl")
    if script.is_file() and os.access(script, os.X_OK):
        return [sys.executable, str(script)]
    return [sys.executable, "-m", "streams.cli.main"]


@pytest.fixture
def ev():
    return make_ctx


@pytest.fixture
def pol():
    return make_policy


@pytest.fixture
def trustctl() -> list[str]:
    return trustctl_cmd()


@pytest.fixture
def repo() -> Path:
    return REPO
