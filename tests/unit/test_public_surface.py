"""The public surface named in streams/surface.py is still offered by the code."""

from __future__ import annotations

import argparse
import importlib
import inspect

import pytest

from streams import surface
from streams.cli.main import build_parser
from tests.unit.test_settings import _from_env_names


@pytest.mark.parametrize("module", sorted(surface.PYTHON))
def test_python_names_are_importable(module):
    mod = importlib.import_module(module)
    missing = [name for name in surface.PYTHON[module] if not hasattr(mod, name)]
    assert missing == [], f"{module} no longer offers {missing}"


def test_the_shim_sdk_keeps_its_arguments_and_methods():
    from streams.settings import Settings
    from streams.shim import ShimProducer

    params = inspect.signature(ShimProducer.__init__).parameters
    assert [a for a in surface.SHIM_PRODUCER_ARGS if a not in params] == []
    shim = ShimProducer(Settings(), partitions=6)  # no network at construction
    assert [m for m in surface.SHIM_PRODUCER_METHODS if not hasattr(shim, m)] == []


def _commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.update(_commands(sub, prefix + (name,)))
    if prefix:
        out[" ".join(prefix)] = {o for a in parser._actions for o in a.option_strings}
    return out


def test_trustctl_keeps_its_commands_and_flags():
    found = _commands(build_parser())
    missing = {cmd: sorted(set(flags) - found.get(cmd, set()))
               for cmd, flags in surface.COMMANDS.items() if cmd not in found or set(flags) - found[cmd]}
    assert missing == {}


def test_the_http_api_keeps_its_routes():
    from streams.web import register

    routes: set[tuple[str, str]] = set()

    class App:
        def page(self, path, name):
            def add(view):
                for method in ("get", "post"):
                    if method in vars(view):
                        routes.add((method.upper(), path))
                return view
            return add

    register(App(), api=object())
    assert set(surface.ROUTES) <= routes


def test_every_public_variable_is_read_by_settings():
    assert set(surface.ENVIRONMENT) <= _from_env_names()
