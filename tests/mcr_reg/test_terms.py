"""The terms as modules (mcr_reg.terms): the term objects compute what the flat keywords
compute, bit for bit; the flat keywords and attributes still work for one release and say how
to write them now; a term or a divergence of one's own is one new class or function;
old state_dicts load."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from mcr_reg import MCRRegularizer
from mcr_reg import functional as MF
from mcr_reg.terms import CEB, MIPD, Contrastive, StepInputs, Term, Unimodal

M, D, B, C = 3, 4, 8, 4


def _model(seed: int, out: int = C) -> tuple[nn.ModuleList, nn.Sequential, list[Tensor]]:
    torch.manual_seed(seed)
    encoders = nn.ModuleList(nn.Linear(3 + i, D) for i in range(M)).double()
    head = nn.Sequential(nn.Linear(M * D, 6), nn.Tanh(), nn.Linear(6, out)).double()
    xs = [torch.randn(B, 3 + i, dtype=torch.float64) for i in range(M)]
    return encoders, head, xs


def _run(mcr: MCRRegularizer, seed: int, task: str = "classification") -> dict[str, Any]:
    """Two steps; the loss, the terms and every gradient."""
    out_dim = C if task == "classification" else 1
    encoders, head, xs = _model(seed, out_dim)
    mcr._fusion.head = mcr._fusion.call.head = _Fused(head)  # the same head for both spellings
    params = [*encoders.parameters(), *head.parameters(), *mcr.parameters()]
    y = torch.arange(B) % C if task == "classification" else (torch.arange(B) % 2).double()
    found: dict[str, Any] = {}
    for step in range(2):
        for p in params:
            p.grad = None
        zs = [e(x) for e, x in zip(encoders, xs)]
        result = mcr(zs, y, head(torch.cat(zs, dim=-1)))
        result.loss.backward()
        found[f"{step}/loss"] = result.loss.detach()
        found.update({f"{step}/{k}": v for k, v in result.terms.items()})
        found.update({f"{step}/grad{i}": p.grad for i, p in enumerate(params)})
    return found


class _Fused(nn.Module):
    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, *zs: Tensor) -> Tensor:
        return self.head(torch.cat(zs, dim=-1))  # type: ignore[no-any-return]


FLAT_AND_NEW = [
    (
        dict(mipd_weight=1.0, num_permutations=3, subsets="singletons", contrastive_weight=0.0),
        dict(mipd=MIPD(weight=1.0, num_permutations=3, subsets="singletons"), contrastive=False),
    ),
    (
        dict(strategy="independent", temperature=0.2, contrastive="supcon", projection_dim=5,
             ceb_weight=0.5, ceb_hidden_dim=16, unimodal_weight=0.3, detach_reference=True),
        dict(strategy="independent", mipd=MIPD(detach_reference=True),
             contrastive=Contrastive(kind="supcon", temperature=0.2, projection_dim=5),
             ceb=CEB(weight=0.5, hidden_dim=16), unimodal=Unimodal(weight=0.3)),
    ),
    (
        dict(strategy=0.37, perturbation="noise", noise_scale=0.5, head_gradient="sum",
             unimodal_weight=0.0, ceb_weight=1.0),
        dict(strategy=0.37, mipd=MIPD(perturbation="noise", noise_scale=0.5, head_gradient="sum"),
             unimodal=False, ceb=True),
    ),
    (
        dict(perturbed_rows="moved", sampled_subsets=2, subsets="sampled", mipd_weight=0.3),
        dict(mipd=MIPD(weight=0.3, perturbed_rows="moved", subsets="sampled", sampled_subsets=2)),
    ),
]  # fmt: skip


@pytest.mark.parametrize("flat,new", FLAT_AND_NEW)
def test_the_terms_compute_what_the_flat_keywords_computed_bit_for_bit(
    flat: dict[str, Any], new: dict[str, Any]
) -> None:
    common = dict(num_classes=C, latent_dims=(D,) * M, seed=3)
    with pytest.warns(DeprecationWarning, match="deprecated since 0.3"):
        flat_style = MCRRegularizer(nn.Identity(), **common, **flat).double()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        new_style = MCRRegularizer(nn.Identity(), **common, **new).double()
    new_style.load_state_dict(flat_style.state_dict())
    got, expected = _run(new_style, 0), _run(flat_style, 0)
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert (value is None and got[key] is None) or torch.equal(got[key], value), key


def test_the_deprecation_names_the_new_spelling_and_the_call_site() -> None:
    with pytest.warns(DeprecationWarning) as caught:
        MCRRegularizer(nn.Identity(), num_classes=C, mipd_weight=1.0, contrastive_weight=0.0)
    message = str(caught[0].message)
    assert "mipd=MIPD(weight=1.0)" in message and "contrastive=False" in message
    assert caught[0].filename == __file__


def test_flat_keywords_and_their_term_together_are_refused() -> None:
    with pytest.raises(TypeError, match="give the options to the MIPD object only"):
        MCRRegularizer(nn.Identity(), num_classes=C, mipd=MIPD(), num_permutations=4)
    with pytest.raises(TypeError, match="unexpected keyword argument 'temprature'"):
        MCRRegularizer(nn.Identity(), num_classes=C, temprature=0.1)
    with pytest.raises(TypeError, match="expected contrastive= to be a Contrastive"):
        MCRRegularizer(nn.Identity(), num_classes=C, contrastive=MIPD())


def test_flat_attributes_read_and_write_the_terms_with_a_warning() -> None:
    mcr = MCRRegularizer(nn.Identity(), num_classes=C, latent_dims=(D, D))
    with pytest.warns(DeprecationWarning, match=r"use mcr.unimodal.heads"):
        assert mcr.unimodal_heads is mcr.unimodal.heads  # type: ignore[union-attr]
    with pytest.warns(DeprecationWarning, match=r"use mcr.ceb.weight"):
        assert mcr.ceb_weight == 0.0  # no CEB term: its weight reads 0
    with pytest.warns(DeprecationWarning):
        mcr.gather_distributed = True
    assert mcr.contrastive is not None and mcr.contrastive.gather_distributed
    with pytest.warns(DeprecationWarning), pytest.raises(AttributeError, match="no ceb term"):
        mcr.ceb_weight = 1.0


def test_a_state_dict_saved_before_the_terms_loads() -> None:
    mcr = MCRRegularizer(nn.Identity(), num_classes=C, latent_dims=(D, 5),
                         contrastive=Contrastive(projection_dim=3), ceb=True)  # fmt: skip
    now = mcr.state_dict()
    before = {
        k.replace("contrastive.projections.", "projections.")
        .replace("ceb.head.", "ceb_head.")
        .replace("unimodal.heads.", "unimodal_heads."): v.clone() if isinstance(v, Tensor) else v
        for k, v in now.items()
    }
    assert "unimodal_heads.0.weight" in before and "ceb_head.net.0.weight" in before
    fresh = MCRRegularizer(nn.Identity(), num_classes=C, latent_dims=(D, 5),
                           contrastive=Contrastive(projection_dim=3), ceb=True)  # fmt: skip
    fresh.load_state_dict(before)
    for key, value in now.items():
        if isinstance(value, Tensor):
            assert torch.equal(fresh.state_dict()[key], value), key


class Spread(Term):
    """A term of one's own: the negative variance of the pooled latents (one file's worth)."""

    name = "spread"

    def forward(self, step: StepInputs) -> Tensor:
        return -torch.stack([z.var(dim=0).mean() for z in step.pooled]).sum()


def test_a_term_of_ones_own_is_added_with_its_weight() -> None:
    encoders, head, xs = _model(0)
    zs = [e(x) for e, x in zip(encoders, xs)]
    y = torch.arange(B) % C
    plain = MCRRegularizer(_Fused(head), num_classes=C, seed=0, unimodal=False)
    extra = MCRRegularizer(_Fused(head), num_classes=C, seed=0, unimodal=False,
                           extra_terms=[Spread(weight=0.5)])  # fmt: skip
    a, b = plain(zs, y), extra(zs, y)
    assert list(b.terms) == ["mipd", "contrastive", "spread"]
    torch.testing.assert_close(b.loss, a.loss + 0.5 * b.terms["spread"], rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="distinct names"):
        MCRRegularizer(_Fused(head), num_classes=C, extra_terms=[MIPD()])


def test_a_divergence_of_ones_own_is_a_function() -> None:
    encoders, head, xs = _model(1)
    y = torch.arange(B) % C
    results = []
    for divergence in (None, "jsd", MF.jensen_shannon, lambda p, q: 2 * MF.jensen_shannon(p, q)):
        zs = [e(x) for e, x in zip(encoders, xs)]
        mcr = MCRRegularizer(_Fused(head), num_classes=C, seed=0, contrastive=False,
                             unimodal=False, mipd=MIPD(weight=1.0, divergence=divergence))  # fmt: skip
        results.append(mcr(zs, y).terms["mipd"])
    assert torch.equal(results[0], results[1])  # the built-in block JSD
    torch.testing.assert_close(results[2], results[0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(results[3], 2 * results[0], rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="expected divergence in"):
        MIPD(divergence="kl")  # type: ignore[arg-type]


def test_a_term_belongs_to_one_regularizer() -> None:
    shared = Unimodal(weight=1.0)
    MCRRegularizer(nn.Identity(), num_classes=C, latent_dims=(D, D), unimodal=shared)
    with pytest.raises(ValueError, match="already belongs to another regularizer"):
        MCRRegularizer(nn.Identity(), num_classes=C, latent_dims=(D, D), unimodal=shared)


def test_a_term_left_out_creates_no_parameters_and_a_zero_weight_leaves_it_out() -> None:
    mcr = MCRRegularizer(nn.Identity(), num_classes=C, latent_dims=(D, D),
                         contrastive=Contrastive(weight=0.0, projection_dim=3),
                         unimodal=False)  # fmt: skip
    assert mcr.contrastive is None and mcr.unimodal is None
    assert list(mcr.parameters()) == [] and list(mcr.terms) == ["mipd"]


def test_the_ceb_term_says_what_it_needs() -> None:
    with pytest.raises(ValueError, match="the CEB term needs latent_dims and num_classes"):
        MCRRegularizer(nn.Identity(), ceb=True)
