"""The gradient rule of the game (docs/semantics.md, "The game") against plain autograd.

For every subset S the reference computes L_S = -mean_{p,b} JSD(f(z), f(z with S permuted))
on its own, takes d L_S / d theta with torch.autograd.grad, and combines them by the formula

    grad theta_i = lambda * ( sum_{S contains i} grad_i L_S + k * sum_{S not containing i} grad_i L_S )
    grad theta_c = lambda * sum_S c(S) grad_c L_S,   c(S) = (|S| + k (M - |S|)) / M

(head_gradient="mean", the default) or c(S) = 1 (head_gradient="sum", the plain sum), which
MCRRegularizer must reproduce exactly (float64), for a module head and for a plain function
that closes over the module, batched and per block.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from mcr_reg import MCRRegularizer
from mcr_reg import functional as MF
from mcr_reg.terms import MIPD
from tests.mcr_reg.helpers import (
    Toy,
    assert_grads_equal,
    build,
    formula_grads,
    mipd_options,
    ref_jsd,
    reference_subset_loss,
)


def mcr_grads(
    model: Toy, xs, perms, subsets, k: float, weight: float, closure: bool = False, **kwargs
):
    # a plain function over the module (the README's pattern) takes the second-pass route
    head = (lambda *zs: model.head(*zs)) if closure else model.head
    mcr = MCRRegularizer(
        head,
        strategy=k,
        mipd=MIPD(weight=weight, subsets=subsets, **mipd_options(kwargs)),
        contrastive=False,
        unimodal=False,
        **kwargs,
    )
    model.zero_grad()
    zs = model.encode(xs)
    labels = torch.zeros(xs[0].shape[0], dtype=torch.long)
    out = mcr(zs, labels, permutations=perms)
    out.loss.backward()
    return {
        n: p.grad.clone() if p.grad is not None else torch.zeros_like(p)
        for n, p in model.named_parameters()
    }, out


@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("strategy", ["greedy", "independent", "collaborative", 0.37, -2.5])
@pytest.mark.parametrize("batched", [True, False])
@pytest.mark.parametrize("closure", [False, True], ids=["module", "function"])
@pytest.mark.parametrize("head_gradient", ["mean", "sum"])
def test_gradients_match_formula(
    m: int, strategy: str | float, batched: bool, closure: bool, head_gradient: str
) -> None:
    model, xs, perms = build(m, seed=m)
    subsets = MF.enumerate_subsets(m, "all")
    k = MF.strategy_factor(strategy)
    expected = formula_grads(model, xs, perms, subsets, k, weight=0.3, head_gradient=head_gradient)
    got, out = mcr_grads(
        model,
        xs,
        perms,
        "all",
        k,
        weight=0.3,
        batched=batched,
        closure=closure,
        head_gradient=head_gradient,
    )
    assert_grads_equal(got, expected)
    # the reported term is the sum over subsets of L_S
    ref_total = sum(float(reference_subset_loss(model, xs, perms, s).detach()) for s in subsets)
    assert abs(float(out.terms["mipd"]) - ref_total) < 1e-10


def test_independent_gives_non_owners_exactly_zero() -> None:
    model, xs, perms = build(3, seed=11)
    got, _ = mcr_grads(model, xs, perms, [(1,)], 0.0, weight=1.0)
    for name, g in got.items():
        if name.startswith("encoders.0.") or name.startswith("encoders.2."):
            assert torch.equal(g, torch.zeros_like(g)), name
        else:
            assert float(g.abs().sum()) > 0, name


def test_greedy_flips_the_sign_for_non_owners() -> None:
    model, xs, perms = build(2, seed=5)
    collab, _ = mcr_grads(model, xs, perms, [(0,)], 1.0, weight=1.0)
    greedy, _ = mcr_grads(model, xs, perms, [(0,)], -1.0, weight=1.0)
    for name in collab:
        if name.startswith("encoders.1."):
            torch.testing.assert_close(greedy[name], -collab[name])
        elif name.startswith("encoders.0."):
            torch.testing.assert_close(greedy[name], collab[name])
        else:  # the shared head: (1 + k) / 2 = 0 under greedy with two modalities
            assert float(collab[name].abs().sum()) > 0, name
            assert torch.equal(greedy[name], torch.zeros_like(greedy[name])), name


def test_the_plain_sum_rule_is_one_keyword_away() -> None:
    """head_gradient="sum": greedy gives the head the collaborative gradient."""
    model, xs, perms = build(2, seed=5)
    collab, _ = mcr_grads(model, xs, perms, [(0,)], 1.0, weight=1.0)
    greedy_sum, _ = mcr_grads(model, xs, perms, [(0,)], -1.0, weight=1.0, head_gradient="sum")
    for name in collab:
        if name.startswith("head."):
            torch.testing.assert_close(greedy_sum[name], collab[name])


def test_collaborative_is_the_true_gradient() -> None:
    """k = +1 adds nothing to autograd: gradcheck the whole MIPD term in float64."""
    model, xs, perms = build(2, seed=3, batch=4, draws=2)
    mcr = MCRRegularizer(model.head, strategy="collaborative", contrastive=False, unimodal=False)
    labels = torch.zeros(4, dtype=torch.long)

    def f(z0: torch.Tensor, z1: torch.Tensor) -> torch.Tensor:
        return mcr([z0, z1], labels, permutations=perms).loss

    zs = [z.detach().requires_grad_() for z in model.encode(xs)]
    assert torch.autograd.gradcheck(f, tuple(zs))


@pytest.mark.parametrize("closure", [False, True], ids=["module", "function"])
@pytest.mark.parametrize("k", [-1.0, 0.0, 0.5])
def test_detach_reference_removes_the_reference_path(closure: bool, k: float) -> None:
    model, xs, perms = build(2, seed=8)
    got, _ = mcr_grads(
        model, xs, perms, "all", k, weight=1.0, detach_reference=True, closure=closure
    )
    # reference: gradients only through the perturbed prediction
    params = dict(model.named_parameters())
    expected = {n: torch.zeros_like(p) for n, p in params.items()}
    for s in MF.enumerate_subsets(2):
        zs = model.encode(xs)
        ref = model.head(*zs).detach()
        loss = torch.stack(
            [
                -ref_jsd(
                    ref, model.head(*[z[perms[p, i]] if i in s else z for i, z in enumerate(zs)])
                ).mean()
                for p in range(perms.shape[0])
            ]
        ).mean()
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        for (name, _), g in zip(params.items(), grads):
            if g is None:
                continue
            if name.startswith("encoders."):
                expected[name] += g if int(name.split(".")[1]) in s else k * g
            else:
                expected[name] += (1 + k) / 2 * g  # c(S) for M = 2, |S| = 1
    assert_grads_equal(got, expected)


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(2, 4),
    k=st.floats(-3, 3, allow_nan=False),
    seed=st.integers(0, 1000),
    draws=st.integers(1, 3),
    batch=st.integers(2, 5),
    singletons=st.booleans(),
)
def test_gradient_routing_property(
    m: int, k: float, seed: int, draws: int, batch: int, singletons: bool
) -> None:
    model, xs, perms = build(m, seed=seed, batch=batch, draws=draws)
    spec = "singletons" if singletons else "all"
    subsets = MF.enumerate_subsets(m, spec)
    expected = formula_grads(model, xs, perms, subsets, k, weight=0.5)
    got, _ = mcr_grads(model, xs, perms, spec, k, weight=0.5)
    assert_grads_equal(got, expected)


def step_grads(model: Toy, mcr: MCRRegularizer, xs, labels, perms) -> dict[str, Tensor]:
    """Every parameter's gradient after one MCR step (zeros where none arrived)."""
    model.zero_grad()
    mcr(model.encode(xs), labels, permutations=perms).loss.backward()
    return {
        n: p.grad if p.grad is not None else torch.zeros_like(p)
        for n, p in model.named_parameters()
    }


