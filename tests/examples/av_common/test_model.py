"""ResNet-18 encoders, the late-fusion model, and loading local pretrained weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18

from examples.av_common.model import (
    AudioResNet18,
    VideoResNet18,
    build_av_resnet18,
    load_resnet18_weights,
)
from examples.common.model import MultimodalModel


def test_encoder_shapes() -> None:
    torch.manual_seed(0)
    audio, video = AudioResNet18().eval(), VideoResNet18().eval()
    assert audio(torch.randn(2, 1, 40, 30)).shape == (2, 512)
    assert audio(torch.randn(2, 40, 30)).shape == (2, 512)  # channel axis added
    assert video(torch.randn(2, 3, 3, 32, 32)).shape == (2, 512)
    with pytest.raises(ValueError, match=r"\(B, 1, F, T\)"):
        audio(torch.randn(2, 3, 40, 30))
    with pytest.raises(ValueError, match=r"\(B, 3, T, H, W\)"):
        video(torch.randn(2, 3, 32, 32))


def test_video_encoder_averages_its_frames() -> None:
    torch.manual_seed(0)
    video = VideoResNet18().eval()
    clip = torch.randn(1, 3, 2, 32, 32)
    per_frame = torch.stack([video.net(clip[:, :, t]) for t in range(2)]).mean(dim=0)
    torch.testing.assert_close(video(clip), per_frame)


def test_full_model() -> None:
    model = build_av_resnet18(6)
    assert isinstance(model, MultimodalModel)
    assert model.modalities == ("audio", "video")
    assert model.latent_dims == {"audio": 512, "video": 512}
    logits, latents = model(
        {"audio": torch.randn(2, 1, 33, 20), "video": torch.randn(2, 3, 2, 32, 32)}
    )
    assert logits.shape == (2, 6) and latents["audio"].shape == latents["video"].shape == (2, 512)
    with pytest.raises(ValueError, match="two classes"):
        build_av_resnet18(1)


def test_pretrained_weights_are_loaded_from_a_local_file(tmp_path: Path) -> None:
    torch.manual_seed(1)
    reference = resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = build_av_resnet18(6, audio_weights=path, video_weights=path)
    video_net = model.encoders["video"].net
    for name, value in reference.state_dict().items():
        if not name.startswith("fc."):
            torch.testing.assert_close(video_net.state_dict()[name], value)
    audio_conv = model.encoders["audio"].net.conv1.weight
    torch.testing.assert_close(audio_conv, reference.conv1.weight.mean(dim=1, keepdim=True))
    torch.testing.assert_close(
        model.encoders["audio"].net.layer4[1].conv2.weight, reference.layer4[1].conv2.weight
    )


def test_bad_or_absent_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(FileNotFoundError, match=r"nothing\.pth"):
        VideoResNet18(tmp_path / "nothing.pth")
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "partial.pth")
    with pytest.raises(ValueError, match="missing keys"):
        VideoResNet18(tmp_path / "partial.pth")
    torch.save({"conv1.weight": torch.zeros(64, 3, 5, 5)}, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match="not a ResNet-18 state dict"):
        load_resnet18_weights(VideoResNet18().net, tmp_path / "shape.pth")
    torch.save([1, 2], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="expected a state dict"):
        VideoResNet18(tmp_path / "list.pth")
    # "torchvision" only looks into torchvision's cache and never downloads
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(FileNotFoundError, match=r"resnet18-f37072fd\.pth"):
        VideoResNet18("torchvision")
    checkpoints = tmp_path / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    torch.save(resnet18(weights=None).state_dict(), checkpoints / "resnet18-f37072fd.pth")
    VideoResNet18("torchvision")
