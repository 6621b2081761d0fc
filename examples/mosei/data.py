"""CMU-MOSEI / CMU-MOSI: the aligned feature pickles of MulT and MultiBench.

On disk there is one pickle per data set, ``mosei_senti_data.pkl`` or ``mosi_data.pkl``, holding
``{"train" | "valid" | "test": {"vision", "audio", "text", "labels", "id"}}`` with the samples on
axis 0: features ``(N, 50, F)`` (50 word-aligned steps; F = 35/74/300 for MOSEI and 20/5/300 for
MOSI), sentiment ``labels`` ``(N, 1, 1)`` in [-3, 3] and ``id`` ``(N, 3)``.

Standard preprocessing, applied here once per split:

* non-finite feature values (the audio features hold ``-inf``) are set to 0;
* text is left-zero-padded; a sample whose text is all zero carries no words and is dropped
  from every key of its split.

A sample is a dict ``{"vision": (50, 35) float32, ..., "label": float32 scalar, "sentiment":
float32 scalar}`` holding only the selected modalities. ``label`` is the training target: the
sentiment itself for ``task="regression"``, ``1.0`` if sentiment >= 0 else ``0.0`` for
``task="binary"``. ``sentiment`` always holds the raw score, so the sentiment metrics can be
computed in either task.

The pickles are trusted research files; ``pickle`` executes code found in a malicious file, so only
load files from the official releases.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

DatasetName = Literal["mosei", "mosi"]
Task = Literal["regression", "binary"]

SPLITS: tuple[str, ...] = ("train", "valid", "test")
MODALITY_LETTERS: dict[str, str] = {"V": "vision", "A": "audio", "T": "text"}
CANONICAL_ORDER: tuple[str, ...] = ("vision", "audio", "text")
FILENAMES: dict[str, str] = {"mosei": "mosei_senti_data.pkl", "mosi": "mosi_data.pkl"}
FEATURE_DIMS: dict[str, dict[str, int]] = {
    "mosei": {"vision": 35, "audio": 74, "text": 300},
    "mosi": {"vision": 20, "audio": 5, "text": 300},
}
SEQUENCE_LENGTH = 50
REQUIRED_KEYS: tuple[str, ...] = ("vision", "audio", "text", "labels")


def parse_modalities(spec: str | Sequence[str]) -> tuple[str, ...]:
    """Turn ``"VT"``, ``"VAT"`` or a list of names into modality names in V, A, T order.

    Args:
        spec: letters out of ``V``, ``A``, ``T`` (any order, case-insensitive), or a sequence
            of the names ``vision``, ``audio``, ``text``.

    Returns:
        The selected names in the canonical order vision, audio, text.

    Raises:
        ValueError: unknown letters or names, repeats, or fewer than two modalities.

    Example:
        >>> parse_modalities("tv")
        ('vision', 'text')
    """
    if isinstance(spec, str):
        unknown = [c for c in spec.upper() if c not in MODALITY_LETTERS]
        if unknown:
            raise ValueError(f"expected modality letters out of V, A, T, got {spec!r}")
        names = [MODALITY_LETTERS[c] for c in spec.upper()]
    else:
        names = list(spec)
        unknown = [n for n in names if n not in CANONICAL_ORDER]
        if unknown:
            raise ValueError(f"expected modality names out of {CANONICAL_ORDER}, got {names}")
    if len(set(names)) != len(names):
        raise ValueError(f"expected each modality once, got {spec!r}")
    if len(names) < 2:
        raise ValueError(f"expected at least two modalities, got {spec!r}")
    return tuple(m for m in CANONICAL_ORDER if m in names)


def find_pickle(data_root: str | Path, dataset: DatasetName = "mosei") -> Path:
    """Locate the pickle of ``dataset``: ``data_root`` itself or the standard file name in it.

    Raises:
        ValueError: unknown data set name.
        FileNotFoundError: the file is not there.
    """
    if dataset not in FILENAMES:
        raise ValueError(f"expected dataset 'mosei' or 'mosi', got {dataset!r}")
    root = Path(data_root)
    path = root if root.is_file() else root / FILENAMES[dataset]
    if not path.is_file():
        raise FileNotFoundError(f"expected the {dataset.upper()} pickle at {path}; not found")
    return path


def load_pickle(path: str | Path) -> dict[str, dict[str, np.ndarray]]:
    """Read a MulT/MultiBench pickle and check its top-level structure.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a pickle of the expected structure.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected a sentiment pickle at {path}; not found")
    try:
        with path.open("rb") as fh:
            data = pickle.load(fh)
    except UnicodeDecodeError:  # pickles written by Python 2 hold byte strings
        with path.open("rb") as fh:
            data = pickle.load(fh, encoding="latin1")
    except (pickle.UnpicklingError, EOFError) as err:
        raise ValueError(f"{path} is not a readable pickle: {err}") from err
    if not isinstance(data, Mapping) or any(s not in data for s in SPLITS):
        keys = sorted(data) if isinstance(data, Mapping) else type(data).__name__
        raise ValueError(f"expected {path} to hold the splits {SPLITS}, got {keys}")
    for split in SPLITS:
        missing = [k for k in REQUIRED_KEYS if k not in data[split]]
        if missing:
            raise ValueError(f"{path} split {split!r} lacks the keys {missing}")
    return {s: dict(data[s]) for s in SPLITS}


