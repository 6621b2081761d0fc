"""AV-MNIST from the original files: MNIST digit images paired by class with spoken digits (FSDD).

The construction follows MultiBench's AV-MNIST (docs/examples/avmnist.md lists every
deviation):

* **Images** come from MNIST's idx files (``t10k-images-idx3-ubyte[.gz]`` and
  ``t10k-labels-idx1-ubyte[.gz]`` by default, or the ``train-*`` pair) and are degraded by
  removing principal-component energy: each image is replaced by its reconstruction from the
  leading principal components that together hold at most 25 % of the variance
  (:func:`pca_degrade`; about three components on MNIST), as MultiBench's images are. The
  PCA is fitted on the training pairs' images only.
* **Audio** comes from the Free Spoken Digit Dataset: mono WAV files at 8 kHz named
  ``{digit}_{speaker}_{index}.wav``. Each recording becomes a fixed-size log-magnitude
  spectrogram (:func:`spectrogram`).
* **Pairs** join an image and a recording of the same digit (:func:`build_splits`).

Splits never put a recording or an image on two sides: recordings are split by their index
(FSDD's own test set is indices 0-4; 5-9 validate; 10-49 train) and every image is drawn
into one split at most.

Bad or missing files raise :class:`DataFormatError` naming the file, what was expected and
what came.
"""

from __future__ import annotations

import gzip
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from examples.common.data import TensorDictDataset

NUM_CLASSES = 10
SAMPLE_RATE = 8000
#: The four MNIST files by role: (images, labels) of the training and the test file.
MNIST_FILES: dict[str, tuple[str, str]] = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
#: ``{digit}_{speaker}_{index}.wav`` (FSDD's naming).
FSDD_NAME = re.compile(r"^(?P<digit>[0-9])_(?P<speaker>[A-Za-z]+)_(?P<index>[0-9]+)\.wav$")
#: Recording indices of each split (FSDD's official test set is 0-4).
RECORDING_SPLITS: dict[str, tuple[int, int]] = {"test": (0, 5), "val": (5, 10), "train": (10, 50)}
DOWNLOAD_HINT = "python -m examples.avmnist.download --out DIR"

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4")}


class DataFormatError(ValueError):
    """A data file is missing or does not have the expected layout."""


