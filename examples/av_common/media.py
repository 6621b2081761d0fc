"""Decoding raw media: audio from WAV (soundfile) or from a video container (PyAV), and video
frames sampled at a fixed rate (PyAV).

Every failure is turned into :class:`MediaError` (a :class:`ValueError`) or
:class:`FileNotFoundError` whose message names the file, so that a bad clip never stops a run
without saying which one it was.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

#: File suffixes read with soundfile; everything else goes through PyAV.
SOUNDFILE_SUFFIXES = frozenset({".wav", ".flac", ".ogg"})


class MediaError(ValueError):
    """A media file exists but cannot be decoded (or holds no usable stream).

    The message always names the file. It takes a single message argument so that a
    DataLoader worker can re-raise it in the main process with its type intact.

    Args:
        message: what went wrong, naming the file.
        path: the offending file, if known.
    """

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        super().__init__(message)
        self.path = Path(path) if path is not None else None

    @classmethod
    def for_file(cls, path: str | Path, reason: str) -> MediaError:
        """``cannot decode media file <path>: <reason>``."""
        return cls(f"cannot decode media file {path}: {reason}", path)


def require_file(path: str | Path, what: str) -> Path:
    """Return ``path`` as a :class:`Path`, or raise naming it if it is not a file.

    Raises:
        FileNotFoundError: ``path`` does not exist or is not a regular file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist (or is not a file)")
    return path