def clean_split(arrays: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Apply the standard preprocessing to one split.

    Non-finite feature values become 0 (the released audio features hold ``-inf``), and samples
    whose text is all zero are dropped from every key (``id`` included).

    Args:
        arrays: ``{"vision", "audio", "text", "labels", ...}`` with N on axis 0.

    Returns:
        New arrays: features float32 ``(N', T, F)``, ``labels`` float32 ``(N',)``, other keys
        filtered the same way.

    Raises:
        ValueError: the keys disagree on N or the features are not 3-D.
    """
    n = len(arrays["labels"])
    for key, value in arrays.items():
        if len(value) != n:
            raise ValueError(
                f"expected every key to hold {n} samples like 'labels', got {key} with {len(value)}"
            )
    cleaned: dict[str, np.ndarray] = {}
    for key in CANONICAL_ORDER:
        features = np.asarray(arrays[key], dtype=np.float32)
        if features.ndim != 3:
            raise ValueError(f"expected {key} of shape (N, T, F), got {features.shape}")
        cleaned[key] = np.where(np.isfinite(features), features, np.float32(0.0))
    labels = np.asarray(arrays["labels"], dtype=np.float32).reshape(n, -1)
    if labels.shape[1] != 1:
        raise ValueError(
            f"expected one sentiment score per sample, got labels of shape {labels.shape}"
        )
    cleaned["labels"] = labels[:, 0]
    keep = np.abs(cleaned["text"]).reshape(n, -1).sum(axis=1) > 0
    out = {key: value[keep] for key, value in cleaned.items()}
    for key, value in arrays.items():
        if key not in out:
            out[key] = np.asarray(value)[keep]
    return out


class SentimentDataset(Dataset[dict[str, Tensor]]):
    """One split of MOSEI/MOSI as dict samples (see the module docstring).

    Args:
        arrays: a cleaned split from :func:`clean_split`.
        modalities: names out of vision/audio/text to return.
        task: ``"regression"`` (label = sentiment) or ``"binary"`` (label = sentiment >= 0).
    """

    def __init__(
        self,
        arrays: Mapping[str, np.ndarray],
        modalities: Sequence[str],
        task: Task = "regression",
    ) -> None:
        if task not in ("regression", "binary"):
            raise ValueError(f"expected task 'regression' or 'binary', got {task!r}")
        self.modalities = parse_modalities(list(modalities))
        self.task = task
        self.features = {
            m: torch.from_numpy(np.ascontiguousarray(arrays[m])) for m in self.modalities
        }
        self.sentiment = torch.from_numpy(np.ascontiguousarray(arrays["labels"], dtype=np.float32))
        self.labels = self.sentiment if task == "regression" else (self.sentiment >= 0).float()

    def __len__(self) -> int:
        return int(self.sentiment.shape[0])

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        sample = {m: self.features[m][index] for m in self.modalities}
        sample["label"] = self.labels[index]
        sample["sentiment"] = self.sentiment[index]
        return sample

    def feature_dims(self) -> dict[str, int]:
        """Per-modality input width F."""
        return {m: int(x.shape[-1]) for m, x in self.features.items()}


def load_splits(
    data_root: str | Path,
    *,
    dataset: DatasetName = "mosei",
    modalities: str | Sequence[str] = "VT",
    task: Task = "regression",
) -> dict[str, SentimentDataset]:
    """Load the train/valid/test splits of MOSEI or MOSI, preprocessed.

    Args:
        data_root: folder holding the pickle, or the pickle itself.
        dataset: ``"mosei"`` or ``"mosi"``.
        modalities: ``"VT"``, ``"VAT"`` or names (see :func:`parse_modalities`).
        task: ``"regression"`` or ``"binary"``.

    Returns:
        ``{"train": ..., "valid": ..., "test": ...}`` datasets.

    Raises:
        FileNotFoundError: no pickle found.
        ValueError: the pickle's structure or feature widths disagree with ``dataset``.
    """
    names = parse_modalities(modalities)
    data = load_pickle(find_pickle(data_root, dataset))
    out: dict[str, SentimentDataset] = {}
    for split in SPLITS:
        cleaned = clean_split(data[split])
        for m in CANONICAL_ORDER:
            width = cleaned[m].shape[-1]
            if width != FEATURE_DIMS[dataset][m]:
                raise ValueError(
                    f"expected {dataset} {m} features of width {FEATURE_DIMS[dataset][m]}, "
                    f"got {width} in split {split!r} (is this the other data set's pickle?)"
                )
        out[split] = SentimentDataset(cleaned, names, task)
    return out
