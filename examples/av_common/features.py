"""The standard audio-visual preprocessing of the ResNet-18 benchmarks (CREMA-D, AVE).

Audio: resample, tile/truncate to a fixed length, clip to ``[-1, 1]``, log-magnitude
spectrogram. Video: frames at 1 fps, ``T`` consecutive frames per clip, random resized crop and
horizontal flip for training or a plain resize for evaluation, ImageNet normalisation.

Two spectrogram recipes are used in the literature and both are provided:

- ``"stft"`` (CREMA-D): centred STFT with a periodic Hann window, ``log(|S| + 1e-7)``;
  ``n_fft = 512``, ``hop = 353`` on 3 s at 22.05 kHz gives ``(257, 188)``.
- ``"psd"`` (AVE): the power spectral density of :func:`scipy.signal.spectrogram` with its
  default window (Tukey 0.25), no centring, ``log(P + 1e-7)``; ``nperseg = 512``,
  ``noverlap = 353`` on 10 s at 16 kHz gives ``(257, 1004)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import torch
from scipy.signal import spectrogram as scipy_spectrogram
from torch import Tensor
from torchvision.transforms import v2

#: Mean and standard deviation of ImageNet RGB images, the usual normalisation.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

SpectrogramKind = Literal["stft", "psd"]


@dataclass(frozen=True)
class AudioSettings:
    """How a waveform becomes the audio encoder's input.

    Attributes:
        sample_rate: rate in Hz after resampling.
        seconds: the waveform is tiled (repeated) or truncated to this many seconds.
        n_fft: FFT window length (``nperseg`` for ``"psd"``).
        hop: hop length in samples (``nperseg - noverlap`` for ``"psd"``).
        kind: ``"stft"`` or ``"psd"`` (see the module docstring).
        clip: clip the tiled waveform to ``[-1, 1]``.
    """

    sample_rate: int
    seconds: float
    n_fft: int = 512
    hop: int = 353
    kind: SpectrogramKind = "stft"
    clip: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("stft", "psd"):
            raise ValueError(f"expected spectrogram kind 'stft' or 'psd', got {self.kind!r}")
        if self.sample_rate <= 0 or self.seconds <= 0:
            raise ValueError(
                f"expected positive sample_rate and seconds, got {self.sample_rate} "
                f"and {self.seconds}"
            )
        if not 0 < self.hop <= self.n_fft:
            raise ValueError(f"expected 0 < hop <= n_fft, got hop {self.hop}, n_fft {self.n_fft}")

    @property
    def num_samples(self) -> int:
        """Length of the fixed-length waveform."""
        return round(self.sample_rate * self.seconds)

    def spectrogram_shape(self) -> tuple[int, int]:
        """``(frequency bins, time frames)`` of :func:`log_spectrogram` for these settings."""
        n = self.num_samples
        if self.kind == "stft":
            return self.n_fft // 2 + 1, 1 + n // self.hop
        return self.n_fft // 2 + 1, (n - self.n_fft) // self.hop + 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class VideoSettings:
    """How a clip's frames become the video encoder's input.

    Attributes:
        fps: frames sampled per second of video.
        num_frames: consecutive sampled frames per clip (``T``).
        frame_size: side of the square network input (224 for the ResNet setting).
        store_short_side: decoded frames are resized so their short side has this length
            before caching / cropping (keeps the cache small; ``None`` keeps full size).
        jpeg_quality: quality of the JPEG images the cache stores frames as.
    """

    fps: float = 1.0
    num_frames: int = 3
    frame_size: int = 224
    store_short_side: int | None = 256
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if self.fps <= 0 or self.num_frames < 1 or self.frame_size < 1:
            raise ValueError(
                f"expected fps > 0, num_frames >= 1 and frame_size >= 1, got {self.fps}, "
                f"{self.num_frames} and {self.frame_size}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: Ten-second clips (AVE, UCF-101): audio at 16 kHz tiled to 10 s, scipy spectrogram
#: nperseg 512 / noverlap 353 -> (257, 1004); 4 frames at 1 fps.
TEN_SECOND_AUDIO = AudioSettings(sample_rate=16000, seconds=10.0, n_fft=512, hop=159, kind="psd")
TEN_SECOND_VIDEO = VideoSettings(fps=1.0, num_frames=4, frame_size=224, store_short_side=256)
#: ``--smoke`` for ten-second clips: 1 s at 8 kHz -> (65, 66); 4 frames of 32 x 32.
TEN_SECOND_SMOKE_AUDIO = AudioSettings(
    sample_rate=8000, seconds=1.0, n_fft=128, hop=120, kind="psd"
)
TEN_SECOND_SMOKE_VIDEO = VideoSettings(fps=1.0, num_frames=4, frame_size=32, store_short_side=36)


def fit_length(wave: np.ndarray, num_samples: int) -> np.ndarray:
    """Tile (repeat) a waveform until it is long enough, then truncate to ``num_samples``.

    Args:
        wave: ``(N,)`` signal with ``N >= 1``.
        num_samples: wanted length.

    Returns:
        ``(num_samples,)`` float32 signal.
    """
    if wave.ndim != 1 or wave.size == 0:
        raise ValueError(f"expected a non-empty 1-D waveform, got shape {wave.shape}")
    reps = -(-num_samples // wave.size)  # ceil division
    return np.tile(wave, reps)[:num_samples].astype(np.float32, copy=False)


def log_spectrogram(wave: np.ndarray, settings: AudioSettings) -> np.ndarray:
    """Fixed-length log spectrogram of a waveform (see the module docstring for the recipes).

    Args:
        wave: ``(N,)`` waveform at ``settings.sample_rate``.
        settings: the audio settings.

    Returns:
        ``(F, T) = settings.spectrogram_shape()`` float32 array.
    """
    x = fit_length(wave, settings.num_samples)
    if settings.clip:
        x = np.clip(x, -1.0, 1.0)
    if settings.kind == "stft":
        window = torch.hann_window(settings.n_fft, periodic=True, dtype=torch.float64)
        spec = torch.stft(
            torch.from_numpy(x.astype(np.float64)),
            n_fft=settings.n_fft,
            hop_length=settings.hop,
            window=window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        )  # (F, T) complex
        out = np.log(spec.abs().numpy() + 1e-7)
    else:
        _, _, power = scipy_spectrogram(
            x.astype(np.float64),
            fs=settings.sample_rate,
            nperseg=settings.n_fft,
            noverlap=settings.n_fft - settings.hop,
        )  # (F, T)
        out = np.log(power + 1e-7)
    return out.astype(np.float32)


def choose_frames(
    num_available: int,
    num_frames: int,
    *,
    train: bool,
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """Indices of ``num_frames`` consecutive frames out of ``num_available``.

    Training takes a random window (drawn from ``generator``, by default torch's global RNG,
    which DataLoader seeds per worker), evaluation the centred one. Clips with fewer frames
    than asked repeat their last frame.

    Args:
        num_available: frames the clip has (``>= 1``).
        num_frames: frames wanted (``T``).
        train: random (True) or centred (False) window.
        generator: optional torch generator for the random window.

    Returns:
        ``(T,)`` int64 indices.

    Example:
        >>> choose_frames(5, 3, train=False).tolist()
        [1, 2, 3]
        >>> choose_frames(2, 4, train=True).tolist()
        [0, 1, 1, 1]
    """
    if num_available < 1:
        raise ValueError(f"expected at least one frame, got {num_available}")
    spare = max(0, num_available - num_frames)
    if train and spare > 0:
        first = int(torch.randint(0, spare + 1, (), generator=generator))
    else:
        first = spare // 2
    return np.minimum(np.arange(first, first + num_frames), num_available - 1)


def frame_transform(settings: VideoSettings, *, train: bool) -> v2.Transform:
    """Transform of a ``(T, 3, H, W)`` uint8 clip to normalised float ``(T, 3, S, S)``.

    The same random crop and flip are applied to every frame of a clip.
    """
    size = settings.frame_size
    spatial: list[v2.Transform]
    if train:
        spatial = [v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()]
    else:
        spatial = [v2.Resize((size, size), antialias=True)]
    return v2.Compose(
        [
            *spatial,
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


def frames_to_tensor(frames: np.ndarray, transform: v2.Transform) -> Tensor:
    """``(T, H, W, 3)`` uint8 frames -> transformed ``(3, T, S, S)`` float tensor."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (T, H, W, 3), got {frames.shape}")
    clip = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)  # (T, 3, H, W)
    out: Tensor = transform(clip)
    return out.permute(1, 0, 2, 3).contiguous()  # (3, T, S, S)
