"""The mathematics of MCR as plain functions.

Each function computes one piece of the paper (Kontras et al., "Balancing Multimodal Training
Through Game-Theoretic Regularization"); :class:`mcr_reg.MCRRegularizer` only holds settings and
calls these. Equation numbers refer to that paper.

Conventions:

* Latents are batch-first. Terms that need one vector per sample *pool* a latent by the mean over
  every axis that is neither the batch axis nor the feature axis (:func:`pool_latent`).
* Divergences are computed in at least float32 from logits in log space; float64 stays float64.
* Sampling functions take an explicit ``generator`` and ``device`` and leave the global RNG alone.
"""

from __future__ import annotations

import math
import random
import sys
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from functools import partial
from itertools import combinations
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

from mcr_reg._checks import (
    check_contrastive_inputs,
    check_latents,
    check_permutations,
    check_perturbed_latents,
    compiling,
    shape_of,
    split_latents,
)
from mcr_reg._graph import graph_leaves
from mcr_reg._messages import double_backward_message
from mcr_reg._rows import game_rows

__all__ = [
    "MAX_MODALITIES_FOR_ALL",
    "STRATEGIES",
    "Divergence",
    "HeadGradient",
    "binary_jensen_shannon",
    "ceb_reconstruction",
    "contrastive_ntxent",
    "divergence_fn",
    "enumerate_subsets",
    "feature_axis_of",
    "head_factors",
    "jensen_shannon",
    "mipd",
    "permutation_row_mask",
    "pool_latent",
    "sample_permutations",
    "sample_subsets",
    "scale_grad",
    "squared_error",
    "strategy_factor",
    "supervised_contrastive",
]

LN2 = math.log(2.0)

Divergence = Literal["jsd", "binary_jsd", "squared_error"]
HeadGradient = Literal["mean", "sum"]
SubsetSpec = Literal["all", "singletons", "sampled"] | Sequence[Sequence[int]]

#: ``"all"`` enumerates 2^M - 2 subsets; beyond this many modalities that is refused.
MAX_MODALITIES_FOR_ALL = 6

_STRATEGY_K = {"greedy": -1.0, "independent": 0.0, "collaborative": 1.0}

#: The named strategies of the game (paper section 3.2), the default first.
STRATEGIES: tuple[str, ...] = tuple(_STRATEGY_K)


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; everything else is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


# --------------------------------------------------------------------------- divergences


def _as_dtype(x: Tensor, dtype: torch.dtype) -> Tensor:
    """``x.to(dtype)``, recording no operation when it already has that dtype."""
    return x if x.dtype == dtype else x.to(dtype)


def _in_compute_dtype(x: Tensor) -> Tensor:
    """``x`` in float32, or float64 if it is float64 (:func:`_compute_dtype`)."""
    return _as_dtype(x, _compute_dtype(x.dtype))


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
    log_p = torch.log_softmax(_in_compute_dtype(x), dim=-1)
    log_q = torch.log_softmax(_in_compute_dtype(y), dim=-1)
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
            x, y = _in_compute_dtype(logits_p), _in_compute_dtype(logits_q)
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
            grad_p, grad_q = _plain_gradients(_jsd_plain, (logits_p, logits_q), grad, needs[:2])
            return grad_p, grad_q
        g = (0.5 * grad).unsqueeze(-1)
        grad_p = grad_q = None
        if needs[0]:
            grad_p = (g * p * (log_p_m - kl_pm.unsqueeze(-1))).sum_to_size(logits_p.shape)
            grad_p = _as_dtype(grad_p, logits_p.dtype)
        if needs[1]:
            grad_q = (g * q * (log_q_m - kl_qm.unsqueeze(-1))).sum_to_size(logits_q.shape)
            grad_q = _as_dtype(grad_q, logits_q.dtype)
        return grad_p, grad_q


def _plain_gradients(
    plain: Callable[..., Tensor],
    inputs: Sequence[Tensor],
    grad: Tensor,
    needs: Sequence[bool],
) -> tuple[Tensor | None, ...]:
    """The gradients of ``plain(*inputs)`` for ``grad``, as a differentiable graph: what the
    autograd functions of this module return under ``create_graph=True`` (their written-out
    backward passes are first-order only), so that second-order gradients (gradient
    penalties, Hessian-vector products, ``gradgradcheck``) are exact."""
    wanted = [x for x, need in zip(inputs, needs) if need]
    with torch.enable_grad():
        value = plain(*inputs)
        found = iter(torch.autograd.grad(value, wanted, grad, create_graph=True, allow_unused=True))
    out = []
    for x, need in zip(inputs, needs):
        g = next(found) if need else None
        out.append(torch.zeros_like(x) if need and g is None else g)
    return tuple(out)


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
    dtype = _compute_dtype(pred_p.dtype)
    diff = pred_p.to(dtype) - pred_q.to(dtype)
    if diff.dim() <= 1:
        return diff.square()
    return diff.square().sum(dim=-1)


def divergence_fn(kind: Divergence) -> Callable[[Tensor, Tensor], Tensor]:
    """The divergence function for ``"jsd"``, ``"binary_jsd"`` or ``"squared_error"``."""
    table: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
        "jsd": jensen_shannon,
        "binary_jsd": binary_jensen_shannon,
        "squared_error": squared_error,
    }
    if kind not in table:
        raise ValueError(f"expected divergence in {sorted(table)}, got {kind!r}")
    return table[kind]


# --------------------------------------------------------------------------- latents


def feature_axis_of(z: Tensor, feature_axis: int | Literal["auto"] = "auto") -> int:
    """The feature axis of a batch-first latent, as a non-negative index.

    ``"auto"``: the last axis for ``(B, D)`` and ``(B, T, D)``; axis 1 (channels) for latents of
    four or more axes such as ``(B, C, H, W)`` or ``(B, C, T, H, W)``.
    """
    if z.dim() < 2:
        raise ValueError(f"expected a latent with batch and feature axes, got shape {shape_of(z)}")
    if feature_axis == "auto":
        return z.dim() - 1 if z.dim() <= 3 else 1
    axis = feature_axis % z.dim()
    if axis == 0:
        raise ValueError("the feature axis cannot be the batch axis 0")
    return axis


