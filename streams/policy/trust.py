"""Adaptive trust arithmetic (docs/behaviour.md §2.1-2.3), as pure functions.

Every value is computed in the order the spec writes it and rounded with
``round(x, 6)``, so offline replay and the streaming engine agree to the bit.
"""

from __future__ import annotations

from math import floor

from streams.policy.model import TrustModel


def round6(x: float) -> float:
    """Exactly ``round(x, 6)``, without its decimal conversion in the common case.

    n / 1e6 is the double nearest to n/10^6 (IEEE division is correctly
    rounded and both operands are exact), which is what round() returns; only
    when x*1e6 lies within 1e-6 of a tie could the product's rounding pick the
    wrong n, and then round() itself decides.  Tested against round().
    """
    y = x * 1e6
    n = floor(y)
    f = y - n
    if 0.499999 < f < 0.500001:
        return round(x, 6)
    return (n + 1 if f > 0.5 else n) / 1e6


def effective_trust(base: float, adjustment: float) -> float:
    """clamp(base + adjustment, 0, 1), rounded."""
    x = base + adjustment
    return round6(0.0 if x < 0.0 else 1.0 if x > 1.0 else x)


def after_violation(t: float, model: TrustModel) -> float:
    return round6(max(0.0, t - model.violation_penalty))


def after_compliant(t: float, model: TrustModel) -> float:
    return round6(t + model.recovery_rate * (model.ceiling - t))


def sum_adjustments(adjustments: list[float]) -> float:
    """Summed in rule order from 0.0 (float addition is not associative)."""
    total = 0.0
    for a in adjustments:
        total += a
    return total

