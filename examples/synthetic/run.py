"""The synthetic competition benchmark: every method along a U1/S sweep (paper Figure 1).

    python -m examples.synthetic.run --quick --out runs/synthetic-quick
    python -m examples.synthetic.run --out runs/synthetic-full          # full sweep + ablations
    python -m examples.synthetic.run --regime undertrained --quick --out runs/undertrained-quick

Two data regimes (:data:`REGIMES`): ``fusion`` (the default, the first benchmark: the gap to
the ensemble comes from fusing a modality that is noise on a point) and ``undertrained`` (joint
training leaves the slow modality's encoder under-trained; measured by a linear probe of its
latent, see :func:`slow_probe`).

For each sweep point (``u2`` fixed, ``u1`` growing, ``s = 1 - u1 - u2``) and each seed, every
method is trained with the same budget: the same encoders, epochs, patience, batch size and
``G`` tuning trials (the first ``G`` entries of :data:`GRID`). The trial with the best mean
validation accuracy over the seeds is reported on the test set (mean and std over seeds).

Outputs in ``--out``: ``results.json`` (``{"points": [{"u1", "s", "u2", "methods": {name:
{"mean", "std", ...}}}], ...}``, accuracies in [0, 1]), ``results.md`` (tables) and
``accuracy_vs_ratio.png`` (accuracy vs U1/S, one line per method). Every run also records
``probe``: the test accuracy of a linear probe of the slow modality's latent; ``probe_gap``
per method and point is the unimodal probe (the ensemble's own encoder) minus that probe.
Each finished training run is kept in ``--out``/runs, so the same command after a stop trains
only what is missing (``--no-resume``: all again).
"""

from __future__ import annotations

if __package__ in (None, ""):  # run as a file: make the repository root importable
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import argparse
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from examples.common.cli import METHODS
from examples.common.data import build_loaders
from examples.common.methods import Method, build_method
from examples.common.metrics import error_matrix
from examples.common.model import ConcatFusionHead, MultimodalModel
from examples.common.paired_stats import mean_std
from examples.common.progress import run_jobs
from examples.common.runstore import RunStore, add_resume_argument
from examples.common.task import TaskSpec
from examples.common.trainer import TrainConfig, evaluate, fit, seed_everything
from examples.common.tuning import GRID, VARIANTS, Budget
from examples.synthetic.generator import SyntheticSpec, make_datasets
from examples.synthetic.report import markdown, write_outputs
from examples.synthetic.results import MCR_KEYS, SCHEMA_VERSION

#: Every benchmark key, in table order.
BENCHMARK_METHODS: tuple[str, ...] = (*METHODS, *VARIANTS)

#: The keys that are MCR (the claims are checked for each, against the baselines only).

#: Ablations at the most imbalanced point (paper Tables 2-4), as MCR option overrides.
ABLATIONS: dict[str, dict[str, dict[str, Any]]] = {
    "strategy": {
        "collaborative": {"strategy": "collaborative"},
        "independent": {"strategy": "independent"},
        "greedy": {"strategy": "greedy"},
    },
    "components": {
        "none": {"mipd_weight": 0.0, "contrastive_weight": 0.0},
        "mipd": {"contrastive_weight": 0.0},
        "con": {"mipd_weight": 0.0},
        "mipd+con": {},
        "mipd+con+ceb": {"ceb_weight": 1.0},
        "mipd+con, no unimodal term": {"unimodal_weight": 0.0},
    },
    "perturbation": {
        "noise": {"perturbation": "noise"},
        "zero": {"perturbation": "zero"},
        "permutation": {"perturbation": "permutation"},
    },
    # the package's head-gradient and contrastive rules against the alternatives
    "rules": {
        "mean head gradient, NT-Xent (defaults)": {},
        "summed head gradient": {"head_gradient": "sum"},
        "SupCon contrastive": {"contrastive": "supcon"},
        "summed head gradient, SupCon": {"head_gradient": "sum", "contrastive": "supcon"},
    },
}


