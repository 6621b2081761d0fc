"""The AV-MNIST benchmark: every method on degraded MNIST images paired with spoken digits.

    python -m examples.avmnist.download --out data/avmnist
    python -m examples.avmnist.run --mnist data/avmnist/mnist --fsdd data/avmnist/fsdd \\
        --quick --out runs/avmnist-quick
    python -m examples.avmnist.run --mnist data/avmnist/mnist --fsdd data/avmnist/fsdd \\
        --out runs/avmnist-full

The protocol is pre-registered in docs/examples/avmnist.md. For every seed (which fixes the
pairs, the splits and the initialisation) each method gets the same budget and the same
number of tuning trials (:data:`GRID`); the trial with the best mean validation accuracy over
the seeds is reported on the test set. Every run also fits a linear probe on each encoder's
latent; ``probe gap`` = the probe of the encoder trained alone (the ensemble's) minus the
probe of the same encoder trained by the method.

Outputs in ``--out``: ``results.json``, ``results.md``, ``accuracy.png`` (test accuracy per
method, one point per seed) and ``probes.png`` (probe accuracy per modality and method).
Each finished training run is kept in ``--out``/runs, so the same command after a stop
trains only what is missing (``--no-resume``: all again).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from benchmarks.harness.fit import fit_with_budget
from benchmarks.harness.paired_stats import item_resolution, mean_std, paired_comparison, verdict
from benchmarks.harness.progress import run_jobs
from benchmarks.harness.store import RunStore, add_resume_argument
from benchmarks.harness.tuning import QUICK_METHODS as SHARED_QUICK_METHODS
from benchmarks.harness.tuning import TrainingBudget
from examples.avmnist.data import (
    NUM_CLASSES,
    AVMNISTSource,
    PairCounts,
    build_datasets,
    load_source,
)
from examples.avmnist.model import build_model
from examples.common.checkpoint import atomic_write_json
from examples.common.cli import METHODS as REGISTERED
from examples.common.methods import Method, build_method
from examples.common.latent_probe import linear_probe
from examples.common.provenance import provenance
from examples.common.task import TaskSpec
from examples.common.trainer import seed_everything

MODALITIES: tuple[str, ...] = ("image", "audio")

#: MCR's contrastive term compares the latents in one space; the encoders' widths differ
#: (48 and 96), so MCR owns a linear projection of each into 64 dimensions.
MCR_PROJECTION: dict[str, Any] = {"projection_dim": 64}
#: Benchmark keys -> a registered method and its fixed (untuned) options.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "mcr": ("mcr", MCR_PROJECTION),
    "mcr_uni_pre": ("mcr", {**MCR_PROJECTION, "init": "unimodal"}),
}
#: Every benchmark key, in table order: the ten registered methods and MCR from unimodal init.
METHOD_KEYS: tuple[str, ...] = (*REGISTERED, "mcr_uni_pre")
MCR_KEYS: tuple[str, ...] = ("mcr", "mcr_uni_pre")
REFERENCES: tuple[str, ...] = ("joint", "ensemble")
#: ``--quick``: the methods every tuned benchmark's quick run trains.
QUICK_METHODS: tuple[str, ...] = SHARED_QUICK_METHODS
#: Tuning trials per method, in order (``--grid G`` takes the first G): the values of the
#: synthetic benchmark's first two trials; methods without a hyper-parameter of their own
#: tune the learning rate.
GRID: dict[str, list[dict[str, Any]]] = {
    "joint": [{"lr": 1e-3}, {"lr": 3e-3}],
    "multiloss": [{"unimodal_weight": 1.0}, {"unimodal_weight": 0.3}],
    "ensemble": [{"lr": 1e-3}, {"lr": 3e-3}],
    "uni_pre_frozen": [{"lr": 1e-3}, {"lr": 3e-3}],
    "uni_pre_finetuned": [{"finetune_lr_scale": 0.1}, {"finetune_lr_scale": 1.0}],
    "ogm_ge": [{"alpha": 0.5}, {"alpha": 0.1}],
    "agm": [{"alpha": 1.0}, {"alpha": 0.5}],
    "mlb": [{"alpha": 1.0}, {"alpha": 0.5}],
    "mmcosine": [{"scale": 10.0}, {"scale": 5.0}],
    "mcr": [{"mipd_weight": 0.1}, {"mipd_weight": 1.0}],
    "mcr_uni_pre": [{"mipd_weight": 0.1}, {"mipd_weight": 1.0}],
}
#: Bonferroni level of the four primary tests (two MCR entries x two references).
ALPHA = 0.05
PRIMARY_ALPHA = ALPHA / 4


@dataclass(frozen=True)
class Budget(TrainingBudget):
    """The training budget of every run (equal for every method; per stage) and the
    encoders' size."""

    max_epochs: int = 30
    patience: int = 5
    batch_size: int = 64
    channels: int = 6
    spec_size: int = 32


