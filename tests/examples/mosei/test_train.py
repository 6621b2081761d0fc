"""End-to-end smoke runs of ``examples.mosei.train`` on the fixture pickles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from examples.common.data import build_loaders
from examples.mosei import train

SENTIMENT_KEYS = {"mae", "corr", "acc7", "acc5", "acc2_non0", "f1_non0", "acc2_has0", "f1_has0"}


@pytest.fixture
def data_root(mosei_root: Path) -> Path:
    """The MOSEI and MOSI pickles shared by every example test (tests/examples/conftest.py)."""
    return mosei_root


def _run(data_root: Path, out: Path, *extra: str) -> dict:
    argv = ["--data-root", str(data_root), "--out", str(out), "--smoke", "--no-progress"]
    return train.main([*argv, *extra])


def _run_light(data_root: Path, out: Path, *extra: str) -> dict:
    """A smoke run with one Transformer layer per encoder (the loop is what is tested)."""
    return _run(data_root, out, "--num-layers", "1", *extra)


@pytest.mark.slow
def test_mcr_smoke_mosei_vt_writes_outputs(data_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    metrics = _run(data_root, out, "--method", "mcr", "--modalities", "VT", "--max-epochs", "1")
    written = json.loads((out / "metrics.json").read_text())
    assert written["test"] == pytest.approx(metrics["test"], nan_ok=True)
    assert set(written["test"]) >= SENTIMENT_KEYS
    assert written["modalities"] == ["vision", "text"]
    assert written["task"]["kind"] == "regression"
    # the released MOSEI V-T settings came from configs/mosei_vt.json
    opts = written["method_options"]
    assert (opts["mipd_weight"], opts["unimodal_weight"], opts["ceb_weight"]) == (0.01, 0.1, 1.0)
    assert opts["num_permutations"] == 32 and opts["strategy"] == "greedy"
    assert written["config"]["lr"] == 1e-4 and written["config"]["batch_size"] == 8  # smoke cap
    assert [h["stage"] for h in written["history"]] == ["unimodal", "joint"]  # released --pre
    assert opts["init"] == "unimodal"
    train_terms = written["history"][-1]["train"]
    assert {"mcr/mipd", "mcr/contrastive", "mcr/ceb", "mcr/unimodal"} <= set(train_terms)
    assert written["importance"]["train_history"][0] is None  # no MCR in the unimodal stage
    assert len(written["importance"]["train_history"][-1]) == 2
    assert (out / "importance.png").stat().st_size > 0
    assert any((out / "tb").iterdir())
    assert (out / "checkpoint.pt").is_file()


@pytest.mark.slow
def test_mcr_smoke_mosi_three_modalities(data_root: Path, tmp_path: Path) -> None:
    metrics = _run_light(
        data_root, tmp_path / "run", "--dataset", "mosi", "--modalities", "VAT", "--method", "mcr"
    )
    assert metrics["modalities"] == ["vision", "audio", "text"]
    opts = metrics["method_options"]
    assert (opts["mipd_weight"], opts["unimodal_weight"], opts["ceb_weight"]) == (0.01, 0.01, 0.0)
    assert len(metrics["history"]) == 2
    assert set(metrics["test_unimodal"]) == {"vision", "audio", "text"}
    assert metrics["test"]["n"] == 10  # the 12 test samples less the 2 with empty text


@pytest.mark.slow
def test_binary_task(data_root: Path, tmp_path: Path) -> None:
    metrics = _run_light(data_root, tmp_path / "run", "--task", "binary", "--method", "joint")
    assert metrics["task"]["kind"] == "binary"
    assert {"accuracy", "acc2_has0", "f1_has0"} <= set(metrics["test"])
    # label = sentiment >= 0 and the prediction is logit > 0 vs >= 0: the same up to ties at 0
    assert metrics["test"]["acc2_has0"] == pytest.approx(metrics["test"]["accuracy"])


def test_default_config_follows_dataset_and_modalities() -> None:
    assert train.default_config("mosi", "TAV").name == "mosi_vat.json"
    assert train.default_config("mosei", "tv").name == "mosei_vt.json"
    for name in ("mosei_vt", "mosei_vat", "mosi_vt", "mosi_vat"):
        assert (train.CONFIG_DIR / f"{name}.json").is_file()


def test_missing_data_root_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--data-root"):
        train.main(["--out", str(tmp_path)])
    with pytest.raises(FileNotFoundError, match="mosei_senti_data"):
        train.main(["--data-root", str(tmp_path), "--out", str(tmp_path / "o"), "--smoke"])


def test_too_few_training_samples_for_a_batch(data_root: Path) -> None:
    ds = train.load_splits(data_root, dataset="mosei")["train"]
    with pytest.raises(ValueError, match="at least batch_size=64"):
        build_loaders({"train": ds, "val": ds, "test": ds}, batch_size=64, seed=0, drop_last=True)