#: The data regimes (generator settings; the sweep sets u1, s and u2 on top).
#:
#: ``fusion``: the first benchmark. The slow modality 1 (tanh-folded, 64-d) is learnt about as
#: well jointly as alone; joint training loses to the ensemble at the fusion (docs).
#: ``undertrained``: modality 1 (lifted to 128 dimensions, latent noise 0.5) additionally
#: carries 56 loud label-free nuisance factors (std 12) that an encoder has to learn to
#: suppress (slow: a linear probe of a random encoder's latent is near chance), and modality 2
#: is lifted to 2048 dimensions, enough to memorise the 2000 training points within a few
#: epochs. Joint training fits the training set through modality 2 first and modality 1's
#: encoder stops improving.
REGIMES: dict[str, SyntheticSpec] = {
    "fusion": SyntheticSpec(),
    "undertrained": SyntheticSpec(
        input_dims=(128, 2048),
        noise=(0.5, 1.0),
        nuisance_dims=(56, 0),
        nuisance_std=(12.0, 0.0),
    ),
}

#: A seed's premise of the ``undertrained`` regime holds when the joint model's slow-encoder
#: probe is at least this far (accuracy, fraction) below the unimodal model's.
PREMISE_GAP = 0.03


def build_model(spec: SyntheticSpec, budget: Budget) -> MultimodalModel:
    """Two MLP encoders ``Linear-ReLU-Linear`` and a linear late-fusion head."""

    def encoder(d: int) -> nn.Module:
        return nn.Sequential(
            nn.Linear(d, budget.hidden), nn.ReLU(), nn.Linear(budget.hidden, budget.latent)
        )

    encoders = {"m1": encoder(spec.input_dims[0]), "m2": encoder(spec.input_dims[1])}
    head = ConcatFusionHead([budget.latent, budget.latent], spec.num_classes)
    return MultimodalModel(encoders, head, {"m1": budget.latent, "m2": budget.latent})


