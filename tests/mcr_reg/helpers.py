"""Small models, plain reference implementations and a gloo launcher for the mcr_reg tests."""

from __future__ import annotations

import gc
import inspect
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn

from mcr_reg import MCRRegularizer
from mcr_reg import functional as MF
from mcr_reg.terms import CEB, MIPD, Contrastive, Unimodal


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


class LossNet(nn.Module):
    """A Toy model with MCR (every term on) whose ``forward`` returns the training loss: the
    module that DDP or FSDP wraps in the distributed tests."""

    def __init__(
        self,
        in_dims: Sequence[int],
        latent: int,
        classes: int,
        draws: int,
        *,
        gather: bool,
        strategy: str | float = "greedy",
        head: str = "module",
        contrastive_weight: float = 1.0,
    ) -> None:
        super().__init__()
        m = len(in_dims)
        self.model = Toy(in_dims, [latent] * m, classes)
        fusion = self.model.head
        self.mcr = MCRRegularizer(
            fusion if head == "module" else (lambda *zs: fusion(*zs)),
            strategy=strategy,
            num_classes=classes,
            latent_dims=(latent,) * m,
            mipd=MIPD(weight=1.0, num_permutations=draws),
            contrastive=Contrastive(weight=contrastive_weight, gather_distributed=gather),
            ceb=CEB(weight=1.0),
            unimodal=Unimodal(weight=0.1),
        )

    def forward(self, xs: list[Tensor], y: Tensor, perms: Tensor | None = None) -> Tensor:
        zs = self.model.encode(xs)
        logits = self.model.head(*zs)
        loss = torch.nn.functional.cross_entropy(logits, y)
        return loss + self.mcr(zs, y, logits, permutations=perms).loss


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


# --------------------------------------------------------------------------- the game's reference


def build(m: int, seed: int, out_dim: int = 4, batch: int = 6, draws: int = 3):
    """A float64 Toy model with M modalities, its inputs and P permutation draws."""
    torch.manual_seed(seed)
    in_dims = [3 + i for i in range(m)]
    latent = [5] * m
    model = Toy(in_dims, latent, out_dim).double()
    g = torch.Generator().manual_seed(seed)
    xs = [torch.randn(batch, d, generator=g, dtype=torch.float64) for d in in_dims]
    perms = MF.sample_permutations(draws, m, batch, generator=g)
    return model, xs, perms


def reference_subset_loss(model: Toy, xs, perms, subset) -> torch.Tensor:
    """L_S of one subset, written out draw by draw with the loop JSD."""
    zs = model.encode(xs)
    ref = model.head(*zs)
    losses = []
    for p in range(perms.shape[0]):
        perturbed = [z[perms[p, i]] if i in subset else z for i, z in enumerate(zs)]
        losses.append(-ref_jsd(ref, model.head(*perturbed)).mean())
    return torch.stack(losses).mean()


def formula_grads(
    model: Toy, xs, perms, subsets, k: float, weight: float, head_gradient: str = "mean"
):
    """The expected gradient of every parameter, from per-subset plain autograd."""
    params = {n: p for n, p in model.named_parameters()}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    m = len(xs)
    for s in subsets:
        loss = reference_subset_loss(model, xs, perms, s)
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        # the head is shared: the mean of the players' factors (1 for owners, k for the others)
        players = [1.0 if i in s else k for i in range(m)]
        c = sum(players) / m if head_gradient == "mean" else 1.0
        for (name, _), g in zip(params.items(), grads):
            if g is None:
                continue
            if name.startswith("encoders."):
                total[name] += weight * players[int(name.split(".")[1])] * g
            else:
                total[name] += weight * c * g
    return total


def assert_grads_equal(got, expected) -> None:
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-10, rtol=1e-8, msg=name)


# --------------------------------------------------------------------------- two gloo processes


def _gloo_entry(
    rank: int, world: int, init_file: str, worker: Callable[..., None], args: tuple[object, ...]
) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        worker(rank, *args)
    finally:
        # DDP wrappers sit in reference cycles and hold the process group: collect them before
        # the group is torn down, or gloo may abort at interpreter exit
        gc.collect()
        dist.destroy_process_group()


def launch_gloo(worker: Callable[..., None], folder: Path, *args: object, world: int = 2) -> None:
    """Run ``worker(rank, *args)`` in ``world`` processes joined by a gloo process group (CPU);
    the rendezvous file lives in ``folder``. A worker's exception fails the call."""
    init = str(folder / f"rendezvous-{worker.__name__}")
    mp.spawn(_gloo_entry, args=(world, init, worker, args), nprocs=world, join=True)


def mipd_options(options: dict[str, Any]) -> dict[str, Any]:
    """The MIPD term's options among a test's keyword arguments, taken out of ``options``
    (tests parametrise them next to the regularizer's own arguments)."""
    names = set(inspect.signature(MIPD.__init__).parameters) - {"self"}
    return {k: options.pop(k) for k in list(options) if k in names}
