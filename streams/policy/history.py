"""The versions a running engine has accepted, in order (SPEC §1.2).

A document is accepted whole or refused whole: `submit` either switches the
current policy and records the version, or raises and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streams.errors import PolicyVersionConflict
from streams.policy.compiled import CompiledPolicy
from streams.policy.loader import load_policy


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    version: str
    digest: str
    effective_at: str
    canonical_json: str


class PolicyHistory:
    def __init__(self) -> None:
        self._versions: list[PolicyVersion] = []
        self.current: CompiledPolicy | None = None

    def submit(self, source: Any, effective_at: str) -> CompiledPolicy:
        """Validate text or data and make it current; raise PolicyError and keep the old one."""
        return self.accept(load_policy(source, last_updated=effective_at), effective_at)

    def accept(self, cp: CompiledPolicy, effective_at: str) -> CompiledPolicy:
        """Make a compiled policy current.  Re-accepting the running version is a
        no-op; the same version with other content is refused (SPEC §1.2)."""
        cur = self.current
        if cur is not None and cur.version == cp.version:
            if cur.digest == cp.digest:
                return cur
            raise PolicyVersionConflict([(
                "version",
                f"version `{cp.version}` is already running with other content "
                f"(sha256 {cur.digest[:12]}, new {cp.digest[:12]}); give the new document a new version",
            )])
        self.current = cp
        self._versions.append(PolicyVersion(cp.version, cp.digest, effective_at, cp.canonical_json))
        return cp

    def versions(self) -> list[PolicyVersion]:
        return list(self._versions)
