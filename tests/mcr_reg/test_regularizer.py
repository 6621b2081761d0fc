"""Tests of MCRRegularizer: outputs, terms, parameters, tasks, perturbations, errors."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from mcr_reg import MCROutput, MCRRegularizer
from mcr_reg import functional as MF
from mcr_reg.terms import CEB, MIPD, Contrastive, Unimodal
from tests.mcr_reg.helpers import ConcatHead, Toy, ref_jsd, ref_ntxent, ref_supcon

B = 6


def batch(m: int = 2, dim: int = 5, b: int = B, seed: int = 0, classes: int = 3, shape=None):
    g = torch.Generator().manual_seed(seed)
    shape = shape or (b, dim)
    zs = [torch.randn(shape, generator=g, requires_grad=True) for _ in range(m)]
    y = torch.randint(0, classes, (b,), generator=g)
    return zs, y


def head(m: int = 2, dim: int = 5, out: int = 3) -> ConcatHead:
    torch.manual_seed(0)
    return ConcatHead([dim] * m, out)


# --------------------------------------------------------------------------- basics


def test_default_construction_works_and_returns_typed_output() -> None:
    h = head()
    mcr = MCRRegularizer(h, strategy="greedy")
    zs, y = batch()
    out = mcr(zs, y)
    assert isinstance(out, MCROutput)
    assert out.loss.dim() == 0 and out.loss.requires_grad
    assert set(out.terms) == {"mipd", "contrastive"}  # no sizes given: no heads of MCR's own
    assert all(not t.requires_grad and t.dim() == 0 for t in out.terms.values())
    assert out.importance.shape == (2,) and not out.importance.requires_grad
    assert out.modalities == ("0", "1") and out.unimodal_logits is None
    assert list(mcr.parameters()) == []


def test_loss_is_the_weighted_sum_of_unweighted_terms() -> None:
    h = head()
    mcr = MCRRegularizer(
        h,
        num_classes=3,
        latent_dims=(5, 5),
        generator=torch.Generator().manual_seed(0),
        mipd=MIPD(weight=0.3),
        contrastive=Contrastive(weight=0.7),
        ceb=CEB(weight=0.2),
        unimodal=Unimodal(weight=0.05),
    )
    zs, y = batch()
    out = mcr(zs, y, h(*zs))
    t = out.terms
    expected = 0.3 * t["mipd"] + 0.7 * t["contrastive"] + 0.2 * t["ceb"] + 0.05 * t["unimodal"]
    torch.testing.assert_close(out.loss.detach(), expected)
    assert set(t) == {"mipd", "contrastive", "ceb", "unimodal"}


def test_terms_match_plain_references() -> None:
    h = head()
    zs, y = batch()
    perms = MF.sample_permutations(4, 2, B, generator=torch.Generator().manual_seed(3))
    mcr = MCRRegularizer(
        h,
        num_classes=3,
        latent_dims=(5, 5),
        contrastive=Contrastive(temperature=0.5),
        unimodal=Unimodal(weight=0.1),
    )
    out = mcr(zs, y, permutations=perms)
    with torch.no_grad():
        ref = h(*zs)
        per_subset = []
        for s in ((0,), (1,)):
            d = [
                ref_jsd(ref, h(*[z[perms[p, i]] if i in s else z for i, z in enumerate(zs)])).mean()
                for p in range(4)
            ]
            per_subset.append(torch.stack(d).mean())
        mipd = -sum(per_subset)
        con = ref_ntxent(torch.cat(zs), y.repeat(2), 0.5)
        uni = sum(F.cross_entropy(hd(z), y) for hd, z in zip(mcr.unimodal.heads, zs))
    torch.testing.assert_close(out.terms["mipd"].double(), mipd, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out.terms["contrastive"].double(), con, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.terms["unimodal"], uni)
    torch.testing.assert_close(
        out.importance.double(), torch.stack(per_subset), atol=1e-6, rtol=1e-6
    )
    assert len(out.unimodal_logits) == 2 and out.unimodal_logits[0].shape == (B, 3)


def test_supcon_is_one_keyword_away() -> None:
    zs, y = batch()
    out = MCRRegularizer(head(), num_classes=3, contrastive=Contrastive(kind="supcon"))(zs, y)
    expected = ref_supcon(torch.cat(zs), y.repeat(2), 0.5)
    torch.testing.assert_close(out.terms["contrastive"].double(), expected, atol=1e-5, rtol=1e-5)


def test_mapping_latents_keep_their_names_and_order() -> None:
    h = head()
    zs, y = batch()
    out = MCRRegularizer(h)({"audio": zs[0], "video": zs[1]}, y)
    assert out.modalities == ("audio", "video")


def test_importance_is_nan_for_modalities_without_singleton_term() -> None:
    h = head(3)
    zs, y = batch(3)
    out = MCRRegularizer(h, mipd=MIPD(subsets=[(0,), (1, 2)]))(zs, y)
    assert not math.isnan(float(out.importance[0]))
    assert math.isnan(float(out.importance[1])) and math.isnan(float(out.importance[2]))


def test_importance_tracks_the_modality_the_head_uses() -> None:
    lin = nn.Linear(10, 3)
    with torch.no_grad():
        lin.weight[:, 5:] = 0  # the head ignores modality 1
    out = MCRRegularizer(lambda a, b: lin(torch.cat([a, b], -1)))(*batch())
    assert float(out.importance[0]) > 0 and float(out.importance[1]) == 0.0


def test_logits_omitted_equals_logits_given() -> None:
    h = head()
    zs, y = batch()

    def mk() -> MCRRegularizer:
        return MCRRegularizer(
            h,
            num_classes=3,
            latent_dims=(5, 5),
            generator=torch.Generator().manual_seed(1),
            ceb=CEB(weight=1.0),
        )

    torch.manual_seed(0)
    a = mk()
    torch.manual_seed(0)
    b = mk()
    out_a, out_b = a(zs, y), b(zs, y, h(*zs))
    for key in out_a.terms:
        torch.testing.assert_close(out_a.terms[key], out_b.terms[key])


@pytest.mark.parametrize(
    ("shape", "axis"), [((B, 4, 5), "auto"), ((B, 5, 2, 3), "auto"), ((B, 5, 7), 1)]
)
def test_latents_of_any_shape(shape: tuple[int, ...], axis: object) -> None:
    def fuse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        pa, pb = MF.pool_latent(a, axis), MF.pool_latent(b, axis)  # type: ignore[arg-type]
        return lin(torch.cat([pa, pb], -1))

    lin = nn.Linear(10, 3)
    zs, y = batch(shape=shape)
    mcr = MCRRegularizer(
        fuse, num_classes=3, latent_dims=(5, 5), feature_axis=axis, ceb=CEB(weight=1.0)
    )  # type: ignore[arg-type]
    out = mcr(zs, y)
    out.loss.backward()
    assert all(z.grad is not None and z.grad.shape == shape for z in zs)


# --------------------------------------------------------------------------- tasks


def test_regression_gives_finite_non_zero_mipd() -> None:
    h = head(out=1)
    zs, _ = batch()
    y = torch.linspace(-3, 3, B)
    mcr = MCRRegularizer(h, task="regression", latent_dims=(5, 5), ceb=CEB(weight=1.0))
    out = mcr(zs, y)
    assert math.isfinite(float(out.terms["mipd"])) and float(out.terms["mipd"]) < 0
    assert set(out.terms) == {"mipd", "contrastive", "ceb", "unimodal"}
    out.loss.backward()
    assert all(bool(torch.isfinite(z.grad).all()) for z in zs)


def test_regression_contrastive_bins_labels_by_rounding() -> None:
    zs, _ = batch()
    y = torch.tensor([0.2, -0.1, 1.4, 0.6, 1.0, -2.7])
    out = MCRRegularizer(head(out=1), task="regression", mipd=False, unimodal=False)(zs, y)
    ref = ref_ntxent(torch.cat(zs).detach(), torch.round(y).long().repeat(2), 0.5)
    torch.testing.assert_close(out.terms["contrastive"].double(), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("label_shape", [(B,), (B, 1)])
def test_binary_single_logit(label_shape: tuple[int, ...]) -> None:
    h = head(out=1)
    zs, _ = batch()
    y = torch.tensor([0, 1, 1, 0, 1, 0]).float().reshape(label_shape)
    out = MCRRegularizer(h, task="binary", latent_dims=(5, 5))(zs, y, h(*zs))
    assert math.isfinite(float(out.terms["mipd"])) and float(out.terms["mipd"]) < 0
    assert float(out.importance.min()) > 0 and float(out.importance.max()) <= math.log(2)


# --------------------------------------------------------------------------- parameters


def test_parameters_never_include_the_fusion_head() -> None:
    model = Toy([3, 4], [5, 5], 3)
    mcr = MCRRegularizer(
        model.head,
        num_classes=3,
        latent_dims=(5, 5),
        contrastive=Contrastive(projection_dim=4),
        ceb=CEB(weight=1.0),
    )
    head_ids = {id(p) for p in model.head.parameters()}
    own = list(mcr.parameters())
    assert own and not head_ids & {id(p) for p in own}
    prefixes = ("ceb.head.", "contrastive.projections.", "unimodal.heads.")
    assert all(k.startswith(prefixes) or k == "_extra_state" for k in mcr.state_dict())
    # one optimizer over both sees every parameter once
    opt = torch.optim.Adam([*model.parameters(), *mcr.parameters()])
    ids = [id(p) for grp in opt.param_groups for p in grp["params"]]
    assert len(ids) == len(set(ids))


def test_parameters_are_created_in_init() -> None:
    mcr = MCRRegularizer(
        head(),
        num_classes=3,
        latent_dims=(5, 5),
        contrastive=Contrastive(projection_dim=4),
        ceb=CEB(weight=1.0),
    )
    names = {".".join(n.split(".")[:2]) for n, _ in mcr.named_parameters()}
    assert names == {"ceb.head", "contrastive.projections", "unimodal.heads"}


def test_gradients_reach_what_they_should_and_nothing_else() -> None:
    model = Toy([3, 4], [5, 5], 3)
    mcr = MCRRegularizer(
        model.head,
        num_classes=3,
        latent_dims=(5, 5),
        contrastive=Contrastive(projection_dim=4),
        ceb=CEB(weight=1.0),
    )
    xs = [torch.randn(B, 3), torch.randn(B, 4)]
    y = torch.randint(0, 3, (B,))
    zs = model.encode(xs)
    logits = model.head(*zs)
    (F.cross_entropy(logits, y) + mcr(zs, y, logits).loss).backward()
    for name, p in [*model.named_parameters(), *mcr.named_parameters()]:
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


def test_ceb_reads_the_logits_detached() -> None:
    model = Toy([3, 4], [5, 5], 3)
    mcr = MCRRegularizer(
        model.head,
        num_classes=3,
        latent_dims=(5, 5),
        mipd=False,
        contrastive=False,
        ceb=CEB(weight=1.0),
        unimodal=False,
    )
    zs = model.encode([torch.randn(B, 3), torch.randn(B, 4)])
    mcr(zs, torch.randint(0, 3, (B,)), model.head(*zs)).loss.backward()
    assert all(p.grad is None for p in model.head.parameters())  # no path through the prediction
    assert all(p.grad is not None for p in model.encoders.parameters())  # the latents are targets
    assert all(p.grad is not None for p in mcr.ceb.head.parameters())


def test_state_dict_round_trip() -> None:
    kw = dict(num_classes=3, latent_dims=(5, 5))
    h = head()
    torch.manual_seed(0)
    a = MCRRegularizer(h, seed=1, ceb=True, contrastive=Contrastive(projection_dim=4), **kw)
    torch.manual_seed(1)  # b starts with other weights and another seed
    b = MCRRegularizer(h, seed=2, ceb=True, contrastive=Contrastive(projection_dim=4), **kw)
    zs, y = batch()
    perms = MF.sample_permutations(3, 2, B, generator=torch.Generator().manual_seed(0))
    before = b(zs, y, permutations=perms).loss
    assert not torch.allclose(a(zs, y, permutations=perms).loss, before)
    b.load_state_dict(a.state_dict())
    params_a, params_b = a.state_dict(), b.state_dict()
    assert params_a.keys() == params_b.keys()
    for name in params_a:
        if name != "_extra_state":
            assert torch.equal(params_a[name], params_b[name]), name
    torch.testing.assert_close(a(zs, y, permutations=perms).loss, b(zs, y, permutations=perms).loss)


def test_generator_state_resumes_the_same_draws() -> None:
    """Save after one step, load into a fresh module with another seed: the draws continue."""
    zs, y = batch()
    h = head()
    a = MCRRegularizer(h, seed=5)
    a(zs, y)  # advances the private generator
    saved = a.state_dict()
    next_a = a(zs, y).loss
    b = MCRRegularizer(h, seed=99)
    b.load_state_dict(saved)
    assert torch.equal(b(zs, y).loss, next_a)
    fresh = MCRRegularizer(h, seed=99)
    assert not torch.equal(fresh(zs, y).loss, next_a)


def test_seed_makes_private_draws_reproducible() -> None:
    zs, y = batch()
    h = head()
    a, b, c = MCRRegularizer(h, seed=3), MCRRegularizer(h, seed=3), MCRRegularizer(h, seed=4)
    assert torch.equal(a(zs, y).loss, b(zs, y).loss)
    assert not torch.equal(a(zs, y).loss, c(zs, y).loss)
    assert torch.equal(a.manual_seed(3)(zs, y).loss, MCRRegularizer(h, seed=3)(zs, y).loss)


def test_user_generator_state_is_saved_and_restored() -> None:
    zs, y = batch()
    h = head()
    g = torch.Generator().manual_seed(11)
    a = MCRRegularizer(h, generator=g)
    saved = a.state_dict()
    first = a(zs, y).loss
    a.load_state_dict(saved)  # rewinds the user's generator
    assert torch.equal(a(zs, y).loss, first)


def test_bad_extra_state_is_a_clear_error() -> None:
    mcr = MCRRegularizer(head())
    state = mcr.state_dict()
    state["_extra_state"] = torch.zeros(3, dtype=torch.uint8)
    with pytest.raises(TypeError, match="expected MCR's extra state as a mapping"):
        mcr.load_state_dict(state)


def test_seeded_generator_is_deterministic_and_global_rng_untouched() -> None:
    zs, y = batch()
    h = head()
    torch.manual_seed(7)
    expected = torch.rand(2)
    torch.manual_seed(7)
    a = MCRRegularizer(h, generator=torch.Generator().manual_seed(42))(zs, y)
    assert torch.equal(torch.rand(2), expected)
    b = MCRRegularizer(h, generator=torch.Generator().manual_seed(42))(zs, y)
    c = MCRRegularizer(h, generator=torch.Generator().manual_seed(43))(zs, y)
    assert torch.equal(a.loss, b.loss) and not torch.equal(a.loss, c.loss)


def test_private_generator_leaves_global_rng_alone() -> None:
    zs, y = batch()
    h = head()
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    MCRRegularizer(h, mipd=MIPD(perturbation="noise"))(zs, y)
    assert torch.equal(torch.rand(2), expected)


# --------------------------------------------------------------------------- batching


def test_one_batched_fusion_call_per_step() -> None:
    calls: list[int] = []
    h = head(3)

    def counting(*zs: torch.Tensor) -> torch.Tensor:
        calls.append(zs[0].shape[0])
        return h(*zs)

    zs, y = batch(3)
    MCRRegularizer(counting, mipd=MIPD(num_permutations=4, head_gradient="sum"))(zs, y)
    # 6 subsets, one reference each + 4 draws each, B rows per block: all in one call
    assert calls == [(6 + 6 * 4) * B]
    calls.clear()
    MCRRegularizer(
        counting, mipd=MIPD(num_permutations=4, detach_reference=True, head_gradient="sum")
    )(zs, y)
    assert calls == [(1 + 6 * 4) * B]
    calls.clear()
    # the head's share c(S) for a plain function: a second batched pass on detached inputs
    MCRRegularizer(counting, mipd=MIPD(num_permutations=4))(zs, y)
    assert calls == [(6 + 6 * 4) * B] * 2
    calls.clear()
    MCRRegularizer(counting, strategy="collaborative", mipd=MIPD(num_permutations=4))(zs, y)
    assert calls == [(6 + 6 * 4) * B]  # c(S) = 1: nothing extra


def test_module_head_with_one_share_runs_once() -> None:
    """Greedy with two modalities: c(S) = 0 for both subsets; a module head runs once, with
    its parameters detached (torch.func.functional_call)."""
    h = head()
    sizes: list[int] = []
    h.register_forward_pre_hook(lambda _m, args: sizes.append(args[0].shape[0]))
    zs, y = batch()
    MCRRegularizer(h, mipd=MIPD(num_permutations=4), contrastive=False)(zs, y)
    assert sizes == [(2 + 2 * 4) * B]


def test_second_pass_replays_dropout_masks() -> None:
    """A plain-function head with dropout, greedy, M = 2: c(S) = 0, so the head's parameters
    must get exactly nothing from MIPD, which needs the same dropout masks in both passes."""
    lin = nn.Linear(10, 3)
    drop = nn.Dropout(0.5)

    def fuse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return lin(drop(torch.cat([a, b], -1)))

    zs, y = batch()
    mcr = MCRRegularizer(fuse, mipd=MIPD(num_permutations=4), contrastive=False, unimodal=False)
    out = mcr(zs, y)
    out.loss.backward()
    assert float(out.terms["mipd"].abs()) > 0
    assert torch.equal(lin.weight.grad, torch.zeros_like(lin.weight))
    assert all(float(z.grad.abs().sum()) > 0 for z in zs)


def test_batchnorm_head_falls_back_to_per_block_calls_and_warns_once() -> None:
    class BNHead(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = nn.BatchNorm1d(10)
            self.lin = nn.Linear(10, 3)
            self.sizes: list[int] = []

        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            self.sizes.append(a.shape[0])
            return self.lin(self.bn(torch.cat([a, b], -1)))

    bn_head = BNHead()
    mcr = MCRRegularizer(bn_head, mipd=MIPD(num_permutations=2))
    zs, y = batch()
    with pytest.warns(RuntimeWarning, match="BatchNorm"):
        mcr(zs, y)
    assert set(bn_head.sizes) == {B}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        mcr(zs, y)  # warned once only
    bn_head.eval()
    bn_head.sizes.clear()
    mcr(zs, y)
    assert bn_head.sizes == [(2 + 2 * 2) * B]  # eval mode: batch-independent, one call


def test_batched_and_per_block_agree() -> None:
    h = head(3)
    zs, y = batch(3)
    perms = MF.sample_permutations(3, 3, B, generator=torch.Generator().manual_seed(0))
    a = MCRRegularizer(h, batched=True)(zs, y, permutations=perms)
    b = MCRRegularizer(h, batched=False)(zs, y, permutations=perms)
    torch.testing.assert_close(a.loss, b.loss)
    ga = torch.autograd.grad(a.loss, zs)
    gb = torch.autograd.grad(b.loss, zs)
    for x, z in zip(ga, gb):
        torch.testing.assert_close(x, z)


# --------------------------------------------------------------------------- perturbations


def test_zero_perturbation_uses_one_draw() -> None:
    calls: list[int] = []
    h = head()

    def counting(*zs: torch.Tensor) -> torch.Tensor:
        calls.append(zs[0].shape[0])
        return h(*zs)

    zs, y = batch()
    out = MCRRegularizer(counting, mipd=MIPD(perturbation="zero", head_gradient="sum"))(zs, y)
    assert calls == [(2 + 2) * B]
    with torch.no_grad():
        ref = h(*zs)
        expect0 = ref_jsd(ref, h(torch.zeros_like(zs[0]), zs[1])).mean()
    torch.testing.assert_close(out.importance[0].double(), expect0, atol=1e-6, rtol=1e-6)


def test_noise_perturbation_is_finite_and_seeded() -> None:
    zs, y = batch()
    h = head()
    a = MCRRegularizer(
        h, generator=torch.Generator().manual_seed(0), mipd=MIPD(perturbation="noise")
    )(zs, y)
    b = MCRRegularizer(
        h, generator=torch.Generator().manual_seed(0), mipd=MIPD(perturbation="noise")
    )(zs, y)
    assert torch.equal(a.loss, b.loss) and math.isfinite(float(a.loss))
    assert float(a.importance.min()) > 0


def test_user_supplied_perturbed_latents() -> None:
    zs, y = batch()
    h = head()
    perms = MF.sample_permutations(3, 2, B, generator=torch.Generator().manual_seed(0))
    # handing in the permuted latents by hand gives exactly the permutation result
    by_hand = [torch.stack([z[perms[p, i]] for p in range(3)]) for i, z in enumerate(zs)]
    a = MCRRegularizer(h)(zs, y, permutations=perms)
    b = MCRRegularizer(h)(zs, y, perturbed_latents=by_hand)
    c = MCRRegularizer(h)(zs, y, permutations=perms, perturbed_latents={"1": by_hand[1]})
    torch.testing.assert_close(a.loss, b.loss)
    torch.testing.assert_close(a.loss, c.loss)


# --------------------------------------------------------------------------- precision


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cpu_autocast_gives_finite_loss_and_gradients(dtype: torch.dtype) -> None:
    model = Toy([3, 4], [5, 5], 3)
    mcr = MCRRegularizer(model.head, num_classes=3, latent_dims=(5, 5), ceb=CEB(weight=1.0))
    xs = [torch.randn(B, 3), torch.randn(B, 4)]
    y = torch.randint(0, 3, (B,))
    with torch.autocast("cpu", dtype=dtype):
        zs = model.encode(xs)
        logits = model.head(*zs)
        loss = F.cross_entropy(logits, y) + mcr(zs, y, logits).loss
    assert loss.dtype == torch.float32 and math.isfinite(float(loss))
    loss.backward()
    for name, p in [*model.named_parameters(), *mcr.named_parameters()]:
        assert p.grad is not None and bool(torch.isfinite(p.grad).all()), name


def test_float64_end_to_end() -> None:
    model = Toy([3, 4], [5, 5], 3).double()
    mcr = MCRRegularizer(
        model.head, num_classes=3, latent_dims=(5, 5), ceb=CEB(weight=1.0)
    ).double()
    zs = model.encode(
        [torch.randn(B, 3, dtype=torch.float64), torch.randn(B, 4, dtype=torch.float64)]
    )
    out = mcr(zs, torch.randint(0, 3, (B,)))
    out.loss.backward()
    assert math.isfinite(float(out.loss))


@settings(max_examples=25, deadline=None)
@given(
    m=st.integers(2, 4),
    b=st.integers(2, 7),
    p=st.integers(1, 4),
    t=st.integers(0, 3),
    strategy=st.sampled_from(["greedy", "independent", "collaborative", 0.5]),
    dtype=st.sampled_from([torch.float32, torch.float64]),
    task=st.sampled_from(["classification", "regression", "binary"]),
)
def test_property_shapes_and_finiteness(m, b, p, t, strategy, dtype, task) -> None:
    out_dim = 4 if task == "classification" else 1
    torch.manual_seed(b * 10 + m)
    h = ConcatHead([3] * m, out_dim).to(dtype)
    shape = (b, 3) if t == 0 else (b, t, 3)
    zs = [torch.randn(shape, dtype=dtype, requires_grad=True) for _ in range(m)]
    if task == "classification":
        y = torch.randint(0, 4, (b,))
    elif task == "binary":
        y = torch.randint(0, 2, (b,)).to(dtype)
    else:
        y = torch.randn(b, dtype=dtype)
    mcr = MCRRegularizer(
        h,
        strategy=strategy,
        task=task,
        latent_dims=[3] * m,
        num_classes=4 if task == "classification" else None,
        mipd=MIPD(num_permutations=p),
        ceb=CEB(weight=0.5),
    ).to(dtype)
    out = mcr(zs, y)
    assert out.importance.shape == (m,)
    assert len(MF.enumerate_subsets(m)) == 2**m - 2
    assert math.isfinite(float(out.loss))
    out.loss.backward()
    assert all(bool(torch.isfinite(z.grad).all()) for z in zs)
    if task != "regression":
        assert float(out.importance.max()) <= math.log(2) + 1e-6
    assert float(out.importance.min()) >= 0


# --------------------------------------------------------------------------- errors


def make(**kw):
    return MCRRegularizer(head(), **kw)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (lambda: {"strategy": "selfish"}, ValueError, "expected strategy in"),
        (lambda: {"task": "ranking"}, ValueError, "expected task in"),
        (lambda: {"mipd": MIPD(perturbation="blur")}, ValueError, "expected perturbation in"),  # type: ignore[arg-type]
        (lambda: {"mipd": MIPD(subsets="pairs")}, ValueError, "expected subsets 'all'"),  # type: ignore[arg-type]
        (lambda: {"mipd": MIPD(subsets=[(0, 1)]), "latent_dims": (5, 5)}, ValueError, "proper subsets"),
        (lambda: {"mipd": MIPD(num_permutations=0)}, ValueError, "num_permutations >= 1"),
        (lambda: {"mipd": MIPD(num_permutations=2.5)}, TypeError, "num_permutations to be an int"),  # type: ignore[arg-type]
        (lambda: {"mipd": MIPD(weight=-1.0)}, ValueError, "the mipd weight to be a finite number >= 0"),
        (lambda: {"contrastive": Contrastive(temperature=0.0)}, ValueError, "positive temperature"),
        (lambda: {"num_classes": 1}, ValueError, "num_classes >= 2"),
        (lambda: {"task": "regression", "num_classes": 3}, ValueError, "num_classes must be None or 1"),
        (lambda: {"latent_dims": (5,)}, ValueError, "at least two modalities"),
        (lambda: {"latent_dims": (5, 0)}, ValueError, "positive integer latent_dims"),
        (lambda: {"latent_dims": (5, 7)}, ValueError, r"set Contrastive\(projection_dim=...\)"),
        (lambda: {"ceb": True}, ValueError, "the CEB term needs latent_dims and num_classes"),
        (lambda: {"ceb": CEB(), "latent_dims": (5, 5)}, ValueError, "the CEB term needs num_classes"),
        (lambda: {"contrastive": Contrastive(projection_dim=4)}, ValueError, "projection_dim needs latent_dims"),
        (lambda: {"generator": 3}, TypeError, "torch.Generator"),
        (lambda: {"mipd": "yes"}, TypeError, "expected mipd= to be a MIPD, True"),
    ],
)  # fmt: skip
def test_constructor_errors(
    kwargs: Callable[[], dict[str, object]], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        make(**kwargs())


def test_fusion_head_must_be_callable() -> None:
    with pytest.raises(TypeError, match="fusion_head to be callable"):
        MCRRegularizer(42)  # type: ignore[arg-type]


def test_unequal_widths_with_projection_work() -> None:
    lin = nn.Linear(12, 3)
    mcr = MCRRegularizer(
        lambda a, b: lin(torch.cat([a, b], -1)),
        latent_dims=(5, 7),
        contrastive=Contrastive(projection_dim=4),
    )
    zs = [torch.randn(B, 5, requires_grad=True), torch.randn(B, 7, requires_grad=True)]
    out = mcr(zs, torch.randint(0, 3, (B,)))
    out.loss.backward()
    assert all(p.grad is not None for p in mcr.contrastive.projections.parameters())


# Inputs of the bad-input tests, which fail before any backward: read-only, without gradients.
_zs, y_ok = batch()
zs_ok = [z.detach() for z in _zs]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda m: m([zs_ok[0]], y_ok), ValueError, "at least two modalities"),
        (lambda m: m(torch.stack(zs_ok), y_ok), TypeError, "sequence or a name->tensor mapping"),
        (
            lambda m: m([zs_ok[0], "video"], y_ok),
            TypeError,
            r"latent 1 to be a torch.Tensor, got str",
        ),
        (
            lambda m: m([zs_ok[0], zs_ok[1][:4]], y_ok),
            ValueError,
            re.escape(
                "expected latents with the same batch size, got 0 (6, 5) and 1 (4, 5)"
            ).replace(" and", ","),
        ),
        (lambda m: m([z[:1] for z in zs_ok], y_ok[:1]), ValueError, "batch of at least 2"),
        (
            lambda m: m([zs_ok[0], torch.ones(B, 5, dtype=torch.long)], y_ok),
            TypeError,
            "floating-point latents",
        ),
        (
            lambda m: m([zs_ok[0], torch.randn(B)], y_ok),
            ValueError,
            "batch-first latents with a feature axis",
        ),
        (lambda m: m(zs_ok, y_ok[:4]), ValueError, r"class labels of shape \(6,\), got \(4,\)"),
        (
            lambda m: m(zs_ok, y_ok.float()),
            TypeError,
            "integer class labels, got dtype torch.float32",
        ),
        (
            lambda m: m(zs_ok, y_ok + 5),
            ValueError,
            r"labels in \[0, 2\], got values in \[[5-7], [5-7]\]",
        ),
        (
            lambda m: m(zs_ok, y_ok, torch.randn(B, 4)),
            ValueError,
            r"num_classes=3 columns, got \(6, 4\)",
        ),
        (lambda m: m(zs_ok, y_ok, torch.randn(B)), ValueError, r"logits of shape \(6, C\)"),
        (
            lambda m: m(zs_ok, y_ok, permutations=torch.zeros(2, 2, B)),
            TypeError,
            "permutations of dtype torch.int64",
        ),
        (
            lambda m: m(zs_ok, y_ok, permutations=torch.zeros(2, 3, B, dtype=torch.long)),
            ValueError,
            r"permutations of shape \(P, 2, 6\), got \(2, 3, 6\)",
        ),
        (
            lambda m: m(zs_ok, y_ok, permutations=torch.zeros(2, 2, B, dtype=torch.long)),
            ValueError,
            "to be a permutation of range",
        ),
        (
            lambda m: m(zs_ok, y_ok, unimodal_logits=[torch.randn(B, 3)]),
            ValueError,
            "MCR owns unimodal heads",
        ),
        (
            lambda m: m(zs_ok, y_ok, perturbed_latents=[torch.randn(2, B, 4), None]),
            ValueError,
            r"perturbed_latents\['0'\] of shape \(P, 6, 5\)",
        ),
        (
            lambda m: m(zs_ok, y_ok, perturbed_latents={"x": torch.randn(2, B, 5)}),
            ValueError,
            "not modalities",
        ),
        (
            lambda m: m([torch.randn(B, 5), torch.randn(B, 6)], y_ok),
            ValueError,
            r"latent widths \(5, 5\)",
        ),
        (
            lambda m: m([torch.randn(B, 5)] * 3, y_ok),
            ValueError,
            r"expected 2 modalities \(latent_dims",
        ),
    ],
)
def test_forward_errors(call, error: type[Exception], match: str) -> None:
    mcr = MCRRegularizer(head(), num_classes=3, latent_dims=(5, 5))
    with pytest.raises(error, match=match):
        call(mcr)


def test_forward_errors_without_sizes() -> None:
    lin = nn.Linear(11, 3)
    mcr = MCRRegularizer(lambda a, b: lin(torch.cat([a, b], -1)))
    with pytest.raises(
        ValueError, match="latents of one width for the contrastive term, got 0 5, 1 6"
    ):
        mcr([torch.randn(B, 5), torch.randn(B, 6)], y_ok)
    with pytest.raises(TypeError, match="unimodal_logits"):
        MCRRegularizer(head(), unimodal=Unimodal(weight=0.1))(
            zs_ok, y_ok, unimodal_logits=[torch.randn(B, 3), 3]
        )


def test_fusion_head_with_wrong_output_shape() -> None:
    bad = MCRRegularizer(lambda a, b: torch.cat([a, b], -1)[:5], num_classes=3)
    with pytest.raises(ValueError, match=r"predictions with \d+ rows"):
        bad(zs_ok, y_ok)
    wrong_classes = MCRRegularizer(lambda a, b: torch.cat([a, b], -1), num_classes=3)
    with pytest.raises(
        ValueError, match=r"fusion head to output 3 values per sample .* got \(6, 10\)"
    ):
        wrong_classes(zs_ok, y_ok)
    regression = MCRRegularizer(head(out=3), task="regression")
    with pytest.raises(ValueError, match="one value per sample"):
        regression(zs_ok, torch.randn(B))


def test_task_specific_label_errors() -> None:
    with pytest.raises(TypeError, match="floating-point regression targets"):
        MCRRegularizer(head(out=1), task="regression")(zs_ok, y_ok)
    with pytest.raises(ValueError, match="binary labels with values 0 or 1"):
        MCRRegularizer(head(out=1), task="binary")(zs_ok, y_ok.float())
    with pytest.raises(ValueError, match=r"regression labels of shape \(6,\) or \(6, 1\)"):
        MCRRegularizer(head(out=1), task="regression")(zs_ok, torch.randn(B, 2))


def test_value_checks_off_accept_indices_the_checks_reject() -> None:
    """Index tensors that are not permutations raise with value checks on and pass with them
    off (the forward then returns a finite loss). That no value is read on the host with
    checks off is tested in test_sync_free.py."""
    bad_perms = torch.zeros(2, 2, B, dtype=torch.long)
    with pytest.raises(ValueError, match="to be a permutation of range"):
        MCRRegularizer(head(), num_classes=3)(zs_ok, y_ok, permutations=bad_perms)
    out = MCRRegularizer(head(), num_classes=3, check_values=False)(
        zs_ok, y_ok, permutations=bad_perms
    )
    assert torch.isfinite(out.loss)


def test_check_finite() -> None:
    z = torch.randn(B, 5)
    z[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"finite values in latent '1', found 1 NaN/Inf"):
        MCRRegularizer(head(), check_finite=True)([zs_ok[0], z], y_ok)


def test_permutations_only_with_permutation_perturbation() -> None:
    with pytest.raises(ValueError, match="only used with perturbation='permutation'"):
        MCRRegularizer(head(), mipd=MIPD(perturbation="noise"))(
            zs_ok, y_ok, permutations=MF.sample_permutations(2, 2, B)
        )


def test_errors_come_before_any_work() -> None:
    calls: list[int] = []

    def counting(*zs: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return head()(*zs)

    with pytest.raises(ValueError):
        MCRRegularizer(counting, num_classes=3)(zs_ok, y_ok + 3)
    assert calls == []
