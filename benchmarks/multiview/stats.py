"""Paired comparisons of two methods over (view set, seed) pairs: wins/ties/losses and tests.

Written plainly so that every number can be checked by hand (see the tests).
"""

from __future__ import annotations

from collections.abc import Sequence

# the paired tests are the shared ones; this module adds the rank correlation the report uses
from benchmarks.harness.paired_stats import (
    TIE_TOLERANCE,
    paired_comparison,
    sign_test,
    wilcoxon_signed_rank,
)

__all__ = ["TIE_TOLERANCE", "paired_comparison", "sign_test", "spearman", "wilcoxon_signed_rank"]


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman rank correlation (scipy); ``None`` for fewer than 3 points or constant input."""
    if len(x) != len(y):
        raise ValueError(f"expected equally long lists, got {len(x)} and {len(y)}")
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)
