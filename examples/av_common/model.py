"""ResNet-18 encoders for audio spectrograms and video frames, with late fusion.

The setting of the CREMA-D / AVE / UCF ResNet experiments: two torchvision ResNet-18s trained
from scratch, the audio one reading the one-channel log spectrogram as an image, the video one
applied to every frame and averaged over time; each gives a 512-d latent, and a linear layer on
their concatenation gives the logits.

Pretrained weights are optional and only ever read from the local disk: a path to a torchvision
ResNet-18 state dict, or ``"torchvision"`` for the file torchvision's own cache already holds
(``$TORCH_HOME/hub/checkpoints/resnet18-f37072fd.pth``). Nothing is downloaded.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import resnet18

from examples.common.model import ConcatFusionHead, MultimodalModel

#: Width of a ResNet-18 feature vector.
RESNET18_DIM = 512
#: File name of the ImageNet ResNet-18 weights in torchvision's download cache.
TORCHVISION_RESNET18_FILE = "resnet18-f37072fd.pth"


def resolve_weights(spec: str | Path) -> Path:
    """Path of a local ResNet-18 state dict; ``"torchvision"`` means torchvision's cache.

    Raises:
        FileNotFoundError: the file is not there (nothing is downloaded).
    """
    if str(spec) == "torchvision":
        path = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_RESNET18_FILE
        hint = (
            "torchvision's cache does not hold the ImageNet ResNet-18 weights; download them "
            "once yourself (torchvision.models.resnet18(weights='IMAGENET1K_V1')) or pass a path"
        )
    else:
        path = Path(spec)
        hint = "expected a torchvision ResNet-18 state dict saved with torch.save"
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights {path} not found: {hint}")
    return path


def load_resnet18_weights(net: nn.Module, spec: str | Path) -> None:
    """Load a torchvision ResNet-18 state dict into ``net`` (its ``fc`` is ignored).

    A three-channel first convolution is averaged over its input channels when ``net`` takes
    one channel (the spectrogram encoder).

    Raises:
        FileNotFoundError: see :func:`resolve_weights`.
        ValueError: the file is not a ResNet-18 state dict (missing or mis-shaped keys).
    """
    path = resolve_weights(spec)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"expected a state dict in {path}, got {type(state).__name__}")
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    conv = state.get("conv1.weight")
    target = net.state_dict().get("conv1.weight")
    if conv is not None and target is not None and conv.shape[1] != target.shape[1]:
        if target.shape[1] != 1:
            raise ValueError(
                f"cannot adapt conv1.weight of shape {tuple(conv.shape)} in {path} to "
                f"{tuple(target.shape)}"
            )
        state["conv1.weight"] = conv.mean(dim=1, keepdim=True)
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatch
        raise ValueError(f"{path} is not a ResNet-18 state dict: {err}") from err
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise ValueError(
            f"{path} is not a ResNet-18 state dict: missing keys {missing[:5]}, "
            f"unexpected keys {list(unexpected)[:5]}"
        )


def _backbone(in_channels: int) -> nn.Module:
    net: nn.Module = resnet18(weights=None)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    net.fc = nn.Identity()
    return net


class AudioResNet18(nn.Module):
    """ResNet-18 on a one-channel log spectrogram: ``(B, 1, F, T) -> (B, 512)``.

    Args:
        pretrained: optional local weights (see :func:`load_resnet18_weights`).
    """

    def __init__(self, pretrained: str | Path | None = None) -> None:
        super().__init__()
        self.net = _backbone(1)
        if pretrained is not None:
            load_resnet18_weights(self.net, pretrained)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)  # (B, F, T) -> (B, 1, F, T)
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"expected a spectrogram batch (B, 1, F, T), got {tuple(x.shape)}")
        out: Tensor = self.net(x)
        return out


class VideoResNet18(nn.Module):
    """2-D ResNet-18 on every frame, mean over time: ``(B, 3, T, H, W) -> (B, 512)``.

    Args:
        pretrained: optional local weights (see :func:`load_resnet18_weights`).
    """

    def __init__(self, pretrained: str | Path | None = None) -> None:
        super().__init__()
        self.net = _backbone(3)
        if pretrained is not None:
            load_resnet18_weights(self.net, pretrained)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5 or x.shape[1] != 3:
            raise ValueError(f"expected a clip batch (B, 3, T, H, W), got {tuple(x.shape)}")
        b, _, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, 3, h, w)  # (B*T, 3, H, W)
        feats: Tensor = self.net(frames)  # (B*T, 512)
        return feats.view(b, t, -1).mean(dim=1)  # (B, 512)


def build_av_resnet18(
    num_classes: int,
    *,
    audio_weights: str | Path | None = None,
    video_weights: str | Path | None = None,
) -> MultimodalModel:
    """Audio + video ResNet-18 encoders and a linear late-fusion head.

    Args:
        num_classes: output classes.
        audio_weights: optional local weights for the audio encoder.
        video_weights: optional local weights for the video encoder.

    Returns:
        A :class:`~examples.common.model.MultimodalModel` with modalities ``("audio", "video")``
        and 512-d latents.
    """
    if num_classes < 2:
        raise ValueError(f"expected at least two classes, got {num_classes}")
    encoders = {"audio": AudioResNet18(audio_weights), "video": VideoResNet18(video_weights)}
    dims = {"audio": RESNET18_DIM, "video": RESNET18_DIM}
    return MultimodalModel(encoders, ConcatFusionHead(list(dims.values()), num_classes), dims)
