"""Checks on a run's outputs that can fail: reported metrics against the saved predictions."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any


def assert_accuracy_matches_predictions(out: Path, metrics: Mapping[str, Any]) -> None:
    """``metrics["test"]["accuracy"]`` is the fraction of ``test_predictions.json``'s
    multimodal predictions that equal its labels (recomputed here, by hand)."""
    saved = json.loads((out / "test_predictions.json").read_text())
    labels, preds = saved["labels"], saved["multimodal"]
    assert len(labels) == len(preds) > 0
    hits = sum(1 for p, y in zip(preds, labels, strict=True) if p == y)
    assert abs(metrics["test"]["accuracy"] - hits / len(labels)) < 1e-9