def pool_latent(z: Tensor, feature_axis: int | Literal["auto"] = "auto") -> Tensor:
    """Mean over every axis that is neither the batch axis nor the feature axis.

    Args:
        z: a batch-first latent, e.g. ``(B, D)``, ``(B, T, D)`` or ``(B, C, H, W)``.
        feature_axis: see :func:`feature_axis_of`.

    Returns:
        ``(B, D)``.

    Example:
        >>> pool_latent(torch.ones(4, 7, 16)).shape
        torch.Size([4, 16])
        >>> pool_latent(torch.ones(4, 8, 5, 5)).shape
        torch.Size([4, 8])
    """
    axis = feature_axis_of(z, feature_axis)
    if z.dim() == 2:
        return z
    z = z.movedim(axis, -1)
    return z.flatten(1, -2).mean(dim=1)


# --------------------------------------------------------------------------- contrastive


def supervised_contrastive(
    features: Tensor,
    labels: Tensor,
    *,
    temperature: float = 0.5,
    normalize: bool = True,
) -> Tensor:
    """Supervised contrastive loss (Khosla et al., 2020): L_Con with ``contrastive="supcon"``.

    Unlike paper eq. 11 (:func:`contrastive_ntxent`, the default), its denominator runs over
    *all* other samples, positives included.

    For every anchor ``i`` with positives ``P(i) = {p != i : y_p = y_i}``:
    ``l_i = -1/|P(i)| Σ_{p∈P(i)} log( exp(s_ip/τ) / Σ_{a≠i} exp(s_ia/τ) )`` with ``s`` the dot
    product of the (L2-normalised) features. The loss is the mean of ``l_i`` over anchors that
    have at least one positive; anchors without one are left out, and a batch where no anchor
    has a positive gives 0 (still connected to the graph). Computed in float32 (float64 for
    float64 inputs) with autocast off.

    Args:
        features: ``(N, D)``; in MCR the pooled latents of all modalities stacked.
        labels: ``(N,)`` integer class labels.
        temperature: τ > 0.
        normalize: L2-normalise the features first.

    Returns:
        A scalar.

    Raises:
        ValueError: on shapes that disagree or a non-positive temperature.

    Example:
        >>> f = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
        >>> y = torch.tensor([0, 0, 1, 1])
        >>> bool(supervised_contrastive(f, y) < supervised_contrastive(f, torch.tensor([0, 1, 0, 1])))
        True
    """
    check_contrastive_inputs(features, labels, temperature)
    with torch.autocast(device_type=features.device.type, enabled=False):
        logits = _similarities(features, temperature, normalize)  # (N, N)
        n = logits.shape[0]
        self_mask = torch.eye(n, dtype=torch.bool, device=logits.device)
        denominator = torch.logsumexp(logits.masked_fill(self_mask, float("-inf")), dim=1)
        log_prob = logits - denominator[:, None]  # (N, N)
        positives = labels[:, None].eq(labels[None, :]) & ~self_mask
        n_pos = positives.sum(dim=1)
        mean_log_prob = log_prob.masked_fill(~positives, 0.0).sum(dim=1) / n_pos.clamp_min(1)
        has_pos = (n_pos > 0).to(logits.dtype)
        return -(mean_log_prob * has_pos).sum() / has_pos.sum().clamp_min(1.0)


def contrastive_ntxent(
    features: Tensor,
    labels: Tensor,
    *,
    temperature: float = 0.5,
    normalize: bool = True,
) -> Tensor:
    """L_Con of paper eq. 11: each positive against the negatives only (NT-Xent with labels).

    For every ordered pair ``(a, p)``, ``a != p``, with ``y_a = y_p``:
    ``l_ap = -log( e^{s_ap/τ} / (e^{s_ap/τ} + Σ_{n: y_n ≠ y_a} e^{s_an/τ}) )``, with ``s`` the dot
    product of the (L2-normalised) features. The loss is the mean of ``l_ap`` over all such
    pairs. Other positives of ``a`` never appear in the denominator (that is the difference from
    SupCon, :func:`supervised_contrastive`); an anchor without negatives gives ``l_ap = 0``; a
    batch without any positive pair gives 0 (still connected to the graph). Computed in float32
    (float64 for float64 inputs) with autocast off. See docs/semantics.md, "L_Con".

    Args:
        features: ``(N, D)``; in MCR the pooled latents of all modalities stacked,
            ``[z_1; ...; z_M]``, so every sample is a positive of its own other modalities.
        labels: ``(N,)`` integer class labels.
        temperature: τ > 0 (0.5 in the released code).
        normalize: L2-normalise the features first.

    Returns:
        A scalar.

    Raises:
        ValueError: on shapes that disagree or a non-positive temperature.

    Example:
        >>> f = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]])
        >>> y = torch.tensor([0, 0, 1, 1])
        >>> bool(contrastive_ntxent(f, y) < contrastive_ntxent(f, torch.tensor([0, 1, 0, 1])))
        True
    """
    check_contrastive_inputs(features, labels, temperature)
    loss: Tensor = _NTXent.apply(features, labels, float(temperature), bool(normalize))
    return loss


