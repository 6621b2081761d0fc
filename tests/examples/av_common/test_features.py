"""The standard spectrogram recipes, frame choice and frame transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.signal import get_window

from examples.av_common.features import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    AudioSettings,
    VideoSettings,
    choose_frames,
    fit_length,
    frame_transform,
    frames_to_tensor,
    log_spectrogram,
)


def reference_stft(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """Centred STFT magnitude written out plainly: zero-pad n_fft/2, periodic Hann, rfft."""
    padded = np.pad(x.astype(np.float64), n_fft // 2)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)
    frames = [padded[i : i + n_fft] * window for i in range(0, len(padded) - n_fft + 1, hop)]
    return np.log(np.abs(np.fft.rfft(np.stack(frames), axis=1)).T + 1e-7)


def reference_psd(x: np.ndarray, fs: int, nperseg: int, hop: int) -> np.ndarray:
    """One-sided PSD of detrended Tukey(0.25)-windowed segments, density scaling."""
    window = get_window(("tukey", 0.25), nperseg)
    segments = [x[i : i + nperseg] for i in range(0, len(x) - nperseg + 1, hop)]
    segments = [(s - s.mean()) * window for s in segments]
    power = np.abs(np.fft.rfft(np.stack(segments), axis=1)) ** 2 / (fs * (window**2).sum())
    power[:, 1:-1] *= 2  # one-sided: fold the negative frequencies (nperseg even)
    return np.log(power.T + 1e-7)


def test_standard_shapes() -> None:
    cremad = AudioSettings(sample_rate=22050, seconds=3.0, n_fft=512, hop=353, kind="stft")
    ave = AudioSettings(sample_rate=16000, seconds=10.0, n_fft=512, hop=159, kind="psd")
    assert cremad.num_samples == 66150 and cremad.spectrogram_shape() == (257, 188)
    assert ave.num_samples == 160000 and ave.spectrogram_shape() == (257, 1004)
    wave = np.random.default_rng(0).uniform(-1, 1, 20000).astype(np.float32)
    for settings in (cremad, ave):
        spec = log_spectrogram(wave, settings)
        assert spec.shape == settings.spectrogram_shape() and spec.dtype == np.float32
        assert np.isfinite(spec).all()


def test_stft_matches_plain_reference() -> None:
    settings = AudioSettings(sample_rate=8000, seconds=0.5, n_fft=128, hop=50, kind="stft")
    x = np.random.default_rng(1).uniform(-0.9, 0.9, 4000).astype(np.float32)
    np.testing.assert_allclose(
        log_spectrogram(x, settings), reference_stft(x, 128, 50), rtol=1e-5, atol=1e-4
    )


def test_psd_matches_plain_reference() -> None:
    settings = AudioSettings(sample_rate=8000, seconds=0.5, n_fft=128, hop=50, kind="psd")
    x = np.random.default_rng(2).uniform(-0.9, 0.9, 4000).astype(np.float32)
    np.testing.assert_allclose(
        log_spectrogram(x, settings), reference_psd(x.astype(np.float64), 8000, 128, 50),
        rtol=1e-5, atol=1e-4,
    )  # fmt: skip


def test_fit_length_tiles_then_truncates_and_spectrogram_clips() -> None:
    np.testing.assert_array_equal(fit_length(np.array([1.0, 2.0, 3.0]), 7), [1, 2, 3, 1, 2, 3, 1])
    np.testing.assert_array_equal(fit_length(np.arange(10.0), 4), [0, 1, 2, 3])
    with pytest.raises(ValueError, match="non-empty 1-D"):
        fit_length(np.zeros(0), 4)
    settings = AudioSettings(sample_rate=1000, seconds=0.5, n_fft=64, hop=32)
    loud = np.full(500, 5.0, dtype=np.float32)
    np.testing.assert_allclose(
        log_spectrogram(loud, settings), log_spectrogram(np.ones(500, np.float32), settings)
    )


def test_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="kind"):
        AudioSettings(sample_rate=16000, seconds=1.0, kind="mel")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hop"):
        AudioSettings(sample_rate=16000, seconds=1.0, n_fft=256, hop=300)
    with pytest.raises(ValueError, match="positive"):
        AudioSettings(sample_rate=16000, seconds=0.0)
    with pytest.raises(ValueError, match="num_frames"):
        VideoSettings(num_frames=0)


def test_choose_frames() -> None:
    assert choose_frames(5, 3, train=False).tolist() == [1, 2, 3]
    assert choose_frames(3, 3, train=True).tolist() == [0, 1, 2]
    assert choose_frames(2, 4, train=False).tolist() == [0, 1, 1, 1]
    starts = set()
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        idx = choose_frames(6, 3, train=True, generator=gen)
        assert np.all(np.diff(idx) == 1) and idx[0] >= 0 and idx[-1] <= 5
        starts.add(int(idx[0]))
    assert starts == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="at least one frame"):
        choose_frames(0, 3, train=False)


def test_eval_transform_resizes_and_normalises() -> None:
    frames = np.full((3, 20, 30, 3), 255, dtype=np.uint8)
    out = frames_to_tensor(frames, frame_transform(VideoSettings(frame_size=16), train=False))
    assert out.shape == (3, 3, 16, 16) and out.dtype == torch.float32
    expected = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(out[:, 0, 0, 0], expected)


def test_train_transform_crops_every_frame_alike() -> None:
    torch.manual_seed(0)
    image = np.random.default_rng(0).integers(0, 255, (1, 40, 50, 3), dtype=np.uint8)
    frames = np.repeat(image, 4, axis=0)  # four identical frames
    transform = frame_transform(VideoSettings(frame_size=24), train=True)
    out = frames_to_tensor(frames, transform)
    assert out.shape == (3, 4, 24, 24)
    for t in range(1, 4):
        torch.testing.assert_close(out[:, t], out[:, 0])
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        frames_to_tensor(frames[..., 0], transform)
