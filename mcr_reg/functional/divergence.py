"""Divergences between two predictions of the fusion head (paper eq. 8): the Jensen-Shannon
divergence of two softmax predictions, its binary form for one logit, and the squared error for
regression; and the mean divergence of every perturbed block of MIPD's stacked head call from its
reference, with the gradient written out (:class:`_BlockJensenShannon`).

One Jensen-Shannon implementation serves all of them: :func:`_jsd_parts` computes it from the
log-ratio of the two predictions, accurate also for nearly equal predictions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Literal

import torch
from einops import rearrange
from torch import Tensor

from mcr_reg._checks import (
    shape_of,
)
from mcr_reg.functional._common import as_dtype, compute_dtype, in_compute_dtype, plain_gradients

LN2 = math.log(2.0)


Divergence = Literal["jsd", "binary_jsd", "multilabel_jsd", "squared_error"]
#: a divergence given as a function ``(reference, perturbed) -> (...)`` of two prediction tensors
#: of shape ``(..., K)`` (broadcast against each other), reducing the output axis
DivergenceFn = Callable[[Tensor, Tensor], Tensor]


def _softmax_and_lse(x: Tensor) -> tuple[Tensor, Tensor]:
    """``(softmax(x), logsumexp(x))`` over the last axis (the second keeps that axis)."""
    top = x.amax(dim=-1, keepdim=True)
    e = (x - top).exp_()
    total = e.sum(dim=-1, keepdim=True)
    return e.div_(total), total.log_().add_(top)


def _jsd_parts(x: Tensor, y: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """``(p, q, log(p/m), log(q/m), KL(p‖m), KL(q‖m))`` of the softmax distributions of two
    broadcastable logit tensors (class axis last, float32 or float64), ``m = ½ (p + q)``; the
    JSD is half the sum of the two KLs (paper eq. 10).

    Accurate relative to the *difference* of the two predictions, also when they nearly agree
    (logits on a small scale, early training): everything derives from the log-ratio
    ``l = log p - log q``. With ``d = x - y``, ``l = d + log Σ_j p_j e^{-d_j}``, taken as
    ``log1p`` of a sum of ``expm1`` terms in rows where no ``|d_j|`` exceeds 1 (no rounding of
    log-sum-exp values of order ``log C``), else as ``d - (lse(x) - lse(y))``. With ``a = |l|``, the larger of the two distributions has
    ``log(·/m) = -log1p(½ expm1(-a))`` in ``[0, ln 2]`` and the smaller that minus ``a``
    (``log(p/m) = that + min(l, 0)``, ``log(q/m) = that - max(l, 0)``): no overflow for any
    finite logits, and both exactly 0 where p == q. ``-inf`` logits count as the most negative
    finite value.
    """
    lowest = torch.finfo(x.dtype).min
    x, y = x.clamp_min(lowest), y.clamp_min(lowest)
    p, lse_x = _softmax_and_lse(x)
    q, lse_y = _softmax_and_lse(y)
    moved = y - x
    near = moved.abs().amax(dim=-1, keepdim=True) <= 1.0  # per row
    # (an overflowing expm1 only reaches rows that are not near, where it is not used)
    near_shift = (p * torch.expm1(moved)).sum(dim=-1, keepdim=True).log1p_()
    log_ratio = torch.where(near, near_shift, lse_y - lse_x) - moved  # log p - log q
    # -log(max(p, q) / m), in [-ln 2, 0]
    neg_major = log_ratio.abs().neg_().expm1_().mul_(0.5).log1p_()
    log_p_m = log_ratio.clamp(max=0.0).sub_(neg_major)
    log_q_m = log_ratio.clamp(min=0.0).add_(neg_major).neg_()
    return p, q, log_p_m, log_q_m, (p * log_p_m).sum(dim=-1), (q * log_q_m).sum(dim=-1)


def _jsd_plain(x: Tensor, y: Tensor) -> Tensor:
    """The JSD of two logit tensors (class axis last) in plain differentiable operations: the
    route of second-order gradients (``create_graph=True``), which the custom backward
    functions below cannot give."""
    log_p = torch.log_softmax(in_compute_dtype(x), dim=-1)
    log_q = torch.log_softmax(in_compute_dtype(y), dim=-1)
    log_m = torch.logaddexp(log_p, log_q) - LN2
    kl_pm = (log_p.exp() * (log_p - log_m)).sum(dim=-1)
    kl_qm = (log_q.exp() * (log_q - log_m)).sum(dim=-1)
    return 0.5 * (kl_pm + kl_qm)


def jensen_shannon(logits_p: Tensor, logits_q: Tensor, *, dim: int = -1) -> Tensor:
    """Jensen-Shannon divergence between the softmax distributions of two logit tensors.

    The divergence of paper eq. 10: ``JSD(p, q) = ½ KL(p ‖ m) + ½ KL(q ‖ m)`` with
    ``m = ½ (p + q)``. Everything is computed from log-probabilities
    (``log p - log m = ln 2 - softplus(log q - log p)``) in float32 or float64, so the result lies in
    ``[0, ln 2]`` and is finite for any finite logits, including ±1e4 and fp16/bf16 inputs.

    Args:
        logits_p: logits ``(..., C)``.
        logits_q: logits broadcastable to ``logits_p``.
        dim: the class axis.

    Returns:
        The divergence per element, the class axis reduced: shape ``(...)``, dtype float32
        (float64 for float64 inputs).

    Example:
        >>> p = torch.tensor([[2.0, 0.0, -1.0]])
        >>> float(jensen_shannon(p, p))
        0.0
        >>> v = float(jensen_shannon(torch.tensor([[1e4, 0.0]]), torch.tensor([[0.0, 1e4]])))
        >>> abs(v - math.log(2)) < 1e-6
        True
    """
    last = dim in (-1, max(logits_p.dim(), logits_q.dim()) - 1)
    if not last:
        logits_p, logits_q = logits_p.movedim(dim, -1), logits_q.movedim(dim, -1)
    jsd: Tensor = _JensenShannon.apply(logits_p, logits_q)
    return jsd


class _JensenShannon(torch.autograd.Function):
    """:func:`jensen_shannon` over the last axis, with its gradient written out.

    Forward: ``JSD = ½ KL(p‖m) + ½ KL(q‖m)`` from :func:`_jsd_parts`, clamped to ``[0, ln 2]``
    (the clamp only removes rounding: the gradient passes through it). Backward, through the
    softmax: ``∂JSD/∂logits_p = ½ p ⊙ (log(p/m) - KL(p‖m))`` and likewise for q (paper eq. 10).
    A second-order backward (``create_graph=True``) differentiates :func:`_jsd_plain` instead.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, logits_p: Tensor, logits_q: Tensor
    ) -> Tensor:
        with torch.autocast(device_type=logits_p.device.type, enabled=False):
            x, y = in_compute_dtype(logits_p), in_compute_dtype(logits_q)
            p, q, log_p_m, log_q_m, kl_pm, kl_qm = _jsd_parts(x, y)
            jsd = (0.5 * (kl_pm + kl_qm)).clamp_(0.0, LN2)
        ctx.save_for_backward(logits_p, logits_q, p, q, log_p_m, log_q_m, kl_pm, kl_qm)
        return jsd

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor | None, Tensor | None]:
        logits_p, logits_q, p, q, log_p_m, log_q_m, kl_pm, kl_qm = ctx.saved_tensors  # type: ignore[attr-defined]
        needs = ctx.needs_input_grad  # type: ignore[attr-defined]
        if torch.is_grad_enabled():  # create_graph=True: a differentiable gradient
            grad_p, grad_q = plain_gradients(_jsd_plain, (logits_p, logits_q), grad, needs[:2])
            return grad_p, grad_q
        g = (0.5 * grad).unsqueeze(-1)
        grad_p = grad_q = None
        if needs[0]:
            grad_p = (g * p * (log_p_m - kl_pm.unsqueeze(-1))).sum_to_size(logits_p.shape)
            grad_p = as_dtype(grad_p, logits_p.dtype)
        if needs[1]:
            grad_q = (g * q * (log_q_m - kl_qm.unsqueeze(-1))).sum_to_size(logits_q.shape)
            grad_q = as_dtype(grad_q, logits_q.dtype)
        return grad_p, grad_q


