"""Clip records, the keyed feature cache, bad-media handling and the dataset items."""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from examples.av_common.dataset import (
    AVClipDataset,
    ClipRecord,
    FeatureCache,
    build_split_datasets,
    cache_key,
    check_records,
    extract_features,
)
from examples.av_common.features import AudioSettings, VideoSettings
from examples.av_common.media import MediaError
from examples.av_common.synth import moving_square_frames, tone, write_video, write_wav

AUDIO = AudioSettings(sample_rate=8000, seconds=1.0, n_fft=128, hop=64)
VIDEO = VideoSettings(fps=1.0, num_frames=2, frame_size=32, store_short_side=40)


def make_clips(root: Path, n: int = 3) -> list[ClipRecord]:
    records = []
    for i in range(n):
        wav, flv = root / f"c{i}.wav", root / f"c{i}.flv"
        write_wav(wav, tone(200 + 50 * i, 1.3, 16000, seed=i), 16000)
        frames = moving_square_frames(12, 48, 32, (255, 10 * i, 0), seed=i)
        write_video(flv, frames, 5, container_format="flv", codec="flv")
        records.append(ClipRecord(f"c{i}", i % 2, wav, flv))
    return records


@pytest.fixture()
def clips(tmp_path: Path) -> list[ClipRecord]:
    return make_clips(tmp_path / "media")


def test_cache_key_follows_the_stored_content() -> None:
    base = cache_key("cremad", AUDIO, VIDEO)
    assert cache_key("cremad", AUDIO, VIDEO) == base
    assert cache_key("ave", AUDIO, VIDEO) != base
    for change in ({"sample_rate": 16000}, {"seconds": 2.0}, {"n_fft": 256}, {"hop": 32},
                   {"kind": "psd"}, {"clip": False}):  # fmt: skip
        assert cache_key("cremad", dataclasses.replace(AUDIO, **change), VIDEO) != base, change
    for change in ({"fps": 2.0}, {"store_short_side": 64}, {"jpeg_quality": 80}):
        assert cache_key("cremad", AUDIO, dataclasses.replace(VIDEO, **change)) != base, change
    # applied when reading, not stored: same cache
    for change in ({"num_frames": 5}, {"frame_size": 64}):
        assert cache_key("cremad", AUDIO, dataclasses.replace(VIDEO, **change)) == base, change


def test_cache_round_trip_and_new_directory_per_setting(
    tmp_path: Path, clips: list[ClipRecord]
) -> None:
    cache = FeatureCache(tmp_path / "cache", "toy", AUDIO, VIDEO)
    assert cache.build(clips, progress=False) == clips
    assert (cache.directory / "settings.json").is_file()
    assert len(list(cache.directory.glob("*.npz"))) == len(clips)
    direct = extract_features(clips[1], AUDIO, VIDEO)
    cached = cache.load(clips[1])
    assert cached is not None
    np.testing.assert_array_equal(cached.spectrogram, direct.spectrogram)
    assert cached.frames.shape == direct.frames.shape == (3, 40, 60, 3)
    assert np.abs(cached.frames.astype(int) - direct.frames.astype(int)).mean() < 4  # JPEG
    other = FeatureCache(tmp_path / "cache", "toy", dataclasses.replace(AUDIO, hop=32), VIDEO)
    assert other.directory != cache.directory
    assert other.load(clips[1]) is None  # never reuses entries of other settings


def test_stale_entries_are_rebuilt(tmp_path: Path, clips: list[ClipRecord]) -> None:
    cache = FeatureCache(tmp_path / "cache", "toy", AUDIO, VIDEO)
    cache.build(clips, progress=False)
    assert cache.load(clips[0]) is not None
    write_wav(clips[0].audio_path, tone(900, 2.0, 16000), 16000)  # the source changed
    os.utime(clips[0].audio_path, ns=(1, 1))
    assert cache.load(clips[0]) is None
    rebuilt = cache.get(clips[0])
    np.testing.assert_array_equal(
        rebuilt.spectrogram, extract_features(clips[0], AUDIO, VIDEO).spectrogram
    )
    assert cache.load(clips[0]) is not None


def test_dataset_items(clips: list[ClipRecord], tmp_path: Path) -> None:
    for cache in (None, FeatureCache(tmp_path / "cache", "toy", AUDIO, VIDEO)):
        for train in (True, False):
            ds = AVClipDataset(clips, AUDIO, VIDEO, train=train, cache=cache)
            item = ds[2]
            assert set(item) == {"audio", "video", "label"}
            assert item["audio"].shape == (1, 65, 126) and item["audio"].dtype == torch.float32
            assert item["video"].shape == (3, 2, 32, 32) and item["video"].dtype == torch.float32
            assert item["label"].dtype == torch.long and int(item["label"]) == clips[2].label
    assert len(ds) == 3 and ds.labels == [0, 1, 0]
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=3)))
    assert batch["video"].shape == (3, 3, 2, 32, 32)


