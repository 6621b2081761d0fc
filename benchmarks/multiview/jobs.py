"""One training run of the multi-view benchmark (a :class:`Job`, its spec and its typed
result), and the choice among tuning trials on validation accuracy."""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from benchmarks.harness import tuning
from benchmarks.harness.fit import fit_with_budget
from benchmarks.harness.paired_stats import mean_std
from benchmarks.harness.tuning import Budget
from benchmarks.multiview.protocol import BUDGET, VARIANTS
from benchmarks.multiview.results import MethodResult, Probe
from examples.common.latent_probe import linear_probe
from examples.common.methods import Method, build_method
from examples.common.task import TaskSpec
from examples.common.trainer import seed_everything
from examples.multiview.data import (
    NUM_CLASSES,
    MultiFeatures,
    SplitSizes,
    build_datasets,
    feature_dims,
    load_views,
)
from examples.multiview.model import build_model

_DATA: dict[str, MultiFeatures] = {}


def _data(root: str) -> MultiFeatures:
    if root not in _DATA:
        _DATA[root] = load_views(root)
    return _DATA[root]


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
    data_digest: str = ""  # :func:`data_digest` of the data at ``root``


@dataclass
class RunResult:
    """What one training run gives (accuracies in [0, 1])."""

    val: float
    test: float
    epochs: int
    seconds: float = 0.0
    unimodal_val: dict[str, float] | None = None  # per view, for methods with unimodal heads
    unimodal_test: dict[str, float] | None = None
    probe: dict[str, float] | None = None  # linear-probe test accuracy per view's encoder


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


@torch.no_grad()
def _latents(method: Method, dataset: Any) -> dict[str, Tensor]:
    method.eval()
    batch = {k: v for k, v in dataset.tensors.items() if k != "label"}
    return {m: z.float() for m, z in method.encode(batch).items()}


def train(job: Job) -> RunResult:
    """Train ``job.key`` with ``job.trial`` on one seed: validation and test accuracy, the
    unimodal accuracies where the method has unimodal heads, the linear-probe test accuracy of
    every encoder (when ``job.probe``), the epochs run and the seconds taken."""
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
    scores, _ = fit_with_budget(method, datasets, job.budget, lr=lr, seed=job.seed)
    res = RunResult(**scores)
    if job.probe:
        ztr, zte = _latents(method, datasets["train"]), _latents(method, datasets["test"])
        ytr, yte = datasets["train"].tensors["label"], datasets["test"].tensors["label"]
        res.probe = {
            m: linear_probe(ztr[m], ytr, zte[m], yte, num_classes=NUM_CLASSES, dtype=torch.float32)
            for m in job.views
        }
    res.seconds = time.time() - t0
    return res


def best_trial(runs_by_trial: Sequence[Sequence[RunResult]]) -> int:
    """The trial with the best mean validation accuracy over the seeds (ties: the earlier)."""
    return tuning.best_trial([statistics.fmean(r.val for r in runs) for runs in runs_by_trial])


def select_trial(
    runs_by_trial: Sequence[Sequence[RunResult]],
    trials: Sequence[dict[str, Any]],
    views: Sequence[str] = (),
) -> MethodResult:
    """The trial with the best mean validation accuracy over the seeds (test never looked at):
    its test accuracy over the seeds (seed order), every trial's validation mean, the epochs
    and, per view in ``views``, the probes and unimodal accuracies of its runs."""
    val_means = [statistics.fmean(r.val for r in runs) for runs in runs_by_trial]
    best = best_trial(runs_by_trial)
    runs = list(runs_by_trial[best])
    tests = [r.test for r in runs]
    summary = mean_std(tests)
    out = MethodResult(
        mean=summary["mean"],
        std=summary["std"],
        per_seed=tests,
        val_mean=val_means[best],
        trial=dict(trials[best]),
        trials_val_mean=val_means,
        seconds=sum(r.seconds for rr in runs_by_trial for r in rr),
        epochs=[r.epochs for r in runs],
    )
    if views and runs[0].probe is not None:
        out.probe = {}
        for v in views:
            seeds = [r.probe[v] for r in runs if r.probe is not None]
            out.probe[v] = Probe(mean=statistics.fmean(seeds), per_seed=seeds)
    if views and runs[0].unimodal_test is not None:
        out.unimodal_test = _mean_per_view([r.unimodal_test for r in runs], views)
        out.unimodal_val = _mean_per_view([r.unimodal_val for r in runs], views)
    return out


def _mean_per_view(
    rows: Sequence[dict[str, float] | None], views: Sequence[str]
) -> dict[str, float]:
    return {v: statistics.fmean(row[v] for row in rows if row is not None) for v in views}
