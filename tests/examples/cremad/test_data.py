"""CREMA-D loader on a fixture in the real layout: names, splits, items and bad media."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch

from examples.cremad import data
from examples.cremad.make_fixture import ACTORS, clip_names
from tests.examples._helpers.av_pipelines import check_bad_media


def all_91_actor_names() -> list[str]:
    return [f"{a}_DFA_{e}_XX" for a in range(1001, 1092) for e in data.EMOTIONS]


def test_clip_names() -> None:
    clip = data.parse_clip_name("1026_IEO_ANG_HI.wav")
    assert (clip.clip_id, clip.actor, clip.sentence, clip.emotion, clip.level) == (
        "1026_IEO_ANG_HI",
        1026,
        "IEO",
        "ANG",
        "HI",
    )
    assert [data.parse_clip_name(f"1001_DFA_{e}_XX").label for e in data.EMOTIONS] == list(range(6))
    assert data.parse_clip_name("1001_DFA_NEU_XX").label == 0
    assert data.parse_clip_name("1001_DFA_ANG_XX").label == 5
    for bad in ("1001_DFA_ANG", "1001_XXX_ANG_XX", "abcd_DFA_ANG_XX", "1001_DFA_JOY_XX"):
        with pytest.raises(ValueError, match="expected a CREMA-D clip name"):
            data.parse_clip_name(bad)


def test_fixture_layout(cremad_root: Path) -> None:
    clips = data.list_clips(cremad_root)
    assert clips == sorted(clip_names()) and len(clips) == 36
    assert all((cremad_root / "VideoFlash" / f"{c}.flv").is_file() for c in clips)
    demographics = data.read_demographics(cremad_root)
    assert sorted(demographics) == list(ACTORS) and demographics[1001]["Sex"] == "Male"
    with pytest.raises(FileNotFoundError, match="AudioWAV"):
        data.list_clips(cremad_root / "nowhere")


def assert_speaker_disjoint(split: dict[str, list[str]]) -> None:
    speakers = {name: data.speakers_of(split[name]) for name in data.SPLIT_NAMES}
    assert all(speakers.values()), "every set has speakers"
    assert not speakers["train"] & speakers["val"]
    assert not speakers["train"] & speakers["test"]
    assert not speakers["val"] & speakers["test"]


def test_generated_folds_are_speaker_disjoint_with_the_paper_proportions() -> None:
    names = all_91_actor_names()
    folds = data.make_speaker_folds(names, num_folds=5, seed=3)
    tested: set[int] = set()
    for fold in folds:
        assert_speaker_disjoint(fold)
        counts = [len(data.speakers_of(fold[n])) for n in data.SPLIT_NAMES]
        assert counts == [63, 14, 14]
        assert sorted(c for n in data.SPLIT_NAMES for c in fold[n]) == sorted(names)
        assert not data.speakers_of(fold["test"]) & tested, "test blocks are disjoint"
        tested |= data.speakers_of(fold["test"])
    assert data.make_speaker_folds(names, seed=3) == folds
    assert data.make_speaker_folds(names, seed=4) != folds
    with pytest.raises(ValueError, match="actors"):
        data.make_speaker_folds(["1001_DFA_ANG_XX", "1002_DFA_ANG_XX"])


def test_published_fold_csv(cremad_root: Path, tmp_path: Path) -> None:
    for k in range(5):
        split = data.read_fold_csv(cremad_root / "folds" / f"fold_{k}.csv")
        assert_speaker_disjoint(split)
        expected = data.make_speaker_folds(data.list_clips(cremad_root), seed=0)[k]
        assert split == expected
    first = (cremad_root / "folds" / "fold_0.csv").read_text().splitlines()
    assert first[0] == ",".join(data.FOLD_CSV_HEADER)
    bad = tmp_path / "bad_header.csv"
    bad.write_text("name,label\n1001_DFA_ANG_XX.wav,ANG\n")
    with pytest.raises(ValueError, match="expected the header"):
        data.read_fold_csv(bad)
    bad_set = tmp_path / "bad_set.csv"
    bad_set.write_text(first[0] + "\n" + first[1].rsplit(",", 1)[0] + ",Holdout\n")
    with pytest.raises(ValueError, match=r"bad_set\.csv:2"):
        data.read_fold_csv(bad_set)
    with pytest.raises(FileNotFoundError, match=r"fold_9\.csv"):
        data.load_split(cremad_root, split="fold-csv", fold=9)


def test_ogm_split(cremad_root: Path, tmp_path: Path) -> None:
    raw = (cremad_root / "train.csv").read_bytes()
    assert b"\r\n" in raw and not raw.startswith(b"FileName")
    split = data.load_split(cremad_root, split="ogm", seed=0)
    train_file = data.read_ogm_csv(cremad_root / "train.csv")
    assert sorted(split["train"] + split["val"]) == sorted(train_file)
    assert not set(split["train"]) & set(split["val"])
    assert len(split["val"]) == round(0.1 * len(train_file))
    assert len(split["test"]) == 4 and not set(split["test"]) & set(train_file)
    mismatch = tmp_path / "m.csv"
    mismatch.write_bytes(b"1001_DFA_ANG_XX,SAD\r\n")
    with pytest.raises(ValueError, match="disagrees"):
        data.read_ogm_csv(mismatch)


def test_load_split_options(cremad_root: Path) -> None:
    speaker = data.load_split(cremad_root, split="speaker", fold=2, seed=0)
    assert speaker == data.read_fold_csv(cremad_root / "folds" / "fold_2.csv")
    one_based = data.load_split(
        cremad_root, split="fold-csv", fold=1, fold_csv="folds/fold_{fold1}.csv"
    )
    assert one_based == data.read_fold_csv(cremad_root / "folds" / "fold_2.csv")
    with pytest.raises(ValueError, match="fold < 5"):
        data.load_split(cremad_root, split="speaker", fold=5)
    with pytest.raises(ValueError, match="'speaker', 'fold-csv' or 'ogm'"):
        data.load_split(cremad_root, split="random")


def test_datasets_round_trip(cremad_root: Path) -> None:
    sets = data.build_datasets(cremad_root, split="speaker", fold=0, smoke=True, progress=False)
    assert_speaker_disjoint({n: [r.clip_id for r in sets[n].records] for n in data.SPLIT_NAMES})
    assert [len(sets[n]) for n in data.SPLIT_NAMES] == [24, 6, 6]
    for name in data.SPLIT_NAMES:
        ds = sets[name]
        assert ds.train == (name == "train")
        item = ds[0]
        assert item["audio"].shape == (1, 65, 65)
        assert item["video"].shape == (3, 3, 32, 32)
        assert int(item["label"]) == data.parse_clip_name(ds.records[0].clip_id).label
        assert ds.labels == [data.parse_clip_name(r.clip_id).label for r in ds.records]


def test_standard_settings_shapes(cremad_root: Path, tmp_path: Path) -> None:
    sets = data.build_datasets(
        cremad_root, split="ogm", cache_dir=tmp_path / "cache", progress=False
    )
    item = sets["test"][0]
    assert item["audio"].shape == (1, 257, 188) and item["video"].shape == (3, 3, 224, 224)
    assert item["audio"].dtype == item["video"].dtype == torch.float32
    assert len(list((tmp_path / "cache").glob("cremad-*/*.npz"))) == 36


@pytest.fixture()
def broken_root(cremad_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "broken"
    shutil.copytree(cremad_root, root)
    return root


def test_bad_media(broken_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    split = data.make_speaker_folds(data.list_clips(broken_root), seed=0)[0]
    corrupt, missing = split["train"][0], split["train"][1]  # the corrupt one comes first
    (broken_root / "VideoFlash" / f"{missing}.flv").unlink()
    (broken_root / "VideoFlash" / f"{corrupt}.flv").write_bytes(b"FLV garbage" * 40)
    sets = check_bad_media(
        data.build_datasets,
        broken_root,
        missing=f"{missing}.flv",
        corrupt=f"{corrupt}.flv",
        cache_dir=tmp_path / "c",
        caplog=caplog,
        skipped="skipped 2 of 24 clips",
    )
    assert len(sets["train"]) == 22 and len(sets["test"]) == 6
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        cached = data.build_datasets(
            broken_root, smoke=True, progress=False, skip_bad=True, cache_dir=tmp_path / "c"
        )
    assert "skipped 2 of 24 clips" in caplog.text and len(cached["train"]) == 22


def test_cli_fills_the_cache(cremad_root: Path, tmp_path: Path) -> None:
    data.main(["--data-root", str(cremad_root), "--cache-dir", str(tmp_path), "--smoke"])
    (directory,) = tmp_path.glob("cremad-*")
    assert len(list(directory.glob("*.npz"))) == 36 and (directory / "settings.json").is_file()


def test_fixture_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from examples.cremad import make_fixture

    make_fixture.main([str(tmp_path / "fx"), "--seed", "1"])
    assert "36 clips" in capsys.readouterr().out
    assert len(data.list_clips(tmp_path / "fx")) == 36
    assert (
        data.read_fold_csv(tmp_path / "fx" / "folds" / "fold_0.csv")
        == (data.make_speaker_folds(data.list_clips(tmp_path / "fx"), seed=1)[0])
    )
