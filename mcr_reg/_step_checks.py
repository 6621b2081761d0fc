"""The checks :class:`~mcr_reg.MCRRegularizer` runs once per step on its inputs, before any
term computes, and the one-time warnings that compare them with MCR's own passes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal, Protocol

import torch
from torch import Tensor, nn

from mcr_reg import functional as MF
from mcr_reg._checks import (
    check_finite,
    check_latent_widths,
    check_latents,
    check_own_dtype,
    check_tensor,
    compiling,
)
from mcr_reg._heads import FusionHead, Output, random_in_training
from mcr_reg._messages import UpdateWatch, warn_logits_differ, warn_nonfinite
from mcr_reg._tasks import TaskRule
from mcr_reg.calls import batch_axis_hint, batch_of


class Checked(Protocol):
    """What the checks read of the regularizer (:class:`~mcr_reg.MCRRegularizer`)."""

    rule: TaskRule
    num_classes: int | None
    latent_dims: tuple[int, ...] | None
    feature_axis: int | Literal["auto"]
    check_values: bool
    check_finite: bool
    output: Output
    _warned_nonfinite: bool
    _warned_logits: bool
    _updates: UpdateWatch
    _fusion: FusionHead

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]: ...


def check_step_inputs(
    mcr: Checked,
    names: Sequence[str],
    zs: Sequence[Tensor],
    labels: Tensor,
    logits: Tensor | None,
) -> tuple[int, Tensor, int | None]:
    """Latents, labels and logits: ``(batch, labels, output width)``; and the checks that
    run once per step (dtype of MCR's heads, NaN latents, parameters nobody updates)."""
    hint = batch_axis_hint(names, zs, batch_of(labels))
    if hint is not None:
        raise ValueError(hint)
    batch, device = check_latents(names, zs)
    if mcr.latent_dims is not None:
        widths = [int(z.shape[MF.feature_axis_of(z, mcr.feature_axis)]) for z in zs]
        check_latent_widths(names, zs, widths, mcr.latent_dims)
    labels = check_tensor(labels, "labels")
    if labels.device != device:
        raise ValueError(f"expected labels on {device} like the latents, got {labels.device}")
    values = mcr.check_values and not compiling()
    labels = mcr.rule.check_labels(labels, batch, mcr.num_classes, values)
    width = mcr.rule.width(mcr.num_classes)
    if logits is not None:
        width = mcr.rule.check_prediction(check_tensor(logits, "logits"), batch, width)
    check_own_dtype(zs, next(mcr.parameters(), None))
    if not compiling():
        if mcr.check_finite:
            for n, z in zip(names, zs):
                check_finite(z, f"latent {n!r}")
        elif values and not mcr._warned_nonfinite:
            _warn_nonfinite(mcr, names, zs)
        mcr._updates.observe(
            list(mcr.parameters()),
            [p for m in mcr._fusion.modules() for p in m.parameters(recurse=False)],
        )
    return batch, labels, width


def _warn_nonfinite(mcr: Checked, names: Sequence[str], zs: Sequence[Tensor]) -> None:
    """A value check (one host sync per call until it has warned once)."""
    finite = torch.stack([torch.isfinite(z).all() for z in zs])
    if bool(finite.all()):
        return
    mcr._warned_nonfinite = True
    warn_nonfinite([repr(n) for n, ok in zip(names, finite.tolist()) if not ok])


def compare_logits(mcr: Checked, logits: Tensor, reference: Tensor) -> None:
    """Warn once when ``logits`` differ from MCR's own ``fusion_head(*latents)``.

    A value check (one host sync): only with ``check_values``, never while compiling, and
    not for heads whose dropout or BatchNorm layers make two calls differ.
    """
    if mcr._warned_logits or not mcr.check_values or compiling():
        return
    if not logits.is_floating_point() or random_in_training(mcr._fusion.modules()):
        return
    ref = reference.detach().float().reshape(reference.shape[0], -1)
    got = logits.detach().float().reshape(ref.shape)
    eps = max(torch.finfo(reference.dtype).eps, torch.finfo(logits.dtype).eps)
    rel = max(8.0 * eps, 5e-3)  # float32: 5e-3; float16: 7.8e-3; bfloat16: 6.3e-2
    diff = (ref - got).abs().max()
    tol = rel * (1.0 + got.abs().max())
    if bool(diff > tol):
        mcr._warned_logits = True
        warn_logits_differ(float(diff), float(tol), logits.dtype, mcr.output)