def fit_trial(
    spec: SyntheticSpec, budget: Budget, method: str, trial: dict[str, Any], seed: int
) -> tuple[Method, dict[str, Any], dict[str, Any]]:
    """Build ``method`` (a method name or a :data:`VARIANTS` key) and train it with the budget.

    Returns:
        ``(method, datasets, loaders)`` after training (best weights restored).
    """
    torch.set_num_threads(1)
    trial = dict(trial)
    lr = float(trial.pop("lr", budget.lr))
    data = make_datasets(spec, seed)
    seed_everything(seed)
    task = TaskSpec("classification", num_classes=spec.num_classes)
    name, fixed = VARIANTS.get(method, (method, {}))
    m = build_method(name, build_model(spec, budget), task, {**fixed, **trial})
    m.set_seed(seed)
    loaders = build_loaders(data, batch_size=budget.batch_size, seed=seed)
    config = TrainConfig(
        max_epochs=budget.max_epochs,
        patience=budget.patience,
        lr=lr,
        weight_decay=budget.weight_decay,
        seed=seed,
        progress=False,
        importance=False,
    )
    fit(m, loaders, config)
    return m, data, loaders


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    *,
    l2: float = 1e-3,
    max_iter: int = 200,
) -> float:
    """Test accuracy of a multinomial logistic regression fitted on ``(train_x, train_y)``.

    Features are standardised with the training mean and std; the weights start at zero and
    are fitted by full-batch L-BFGS on cross-entropy + ``l2 * ||W||^2`` (deterministic).

    Args:
        train_x: ``(N, D)`` features; train_y: ``(N,)`` class indices.
        test_x: ``(M, D)``; test_y: ``(M,)``.

    Raises:
        ValueError: when the shapes do not match.
    """
    if train_x.dim() != 2 or test_x.dim() != 2 or train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            f"expected (N, D) and (M, D) features, got {tuple(train_x.shape)} and "
            f"{tuple(test_x.shape)}"
        )
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise ValueError(
            f"expected one label per row, got {len(train_x)} rows / {len(train_y)} labels "
            f"(train) and {len(test_x)} / {len(test_y)} (test)"
        )
    train_x, test_x = train_x.detach().double(), test_x.detach().double()
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    classes = int(max(int(train_y.max()), int(test_y.max()))) + 1
    weight = torch.zeros(train_x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=max_iter, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        logits = train_x @ weight + bias  # (N, D) @ (D, C)
        loss = nn.functional.cross_entropy(logits, train_y) + l2 * weight.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return float(((test_x @ weight + bias).argmax(-1) == test_y).double().mean())


def slow_probe(m: Method, data: dict[str, Any], spec: SyntheticSpec) -> float:
    """Linear probe of the slow (hard) modality's latent after training.

    Fitted on the training points where that modality carries label information (shared and
    its unique category), scored on the same kind of test points.
    """
    mod = f"m{spec.hard_modality}"
    unique = 1 if spec.hard_modality == 1 else 2
    m.eval()
    feats = {}
    with torch.no_grad():
        for split in ("train", "test"):
            t = data[split].tensors
            keep = (t["category"] == 0) | (t["category"] == unique)
            feats[split] = (m.encode(t)[mod][keep], t["label"][keep])
    return linear_probe(*feats["train"], *feats["test"])


def train_one(
    spec: SyntheticSpec, budget: Budget, method: str, trial: dict[str, Any], seed: int
) -> dict[str, Any]:
    """Train one method with one trial setting on one seed; return val/test results.

    The returned dict holds ``val`` and ``test`` accuracy, test accuracy per category
    (shared, U1, U2), the slow modality's latent probe (:func:`slow_probe`), the test
    predictions, and for the ensemble its unimodal test predictions (the reference of the
    error matrix).
    """
    t0, c0 = time.time(), time.process_time()
    m, data, loaders = fit_trial(spec, budget, method, trial, seed)
    stage = m.stages[-1]
    val = evaluate(m, loaders["val"], stage, importance_seed=None)
    test = evaluate(m, loaders["test"], stage, importance_seed=seed)
    pred = test.outputs.argmax(dim=-1)
    correct = (pred == test.labels).float()
    cats = data["test"].tensors["category"]
    result: dict[str, Any] = {
        "val": float((val.outputs.argmax(-1) == val.labels).float().mean()),
        "test": float(correct.mean()),
        "per_category": {
            name: float(correct[cats == c].mean()) if bool((cats == c).any()) else None
            for c, name in enumerate(("shared", "u1", "u2"))
        },
        "importance": test.importance.tolist() if test.importance is not None else None,
        "probe": slow_probe(m, data, spec),
        "pred": pred.tolist(),
        "labels": test.labels.tolist(),
        "seconds": time.time() - t0,
        # CPU time of this process (1 thread): what the run costs without other load
        "cpu_seconds": time.process_time() - c0,
    }
    if method == "ensemble" and test.unimodal is not None:
        result["unimodal_pred"] = {k: v.argmax(-1).tolist() for k, v in test.unimodal.items()}
    return result


def run_spec(
    spec: SyntheticSpec, budget: Budget, method: str, trial: dict[str, Any], seed: int
) -> dict[str, Any]:
    """Everything that decides a run's result (the key of its stored result)."""
    return {
        "spec": asdict(spec),
        "budget": asdict(budget),
        "method": method,
        "trial": trial,
        "seed": seed,
    }


Job = tuple[SyntheticSpec, Budget, str, dict[str, Any], int, RunStore | None]


def _job(job: Job) -> dict[str, Any]:
    """:func:`train_one`, or the stored result of a run that finished before."""
    *args, store = job
    if store is None:
        return train_one(*args)
    return store.result(run_spec(*args), lambda: train_one(*args))


def _done_note(jobs: Sequence[Job]) -> str:
    store = jobs[0][-1] if jobs else None
    return "" if store is None else store.note(run_spec(*j[:-1]) for j in jobs)


def _select(
    runs_by_trial: list[list[dict[str, Any]]], trials: list[dict[str, Any]]
) -> dict[str, Any]:
    """Pick the trial with the best mean validation accuracy; summarise its test results."""
    val_means = [statistics.fmean(r["val"] for r in runs) for runs in runs_by_trial]
    best = max(range(len(trials)), key=lambda i: val_means[i])
    runs = runs_by_trial[best]
    summary = mean_std([r["test"] for r in runs])
    per_cat = {}
    for name in ("shared", "u1", "u2"):
        vals = [r["per_category"][name] for r in runs if r["per_category"][name] is not None]
        per_cat[name] = statistics.fmean(vals) if vals else None
    imps = [r["importance"] for r in runs if r["importance"] is not None]
    return {
        **summary,
        "val_mean": val_means[best],
        "trial": trials[best],
        "trials_val_mean": val_means,
        "per_seed": [r["test"] for r in runs],
        "probe": statistics.fmean(r["probe"] for r in runs),
        "probe_per_seed": [r["probe"] for r in runs],
        "per_category": per_cat,
        "importance": [statistics.fmean(col) for col in zip(*imps)] if imps else None,
        "seconds": sum(r["seconds"] for rr in runs_by_trial for r in rr),
        "cpu_seconds": sum(r.get("cpu_seconds", 0.0) for rr in runs_by_trial for r in rr),
        "_runs": runs,
    }


def _error_matrices(point: dict[str, Any]) -> dict[str, Any]:
    """Figure-5 matrices per method, against the ensemble's unimodal models (same seed)."""
    methods = point["methods"]
    if "ensemble" not in methods:
        return {}
    refs = [r.get("unimodal_pred") for r in methods["ensemble"]["_runs"]]
    out = {}
    for name, res in methods.items():
        total = None
        for run, ref in zip(res["_runs"], refs, strict=True):
            if ref is None:
                continue
            em = error_matrix(
                torch.tensor(run["pred"]),
                [torch.tensor(ref[k]) for k in sorted(ref)],
                torch.tensor(run["labels"]),
            )
            total = em.counts if total is None else total + em.counts
        if total is not None:
            from examples.common.metrics import ErrorMatrix

            out[name] = {
                **ErrorMatrix(total).as_dict(),
                "unimodal_source": "ensemble unimodal models",
            }
    return out


def _probe_gaps(point: dict[str, Any]) -> None:
    """Add ``probe_gap`` (and per seed) to every method: unimodal probe minus its probe.

    The unimodal probe of a seed is that of the ensemble's slow-modality model (trained
    alone) on the same seed, with the ensemble's selected trial. Positive: the method left the
    slow encoder less linearly informative than training it alone does. ``None`` without an
    ensemble in the run.
    """
    methods = point["methods"]
    ref = methods["ensemble"]["probe_per_seed"] if "ensemble" in methods else None
    for res in methods.values():
        if ref is None:
            res["probe_gap"], res["probe_gap_per_seed"] = None, None
            continue
        gaps = [u - p for u, p in zip(ref, res["probe_per_seed"], strict=True)]
        res["probe_gap"] = statistics.fmean(gaps)
        res["probe_gap_per_seed"] = gaps


def run_sweep(
    *,
    u1_values: Sequence[float],
    u2: float,
    methods: Sequence[str],
    seeds: Sequence[int],
    grid_size: int,
    spec: SyntheticSpec,
    budget: Budget,
    workers: int,
    ablations: bool,
    log: Any = print,
    store: RunStore | None = None,
) -> dict[str, Any]:
    """Train everything and return the results dict (without writing files).

    With a ``store``, runs that finished before are loaded instead of trained again.
    """
    jobs: list[Job] = []
    keys: list[tuple[Any, ...]] = []
    point_specs = []
    for u1 in u1_values:
        s = round(1.0 - u1 - u2, 10)
        if s < 0:
            raise ValueError(f"u1={u1} and u2={u2} leave no room for shared points (s={s})")
        pspec = replace(spec, u1=u1, s=s, u2=u2)
        point_specs.append(pspec)
        for method in methods:
            for t, trial in enumerate(GRID[method][:grid_size]):
                for seed in seeds:
                    jobs.append((pspec, budget, method, trial, seed, store))
                    keys.append(("sweep", u1, method, t, seed))
    log(f"{len(jobs)} training runs on {workers} worker(s)" + _done_note(jobs))
    t0 = time.time()
    results = _run_jobs(jobs, keys, workers, [k[1] for k in keys], _point_summary, "sweep")
    by_key = dict(zip(keys, results, strict=True))
    log(f"sweep trained in {time.time() - t0:.0f} s")

    points = []
    for u1, pspec in zip(u1_values, point_specs, strict=True):
        point: dict[str, Any] = {
            "u1": u1,
            "s": pspec.s,
            "u2": u2,
            "ratio_u1_s": u1 / pspec.s if pspec.s else math.inf,
            "methods": {},
        }
        for method in methods:
            trials = GRID[method][:grid_size]
            runs_by_trial = [
                [by_key[("sweep", u1, method, t, sd)] for sd in seeds] for t in range(len(trials))
            ]
            point["methods"][method] = _select(runs_by_trial, trials)
        point["error_matrices"] = _error_matrices(point)
        _probe_gaps(point)
        for res in point["methods"].values():
            res.pop("_runs")
        points.append(point)
    result: dict[str, Any] = {"schema_version": SCHEMA_VERSION, "points": points}
    if ablations:
        result["ablations"] = run_ablations(points, point_specs, budget, seeds, workers, log, store)
    return result


def _run_jobs(
    jobs: list[Job],
    keys: list[tuple[Any, ...]],
    workers: int,
    groups: list[Any],
    summary: Any,
    desc: str,
) -> list[dict[str, Any]]:
    """Train ``jobs`` (results in job order) with a line per finished group, and a progress bar
    where stderr is a terminal (a log file gets only the lines).

    ``summary(group, keys, runs)`` builds that line from the group's keys and results.
    """
    group_keys: dict[Any, list[tuple[Any, ...]]] = {}
    for key, group in zip(keys, groups, strict=True):
        group_keys.setdefault(group, []).append(key)
    return run_jobs(
        _job,
        jobs,
        groups=groups,
        workers=workers,
        summarize=lambda g, runs: summary(g, group_keys[g], runs),
        desc=desc,
        progress=sys.stderr.isatty(),
    )


def _point_summary(u1: float, keys: list[tuple[Any, ...]], runs: list[dict[str, Any]]) -> str:
    """``U1=0.40: joint 71.2 | ensemble 75.0 | ...``: mean test % of the best-val trial."""
    by_method: dict[str, dict[int, list[dict[str, Any]]]] = {}
    for key, run in zip(keys, runs, strict=True):
        by_method.setdefault(key[2], {}).setdefault(key[3], []).append(run)
    cells = []
    for method, trials in by_method.items():
        best = max(trials.values(), key=lambda rs: statistics.fmean(r["val"] for r in rs))
        cells.append(f"{method} {100 * statistics.fmean(r['test'] for r in best):.1f}")
    return f"point U1={u1:.2f} test %: " + " | ".join(cells)


def _ablation_summary(family: str, keys: list[tuple[Any, ...]], runs: list[dict[str, Any]]) -> str:
    """``ablation components: none 70.1 | mipd 71.0 | ...`` (mean test % over seeds)."""
    by_variant: dict[str, list[float]] = {}
    for key, run in zip(keys, runs, strict=True):
        by_variant.setdefault(key[1], []).append(run["test"])
    cells = [f"{v} {100 * statistics.fmean(accs):.1f}" for v, accs in by_variant.items()]
    return f"ablation {family} test %: " + " | ".join(cells)


def run_ablations(
    points: list[dict[str, Any]],
    point_specs: list[SyntheticSpec],
    budget: Budget,
    seeds: Sequence[int],
    workers: int,
    log: Any = print,
    store: RunStore | None = None,
) -> dict[str, Any]:
    """MCR variants (paper Tables 2-4) at the most imbalanced point.

    Each variant starts from the MCR trial selected on validation at that point and changes
    only the ablated setting.
    """
    index = max(range(len(points)), key=lambda i: points[i]["u1"])
    spec = point_specs[index]
    base = dict(points[index]["methods"]["mcr"]["trial"])
    jobs: list[Job] = []
    keys: list[tuple[str, str, int]] = []
    for family, variants in ABLATIONS.items():
        for variant, overrides in variants.items():
            for seed in seeds:
                jobs.append((spec, budget, "mcr", {**base, **overrides}, seed, store))
                keys.append((family, variant, seed))
    log(f"{len(jobs)} ablation runs on {workers} worker(s)" + _done_note(jobs))
    t0 = time.time()
    results = _run_jobs(jobs, keys, workers, [k[0] for k in keys], _ablation_summary, "ablations")
    by_key = dict(zip(keys, results, strict=True))
    log(f"{len(jobs)} ablation runs trained in {time.time() - t0:.0f} s")
    out: dict[str, Any] = {
        "point": {"u1": spec.u1, "s": spec.s, "u2": spec.u2},
        "base_trial": base,
        "cpu_seconds": sum(r.get("cpu_seconds", 0.0) for r in by_key.values()),
    }
    ens = points[index]["methods"].get("ensemble")
    for family, variants in ABLATIONS.items():
        out[family] = {}
        for variant, overrides in variants.items():
            runs = [by_key[(family, variant, sd)] for sd in seeds]
            probes = [r["probe"] for r in runs]
            out[family][variant] = {
                **mean_std([r["test"] for r in runs]),
                "options": {**base, **overrides},
                "probe": statistics.fmean(probes),
                "probe_gap": (
                    statistics.fmean(u - p for u, p in zip(ens["probe_per_seed"], probes))
                    if ens is not None
                    else None
                ),
            }
    return out


def check_claims(result: dict[str, Any]) -> dict[str, Any]:
    """The benchmark's claims at the most imbalanced point (largest U1/S).

    ``joint_below_ensemble``, and for ``mcr``: ``mcr_above_ensemble``, ``mcr_above_joint``,
    ``mcr_at_or_above_all`` (every baseline, i.e. every key not in :data:`MCR_KEYS`) and
    ``mcr_best_other`` (the best baseline); the same keys with the prefix ``mcr_uni_pre``
    when that variant was trained. With probe gaps: ``joint_probe_gap_per_seed``,
    ``seeds_with_joint_probe_gap_ge_3pt`` and ``undertrained_premise`` (at least 3
    seeds where joint training's slow-encoder probe is >= 3 points below the unimodal
    model's, and joint below the ensemble).
    """
    point = max(result["points"], key=lambda p: p["u1"])
    acc = {m: r["mean"] for m, r in point["methods"].items()}
    claims: dict[str, Any] = {"point": {k: point[k] for k in ("u1", "s", "u2")}}
    if "joint" in acc and "ensemble" in acc:
        claims["joint_below_ensemble"] = acc["joint"] < acc["ensemble"]
    if "joint" in point["methods"] and point["methods"]["joint"].get("probe_gap") is not None:
        gaps = point["methods"]["joint"]["probe_gap_per_seed"]
        n_gap = sum(g >= PREMISE_GAP for g in gaps)
        claims["joint_probe_gap_per_seed"] = gaps
        claims["seeds_with_joint_probe_gap_ge_3pt"] = n_gap
        # the premise: >= 3 seeds with the gap, and joint below the ensemble
        claims["undertrained_premise"] = n_gap >= 3 and bool(claims.get("joint_below_ensemble"))
    baselines = {m: v for m, v in acc.items() if m not in MCR_KEYS}
    for key in MCR_KEYS:
        if key not in acc:
            continue
        if "ensemble" in acc:
            claims[f"{key}_above_ensemble"] = acc[key] > acc["ensemble"]
        if "joint" in acc:
            claims[f"{key}_above_joint"] = acc[key] > acc["joint"]
        if baselines:
            claims[f"{key}_at_or_above_all"] = acc[key] >= max(baselines.values())
            claims[f"{key}_best_other"] = max((v, m) for m, v in baselines.items())[1]
    return claims


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--regime", choices=sorted(REGIMES), default="fusion", help="data regime")
    p.add_argument("--quick", action="store_true", help="3 points, 3 seeds, 2 trials, no ablations")
    p.add_argument("--u1", type=float, nargs="+", default=None, help="U1 fractions of the sweep")
    p.add_argument("--u2", type=float, default=0.2, help="fixed U2 fraction")
    p.add_argument(
        "--methods", nargs="+", choices=BENCHMARK_METHODS, default=list(BENCHMARK_METHODS)
    )
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1)")
    p.add_argument("--grid", type=int, default=None, help="tuning trials per method (1-3)")
    p.add_argument("--ablations", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--max-epochs", type=int, default=None)
    p.add_argument("--patience", type=int, default=None)
    p.add_argument("--n-train", type=int, default=None)
    p.add_argument("--n-eval", type=int, default=None, help="size of val and of test")
    add_resume_argument(p)
    return p


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    u1_values = args.u1 or ([0.1, 0.4, 0.7] if args.quick else [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    grid = args.grid or (2 if args.quick else 3)
    if not 1 <= grid <= 3:
        raise ValueError(f"expected --grid between 1 and 3, got {grid}")
    ablations = args.ablations if args.ablations is not None else not args.quick
    if ablations and "mcr" not in args.methods:
        raise ValueError("ablations need the mcr method")
    budget = Budget()
    if args.max_epochs is not None or args.patience is not None:
        budget = replace(
            budget,
            max_epochs=args.max_epochs or budget.max_epochs,
            patience=args.patience or budget.patience,
        )
    spec = REGIMES[args.regime]
    if args.n_train is not None or args.n_eval is not None:
        spec = replace(
            spec,
            n_train=args.n_train or spec.n_train,
            n_val=args.n_eval or spec.n_val,
            n_test=args.n_eval or spec.n_test,
        )
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    result = run_sweep(
        u1_values=u1_values,
        u2=args.u2,
        methods=args.methods,
        seeds=list(range(args.seeds)),
        grid_size=grid,
        spec=spec,
        budget=budget,
        workers=args.workers,
        ablations=ablations,
        store=RunStore(str(out / "runs"), reuse=args.resume),
    )
    result["claims"] = check_claims(result)
    result["setup"] = {
        "regime": args.regime,
        "spec": asdict(spec),
        "budget": asdict(budget),
        "seeds": args.seeds,
        "grid": {m: GRID[m][:grid] for m in args.methods},
        "quick": args.quick,
        "wall_time_s": time.time() - t0,
        # single-thread CPU time of all training runs: wall time on W idle cores ~ this / W
        "cpu_seconds": sum(
            r.get("cpu_seconds", 0.0) for p in result["points"] for r in p["methods"].values()
        )
        + result.get("ablations", {}).get("cpu_seconds", 0.0),
    }
    write_outputs(result, out)
    print(markdown(result))
    print(f"wrote {out / 'results.json'}, {out / 'results.md'}, {out / 'accuracy_vs_ratio.png'}")
    return result


if __name__ == "__main__":
    main()