@dataclass(frozen=True)
class DataSpec:
    """Where the files are and how the source is read (the path is not part of a run's key)."""

    mnist: str
    fsdd: str
    image_file: str = "test"
    spec_size: int = 32


@dataclass(frozen=True)
class Job:
    """One training run."""

    data: DataSpec
    key: str
    trial: dict[str, Any]
    seed: int
    budget: Budget = field(default_factory=Budget)
    counts: PairCounts = field(default_factory=PairCounts)
    store: RunStore | None = None
    data_digest: str = ""


def run_spec(job: Job) -> dict[str, Any]:
    """Everything that decides ``job``'s result (the key of its stored result)."""
    return {
        "data": job.data_digest,
        "key": job.key,
        "trial": job.trial,
        "seed": job.seed,
        "budget": asdict(job.budget),
        "counts": asdict(job.counts),
    }


_SOURCES: dict[DataSpec, AVMNISTSource] = {}


def source(spec: DataSpec) -> AVMNISTSource:
    """The loaded source of ``spec`` (read once per process)."""
    if spec not in _SOURCES:
        _SOURCES[spec] = load_source(
            spec.mnist, spec.fsdd, image_file=spec.image_file, spec_size=spec.spec_size
        )
    return _SOURCES[spec]


@torch.no_grad()
def _latents(method: Method, dataset: Any) -> dict[str, Tensor]:
    method.eval()
    batch = {m: dataset.tensors[m] for m in MODALITIES}
    return {m: z.float() for m, z in method.encode(batch).items()}


def train(job: Job) -> dict[str, Any]:
    """Train ``job.key`` with ``job.trial`` on one seed.

    Returns ``val`` and ``test`` accuracy, the unimodal accuracies where the method has
    unimodal outputs, the linear-probe test accuracy of each encoder (``probe``), the PCA
    component count, the epochs run and the seconds taken.
    """
    t0 = time.time()
    torch.set_num_threads(1)
    trial = dict(job.trial)
    lr = float(trial.pop("lr", job.budget.lr))
    datasets, info = build_datasets(source(job.data), job.counts, job.seed)
    seed_everything(job.seed)
    name, fixed = VARIANTS.get(job.key, (job.key, {}))
    model = build_model(job.budget.spec_size, channels=job.budget.channels)
    method = build_method(
        name, model, TaskSpec("classification", num_classes=NUM_CLASSES), {**fixed, **trial}
    )
    method.set_seed(job.seed)
    scores, _ = fit_with_budget(method, datasets, job.budget, lr=lr, seed=job.seed)
    res: dict[str, Any] = {**scores, **info}
    ztr, zte = _latents(method, datasets["train"]), _latents(method, datasets["test"])
    ytr, yte = datasets["train"].tensors["label"], datasets["test"].tensors["label"]
    res["probe"] = {
        m: linear_probe(ztr[m], ytr, zte[m], yte, num_classes=NUM_CLASSES) for m in MODALITIES
    }
    res["seconds"] = time.time() - t0
    return res


def train_one(job: Job) -> dict[str, Any]:
    """:func:`train`, or the stored result when ``job`` finished before."""
    if job.store is None:
        return train(job)
    return job.store.result(run_spec(job), lambda: train(job))