# --------------------------------------------------------------------------- MNIST
def read_idx(path: Path | str) -> np.ndarray:
    """Read one idx file (plain or gzip-compressed), e.g. MNIST's ``train-images-idx3-ubyte.gz``.

    The header is two zero bytes, a type code (``0x08`` unsigned byte, ...), the number of
    dimensions, then one big-endian 32-bit size per dimension; the data follow.

    Raises:
        DataFormatError: naming the file for a bad header, an unknown type or a wrong size.
    """
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise DataFormatError(
            f"{path}: expected an idx file (optionally gzip), got {err}"
        ) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise DataFormatError(
            f"{path}: expected an idx header (0x00 0x00, a type code out of "
            f"{[hex(t) for t in _IDX_TYPES]}, the number of dimensions), got {raw[:4].hex()}"
        )
    ndim = raw[3]
    head = 4 + 4 * ndim
    if ndim < 1 or len(raw) < head:
        raise DataFormatError(f"{path}: expected {ndim} dimension sizes after the magic, got less")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    want = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - head != want:
        raise DataFormatError(
            f"{path}: expected {want} data bytes for shape {shape}, got {len(raw) - head}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=head).reshape(shape)


def _find_file(root: Path, stem: str) -> Path | None:
    """``stem.gz`` or ``stem`` below ``root`` (a direct child first)."""
    for name in (f"{stem}.gz", stem):
        if (root / name).is_file():
            return root / name
    for name in (f"{stem}.gz", stem):
        hits = sorted(p for p in root.rglob(name) if p.is_file())
        if hits:
            return hits[0]
    return None


def load_mnist(root: Path | str, part: str) -> tuple[np.ndarray, np.ndarray]:
    """MNIST's ``part`` (``"train"`` or ``"test"``) file: images ``(N, 28, 28)`` uint8, labels ``(N,)``.

    Raises:
        DataFormatError: for a missing file, a bad idx file, a shape other than
            ``(N, 28, 28)`` / ``(N,)``, counts that disagree or labels outside 0-9.
    """
    root = Path(root)
    image_stem, label_stem = MNIST_FILES[part]
    paths = {stem: _find_file(root, stem) for stem in (image_stem, label_stem)}
    missing = [f"{s}[.gz]" for s, p in paths.items() if p is None]
    if missing:
        raise DataFormatError(
            f"{root}: expected the MNIST files {missing} (anywhere below it); get them with "
            f"`{DOWNLOAD_HINT}`"
        )
    image_path, label_path = paths[image_stem], paths[label_stem]
    assert image_path is not None and label_path is not None
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DataFormatError(
            f"{image_path}: expected unsigned-byte images of shape (N, 28, 28), got "
            f"{images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataFormatError(
            f"{label_path}: expected {images.shape[0]} labels (one per image of {image_path.name}), "
            f"got shape {labels.shape}"
        )
    if labels.size and int(labels.max()) >= NUM_CLASSES:
        raise DataFormatError(f"{label_path}: expected labels 0-9, got {int(labels.max())}")
    return images, labels.astype(np.int64)


def pca_degrade(
    fit_images: np.ndarray, images: Sequence[np.ndarray], *, kept_energy: float = 0.25
) -> tuple[list[np.ndarray], int]:
    """Remove principal-component energy from images, as MultiBench's AV-MNIST does.

    A PCA of ``fit_images`` (pixels scaled to [0, 1], flattened) is computed; ``k`` is the
    number of leading components whose cumulative explained variance stays at or below
    ``kept_energy`` (at least one). Every image of ``images`` is replaced by its centred
    reconstruction from those ``k`` components (the mean image is not added back).

    Args:
        fit_images: ``(N, 28, 28)`` uint8 images the PCA is fitted on.
        images: arrays ``(n_i, 28, 28)`` uint8 to degrade with that PCA.
        kept_energy: fraction of the variance that stays (MultiBench removes 75 %).

    Returns:
        The degraded images, each ``(n_i, 28, 28)`` float32, and ``k``.
    """
    if not 0.0 < kept_energy < 1.0:
        raise ValueError(f"expected kept_energy in (0, 1), got {kept_energy}")
    x = fit_images.reshape(len(fit_images), -1).astype(np.float64) / 255.0
    mean = x.mean(axis=0)
    # right singular vectors of the centred data are the principal axes
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    ratio = np.cumsum(s**2) / np.sum(s**2)
    k = max(1, int(np.searchsorted(ratio, kept_energy, side="right")))
    axes = vt[:k]  # (k, 784)
    out = []
    for block in images:
        flat = block.reshape(len(block), -1).astype(np.float64) / 255.0 - mean
        rec = (flat @ axes.T) @ axes  # (n, k) @ (k, 784)
        out.append(rec.reshape(block.shape).astype(np.float32))
    return out, k


# --------------------------------------------------------------------------- FSDD
@dataclass(frozen=True)
class Recording:
    """One FSDD recording: its digit, speaker, index and waveform (float32 in [-1, 1])."""

    digit: int
    speaker: str
    index: int
    wave: np.ndarray = field(repr=False, compare=False)

    @property
    def name(self) -> str:
        return f"{self.digit}_{self.speaker}_{self.index}.wav"


def parse_name(name: str) -> tuple[int, str, int]:
    """``"7_jackson_32.wav"`` -> ``(7, "jackson", 32)``.

    Raises:
        DataFormatError: if the name is not ``{digit}_{speaker}_{index}.wav``.
    """
    m = FSDD_NAME.match(name)
    if m is None:
        raise DataFormatError(
            f"{name}: expected an FSDD recording name '{{digit}}_{{speaker}}_{{index}}.wav' "
            "such as '7_jackson_32.wav'"
        )
    return int(m["digit"]), m["speaker"], int(m["index"])


def read_recording(path: Path) -> Recording:
    """Read one FSDD WAV file (mono, 8 kHz).

    Raises:
        DataFormatError: naming the file for a bad name, an unreadable file, a sample rate
            other than 8000 Hz, more than one channel or no samples.
    """
    digit, speaker, index = parse_name(path.name)
    try:
        wave, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, OSError) as err:
        raise DataFormatError(f"{path}: expected a WAV file, could not read it: {err}") from None
    if rate != SAMPLE_RATE:
        raise DataFormatError(f"{path}: expected {SAMPLE_RATE} Hz audio, got {rate} Hz")
    if wave.shape[1] != 1:
        raise DataFormatError(f"{path}: expected mono audio, got {wave.shape[1]} channels")
    if wave.shape[0] == 0:
        raise DataFormatError(f"{path}: expected audio samples, got an empty recording")
    return Recording(digit, speaker, index, wave[:, 0])


def find_recordings(root: Path | str) -> list[Path]:
    """Every ``{digit}_{speaker}_{index}.wav`` below ``root``, sorted by name.

    Raises:
        DataFormatError: if there is none, or one name occurs twice.
    """
    root = Path(root)
    paths = sorted(
        (p for p in root.rglob("*.wav") if FSDD_NAME.match(p.name)), key=lambda p: p.name
    )
    if not paths:
        raise DataFormatError(
            f"{root}: expected FSDD recordings '{{digit}}_{{speaker}}_{{index}}.wav' below it, "
            f"found none (get them with `{DOWNLOAD_HINT}`)"
        )
    names = [p.name for p in paths]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataFormatError(f"{root}: expected each recording once, found twice: {twice[:5]}")
    return paths