class _NTXent(torch.autograd.Function):
    """:func:`contrastive_ntxent` with its gradient written out (a handful of operations
    instead of the dozens autograd would record).

    With ``s = f̂ f̂ᵀ / τ``, ``n_a = log Σ_{negatives of a} e^{s_an}`` and the loss
    ``L = (1/|pairs|) Σ_{(a,p)} softplus(n_a - s_ap)``:
    ``∂L/∂s_ap = -σ(n_a - s_ap) / |pairs|`` for a positive pair,
    ``∂L/∂s_an = e^{s_an - n_a} Σ_p σ(n_a - s_ap) / |pairs|`` for a negative, then
    ``∂L/∂f̂ = (G + Gᵀ) f̂ / τ`` and, through the L2 normalisation ``f̂ = f / ‖f‖``,
    ``∂L/∂f = (∂L/∂f̂ - f̂ (f̂ · ∂L/∂f̂)) / ‖f‖``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        features: Tensor,
        labels: Tensor,
        temperature: float,
        normalize: bool,
    ) -> Tensor:
        with torch.autocast(device_type=features.device.type, enabled=False):
            f = _in_compute_dtype(features)
            # F.normalize's rule: f / max(‖f‖, 1e-12)
            lengths = f.norm(dim=-1, keepdim=True) if normalize else None
            norms = lengths.clamp_min(1e-12) if lengths is not None else None
            unit = f / norms if norms is not None else f
            sim = torch.mm(unit, unit.t()).div_(temperature)  # (N, D) @ (D, N)
            same = labels.unsqueeze(1).eq(labels.unsqueeze(0))  # (N, N)
            weight = same.to(sim.dtype).fill_diagonal_(0.0)  # the positive pairs
            # log Σ_negatives e^{s_an}; a finite floor (not -inf) keeps rows without negatives
            # finite: softplus(floor - s) is then 0, and so is l_ap
            masked = sim.masked_fill(same, torch.finfo(sim.dtype).min)
            top = masked.amax(dim=1, keepdim=True)
            negatives = (masked - top).exp_().sum(dim=1, keepdim=True).log_().add_(top)
            gap = negatives - sim  # l_ap = softplus(n_a - s_ap) for a positive pair
            count = weight.sum().clamp_min(1.0)
            loss = (F.softplus(gap) * weight).sum() / count
        ctx.save_for_backward(features, labels, unit, lengths, norms, gap, weight, same, count)  # type: ignore[arg-type]
        ctx.temperature, ctx.normalize = temperature, normalize  # type: ignore[attr-defined]
        return loss

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor | None, None, None, None]:
        features, labels, unit, lengths, norms, gap, weight, same, count = ctx.saved_tensors  # type: ignore[attr-defined]
        if not ctx.needs_input_grad[0]:  # type: ignore[attr-defined]
            return None, None, None, None
        temperature, normalize = ctx.temperature, ctx.normalize  # type: ignore[attr-defined]
        if torch.is_grad_enabled():  # create_graph=True: a differentiable gradient
            plain = partial(
                _ntxent_plain, labels=labels, temperature=temperature, normalize=normalize
            )
            (d_features,) = _plain_gradients(plain, (features,), grad, (True,))
            return d_features, None, None, None
        pull = torch.sigmoid(gap).mul_(weight).mul_(grad / count)  # (N, N), positives only
        # d n_a / d s_an: softmax over a's negatives (exactly 0 on same-label entries)
        share = gap.neg().exp_().masked_fill_(same, 0.0)
        g = share.mul_(pull.sum(dim=1, keepdim=True)).sub_(pull)  # dL/ds
        d_unit = torch.mm(g + g.t(), unit).div_(temperature)
        if norms is None:
            return _as_dtype(d_unit, features.dtype), None, None, None
        d_f = (d_unit - unit * (unit * d_unit).sum(dim=-1, keepdim=True)) / norms
        # a norm below the floor is a constant: no projection there
        d_f = torch.where(lengths.eq(norms), d_f, d_unit / norms)
        return _as_dtype(d_f, features.dtype), None, None, None


def _ntxent_plain(features: Tensor, labels: Tensor, temperature: float, normalize: bool) -> Tensor:
    """:class:`_NTXent`'s value in plain differentiable operations."""
    sim = _similarities(features, temperature, normalize)  # (N, N)
    same = labels.unsqueeze(1).eq(labels.unsqueeze(0))
    weight = same.to(sim.dtype).fill_diagonal_(0.0)
    negatives = torch.logsumexp(sim.masked_fill(same, torch.finfo(sim.dtype).min), 1, True)
    return (F.softplus(negatives - sim) * weight).sum() / weight.sum().clamp_min(1.0)


def _similarities(features: Tensor, temperature: float, normalize: bool) -> Tensor:
    """``(N, N)`` similarities ``s_ij / τ`` in float32 (float64 for float64 features)."""
    f = features.to(_compute_dtype(features.dtype))
    if normalize:
        f = F.normalize(f, dim=-1)
    return f @ f.T / temperature  # (N, D) @ (D, N)


# --------------------------------------------------------------------------- CEB


def ceb_reconstruction(reconstruction: Tensor, pooled_latents: Sequence[Tensor]) -> Tensor:
    """L_CEB of paper eq. 13: mean squared error between ``h(prediction)`` and ``[z_1..z_M]``.

    Args:
        reconstruction: the reconstruction head's output ``(B, Σ d_m)``.
        pooled_latents: the pooled latents ``(B, d_m)`` per modality (not detached: the
            encoders are pulled towards what the prediction can explain).

    Returns:
        A scalar.
    """
    target = torch.cat(list(pooled_latents), dim=-1)
    if reconstruction.shape != target.shape:
        raise ValueError(
            f"expected the reconstruction shape {shape_of(target)}, got {shape_of(reconstruction)}"
        )
    dtype = _compute_dtype(target.dtype)
    return F.mse_loss(reconstruction.to(dtype), target.to(dtype))


# --------------------------------------------------------------------------- the game


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; multiplies the incoming gradient by a constant backward."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, factor: float) -> Tensor:
        ctx.factor = factor  # type: ignore[attr-defined]
        return x.view_as(x)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor, None]:
        return grad * ctx.factor, None  # type: ignore[attr-defined]


def scale_grad(x: Tensor, factor: float) -> Tensor:
    """Identity in the forward pass; the gradient is multiplied by ``factor`` in the backward.

    ``factor == 1`` returns ``x`` itself and ``factor == 0`` returns ``x.detach()``, so a zero
    factor gives exactly no gradient (also when the incoming gradient is not finite).

    Args:
        x: any tensor.
        factor: a Python number (the game's k, see :func:`strategy_factor`).

    Returns:
        A tensor equal to ``x``.

    Example:
        >>> x = torch.ones(3, requires_grad=True)
        >>> scale_grad(x, -1.0).sum().backward()
        >>> x.grad
        tensor([-1., -1., -1.])
    """
    factor = float(factor)
    if factor == 1.0:
        return x
    if factor == 0.0:
        return x.detach()
    return _ScaleGrad.apply(x, factor)  # type: ignore[no-any-return]


