"""The MOSEI/MOSI loader on fixtures written in the real pickle structure."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from examples.mosei.data import (
    FEATURE_DIMS,
    SEQUENCE_LENGTH,
    clean_split,
    find_pickle,
    load_pickle,
    load_splits,
    parse_modalities,
)
from examples.mosei.make_fixture import EMPTY_TEXT_PER_SPLIT, SPLIT_SIZES


@pytest.fixture
def fixture_dir(mosei_root: Path) -> Path:
    """The MOSEI and MOSI pickles shared by every example test (tests/examples/conftest.py)."""
    return mosei_root


def _raw(fixture_dir: Path, dataset: str) -> dict[str, dict[str, np.ndarray]]:
    name = "mosei_senti_data.pkl" if dataset == "mosei" else "mosi_data.pkl"
    with (fixture_dir / name).open("rb") as fh:
        return pickle.load(fh)


@pytest.mark.parametrize("dataset", ["mosei", "mosi"])
def test_fixture_has_real_structure(fixture_dir: Path, dataset: str) -> None:
    raw = _raw(fixture_dir, dataset)
    assert set(raw) == {"train", "valid", "test"}
    for split, arrays in raw.items():
        n = SPLIT_SIZES[split]
        assert set(arrays) == {"vision", "audio", "text", "labels", "id"}
        for m, width in FEATURE_DIMS[dataset].items():
            assert arrays[m].shape == (n, SEQUENCE_LENGTH, width)
            assert arrays[m].dtype == np.float32
        assert arrays["labels"].shape == (n, 1, 1)
        assert arrays["id"].shape == (n, 3)
        assert arrays["id"].dtype.kind == ("S" if dataset == "mosi" else "U")
        assert np.isneginf(arrays["audio"]).any()
        # left padding: wherever a step is non-zero, every later step is non-zero too
        used = np.abs(arrays["text"]).sum(-1) > 0
        assert (np.diff(used.astype(int), axis=1) >= 0).all()


@pytest.mark.parametrize("dataset", ["mosei", "mosi"])
def test_loader_shapes_labels_and_drops(fixture_dir: Path, dataset: str) -> None:
    raw = _raw(fixture_dir, dataset)
    splits = load_splits(fixture_dir, dataset=dataset, modalities="VAT")
    for split, ds in splits.items():
        keep = np.abs(raw[split]["text"]).reshape(SPLIT_SIZES[split], -1).sum(1) > 0
        assert len(ds) == SPLIT_SIZES[split] - EMPTY_TEXT_PER_SPLIT == keep.sum()
        sample = ds[0]
        assert set(sample) == {"vision", "audio", "text", "label", "sentiment"}
        for m, width in FEATURE_DIMS[dataset].items():
            assert sample[m].shape == (SEQUENCE_LENGTH, width)
            assert sample[m].dtype == torch.float32
        expected = raw[split]["labels"].reshape(-1)[keep]
        got = torch.stack([ds[i]["label"] for i in range(len(ds))]).numpy()
        np.testing.assert_array_equal(got, expected)
        assert ds.feature_dims() == FEATURE_DIMS[dataset]


def test_inf_becomes_zero_and_finite_values_stay(fixture_dir: Path) -> None:
    raw = _raw(fixture_dir, "mosei")["train"]
    cleaned = clean_split(raw)
    keep = np.abs(raw["text"]).reshape(len(raw["text"]), -1).sum(1) > 0
    audio = raw["audio"][keep]
    assert np.isfinite(cleaned["audio"]).all()
    assert (cleaned["audio"][np.isneginf(audio)] == 0).all()
    finite = np.isfinite(audio)
    np.testing.assert_array_equal(cleaned["audio"][finite], audio[finite])


def test_empty_text_samples_dropped_from_every_key(fixture_dir: Path) -> None:
    raw = _raw(fixture_dir, "mosei")["valid"]
    empty = np.abs(raw["text"]).reshape(len(raw["text"]), -1).sum(1) == 0
    assert empty.sum() == EMPTY_TEXT_PER_SPLIT
    cleaned = clean_split(raw)
    n = int((~empty).sum())
    for key in ("vision", "audio", "text", "labels", "id"):
        assert len(cleaned[key]) == n, key
    dropped_ids = {tuple(r) for r in raw["id"][empty]}
    assert not dropped_ids & {tuple(r) for r in cleaned["id"]}
    np.testing.assert_array_equal(cleaned["vision"], raw["vision"][~empty])


def test_modality_selection_and_binary_task(fixture_dir: Path) -> None:
    splits = load_splits(fixture_dir, dataset="mosei", modalities="TV", task="binary")
    ds = splits["test"]
    assert ds.modalities == ("vision", "text")
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert set(batch) == {"vision", "text", "label", "sentiment"}
    assert batch["vision"].shape == (4, SEQUENCE_LENGTH, 35)
    expected = (batch["sentiment"] >= 0).float()
    torch.testing.assert_close(batch["label"], expected)


def test_data_root_may_be_the_file(fixture_dir: Path) -> None:
    path = fixture_dir / "mosi_data.pkl"
    assert find_pickle(path, "mosi") == path
    assert len(load_splits(path, dataset="mosi")["train"]) == SPLIT_SIZES["train"] - 2


def test_wrong_dataset_widths_are_named(fixture_dir: Path) -> None:
    with pytest.raises(ValueError, match="expected mosei vision features of width 35, got 20"):
        load_splits(fixture_dir / "mosi_data.pkl", dataset="mosei")


def test_missing_file_and_bad_structure(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"mosei_senti_data\.pkl"):
        find_pickle(tmp_path, "mosei")
    bad = tmp_path / "bad.pkl"
    with bad.open("wb") as fh:
        pickle.dump({"train": {}, "test": {}}, fh)
    with pytest.raises(ValueError, match=r"expected .* to hold the splits"):
        load_pickle(bad)
    bad.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="not a readable pickle"):
        load_pickle(bad)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("VT", ("vision", "text")), ("vat", ("vision", "audio", "text")), ("AT", ("audio", "text"))],
)
def test_parse_modalities(spec: str, expected: tuple[str, ...]) -> None:
    assert parse_modalities(spec) == expected


@pytest.mark.parametrize(
    ("spec", "match"), [("VX", "letters"), ("V", "at least two"), ("VV", "once")]
)
def test_parse_modalities_errors(spec: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_modalities(spec)
