"""Checks on a run's outputs that can fail: reported metrics against the saved predictions."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def assert_accuracy_matches_predictions(out: Path, metrics: Mapping[str, Any]) -> None:
    """The reported test metric follows from ``test_predictions.json`` (recomputed by hand):
    the accuracy (fraction of multimodal predictions equal to the labels) for classification,
    the mean absolute error for regression."""
    saved = json.loads((out / "test_predictions.json").read_text())
    labels, preds = saved["labels"], saved["multimodal"]
    assert len(labels) == len(preds) > 0
    if metrics["task"]["kind"] == "regression":
        mae = sum(abs(p - y) for p, y in zip(preds, labels, strict=True)) / len(labels)
        assert abs(metrics["test"]["mae"] - mae) < 1e-5 * max(1.0, mae)
        return
    hits = sum(1 for p, y in zip(preds, labels, strict=True) if p == y)
    assert abs(metrics["test"]["accuracy"] - hits / len(labels)) < 1e-9


def assert_mcr_training(metrics: Mapping[str, Any]) -> None:
    """An MCR run's ``metrics.json``: the greedy strategy, MCR's terms logged in every
    joint-stage epoch, and the stages its ``init`` asks for."""
    assert metrics["method"] == "mcr" and metrics["strategy"] == "greedy"
    joint = [h for h in metrics["history"] if h["stage"] == "joint"]
    assert joint and all(
        "mcr/mipd" in h["train"] and "mcr/contrastive" in h["train"] for h in joint
    )
    stages = [s["name"] for s in metrics["stages"]]
    init = metrics["method_options"]["init"]
    assert stages == (["unimodal", "joint"] if init == "unimodal" else ["joint"])