def strategy_factor(strategy: str | float) -> float:
    """The game's gradient factor k (paper section 3.2, Figure 3).

    ``"collaborative"`` → +1, ``"independent"`` → 0, ``"greedy"`` → -1; a number is used as is.

    Example:
        >>> strategy_factor("greedy")
        -1.0
    """
    if isinstance(strategy, bool):
        raise TypeError(f"expected a strategy name or a float k, got the bool {strategy}")
    if isinstance(strategy, str):
        if strategy not in _STRATEGY_K:
            raise ValueError(
                f"expected strategy in {sorted(_STRATEGY_K)} or a float k, got {strategy!r}"
            )
        return _STRATEGY_K[strategy]
    if isinstance(strategy, int | float):
        k = float(strategy)
        if not math.isfinite(k):
            raise ValueError(f"expected a finite strategy factor k, got {strategy}")
        return k
    raise TypeError(f"expected a strategy name or a float k, got {type(strategy).__name__}")


def head_factors(
    subsets: Sequence[tuple[int, ...]], num_modalities: int, k: float
) -> tuple[float, ...]:
    """The fusion head's share ``c(S)`` of each MIPD term (paper section 3.2, eq. 7).

    The head belongs to no single modality: it is shared by the M players, and in the term of
    S it receives the mean of their factors, 1 for an owner (``i ∈ S``) and ``k`` otherwise:
    ``c(S) = (|S| + k (M - |S|)) / M``. Greedy with two modalities gives 0 (the paper's
    ``(L1 - L2) + (L2 - L1)``), collaborative gives 1 (joint minimisation over all parameters),
    independent gives ``|S| / M``. See docs/semantics.md, "The game".

    Args:
        subsets: index tuples (see :func:`enumerate_subsets`).
        num_modalities: M.
        k: the strategy factor (:func:`strategy_factor`).

    Returns:
        One factor per subset.

    Example:
        >>> head_factors(((0,), (1,)), 2, -1.0)
        (0.0, 0.0)
        >>> head_factors(((0,), (1,), (0, 1)), 3, 0.0)
        (0.3333333333333333, 0.3333333333333333, 0.6666666666666666)
    """
    m = int(num_modalities)
    return tuple((len(s) + k * (m - len(s))) / m for s in subsets)


