"""Test steps that the CREMA-D, AVE and UCF-101 pipeline tests share."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from examples.av_common.dataset import AVClipDataset
from examples.av_common.media import MediaError
from tests.examples._helpers.outputs import assert_accuracy_matches_predictions, assert_mcr_training


def check_smoke_outputs(
    out: Path, returned: Mapping[str, Any], method: str, *, num_test: int
) -> dict[str, Any]:
    """What every audio-visual ``train.py --smoke`` run must leave in ``out``.

    Checks ``metrics.json`` (equal to what ``main`` returned; method, modalities, test metrics,
    per-modality importance, an error matrix over all ``num_test`` test clips for methods
    with unimodal heads; for MCR the greedy strategy, its terms logged in every joint-stage
    epoch and the stages its ``init`` asks for), the importance plot, TensorBoard events and
    the checkpoint. This is the one MCR smoke run of each audio-visual fixture
    (``tests/examples/test_pipelines.py`` runs the other pipelines').

    Returns:
        The ``metrics.json`` content, for the data set's own checks.
    """
    metrics: dict[str, Any] = json.loads((out / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(returned))
    assert metrics["method"] == method and metrics["modalities"] == ["audio", "video"]
    assert "macro_f1" in metrics["test"]
    assert_accuracy_matches_predictions(out, metrics)
    assert len(metrics["importance"]["test"]) == 2
    if method == "joint":
        assert metrics["error_matrix"] is None  # no unimodal predictions to compare with
    else:
        counts = metrics["error_matrix"]["counts"]
        assert sum(map(sum, counts)) == num_test  # every test clip falls in one cell (Figure 5)
    if method == "mcr":
        assert_mcr_training(metrics)
    assert (out / "importance.png").stat().st_size > 0
    assert list((out / "tb").glob("events.out.tfevents.*"))
    assert (out / "checkpoint.pt").is_file()
    return metrics


def check_bad_media(
    build_datasets: Callable[..., dict[str, AVClipDataset]],
    root: Path,
    *,
    missing: str,
    corrupt: str,
    cache_dir: Path,
    caplog: pytest.LogCaptureFixture,
    skipped: str,
) -> dict[str, AVClipDataset]:
    """``build_datasets(root, smoke=True, ...)`` with one missing and one corrupt media file.

    Checks that, without ``skip_bad``, the missing file stops the build naming it (no cache)
    and so does the corrupt one (the cache decodes it); and that with ``skip_bad`` both are
    dropped with a warning that contains ``skipped``.

    Args:
        build_datasets: the pipeline's ``data.build_datasets``.
        root: data root holding the two bad files.
        missing: file name of the deleted media file.
        corrupt: file name of the garbled media file.
        cache_dir: where the cache may be built.
        caplog: pytest's log capture.
        skipped: expected part of the warning, e.g. ``"skipped 2 of 24 clips"``.

    Returns:
        The datasets built with ``skip_bad`` (no cache).
    """
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        build_datasets(root, smoke=True, progress=False)
    with pytest.raises(MediaError, match=re.escape(corrupt)):
        build_datasets(root, smoke=True, progress=False, cache_dir=cache_dir)
    with caplog.at_level(logging.WARNING):
        sets = build_datasets(root, smoke=True, progress=False, skip_bad=True)
    assert skipped in caplog.text
    return sets
