"""Tests of mcr_reg.functional: divergences, contrastive loss, gradient scaling, sampling."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mcr_reg import functional as MF
from mcr_reg.functional.divergence import _BlockJensenShannon
from tests.mcr_reg.helpers import ref_jsd, ref_ntxent, ref_supcon

LN2 = math.log(2.0)


def logits_tensor(seed: int, shape: tuple[int, ...], scale: float = 3.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * scale


# ------------------------------------------------------------------------- JSD


class TestJensenShannon:
    def test_matches_reference(self) -> None:
        a, b = logits_tensor(0, (16, 7)), logits_tensor(1, (16, 7))
        torch.testing.assert_close(
            MF.jensen_shannon(a, b).double(), ref_jsd(a, b), atol=1e-6, rtol=1e-5
        )

    @settings(max_examples=60, deadline=None)
    @given(
        seed=st.integers(0, 10_000),
        rows=st.integers(1, 6),
        classes=st.integers(2, 9),
        scale=st.sampled_from([0.1, 1.0, 10.0, 100.0]),
    )
    def test_symmetric_and_bounded(self, seed: int, rows: int, classes: int, scale: float) -> None:
        a, b = (
            logits_tensor(seed, (rows, classes), scale),
            logits_tensor(seed + 1, (rows, classes), scale),
        )
        ab, ba = MF.jensen_shannon(a, b), MF.jensen_shannon(b, a)
        torch.testing.assert_close(ab, ba)
        assert bool((ab >= 0).all()) and bool((ab <= LN2).all())

    @settings(max_examples=40, deadline=None)
    @given(seed=st.integers(0, 10_000), shift=st.floats(-50, 50))
    def test_zero_iff_equal_distributions(self, seed: int, shift: float) -> None:
        a = logits_tensor(seed, (4, 5))
        # identical inputs give exactly zero; equal distributions (softmax is shift invariant)
        # give zero up to float32 rounding of the log-softmax
        assert torch.equal(MF.jensen_shannon(a, a.clone()), torch.zeros(4))
        assert float(MF.jensen_shannon(a, a + shift).max()) < 1e-6
        b = a.clone()
        b[:, 0] += 1.0  # different distributions give a positive value
        assert bool((MF.jensen_shannon(a, b) > 0).all())

    def test_extreme_logits_are_finite_with_finite_gradients(self) -> None:
        a = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 3.0]], requires_grad=True)
        b = torch.tensor([[-1e4, 1e4, 0.0], [-1e4, 1e4, 3.0]], requires_grad=True)
        d = MF.jensen_shannon(a, b)
        assert bool(torch.isfinite(d).all())
        assert abs(float(d[0].detach()) - LN2) < 1e-6 and float(d[1].detach()) == 0.0
        d.sum().backward()
        assert bool(torch.isfinite(a.grad).all()) and bool(torch.isfinite(b.grad).all())

    def test_minus_inf_logits(self) -> None:
        a = torch.tensor([[0.0, float("-inf"), 1.0]])
        b = torch.tensor([[0.0, float("-inf"), -1.0]])
        d = MF.jensen_shannon(a, b)
        assert bool(torch.isfinite(d).all()) and float(d) > 0

    @pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
    def test_low_precision_inputs_are_computed_in_float32(self, dtype: torch.dtype) -> None:
        a, b = logits_tensor(3, (8, 6), 30.0), logits_tensor(4, (8, 6), 30.0)
        d = MF.jensen_shannon(a.to(dtype), b.to(dtype))
        assert d.dtype == torch.float32
        assert bool(torch.isfinite(d).all())
        torch.testing.assert_close(
            d.double(), ref_jsd(a.to(dtype), b.to(dtype)), atol=1e-5, rtol=1e-4
        )

    def test_under_cpu_autocast(self) -> None:
        lin = torch.nn.Linear(4, 3)
        x = torch.randn(5, 4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            a, b = lin(x), lin(x.flip(0))
            d = MF.jensen_shannon(a, b)
        assert d.dtype == torch.float32 and bool(torch.isfinite(d).all())

    def test_float64_stays_float64(self) -> None:
        a = logits_tensor(5, (3, 4)).double()
        assert MF.jensen_shannon(a, a.flip(0)).dtype == torch.float64

    def test_gradcheck(self) -> None:
        a = logits_tensor(6, (3, 4)).double().requires_grad_()
        b = logits_tensor(7, (3, 4)).double().requires_grad_()
        assert torch.autograd.gradcheck(MF.jensen_shannon, (a, b))

    def test_broadcasting(self) -> None:
        a, b = logits_tensor(8, (1, 5, 3)), logits_tensor(9, (4, 5, 3))
        assert MF.jensen_shannon(a, b).shape == (4, 5)


def test_binary_jsd_equals_two_class_jsd() -> None:
    x, y = logits_tensor(10, (6, 1)), logits_tensor(11, (6, 1))
    two = MF.jensen_shannon(
        torch.cat([torch.zeros_like(x), x], -1), torch.cat([torch.zeros_like(y), y], -1)
    )
    torch.testing.assert_close(MF.binary_jensen_shannon(x, y), two)
    # reference from Bernoulli probabilities
    p, q = torch.sigmoid(x.double()), torch.sigmoid(y.double())
    ref = ref_jsd(torch.cat([(1 - p).log(), p.log()], -1), torch.cat([(1 - q).log(), q.log()], -1))
    torch.testing.assert_close(MF.binary_jensen_shannon(x, y).double(), ref, atol=1e-6, rtol=1e-5)
    assert MF.binary_jensen_shannon(x.squeeze(-1), y.squeeze(-1)).shape == (6,)


def test_squared_error() -> None:
    a = torch.tensor([[1.0], [2.0], [-1.0]])
    b = torch.tensor([[0.0], [4.0], [-1.0]])
    assert torch.equal(MF.squared_error(a, b), torch.tensor([1.0, 4.0, 0.0]))
    assert torch.equal(MF.squared_error(a.squeeze(1), b.squeeze(1)), torch.tensor([1.0, 4.0, 0.0]))


def test_divergence_fn_rejects_unknown() -> None:
    with pytest.raises(ValueError, match="expected divergence in"):
        MF.divergence_fn("kl")  # type: ignore[arg-type]


# ------------------------------------------------------------------------- contrastive


class TestContrastiveNTXent:
    """L_Con of paper eq. 11, the default form (against the loop reference in helpers.py)."""

    def test_matches_loop_reference(self) -> None:
        f = logits_tensor(22, (12, 5))
        y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 3, 1, 2, 0, 4])  # classes 3 and 4: one sample
        for tau in (0.1, 0.5, 1.0):
            torch.testing.assert_close(
                MF.contrastive_ntxent(f, y, temperature=tau).double(),
                ref_ntxent(f, y, tau),
                atol=1e-5,
                rtol=1e-5,
            )

    def test_single_sample_class_in_the_stacked_modalities(self) -> None:
        """Stacked [z_1; z_2]: a class with one sample still pairs across its two modalities."""
        g = torch.Generator().manual_seed(4)
        z1, z2 = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
        y = torch.tensor([0, 0, 1, 1, 2])  # class 2 once per modality
        f, tiled = torch.cat([z1, z2]), y.repeat(2)
        torch.testing.assert_close(
            MF.contrastive_ntxent(f, tiled).double(),
            ref_ntxent(f, tiled, 0.5),
            atol=1e-6,
            rtol=1e-6,
        )

    def test_differs_from_supcon(self) -> None:
        f = logits_tensor(23, (8, 3))
        y = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2])
        assert (
            abs(float(MF.contrastive_ntxent(f, y)) - float(MF.supervised_contrastive(f, y))) > 1e-3
        )

    @settings(max_examples=40, deadline=None)
    @given(seed=st.integers(0, 10_000), n=st.integers(2, 16), classes=st.integers(1, 4))
    def test_matches_reference_and_batch_order(self, seed: int, n: int, classes: int) -> None:
        g = torch.Generator().manual_seed(seed)
        f = torch.randn(n, 6, generator=g)
        y = torch.randint(0, classes, (n,), generator=g)
        order = torch.randperm(n, generator=g)
        a = MF.contrastive_ntxent(f, y)
        torch.testing.assert_close(a.double(), ref_ntxent(f, y, 0.5), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(
            a, MF.contrastive_ntxent(f[order], y[order]), atol=1e-5, rtol=1e-5
        )

    def test_one_class_only_gives_zero_and_finite_gradient(self) -> None:
        """No negatives anywhere: every l_ap = -log(1) = 0; the gradient is zero, not NaN."""
        f = torch.randn(4, 3, requires_grad=True)
        loss = MF.contrastive_ntxent(f, torch.zeros(4, dtype=torch.long))
        assert float(loss.detach()) == 0.0
        loss.backward()
        assert torch.equal(f.grad, torch.zeros_like(f))

    def test_no_positives_gives_zero_connected_to_graph(self) -> None:
        f = torch.randn(4, 3, requires_grad=True)
        loss = MF.contrastive_ntxent(f, torch.arange(4))
        assert float(loss.detach()) == 0.0 and loss.requires_grad
        loss.backward()
        assert torch.equal(f.grad, torch.zeros_like(f))

    def test_gradcheck(self) -> None:
        f = logits_tensor(24, (6, 3)).double().requires_grad_()
        y = torch.tensor([0, 0, 1, 1, 2, 0])
        assert torch.autograd.gradcheck(
            lambda x: MF.contrastive_ntxent(x, y, temperature=0.7), (f,)
        )

    def test_errors(self) -> None:
        with pytest.raises(ValueError, match="expected features of shape"):
            MF.contrastive_ntxent(torch.randn(4), torch.zeros(4, dtype=torch.long))
        with pytest.raises(ValueError, match="expected a positive temperature"):
            MF.contrastive_ntxent(
                torch.randn(4, 2), torch.zeros(4, dtype=torch.long), temperature=0
            )


class TestSupervisedContrastive:
    def test_matches_loop_reference(self) -> None:
        f = logits_tensor(20, (12, 5))
        y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 3, 1, 2, 0, 4])  # classes 3 and 4 have no positive
        for tau in (0.1, 0.5, 1.0):
            torch.testing.assert_close(
                MF.supervised_contrastive(f, y, temperature=tau).double(),
                ref_supcon(f, y, tau),
                atol=1e-5,
                rtol=1e-5,
            )

    @settings(max_examples=40, deadline=None)
    @given(seed=st.integers(0, 10_000), n=st.integers(2, 20), classes=st.integers(1, 4))
    def test_invariant_to_batch_order(self, seed: int, n: int, classes: int) -> None:
        g = torch.Generator().manual_seed(seed)
        f = torch.randn(n, 6, generator=g)
        y = torch.randint(0, classes, (n,), generator=g)
        order = torch.randperm(n, generator=g)
        a = MF.supervised_contrastive(f, y)
        b = MF.supervised_contrastive(f[order], y[order])
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)

    def test_no_positives_gives_zero_connected_to_graph(self) -> None:
        f = torch.randn(4, 3, requires_grad=True)
        loss = MF.supervised_contrastive(f, torch.arange(4))
        assert float(loss.detach()) == 0.0 and loss.requires_grad
        loss.backward()
        assert torch.equal(f.grad, torch.zeros_like(f))

    def test_lower_when_same_class_points_align(self) -> None:
        base = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
        f = torch.cat([base, base + 0.01])
        y = torch.tensor([0, 1, 0, 1])
        assert float(MF.supervised_contrastive(f, y)) < float(
            MF.supervised_contrastive(f, torch.tensor([0, 1, 1, 0]))
        )

    def test_gradcheck(self) -> None:
        f = logits_tensor(21, (6, 3)).double().requires_grad_()
        y = torch.tensor([0, 0, 1, 1, 2, 0])
        assert torch.autograd.gradcheck(
            lambda x: MF.supervised_contrastive(x, y, temperature=0.7), (f,)
        )

    def test_autocast_stays_float32(self) -> None:
        f = torch.randn(6, 4)
        y = torch.tensor([0, 0, 1, 1, 2, 2])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = MF.supervised_contrastive(f, y)
        assert loss.dtype == torch.float32
        torch.testing.assert_close(loss, MF.supervised_contrastive(f, y))

    @pytest.mark.parametrize(
        ("features", "labels", "tau", "match"),
        [
            (torch.randn(4), torch.zeros(4, dtype=torch.long), 0.5, r"features of shape \(N, D\)"),
            (torch.randn(4, 2), torch.zeros(3, dtype=torch.long), 0.5, r"labels of shape \(4,\)"),
            (torch.randn(4, 2), torch.zeros(4, dtype=torch.long), 0.0, "positive temperature"),
        ],
    )
    def test_errors(
        self, features: torch.Tensor, labels: torch.Tensor, tau: float, match: str
    ) -> None:
        with pytest.raises(ValueError, match=match):
            MF.supervised_contrastive(features, labels, temperature=tau)


# ------------------------------------------------------------------------- scale_grad


class TestScaleGrad:
    @pytest.mark.parametrize("factor", [-1.0, 0.0, 0.3, 1.0, 2.5])
    def test_identity_forward_scaled_backward(self, factor: float) -> None:
        x = torch.randn(3, 4, requires_grad=True)
        y = MF.scale_grad(x, factor)
        assert torch.equal(y, x)
        w = torch.randn(3, 4)
        (y * w + x).sum().backward()  # a direct path too, so that k = 0 still has a graph
        torch.testing.assert_close(x.grad, w * factor + 1)

    def test_zero_factor_blocks_non_finite_gradients(self) -> None:
        x = torch.ones(2, requires_grad=True)
        y = MF.scale_grad(x, 0.0)
        z = x * 2 + y.pow(1)
        z.backward(torch.tensor([float("nan"), 1.0]))
        # the direct path carries the NaN, the k=0 path adds exactly nothing
        assert torch.isnan(x.grad[0]) and float(x.grad[1]) == 2.0

    def test_is_not_the_true_gradient_unless_factor_is_one(self) -> None:
        # scale_grad deliberately changes the gradient; with factor 1 it is the identity
        x = torch.randn(5, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda t: MF.scale_grad(t, 1.0) * t, (x,))
        with pytest.raises(RuntimeError, match="Jacobian mismatch"):
            torch.autograd.gradcheck(lambda t: MF.scale_grad(t, -0.7) * t, (x,))


@pytest.mark.parametrize(
    ("strategy", "k"),
    [("greedy", -1.0), ("independent", 0.0), ("collaborative", 1.0), (0.25, 0.25), (-3, -3.0)],
)
def test_strategy_factor(strategy: str | float, k: float) -> None:
    assert MF.strategy_factor(strategy) == k


@pytest.mark.parametrize(
    ("strategy", "error", "match"),
    [
        ("selfish", ValueError, "expected strategy in"),
        (True, TypeError, "bool"),
        (float("nan"), ValueError, "finite"),
    ],
)
def test_strategy_factor_errors(strategy: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        MF.strategy_factor(strategy)  # type: ignore[arg-type]


# ------------------------------------------------------------------------- subsets


@pytest.mark.parametrize("m", [2, 3, 4, 5, 6])
def test_all_subsets_count_and_order(m: int) -> None:
    subsets = MF.enumerate_subsets(m, "all")
    assert len(subsets) == 2**m - 2 and len(set(subsets)) == len(subsets)
    assert subsets[:m] == tuple((i,) for i in range(m))
    assert all(0 < len(s) < m for s in subsets)


def test_two_modalities_give_the_two_singletons_either_way() -> None:
    assert MF.enumerate_subsets(2, "all") == MF.enumerate_subsets(2, "singletons") == ((0,), (1,))


def test_explicit_subsets_are_normalised() -> None:
    assert MF.enumerate_subsets(3, [(2, 0), (1,)]) == ((1,), (0, 2))


@pytest.mark.parametrize(
    ("m", "spec", "match"),
    [
        (1, "all", "at least two modalities"),
        (7, "all", "at most 6 modalities.*subsets='sampled'"),
        (3, "pairs", "expected subsets 'all'"),
        (3, [()], "non-empty"),
        (3, [(0, 3)], r"range\(3\)"),
        (3, [(0, 0)], "distinct"),
        (3, [(0, 1, 2)], "proper subsets"),
        (3, [(0,), (0,)], "once"),
        (3, [], "at least one subset"),
    ],
)
def test_subset_errors(m: int, spec: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MF.enumerate_subsets(m, spec)  # type: ignore[arg-type]


def test_many_modalities_with_singletons_is_fine() -> None:
    assert len(MF.enumerate_subsets(12, "singletons")) == 12


# ------------------------------------------------------------------------- permutations


def test_permutations_are_valid_and_seeded() -> None:
    a = MF.sample_permutations(5, 3, 9, generator=torch.Generator().manual_seed(1))
    b = MF.sample_permutations(5, 3, 9, generator=torch.Generator().manual_seed(1))
    assert a.shape == (5, 3, 9) and a.dtype == torch.long
    assert torch.equal(a.sort(-1).values, torch.arange(9).expand(5, 3, 9))
    assert torch.equal(a, b)


def test_permutations_leave_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    MF.sample_permutations(4, 2, 6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.rand(3), expected)


def test_permutation_draws_are_independent_and_roughly_uniform() -> None:
    perms = MF.sample_permutations(4000, 1, 3, generator=torch.Generator().manual_seed(0))[:, 0]
    counts = torch.stack([(perms[:, 0] == v).float().mean() for v in range(3)])
    torch.testing.assert_close(counts, torch.full((3,), 1 / 3), atol=0.03, rtol=0)


def test_permutation_errors() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        MF.sample_permutations(1, 2, 1)
    with pytest.raises(ValueError, match="positive draws"):
        MF.sample_permutations(0, 2, 4)


# ------------------------------------------------------------------------- pooling


@pytest.mark.parametrize(
    ("shape", "axis", "expected"),
    [
        ((4, 8), "auto", (4, 8)),
        ((4, 5, 8), "auto", (4, 8)),
        ((4, 8, 3, 3), "auto", (4, 8)),
        ((4, 8, 5), 1, (4, 8)),
    ],
)
def test_pool_latent(shape: tuple[int, ...], axis: object, expected: tuple[int, ...]) -> None:
    z = torch.randn(shape)
    pooled = MF.pool_latent(z, axis)  # type: ignore[arg-type]
    assert pooled.shape == expected
    if len(shape) == 4:
        torch.testing.assert_close(pooled, z.mean((2, 3)))


def test_pool_latent_errors() -> None:
    with pytest.raises(ValueError, match="batch and feature axes"):
        MF.pool_latent(torch.randn(4))
    with pytest.raises(ValueError, match="cannot be the batch axis"):
        MF.pool_latent(torch.randn(4, 3), 0)


# ------------------------------------------------------------------------- MIPD's block divergence


class TestBlockJensenShannon:
    """The mean JSD per subset that :func:`MF.mipd` takes from the head's stacked output, against
    :func:`MF.jensen_shannon` on the same blocks."""

    @staticmethod
    def stacked(seed: int, n_ref: int, n_sub: int, draws: int, batch: int, dtype: torch.dtype):
        out = logits_tensor(seed, ((n_ref + n_sub * draws) * batch, 5)).to(dtype)
        return out.requires_grad_(True)

    @staticmethod
    def plain(out: torch.Tensor, layout, detach_reference: bool) -> torch.Tensor:
        n_ref, n_sub, draws, batch = layout
        ref = out[: n_ref * batch].unflatten(0, (n_ref, 1, batch))
        if detach_reference:
            ref = ref.detach()
        pert = out[n_ref * batch :].unflatten(0, (n_sub, draws, batch))
        return MF.jensen_shannon(ref, pert).mean(dim=(1, 2))

    @pytest.mark.parametrize("detach_reference", [False, True])
    @pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
    def test_values_and_gradients_match_the_plain_divergence(self, detach_reference, dtype) -> None:
        n_sub, draws, batch = 3, 4, 5
        layout = (1 if detach_reference else n_sub, n_sub, draws, batch)
        out = self.stacked(0, *layout, dtype)
        weights = torch.tensor([1.0, -2.0, 0.5], dtype=dtype)
        fast = _BlockJensenShannon.apply(out, layout, detach_reference, None)
        (grad_fast,) = torch.autograd.grad((fast * weights).sum(), out)
        slow = self.plain(out, layout, detach_reference)
        (grad_slow,) = torch.autograd.grad((slow * weights).sum(), out)
        tol = 1e-12 if dtype == torch.float64 else 1e-6
        torch.testing.assert_close(fast, slow.to(fast.dtype), atol=tol, rtol=tol * 10)
        torch.testing.assert_close(grad_fast, grad_slow, atol=tol, rtol=tol * 10)
        if detach_reference:
            assert bool((grad_fast[:batch] == 0).all())

    def test_gradcheck_in_float64(self) -> None:
        layout = (2, 2, 3, 4)
        out = self.stacked(1, *layout, torch.float64)
        assert torch.autograd.gradcheck(
            lambda o: _BlockJensenShannon.apply(o, layout, False, None), (out,)
        )

    def test_identical_rows_give_exactly_zero(self) -> None:
        batch = 4
        ref = logits_tensor(2, (batch, 6))
        out = torch.cat([ref, ref, ref, ref])  # one subset, reference then three draws of it
        per_subset = _BlockJensenShannon.apply(out, (1, 1, 3, batch), False, None)
        assert torch.equal(per_subset, torch.zeros(1))

    def test_extreme_logits_stay_finite(self) -> None:
        out = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]], requires_grad=True)
        per_subset = _BlockJensenShannon.apply(out, (1, 1, 1, 1), False, None)
        (grad,) = torch.autograd.grad(per_subset.sum(), out)
        assert abs(float(per_subset) - LN2) < 1e-6
        assert bool(torch.isfinite(grad).all())

    def test_row_weights_give_the_weighted_mean(self) -> None:
        layout = (2, 2, 3, 4)
        out = self.stacked(3, *layout, torch.float64)
        weights = (torch.arange(24, dtype=torch.float64).view(2, 3, 4) % 3 == 0).double()
        fast = _BlockJensenShannon.apply(out, layout, False, weights)
        ref = out[:8].unflatten(0, (2, 1, 4))
        pert = out[8:].unflatten(0, (2, 3, 4))
        div = MF.jensen_shannon(ref, pert)
        expected = (div * weights).sum(dim=(1, 2)) / weights.sum(dim=(1, 2))
        torch.testing.assert_close(fast, expected, atol=1e-12, rtol=1e-10)
