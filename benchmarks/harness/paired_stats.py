"""Paired comparisons of two methods over matched runs (same data, same seed), for benchmarks.

``paired_comparison(a, b, resolution=...)`` counts wins, ties and losses of ``a`` against ``b``
and gives the exact two-sided sign test and the two-sided Wilcoxon signed-rank test of the
differences; :func:`mean_std` summarises one method's runs. Written plainly so that every
number can be checked by hand.

One rule for ties and zeros, used by every benchmark (docs/decisions.md, "Paired tests"):

1. Each paired difference is rounded to the evaluation's resolution before anything else:
   the smallest step a score can move by, one test item (``1 / n_test`` for accuracies kept
   as fractions, ``100 / n_test`` for percentage points). Scores stored as float32 differ
   from an exact multiple of that step by rounding noise, which would otherwise split equal
   differences into distinct ranks.
2. Zero differences are dropped (Wilcoxon's original rule); the sign test ignores them too.
3. Tied ``|d|`` get the average of the ranks they span.
4. The two-sided p-value is exact: the permutation distribution of the signed-rank sum over
   all ``2**n`` sign patterns, ties included, computed by dynamic programming over doubled
   ranks (integers). Beyond :data:`EXACT_MAX_N` non-zero differences a normal approximation
   with the tie correction of the variance is used instead.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

#: Differences whose magnitude is below this count as ties when no resolution is given.
TIE_TOLERANCE = 1e-9

#: Up to this many non-zero differences the Wilcoxon p-value is exact; beyond, normal.
EXACT_MAX_N = 400


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


def item_resolution(n_test: int, *, percent: bool = False) -> float:
    """The resolution of an accuracy over ``n_test`` items: one item, as a fraction
    (``1 / n_test``) or in percentage points (``100 / n_test``).

    Example:
        >>> item_resolution(500)
        0.002
    """
    if isinstance(n_test, bool) or not isinstance(n_test, int) or n_test < 1:
        raise ValueError(f"expected a positive number of test items, got {n_test!r}")
    return (100.0 if percent else 1.0) / n_test


def in_steps(differences: Sequence[float], resolution: float | None) -> list[int] | None:
    """The differences as whole numbers of ``resolution`` (rounded to the nearest), or
    ``None`` when no resolution is given.

    Raises:
        ValueError: for a resolution that is not a positive finite number.
    """
    if resolution is None:
        return None
    if not (isinstance(resolution, (int, float)) and math.isfinite(resolution) and resolution > 0):
        raise ValueError(f"expected a positive resolution (one test item), got {resolution!r}")
    return [round(float(d) / resolution) for d in differences]


def rounded_differences(
    a: Sequence[float], b: Sequence[float], resolution: float | None
) -> list[float]:
    """``a - b`` pair by pair, rounded to ``resolution`` (rule 1 of the module); without a
    resolution, differences below :data:`TIE_TOLERANCE` become 0 and the rest stay as given."""
    diffs = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    steps = in_steps(diffs, resolution)
    if steps is None or resolution is None:
        return [0.0 if abs(d) <= TIE_TOLERANCE else d for d in diffs]
    return [k * resolution for k in steps]


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
    return float(min(1.0, 2.0 * tail))


def average_ranks(values: Sequence[float]) -> list[float]:
    """Ranks 1..n of ``values`` in increasing order, tied values sharing the mean of the
    ranks they span.

    Example:
        >>> average_ranks([3, 1, 3, 2])
        [3.5, 1.0, 3.5, 2.0]
    """
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    start = 0
    while start < len(order):
        end = start
        while end + 1 < len(order) and values[order[end + 1]] == values[order[start]]:
            end += 1
        for i in order[start : end + 1]:
            ranks[i] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def exact_signed_rank_p(doubled_ranks: Sequence[int], doubled_w_plus: int) -> float:
    """Exact two-sided p-value of a signed-rank sum: ``2 * min(P(W+ <= w), P(W+ >= w))``
    (at most 1) under the null that each difference's sign is + or - with probability 1/2
    independently. Ranks are given doubled so that average ranks (halves) are integers.

    Example:
        >>> exact_signed_rank_p([2, 4, 6, 8, 10], 20)   # ranks 1..5, W+ = 10: 2 * 10/32
        0.625
    """
    total = sum(doubled_ranks)
    dist = np.zeros(total + 1)
    dist[0] = 1.0
    for r in doubled_ranks:  # each rank joins W+ or not, with probability 1/2 each
        shifted = np.zeros_like(dist)
        shifted[r:] = dist[: total + 1 - r]
        dist = 0.5 * (dist + shifted)
    lower = float(dist[: doubled_w_plus + 1].sum())
    upper = float(dist[doubled_w_plus:].sum())
    return min(1.0, 2.0 * min(lower, upper))


def normal_signed_rank_p(ranks: Sequence[float], w_plus: float) -> float:
    """Two-sided normal approximation of the signed-rank test, the variance corrected for
    ties (``sum(t**3 - t) / 48`` over groups of ``t`` tied ranks), no continuity correction."""
    n = len(ranks)
    groups: dict[float, int] = {}
    for r in ranks:
        groups[r] = groups.get(r, 0) + 1
    var = n * (n + 1) * (2 * n + 1) / 24 - sum(t**3 - t for t in groups.values()) / 48
    if var <= 0:
        return 1.0
    z = (w_plus - n * (n + 1) / 4) / math.sqrt(var)
    return min(1.0, math.erfc(abs(z) / math.sqrt(2)))


def wilcoxon_signed_rank(
    differences: Sequence[float], resolution: float | None = None
) -> dict[str, Any]:
    """Two-sided Wilcoxon signed-rank test of paired differences, by the module's tie and
    zero rule: rounded to ``resolution`` (one test item; ``None``: taken as given, below
    :data:`TIE_TOLERANCE` counted as zero), zeros dropped, tied ``|d|`` on average ranks,
    exact p up to :data:`EXACT_MAX_N` non-zero differences.

    Returns:
        ``{"statistic", "p", "n", "method"}``: ``statistic`` is the smaller of the positive
        and the negative rank sums (``None`` and ``p`` 1.0 with no non-zero difference),
        ``n`` the number of non-zero differences, ``method`` ``"exact"`` or ``"normal"``.

    Example:
        >>> wilcoxon_signed_rank([0.002, 0.002, -0.002, 0.004], resolution=0.002)["p"]
        0.5
    """
    steps = in_steps(differences, resolution)
    values: Sequence[float] = (
        steps if steps is not None else [d for d in differences if abs(d) > TIE_TOLERANCE]
    )
    nonzero = [v for v in values if v != 0]
    if not nonzero:
        return {"statistic": None, "p": 1.0, "n": 0, "method": "exact"}
    ranks = average_ranks([abs(v) for v in nonzero])
    w_plus = sum(r for r, v in zip(ranks, nonzero) if v > 0)
    w_minus = sum(ranks) - w_plus
    if len(nonzero) <= EXACT_MAX_N:
        p = exact_signed_rank_p([round(2 * r) for r in ranks], round(2 * w_plus))
        method = "exact"
    else:
        p = normal_signed_rank_p(ranks, w_plus)
        method = "normal"
    return {"statistic": float(min(w_plus, w_minus)), "p": p, "n": len(nonzero), "method": method}


def wilcoxon_p(differences: Sequence[float], resolution: float | None = None) -> float:
    """Two-sided Wilcoxon signed-rank p-value of :func:`wilcoxon_signed_rank` (1.0 with no
    non-zero difference)."""
    return float(wilcoxon_signed_rank(differences, resolution)["p"])


def paired_comparison(
    a: Sequence[float], b: Sequence[float], resolution: float | None = None
) -> dict[str, Any]:
    """``a`` against ``b``, pair by pair, on the differences rounded to ``resolution`` (one
    test item of the evaluation; see the module's rule).

    Returns:
        ``n``, ``mean_diff`` and ``median_diff`` of the rounded ``a - b``, ``wins``
        (``a > b``), ``ties``, ``losses``, ``sign_p``, ``wilcoxon_p``,
        ``wilcoxon_statistic`` and ``resolution``.

    Raises:
        ValueError: if the lists differ in length or are empty, or the resolution is not
            a positive number.
    """
    if len(a) != len(b) or not a:
        raise ValueError(f"expected two equally long non-empty lists, got {len(a)} and {len(b)}")
    diffs = rounded_differences(a, b, resolution)
    wins = sum(d > 0 for d in diffs)
    losses = sum(d < 0 for d in diffs)
    wil = wilcoxon_signed_rank(diffs, resolution)
    steps = in_steps(diffs, resolution)
    if steps is None or resolution is None:
        mean, median = statistics.fmean(diffs), float(statistics.median(diffs))
    else:  # on whole steps, so that equal differences average without float residue
        mean = statistics.fmean(steps) * resolution
        median = float(statistics.median(steps)) * resolution
    return {
        "n": len(diffs),
        "mean_diff": mean,
        "median_diff": median,
        "wins": wins,
        "ties": len(diffs) - wins - losses,
        "losses": losses,
        "sign_p": sign_test(wins, losses),
        "wilcoxon_p": wil["p"],
        "wilcoxon_statistic": wil["statistic"],
        "resolution": resolution,
    }


def verdict(comparison: dict[str, Any], alpha: float) -> str:
    """``"win"`` (mean difference > 0 and Wilcoxon p < alpha), ``"loss"`` (< 0 and p < alpha)
    or ``"no detectable difference"``."""
    if comparison["wilcoxon_p"] < alpha and comparison["mean_diff"] > 0:
        return "win"
    if comparison["wilcoxon_p"] < alpha and comparison["mean_diff"] < 0:
        return "loss"
    return "no detectable difference"