class _ShareHeadGradient(torch.autograd.Function):
    """Forward: ``out`` unchanged. Backward: ``out`` gets the gradient, ``side`` (same shape)
    gets it scaled per row block (``runs`` of ``(rows, factor)`` covering every row)."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        out: Tensor,
        side: Tensor,
        runs: tuple[tuple[int, float], ...],
    ) -> Tensor:
        ctx.runs = runs  # type: ignore[attr-defined]
        return out.view_as(out)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor, Tensor, None]:
        runs = ctx.runs  # type: ignore[attr-defined]
        factors = torch.cat(
            [torch.full((n,), f, dtype=grad.dtype, device=grad.device) for n, f in runs]
        )  # (N_side,): fill kernels only, no host-to-device copy
        return grad, grad * factors.view(-1, *([1] * (grad.dim() - 1))), None


def _runs(sizes: Sequence[tuple[int, float]]) -> tuple[tuple[int, float], ...]:
    """Merge consecutive ``(rows, factor)`` blocks with equal factors."""
    out: list[tuple[int, float]] = []
    for n, f in sizes:
        if out and out[-1][1] == f:
            out[-1] = (out[-1][0] + n, f)
        else:
            out.append((n, f))
    return tuple(out)


# --------------------------------------------------------------------------- subsets


def enumerate_subsets(
    num_modalities: int, subsets: SubsetSpec = "all"
) -> tuple[tuple[int, ...], ...]:
    """The perturbed subsets S of modalities (paper appendix A.5, eq. 14).

    Args:
        num_modalities: M >= 2.
        subsets: ``"all"`` — every non-empty proper subset (2^M - 2 of them, at most
            :data:`MAX_MODALITIES_FOR_ALL` modalities); ``"singletons"`` — the M single
            modalities; or an explicit list of index tuples.

    Returns:
        Sorted index tuples, singletons first, then by size and lexicographically.

    Raises:
        ValueError: unknown name, M < 2, too many modalities for ``"all"``, an empty, full,
            repeated or out-of-range subset.

    Example:
        >>> enumerate_subsets(3)
        ((0,), (1,), (2,), (0, 1), (0, 2), (1, 2))
    """
    m = int(num_modalities)
    if m < 2:
        raise ValueError(f"expected at least two modalities, got {m}")
    if isinstance(subsets, str):
        if subsets == "singletons":
            return tuple((i,) for i in range(m))
        if subsets != "all":
            raise ValueError(
                f"expected subsets 'all', 'singletons' or a list of index tuples, got {subsets!r}"
            )
        if m > MAX_MODALITIES_FOR_ALL:
            raise ValueError(
                f"subsets='all' gives 2^{m} - 2 = {2**m - 2} terms for {m} modalities; "
                f"expected at most {MAX_MODALITIES_FOR_ALL} modalities. Use "
                "subsets='sampled' (a bounded, unbiased estimate of 'all'), 'singletons' "
                "or an explicit list"
            )
        return tuple(c for size in range(1, m) for c in combinations(range(m), size))
    out: list[tuple[int, ...]] = []
    for raw in subsets:
        s = tuple(sorted(int(i) for i in raw))
        if not s:
            raise ValueError("expected non-empty subsets, got an empty one")
        if len(set(s)) != len(s) or s[0] < 0 or s[-1] >= m:
            raise ValueError(
                f"expected distinct modality indices in range({m}) in every subset, got {tuple(raw)}"
            )
        if len(s) == m:
            raise ValueError(
                f"expected proper subsets (permuting all {m} modalities leaves nothing to "
                f"compare against), got {tuple(raw)}"
            )
        if s in out:
            raise ValueError(f"expected each subset once, got {s} twice")
        out.append(s)
    if not out:
        raise ValueError("expected at least one subset, got an empty list")
    return tuple(sorted(out, key=lambda s: (len(s), s)))


def sample_subsets(
    num_modalities: int, num_sampled: int, rng: random.Random
) -> tuple[tuple[tuple[int, ...], ...], float]:
    """Every singleton and ``num_sampled`` of the larger proper subsets, drawn uniformly without
    replacement, for a bounded number of MIPD terms when M is large.

    With ``N = 2^M - 2 - M`` larger subsets, each drawn term stands for ``N / num_sampled`` of
    them: ``Σ_singletons L_S + (N / num_sampled) Σ_drawn L_S`` is an unbiased estimate of
    ``Σ_all L_S`` (and so are its gradients, which are linear in the terms). When
    ``num_sampled >= N`` every subset is taken, with weight 1.

    Args:
        num_modalities: M >= 2.
        num_sampled: how many larger subsets to draw (>= 1).
        rng: the source of the draw (Python's ``random.Random``; nothing is read from a device).

    Returns:
        ``(subsets, weight)``: singletons first, then the drawn subsets sorted by size; the
        weight of each drawn subset's term.

    Example:
        >>> subsets, weight = sample_subsets(4, 3, random.Random(0))
        >>> subsets[:4], len(subsets), weight
        (((0,), (1,), (2,), (3,)), 7, 3.3333333333333335)
    """
    m = int(num_modalities)
    if m < 2:
        raise ValueError(f"expected at least two modalities, got {m}")
    if isinstance(num_sampled, bool) or not isinstance(num_sampled, int) or num_sampled < 1:
        raise ValueError(f"expected num_sampled to be an int >= 1, got {num_sampled!r}")
    singletons = tuple((i,) for i in range(m))
    larger = 2**m - 2 - m
    if num_sampled >= larger:
        return singletons + tuple(
            c for size in range(2, m) for c in combinations(range(m), size)
        ), 1.0
    masks: set[int] = set()
    while len(masks) < num_sampled:  # uniform over the larger subsets, by rejection
        mask = rng.randrange(1, 2**m - 1)
        if mask.bit_count() >= 2:
            masks.add(mask)
    drawn = [tuple(i for i in range(m) if mask >> i & 1) for mask in masks]
    return singletons + tuple(sorted(drawn, key=lambda s: (len(s), s))), larger / num_sampled


# --------------------------------------------------------------------------- permutations


def sample_permutations(
    num_draws: int,
    num_modalities: int,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Independent uniform permutations of the batch, one per draw and modality.

    Drawn by sorting uniform noise in one batched call on ``device`` (no host round trip).
    With a ``generator`` the global RNG is left untouched; the noise is drawn on the
    generator's device and moved to ``device``.

    Args:
        num_draws: P.
        num_modalities: M.
        batch_size: B >= 2.
        generator: optional source of randomness.
        device: where the result lives (default: the generator's device, else CPU).

    Returns:
        A LongTensor ``(P, M, B)``; row ``[p, m]`` is a permutation of ``range(B)``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> perms = sample_permutations(2, 3, 5, generator=g)
        >>> perms.shape, bool((perms.sort(-1).values == torch.arange(5)).all())
        (torch.Size([2, 3, 5]), True)
    """
    if batch_size < 2:
        raise ValueError(f"expected a batch of at least 2 to permute, got {batch_size}")
    if num_draws < 1 or num_modalities < 1:
        raise ValueError(
            f"expected positive draws and modalities, got {num_draws}, {num_modalities}"
        )
    target = torch.device(device) if device is not None else None
    source = generator.device if generator is not None else (target or torch.device("cpu"))
    noise = torch.rand(num_draws, num_modalities, batch_size, generator=generator, device=source)
    perms = noise.argsort(dim=-1)
    return perms if target is None else perms.to(target, non_blocking=True)


def permutation_row_mask(
    permutations: Tensor,
    subsets: Sequence[tuple[int, ...]],
    rows: Literal["moved", "other_label"],
    labels: Tensor | None = None,
) -> Tensor:
    """Which perturbed rows count in L_S, for the row rules of the released code.

    ``"moved"``: row b of draw p counts for subset S when some modality of S moves it,
    ``π_{p,i}(b) != b`` (a fixed point of every permutation of S leaves the row unperturbed).
    ``"other_label"``: it counts when some modality of S brings in a sample of another class,
    ``y[π_{p,i}(b)] != y[b]``. Computed on the device, without reading values on the host.

    Args:
        permutations: ``(P, M, B)``.
        subsets: index tuples (see :func:`enumerate_subsets`).
        rows: the rule.
        labels: ``(B,)`` integer classes, for ``"other_label"``.

    Returns:
        ``(len(subsets), P, B)`` of 0.0 / 1.0, for :func:`mipd`'s ``row_weights``.

    Example:
        >>> perms = torch.tensor([[[1, 0, 2], [0, 1, 2]]])  # P=1, M=2, B=3
        >>> permutation_row_mask(perms, ((0,), (1,)), "moved")[:, 0]
        tensor([[1., 1., 0.],
                [0., 0., 0.]])
    """
    batch = permutations.shape[-1]
    if rows == "moved":
        identity = torch.arange(batch, device=permutations.device)
        changed = permutations != identity  # (P, M, B)
    elif rows == "other_label":
        if labels is None or labels.shape != (batch,):
            raise ValueError(f"expected labels of shape ({batch},) for rows='other_label'")
        changed = labels[permutations] != labels  # (P, M, B)
    else:
        raise ValueError(f"expected rows 'moved' or 'other_label', got {rows!r}")
    return torch.stack([changed[:, list(s)].any(dim=1) for s in subsets]).float()


# --------------------------------------------------------------------------- MIPD


def mipd(
    fusion_head: Callable[..., Tensor],
    latents: Sequence[Tensor],
    subsets: Sequence[tuple[int, ...]],
    *,
    permutations: Tensor | None = None,
    perturbed: Sequence[Tensor | None] | None = None,
    k: float = -1.0,
    divergence: Divergence = "jsd",
    detach_reference: bool = False,
    batched: bool = True,
    head_share: Sequence[float] | None = None,
    row_weights: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Mean prediction divergence under perturbation of each subset, with the game's gradients.

    For every subset S and draw p the latents of S are replaced by their perturbed version
    (``z_i[π_{p,i}]`` or ``perturbed[i][p]``) and the fusion head's prediction is compared with the
    unperturbed one (paper eq. 8-10; ``L_S = -mean_{p,b} D``), all blocks stacked on the batch
    axis in one head call (``batched``) or one call per block of B rows.

    Gradients follow the game (paper section 3.2; docs/semantics.md, "The game"): in the term of
    S, every use of ``z_i`` is scaled by 1 if ``i ∈ S`` (owner) and by ``k`` otherwise (one gather
    per modality whose backward scales each row, ``mcr_reg._rows``). The head's parameters get
    ``Σ_S c(S) ∇θ_c L_S`` with ``c = head_share`` (:func:`head_factors`; None: the plain sum):
    a module head with one factor runs once with scaled parameters, otherwise a second pass on
    the detached rows carries ``c(S) - 1`` times the gradient to the parameters.

    Args:
        fusion_head: ``fusion_head(z_1, ..., z_M) -> predictions (N, ...)``.
        latents: M batch-first tensors with batch size B.
        subsets: index tuples (see :func:`enumerate_subsets`).
        permutations: ``(P, M, B)`` LongTensor, used for modalities without ``perturbed``.
        perturbed: optional per-modality ``(P, B, ...)`` perturbed latents (e.g. noise, zeros or
            re-encoded perturbed inputs); ``None`` entries use ``permutations``.
        k: the strategy factor for non-owners (:func:`strategy_factor`).
        divergence: ``"jsd"``, ``"binary_jsd"`` or ``"squared_error"``.
        detach_reference: no gradient through the unperturbed prediction (one reference pass).
        batched: one fusion-head call for everything (False: per block of B rows, for heads
            with batch-dependent layers such as BatchNorm in training mode).
        head_share: ``c(S)`` per subset (:func:`head_factors`); None: 1 for every subset.
        row_weights: optional ``(len(subsets), P, B)`` weights of the perturbed rows (e.g. masks
            from :func:`permutation_row_mask`): each subset's ``Σ w D / Σ w`` (0 if all are 0).

    Returns:
        ``(per_subset, reference)``: the mean divergence of each subset ``(len(subsets),)``
        (``L_S`` is its negative) and the detached unperturbed prediction ``(B, ...)``.

    Example:
        >>> head = torch.nn.Linear(8, 3)
        >>> fuse = lambda a, b: head(torch.cat([a, b], dim=-1))
        >>> z = [torch.randn(6, 4), torch.randn(6, 4)]
        >>> perms = sample_permutations(4, 2, 6, generator=torch.Generator().manual_seed(0))
        >>> per_subset, ref = mipd(fuse, z, ((0,), (1,)), permutations=perms)
        >>> per_subset.shape, ref.shape
        (torch.Size([2]), torch.Size([6, 3]))
    """
    names, zs = split_latents(list(latents))
    batch, device = check_latents(names, zs)
    if permutations is not None:
        check_permutations(permutations, len(zs), batch, device, values=False)
    perturbed = check_perturbed_latents(perturbed, names, zs)
    draws = _count_draws(permutations, perturbed)
    n_sub = len(subsets)
    n_ref = 1 if detach_reference else n_sub
    rows = game_rows(zs, subsets, permutations, perturbed, k, detach_reference, draws)
    shares, blocks = _head_blocks(head_share, n_sub, n_ref, draws, batch, detach_reference)
    out = _head_with_share(fusion_head, rows, batch, batched, shares, blocks)
    if out.dim() == 1:  # one prediction per row: give it an explicit output axis
        out = out.unsqueeze(-1)
    layout = (n_ref, n_sub, draws, batch)
    per_subset = _blocks_divergence(out, layout, divergence, detach_reference, row_weights)
    if k != 1.0 or any(c != 1.0 for c in shares):
        per_subset = _FirstOrderOnly.apply(per_subset, k)
    return per_subset, out[:batch].detach()


def _blocks_divergence(
    out: Tensor,
    layout: tuple[int, int, int, int],
    divergence: Divergence,
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
    return _mean_over_rows(div, row_weights)


class _FirstOrderOnly(torch.autograd.Function):
    """Identity; its backward refuses ``create_graph=True``. The game's gradient (factors 1, k
    and c(S)) is not the gradient of one loss, and autograd through the scaling would
    differentiate it wrongly (each factor applied twice), so a second-order backward through
    MIPD under the game is an error, not a wrong number."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor, k: float) -> Tensor:  # type: ignore[override]
        ctx.k = k  # type: ignore[attr-defined]
        return x.view_as(x)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx, grad: Tensor
    ) -> tuple[Tensor, None]:
        if torch.is_grad_enabled():
            raise RuntimeError(double_backward_message(ctx.k))  # type: ignore[attr-defined]
        return grad, None


