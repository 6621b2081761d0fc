"""The CREMA-D model: audio and video ResNet-18 encoders, linear late fusion, 6 emotion classes.

It is :func:`examples.av_common.model.build_av_resnet18` with :data:`examples.cremad.data.NUM_CLASSES`
outputs; see :mod:`examples.av_common.model` for the encoders and the optional local pretrained
weights. ``build_model(audio_weights=None, video_weights=None)`` returns a fresh model with
modalities ``("audio", "video")`` and 512-d latents.
"""

from __future__ import annotations

from functools import partial

from examples.av_common.model import build_av_resnet18
from examples.cremad.data import NUM_CLASSES

build_model = partial(build_av_resnet18, NUM_CLASSES)
