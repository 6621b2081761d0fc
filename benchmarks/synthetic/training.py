"""One training run of the synthetic benchmark: the model, the training with the shared
budget, and what is measured after it (accuracy per kind of point, the slow modality's linear
probe, the predictions the error matrix needs)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from benchmarks.harness.tuning import VARIANTS, Budget
from benchmarks.synthetic.generator import SyntheticSpec, make_datasets
from examples.common.data import build_loaders
from examples.common.latent_probe import standardised
from examples.common.methods import Method, build_method
from examples.common.model import ConcatFusionHead, MultimodalModel
from examples.common.task import TaskSpec
from examples.common.trainer import TrainConfig, evaluate, fit, seed_everything


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

    Features are standardised with the training mean and std; the weights (a ``(D, C)``
    matrix, ``C`` = the largest label + 1) start at zero and are fitted by full-batch L-BFGS on
    cross-entropy + ``l2 * ||W||^2`` in float64 (deterministic).

    Args:
        train_x: ``(N, D)`` features; train_y: ``(N,)`` class indices.
        test_x: ``(M, D)``; test_y: ``(M,)``.

    Raises:
        ValueError: when the shapes do not match.
    """
    if len(train_x) != len(train_y) or len(test_x) != len(test_y):
        raise ValueError(
            f"expected one label per row, got {len(train_x)} rows / {len(train_y)} labels "
            f"(train) and {len(test_x)} / {len(test_y)} (test)"
        )
    train_x, test_x = standardised(train_x, test_x)
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


@dataclass(kw_only=True)
class RunResult:
    """What one training run gives (accuracies in [0, 1])."""

    val: float
    test: float
    per_category: dict[str, float | None]  # test accuracy on shared, U1-only, U2-only points
    importance: list[float] | None
    probe: float  # :func:`slow_probe`
    pred: list[int]  # test predictions
    labels: list[int]
    seconds: float
    cpu_seconds: float = 0.0  # of this process (1 thread): the run's cost without other load
    unimodal_pred: dict[str, list[int]] | None = None  # the ensemble's, per modality


def train_one(
    spec: SyntheticSpec, budget: Budget, method: str, trial: dict[str, Any], seed: int
) -> RunResult:
    """Train one method with one trial setting on one seed and measure it: validation and
    test accuracy, test accuracy per category (shared, U1, U2), the slow modality's latent
    probe (:func:`slow_probe`), the test predictions, and for the ensemble its unimodal test
    predictions (the reference of the error matrix)."""
    t0, c0 = time.time(), time.process_time()
    m, data, loaders = fit_trial(spec, budget, method, trial, seed)
    stage = m.stages[-1]
    val = evaluate(m, loaders["val"], stage, importance_seed=None)
    test = evaluate(m, loaders["test"], stage, importance_seed=seed)
    pred = test.outputs.argmax(dim=-1)
    correct = (pred == test.labels).float()
    cats = data["test"].tensors["category"]
    result = RunResult(
        val=float((val.outputs.argmax(-1) == val.labels).float().mean()),
        test=float(correct.mean()),
        per_category={
            name: float(correct[cats == c].mean()) if bool((cats == c).any()) else None
            for c, name in enumerate(("shared", "u1", "u2"))
        },
        importance=test.importance.tolist() if test.importance is not None else None,
        probe=slow_probe(m, data, spec),
        pred=pred.tolist(),
        labels=test.labels.tolist(),
        seconds=time.time() - t0,
        cpu_seconds=time.process_time() - c0,
    )
    if method == "ensemble" and test.unimodal is not None:
        result.unimodal_pred = {k: v.argmax(-1).tolist() for k, v in test.unimodal.items()}
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


#: One training run: the point's data, the budget, the method, its trial and the seed.
Job = tuple[SyntheticSpec, Budget, str, dict[str, Any], int]


def train_job(job: Job) -> RunResult:
    """:func:`train_one` of ``job`` (the harness's ``train``)."""
    return train_one(*job)


def job_spec(job: Job) -> dict[str, Any]:
    """:func:`run_spec` of ``job`` (the key its result is stored under)."""
    return run_spec(*job)
