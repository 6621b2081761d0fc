"""examples/multiview/train.py end to end on a tiny fixture, run as a module."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from examples.multiview import train
from examples.multiview.make_fixture import write_fixture
from tests.examples._helpers.entry_points import entry_point, run_entry_point

SMALL = ["--train-per-class", "6", "--val-per-class", "3", "--test-per-class", "3"]


def _argv(root: Path, out: Path, views: str, method: str, *extra: str) -> list[str]:
    """A small train.py command line: ``views`` and ``method``, no progress bar, then ``extra``."""
    base = ["--data-root", str(root), "--out", str(out), "--views", views, "--method", method]
    return [*base, "--no-progress", *SMALL, *extra]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_fixture(tmp_path_factory.mktemp("mfeat"), "wheel", per_class=12)


def test_joint_three_views_writes_metrics(wheel, tmp_path):
    out = tmp_path / "run"
    metrics = train.main(_argv(wheel, out, "fou,kar,mor", "joint", "--max-epochs", "2"))
    written = json.loads((out / "metrics.json").read_text())
    assert written["modalities"] == ["fou", "kar", "mor"]
    assert written["test"]["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    assert 0.0 <= written["test"]["accuracy"] <= 1.0
    assert written["config"]["lr"] == 1e-3 and written["config"]["batch_size"] == 64  # config
    assert (out / "checkpoint.pt").is_file() and (out / "test_predictions.json").is_file()
    assert len(json.loads((out / "test_predictions.json").read_text())["labels"]) == 30


@pytest.mark.slow
def test_mcr_with_sum_head_gradient_and_supcon_as_method_options(wheel, tmp_path):
    out = tmp_path / "mcr"
    options = ("head_gradient=sum", "contrastive=supcon", "subsets=singletons")
    metrics = train.main(
        _argv(
            wheel,
            out,
            "fou,fac,kar,pix,zer,mor",
            "mcr",
            *(arg for option in options for arg in ("--method-option", option)),
            "--smoke",
        )
    )
    opts = metrics["method_options"]
    assert (opts["head_gradient"], opts["contrastive"], opts["subsets"]) == (
        "sum",
        "supcon",
        "singletons",
    )
    assert {"mcr/mipd", "mcr/contrastive"} <= set(metrics["history"][0]["train"])
    assert len(metrics["modalities"]) == 6


def test_bad_views_and_missing_root(wheel, tmp_path):
    with pytest.raises(ValueError, match="expected --views as two to six distinct names"):
        train.main(["--data-root", str(wheel), "--out", str(tmp_path), "--views", "fou"])
    with pytest.raises(ValueError, match="expected --views"):
        train.main(["--data-root", str(wheel), "--out", str(tmp_path), "--views", "fou,xyz"])
    with pytest.raises(ValueError, match="expected --data-root"):
        train.main(["--out", str(tmp_path)])


@pytest.mark.slow
def test_entry_point_runs_as_a_module(wheel, tmp_path):
    out = tmp_path / "module"
    run_entry_point(
        entry_point("examples/multiview/train.py"),
        *_argv(wheel.parent, out, "pix,zer", "ensemble", "--smoke"),
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["method"] == "ensemble" and set(metrics["test_unimodal"]) == {"pix", "zer"}
