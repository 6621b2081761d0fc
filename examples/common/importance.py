"""Per-modality importance for every method, and the Figure-6-style plot.

Importance of modality m = mean Jensen-Shannon divergence between the model's prediction and
its prediction when ``z_m`` alone is shuffled across the batch (the MIPD estimate of the unique
contribution, docs/semantics.md, "Importance"), computed with the divergences of
:mod:`mcr_reg.functional`. The trainer measures it on the validation set after every epoch for
every method, so runs of different methods can be compared on the same scale.
MCR's own training-time estimate (``MCROutput.importance``) is logged next to it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor

from mcr_reg import functional as MF


def divergence(reference: Tensor, perturbed: Tensor, *, regression: bool = False) -> Tensor:
    """Per-sample divergence ``(B,)`` of two predictions, as MCR's MIPD term measures it.

    The functions of :mod:`mcr_reg.functional`: squared error for regression, Bernoulli JSD
    for a single logit, JSD of the softmaxes otherwise (float32 log space, in [0, ln 2]).
    """
    if reference.shape != perturbed.shape:
        raise ValueError(
            f"expected predictions of equal shape, got {tuple(reference.shape)} and "
            f"{tuple(perturbed.shape)}"
        )
    if regression:
        return MF.squared_error(reference, perturbed)
    if reference.shape[-1] == 1:
        return MF.binary_jensen_shannon(reference, perturbed)
    return MF.jensen_shannon(reference, perturbed)


@torch.no_grad()
def permutation_importance(
    head: Callable[[dict[str, Tensor]], Tensor],
    latents: Mapping[str, Tensor],
    *,
    regression: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Importance of each modality on one batch, shape ``(M,)`` in modality order.

    Args:
        head: maps latents ``{name: z}`` to outputs ``(B, C)``.
        latents: the batch's latents, batch first.
        regression: compare outputs by squared difference instead of JSD.
        generator: CPU generator for the permutations (the global RNG is not touched).
    """
    names = list(latents)
    b = next(iter(latents.values())).shape[0]
    reference = head(dict(latents))
    out = torch.zeros(len(names))
    if b < 2:
        return out
    for i, name in enumerate(names):
        perm = torch.randperm(b, generator=generator).to(reference.device)
        shuffled = dict(latents)
        shuffled[name] = latents[name][perm]
        out[i] = divergence(reference, head(shuffled), regression=regression).mean().cpu()
    return out


def plot_importance(
    history: Sequence[Sequence[float]],
    names: Sequence[str],
    path: Path | str,
    *,
    title: str = "Per-modality importance",
    accuracy: Sequence[float] | None = None,
) -> None:
    """Draw importance per modality over epochs (paper Figure 6 style) into a PNG.

    Args:
        history: one row per epoch, one value per modality.
        names: modality names, in column order.
        path: output PNG path.
        title: figure title.
        accuracy: optional validation metric per epoch, drawn on a second axis.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    epochs = list(range(1, len(history) + 1))
    for i, name in enumerate(names):
        ax.plot(epochs, [row[i] for row in history], marker="o", ms=3, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("importance (JSD when shuffled)")
    ax.set_title(title)
    if accuracy is not None and len(accuracy) == len(history):
        ax2 = ax.twinx()
        ax2.plot(epochs, list(accuracy), color="k", ls="--", lw=1, label="val metric")
        ax2.set_ylabel("validation metric")
        ax2.legend(loc="lower right", fontsize=8)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
