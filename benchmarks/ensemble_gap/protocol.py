"""The ensemble-gap protocol: its settings, fixed trials, remedies and one training run.

On each competition setting (the synthetic benchmark and its under-training regime at
U1/S = 7, and AV-MNIST), for every seed, MCR and the ensemble are trained with the trials their
own benchmarks selected (:data:`TRIALS`, not tuned here); :func:`train` returns a trained
method's outputs on every split, which :mod:`benchmarks.ensemble_gap.analysis` compares. The
protocol, pre-registered, is docs/examples/ensemble-gap.md.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from benchmarks.harness.fit import fit_and_score
from benchmarks.harness.tuning import Budget as SyntheticBudget
from benchmarks.synthetic.generator import SyntheticSpec, make_datasets
from examples.common.methods import Method, build_method
from examples.common.model import ConcatFusionHead, MultimodalModel
from examples.common.task import TaskSpec
from examples.common.trainer import seed_everything
from mcr_reg.functional import pool_latent

SETTINGS: tuple[str, ...] = ("synthetic", "undertrained", "avmnist")
#: The point of both synthetic regimes (U1/S = 7, the most imbalanced).
SYNTHETIC_POINT: dict[str, float] = {"u1": 0.7, "s": 0.1, "u2": 0.2}
#: The ``undertrained`` regime of docs/examples/synthetic.md (loud nuisance in the slow
#: modality, a 2048-dimensional fast modality).
UNDERTRAINED: dict[str, Any] = {
    "input_dims": (128, 2048),
    "noise": (0.5, 1.0),
    "nuisance_dims": (56, 0),
    "nuisance_std": (12.0, 0.0),
}
#: The trials each setting's own benchmark selected on validation (fixed, not tuned here).
TRIALS: dict[str, dict[str, dict[str, Any]]] = {
    "synthetic": {"mcr": {"mipd_weight": 1.0}, "ensemble": {"lr": 1e-3}},
    "undertrained": {"mcr": {"mipd_weight": 1.0}, "ensemble": {"lr": 1e-3}},
    "avmnist": {"mcr": {"mipd_weight": 1.0}, "ensemble": {"lr": 3e-3}},
}
REMEDIES: tuple[str, ...] = (
    "fused_and_unimodal_heads",
    "refit_fusion_head",
    "temperature_scaled_combination",
)
#: Bonferroni over the three remedies (docs/examples/ensemble-gap.md).
ALPHA = 0.05 / len(REMEDIES)
#: A Wilcoxon test over fewer seeds cannot reach ALPHA.
MIN_SEEDS_FOR_VERDICT = 7


@dataclass(frozen=True)
class Job:
    """One training run: ``method`` ("mcr" or "ensemble") on ``setting`` with ``seed``."""

    setting: str
    method: str
    seed: int
    max_epochs: int | None = None
    synthetic_points: tuple[int, int, int] | None = None
    avmnist_pairs: tuple[int, int, int] | None = None
    mnist: str = ""
    fsdd: str = ""
    digest_of_data: str = field(default="", compare=False)


def synthetic_spec(setting: str, points: tuple[int, int, int] | None = None) -> SyntheticSpec:
    """The generator settings of ``synthetic`` (the ``fusion`` regime) or ``undertrained``."""
    extra = UNDERTRAINED if setting == "undertrained" else {}
    sizes = {}
    if points is not None:
        sizes = dict(zip(("n_train", "n_val", "n_test"), points, strict=True))
    return SyntheticSpec(**SYNTHETIC_POINT, **extra, **sizes)


def synthetic_model(spec: SyntheticSpec, budget: SyntheticBudget) -> MultimodalModel:
    """The synthetic benchmark's model: per modality ``Linear-ReLU-Linear``, late fusion."""
    encoders = {
        f"m{i + 1}": nn.Sequential(
            nn.Linear(d, budget.hidden), nn.ReLU(), nn.Linear(budget.hidden, budget.latent)
        )
        for i, d in enumerate(spec.input_dims)
    }
    dims = {m: budget.latent for m in encoders}
    return MultimodalModel(encoders, ConcatFusionHead(list(dims.values()), spec.num_classes), dims)


