"""The CREMA-D ResNet-18 model: audio and video ResNet-18 encoders, linear late fusion, 6 classes.

See :mod:`examples.av_common.model` for the encoders and the optional local pretrained weights.
"""

from __future__ import annotations

from pathlib import Path

from examples.av_common.model import build_av_resnet18
from examples.common.model import MultimodalModel
from examples.cremad.data import NUM_CLASSES


def build_model(
    *,
    audio_weights: str | Path | None = None,
    video_weights: str | Path | None = None,
) -> MultimodalModel:
    """A fresh CREMA-D model with modalities ``("audio", "video")`` and 512-d latents."""
    return build_av_resnet18(NUM_CLASSES, audio_weights=audio_weights, video_weights=video_weights)