def _head_blocks(
    head_share: Sequence[float] | None,
    n_sub: int,
    n_ref: int,
    draws: int,
    batch: int,
    detach_reference: bool,
) -> tuple[list[float], list[tuple[int, float]]]:
    """``(c(S) per subset, (rows, c) of every block)``: the reference blocks (no gradient when
    detached), then the perturbed blocks, subset by subset."""
    shares = [1.0] * n_sub if head_share is None else [float(c) for c in head_share]
    if len(shares) != n_sub:
        raise ValueError(f"expected {n_sub} head_share factors, got {len(shares)}")
    blocks = [(batch, 1.0 if detach_reference else c) for c in shares[:n_ref]]
    blocks += [(draws * batch, c) for c in shares]
    return shares, blocks


def _head_with_share(
    fusion_head: Callable[..., Tensor],
    rows: Sequence[Tensor],
    batch: int,
    batched: bool,
    shares: Sequence[float],
    blocks: Sequence[tuple[int, float]],
) -> Tensor:
    """The head on the stacked rows, its parameters receiving ``c`` times the gradient of each
    block (``blocks``: ``(rows, c)``): one scaled-parameter pass for a module head with one c
    (when the substitution reaches its parameters), else a second pass on detached rows."""
    device, n_rows = rows[0].device, sum(n for n, _ in blocks)
    uniform = len(set(shares)) == 1
    scaled = uniform and shares[0] != 1.0 and isinstance(fusion_head, torch.nn.Module)
    # whether calling the module through functional_call reaches its parameters (False where a
    # wrapper such as FSDP2's fully_shard swaps them in at call time; None: not yet known)
    reaches = _substitution_reaches(fusion_head) if scaled else False
    second_pass = reaches is False and any(c != 1.0 for _, c in blocks)
    # the random state is kept for a second pass, and for the rerun of a scaled pass whose
    # head turns out to use a trainable tensor that the substitution did not scale
    rng = _rng_state(device) if (second_pass or scaled) and not compiling() else None
    if reaches is False or not isinstance(fusion_head, torch.nn.Module):
        out = _call_head(fusion_head, rows, batch, batched)
    else:
        out, reached = _call_scaled(
            fusion_head, shares[0], rows, batch, batched, check=reaches is None
        )
        if not reached:
            # the call showed that the substitution does not reach every trainable tensor the
            # head uses: run the plain head from the same random state and take the
            # second-pass route
            assert rng is not None
            with _replayed_rng(device, rng):
                out = _call_head(fusion_head, rows, batch, batched)
            second_pass = True
    _check_rows(out, n_rows)
    if second_pass and out.requires_grad:
        # second pass on detached inputs: the parameters get (c - 1) more, the latents nothing;
        # it replays the first pass's random state, so dropout draws the same masks (eager mode)
        replay = _replayed_rng(device, rng) if rng is not None else nullcontext()
        with replay:
            side = _call_head(fusion_head, [r.detach() for r in rows], batch, batched)
        _check_rows(side, n_rows)
        if not side.requires_grad:
            _warn_share_not_applied(fusion_head)
        elif not compiling() and fusion_head not in _HEAD_LEAVES:
            _HEAD_LEAVES[fusion_head] = _leaves(side)
        out = _ShareHeadGradient.apply(out, side, _runs([(n, c - 1.0) for n, c in blocks]))
    return out


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
            logits = _in_compute_dtype(out)
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
            (grad_out,) = _plain_gradients(plain, (out,), grad, (True,))
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
        return _as_dtype(grad_out, out.dtype), None, None, None


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


