"""Adaptive trust arithmetic (SPEC §2.1-2.3), as pure functions.

Every value is computed in the order the spec writes it and rounded with
``round(x, 6)``, so offline replay and the streaming engine agree to the bit.
"""

from __future__ import annotations

from streams.policy.model import TrustModel


def base_trust(vector_score: float | None, adaptive: float | None, model: TrustModel) -> float:
    """min(trust vector score or 1.0, adaptive trust or the baseline)."""
    t = model.baseline if adaptive is None else adaptive
    return t if vector_score is None else min(vector_score, t)


def effective_trust(base: float, adjustment: float) -> float:
    """clamp(base + adjustment, 0, 1), rounded."""
    x = base + adjustment
    return round(0.0 if x < 0.0 else 1.0 if x > 1.0 else x, 6)


def after_violation(t: float, model: TrustModel) -> float:
    return round(max(0.0, t - model.violation_penalty), 6)


def after_compliant(t: float, model: TrustModel) -> float:
    return round(t + model.recovery_rate * (model.ceiling - t), 6)


def sum_adjustments(adjustments: list[float]) -> float:
    """Summed in rule order from 0.0 (float addition is not associative)."""
    total = 0.0
    for a in adjustments:
        total += a
    return total


class TrustTable(dict):
    """In-memory adaptive trust per identity (replay; the stream uses a Faust table)."""

    def trust_of(self, identity: str) -> float | None:
        return self.get(identity)
