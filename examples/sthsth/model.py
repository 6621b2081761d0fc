"""Video Swin-T per stream (RGB, optical flow) and late fusion, for Something-Something v2.

Each stream has its own torchvision ``swin3d_t`` (Video Swin-T; patch 2x4x4, embed 96, depths
2-2-6-2, window 8x7x7) with the classification head removed, so an encoder maps a clip
``(B, 3, T, H, W)`` to its pooled ``(B, 768)`` latent. Flow images have three channels, so the
flow stream uses the same architecture and, as in the released setup, the same Kinetics-400
initialisation. Late fusion is :class:`examples.common.model.ConcatFusionHead`: concatenation
and one linear layer to the 174 classes (the sum of one linear classifier per stream).

Kinetics-400 weights are only ever read from disk: ``pretrained="auto"`` loads
``$TORCH_HOME/hub/checkpoints/swin3d_t-7615ae03.pth`` (where torchvision keeps them once
downloaded) when that file exists and otherwise starts from random weights with a warning;
a path loads that file; ``None`` starts from random weights. Nothing is downloaded.

``backbone="swin3d_smoke"`` builds a much smaller Swin of the same torchvision class (embed 16,
one block per stage, 2x4x4 windows, latent 128) so that a CPU epoch on a fixture takes seconds;
it is for tests and smoke runs only.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn
from torchvision.models.video import Swin3D_T_Weights, swin3d_t
from torchvision.models.video.swin_transformer import SwinTransformer3d

from examples.common.model import ConcatFusionHead, MultimodalModel

Backbone = Literal["swin3d_t", "swin3d_smoke"]
LATENT_DIMS: dict[str, int] = {"swin3d_t": 768, "swin3d_smoke": 128}
KINETICS_FILE = Path(Swin3D_T_Weights.KINETICS400_V1.url).name  # swin3d_t-7615ae03.pth


def kinetics_checkpoint_path() -> Path:
    """Where torchvision caches the Kinetics-400 Swin3D-T weights (may not exist)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / KINETICS_FILE


def _build_swin(backbone: Backbone) -> SwinTransformer3d:
    if backbone == "swin3d_t":
        return swin3d_t(weights=None)
    if backbone == "swin3d_smoke":
        return SwinTransformer3d(
            patch_size=[2, 4, 4],
            embed_dim=16,
            depths=[1, 1, 1, 1],
            num_heads=[1, 2, 4, 8],
            window_size=[2, 4, 4],
            stochastic_depth_prob=0.0,
        )
    raise ValueError(f"expected backbone 'swin3d_t' or 'swin3d_smoke', got {backbone!r}")


def load_backbone_weights(model: SwinTransformer3d, path: str | Path) -> None:
    """Load a Swin3D state dict from ``path``, ignoring its classification head.

    Accepts a plain state dict or a checkpoint holding one under ``"state_dict"`` or
    ``"model"``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file does not match the backbone (missing or unexpected keys, shapes).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected Swin3D weights at {path}; not found")
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    state = {k: v for k, v in state.items() if not k.startswith("head.")}
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise ValueError(f"the weights in {path} do not fit the backbone: {err}") from err
    missing = [k for k in missing if not k.startswith("head.")]
    if missing or unexpected:
        raise ValueError(
            f"the weights in {path} do not fit the backbone: missing {missing[:5]}, "
            f"unexpected {list(unexpected)[:5]}"
        )


class VideoEncoder(nn.Module):
    """A Swin3D without its head: ``(B, 3, T, H, W) -> (B, D)``.

    Args:
        backbone: ``"swin3d_t"`` (D = 768) or ``"swin3d_smoke"`` (D = 128).
        pretrained: ``"auto"``, a path to weights, or None (see the module docstring).

    Mixed precision is not handled here: the shared loop runs the whole training step under
    autocast when ``--amp`` asks for it (see :mod:`examples.sthsth.train`).
    """

    def __init__(
        self, backbone: Backbone = "swin3d_t", pretrained: str | Path | None = None
    ) -> None:
        super().__init__()
        self.backbone = _build_swin(backbone)
        self.backbone.head = nn.Identity()
        self.latent_dim = LATENT_DIMS[backbone]
        self.pretrained_from: Path | None = None
        if pretrained == "auto":
            path = kinetics_checkpoint_path()
            if backbone == "swin3d_t" and path.is_file():
                pretrained = path
            else:
                warnings.warn(
                    f"no local Kinetics-400 weights for {backbone} at {path}; starting from "
                    "random weights (download them once with torchvision to use them)",
                    stacklevel=2,
                )
                pretrained = None
        if pretrained is not None:
            load_backbone_weights(self.backbone, pretrained)
            self.pretrained_from = Path(pretrained)

    def forward(self, clip: Tensor) -> Tensor:
        if clip.dim() != 5 or clip.shape[1] != 3:
            raise ValueError(f"expected a clip of shape (B, 3, T, H, W), got {tuple(clip.shape)}")
        z: Tensor = self.backbone(clip)  # (B, D)
        return z


def build_model(
    num_classes: int,
    *,
    streams: Sequence[str] = ("rgb", "flow"),
    backbone: Backbone = "swin3d_t",
    pretrained: str | Path | None = "auto",
) -> MultimodalModel:
    """One :class:`VideoEncoder` per stream and a linear late-fusion head.

    Args:
        num_classes: number of classes (174 for the full data set).
        streams: stream names, in modality order.
        backbone: ``"swin3d_t"`` or ``"swin3d_smoke"``.
        pretrained: ``"auto"``, a weights path, or None; used for every stream.

    Example:
        >>> model = build_model(4, backbone="swin3d_smoke", pretrained=None)
        >>> clip = torch.zeros(2, 3, 4, 32, 32)
        >>> logits, latents = model({"rgb": clip, "flow": clip})
        >>> tuple(logits.shape), tuple(latents["flow"].shape)
        ((2, 4), (2, 128))
    """
    encoders = {s: VideoEncoder(backbone, pretrained) for s in streams}
    latent_dims = {s: enc.latent_dim for s, enc in encoders.items()}
    head = ConcatFusionHead(list(latent_dims.values()), num_classes)
    return MultimodalModel(encoders, head, latent_dims)
