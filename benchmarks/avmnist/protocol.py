"""The AV-MNIST protocol (pre-registered in docs/examples/avmnist.md): the methods, their
tuning trials and budget, one training run with its linear probes, the choice of a trial on
validation, and the comparisons (probe gaps, the premise, the repair of the starved encoder,
the paired tests).

For every seed (which fixes the pairs, the splits and the initialisation) each method gets the
same budget and the same number of tuning trials (:data:`GRID`); the trial with the best mean
validation accuracy over the seeds is reported on the test set. Every run also fits a linear
probe on each encoder's latent; ``probe gap`` = the probe of the encoder trained alone (the
ensemble's) minus the probe of the same encoder trained by the method.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from benchmarks.harness.fit import fit_with_budget
from benchmarks.harness.paired_stats import item_resolution, mean_std, paired_comparison, verdict
from benchmarks.harness.tuning import QUICK_METHODS as SHARED_QUICK_METHODS
from benchmarks.harness.tuning import TrainingBudget, best_trial
from examples.avmnist.data import (
    NUM_CLASSES,
    AVMNISTSource,
    PairCounts,
    build_datasets,
    load_source,
)
from examples.avmnist.model import build_model
from examples.common.cli import METHODS as REGISTERED
from examples.common.latent_probe import linear_probe
from examples.common.methods import Method, build_method
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


def select_trial(
    runs_by_trial: Sequence[Sequence[dict[str, Any]]], trials: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """The trial with the best mean validation accuracy over the seeds (ties: the earlier).

    Returns its test ``mean``/``std``/``per_seed``, ``val_mean``, ``trial``, every trial's
    validation mean, and the chosen runs' probes and unimodal accuracies (means and per seed).
    """
    val_means = [statistics.fmean(r["val"] for r in runs) for runs in runs_by_trial]
    best = best_trial(val_means)
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


def resolution(pairs_per_class: dict[str, int]) -> float:
    """One test pair as a fraction of the test split (``pairs_per_class["test"]`` pairs of
    each digit): the step every test and probe accuracy moves by."""
    return item_resolution(pairs_per_class["test"] * NUM_CLASSES)


def add_comparisons(result: dict[str, Any], step: float) -> None:
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
