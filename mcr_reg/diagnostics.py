"""Watching the balance of modalities during training (paper Figure 6).

:class:`ImportanceTracker` accumulates :attr:`mcr_reg.MCROutput.importance` over the steps of an
epoch on the device (no synchronisation per step), and keeps one mean per epoch and modality.
With matplotlib installed (``pip install matplotlib``, or the ``plot`` extra of mcr-reg) it draws
each modality's curve.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = ["ImportanceTracker"]


class ImportanceTracker:
    """Per-epoch mean importance of each modality.

    Args:
        modalities: modality names, in the order of ``MCROutput.importance``.

    Example:
        >>> tracker = ImportanceTracker(["audio", "video"])
        >>> tracker.update(torch.tensor([0.30, 0.02]))
        >>> tracker.update(torch.tensor([0.20, 0.04]))
        >>> {m: round(v, 4) for m, v in tracker.end_epoch().items()}
        {'audio': 0.25, 'video': 0.03}
        >>> len(tracker.history["video"])
        1
    """

    def __init__(self, modalities: Sequence[str]) -> None:
        names = [str(m) for m in modalities]
        if len(names) < 1 or len(set(names)) != len(names):
            raise ValueError(f"expected distinct modality names, got {names}")
        self.modalities: tuple[str, ...] = tuple(names)
        self.history: dict[str, list[float]] = {m: [] for m in names}
        self._sum: Tensor | None = None
        self._count: Tensor | None = None

    def update(self, importance: Tensor) -> None:
        """Add one step's ``(M,)`` importance (NaN entries are not counted)."""
        if importance.shape != (len(self.modalities),):
            raise ValueError(
                f"expected importance of shape ({len(self.modalities)},) for {self.modalities}, "
                f"got {tuple(importance.shape)}"
            )
        value = importance.detach().to(torch.float64)
        valid = ~torch.isnan(value)
        if self._sum is None or self._count is None:
            self._sum = torch.zeros_like(value)
            self._count = torch.zeros_like(value)
        self._sum = self._sum + torch.where(valid, value, torch.zeros_like(value))
        self._count = self._count + valid.to(value.dtype)

    def end_epoch(self) -> dict[str, float]:
        """Close the epoch: append each modality's mean to :attr:`history` and return them."""
        if self._sum is None or self._count is None:
            means = [math.nan] * len(self.modalities)
        else:
            mean = self._sum / self._count  # NaN where nothing was counted
            means = [float(v) for v in mean.cpu()]
        self._sum = self._count = None
        out = dict(zip(self.modalities, means))
        for m, v in out.items():
            self.history[m].append(v)
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "modalities": list(self.modalities),
            "history": {m: list(v) for m, v in self.history.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if list(state["modalities"]) != list(self.modalities):
            raise ValueError(
                f"expected a state for modalities {list(self.modalities)}, got {state['modalities']}"
            )
        self.history = {m: [float(x) for x in state["history"][m]] for m in self.modalities}

    def plot(self, path: str | Path, *, title: str = "Modality importance (MIPD)") -> Path:
        """Draw one curve per modality over epochs and save it (PNG, PDF, ... by suffix).

        Raises:
            ImportError: when matplotlib is not installed.
        """
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError(
                "ImportanceTracker.plot needs matplotlib: pip install matplotlib (or install mcr-reg "
                "with its plot extra: pip install -e '.[plot]' in a clone)"
            ) from err
        path = Path(path)
        fig, ax = plt.subplots(figsize=(5.5, 3.5))
        for m in self.modalities:
            ys = self.history[m]
            ax.plot(range(1, len(ys) + 1), ys, marker="o", label=m)
        ax.set_xlabel("epoch")
        ax.set_ylabel("mean divergence when permuted")
        ax.set_title(title)
        ax.legend()
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
        plt.close(fig)
        return path
