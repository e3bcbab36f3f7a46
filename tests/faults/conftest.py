"""Fixtures of the fault suite: the shared stack's, and pipelines cleaned up afterwards."""

from __future__ import annotations

import pytest

from tests.integration.conftest import admin, producer_factory, stack  # noqa: F401  (fixtures)
from tests.integration.pipeline import Pipeline


@pytest.fixture
def pipeline(stack, tmp_path_factory):  # noqa: F811
    """make(name, on=stack settings) -> an isolated Pipeline; stopped and cleaned up afterwards."""
    made: list[Pipeline] = []

    def make(name: str, on=None) -> Pipeline:
        """`on`: the settings of a private stack (its topics go with it: only the worker is stopped)."""
        p = Pipeline(on or stack, name, tmp_path_factory.mktemp("workers"))
        made.append((p, on is None))
        return p

    yield make
    for p, shared in made:
        p.cleanup() if shared else p.stop()
