"""Decoding of real media files: WAV, FLV and MP4 written with soundfile / PyAV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from examples.av_common.media import (
    MediaError,
    load_audio,
    probe_media,
    resample,
    sample_video_frames,
)
from examples.av_common.synth import tone, write_video, write_wav


def grey_ramp(num_frames: int, width: int = 32, height: int = 32) -> np.ndarray:
    """Frame i is uniformly grey with level 8 * i, so its index can be read back."""
    levels = (8 * np.arange(num_frames)).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (num_frames, height, width, 3)).copy()


def frame_indices(frames: np.ndarray) -> list[int]:
    return [round(float(f.mean()) / 8) for f in frames]


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("media")
    write_wav(root / "a.wav", tone(440, 1.5, 16000), 16000)
    write_video(root / "v.flv", grey_ramp(15), 5, container_format="flv", codec="flv")
    write_video(
        root / "v.mp4",
        grey_ramp(20),
        2,
        container_format="mp4",
        codec="libx264",
        audio=tone(300, 10, 16000),
    )
    write_video(root / "silent.mp4", grey_ramp(4), 2, container_format="mp4", codec="mpeg4")
    (root / "garbage.flv").write_bytes(b"\x00not a video at all" * 50)
    (root / "garbage.wav").write_bytes(b"RIFF....WAVEjunk" * 10)
    return root


def test_resample_length_and_identity() -> None:
    x = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    assert resample(x, 16000, 22050).shape == (22050,)
    np.testing.assert_array_equal(resample(x, 16000, 16000), x)
    with pytest.raises(ValueError, match="positive sampling rates"):
        resample(x, 0, 16000)


def test_wav_is_resampled_to_the_requested_rate(media_dir: Path) -> None:
    wave = load_audio(media_dir / "a.wav", 22050)
    assert wave.dtype == np.float32
    assert abs(wave.size - round(1.5 * 22050)) <= 1
    # the tone survives resampling: dominant frequency 440 Hz
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * 22050 / wave.size - 440) < 2


def test_audio_segment_from_mp4(media_dir: Path) -> None:
    whole = load_audio(media_dir / "v.mp4", 8000)
    part = load_audio(media_dir / "v.mp4", 8000, start=2.0, end=5.0)
    assert abs(whole.size - 80000) < 1500  # AAC adds priming / padding samples
    assert part.size == 3 * 8000


def test_frames_at_one_fps_are_the_nearest_frames(media_dir: Path) -> None:
    frames = sample_video_frames(media_dir / "v.flv", 1.0)  # 5 fps, 3 s
    assert frames.shape == (3, 32, 32, 3) and frames.dtype == np.uint8
    assert frame_indices(frames) == [0, 5, 10]


def test_frames_of_a_segment_and_resizing(media_dir: Path) -> None:
    frames = sample_video_frames(media_dir / "v.mp4", 1.0, start=2.0, end=5.0, short_side=16)
    assert frames.shape == (3, 16, 16, 3)
    assert frame_indices(frames) == [4, 6, 8]  # 2 fps: t = 2, 3, 4 s


def test_other_rates_pick_the_nearest_frame(media_dir: Path) -> None:
    frames = sample_video_frames(media_dir / "v.flv", 1.5)  # t = 0, .67, 1.33, 2, 2.67
    assert frame_indices(frames) == [0, 3, 7, 10, 13]


@pytest.mark.parametrize("name", ["missing.wav", "missing.flv"])
def test_missing_files_are_named(media_dir: Path, name: str) -> None:
    loader = load_audio if name.endswith(".wav") else sample_video_frames
    with pytest.raises(FileNotFoundError, match=name):
        loader(media_dir / name, 16000)


def test_corrupt_files_are_named(media_dir: Path) -> None:
    with pytest.raises(MediaError, match=r"garbage\.flv"):
        sample_video_frames(media_dir / "garbage.flv")
    with pytest.raises(MediaError, match=r"garbage\.wav"):
        load_audio(media_dir / "garbage.wav", 16000)
    with pytest.raises(MediaError, match=r"garbage\.flv"):
        probe_media(media_dir / "garbage.flv", "video")
    with pytest.raises(MediaError, match=r"garbage\.wav"):
        probe_media(media_dir / "garbage.wav", "audio")


def test_missing_streams_and_empty_ranges(media_dir: Path) -> None:
    with pytest.raises(MediaError, match="no audio stream"):
        load_audio(media_dir / "silent.mp4", 16000)
    with pytest.raises(MediaError, match="no audio stream"):
        probe_media(media_dir / "silent.mp4", "audio")
    with pytest.raises(MediaError, match="no video frame"):
        sample_video_frames(media_dir / "v.flv", 1.0, start=50.0)
    with pytest.raises(MediaError, match="no audio samples"):
        load_audio(media_dir / "a.wav", 16000, start=5.0, end=6.0)


def test_probe_accepts_good_files(media_dir: Path) -> None:
    probe_media(media_dir / "a.wav", "audio")
    probe_media(media_dir / "v.mp4", "audio")
    probe_media(media_dir / "v.flv", "video")
    with pytest.raises(ValueError, match="kind"):
        probe_media(media_dir / "v.flv", "text")


def test_media_error_survives_pickling(media_dir: Path) -> None:
    import pickle

    err = MediaError.for_file(media_dir / "x.flv", "broken")
    assert err.path == media_dir / "x.flv" and "x.flv: broken" in str(err)
    again = pickle.loads(pickle.dumps(err))
    assert isinstance(again, MediaError) and str(again) == str(err)
