"""Shapes, pooling and gradient flow of the MOSEI Transformer model."""

from __future__ import annotations

import pytest
import torch

from examples.mosei.model import MLPFusionHead, SequenceEncoder, build_model


def _batch(b: int = 3) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "vision": torch.randn(b, 50, 35, generator=g),
        "audio": torch.randn(b, 50, 74, generator=g),
        "text": torch.randn(b, 50, 300, generator=g),
    }


def test_shapes_three_modalities() -> None:
    model = build_model({"vision": 35, "audio": 74, "text": 300}, num_layers=2)
    logits, latents = model(_batch())
    assert logits.shape == (3, 1)
    assert {m: tuple(z.shape) for m, z in latents.items()} == {
        "vision": (3, 40),
        "audio": (3, 40),
        "text": (3, 40),
    }
    assert model.modalities == ("vision", "audio", "text")


def test_every_parameter_gets_gradient() -> None:
    model = build_model({"vision": 35, "text": 300}, num_layers=1, dropout=0.0)
    batch = _batch()
    logits, _ = model({"vision": batch["vision"], "text": batch["text"]})
    logits.pow(2).sum().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
    assert not missing


def test_encoder_keeps_samples_apart_and_sees_every_step() -> None:
    enc = SequenceEncoder(5, num_layers=1, dropout=0.0).eval()
    x = torch.randn(2, 10, 5)
    y = x.clone()
    y[1, 3] += 1.0  # a change anywhere in sample 1 reaches its pooled state via attention
    out_x, out_y = enc(x), enc(y)
    torch.testing.assert_close(out_x[0], out_y[0])
    assert not torch.allclose(out_x[1], out_y[1])


def test_encoder_rejects_wrong_width() -> None:
    enc = SequenceEncoder(35)
    with pytest.raises(
        ValueError, match=r"expected input of shape \(B, T, 35\), got \(2, 50, 20\)"
    ):
        enc(torch.zeros(2, 50, 20))


def test_heads_must_divide_hidden() -> None:
    with pytest.raises(ValueError, match="divide hidden=40"):
        SequenceEncoder(5, num_heads=3)


def test_fusion_head_checks_latents() -> None:
    head = MLPFusionHead([40, 40], 1)
    with pytest.raises(ValueError, match="expected 2 latents, got 1"):
        head(torch.zeros(2, 40))
    with pytest.raises(ValueError, match=r"d = \(40, 40\)"):
        head(torch.zeros(2, 40), torch.zeros(2, 30))