def spectrogram(wave: np.ndarray, *, size: int = 32, seconds: float = 1.0) -> np.ndarray:
    """A ``(size, size)`` log-magnitude spectrogram of an 8 kHz recording.

    The recording is centred in a window of ``seconds`` (zero-padded on both sides, or its
    middle is kept when it is longer); the STFT uses a periodic Hann window of
    ``n_fft = 2 (size - 1)`` samples (``size`` frequency bins from 0 to 4 kHz) and ``size``
    frames evenly spaced over the window. Values are ``log(|S| + 1e-6)``.

    Args:
        wave: ``(N,)`` float samples.
        size: frequency bins and time frames.
        seconds: length of the analysed window.

    Returns:
        ``(size, size)`` float32, frequency first.
    """
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(f"expected a non-empty 1-D waveform, got shape {wave.shape}")
    if size < 2:
        raise ValueError(f"expected size >= 2, got {size}")
    length = round(seconds * SAMPLE_RATE)
    n_fft = 2 * (size - 1)
    if wave.size >= length:
        start = (wave.size - length) // 2
        x = wave[start : start + length].astype(np.float64)
    else:
        x = np.zeros(length)
        left = (length - wave.size) // 2
        x[left : left + wave.size] = wave
    x = np.concatenate([x, np.zeros(n_fft)])
    starts = np.linspace(0, length - 1, size).round().astype(int)  # frame starts
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann
    frames = np.stack([x[s : s + n_fft] * window for s in starts])  # (T, n_fft)
    mag = np.abs(np.fft.rfft(frames, axis=1))  # (T, size)
    return np.log(mag.T + 1e-6).astype(np.float32)


# --------------------------------------------------------------------------- the data set
@dataclass(frozen=True)
class AVMNISTSource:
    """The raw material: one MNIST file's images and every FSDD recording's spectrogram.

    Attributes:
        image_file: which MNIST file the images come from (``"train"`` or ``"test"``).
        images: ``(N, 28, 28)`` uint8 images of that file, as stored.
        image_labels: ``(N,)`` their digits.
        spectrograms: ``(R, S, S)`` float32, one per recording (sorted by name).
        recordings: ``(digit, speaker, index)`` of each spectrogram.
        digest: a digest of the files' contents and the spectrogram size.
    """

    image_file: str
    images: np.ndarray
    image_labels: np.ndarray
    spectrograms: np.ndarray
    recordings: list[tuple[int, str, int]]
    digest: str


def load_source(
    mnist_root: Path | str, fsdd_root: Path | str, *, image_file: str = "test", spec_size: int = 32
) -> AVMNISTSource:
    """Read one MNIST file and every FSDD recording; compute the spectrograms.

    Args:
        mnist_root: a folder holding the MNIST idx files (anywhere below it).
        fsdd_root: a folder holding the FSDD recordings (anywhere below it).
        image_file: ``"test"`` (``t10k-*``, 10,000 images) or ``"train"`` (60,000 images).
        spec_size: side of the square spectrograms.

    Raises:
        DataFormatError: for missing or malformed files (see :func:`load_mnist`,
            :func:`read_recording`).
    """
    if image_file not in MNIST_FILES:
        raise ValueError(f"expected image_file out of {sorted(MNIST_FILES)}, got {image_file!r}")
    images, labels = load_mnist(mnist_root, image_file)
    h = hashlib.sha256(f"{image_file};spec_size={spec_size}".encode())
    h.update(np.ascontiguousarray(images).tobytes())
    h.update(labels.tobytes())
    recs = [read_recording(p) for p in find_recordings(fsdd_root)]
    for r in recs:
        h.update(r.name.encode())
        h.update(r.wave.tobytes())
    specs = np.stack([spectrogram(r.wave, size=spec_size) for r in recs])
    return AVMNISTSource(
        image_file=image_file,
        images=images,
        image_labels=labels,
        spectrograms=specs,
        recordings=[(r.digit, r.speaker, r.index) for r in recs],
        digest=h.hexdigest(),
    )


@dataclass(frozen=True)
class PairCounts:
    """Image-audio pairs per class in each split."""

    train: int = 300
    val: int = 100
    test: int = 100

    def __getitem__(self, split: str) -> int:
        return int(getattr(self, split))


def recording_split(index: int) -> str:
    """The split of a recording with this index (:data:`RECORDING_SPLITS`).

    Raises:
        DataFormatError: for an index outside 0-49.
    """
    for split, (lo, hi) in RECORDING_SPLITS.items():
        if lo <= index < hi:
            return split
    raise DataFormatError(f"expected recording indices 0-49 (FSDD), got {index}")