def test_dataset_refuses_a_cache_of_other_settings(clips: list[ClipRecord], tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path / "cache", "toy", AUDIO, VIDEO)
    with pytest.raises(ValueError, match="other audio/video settings"):
        AVClipDataset(clips, dataclasses.replace(AUDIO, hop=32), VIDEO, train=True, cache=cache)
    AVClipDataset(clips, AUDIO, dataclasses.replace(VIDEO, num_frames=4), train=True, cache=cache)


def test_missing_media_are_named_or_skipped(
    clips: list[ClipRecord], caplog: pytest.LogCaptureFixture
) -> None:
    clips[1].video_path.unlink()
    with pytest.raises(FileNotFoundError, match=r"c1\.flv"):
        check_records(clips)
    with caplog.at_level(logging.WARNING):
        good = check_records(clips, skip_bad=True)
    assert [r.clip_id for r in good] == ["c0", "c2"]
    assert "skipped 1 of 3 clips" in caplog.text and "c1.flv" in caplog.text


def test_corrupt_media_are_named_or_skipped(
    clips: list[ClipRecord], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clips[2].audio_path.write_bytes(b"RIFF0000WAVEbroken" * 20)
    check_records(clips)  # existence only: fine
    with pytest.raises(MediaError, match=r"c2\.wav"):
        check_records(clips, probe=True)
    with pytest.raises(MediaError, match=r"c2\.wav"):
        AVClipDataset(clips, AUDIO, VIDEO, train=False)[2]
    cache = FeatureCache(tmp_path / "cache", "toy", AUDIO, VIDEO)
    with pytest.raises(MediaError, match=r"c2\.wav"):
        cache.build(clips, progress=False)
    with caplog.at_level(logging.WARNING):
        good = cache.build(clips, skip_bad=True, progress=False)
        probed = check_records(clips, skip_bad=True, probe=True)
    assert [r.clip_id for r in good] == [r.clip_id for r in probed] == ["c0", "c1"]
    assert caplog.text.count("skipped 1 of 3 clips") == 2


@pytest.mark.slow  # torch waits about 5 s to shut down a worker that raised
def test_dataloader_workers_report_the_bad_file(clips: list[ClipRecord]) -> None:
    shutil.copyfile(clips[0].audio_path, clips[1].video_path)  # a WAV posing as FLV
    ds = AVClipDataset(clips, AUDIO, VIDEO, train=False)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=1)
    batches = iter(loader)
    with pytest.raises(MediaError, match=r"c1\.flv"):
        next(batches)
    del batches
    gc.collect()  # shut the worker down here, not in a later test


def test_split_datasets_with_and_without_the_cache(
    clips: list[ClipRecord], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    split = {"train": clips[:2], "val": clips[2:], "test": clips[1:]}
    with caplog.at_level(logging.INFO):
        plain = build_split_datasets(split, AUDIO, VIDEO, cache_name="toy", title="Toy")
    assert list(plain) == ["train", "val", "test"]
    assert {n: [r.clip_id for r in ds.records] for n, ds in plain.items()} == {
        "train": ["c0", "c1"],
        "val": ["c2"],
        "test": ["c1", "c2"],
    }
    assert [ds.train for ds in plain.values()] == [True, False, False]
    assert all(ds.cache is None for ds in plain.values())
    assert "Toy val: 1 clips" in caplog.text
    cached = build_split_datasets(
        split, AUDIO, VIDEO, cache_name="toy", title="Toy", cache_dir=tmp_path / "c", progress=False
    )
    (directory,) = (tmp_path / "c").glob("toy-*")
    assert len(list(directory.glob("*.npz"))) == 3
    assert all(ds.cache is not None and ds.cache.directory == directory for ds in cached.values())
    torch.testing.assert_close(cached["test"][1]["audio"], plain["test"][1]["audio"])


def test_split_datasets_refuse_an_emptied_split(clips: list[ClipRecord]) -> None:
    clips[2].video_path.unlink()
    split = {"train": clips[:2], "test": clips[2:]}
    with pytest.raises(FileNotFoundError, match=r"c2\.flv"):
        build_split_datasets(split, AUDIO, VIDEO, cache_name="toy", title="Toy fold 3")
    with pytest.raises(ValueError, match="the test set of Toy fold 3 is empty"):
        build_split_datasets(
            split, AUDIO, VIDEO, cache_name="toy", title="Toy fold 3", skip_bad=True
        )