def resample(wave: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Polyphase resampling of a 1-D signal from ``orig_rate`` to ``target_rate`` Hz.

    Args:
        wave: ``(N,)`` float signal.
        orig_rate: its sampling rate.
        target_rate: the wanted rate.

    Returns:
        ``(round(N * target_rate / orig_rate),)`` float32 signal (approximately; polyphase
        filtering gives ``ceil``).
    """
    if orig_rate <= 0 or target_rate <= 0:
        raise ValueError(f"expected positive sampling rates, got {orig_rate} -> {target_rate}")
    if orig_rate == target_rate:
        return wave.astype(np.float32, copy=False)
    g = math.gcd(int(orig_rate), int(target_rate))
    out: np.ndarray = resample_poly(
        wave.astype(np.float64), int(target_rate) // g, int(orig_rate) // g
    )
    return out.astype(np.float32)


def _read_soundfile(path: Path) -> tuple[np.ndarray, int, float]:
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise MediaError.for_file(path, f"soundfile could not read it ({err})") from err
    return data.mean(axis=1), int(rate), 0.0


def _read_pyav_audio(path: Path, target_rate: int) -> tuple[np.ndarray, int, float]:
    chunks: list[np.ndarray] = []
    start_time: float | None = None
    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise MediaError.for_file(path, "the container has no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="flt", layout="mono", rate=target_rate)
            for frame in container.decode(stream):
                if start_time is None:
                    start_time = float(frame.time) if frame.time is not None else 0.0
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    except av.FFmpegError as err:
        raise MediaError.for_file(path, f"FFmpeg could not decode its audio ({err})") from err
    if not chunks:
        raise MediaError.for_file(path, "the audio stream holds no samples")
    return np.concatenate(chunks).astype(np.float32), target_rate, start_time or 0.0


def load_audio(
    path: str | Path,
    sample_rate: int,
    *,
    start: float | None = None,
    end: float | None = None,
) -> np.ndarray:
    """Load a mono waveform at ``sample_rate`` Hz, optionally cut to ``[start, end)`` seconds.

    WAV/FLAC/OGG files are read with soundfile and resampled with a polyphase filter; any other
    container (MP4, FLV, ...) is decoded and resampled by PyAV/FFmpeg. Channels are averaged.

    Args:
        path: media file.
        sample_rate: output rate in Hz.
        start: segment start in seconds (default: beginning).
        end: segment end in seconds (default: end of the stream).

    Returns:
        ``(N,)`` float32 waveform.

    Raises:
        FileNotFoundError: the file does not exist.
        MediaError: it cannot be decoded, has no audio, or the segment is empty.
    """
    path = require_file(path, "audio file")
    if path.suffix.lower() in SOUNDFILE_SUFFIXES:
        wave, rate, t0 = _read_soundfile(path)
        wave = resample(wave, rate, sample_rate)
    else:
        wave, _, t0 = _read_pyav_audio(path, sample_rate)
    if start is not None or end is not None:
        lo = max(0, round(((start or 0.0) - t0) * sample_rate))
        hi = len(wave) if end is None else max(0, round((end - t0) * sample_rate))
        wave = wave[lo:hi]
    if wave.size == 0:
        raise MediaError.for_file(path, f"no audio samples in the segment [{start}, {end}] s")
    return wave


def _resize_short_side(frame: av.VideoFrame, short_side: int | None) -> av.VideoFrame:
    if short_side is None:
        return frame
    w, h = frame.width, frame.height
    scale = short_side / min(w, h)
    new_w = max(2, round(w * scale))
    new_h = max(2, round(h * scale))
    return frame.reformat(width=new_w, height=new_h)


def _frame_times(
    frames: Iterator[av.VideoFrame], time_base: Fraction | None
) -> Iterator[tuple[float, av.VideoFrame]]:
    for index, frame in enumerate(frames):
        if frame.pts is not None and time_base is not None:
            yield float(frame.pts * time_base), frame
        elif frame.time is not None:
            yield float(frame.time), frame
        else:  # no timing at all: assume frames are evenly spaced at an unknown rate
            yield float(index), frame


def sample_video_frames(
    path: str | Path,
    fps: float = 1.0,
    *,
    start: float = 0.0,
    end: float | None = None,
    short_side: int | None = None,
) -> np.ndarray:
    """Decode the frames nearest to ``start, start + 1/fps, start + 2/fps, ...`` (before ``end``).

    This is what extracting frames "at 1 fps" produces: one RGB image per second of video. The
    file is decoded once, as a stream, and only the chosen frames are converted to arrays.

    Args:
        path: video file (FLV, MP4, ...); the first video stream is used.
        fps: sampling rate in frames per second.
        start: time of the first sample in seconds.
        end: no sample at or after this time (default: the end of the stream).
        short_side: if given, resize each chosen frame so its shorter side has this length.

    Returns:
        ``(N, H, W, 3)`` uint8 RGB frames, ``N >= 1``.

    Raises:
        FileNotFoundError: the file does not exist.
        MediaError: it cannot be decoded, has no video stream, or no frame falls in the range.
    """
    if fps <= 0:
        raise ValueError(f"expected fps > 0, got {fps}")
    path = require_file(path, "video file")
    chosen: list[np.ndarray] = []
    step = 1.0 / fps
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise MediaError.for_file(path, "the container has no video stream")
            stream = container.streams.video[0]
            target = start
            prev: tuple[float, av.VideoFrame] | None = None
            for t, frame in _frame_times(container.decode(stream), stream.time_base):
                # Every target time at or before this frame gets the nearer of prev and frame;
                # targets after the last frame are never produced.
                while t >= target and (end is None or target < end):
                    best = frame
                    if prev is not None and abs(prev[0] - target) <= abs(t - target):
                        best = prev[1]
                    chosen.append(_resize_short_side(best, short_side).to_ndarray(format="rgb24"))
                    target = start + len(chosen) * step
                if end is not None and target >= end:
                    break
                prev = (t, frame)
    except av.FFmpegError as err:
        raise MediaError.for_file(path, f"FFmpeg could not decode its video ({err})") from err
    if not chosen:
        raise MediaError.for_file(path, f"no video frame between {start} s and {end} s")
    return np.stack(chosen)


def probe_media(path: str | Path, kind: str) -> None:
    """Cheap validity check: the file opens and holds a decodable stream of ``kind``.

    Args:
        path: media file.
        kind: ``"audio"`` or ``"video"``.

    Raises:
        FileNotFoundError: the file does not exist.
        MediaError: it does not open, or its first packet of that kind does not decode.
    """
    if kind not in ("audio", "video"):
        raise ValueError(f"expected kind 'audio' or 'video', got {kind!r}")
    path = require_file(path, f"{kind} file")
    if kind == "audio" and path.suffix.lower() in SOUNDFILE_SUFFIXES:
        try:
            info = sf.info(str(path))
        except (sf.LibsndfileError, RuntimeError, TypeError) as err:
            raise MediaError.for_file(path, f"soundfile could not read it ({err})") from err
        if info.frames <= 0:
            raise MediaError.for_file(path, "the audio file holds no samples")
        return
    try:
        with av.open(str(path)) as container:
            streams = container.streams.audio if kind == "audio" else container.streams.video
            if not streams:
                raise MediaError.for_file(path, f"the container has no {kind} stream")
            for _frame in container.decode(streams[0]):
                return
    except av.FFmpegError as err:
        raise MediaError.for_file(path, f"FFmpeg could not decode its {kind} ({err})") from err
    raise MediaError.for_file(path, f"the {kind} stream holds no decodable frame")
