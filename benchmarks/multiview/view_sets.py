"""The view sets of the multi-view benchmark: the 15 pairs, the three triples of the
pre-registered rule, and all six views; which methods run on each."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from examples.multiview.data import VIEWS

#: The three triples of the pre-registered rule: kind -> the ranks of its views (1 = best).
TRIPLE_RANKS: dict[str, tuple[int, int, int]] = {
    "weakest3": (4, 5, 6),
    "strongest3": (1, 2, 3),
    "mixed3": (1, 3, 6),
}


@dataclass(frozen=True)
class ViewSet:
    """A named set of views (``kind``: pair, weakest3, strongest3, mixed3, all6)."""

    views: tuple[str, ...]
    kind: str

    @property
    def name(self) -> str:
        return "+".join(self.views)


def pairs() -> list[ViewSet]:
    """All 15 pairs of the six views, in the canonical view order."""
    return [ViewSet(c, "pair") for c in itertools.combinations(VIEWS, 2)]


def ranked(unimodal_val: dict[str, float]) -> list[str]:
    """The views by unimodal validation accuracy, best first (ties: the canonical order)."""
    return sorted(VIEWS, key=lambda v: (-unimodal_val[v], VIEWS.index(v)))


def triples(unimodal_val: dict[str, float]) -> list[ViewSet]:
    """The three 3-view sets of the pre-registered rule.

    Rank the views by unimodal validation accuracy (best first; ties broken by the canonical
    view order). ``weakest3`` = ranks 4, 5, 6; ``strongest3`` = ranks 1, 2, 3; ``mixed3`` =
    ranks 1, 3 and 6 (the strongest view, a middle one and the weakest). Each set lists its
    views in the canonical order.
    """
    missing = [v for v in VIEWS if v not in unimodal_val]
    if missing:
        raise ValueError(f"expected a unimodal accuracy for every view, missing {missing}")
    order = ranked(unimodal_val)

    def pick(ranks: Sequence[int]) -> tuple[str, ...]:
        chosen = {order[r - 1] for r in ranks}
        return tuple(v for v in VIEWS if v in chosen)

    return [ViewSet(pick(ranks), kind) for kind, ranks in TRIPLE_RANKS.items()]


def methods_for(view_set: ViewSet, methods: Sequence[str]) -> list[str]:
    """The benchmark keys of a view set (``mcr_singletons`` only, and always with mcr, at M = 6)."""
    six = len(view_set.views) == len(VIEWS)
    keys = [k for k in methods if k != "mcr_singletons"]
    if six and ("mcr" in keys or "mcr_singletons" in methods):
        keys.append("mcr_singletons")
    return keys


def report_order(name: str, kind: str) -> tuple[int, int]:
    """Where a view set stands in the report: pairs (canonical), the triples, then all six."""
    if kind == "pair":
        return (0, [vs.name for vs in pairs()].index(name))
    if kind == "all6":
        return (2, 0)
    return (1, list(TRIPLE_RANKS).index(kind))