def binary_jensen_shannon(logit_p: Tensor, logit_q: Tensor) -> Tensor:
    """Jensen-Shannon divergence between two Bernoulli distributions given by single logits.

    ``sigmoid(x)`` equals the softmax of ``[0, x]``, so this is :func:`jensen_shannon` on those
    two-class logits.

    Args:
        logit_p: logits ``(...)`` or ``(..., 1)``.
        logit_q: logits of the same shape.

    Returns:
        The divergence ``(...)`` (a trailing singleton axis removed), in ``[0, ln 2]``.

    Example:
        >>> float(binary_jensen_shannon(torch.tensor([3.0]), torch.tensor([3.0])))
        0.0
    """
    if logit_p.dim() > 0 and logit_p.shape[-1] == 1:
        logit_p, logit_q = logit_p.squeeze(-1), logit_q.squeeze(-1)
    zeros = torch.zeros_like(logit_p)
    two_p = torch.stack((zeros, logit_p), dim=-1)
    two_q = torch.stack((torch.zeros_like(logit_q), logit_q), dim=-1)
    return jensen_shannon(two_p, two_q)


def multilabel_jensen_shannon(logits_p: Tensor, logits_q: Tensor) -> Tensor:
    """The Bernoulli Jensen-Shannon divergence of each label, averaged over the labels.

    For multi-label heads: each of the L outputs is the logit of one independent 0/1 label.

    Args:
        logits_p: logits ``(..., L)``.
        logits_q: logits of the same (or a broadcastable) shape.

    Returns:
        ``(...)``, in ``[0, ln 2]``.

    Example:
        >>> import torch
        >>> x = torch.tensor([[2.0, -1.0]])
        >>> float(multilabel_jensen_shannon(x, x))
        0.0
    """
    per_label = binary_jensen_shannon(logits_p.unsqueeze(-1), logits_q.unsqueeze(-1))
    return per_label.mean(dim=-1)


