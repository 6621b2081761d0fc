"""Second-order gradients (gradient penalties, meta-learning, Hessian-vector products) and the
float32 accuracy of the MIPD gradient when predictions nearly agree.

The written-out backward passes of MCR's autograd functions are first-order; under
``create_graph=True`` they differentiate plain formulas instead, so a Hessian-vector product of
the whole loss is the derivative of the game's (exact, first-order) gradient. The referee here
is that definition itself: central differences of the first-order gradient in float64.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
import torch
from torch import Tensor, nn
from torch.autograd import gradcheck, gradgradcheck

from mcr_reg import MCRRegularizer
from mcr_reg import functional as MF
from mcr_reg.terms import CEB, MIPD, Contrastive, Unimodal
from tests.mcr_reg.helpers import Toy


def test_jensen_shannon_second_order() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    assert gradcheck(MF.jensen_shannon, (a, b))
    assert gradgradcheck(MF.jensen_shannon, (a, b))


@pytest.mark.parametrize("normalize", [True, False])
def test_contrastive_second_order(normalize: bool) -> None:
    g = torch.Generator().manual_seed(1)
    f = torch.randn(8, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 0, 1, 2, 2, 0, 1])

    def loss(x: Tensor) -> Tensor:
        return MF.contrastive_ntxent(x, y, temperature=0.5, normalize=normalize)

    assert gradgradcheck(loss, (f,))


def hvp_and_central_difference(
    first_order: Callable[[list[Tensor]], Sequence[Tensor]], params: list[Tensor], seed: int
) -> tuple[tuple[Tensor, ...], list[Tensor]]:
    """``(H v, (g(θ + εv) - g(θ - εv)) / 2ε)`` for ``g = first_order(params)`` (computed with
    ``create_graph=True``) and a random direction v, in float64."""
    g = torch.Generator().manual_seed(seed)
    v = [torch.randn(p.shape, generator=g, dtype=torch.float64) for p in params]
    grads = first_order(params)
    hvp = torch.autograd.grad(sum((gr * vi).sum() for gr, vi in zip(grads, v)), params)
    eps = 1e-6

    def shifted(sign: float) -> list[Tensor]:
        with torch.no_grad():
            for p, vi in zip(params, v):
                p.add_(sign * eps * vi)
        out = [gr.detach() for gr in first_order(params)]
        with torch.no_grad():
            for p, vi in zip(params, v):
                p.sub_(sign * eps * vi)
        return out

    plus, minus = shifted(1.0), shifted(-1.0)
    return hvp, [(a - b) / (2 * eps) for a, b in zip(plus, minus)]


@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_mipd_second_order_without_the_game(weights: bool, task: str) -> None:
    """k = 1 and the head's plain sum: MIPD is an ordinary loss, its Hessian-vector products
    are exact."""
    g = torch.Generator().manual_seed(2)
    head = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3 if task != "regression" else 1))
    head = head.double()
    perms = MF.sample_permutations(2, 2, 4, generator=g)
    subsets = ((0,), (1,))
    rows = MF.permutation_row_mask(perms, subsets, "moved").double() if weights else None
    divergence = "jsd" if task == "classification" else "squared_error"
    a = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, generator=g, dtype=torch.float64)
    params = [a, b, *head.parameters()]

    def first_order(ps: list[Tensor]) -> Sequence[Tensor]:
        out, _ = MF.mipd(
            lambda x, y: head(torch.cat([x, y], dim=-1)), ps[:2], subsets, permutations=perms,
            k=1.0, divergence=divergence, row_weights=rows,  # type: ignore[arg-type]
        )  # fmt: skip
        return torch.autograd.grad((out * w).sum(), ps, create_graph=True)

    hvp, expected = hvp_and_central_difference(first_order, params, seed=7)
    for got, want in zip(hvp, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-8)


def setup(strategy: str | float, head: str, mipd_weight: float):
    torch.manual_seed(0)
    model = Toy([3, 4], [5, 5], 3).double()
    fusion = model.head if head == "module" else (lambda *zs: model.head(*zs))
    mcr = MCRRegularizer(
        fusion, strategy=strategy, num_classes=3, latent_dims=(5, 5), mipd=MIPD(weight=mipd_weight, num_permutations=2), contrastive=Contrastive(weight=0.5), ceb=CEB(weight=0.3), unimodal=Unimodal(weight=0.2) ).double()  # fmt: skip
    g = torch.Generator().manual_seed(3)
    xs = [torch.randn(6, d, generator=g, dtype=torch.float64) for d in (3, 4)]
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    perms = MF.sample_permutations(2, 2, 6, generator=g)
    return model, mcr, xs, y, perms


@pytest.mark.parametrize(
    ("strategy", "mipd_weight"), [("collaborative", 0.7), ("greedy", 0.0), (0.37, 0.0)]
)
@pytest.mark.parametrize("head", ["module", "function"])
def test_hessian_vector_product_of_the_whole_loss(
    strategy: str | float, mipd_weight: float, head: str
) -> None:
    """Every term on that is an ordinary loss (MIPD when k = 1, contrastive, CEB, unimodal):
    the Hessian-vector product equals the central difference of the first-order gradient.
    CEB reads the prediction detached, a constant to its derivatives: the reference holds it
    fixed too."""
    model, mcr, xs, y, perms = setup(strategy, head, mipd_weight)
    with torch.no_grad():
        prediction = model.head(*model.encode(xs))  # what CEB reconstructs from, held fixed

    def first_order(ps: list[Tensor]) -> Sequence[Tensor]:
        zs = model.encode(xs)
        loss = nn.functional.cross_entropy(model.head(*zs), y)
        loss = loss + mcr(zs, y, prediction, permutations=perms).loss
        return torch.autograd.grad(loss, ps, create_graph=True)

    params = [*model.parameters(), *mcr.parameters()]
    first_order(params)  # a function head takes its one-pass route from the second step on
    hvp, expected = hvp_and_central_difference(first_order, params, seed=8)
    for got, want in zip(hvp, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("strategy", ["greedy", "independent", 0.37])
@pytest.mark.parametrize("head", ["module", "function"])
@pytest.mark.parametrize("task", ["classification", "regression"])
def test_double_backward_under_the_game_is_an_error_not_a_wrong_number(
    strategy: str | float, head: str, task: str
) -> None:
    torch.manual_seed(0)
    model = Toy([3, 4], [5, 5], 1 if task == "regression" else 3).double()
    fusion = model.head if head == "module" else (lambda *zs: model.head(*zs))
    mcr = MCRRegularizer(fusion, strategy=strategy, task=task, contrastive=False, unimodal=False )  # fmt: skip
    xs = [torch.randn(6, d, dtype=torch.float64) for d in (3, 4)]
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    loss = mcr(model.encode(xs), y if task != "regression" else y.double()).loss
    params = list(model.parameters())
    first = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    assert all(bool(g.isfinite().all()) for g in first if g is not None)  # first order: fine
    with pytest.raises(RuntimeError, match=r"double backward .*not supported.*collaborative"):
        torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)


@pytest.mark.parametrize("scale", [0.01, 0.003, 0.001])
def test_float32_mipd_gradient_keeps_its_accuracy_when_predictions_nearly_agree(
    scale: float,
) -> None:
    """Fused logits on a small scale (early training, heavily regularised heads): the float32
    gradient of MIPD with respect to the latents stays within 1e-5 of float64 (relative norm)."""
    torch.manual_seed(4)
    head64 = nn.Linear(16, 10).double()
    with torch.no_grad():
        head64.weight.mul_(scale)
        head64.bias.mul_(scale)
    head32 = nn.Linear(16, 10)
    head32.load_state_dict({k: v.float() for k, v in head64.state_dict().items()})
    g = torch.Generator().manual_seed(5)
    z64 = [torch.randn(64, 8, generator=g, dtype=torch.float64) for _ in range(2)]
    perms = MF.sample_permutations(8, 2, 64, generator=g)

    def latent_grads(head: nn.Module, dtype: torch.dtype) -> Tensor:
        zs = [z.to(dtype).clone().requires_grad_() for z in z64]
        per_subset, _ = MF.mipd(
            lambda a, b: head(torch.cat([a, b], dim=-1)), zs, ((0,), (1,)), permutations=perms
        )
        per_subset.sum().backward()
        return torch.cat([z.grad.double().flatten() for z in zs])  # type: ignore[union-attr]

    exact = latent_grads(head64, torch.float64)
    got = latent_grads(head32, torch.float32)
    assert float((got - exact).norm() / exact.norm()) < 1e-5
