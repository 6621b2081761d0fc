"""What MCR will cost on your step, measured before training: :func:`estimate_cost`.

MCR runs the fusion head on every reference and perturbed block stacked along the batch axis:
``(n_ref + n_subsets * P)`` times the batch, where ``n_subsets`` is ``2^M - 2`` for
``subsets="all"`` (every proper non-empty subset) and ``n_ref`` is 1 with ``detach_reference``,
``n_subsets`` otherwise: 66 batches for two modalities and P = 32. Behind a
late-fusion linear head that is small next to the encoders; behind a cross-modal transformer
(early fusion) it can multiply the step's time and activation memory many times.
:func:`estimate_cost` times the user's own step with MCR and with MCR left out, on one batch,
and warns above a threshold, naming the knobs that bound the cost.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from mcr_reg.regularizer import MCRRegularizer

__all__ = ["CostReport", "estimate_cost"]


@dataclass(frozen=True)
class CostReport:
    """What :func:`estimate_cost` measured.

    Attributes:
        seconds_with: median wall time of the step with MCR.
        seconds_without: median wall time of the step with MCR left out (its call returns a
            zero loss at once).
        time_ratio: ``seconds_with / seconds_without``.
        memory_ratio: peak CUDA memory of the step with MCR over that without (None on a CPU).
        head_batches: how many batches of rows MCR's stacked fusion-head call holds per step.
        threshold: the ratio above which :func:`estimate_cost` warned.
    """

    seconds_with: float
    seconds_without: float
    time_ratio: float
    memory_ratio: float | None
    head_batches: int
    threshold: float

    def __str__(self) -> str:
        memory = f", peak memory x{self.memory_ratio:.2f}" if self.memory_ratio is not None else ""
        return (
            f"MCR multiplies this step's time by {self.time_ratio:.2f} "
            f"({self.seconds_with * 1e3:.1f} ms with, {self.seconds_without * 1e3:.1f} ms "
            f"without){memory}; its fusion-head call holds {self.head_batches} batches of rows"
        )


def head_batches(mcr: MCRRegularizer, num_modalities: int) -> int:
    """Batches of rows in MCR's stacked fusion-head call for ``num_modalities`` modalities."""
    mipd = mcr.mipd
    if mipd is None:
        return 0
    if mipd.subsets_spec == "sampled":
        subsets = num_modalities + mipd.sampled_subsets
    else:
        subsets = len(mipd.subsets_for(num_modalities))
    draws = 1 if mipd.perturbation == "zero" else mipd.num_permutations
    references = 1 if mipd.detach_reference else subsets
    return references + subsets * draws


def _muted(mcr: MCRRegularizer) -> Callable[..., Any]:
    from mcr_reg._output import MCROutput

    def forward(*args: object, **kwargs: object) -> MCROutput:
        zero = torch.zeros((), device=next(mcr.parameters(), torch.zeros(())).device)
        return MCROutput(
            loss=zero, terms={}, importance=zero.new_full((0,), float("nan")), modalities=(),
            unimodal_logits=None,
        )  # fmt: skip

    return forward


def _timed(step: Callable[[], object], repeats: int, cuda: bool) -> tuple[float, int]:
    times = []
    peak = 0
    for _ in range(repeats):
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        step()
        if cuda:
            torch.cuda.synchronize()
            peak = max(peak, torch.cuda.max_memory_allocated())
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2], peak


def estimate_cost(
    step: Callable[[], object],
    mcr: MCRRegularizer,
    *,
    num_modalities: int,
    repeats: int = 3,
    threshold: float = 3.0,
) -> CostReport:
    """Time one training step with MCR and with MCR left out, before a long run.

    ``step`` is your step up to ``loss.backward()`` (no ``optimizer.step()``): it is run
    ``repeats + 1`` times each way (the first of each discarded as warm-up), so gradients
    accumulate in between; zero them afterwards. MCR is left out by making its call return a
    zero loss at once (the forward of everything else runs as written); MCR's random state is
    restored afterwards.

    Args:
        step: the training step, as a function of nothing.
        mcr: the MCR the step calls.
        num_modalities: M, for the count of batches in MCR's head call.
        repeats: timed runs each way (the median is reported).
        threshold: warn when MCR multiplies the step's time or its peak CUDA memory by more.

    Returns:
        :class:`CostReport`; ``print(report)`` gives the finding.

    Raises:
        ValueError: ``repeats`` below 1.
    """
    if repeats < 1:
        raise ValueError(f"expected repeats >= 1, got {repeats}")
    cuda = torch.cuda.is_available() and any(
        p.is_cuda for p in mcr.parameters()
    )  # MCR's own heads sit where the model does
    state = mcr.get_extra_state()
    step()  # warm-up with MCR
    with_time, with_peak = _timed(step, repeats, cuda)
    object.__setattr__(mcr, "forward", _muted(mcr))
    try:
        step()  # warm-up without
        without_time, without_peak = _timed(step, repeats, cuda)
    finally:
        object.__delattr__(mcr, "forward")
        mcr.set_extra_state(state)
    memory = with_peak / without_peak if cuda and without_peak > 0 else None
    report = CostReport(
        seconds_with=with_time,
        seconds_without=without_time,
        time_ratio=with_time / max(without_time, 1e-12),
        memory_ratio=memory,
        head_batches=head_batches(mcr, num_modalities),
        threshold=threshold,
    )
    if report.time_ratio > threshold or (memory is not None and memory > threshold):
        warnings.warn(
            f"{report}, above the threshold {threshold}. Knobs that bound it: fewer draws "
            f"(MIPD(num_permutations={mcr.mipd.num_permutations if mcr.mipd else 0}) -> 4 or 8; the head call holds "
            "references + subsets x draws batches), fewer subsets (subsets='singletons', or "
            "'sampled' for many modalities), detach_reference=True (one reference block), or a "
            "lighter capture point (the pooled per-modality outputs after the cross-modal "
            "layers). docs/integration.md, 'Early and cross-modal fusion'.",
            RuntimeWarning,
            stacklevel=2,
        )
    return report
