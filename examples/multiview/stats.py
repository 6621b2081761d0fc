"""Paired comparisons of two methods over (view set, seed) pairs: wins/ties/losses and tests.

Written plainly so that every number can be checked by hand (see the tests).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

#: Differences smaller than this count as ties (accuracies are multiples of 1/500 here).
TIE_TOLERANCE = 1e-9


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided sign test: ``P(min(W, L) <= observed)`` under ``W ~ Bin(W + L, 1/2)``.

    Ties are left out before calling. Returns 1.0 when there is nothing to test.

    Example:
        >>> round(sign_test(8, 2), 6)   # 2 * (1 + 10 + 45) / 1024
        0.109375
    """
    if wins < 0 or losses < 0:
        raise ValueError(f"expected non-negative counts, got wins={wins}, losses={losses}")
    n = wins + losses
    if n == 0:
        return 1.0
    k = min(wins, losses)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2.0 * tail)


def wilcoxon_signed_rank(differences: Sequence[float]) -> dict[str, Any]:
    """Two-sided Wilcoxon signed-rank test of the paired differences (zeros dropped).

    Uses :func:`scipy.stats.wilcoxon` (exact distribution for small samples without tied
    ranks, normal approximation otherwise). Returns ``{"statistic", "p", "n"}``; with fewer
    than one non-zero difference ``p`` is 1.0.
    """
    nonzero = [d for d in differences if abs(d) > TIE_TOLERANCE]
    if not nonzero:
        return {"statistic": None, "p": 1.0, "n": 0}
    from scipy.stats import wilcoxon

    res = wilcoxon(nonzero, zero_method="wilcox", alternative="two-sided")
    return {"statistic": float(res.statistic), "p": float(res.pvalue), "n": len(nonzero)}


def paired_comparison(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Compare ``a`` with ``b`` pair by pair (``a[i]`` and ``b[i]`` share a view set and seed).

    Returns:
        ``mean_diff`` and ``median_diff`` of ``a - b``, ``wins`` (``a > b``), ``ties``,
        ``losses``, the exact ``sign_p`` and the Wilcoxon ``wilcoxon_p``, and ``n``.
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"expected two equally long non-empty lists, got {len(a)} and {len(b)}")
    diffs = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    wins = sum(d > TIE_TOLERANCE for d in diffs)
    losses = sum(d < -TIE_TOLERANCE for d in diffs)
    wil = wilcoxon_signed_rank(diffs)
    return {
        "n": len(diffs),
        "mean_diff": statistics.fmean(diffs),
        "median_diff": statistics.median(diffs),
        "wins": wins,
        "ties": len(diffs) - wins - losses,
        "losses": losses,
        "sign_p": sign_test(wins, losses),
        "wilcoxon_p": wil["p"],
        "wilcoxon_statistic": wil["statistic"],
    }


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman rank correlation (scipy); ``None`` for fewer than 3 points or constant input."""
    if len(x) != len(y):
        raise ValueError(f"expected equally long lists, got {len(x)} and {len(y)}")
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)
