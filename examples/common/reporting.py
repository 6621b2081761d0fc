"""What a run reports: ``metrics.json``, ``test_predictions.json`` and ``importance.png``.

:func:`metrics_record` turns the evaluated model and the training history into the record
written to ``metrics.json``; :func:`write_outputs` is the one place that writes the run's
result files. The Figure-5 error matrix (paper) compares the multimodal test predictions with unimodal
ones: the method's own unimodal heads, or those of another run given as
``--unimodal-reference`` (:func:`read_reference`). The benchmark runners' reports share
:func:`table` (markdown), :func:`save_figure` and :func:`write_report`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor

from examples.common.checkpoint import atomic_write_json
from examples.common.config import TrainConfig
from examples.common.importance import plot_importance
from examples.common.methods import Method
from examples.common.metrics import error_matrix
from examples.common.outcomes import EvalOutputs, FitResult
from examples.common.provenance import provenance
from examples.common.task import TaskSpec

R = TypeVar("R")  # a benchmark's result


def jsonable(value: Any) -> Any:
    """``value`` with paths as strings and anything else unknown as its ``repr``."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return repr(value)


def test_predictions(task: TaskSpec, test: EvalOutputs, names: list[str]) -> dict[str, Any]:
    """Per-sample test predictions (class indices, or values for regression) and labels."""

    def as_list(outputs: Tensor) -> list[Any]:
        pred = task.predict(outputs)
        return (pred if pred is not None else outputs.float().reshape(-1)).tolist()

    return {
        "modalities": names,
        "labels": test.labels.tolist(),
        "multimodal": as_list(test.outputs),
        "unimodal": (
            {m: as_list(test.unimodal[m]) for m in names} if test.unimodal is not None else None
        ),
    }


def read_reference(path: Path, names: list[str]) -> dict[str, Any]:
    """Read and check a ``test_predictions.json`` given as ``--unimodal-reference``.

    Raises:
        ValueError: unreadable, without unimodal predictions, or lacking a modality.
    """
    try:
        ref = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read --unimodal-reference {path}: {err}") from err
    if not isinstance(ref, dict) or not isinstance(ref.get("unimodal"), dict):
        raise ValueError(
            f"expected --unimodal-reference {path} to be a test_predictions.json with unimodal "
            "predictions (written by a run of e.g. --method ensemble), got none"
        )
    missing = [m for m in names if m not in ref["unimodal"]]
    if missing:
        raise ValueError(
            f"--unimodal-reference {path} lacks the modalities {missing}; it has "
            f"{sorted(ref['unimodal'])}"
        )
    return ref


def reference_unimodal_predictions(path: Path, names: list[str], labels: Tensor) -> list[Tensor]:
    """Unimodal test predictions of another run, checked against this run's test set."""
    ref = read_reference(path, names)
    if ref.get("labels") != labels.tolist():
        raise ValueError(
            f"--unimodal-reference {path} was made on another test set: expected "
            f"{len(labels)} labels equal to this run's, got {len(ref.get('labels') or [])} "
            "that differ"
        )
    return [torch.tensor(ref["unimodal"][m], dtype=torch.long) for m in names]


def _error_matrix(config: TrainConfig, method: Method, test: EvalOutputs) -> dict[str, Any] | None:
    task, names = method.task, list(method.model.modalities)
    pred = task.predict(test.outputs)
    if pred is None:
        return None
    labels = test.labels.long()
    if config.unimodal_reference is not None:
        uni = reference_unimodal_predictions(config.unimodal_reference, names, labels)
        source = str(config.unimodal_reference)
    elif test.unimodal is not None:
        own = [task.predict(test.unimodal[m]) for m in names]
        uni, source = [p for p in own if p is not None], f"{method.name} unimodal heads"
    else:
        return None
    return {**error_matrix(pred, uni, labels).as_dict(), "unimodal_source": source}


def metrics_record(
    config: TrainConfig,
    method: Method,
    test: EvalOutputs,
    val: EvalOutputs,
    fit_result: FitResult,
    wall_time_s: float,
    *,
    data_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The record written to ``metrics.json``: the run's settings, test and validation metrics,
    error matrix, importance, stages, history, data facts and provenance (JSON-ready)."""
    task, names = method.task, list(method.model.modalities)
    test_m, val_m = test.metrics(task), val.metrics(task)
    settings = {k: v for k, v in asdict(config).items() if k != "flags"}
    return jsonable(
        {
            "method": config.method,
            "strategy": method.options.get("strategy"),
            "method_options": method.options,
            "seed": config.seed,
            "task": {"kind": task.kind, "num_classes": task.num_classes, "monitor": task.monitor},
            "modalities": names,
            "test": test_m["multimodal"],
            "test_unimodal": test_m["unimodal"],
            "val": val_m["multimodal"],
            "error_matrix": _error_matrix(config, method, test),
            "importance": {
                "modalities": names,
                "test": test.importance.tolist() if test.importance is not None else None,
                "val_history": [r["importance"] for r in fit_result.history],
                "train_history": [r["train_importance"] for r in fit_result.history],
            },
            "stages": fit_result.stages,
            "history": [
                {k: r[k] for k in ("stage", "epoch", "train", "monitor", "seconds")}
                for r in fit_result.history
            ],
            "config": {**settings, **config.flags},
            "data": dict(data_info) if data_info is not None else None,
            "wall_time_s": wall_time_s,
            "provenance": provenance(time.time() - wall_time_s),
        }
    )


def write_outputs(
    out: Path, metrics: Mapping[str, Any], method: Method, test: EvalOutputs, fit_result: FitResult
) -> None:
    """Write ``metrics.json``, ``test_predictions.json`` and ``importance.png`` into ``out``
    (atomically; the one place a run's result files are written)."""
    names = list(method.model.modalities)
    atomic_write_json(dict(metrics), out / "metrics.json")
    atomic_write_json(test_predictions(method.task, test, names), out / "test_predictions.json")
    rows = [r for r in fit_result.history if r["importance"] is not None]
    if rows:
        plot_importance(
            [r["importance"] for r in rows],
            names,
            out / "importance.png",
            title=f"{metrics['method']}: validation importance per modality",
            accuracy=[r["val"]["multimodal"][method.task.monitor] for r in rows],
        )


# ------------------------------------------------------------------ benchmark reports
def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (files only; no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, *, dpi: int = 110) -> None:
    """Lay ``fig`` out, write it to ``path`` (its folder made when missing) and close it."""
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)


def sections_markdown(sections: Iterable[Callable[[R], list[str]]], result: R) -> str:
    """The markdown of ``result``: the lines of each section in turn (a section with nothing
    to say gives none), newline-ended."""
    return "\n".join(line for section in sections for line in section(result)) + "\n"


def percent(mean: float, std: float) -> str:
    """``"97.3 ± 0.4"``: an accuracy's mean ± std over seeds (fractions) in percent."""
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A markdown table: the header row, the rule, one line per row."""
    lines = ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def write_report(out: Path, result: Mapping[str, Any], markdown: str) -> None:
    """``results.json`` (atomically) and ``results.md`` of a benchmark in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(dict(result), out / "results.json")
    (out / "results.md").write_text(markdown)
