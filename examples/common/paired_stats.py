"""Paired comparisons of two methods over matched runs (same data, same seed), for benchmarks.

``paired_comparison(a, b)`` counts wins, ties and losses of ``a`` against ``b`` and gives the
exact two-sided sign test and the two-sided Wilcoxon signed-rank test (scipy) of the
differences; :func:`mean_std` summarises one method's runs. Written plainly so that every
number can be checked by hand.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

#: Differences smaller than this count as ties.
TIE_TOLERANCE = 1e-9


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """``{"mean", "std"}`` of the values (sample standard deviation; 0 for one value).

    Example:
        >>> mean_std([0.5, 0.7])["mean"]
        0.6
    """
    if not values:
        raise ValueError("expected at least one value, got none")
    return {
        "mean": float(statistics.fmean(values)),
        "std": float(statistics.stdev(values)) if len(values) > 1 else 0.0,
    }


def sign_test(wins: int, losses: int) -> float:
    """Exact two-sided sign test of ``wins`` against ``losses`` (ties left out beforehand).

    ``2 * P(X <= min(wins, losses))`` for ``X ~ Binomial(wins + losses, 1/2)``, at most 1;
    1.0 when there is nothing to test.

    Example:
        >>> round(sign_test(9, 1), 6)   # 2 * (1 + 10) / 1024
        0.021484
    """
    if wins < 0 or losses < 0:
        raise ValueError(f"expected non-negative counts, got wins={wins}, losses={losses}")
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2.0 * tail)


def wilcoxon_signed_rank(differences: Sequence[float]) -> dict[str, Any]:
    """Two-sided Wilcoxon signed-rank test of the paired differences (zeros dropped).

    Uses :func:`scipy.stats.wilcoxon` (exact distribution for small samples without tied
    ranks, normal approximation otherwise). Returns ``{"statistic", "p", "n"}``; with no
    non-zero difference ``p`` is 1.0.
    """
    nonzero = [d for d in differences if abs(d) > TIE_TOLERANCE]
    if not nonzero:
        return {"statistic": None, "p": 1.0, "n": 0}
    from scipy.stats import wilcoxon

    res = wilcoxon(nonzero, zero_method="wilcox", alternative="two-sided")
    return {"statistic": float(res.statistic), "p": float(res.pvalue), "n": len(nonzero)}


def wilcoxon_p(differences: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value of the non-zero differences (1.0 if none)."""
    return float(wilcoxon_signed_rank(differences)["p"])


def paired_comparison(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """``a`` against ``b``, pair by pair.

    Returns:
        ``n``, ``mean_diff`` and ``median_diff`` of ``a - b``, ``wins`` (``a > b``), ``ties``,
        ``losses``, ``sign_p`` and ``wilcoxon_p``.

    Raises:
        ValueError: if the lists differ in length or are empty.
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


def verdict(comparison: dict[str, Any], alpha: float) -> str:
    """``"win"`` (mean difference > 0 and Wilcoxon p < alpha), ``"loss"`` (< 0 and p < alpha)
    or ``"no detectable difference"``."""
    if comparison["wilcoxon_p"] < alpha and comparison["mean_diff"] > 0:
        return "win"
    if comparison["wilcoxon_p"] < alpha and comparison["mean_diff"] < 0:
        return "loss"
    return "no detectable difference"
