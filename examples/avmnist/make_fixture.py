"""Write a tiny AV-MNIST source in the real on-disk formats (for tests).

    python -m examples.avmnist.make_fixture OUT --images-per-class 12

``OUT/mnist`` gets the four MNIST files as gzip-compressed idx files (the real names and
headers); ``OUT/fsdd/recordings`` gets 16-bit mono 8 kHz WAV files named
``{digit}_{speaker}_{index}.wav``. Images are a digit-specific bar pattern plus noise; a
recording is a digit-specific tone plus noise, so that a model can learn both.
"""

from __future__ import annotations

import argparse
import gzip
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf

from examples.avmnist.data import MNIST_FILES, NUM_CLASSES, SAMPLE_RATE

#: Recording indices written per speaker and digit: two test, one validation, three training.
FIXTURE_INDICES: tuple[int, ...] = (0, 1, 5, 10, 11, 12)
FIXTURE_SPEAKERS: tuple[str, ...] = ("alice", "bob")


def idx_bytes(array: np.ndarray) -> bytes:
    """``array`` (uint8) as an idx file: two zero bytes, type 0x08, ndim, sizes, data."""
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 array, got {array.dtype}")
    head = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    return head + np.ascontiguousarray(array).tobytes()


def fake_images(per_class: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(10 * per_class, 28, 28)`` uint8 images (a bright bar whose row is the digit) and labels."""
    labels = np.repeat(np.arange(NUM_CLASSES, dtype=np.uint8), per_class)
    images = rng.integers(0, 60, size=(labels.size, 28, 28)).astype(np.float64)
    for i, digit in enumerate(labels):
        row = 2 + 2 * int(digit)
        images[i, row : row + 3, 4:24] += 180.0
        images[i, 4:24, row : row + 3] += 60.0 * (int(digit) % 2)
    order = rng.permutation(labels.size)  # MNIST files are not sorted by digit
    return np.clip(images, 0, 255).astype(np.uint8)[order], labels[order]


def fake_recording(digit: int, rng: np.random.Generator) -> np.ndarray:
    """A 0.25-0.45 s tone at ``300 + 250 * digit`` Hz with noise, float32."""
    n = int(rng.integers(2000, 3600))
    t = np.arange(n) / SAMPLE_RATE
    wave = 0.4 * np.sin(2 * np.pi * (300 + 250 * digit) * t) + 0.05 * rng.standard_normal(n)
    return wave.astype(np.float32)


def make_fixture(
    out: Path | str, *, images_per_class: int = 12, test_per_class: int = 6, seed: int = 0
) -> Path:
    """Write the tiny source under ``out``; returns ``out`` (``out/mnist``, ``out/fsdd``)."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    mnist = out / "mnist"
    mnist.mkdir(parents=True, exist_ok=True)
    for part, per_class in (("train", images_per_class), ("test", test_per_class)):
        images, labels = fake_images(per_class, rng)
        image_name, label_name = MNIST_FILES[part]
        (mnist / f"{image_name}.gz").write_bytes(gzip.compress(idx_bytes(images)))
        (mnist / f"{label_name}.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    recordings = out / "fsdd" / "recordings"
    recordings.mkdir(parents=True, exist_ok=True)
    for speaker in FIXTURE_SPEAKERS:
        for digit in range(NUM_CLASSES):
            for index in FIXTURE_INDICES:
                path = recordings / f"{digit}_{speaker}_{index}.wav"
                sf.write(str(path), fake_recording(digit, rng), SAMPLE_RATE, subtype="PCM_16")
    return out


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--images-per-class", type=int, default=12, help="MNIST training file")
    p.add_argument("--test-per-class", type=int, default=6, help="MNIST test file")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    print(
        make_fixture(
            args.out,
            images_per_class=args.images_per_class,
            test_per_class=args.test_per_class,
            seed=args.seed,
        )
    )


if __name__ == "__main__":
    main()
