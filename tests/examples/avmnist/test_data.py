"""AV-MNIST from its files: idx and WAV parsing, image degradation, spectrograms, splits."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import soundfile as sf

from examples.avmnist import data
from examples.avmnist.make_fixture import FIXTURE_INDICES, FIXTURE_SPEAKERS, idx_bytes


def test_idx_files_round_trip_plain_and_gzip(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a-idx3-ubyte").write_bytes(idx_bytes(arr))
    (tmp_path / "a-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(arr)))
    assert np.array_equal(data.read_idx(tmp_path / "a-idx3-ubyte"), arr)
    assert np.array_equal(data.read_idx(tmp_path / "a-idx3-ubyte.gz"), arr)


def test_idx_errors_name_the_file_and_what_came(tmp_path):
    bad = tmp_path / "bad-idx3-ubyte"
    bad.write_bytes(b"\x01\x02\x08\x03" + b"\x00" * 12)
    with pytest.raises(data.DataFormatError, match="bad-idx3-ubyte: expected an idx header"):
        data.read_idx(bad)
    short = tmp_path / "short-idx1-ubyte"
    short.write_bytes(idx_bytes(np.zeros(10, np.uint8))[:-3])
    with pytest.raises(
        data.DataFormatError, match="expected 10 data bytes for shape \\(10,\\), got 7"
    ):
        data.read_idx(short)
    not_gzip = tmp_path / "x-idx1-ubyte.gz"
    not_gzip.write_bytes(b"plain")
    with pytest.raises(data.DataFormatError, match=r"x-idx1-ubyte\.gz: expected an idx file"):
        data.read_idx(not_gzip)


def test_mnist_files_are_found_and_checked(avmnist_root, tmp_path):
    images, labels = data.load_mnist(avmnist_root / "mnist", "test")
    assert images.shape == (60, 28, 28) and images.dtype == np.uint8
    assert sorted(np.bincount(labels).tolist()) == [6] * 10
    with pytest.raises(data.DataFormatError, match=r"t10k-images-idx3-ubyte\[.gz\]"):
        data.load_mnist(tmp_path, "test")
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(np.zeros((3, 28, 28), np.uint8)))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros(4, np.uint8)))
    with pytest.raises(data.DataFormatError, match="expected 3 labels"):
        data.load_mnist(tmp_path, "test")


def test_recording_names_and_wav_checks(tmp_path):
    assert data.parse_name("7_jackson_32.wav") == (7, "jackson", 32)
    with pytest.raises(data.DataFormatError, match="expected an FSDD recording name"):
        data.parse_name("jackson_7_32.wav")
    wave = np.zeros(800, np.float32)
    sf.write(str(tmp_path / "1_a_0.wav"), wave, 16000)
    with pytest.raises(data.DataFormatError, match="expected 8000 Hz audio, got 16000 Hz"):
        data.read_recording(tmp_path / "1_a_0.wav")
    sf.write(str(tmp_path / "2_a_0.wav"), np.zeros((800, 2), np.float32), 8000)
    with pytest.raises(data.DataFormatError, match="expected mono audio, got 2 channels"):
        data.read_recording(tmp_path / "2_a_0.wav")
    (tmp_path / "3_a_0.wav").write_bytes(b"RIFF not really")
    with pytest.raises(data.DataFormatError, match=r"3_a_0\.wav: expected a WAV file"):
        data.read_recording(tmp_path / "3_a_0.wav")
    with pytest.raises(data.DataFormatError, match="found none"):
        data.find_recordings(tmp_path / "nowhere")
    with pytest.raises(data.DataFormatError, match="expected recording indices 0-49"):
        data.recording_split(50)


def test_spectrogram_is_square_and_centres_the_recording():
    t = np.arange(2000) / data.SAMPLE_RATE
    wave = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    spec = data.spectrogram(wave, size=32)
    assert spec.shape == (32, 32) and spec.dtype == np.float32
    loud = spec.max(axis=0) > np.log(1e-3)  # frames that hold the tone
    frames = np.flatnonzero(loud)
    assert frames[0] > 0 and frames[-1] < 31  # silence on both sides
    assert abs((frames[0] + frames[-1]) / 2 - 15.5) <= 1.5
    peak = int(np.argmax(spec[:, frames[len(frames) // 2]]))
    assert abs(peak - round(1000 / 4000 * 31)) <= 1  # 1 kHz of 0-4 kHz over 32 bins
    long = data.spectrogram(np.ones(20000, np.float32), size=16)
    assert long.shape == (16, 16)


def test_pca_degradation_keeps_a_quarter_of_the_energy():
    rng = np.random.default_rng(0)
    basis = rng.normal(size=(10, 784))
    coeff = rng.normal(size=(400, 10)) * np.linspace(2.2, 2.0, 10)
    images = np.clip(120 + 4 * coeff @ basis, 0, 255).astype(np.uint8).reshape(400, 28, 28)
    (out,), k = data.pca_degrade(images, [images], kept_energy=0.25)
    x = images.reshape(400, -1) / 255.0
    x = x - x.mean(0)
    ratio = np.cumsum(np.linalg.svd(x, compute_uv=False) ** 2) / np.sum(x**2)
    assert ratio[k - 1] <= 0.25 < ratio[k]  # the most components within 25 %
    flat = out.reshape(400, -1).astype(np.float64)
    assert np.linalg.matrix_rank(flat, tol=1e-3) == k  # only k directions remain
    assert abs(flat.mean(0)).max() < 1e-5  # centred: the mean image is not added back
    with pytest.raises(ValueError, match="kept_energy"):
        data.pca_degrade(images, [images], kept_energy=1.5)


def test_splits_never_share_an_image_or_a_recording(avmnist_root):
    source = data.load_source(avmnist_root / "mnist", avmnist_root / "fsdd")
    assert len(source.recordings) == 10 * len(FIXTURE_SPEAKERS) * len(FIXTURE_INDICES)
    counts = data.PairCounts(train=3, val=1, test=2)
    splits = data.build_splits(source, counts, seed=0)
    images = {s: set(v["image"].tolist()) for s, v in splits.items()}
    recs = {s: set(v["recording"].tolist()) for s, v in splits.items()}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not images[a] & images[b] and not recs[a] & recs[b]
    for split, s in splits.items():
        assert np.bincount(s["label"]).tolist() == [counts[split]] * 10
        assert (source.image_labels[s["image"]] == s["label"]).all()
        digits = np.array([source.recordings[r][0] for r in s["recording"]])
        assert (digits == s["label"]).all()
        indices = [source.recordings[r][2] for r in s["recording"]]
        assert all(data.recording_split(i) == split for i in indices)
    again = data.build_splits(source, counts, seed=0)
    other = data.build_splits(source, counts, seed=1)
    assert all(np.array_equal(again[s]["image"], splits[s]["image"]) for s in splits)
    assert any(not np.array_equal(other[s]["image"], splits[s]["image"]) for s in splits)
    with pytest.raises(ValueError, match="expected at least 7 images of digit 0"):
        data.build_splits(source, data.PairCounts(train=4, val=1, test=2), seed=0)


def test_datasets_are_standardised_on_the_training_pairs(avmnist_root):
    source = data.load_source(avmnist_root / "mnist", avmnist_root / "fsdd", spec_size=16)
    sets, info = data.build_datasets(source, data.PairCounts(3, 1, 2), seed=0)
    train = sets["train"].tensors
    assert train["image"].shape == (30, 1, 28, 28) and train["audio"].shape == (30, 1, 16, 16)
    assert len(sets["val"]) == 10 and len(sets["test"]) == 20
    for m in ("image", "audio"):
        assert abs(float(train[m].mean())) < 1e-4 and abs(float(train[m].std()) - 1) < 0.05
    assert info["pca_components"] >= 1
