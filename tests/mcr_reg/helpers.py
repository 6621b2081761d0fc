"""Small models and plain reference implementations used by the mcr_reg tests."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn


class ConcatHead(nn.Module):
    """Fusion head: concatenate pooled latents, two linear layers."""

    def __init__(self, dims: Sequence[int], out_dim: int, hidden: int = 8) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(sum(dims), hidden), nn.Tanh(), nn.Linear(hidden, out_dim)
        )

    def forward(self, *zs: Tensor) -> Tensor:
        return self.net(torch.cat([z if z.dim() == 2 else z.mean(1) for z in zs], dim=-1))


class Toy(nn.Module):
    """M linear encoders and a ConcatHead."""

    def __init__(self, in_dims: Sequence[int], latent: Sequence[int], out_dim: int) -> None:
        super().__init__()
        self.encoders = nn.ModuleList(nn.Linear(i, d) for i, d in zip(in_dims, latent))
        self.head = ConcatHead(latent, out_dim)

    def encode(self, xs: Sequence[Tensor]) -> list[Tensor]:
        return [enc(x) for enc, x in zip(self.encoders, xs)]


def ref_jsd(lp: Tensor, lq: Tensor) -> Tensor:
    """Jensen-Shannon divergence written from the definition, in float64 probabilities."""
    p = torch.softmax(lp.double(), -1)
    q = torch.softmax(lq.double(), -1)
    m = 0.5 * (p + q)

    def kl(a: Tensor, b: Tensor) -> Tensor:
        return torch.where(a > 0, a * (a.log() - b.log()), torch.zeros_like(a)).sum(-1)

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def ref_supcon(features: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """Supervised contrastive loss with explicit Python loops (Khosla et al., L_out)."""
    # a value reference, not a differentiable one: it reads plain floats
    f = torch.nn.functional.normalize(features.detach().double(), dim=-1)
    n = f.shape[0]
    per_anchor = []
    for i in range(n):
        positives = [p for p in range(n) if p != i and labels[p] == labels[i]]
        if not positives:
            continue
        denom = sum(math.exp(float(f[i] @ f[a]) / temperature) for a in range(n) if a != i)
        terms = [float(f[i] @ f[p]) / temperature - math.log(denom) for p in positives]
        per_anchor.append(-sum(terms) / len(terms))
    return torch.tensor(
        sum(per_anchor) / len(per_anchor) if per_anchor else 0.0, dtype=torch.float64
    )


def ref_ntxent(features: Tensor, labels: Tensor, temperature: float) -> Tensor:
    """Paper eq. 11 with explicit Python loops: every ordered same-label pair (a, p), a != p,
    against the negatives of a only; the mean over all such pairs."""
    f = torch.nn.functional.normalize(features.double(), dim=-1)
    n = f.shape[0]

    def e(a: int, b: int) -> float:
        return math.exp(float(f[a] @ f[b]) / temperature)

    losses = []
    for a in range(n):
        negatives = sum(e(a, j) for j in range(n) if labels[j] != labels[a])
        for p in range(n):
            if p != a and labels[p] == labels[a]:
                losses.append(-math.log(e(a, p) / (e(a, p) + negatives)))
    return torch.tensor(sum(losses) / len(losses) if losses else 0.0, dtype=torch.float64)