# --------------------------------------------------------------------------- heads behind wrappers


def install_parameters_at_call_time(module: nn.Module) -> None:
    """Put every parameter back into its module in a forward pre-hook, as FSDP2's
    ``fully_shard`` does with the all-gathered ones: parameters substituted by
    ``torch.func.functional_call`` never reach the forward."""
    for sub in module.modules():
        for name, p in list(sub._parameters.items()):
            if p is not None:
                sub.register_forward_pre_hook(
                    lambda m, args, n=name, p=p: m._parameters.__setitem__(n, p)
                )


class CallCounter(nn.Module):
    """Counts the calls of the wrapped head."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head, self.calls = head, 0

    def forward(self, *zs: Tensor) -> Tensor:
        self.calls += 1
        return self.head(*zs)


@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("strategy", ["greedy", "independent", 0.5])
def test_a_head_whose_parameters_are_installed_at_call_time_gets_its_share(
    m: int, strategy: str | float
) -> None:
    model, xs, perms = build(m, seed=m)
    k = MF.strategy_factor(strategy)
    expected = formula_grads(model, xs, perms, MF.enumerate_subsets(m), k, weight=0.3)
    install_parameters_at_call_time(model.head)
    mcr = MCRRegularizer(
        model.head, strategy=k, mipd=MIPD(weight=0.3), contrastive=False, unimodal=False
    )
    labels = torch.zeros(xs[0].shape[0], dtype=torch.long)
    for _ in range(2):  # the first step finds out; the second uses what it found
        assert_grads_equal(step_grads(model, mcr, xs, labels, perms), expected)


def test_a_plain_module_head_keeps_its_single_pass() -> None:
    """Greedy with two modalities: one head call per step for a plain module (the scaled-
    parameter route), two once a wrapper installs the parameters at call time (the second
    pass), three on the step that finds that out."""
    model, xs, perms = build(2, seed=1)
    labels = torch.zeros(xs[0].shape[0], dtype=torch.long)
    plain = CallCounter(model.head)
    mcr = MCRRegularizer(plain, contrastive=False, unimodal=False)
    for _ in range(2):
        mcr(model.encode(xs), labels, permutations=perms).loss.backward()
    assert plain.calls == 2

    install_parameters_at_call_time(model.head)
    wrapped = CallCounter(model.head)
    mcr = MCRRegularizer(wrapped, contrastive=False, unimodal=False)
    for _ in range(2):
        mcr(model.encode(xs), labels, permutations=perms).loss.backward()
    assert wrapped.calls == 3 + 2


class NoGradientOnDetachedInputs(nn.Module):
    """A head that computes without autograd when no input requires a gradient."""

    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, *zs: Tensor) -> Tensor:
        if any(z.requires_grad for z in zs):
            return self.head(*zs)
        with torch.no_grad():
            return self.head(*zs)


def test_a_share_that_cannot_be_applied_is_said_once() -> None:
    model, xs, perms = build(3, seed=2)  # M = 3: the shares differ by subset, a second pass
    mcr = MCRRegularizer(
        NoGradientOnDetachedInputs(model.head),
        strategy="independent",
        contrastive=False,
        unimodal=False,
    )
    labels = torch.zeros(xs[0].shape[0], dtype=torch.long)
    with pytest.warns(RuntimeWarning, match="could not apply the fusion head's share"):
        mcr(model.encode(xs), labels, permutations=perms)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mcr(model.encode(xs), labels, permutations=perms)


# --------------------------------------------------------------------------- function heads, later steps


@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("strategy", ["greedy", "independent", 0.5, "collaborative"])
def test_a_function_head_follows_the_game_on_every_step(m: int, strategy: str | float) -> None:
    """From the second step on, a function head whose parameters all sit in the modules it
    runs takes the one-pass route: the gradients stay those of the formula."""
    model, xs, perms = build(m, seed=m)
    k = MF.strategy_factor(strategy)
    expected = formula_grads(model, xs, perms, MF.enumerate_subsets(m), k, weight=0.3)
    mcr = MCRRegularizer(
        lambda *zs: model.head(*zs),
        strategy=k,
        mipd=MIPD(weight=0.3),
        contrastive=False,
        unimodal=False,
    )
    labels = torch.zeros(xs[0].shape[0], dtype=torch.long)
    for _ in range(3):
        assert_grads_equal(step_grads(model, mcr, xs, labels, perms), expected)


def test_a_function_head_runs_once_per_step_after_the_first() -> None:
    model, xs, perms = build(2, seed=1)
    counter = CallCounter(model.head)
    mcr = MCRRegularizer(lambda *zs: counter(*zs), contrastive=False, unimodal=False)
    labels = torch.zeros(xs[0].shape[0], dtype=torch.long)
    for _ in range(3):
        mcr(model.encode(xs), labels, permutations=perms).loss.backward()
    # the first step runs a second pass (and finds out); greedy M = 2 then needs one pass
    assert counter.calls == 2 + 1 + 1
    assert not any(True for _ in mcr.parameters())  # the head's modules are not MCR's


def test_a_function_head_with_a_parameter_outside_modules_keeps_two_passes() -> None:
    model, xs, perms = build(2, seed=4)
    scale = nn.Parameter(torch.tensor(1.5, dtype=torch.float64))

    def fuse(*zs: Tensor) -> Tensor:
        return model.head(*zs) * scale

    mcr = MCRRegularizer(fuse, strategy="independent", contrastive=False, unimodal=False)
    labels = torch.zeros(xs[0].shape[0], dtype=torch.long)
    grads = []
    for _ in range(3):
        model.zero_grad()
        scale.grad = None
        mcr(model.encode(xs), labels, permutations=perms).loss.backward()
        grads.append(scale.grad.clone())
    # independent, M = 2: the head's share is 1/2; every step gives the free parameter the same
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=0)
    torch.testing.assert_close(grads[2], grads[0], rtol=0, atol=0)
    mcr_sum = MCRRegularizer(
        fuse,
        strategy="independent",
        mipd=MIPD(head_gradient="sum"),
        contrastive=False,
        unimodal=False,
    )
    scale.grad = None
    mcr_sum(model.encode(xs), labels, permutations=perms).loss.backward()
    torch.testing.assert_close(grads[0], 0.5 * scale.grad)


class SharedLinear(nn.Module):
    """The same linear layer under two names: every parameter is reachable twice."""

    def __init__(self, dims: int, out_dim: int) -> None:
        super().__init__()
        self.first = nn.Linear(dims, out_dim).double()
        self.again = self.first

    def forward(self, *zs: Tensor) -> Tensor:
        return self.again(torch.cat(zs, dim=-1))


@pytest.mark.parametrize("closure", [False, True], ids=["module", "function"])
def test_a_head_with_a_shared_layer_keeps_leaf_parameters_and_its_share(closure: bool) -> None:
    model, xs, perms = build(2, seed=6)
    model.head = SharedLinear(10, 4)
    expected = formula_grads(model, xs, perms, MF.enumerate_subsets(2), 0.0, weight=0.3)
    got_all = []
    for _ in range(3):
        got, _ = mcr_grads(model, xs, perms, "all", 0.0, weight=0.3, closure=closure)
        got_all.append(got)
        assert all(p.is_leaf for p in model.parameters())
        assert_grads_equal(got, expected)