def _call_head(
    head: Callable[..., Tensor], rows: Sequence[Tensor], batch: int, batched: bool
) -> Tensor:
    """The head on stacked rows: one call, or one call per block of ``batch`` rows."""
    if batched:
        return head(*rows)
    n_rows = int(rows[0].shape[0])
    return torch.cat([head(*(r[j : j + batch] for r in rows)) for j in range(0, n_rows, batch)])


def _check_rows(out: object, n_rows: int) -> None:
    if not isinstance(out, Tensor) or out.dim() < 1 or out.shape[0] != n_rows:
        got = shape_of(out) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(
            f"expected the fusion head to return predictions with {n_rows} rows for {n_rows} "
            f"stacked inputs, got {got}"
        )


def _rng_state(device: torch.device) -> tuple[Tensor, Tensor | None]:
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


@contextmanager
def _replayed_rng(device: torch.device, state: tuple[Tensor, Tensor | None]) -> Iterator[None]:
    """Run the block from the random state ``state``; the current state is restored after."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type):
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], device)
        yield


# --------------------------------------------------------------------------- the head's share


def _call_scaled(
    module: torch.nn.Module,
    factor: float,
    rows: Sequence[Tensor],
    batch: int,
    batched: bool,
    *,
    check: bool,
) -> tuple[Tensor, bool]:
    """``module`` on ``rows`` with every parameter's gradient scaled by ``factor`` (one pass,
    ``torch.func.functional_call``), and whether that scaled every trainable tensor the output
    depends on. With ``check`` the first call also looks whether the module ran with the
    substituted parameters (a wrapper may swap in its own, see :func:`_substitution_reaches`).
    In eager mode every call then walks the output's graph (:func:`_reaches_unscaled`): a
    trainable tensor reached other than through the rows or the scaled parameters (a module
    the head did not run before, a parameter used directly, one unfrozen since) makes the
    answer False, and is kept, so that the caller reruns this step and later steps on the
    second-pass route, which is exact for any head."""
    params = {n: scale_grad(p, factor) for n, p in module.named_parameters()}

    def call(*inputs: Tensor) -> Tensor:
        return torch.func.functional_call(module, params, inputs)  # type: ignore[no-any-return]

    probe = _SubstitutionProbe(module, params) if check else None
    try:
        out = _call_head(call, rows, batch, batched)
    finally:
        if probe is not None:
            probe.remove()
    reached = probe is None or probe.reached
    if reached and not compiling() and isinstance(out, Tensor) and out.requires_grad:
        reached = not _reaches_unscaled(out, [*rows, *params.values()])
    if check or not reached:
        _REACHES[module] = (_parameter_ids(module), reached)
    return out, reached


def _reaches_unscaled(out: Tensor, boundary: Sequence[Tensor]) -> bool:
    """Whether ``out``'s autograd graph reaches a trainable leaf tensor without passing through
    one of the ``boundary`` tensors (the head's input rows and its substituted parameters):
    a walk over the head's own nodes only, ending at the first such leaf."""
    return next(graph_leaves([out], stops=boundary), None) is not None


#: head -> the trainable tensors its output depends on, seen in a second pass on detached
#: inputs (where nothing but the head's own parameters can be reached)
_HEAD_LEAVES: weakref.WeakKeyDictionary[object, tuple[Tensor, ...]] = weakref.WeakKeyDictionary()


def head_parameters_seen(head: object) -> tuple[Tensor, ...] | None:
    """The trainable tensors ``head``'s output was seen to depend on, from the second pass of
    an earlier :func:`mipd` call (None if no such pass ran yet)."""
    return _HEAD_LEAVES.get(head)


def forget_head_parameters(head: object) -> None:
    """Drop what :func:`head_parameters_seen` knows of ``head`` (its route changed)."""
    _HEAD_LEAVES.pop(head, None)


def substitution_failed(module: torch.nn.Module) -> bool:
    """Whether the last checked scaled call of ``module`` reached a trainable tensor that the
    substitution did not scale (see :func:`_call_scaled`)."""
    known = _REACHES.get(module)
    return known is not None and not known[1]


def _leaves(out: Tensor) -> tuple[Tensor, ...]:
    """The leaf tensors that ``out``'s autograd graph reaches (a walk over its nodes)."""
    return tuple(graph_leaves([out]))


#: module -> (ids of its parameters when checked, whether the substitution reached them)
_REACHES: weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple[int, ...], bool]] = (
    weakref.WeakKeyDictionary()
)