def squared_error(pred_p: Tensor, pred_q: Tensor) -> Tensor:
    """Squared difference of two regression outputs, summed over a trailing output axis.

    Used as the MIPD divergence for regression heads with one output, where a softmax would be
    constant. Computed in float32 (float64 for float64 inputs).

    Args:
        pred_p: predictions ``(...)`` or ``(..., K)``.
        pred_q: predictions of the same shape.

    Returns:
        ``(...)``: ``sum_k (p_k - q_k)^2`` (a 1-D input is treated as one output per element).

    Example:
        >>> squared_error(torch.tensor([[1.0], [2.0]]), torch.tensor([[0.0], [0.5]]))
        tensor([1.0000, 2.2500])
    """
    dtype = compute_dtype(pred_p.dtype)
    diff = pred_p.to(dtype) - pred_q.to(dtype)
    if diff.dim() <= 1:
        return diff.square()
    return diff.square().sum(dim=-1)


def divergence_fn(kind: Divergence | DivergenceFn) -> DivergenceFn:
    """The divergence function for ``"jsd"``, ``"binary_jsd"``, ``"multilabel_jsd"`` or
    ``"squared_error"``; a function is returned as it is (a divergence of your own)."""
    if callable(kind):
        return kind
    table: dict[str, DivergenceFn] = {
        "jsd": jensen_shannon,
        "binary_jsd": binary_jensen_shannon,
        "multilabel_jsd": multilabel_jensen_shannon,
        "squared_error": squared_error,
    }
    if kind not in table:
        raise ValueError(f"expected divergence in {sorted(table)}, got {kind!r}")
    return table[kind]


def blocks_divergence(
    out: Tensor,
    layout: tuple[int, int, int, int],
    divergence: Divergence | DivergenceFn,
    detach_reference: bool,
    row_weights: Tensor | None,
) -> Tensor:
    """``(S,)``: each subset's mean divergence of its perturbed blocks from its reference, from
    the head's output on the stacked rows (``layout``: ``(n_ref, S, P, B)``)."""
    n_ref, n_sub, draws, batch = layout
    if divergence == "jsd" and out.dim() == 2:  # the common case, in one autograd function
        per_subset: Tensor = _BlockJensenShannon.apply(out, layout, detach_reference, row_weights)
        return per_subset
    ref = out[: n_ref * batch].unflatten(0, (n_ref, 1, batch))  # (n_ref, 1, B, ...)
    if detach_reference:
        ref = ref.detach()
    pert = out[n_ref * batch :].unflatten(0, (n_sub, draws, batch))  # (S, P, B, ...)
    div = divergence_fn(divergence)(ref, pert)  # (S, P, B)
    if div.shape != (n_sub, draws, batch):
        raise ValueError(
            f"expected the divergence to give one value per perturbed row, shape "
            f"{(n_sub, draws, batch)} from references {shape_of(ref)} and perturbed predictions "
            f"{shape_of(pert)}, got {shape_of(div)}"
        )
    return _mean_over_rows(div, row_weights)


def _mean_over_rows(div: Tensor, row_weights: Tensor | None) -> Tensor:
    """``(S, P, B)`` divergences -> ``(S,)``: the mean, or the weighted mean over the rows."""
    if row_weights is None:
        return rearrange(div, "s p b -> s (p b)").mean(dim=1)
    return (div * _row_weights_of(row_weights, div)).sum(dim=(1, 2))


