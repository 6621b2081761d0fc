"""``perturbed_rows``: the row rules of the released code ("moved": rows some permutation of S
moves; "other_label": rows that receive a sample of another class), against a loop reference
that leaves the other rows out of each subset's mean, values and game gradients."""

from __future__ import annotations

import pytest
import torch

from mcr_reg import MCRRegularizer
from mcr_reg import functional as MF
from mcr_reg.terms import MIPD
from tests.mcr_reg.helpers import assert_grads_equal, build, ref_jsd


def counts(perms: torch.Tensor, labels: torch.Tensor, subset, p: int, b: int, rows: str) -> bool:
    moved = [int(perms[p, i, b]) != b for i in subset]
    other = [int(labels[perms[p, i, b]]) != int(labels[b]) for i in subset]
    return any(moved) if rows == "moved" else any(other)


def reference_subset_loss(model, xs, perms, subset, labels, rows: str) -> torch.Tensor:
    zs = model.encode(xs)
    ref = model.head(*zs)
    total, count = torch.zeros((), dtype=torch.float64), 0
    for p in range(perms.shape[0]):
        perturbed = [z[perms[p, i]] if i in subset else z for i, z in enumerate(zs)]
        d = ref_jsd(ref, model.head(*perturbed))
        for b in range(perms.shape[2]):
            if counts(perms, labels, subset, p, b, rows):
                total, count = total + d[b], count + 1
    return -total / count if count else total * 0.0


def formula(model, xs, perms, subsets, k: float, labels, rows: str):
    params = dict(model.named_parameters())
    expected = {n: torch.zeros_like(p) for n, p in params.items()}
    m = len(xs)
    for s in subsets:
        loss = reference_subset_loss(model, xs, perms, s, labels, rows)
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        players = [1.0 if i in s else k for i in range(m)]
        for (name, _), g in zip(params.items(), grads):
            if g is None:
                continue
            factor = (
                players[int(name.split(".")[1])]
                if name.startswith("encoders.")
                else sum(players) / m
            )
            expected[name] += factor * g
    return expected


@pytest.mark.parametrize("rows", ["moved", "other_label"])
@pytest.mark.parametrize("m", [2, 3])
@pytest.mark.parametrize("strategy", ["greedy", "independent"])
@pytest.mark.parametrize("head", ["module", "function"])
def test_rows_follow_the_loop_reference(rows: str, m: int, strategy: str, head: str) -> None:
    model, xs, _ = build(m, seed=m + 10, batch=5, draws=3)
    g = torch.Generator().manual_seed(3)
    perms = MF.sample_permutations(3, m, 5, generator=g)
    perms[0, 0] = torch.arange(5)  # an identity: no row of draw 0 moves modality 0
    labels = torch.tensor([0, 1, 0, 2, 1])
    k = MF.strategy_factor(strategy)
    subsets = MF.enumerate_subsets(m)
    expected = formula(model, xs, perms, subsets, k, labels, rows)
    fusion = model.head if head == "module" else (lambda *zs: model.head(*zs))
    mcr = MCRRegularizer(
        fusion,
        strategy=strategy,
        mipd=MIPD(weight=1.0, perturbed_rows=rows),
        contrastive=False,
        unimodal=False,
    )
    for _ in range(2):
        model.zero_grad()
        out = mcr(model.encode(xs), labels, permutations=perms)
        out.loss.backward()
        got = {
            n: p.grad if p.grad is not None else torch.zeros_like(p)
            for n, p in model.named_parameters()
        }
        assert_grads_equal(got, expected)
    ref_total = sum(
        float(reference_subset_loss(model, xs, perms, s, labels, rows).detach()) for s in subsets
    )
    assert abs(float(out.terms["mipd"]) - ref_total) < 1e-10


def test_all_rows_is_the_plain_mean() -> None:
    model, xs, perms = build(2, seed=1)
    labels = torch.zeros(6, dtype=torch.long)
    plain = MCRRegularizer(model.head, contrastive=False, unimodal=False)
    mask = MF.permutation_row_mask(perms, MF.enumerate_subsets(2), "moved")
    ones = torch.ones_like(mask)
    zs = model.encode(xs)
    a = plain(zs, labels, permutations=perms).terms["mipd"]
    b = -MF.mipd(model.head, zs, MF.enumerate_subsets(2), permutations=perms, row_weights=ones)[
        0
    ].sum()
    torch.testing.assert_close(a, b.detach())


def test_a_block_without_any_counted_row_gives_zero() -> None:
    model, xs, _ = build(2, seed=2, batch=4, draws=1)
    perms = torch.arange(4).expand(1, 2, 4).clone()  # identities only
    mcr = MCRRegularizer(
        model.head, mipd=MIPD(perturbed_rows="moved"), contrastive=False, unimodal=False
    )
    out = mcr(model.encode(xs), torch.zeros(4, dtype=torch.long), permutations=perms)
    assert float(out.terms["mipd"]) == 0.0 and bool(torch.isfinite(out.loss))


def test_rows_need_mcr_permutations() -> None:
    head = torch.nn.Linear(8, 3)
    with pytest.raises(ValueError, match="perturbation='noise'; use perturbation='permutation'"):
        MCRRegularizer(head, mipd=MIPD(perturbation="noise", perturbed_rows="moved"))
    with pytest.raises(ValueError, match="expected perturbed_rows in"):
        MCRRegularizer(head, mipd=MIPD(perturbed_rows="fixed"))  # type: ignore[arg-type]
    mcr = MCRRegularizer(
        lambda a, b: head(torch.cat([a, b], -1)), num_classes=3, mipd=MIPD(perturbed_rows="moved")
    )
    za, zb = torch.randn(4, 4), torch.randn(4, 4)
    with pytest.raises(ValueError, match="needs MCR's own permutations"):
        mcr([za, zb], torch.zeros(4, dtype=torch.long), perturbed_latents=[za[None], zb[None]])