def select_trial(
    runs_by_trial: Sequence[Sequence[dict[str, Any]]], trials: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """The trial with the best mean validation accuracy over the seeds (ties: the earlier).

    Returns its test ``mean``/``std``/``per_seed``, ``val_mean``, ``trial``, every trial's
    validation mean, and the chosen runs' probes and unimodal accuracies (means and per seed).
    """
    val_means = [statistics.fmean(r["val"] for r in runs) for runs in runs_by_trial]
    best = max(range(len(trials)), key=lambda i: (val_means[i], -i))
    runs = list(runs_by_trial[best])
    out: dict[str, Any] = {
        **mean_std([r["test"] for r in runs]),
        "per_seed": [r["test"] for r in runs],
        "val_mean": val_means[best],
        "trial": dict(trials[best]),
        "trials_val_mean": val_means,
        "epochs": [r["epochs"] for r in runs],
        "pca_components": [r["pca_components"] for r in runs],
        "seconds": sum(r["seconds"] for rr in runs_by_trial for r in rr),
        "probe": {
            m: {
                **mean_std([r["probe"][m] for r in runs]),
                "per_seed": [r["probe"][m] for r in runs],
            }
            for m in MODALITIES
        },
    }
    if "unimodal_test" in runs[0]:
        out["unimodal_test"] = {
            m: {
                **mean_std([r["unimodal_test"][m] for r in runs]),
                "per_seed": [r["unimodal_test"][m] for r in runs],
            }
            for m in MODALITIES
        }
    return out


@dataclass(frozen=True)
class Plan:
    """What to run (``--quick`` or the full protocol, with flag overrides)."""

    seeds: tuple[int, ...]
    grid: int
    methods: tuple[str, ...]
    budget: Budget = field(default_factory=Budget)
    counts: PairCounts = field(default_factory=PairCounts)


def run_benchmark(
    data: DataSpec,
    plan: Plan,
    *,
    store: RunStore | None,
    data_digest: str,
    workers: int,
    progress: bool = True,
    log: Any = print,
) -> dict[str, Any]:
    """Train every method x trial x seed of the plan; select on validation; summarise."""
    jobs: list[Job] = []
    keys: list[tuple[str, int, int]] = []
    for key in plan.methods:
        for t, trial in enumerate(GRID[key][: plan.grid]):
            for seed in plan.seeds:
                jobs.append(
                    Job(data, key, trial, seed, plan.budget, plan.counts, store, data_digest)
                )
                keys.append((key, t, seed))
    note = store.note(run_spec(j) for j in jobs) if store is not None else ""
    log(f"{len(jobs)} training runs, {workers} worker(s){note}")

    def summary(group: Any, runs: list[dict[str, Any]]) -> str:
        return f"{group}: test % " + " ".join(f"{100 * r['test']:.1f}" for r in runs)

    results = run_jobs(
        train_one,
        jobs,
        groups=[k[0] for k in keys],
        workers=workers,
        summarize=summary,
        desc="avmnist",
        progress=progress,
    )
    by_key = dict(zip(keys, results, strict=True))
    methods = {}
    for key in plan.methods:
        trials = GRID[key][: plan.grid]
        runs = [[by_key[(key, t, s)] for s in plan.seeds] for t in range(len(trials))]
        methods[key] = select_trial(runs, trials)
    result: dict[str, Any] = {"methods": methods}
    summarise(result, resolution(asdict(plan.counts)))
    return result


def resolution(pairs_per_class: dict[str, int]) -> float:
    """One test pair as a fraction of the test split (``pairs_per_class["test"]`` pairs of
    each digit): the step every test and probe accuracy moves by."""
    return item_resolution(pairs_per_class["test"] * NUM_CLASSES)


def summarise(result: dict[str, Any], step: float) -> None:
    """Add probe gaps, the premise, and the paired tests to ``result`` (differences
    rounded to ``step``, one test pair)."""
    m = result["methods"]
    if "ensemble" in m:
        ref = m["ensemble"]["probe"]
        for entry in m.values():
            entry["probe_gap"] = {
                mod: {
                    "mean": ref[mod]["mean"] - entry["probe"][mod]["mean"],
                    "per_seed": [
                        a - b
                        for a, b in zip(
                            ref[mod]["per_seed"], entry["probe"][mod]["per_seed"], strict=True
                        )
                    ],
                }
                for mod in MODALITIES
            }
    if "joint" in m and "ensemble" in m:
        result["premise"] = {
            "joint_minus_ensemble": paired_comparison(
                m["joint"]["per_seed"], m["ensemble"]["per_seed"], step
            ),
            "unimodal_test": m["ensemble"].get("unimodal_test"),
            "joint_probe_gap": m["joint"]["probe_gap"],
        }
    if "joint" in m and "ensemble" in m:
        result["repair"] = repair_tests(m, step)
    paired: dict[str, Any] = {}
    for key in m:
        for ref in REFERENCES:
            if key == ref or ref not in m:
                continue
            if key not in MCR_KEYS and ref != "joint":
                continue  # context tests: every baseline against joint only
            c = paired_comparison(m[key]["per_seed"], m[ref]["per_seed"], step)
            if key in MCR_KEYS:
                c["verdict"] = verdict(c, PRIMARY_ALPHA)
            paired[f"{key}-{ref}"] = c
    result["paired"] = paired


def repair_tests(m: dict[str, Any], step: float) -> dict[str, Any]:
    """Question 2 of the protocol: does MCR repair the starved encoder?

    The starved modality has the larger probe gap under joint training. For each MCR key, its
    probe of that modality is compared with joint's (``vs_joint``) and with the ensemble's
    (``vs_ensemble``), paired over seeds; ``repaired``: higher than joint's with
    Wilcoxon p < 0.05; ``fully``: repaired and not detectably below the ensemble's.
    """
    gaps = m["joint"]["probe_gap"]
    starved = max(MODALITIES, key=lambda mod: gaps[mod]["mean"])
    out: dict[str, Any] = {"starved": starved}
    for key in MCR_KEYS:
        if key not in m:
            continue
        probe = m[key]["probe"][starved]["per_seed"]
        vs_joint = paired_comparison(probe, m["joint"]["probe"][starved]["per_seed"], step)
        vs_ens = paired_comparison(probe, m["ensemble"]["probe"][starved]["per_seed"], step)
        repaired = verdict(vs_joint, ALPHA) == "win"
        out[key] = {
            "vs_joint": vs_joint,
            "vs_ensemble": vs_ens,
            "repaired": repaired,
            "fully": repaired and verdict(vs_ens, ALPHA) != "loss",
        }
    return out


# --------------------------------------------------------------------------- reports
def _pct(r: dict[str, Any]) -> str:
    return f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}"


