"""The pieces of the CREMA-D and AVE scripts that live in examples.av_common.runner."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest

from examples.av_common.dataset import ClipRecord, FeatureCache
from examples.av_common.features import AudioSettings, VideoSettings
from examples.av_common.runner import (
    add_av_flags,
    fill_cache,
    media_options,
    parse_av_args,
    parse_cache_args,
)
from examples.av_common.synth import moving_square_frames, tone, write_video, write_wav
from examples.common.cli import build_parser


def av_parser() -> argparse.ArgumentParser:
    parser = build_parser("test")
    add_av_flags(parser)
    return parser


def test_av_args_need_a_data_root(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected --data-root: the folder with A/ and B/"):
        parse_av_args(av_parser(), ["--smoke"], data_root_hint="the folder with A/ and B/")
    args = parse_av_args(av_parser(), ["--data-root", str(tmp_path)], data_root_hint="x")
    assert args.data_root == tmp_path


def test_media_options_follow_the_flags(tmp_path: Path) -> None:
    defaults = parse_av_args(av_parser(), ["--data-root", "d"], data_root_hint="x")
    assert media_options(defaults) == {
        "smoke": False,
        "cache_dir": None,
        "skip_bad": False,
        "progress": True,
    }
    argv = ["--data-root", "d", "--smoke", "--cache-dir", str(tmp_path), "--skip-bad"]
    flags = parse_av_args(av_parser(), [*argv, "--no-progress"], data_root_hint="x")
    assert media_options(flags) == {
        "smoke": True,
        "cache_dir": tmp_path,
        "skip_bad": True,
        "progress": False,
    }


def test_cache_command_flags(tmp_path: Path) -> None:
    args = parse_cache_args("fill", ["--data-root", "d", "--cache-dir", str(tmp_path), "--smoke"])
    assert (args.data_root, args.cache_dir, args.smoke, args.skip_bad) == (
        Path("d"),
        tmp_path,
        True,
        False,
    )
    with pytest.raises(SystemExit):
        parse_cache_args("fill", ["--data-root", "d"])  # --cache-dir is required


def test_fill_cache_skips_and_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    audio = AudioSettings(sample_rate=8000, seconds=1.0, n_fft=128, hop=64)
    video = VideoSettings(fps=1.0, num_frames=2, frame_size=32, store_short_side=40)
    records = []
    for i in range(2):
        wav, flv = tmp_path / f"c{i}.wav", tmp_path / f"c{i}.flv"
        write_wav(wav, tone(300, 1.2, 8000, seed=i), 8000)
        write_video(flv, moving_square_frames(6, 48, 32, (0, 255, 0), seed=i), 5,
                    container_format="flv", codec="flv")  # fmt: skip
        records.append(ClipRecord(f"c{i}", i, wav, flv))
    records.append(ClipRecord("gone", 0, tmp_path / "gone.wav", tmp_path / "gone.flv"))
    cache = FeatureCache(tmp_path / "cache", "toy", audio, video)
    with pytest.raises(FileNotFoundError, match=r"gone\.wav"):
        fill_cache(cache, records, skip_bad=False)
    with caplog.at_level(logging.INFO):
        good = fill_cache(cache, records, skip_bad=True)
    assert [r.clip_id for r in good] == ["c0", "c1"]
    assert len(list(cache.directory.glob("*.npz"))) == 2
    assert f"cached 2 clips in {cache.directory}" in caplog.text
    assert "skipped 1 of 3 clips" in caplog.text