def _parameter_ids(module: torch.nn.Module) -> tuple[int, ...]:
    return tuple(id(p) for p in module.parameters())


def _substitution_reaches(module: object) -> bool | None:
    """Whether ``functional_call(module, scaled_parameters, ...)`` runs ``module`` with the
    scaled parameters, so that scaling them scales the head's parameter gradient.

    ``False`` for modules whose parameters a wrapper swaps in at call time (FSDP2's
    ``fully_shard`` and FSDP all-gather them in a forward pre-hook; DTensor parameters), where
    only the second pass on detached inputs applies the head's share. ``None`` while unknown:
    the next scaled call checks it (eager mode) and the answer is kept for the module's current
    parameters. Under ``torch.compile`` the answer comes from the known wrappers alone.
    """
    if not isinstance(module, torch.nn.Module):
        return False
    if compiling():
        return not _managed_by_wrapper(module)
    known = _REACHES.get(module)
    ids = _parameter_ids(module)
    if known is not None and known[0] == ids:
        return known[1]
    if _managed_by_wrapper(module) or _shared_parameters(module):
        _REACHES[module] = (ids, False)
        return False
    return None


def _shared_parameters(module: torch.nn.Module) -> bool:
    """A parameter reachable by two names (a shared submodule or tied weights):
    functional_call would swap it twice and could not put the original back."""
    ids = [id(p) for _, p in module.named_parameters(remove_duplicate=False)]
    return len(set(ids)) != len(ids)


def _managed_by_wrapper(module: torch.nn.Module) -> bool:
    """True when a sharding wrapper manages the parameters of ``module`` or of a submodule."""
    modules, parameters = _wrapper_types()
    if any(isinstance(m, modules) for m in module.modules()):
        return True
    return any(isinstance(p, parameters) for p in module.parameters())


def _wrapper_types() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """The module classes of the sharding wrappers and the parameter classes they use, among
    those already imported (a model cannot be wrapped by a module nobody imported)."""
    fsdp = sys.modules.get("torch.distributed.fsdp")
    tensor = sys.modules.get("torch.distributed.tensor")
    modules = tuple(
        getattr(fsdp, name)
        for name in ("FullyShardedDataParallel", "FSDPModule")
        if fsdp is not None and hasattr(fsdp, name)
    )
    parameters = (tensor.DTensor,) if tensor is not None and hasattr(tensor, "DTensor") else ()
    return modules, parameters


class _SubstitutionProbe:
    """Forward pre-hooks that check, when each submodule runs (after the hooks registered
    before, such as FSDP's all-gather), that it holds the parameters ``functional_call``
    substituted."""

    def __init__(self, module: torch.nn.Module, substituted: dict[str, Tensor]) -> None:
        self.reached = True
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        for prefix, sub in module.named_modules():
            own = {
                name: substituted[f"{prefix}.{name}" if prefix else name]
                for name, p in sub._parameters.items()
                if p is not None and (f"{prefix}.{name}" if prefix else name) in substituted
            }
            if own:
                self._handles.append(sub.register_forward_pre_hook(self._hook_for(own)))

    def _hook_for(self, own: dict[str, Tensor]) -> Callable[[torch.nn.Module, object], None]:
        def hook(sub: torch.nn.Module, args: object) -> None:
            if any(sub._parameters.get(name) is not t for name, t in own.items()):
                self.reached = False

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


_warned_share_not_applied = [False]


def _warn_share_not_applied(head: object) -> None:
    """The second pass carries no gradient although the head has trainable parameters."""
    if _warned_share_not_applied[0] or compiling() or not isinstance(head, torch.nn.Module):
        return
    if not any(p.requires_grad for p in head.parameters()):
        return
    _warned_share_not_applied[0] = True
    warnings.warn(
        f"MCR could not apply the fusion head's share of the MIPD gradient: the second pass of "
        f"the {type(head).__name__} head on detached inputs carries no gradient to its "
        "parameters (a wrapper MCR does not know?), so the head receives the plain sum of the "
        "terms (head_gradient='sum'). Pass a plain function that calls the head, or report the "
        "wrapper. (Warned once.)",
        RuntimeWarning,
        stacklevel=4,
    )


def _count_draws(permutations: Tensor | None, perturbed: Sequence[Tensor | None]) -> int:
    counts = {int(p.shape[0]) for p in perturbed if p is not None}
    if permutations is not None and any(p is None for p in perturbed):
        counts.add(int(permutations.shape[0]))
    if len(counts) != 1:
        raise ValueError(
            f"expected one number of draws P across permutations and perturbed latents, "
            f"got {sorted(counts)}"
        )
    return counts.pop()