def run_spec(job: Job) -> dict[str, Any]:
    """Everything that decides the run's outputs (the key of its stored file)."""
    spec: dict[str, Any] = {
        "setting": job.setting,
        "method": job.method,
        "trial": TRIALS[job.setting][job.method],
        "seed": job.seed,
        "max_epochs": job.max_epochs,
    }
    if job.setting == "avmnist":
        spec.update(pairs=job.avmnist_pairs, data=job.digest_of_data)
    else:
        spec["data"] = asdict(synthetic_spec(job.setting, job.synthetic_points))
    return spec


def _build(job: Job) -> tuple[Method, dict[str, Any], dict[str, Any]]:
    """Data sets, the method on a fresh model (seeded as the benchmarks seed), the budget."""
    trial = dict(TRIALS[job.setting][job.method])
    if job.setting == "avmnist":
        from benchmarks.avmnist import protocol as avmnist
        from examples.avmnist.data import NUM_CLASSES, PairCounts, build_datasets
        from examples.avmnist.model import build_model

        budget = avmnist.Budget()
        counts = PairCounts(*job.avmnist_pairs) if job.avmnist_pairs else PairCounts()
        source = avmnist.source(avmnist.DataSpec(job.mnist, job.fsdd))
        datasets, _ = build_datasets(source, counts, job.seed)
        seed_everything(job.seed)
        model = build_model(budget.spec_size, channels=budget.channels)
        name, fixed = avmnist.VARIANTS.get(job.method, (job.method, {}))
        classes = NUM_CLASSES
        settings = asdict(budget)
    else:
        spec = synthetic_spec(job.setting, job.synthetic_points)
        sbudget = SyntheticBudget()
        datasets = make_datasets(spec, job.seed)
        seed_everything(job.seed)
        model = synthetic_model(spec, sbudget)
        name, fixed, classes = job.method, {}, spec.num_classes
        settings = asdict(sbudget)
    settings["lr"] = float(trial.pop("lr", settings["lr"]))
    if job.max_epochs is not None:
        settings["max_epochs"] = job.max_epochs
    task = TaskSpec("classification", num_classes=classes)
    method = build_method(name, model, task, {**fixed, **trial})
    method.set_seed(job.seed)
    return method, datasets, settings


@torch.no_grad()
def model_outputs(method: Method, dataset: Any) -> dict[str, Any]:
    """The trained method's outputs on a whole split: final logits, unimodal logits, pooled
    latents, labels (and the synthetic point kinds, ``category``)."""
    method.eval()
    tensors = dataset.tensors
    latents = method.encode({m: tensors[m] for m in method.model.modalities})
    final, unimodal = method.heads(latents, method.stages[-1])
    out: dict[str, Any] = {
        "logits": final.float(),
        "unimodal": {m: v.float() for m, v in (unimodal or {}).items()},
        "latents": {m: pool_latent(z).float() for m, z in latents.items()},
        "labels": tensors["label"],
    }
    if "category" in tensors:
        out["category"] = tensors["category"]
    return out


def train(job: Job) -> dict[str, Any]:
    """Train the job's method to early stopping; its outputs on validation and test."""
    t0 = time.time()
    torch.set_num_threads(1)
    method, datasets, b = _build(job)
    scores, _ = fit_and_score(
        method,
        datasets,
        batch_size=b["batch_size"],
        max_epochs=b["max_epochs"],
        patience=b["patience"],
        lr=b["lr"],
        weight_decay=b["weight_decay"],
        seed=job.seed,
    )
    result = {
        "scores": scores,
        "val": model_outputs(method, datasets["val"]),
        "test": model_outputs(method, datasets["test"]),
        "train": model_outputs(method, datasets["train"]),
        "modalities": list(method.model.modalities),
        "seconds": time.time() - t0,
    }
    if job.method == "mcr":
        linear = method.model.fusion_head.linear
        result["head"] = {"weight": linear.weight.detach().clone(), "bias": linear.bias.detach()}
    return result


def run_label(spec: Mapping[str, Any]) -> str:
    """The readable part of a stored run's file name: ``synthetic-mcr-seed3``."""
    return f"{spec['setting']}-{spec['method']}-seed{spec['seed']}"
