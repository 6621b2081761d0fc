"""The contrastive term L_Con (paper eq. 11/15): supervised contrastive and NT-Xent losses."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from mcr_reg._checks import (
    check_contrastive_inputs,
)
from mcr_reg.functional._common import as_dtype, compute_dtype, in_compute_dtype, plain_gradients


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
            f = in_compute_dtype(features)
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
            (d_features,) = plain_gradients(plain, (features,), grad, (True,))
            return d_features, None, None, None
        pull = torch.sigmoid(gap).mul_(weight).mul_(grad / count)  # (N, N), positives only
        # d n_a / d s_an: softmax over a's negatives (exactly 0 on same-label entries)
        share = gap.neg().exp_().masked_fill_(same, 0.0)
        g = share.mul_(pull.sum(dim=1, keepdim=True)).sub_(pull)  # dL/ds
        d_unit = torch.mm(g + g.t(), unit).div_(temperature)
        if norms is None:
            return as_dtype(d_unit, features.dtype), None, None, None
        d_f = (d_unit - unit * (unit * d_unit).sum(dim=-1, keepdim=True)) / norms
        # a norm below the floor is a constant: no projection there
        d_f = torch.where(lengths.eq(norms), d_f, d_unit / norms)
        return as_dtype(d_f, features.dtype), None, None, None


def _ntxent_plain(features: Tensor, labels: Tensor, temperature: float, normalize: bool) -> Tensor:
    """:class:`_NTXent`'s value in plain differentiable operations."""
    sim = _similarities(features, temperature, normalize)  # (N, N)
    same = labels.unsqueeze(1).eq(labels.unsqueeze(0))
    weight = same.to(sim.dtype).fill_diagonal_(0.0)
    negatives = torch.logsumexp(sim.masked_fill(same, torch.finfo(sim.dtype).min), 1, True)
    return (F.softplus(negatives - sim) * weight).sum() / weight.sum().clamp_min(1.0)


def _similarities(features: Tensor, temperature: float, normalize: bool) -> Tensor:
    """``(N, N)`` similarities ``s_ij / τ`` in float32 (float64 for float64 features)."""
    f = features.to(compute_dtype(features.dtype))
    if normalize:
        f = F.normalize(f, dim=-1)
    return f @ f.T / temperature  # (N, D) @ (D, N)