def markdown(result: dict[str, Any]) -> str:
    """The tables of results.md."""
    m = result["methods"]
    lines = [
        "## Test accuracy (%), mean ± std over seeds, and linear probes of each encoder",
        "",
        "| method | test accuracy | selected trial | probe image | probe audio | probe gap image | probe gap audio |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, r in m.items():
        gap = r.get("probe_gap")
        gaps = [f"{100 * gap[x]['mean']:+.2f}" if gap else "–" for x in MODALITIES]
        lines.append(
            f"| {key} | {_pct(r)} | {r['trial']} | {_pct(r['probe']['image'])} | "
            f"{_pct(r['probe']['audio'])} | {gaps[0]} | {gaps[1]} |"
        )
    premise = result.get("premise")
    if premise:
        uni = premise["unimodal_test"] or {}
        c = premise["joint_minus_ensemble"]
        lines += [
            "",
            "## Premise",
            "",
            "Unimodal test accuracy (the ensemble's models): "
            + ", ".join(f"{x} {_pct(uni[x])}" for x in uni)
            + f". Joint − ensemble: {100 * c['mean_diff']:+.2f} points "
            f"({c['wins']} / {c['ties']} / {c['losses']}, Wilcoxon p {c['wilcoxon_p']:.3g}). "
            "Joint training's probe gap (ensemble probe − joint probe): "
            + ", ".join(
                f"{x} {100 * premise['joint_probe_gap'][x]['mean']:+.2f}" for x in MODALITIES
            )
            + " points.",
        ]
    repair = result.get("repair")
    if repair and len(repair) > 1:
        lines += ["", f"## Repair of the starved encoder ({repair['starved']})", ""]
        lines += [
            "| method | probe − joint's (points, W/T/L, Wilcoxon p) | probe − ensemble's | repaired | fully |",
            "|---|---|---|---|---|",
        ]
        for key in MCR_KEYS:
            if key in repair:
                r = repair[key]
                cells = [
                    f"{100 * c['mean_diff']:+.2f} ({c['wins']}/{c['ties']}/{c['losses']}, "
                    f"p {c['wilcoxon_p']:.3g})"
                    for c in (r["vs_joint"], r["vs_ensemble"])
                ]
                lines.append(
                    f"| {key} | {cells[0]} | {cells[1]} | {'yes' if r['repaired'] else 'no'} | "
                    f"{'yes' if r['fully'] else 'no'} |"
                )
    lines += [
        "",
        "## Paired differences over seeds (test accuracy, points)",
        "",
        "| comparison | n | mean diff | wins / ties / losses | sign test p | Wilcoxon p | verdict (α = 0.0125) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, c in result["paired"].items():
        lines.append(
            f"| {name.replace('-', ' − ')} | {c['n']} | {100 * c['mean_diff']:+.2f} | "
            f"{c['wins']} / {c['ties']} / {c['losses']} | {c['sign_p']:.3g} | "
            f"{c['wilcoxon_p']:.3g} | {c.get('verdict', 'context')} |"
        )
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], out: Path) -> None:
    """``accuracy.png`` (per-seed test accuracy per method) and ``probes.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = result["methods"]
    keys = list(m)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(keys)), 4.2))
    for i, k in enumerate(keys):
        ys = [100 * v for v in m[k]["per_seed"]]
        ax.scatter([i] * len(ys), ys, s=12, alpha=0.6, marker="*" if k in MCR_KEYS else "o")
        ax.hlines(100 * m[k]["mean"], i - 0.3, i + 0.3, color="black", lw=1.5)
    ax.set_xticks(range(len(keys)), keys, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("AV-MNIST: test accuracy per method (points: seeds, bar: mean)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    fig.savefig(out / "accuracy.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.7 * len(keys)), 4.2))
    width = 0.38
    for j, mod in enumerate(MODALITIES):
        means = [100 * m[k]["probe"][mod]["mean"] for k in keys]
        errs = [100 * m[k]["probe"][mod]["std"] for k in keys]
        ax.bar(
            [i + (j - 0.5) * width for i in range(len(keys))], means, width, yerr=errs, label=mod
        )
    ax.set_xticks(range(len(keys)), keys, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("linear-probe test accuracy (%)")
    ax.set_title("AV-MNIST: what each encoder's latent holds, per method")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(out / "probes.png", dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- command line
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--mnist", type=Path, required=True, help="folder with the MNIST idx files")
    p.add_argument("--fsdd", type=Path, required=True, help="folder with the FSDD recordings")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--quick", action="store_true", help="6 methods, 2 seeds, 1 trial")
    p.add_argument("--methods", nargs="+", choices=METHOD_KEYS, default=None)
    p.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (full 10, quick 2)")
    p.add_argument("--grid", type=int, default=None, help="trials per method (full 2, quick 1)")
    p.add_argument("--max-epochs", type=int, default=None)
    p.add_argument("--patience", type=int, default=None)
    p.add_argument(
        "--pairs",
        type=int,
        nargs=3,
        default=None,
        metavar=("TRAIN", "VAL", "TEST"),
        help="pairs per class",
    )
    p.add_argument(
        "--image-file", choices=("test", "train"), default="test", help="MNIST file of the images"
    )
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--no-progress", action="store_true")
    add_resume_argument(p)
    return p


def make_plan(args: argparse.Namespace) -> Plan:
    """The full protocol, or ``--quick``, with flag overrides."""
    quick = bool(args.quick)
    grid = args.grid or (1 if quick else 2)
    if not 1 <= grid <= 2:
        raise ValueError(f"expected --grid 1 or 2, got {grid}")
    seeds = args.seeds or (2 if quick else 10)
    budget = Budget()
    budget = replace(
        budget,
        max_epochs=args.max_epochs or budget.max_epochs,
        patience=args.patience or budget.patience,
    )
    counts = PairCounts(*args.pairs) if args.pairs else PairCounts()
    return Plan(
        seeds=tuple(range(seeds)),
        grid=grid,
        methods=tuple(args.methods or (QUICK_METHODS if quick else METHOD_KEYS)),
        budget=budget,
        counts=counts,
    )


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    started = time.time()
    args = build_parser().parse_args(argv)
    plan = make_plan(args)
    data = DataSpec(str(args.mnist), str(args.fsdd), args.image_file, plan.budget.spec_size)
    t0 = time.time()
    src = source(data)  # fail early on bad files, before any worker starts
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    store = RunStore(str(out / "runs"), reuse=args.resume)
    result = run_benchmark(
        data,
        plan,
        store=store,
        data_digest=src.digest,
        workers=args.workers,
        progress=not args.no_progress,
    )
    result["setup"] = {
        "mnist": str(args.mnist),
        "fsdd": str(args.fsdd),
        "image_file": args.image_file,
        "recordings": len(src.recordings),
        "data_digest": src.digest,
        "plan": {k: v for k, v in asdict(plan).items() if k not in ("budget", "counts")},
        "budget": asdict(plan.budget),
        "pairs_per_class": asdict(plan.counts),
        "grid": {k: GRID[k][: plan.grid] for k in plan.methods},
        "quick": bool(args.quick),
        "wall_time_s": time.time() - t0,
        "load_average": os.getloadavg(),
    }
    result["provenance"] = provenance(started, arguments=argv)
    write_outputs(result, out)
    print(markdown(result))
    print(f"wrote {out}/results.json, results.md and the plots in {time.time() - t0:.0f} s")
    return result


def write_outputs(result: dict[str, Any], out: Path) -> None:
    """``results.json``, ``results.md`` and the plots of ``result`` in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(result, out / "results.json")
    (out / "results.md").write_text(markdown(result))
    plot(result, out)


if __name__ == "__main__":
    main()
