"""One benchmark training run: fit a method to early stopping, then score it.

Benchmark runners train hundreds of small models without writing files; :func:`fit_and_score`
is what each of those runs does once the data sets and the method are built
(:func:`fit_with_budget`: with a benchmark's :class:`~benchmarks.harness.tuning.TrainingBudget`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch.utils.data import DataLoader, Dataset

from benchmarks.harness.tuning import TrainingBudget
from examples.common.data import build_loaders
from examples.common.methods import Method
from examples.common.trainer import TrainConfig, evaluate, fit


def fit_and_score(
    method: Method,
    datasets: Mapping[str, Dataset[Any]],
    *,
    batch_size: int,
    max_epochs: int,
    patience: int,
    lr: float,
    weight_decay: float,
    seed: int,
) -> tuple[dict[str, Any], dict[str, DataLoader[Any]]]:
    """Train every stage of ``method`` (Adam, early stopping on validation accuracy), then score.

    Returns:
        ``epochs`` (summed over stages), ``val`` and ``test`` accuracy of the final stage's
        output and, for a method with unimodal outputs, ``unimodal_val`` / ``unimodal_test``
        per modality; and the loaders (built with ``seed``), for further evaluation.
    """
    loaders = build_loaders(datasets, batch_size=batch_size, seed=seed)
    config = TrainConfig(
        max_epochs=max_epochs,
        patience=patience,
        lr=lr,
        weight_decay=weight_decay,
        seed=seed,
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
    return res, loaders


def fit_with_budget(
    method: Method,
    datasets: Mapping[str, Dataset[Any]],
    budget: TrainingBudget,
    *,
    seed: int,
    lr: float | None = None,
) -> tuple[dict[str, Any], dict[str, DataLoader[Any]]]:
    """:func:`fit_and_score` with the epochs, patience, batch size and weight decay of
    ``budget``, at ``lr`` (a tuning trial's) or else the budget's learning rate."""
    return fit_and_score(
        method,
        datasets,
        batch_size=budget.batch_size,
        max_epochs=budget.max_epochs,
        patience=budget.patience,
        lr=budget.lr if lr is None else lr,
        weight_decay=budget.weight_decay,
        seed=seed,
    )
