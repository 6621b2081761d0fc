"""The game's gradients written for clarity, not speed: the referee of every exactness test.

Float64, a loop over subsets, draws and rows, one fusion-head call per row, plain autograd only.
For every perturbed subset S it computes

    L_S = - Σ_{p,b} w_{S,p,b} D(f(z)_b, f(z with S perturbed)_{p,b}) / Σ_{p,b} w_{S,p,b}

(w = 1 unless row weights are given), takes dL_S/dθ for every trainable tensor with
``torch.autograd.grad``, and combines them by the rule of docs/semantics.md, "The game":

    encoder i:        Σ_S f_i(S) ∇L_S,   f_i(S) = 1 if i ∈ S else k
    every other θ:    Σ_S c(S) ∇L_S,     c(S) = mean_i f_i(S)  (head_gradient="mean")
                                         c(S) = 1              (head_gradient="sum")

A factor of 0 adds nothing, also where the gradient is not finite. The fusion head is called
through ``call_head``, which may replay a random state before every call, so that a head with
dropout draws the same mask in every call (see tests/mcr_reg/test_exactness.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def divergence(kind: str, ref: Tensor, pert: Tensor) -> Tensor:
    """D between two single-row predictions ``(1, C)``, from its definition, in float64."""
    ref, pert = ref.double(), pert.double()
    if kind == "squared_error":
        return (ref - pert).square().sum()
    if kind == "multilabel_jsd":  # one Bernoulli distribution per label, averaged over labels
        per_label = [divergence("binary_jsd", ref[:, j : j + 1], pert[:, j : j + 1])
                     for j in range(ref.shape[-1])]  # fmt: skip
        return torch.stack(per_label).mean()
    if kind == "binary_jsd":  # Bernoulli distributions of one logit each
        ref = torch.cat([torch.zeros_like(ref), ref], dim=-1)
        pert = torch.cat([torch.zeros_like(pert), pert], dim=-1)
    p, q = torch.softmax(ref, dim=-1), torch.softmax(pert, dim=-1)
    m = 0.5 * (p + q)
    return 0.5 * (p * (p / m).log()).sum() + 0.5 * (q * (q / m).log()).sum()


def subset_loss(
    call_head: Callable[..., Tensor],
    zs: Sequence[Tensor],
    subset: Sequence[int],
    perturbed_rows: Callable[[int, int, int], Tensor],
    draws: int,
    kind: str,
    *,
    detach_reference: bool = False,
    weights: Tensor | None = None,
) -> Tensor:
    """L_S, row by row: ``perturbed_rows(i, p, b)`` is modality i's perturbed row b in draw p
    (shape ``(1, ...)``); ``weights`` ``(P, B)`` the row weights of S."""
    batch = int(zs[0].shape[0])
    total = zs[0].new_zeros(())
    weight_sum = 0.0
    for b in range(batch):
        ref = call_head(*[z[b : b + 1] for z in zs])
        if detach_reference:
            ref = ref.detach()
        for p in range(draws):
            w = 1.0 if weights is None else float(weights[p, b])  # w D as written: 0 NaN is NaN
            rows = [
                perturbed_rows(i, p, b) if i in subset else z[b : b + 1] for i, z in enumerate(zs)
            ]
            total = total + w * divergence(kind, ref, call_head(*rows))
            weight_sum += w
    return -total / weight_sum if weight_sum > 0 else total * 0.0


def game_gradients(
    subset_losses: Callable[[Sequence[int]], Tensor],
    subsets: Sequence[Sequence[int]],
    encoder_params: Sequence[Sequence[Tensor]],
    other_params: Sequence[Tensor],
    k: float,
    weight: float,
    head_gradient: str = "mean",
) -> tuple[list[list[Tensor]], list[Tensor]]:
    """The gradient of every encoder's and every other trainable tensor under the game:
    ``(per encoder, a list per parameter; per other tensor)``."""
    m = len(encoder_params)
    flat = [p for params in encoder_params for p in params] + list(other_params)
    total = [torch.zeros_like(p) for p in flat]
    for s in subsets:
        loss = subset_losses(s)
        grads = torch.autograd.grad(loss, flat, allow_unused=True, retain_graph=True)
        players = [1.0 if i in s else k for i in range(m)]
        share = sum(players) / m if head_gradient == "mean" else 1.0
        factors = [players[i] for i, params in enumerate(encoder_params) for _ in params]
        factors += [share] * len(other_params)
        for j, (g, f) in enumerate(zip(grads, factors)):
            if g is not None and f != 0.0:
                total[j] = total[j] + weight * f * g
    out: list[list[Tensor]] = []
    at = 0
    for params in encoder_params:
        out.append(total[at : at + len(params)])
        at += len(params)
    return out, total[at:]


def permuted_rows(
    zs: Sequence[Tensor],
    permutations: Tensor,
    perturbed: Sequence[Tensor | None] | None = None,
) -> Callable[[int, int, int], Tensor]:
    """Modality i's perturbed row b in draw p: ``perturbed[i][p, b]`` when given, else
    ``z_i[π_{p,i}(b)]``."""

    def row(i: int, p: int, b: int) -> Tensor:
        if perturbed is not None and perturbed[i] is not None:
            return perturbed[i][p, b : b + 1]  # type: ignore[index]
        j = int(permutations[p, i, b])
        return zs[i][j : j + 1]

    return row
