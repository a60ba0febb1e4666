"""How a vault is scored, and the metrics the D + E head reports (torch-free).

A vault's final score is its difficulty (D) plus its execution (E, out of 10) minus neutral
penalties (stepping out of the landing area)::

    final = D + E - penalty
"""

from __future__ import annotations

from collections.abc import Sequence

FAMILIES: tuple[str, ...] = ("handspring", "tsukahara", "yurchenko")
"""Vault families (the ``family`` class field)."""

D_RANGE: tuple[float, float] = (2.0, 6.4)
"""Lowest and highest D-score, in points."""

E_RANGE: tuple[float, float] = (0.0, 10.0)
"""Lowest and highest E-score, in points."""

PENALTY_RANGE: tuple[float, float] = (0.0, 1.0)
"""Neutral penalties, in points."""

FINAL_RANGE: tuple[float, float] = (0.0, D_RANGE[1] + E_RANGE[1])
"""Lowest and highest final score, in points."""


def final_score(d_score: float, e_score: float, penalty: float = 0.0) -> float:
    """The final score of a vault.

    Args:
        d_score: Difficulty score.
        e_score: Execution score (10 minus the execution deductions).
        penalty: Neutral penalties.

    Returns:
        ``d_score + e_score - penalty``, never below zero.
    """
    return max(0.0, d_score + e_score - penalty)


def mean_abs_error(predicted: Sequence[float], true: Sequence[float]) -> float:
    """Mean absolute difference, in points."""
    return sum(abs(p - t) for p, t in zip(predicted, true, strict=True)) / max(1, len(true))
