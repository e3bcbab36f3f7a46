"""The versions a running engine has accepted, in order, and those it refused (docs/behaviour.md §1.2).

A document is accepted whole or refused whole: `submit` either switches the
current policy and records the version, or raises and changes nothing.  A
refusal decided elsewhere (a signature check, a document that does not
decode) is recorded with `refuse`, with a stable reason code.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from streams.errors import PolicyVersionConflict
from streams.policy.compiled import CompiledPolicy
from streams.policy.loader import load_policy


class RefusalReason(StrEnum):
    """Why a published document did not go into force."""

    INVALID = "invalid"  # the document is refused by validation, or its digest is wrong
    VERSION_CONFLICT = "version_conflict"  # same version as the one running, other content
    UNDECODABLE = "undecodable"  # the message is not a PolicyDocument
    UNSIGNED = "unsigned"  # signatures required, none given
    BAD_SIGNATURE = "bad_signature"  # malformed, or does not verify
    UNKNOWN_KEY = "unknown_key"  # signed by a key that is not trusted
    ROLLBACK = "rollback"  # signed no later than the document in force


@dataclass(frozen=True, slots=True)
class PolicyVersion:
    version: str
    digest: str
    effective_at: str
    canonical_json: str
    signed_at: str | None = None  # set when a verified signature came with it
    key_id: str | None = None


@dataclass(frozen=True, slots=True)
class PolicyRefusal:
    version: str
    digest: str | None
    published_at: str | None
    reason: RefusalReason
    message: str


class PolicyHistory:
    def __init__(self) -> None:
        self._versions: list[PolicyVersion] = []
        self._refusals: list[PolicyRefusal] = []
        self.current: CompiledPolicy | None = None

    @property
    def in_force(self) -> PolicyVersion | None:
        """The history entry of the current policy (with its signing time, if signed)."""
        return self._versions[-1] if self._versions else None

    def submit(self, source: Any, effective_at: str) -> CompiledPolicy:
        """Validate text or data and make it current; raise PolicyError and keep the old one."""
        return self.accept(load_policy(source, last_updated=effective_at), effective_at)

    def accept(self, cp: CompiledPolicy, effective_at: str, *, signed_at: str | None = None,
               key_id: str | None = None) -> CompiledPolicy:
        """Make a compiled policy current.  Re-accepting the running version is a
        no-op; the same version with other content is refused (docs/behaviour.md §1.2)."""
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
        self._versions.append(PolicyVersion(cp.version, cp.digest, effective_at, cp.canonical_json,
                                            signed_at, key_id))
        return cp

    def refuse(self, version: str, digest: str | None, published_at: str | None,
               reason: RefusalReason | str, message: str) -> PolicyRefusal:
        """Record that a published document was refused (nothing else changes)."""
        refusal = PolicyRefusal(version, digest, published_at, RefusalReason(reason), message)
        self._refusals.append(refusal)
        return refusal

    def versions(self) -> list[PolicyVersion]:
        return list(self._versions)

    def refusals(self) -> list[PolicyRefusal]:
        return list(self._refusals)
