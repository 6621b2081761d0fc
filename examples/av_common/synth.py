"""Synthetic media for fixtures: tone-plus-noise audio and videos of a moving coloured square.

The files are real (a WAV written by soundfile, FLV/MP4 containers encoded by PyAV/FFmpeg) so
the loaders are exercised exactly as on the real data sets.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
import soundfile as sf


def tone(
    freq: float, seconds: float, sample_rate: int, *, noise: float = 0.05, seed: int = 0
) -> np.ndarray:
    """A sine tone with a little white noise, ``(round(seconds * sample_rate),)`` float32."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    wave = 0.4 * np.sin(2 * np.pi * freq * t) + noise * rng.standard_normal(t.size)
    return wave.astype(np.float32)


def write_wav(path: str | Path, wave: np.ndarray, sample_rate: int) -> None:
    """Write a mono 16-bit PCM WAV file."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(wave, -1, 1), sample_rate, subtype="PCM_16")


def moving_square_frames(
    num_frames: int, width: int, height: int, colour: Sequence[int], *, seed: int = 0
) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 frames: a coloured square sliding over a noisy grey background."""
    rng = np.random.default_rng(seed)
    side = max(4, min(width, height) // 3)
    frames = rng.integers(60, 90, size=(num_frames, height, width, 3), dtype=np.uint8)
    for i in range(num_frames):
        x = (seed * 7 + i * 3) % max(1, width - side)
        y = (seed * 5 + i * 2) % max(1, height - side)
        frames[i, y : y + side, x : x + side] = np.asarray(colour, dtype=np.uint8)
    return frames


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: int,
    *,
    container_format: str,
    codec: str,
    audio: np.ndarray | None = None,
    audio_rate: int = 16000,
    audio_codec: str = "aac",
) -> None:
    """Encode RGB frames (and optionally a mono audio track) into a video container.

    Args:
        path: output file.
        frames: ``(N, H, W, 3)`` uint8 frames (even ``H`` and ``W``).
        fps: frame rate.
        container_format: FFmpeg muxer, e.g. ``"flv"`` or ``"mp4"``.
        codec: video encoder, e.g. ``"flv"`` (Sorenson H.263, as in CREMA-D) or ``"libx264"``.
        audio: optional ``(S,)`` float waveform in ``[-1, 1]``.
        audio_rate: its sampling rate.
        audio_codec: audio encoder.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1:3]
    with av.open(str(path), "w", format=container_format) as container:
        vstream = container.add_stream(codec, rate=fps)
        vstream.width, vstream.height = width, height
        vstream.pix_fmt = "yuv420p"
        astream = None
        if audio is not None:
            astream = container.add_stream(audio_codec, rate=audio_rate)
            astream.layout = "mono"
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            container.mux(vstream.encode(frame))
        container.mux(vstream.encode(None))
        if astream is not None and audio is not None:
            _encode_audio(container, astream, audio.astype(np.float32), audio_rate)


def _encode_audio(
    container: av.container.OutputContainer,
    stream: av.AudioStream,
    audio: np.ndarray,
    rate: int,
) -> None:
    chunk = stream.codec_context.frame_size or 1024
    for first in range(0, audio.size, chunk):
        samples = np.ascontiguousarray(audio[first : first + chunk][None, :])
        frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
        frame.sample_rate = rate
        frame.pts = first
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))