class _BlockJensenShannon(torch.autograd.Function):
    """The mean Jensen-Shannon divergence of each subset's perturbed blocks against its reference,
    from the head's output on all stacked rows, with the gradient written out.

    ``out`` is ``(N, C)``: ``n_ref`` reference blocks of B rows, then ``draws`` perturbed blocks
    per subset. With ``p`` the reference and ``q`` the perturbed softmax and ``m = ½ (p + q)``:
    ``JSD = ½ KL(p‖m) + ½ KL(q‖m)`` (:func:`_jsd_parts`, accurate also for nearly equal
    predictions), clamped to ``[0, ln 2]`` (the clamp only removes rounding: the gradient passes
    through it), then averaged over draws and rows (or weighted by ``row_weights``, see
    :func:`mipd`). Backward, through the softmax: ``∂JSD/∂logits_q = ½ q ⊙ (log(q/m) -
    KL(q‖m))``, likewise for p (summed over the draws that share a reference; nothing when the
    reference is detached). A second-order backward (``create_graph=True``) differentiates
    :func:`_block_jsd_plain` instead.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        out: Tensor,
        layout: tuple[int, int, int, int],
        detach_reference: bool,
        row_weights: Tensor | None,
    ) -> Tensor:
        n_ref, n_sub, draws, batch = layout
        classes = int(out.shape[-1])
        with torch.autocast(device_type=out.device.type, enabled=False):
            logits = in_compute_dtype(out)
            split = n_ref * batch
            x = logits[:split].view(n_ref, 1, batch, classes)
            y = logits[split:].view(n_sub, draws, batch, classes)
            p, q, log_p_m, log_q_m, kl_pm, kl_qm = _jsd_parts(x, y)  # (S, P, B, ...)
            twice = (kl_pm + kl_qm).clamp_(0.0, 2.0 * LN2)  # twice the JSD
            if row_weights is None:
                weights = None
                per_subset = twice.sum(dim=(1, 2)).div_(2 * draws * batch)
            else:
                weights = _row_weights_of(row_weights, twice).mul_(0.5)
                per_subset = (twice * weights).sum(dim=(1, 2))
        ctx.save_for_backward(out, row_weights, p, q, log_p_m, log_q_m, kl_pm, kl_qm, weights)  # type: ignore[arg-type]
        ctx.layout, ctx.detach_reference = layout, detach_reference  # type: ignore[attr-defined]
        return per_subset

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor | None, None, None, None]:
        out, row_weights, p, q, log_p_m, log_q_m, kl_pm, kl_qm, weights = ctx.saved_tensors  # type: ignore[attr-defined]
        layout, detach_reference = ctx.layout, ctx.detach_reference  # type: ignore[attr-defined]
        if torch.is_grad_enabled():  # create_graph=True: a differentiable gradient
            plain = partial(
                _block_jsd_plain, layout=layout, detach_reference=detach_reference,
                row_weights=row_weights,
            )  # fmt: skip
            (grad_out,) = plain_gradients(plain, (out,), grad, (True,))
            return grad_out, None, None, None
        n_ref, n_sub, draws, batch = layout
        classes = int(p.shape[-1])
        g = grad.view(n_sub, 1, 1)
        g = (g * weights if weights is not None else g.div(2 * draws * batch)).unsqueeze(-1)
        grad_q = g * q * (log_q_m - kl_qm.unsqueeze(-1))
        if detach_reference:
            grad_p = grad_q.new_zeros((n_ref * batch, classes))
        else:
            grad_p = (g * p * (log_p_m - kl_pm.unsqueeze(-1))).sum(dim=1).view(-1, classes)
        grad_out = torch.cat([grad_p, grad_q.view(-1, classes)])
        return as_dtype(grad_out, out.dtype), None, None, None


def _block_jsd_plain(
    out: Tensor,
    layout: tuple[int, int, int, int],
    detach_reference: bool,
    row_weights: Tensor | None,
) -> Tensor:
    """:class:`_BlockJensenShannon`'s value in plain differentiable operations."""
    n_ref, n_sub, draws, batch = layout
    split = n_ref * batch
    x = out[:split].unflatten(0, (n_ref, 1, batch))
    if detach_reference:
        x = x.detach()
    div = _jsd_plain(x, out[split:].unflatten(0, (n_sub, draws, batch)))  # (S, P, B)
    return _mean_over_rows(div, row_weights)


def _row_weights_of(row_weights: Tensor, div: Tensor) -> Tensor:
    """``(S, P, B)`` row weights normalised per subset (all-zero subsets stay zero)."""
    if row_weights.shape != div.shape:
        raise ValueError(
            f"expected row_weights of shape {shape_of(div)} (subsets, P, B), got "
            f"{shape_of(row_weights)}"
        )
    w = row_weights.to(div.dtype)
    return w / w.sum(dim=(1, 2), keepdim=True).clamp_min(torch.finfo(div.dtype).tiny)
