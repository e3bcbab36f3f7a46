"""Custom validators: named callables `(SyscallContext) -> bool` (docs/behaviour.md §2.2).

Two are built in; more come from the entry-point group
``forgeone_trust.validators`` (loaded once, on first lookup) or from
:func:`register` at run time.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Callable

from streams.policy.model import SyscallContext

Validator = Callable[[SyscallContext], bool]
ENTRY_POINT_GROUP = "forgeone_trust.validators"

_SHELL_METACHARS = frozenset(";|&`$<>")


def no_path_traversal(ctx: SyscallContext) -> bool:
    """False if any argument, split on `/`, has a `..` segment."""
    return not any(".." in arg.split("/") for arg in ctx.args if ".." in arg)


def no_shell_metachar(ctx: SyscallContext) -> bool:
    """False if any argument contains one of ``; | & ` $ < >``."""
    return not any(not _SHELL_METACHARS.isdisjoint(arg) for arg in ctx.args)


_registry: dict[str, Validator] = {
    "no_path_traversal": no_path_traversal,
    "no_shell_metachar": no_shell_metachar,
}
_entry_points_loaded = False


def register(name: str, fn: Validator) -> None:
    """Register a validator under `name` (replacing one of the same name)."""
    _registry[name] = fn


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _registry:
            _registry[ep.name] = ep.load()


def get(name: str) -> Validator | None:
    """The validator registered under `name`, or None."""
    if name not in _registry:
        _load_entry_points()
    return _registry.get(name)


def names() -> list[str]:
    _load_entry_points()
    return sorted(_registry)
