"""examples.common.importance measures what MCR's MIPD term measures, with the package's own
divergences and pooling (one source for each fact)."""

from __future__ import annotations

import math

import pytest
import torch

from examples.common.importance import divergence, permutation_importance
from examples.common.model import ConcatFusionHead
from mcr_reg import functional as MF


def test_divergence_is_the_packages() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    assert torch.equal(divergence(a, b), MF.jensen_shannon(a, b))
    a1, b1 = a[:, :1], b[:, :1]
    assert torch.equal(divergence(a1, b1), MF.binary_jensen_shannon(a1, b1))
    assert torch.equal(divergence(a1, b1, regression=True), MF.squared_error(a1, b1))
    assert divergence(a, b).shape == (5,)
    with pytest.raises(ValueError, match="equal shape"):
        divergence(a, b[:, :2])


def test_permutation_importance_is_zero_for_an_ignored_modality() -> None:
    head = ConcatFusionHead([3, 3], 4)
    with torch.no_grad():
        head.linear.weight[:, 3:] = 0.0  # the second modality is ignored
    latents = {"a": torch.randn(8, 3), "b": torch.randn(8, 3)}
    imp = permutation_importance(
        lambda z: head(*z.values()), latents, generator=torch.Generator().manual_seed(1)
    )
    assert float(imp[1]) == 0.0 and 0 < float(imp[0]) <= math.log(2)


def test_concat_head_pools_like_the_package() -> None:
    """(B, C, H, W) latents: the feature axis is C (mcr_reg's convention), not W."""
    head = ConcatFusionHead([6, 6], 3)
    z = [torch.randn(2, 6, 4, 5), torch.randn(2, 6, 4, 5)]
    expected = head.linear(torch.cat([MF.pool_latent(x) for x in z], dim=-1))
    torch.testing.assert_close(head(*z), expected)