def build_splits(
    source: AVMNISTSource, counts: PairCounts, seed: int
) -> dict[str, dict[str, np.ndarray]]:
    """Train/val/test pairs of one seed: image and recording indices and labels per split.

    Per digit, the images are put in a seeded random order and cut into ``counts.val``
    validation, ``counts.test`` test and ``counts.train`` training images (each image in one
    split at most). Recordings are split by index (:data:`RECORDING_SPLITS`); within a
    split, each image of a digit is paired with one of that digit's recordings, taken in a
    seeded random order and repeated as often as needed (every recording is used
    ``n // r`` or one more times). Everything depends only on ``(source, counts, seed)``.

    Raises:
        ValueError: if a digit has fewer images than the three counts together, or a
            split holds no recording of a digit.
    """
    rng = np.random.default_rng(seed)
    rec_digits = np.array([d for d, _, _ in source.recordings])
    rec_split = np.array([recording_split(i) for _, _, i in source.recordings])
    need = counts.val + counts.test + counts.train
    parts: dict[str, dict[str, list[np.ndarray]]] = {
        s: {"image": [], "recording": [], "label": []} for s in ("train", "val", "test")
    }
    for digit in range(NUM_CLASSES):
        idx = rng.permutation(np.flatnonzero(source.image_labels == digit))
        if idx.size < need:
            raise ValueError(
                f"expected at least {need} images of digit {digit} in MNIST's {source.image_file} "
                f"file for pairs {counts}, got {idx.size}"
            )
        cuts = {
            "val": idx[: counts.val],
            "test": idx[counts.val : counts.val + counts.test],
            "train": idx[counts.val + counts.test : need],
        }
        for split, images in cuts.items():
            recs = np.flatnonzero((rec_split == split) & (rec_digits == digit))
            if recs.size == 0:
                lo, hi = RECORDING_SPLITS[split]
                raise ValueError(
                    f"expected {split} recordings of digit {digit} (indices {lo}-{hi - 1}), got none"
                )
            parts[split]["image"].append(images)
            parts[split]["recording"].append(np.resize(rng.permutation(recs), images.size))
            parts[split]["label"].append(np.full(images.size, digit, dtype=np.int64))
    return {s: {k: np.concatenate(v) for k, v in p.items()} for s, p in parts.items()}


def build_datasets(
    source: AVMNISTSource, counts: PairCounts, seed: int, *, kept_energy: float = 0.25
) -> tuple[dict[str, TensorDictDataset], dict[str, int]]:
    """Train/val/test :class:`TensorDictDataset` with ``image (n, 1, 28, 28)`` and
    ``audio (n, 1, S, S)``.

    The images are degraded by :func:`pca_degrade` with a PCA of the *training* pairs'
    images; both modalities are then standardised by the training pairs' mean and standard
    deviation (one scalar each).

    Returns:
        The data sets and facts for the report (``pca_components``).
    """
    splits = build_splits(source, counts, seed)
    names = ("train", "val", "test")
    degraded, k = pca_degrade(
        source.images[splits["train"]["image"]],
        [source.images[splits[s]["image"]] for s in names],
        kept_energy=kept_energy,
    )
    tensors = {
        s: {"image": img[:, None], "audio": source.spectrograms[splits[s]["recording"]][:, None]}
        for s, img in zip(names, degraded, strict=True)
    }
    stats = {m: (float(x.mean()), float(x.std()) or 1.0) for m, x in tensors["train"].items()}
    out = {}
    for split, mods in tensors.items():
        t = {
            m: torch.from_numpy(((x - stats[m][0]) / stats[m][1]).astype(np.float32))
            for m, x in mods.items()
        }
        t["label"] = torch.from_numpy(splits[split]["label"])
        out[split] = TensorDictDataset(t)
    return out, {"pca_components": k}


def split_summary(source: AVMNISTSource, splits: Mapping[str, Mapping[str, np.ndarray]]) -> dict:
    """How many distinct images and recordings each split uses (for the report)."""
    return {
        split: {
            "pairs": int(s["label"].size),
            "distinct_images": int(np.unique(s["image"]).size),
            "distinct_recordings": int(np.unique(s["recording"]).size),
        }
        for split, s in splits.items()
    }


__all__ = [
    "FSDD_NAME",
    "MNIST_FILES",
    "NUM_CLASSES",
    "RECORDING_SPLITS",
    "SAMPLE_RATE",
    "AVMNISTSource",
    "DataFormatError",
    "PairCounts",
    "Recording",
    "build_datasets",
    "build_splits",
    "find_recordings",
    "load_mnist",
    "load_source",
    "parse_name",
    "pca_degrade",
    "read_idx",
    "read_recording",
    "recording_split",
    "spectrogram",
    "split_summary",
]
