"""Shell-style globs (case-sensitive, whole string), compiled once.

Patterns without glob characters are resolved to plain equality, the rest to
one compiled regex each.
"""

from __future__ import annotations

import fnmatch
import re
from functools import lru_cache
from typing import Iterable

GLOB_CHARS = frozenset("*?[")


def is_glob(pattern: str) -> bool:
    return not GLOB_CHARS.isdisjoint(pattern)


@lru_cache(maxsize=4096)
def compile_glob(pattern: str):
    """A predicate `str -> bool` for one pattern."""
    if not is_glob(pattern):
        return pattern.__eq__
    match = re.compile(fnmatch.translate(pattern)).match
    return lambda s: match(s) is not None


class PatternSet:
    """Several globs; `first_match(s)` names the first pattern that matches."""

    __slots__ = ("patterns", "_ordered", "_exact", "_globs")

    def __init__(self, patterns: Iterable[str]):
        self.patterns = tuple(patterns)
        self._ordered = tuple((p, compile_glob(p)) for p in self.patterns)
        self._exact = frozenset(p for p in self.patterns if not is_glob(p))
        self._globs = tuple(pred for p, pred in self._ordered if is_glob(p))

    def first_match(self, s: str) -> str | None:
        for pattern, pred in self._ordered:
            if pred(s):
                return pattern
        return None

    def matches(self, s: str) -> bool:
        return s in self._exact or any(pred(s) for pred in self._globs)

    def __bool__(self) -> bool:
        return bool(self.patterns)
