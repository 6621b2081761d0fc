"""Write a tiny MOSEI or MOSI pickle in the real MulT/MultiBench structure.

``python -m examples.mosei.make_fixture OUT_DIR [--mosi] [--seed S]`` writes
``OUT_DIR/mosei_senti_data.pkl`` (or ``mosi_data.pkl``): the three splits with the real keys,
feature widths, sequence length 50, dtypes (float32 features and labels ``(N, 1, 1)``), ``id``
``(N, 3)`` (str for MOSEI, bytes for MOSI), ``-inf`` entries in the audio features,
left-zero-padded text, labels that include exact zeros and halves, and a few samples whose text
is all zero (which the loader must drop). The text carries the sentiment most clearly and
the vision weakly, so a model can learn something on it.
"""

from __future__ import annotations

import argparse
import pickle
from pathlib import Path

import numpy as np

from examples.mosei.data import FEATURE_DIMS, FILENAMES, SEQUENCE_LENGTH, SPLITS

#: Samples per split before dropping, and how many of them have all-zero text.
SPLIT_SIZES: dict[str, int] = {"train": 26, "valid": 12, "test": 12}
EMPTY_TEXT_PER_SPLIT = 2
#: Fixed labels placed first in every split: zeros and halves exercise the metric edge cases.
EDGE_LABELS: tuple[float, ...] = (0.0, 0.5, -0.5, 1.5, 2.5, -3.0, 3.0, 0.0)


def _split_arrays(
    rng: np.random.Generator, n: int, dataset: str, split: str
) -> dict[str, np.ndarray]:
    dims = FEATURE_DIMS[dataset]
    t_len = SEQUENCE_LENGTH
    labels = rng.uniform(-3.0, 3.0, size=n).round(1)
    labels[: len(EDGE_LABELS)] = EDGE_LABELS[:n]
    labels = labels.astype(np.float32)

    direction = {m: rng.standard_normal(d).astype(np.float32) for m, d in dims.items()}
    vision = 0.3 * labels[:, None, None] * direction["vision"] + rng.standard_normal(
        (n, t_len, dims["vision"])
    )
    audio = rng.standard_normal((n, t_len, dims["audio"]))
    audio[rng.random(audio.shape) < 0.02] = -np.inf  # as in the released audio features
    text = np.zeros((n, t_len, dims["text"]))
    n_words = rng.integers(5, t_len + 1, size=n)
    for i in range(n):  # left padding: the words sit at the end of the sequence
        k = int(n_words[i])
        text[i, t_len - k :] = labels[i] * direction["text"] + 0.5 * rng.standard_normal(
            (k, dims["text"])
        )
    empty = rng.choice(np.arange(len(EDGE_LABELS), n), size=EMPTY_TEXT_PER_SPLIT, replace=False)
    text[empty] = 0.0

    ids = [(f"vid{split}{i:03d}", f"{i * 1.5:.3f}", f"{i * 1.5 + 3:.3f}") for i in range(n)]
    id_dtype = "S" if dataset == "mosi" else "U"
    return {
        "vision": vision.astype(np.float32),
        "audio": audio.astype(np.float32),
        "text": text.astype(np.float32),
        "labels": labels.reshape(n, 1, 1),
        "id": np.array(ids, dtype=id_dtype),
    }


def make_fixture(out_dir: str | Path, *, dataset: str = "mosei", seed: int = 0) -> Path:
    """Write the fixture pickle for ``dataset`` into ``out_dir``; returns its path."""
    if dataset not in FILENAMES:
        raise ValueError(f"expected dataset 'mosei' or 'mosi', got {dataset!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    data = {s: _split_arrays(rng, SPLIT_SIZES[s], dataset, s) for s in SPLITS}
    path = out / FILENAMES[dataset]
    with path.open("wb") as fh:
        pickle.dump(data, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--mosi", action="store_true", help="write mosi_data.pkl instead")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    path = make_fixture(args.out_dir, dataset="mosi" if args.mosi else "mosei", seed=args.seed)
    print(path)


if __name__ == "__main__":
    main()
