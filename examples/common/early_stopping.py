"""Early stopping with tracks: :class:`TrackStopper`.

A method trains one or more sets of weights per stage (MCR one, the ensemble one per modality);
each is a track with its own monitored value, patience and best weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn


class TrackStopper:
    """Early stopping with one or more tracks, each keeping its own best weights.

    A track is a set of state-dict key prefixes; when its monitored value improves, the
    matching entries of the method's state dict are copied (to CPU). The stage stops when
    every track has gone ``patience`` epochs without improving.
    """

    def __init__(self, tracks: Mapping[str, tuple[str, ...]], mode: str, patience: int) -> None:
        self.tracks = dict(tracks)
        self.mode = mode
        self.patience = patience
        self.best: dict[str, float | None] = {t: None for t in tracks}
        self.best_epoch: dict[str, int] = {t: -1 for t in tracks}
        self.bad: dict[str, int] = {t: 0 for t in tracks}
        self.best_state: dict[str, dict[str, Tensor]] = {}

    def _improves(self, new: float, old: float | None) -> bool:
        if math.isnan(new):
            return False
        if old is None:
            return True
        return new > old if self.mode == "max" else new < old

    def update(self, epoch: int, values: Mapping[str, float], method: nn.Module) -> list[str]:
        """Record one epoch's values; returns the tracks that improved."""
        improved = []
        state = None
        for track, prefixes in self.tracks.items():
            value = float(values[track])
            if self._improves(value, self.best[track]):
                state = state if state is not None else method.state_dict()
                self.best[track] = value
                self.best_epoch[track] = epoch
                self.bad[track] = 0
                self.best_state[track] = {
                    k: v.detach().to("cpu", copy=True)
                    for k, v in state.items()
                    # weights only: extra state (e.g. MCR's RNG) must not rewind with them
                    if any(k.startswith(p) for p in prefixes) and not k.endswith("_extra_state")
                }
                improved.append(track)
            else:
                self.bad[track] += 1
        return improved

    def done(self) -> bool:
        return all(b >= self.patience for b in self.bad.values())

    def restore(self, method: nn.Module) -> None:
        """Load every track's best weights into ``method``."""
        for track in self.tracks:
            if track in self.best_state:
                method.load_state_dict(self.best_state[track], strict=False)

    def state_dict(self) -> dict[str, Any]:
        return {
            "best": self.best,
            "best_epoch": self.best_epoch,
            "bad": self.bad,
            "best_state": self.best_state,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best = dict(state["best"])
        self.best_epoch = dict(state["best_epoch"])
        self.bad = dict(state["bad"])
        self.best_state = dict(state["best_state"])
