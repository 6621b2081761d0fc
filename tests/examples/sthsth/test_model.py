"""The Swin3D stream encoders, local-only weight loading and late fusion."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from examples.sthsth import model as sm
from examples.sthsth.model import VideoEncoder, build_model, load_backbone_weights


def test_real_swin3d_t_builds_and_runs_a_tiny_clip() -> None:
    enc = VideoEncoder("swin3d_t", pretrained=None).eval()
    assert enc.latent_dim == 768
    n_params = sum(p.numel() for p in enc.parameters())
    assert 27_000_000 < n_params < 29_000_000  # Swin3D-T without its 400-way head
    with torch.no_grad():
        z = enc(torch.randn(2, 3, 4, 32, 32))
    assert z.shape == (2, 768)
    assert torch.isfinite(z).all()


def test_smoke_model_shapes_and_gradients() -> None:
    model = build_model(5, backbone="swin3d_smoke", pretrained=None)
    clip = torch.randn(2, 3, 4, 32, 32)
    logits, latents = model({"rgb": clip, "flow": clip.flip(0)})
    assert logits.shape == (2, 5)
    assert {k: tuple(v.shape) for k, v in latents.items()} == {"rgb": (2, 128), "flow": (2, 128)}
    assert model.modalities == ("rgb", "flow")
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_weights_load_from_a_local_file_and_ignore_the_head(tmp_path: Path) -> None:
    source = sm._build_swin("swin3d_smoke")
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": source.state_dict()}, path)  # head.* included, as released
    enc = VideoEncoder("swin3d_smoke", pretrained=path)
    assert enc.pretrained_from == path
    for name, tensor in enc.backbone.state_dict().items():
        torch.testing.assert_close(tensor, source.state_dict()[name])


def test_weights_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.pth"
    torch.save({"patch_embed.proj.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="do not fit the backbone"):
        load_backbone_weights(sm._build_swin("swin3d_smoke"), path)
    with pytest.raises(FileNotFoundError, match=r"missing\.pth"):
        load_backbone_weights(sm._build_swin("swin3d_smoke"), tmp_path / "missing.pth")


def test_auto_without_local_weights_warns_and_never_downloads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("tried to download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_download)
    with pytest.warns(UserWarning, match="random weights"):
        enc = VideoEncoder("swin3d_smoke", pretrained="auto")
    assert enc.pretrained_from is None
    assert sm.kinetics_checkpoint_path() == tmp_path / "checkpoints" / "swin3d_t-7615ae03.pth"


def test_auto_uses_the_cached_kinetics_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    loaded: list[Path] = []
    monkeypatch.setattr(sm, "load_backbone_weights", lambda model, path: loaded.append(Path(path)))
    path = sm.kinetics_checkpoint_path()
    path.parent.mkdir(parents=True)
    path.write_bytes(b"stand-in")
    VideoEncoder("swin3d_t", pretrained="auto")
    assert loaded == [path]


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="backbone 'swin3d_t' or 'swin3d_smoke'"):
        VideoEncoder("resnet")  # type: ignore[arg-type]
    enc = VideoEncoder("swin3d_smoke")
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\), got \(2, 2, 4, 32, 32\)"):
        enc(torch.zeros(2, 2, 4, 32, 32))
