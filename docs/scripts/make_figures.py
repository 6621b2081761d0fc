"""Draw the figures of the documentation site.

    python -m docs.scripts.make_figures            # writes docs/img/*.png
    python -m docs.scripts.make_figures --out DIR  # somewhere else (used by the tests)

``gradient-routing.png`` shows, for two modalities and the MIPD term of the audio subset, which
uses of each latent carry the gradient factor 1 (owner) and which carry the strategy factor k
(non-owner), as implemented by :func:`mcr_reg.functional.mipd`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

OWNER = "#1f77b4"
OTHER = "#d62728"
GREY = "#555555"


def _box(ax: Axes, x: float, y: float, w: float, h: float, text: str, color: str) -> None:
    ax.add_patch(
        FancyBboxPatch(
            (x - w / 2, y - h / 2),
            w,
            h,
            boxstyle="round,pad=0.02,rounding_size=0.05",
            facecolor=color,
            edgecolor=GREY,
            alpha=0.9,
        )
    )
    ax.text(x, y, text, ha="center", va="center", fontsize=9)


def _arrow(
    ax: Axes,
    start: tuple[float, float],
    end: tuple[float, float],
    color: str = GREY,
    label: str | None = None,
    offset: tuple[float, float] = (0.0, 0.08),
) -> None:
    ax.add_patch(
        FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color=color, lw=1.6)
    )
    if label:
        mx, my = (start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1]
        ax.text(mx, my, label, ha="center", va="center", fontsize=8.5, color=color)


def gradient_routing(path: Path) -> Path:
    """The routing of the MIPD gradient for the term of S = {audio}."""
    fig, ax = plt.subplots(figsize=(10.0, 4.2))
    ax.set_xlim(0, 11.2)
    ax.set_ylim(0, 5)
    ax.axis("off")

    # encoders and latents
    _box(ax, 1.0, 3.6, 1.4, 0.6, "audio\nencoder θ_a", "#dbe9f6")
    _box(ax, 1.0, 1.4, 1.4, 0.6, "video\nencoder θ_v", "#f6dbdb")
    _arrow(ax, (1.7, 3.6), (2.6, 3.6))
    _arrow(ax, (1.7, 1.4), (2.6, 1.4))
    ax.text(2.9, 3.6, "z_a", ha="center", va="center", fontsize=10)
    ax.text(2.9, 1.4, "z_v", ha="center", va="center", fontsize=10)

    # the stacked rows that enter the fusion head
    _box(ax, 5.2, 4.2, 2.9, 0.5, "reference block:  z_a , z_v", "#eeeeee")
    _box(ax, 5.2, 2.5, 3.1, 0.5, "perturbed blocks:  z_a[π_p] , z_v", "#eeeeee")
    # owner uses (factor 1) of audio
    _arrow(ax, (3.15, 3.7), (3.7, 4.15), OWNER, "× 1", (-0.15, 0.12))
    _arrow(ax, (3.15, 3.5), (3.6, 2.6), OWNER, "× 1\n(permuted rows)", (-0.75, -0.1))
    # non-owner uses (factor k) of video
    _arrow(ax, (3.15, 1.55), (3.75, 4.0), OTHER, "× k", (-0.35, -0.35))
    _arrow(ax, (3.15, 1.35), (3.6, 2.35), OTHER, "× k", (0.25, -0.15))

    _box(ax, 7.75, 3.35, 1.3, 0.6, "fusion head\nθ_c  (× 1)", "#e6f2e6")
    _arrow(ax, (6.65, 4.2), (7.1, 3.5))
    _arrow(ax, (6.75, 2.5), (7.1, 3.2))
    _box(ax, 9.9, 3.35, 2.2, 0.6, "L_audio =\n−mean JSD(ref, pert)", "#fff5d6")
    _arrow(ax, (8.4, 3.35), (8.8, 3.35))

    ax.text(
        0.1,
        0.35,
        "Term of S = {audio}: audio owns it, video does not.  "
        "Backward: owner uses pass the gradient unchanged (×1), non-owner uses multiply it by k.\n"
        "k = +1 collaborative (true gradient)   ·   k = 0 independent (video gets nothing)   ·   "
        "k = −1 greedy (video pushes audio's importance down).",
        fontsize=8.5,
        color=GREY,
        va="bottom",
    )
    ax.text(0.1, 4.8, "Gradient routing of one MIPD term", fontsize=11, weight="bold")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> list[Path]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parents[1] / "img", help="folder"
    )
    args = parser.parse_args(argv)
    return [gradient_routing(args.out / "gradient-routing.png")]


if __name__ == "__main__":
    for p in main():
        print(p)
