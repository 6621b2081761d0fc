"""UCF-101 loader on a fixture in the official layout: lists, audio filter and its cache, class
re-indexing, the three folds and the group hold-out, items, bad media."""

from __future__ import annotations

import logging
import os
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

from examples.av_common.dataset import AVClipDataset
from examples.av_common.media import MediaError
from examples.ucf import data
from examples.ucf.make_fixture import (
    CLASSES,
    GROUPS,
    SILENT_CLASS,
    SILENT_CLIPS,
    clip_paths,
    fold_test_groups,
    has_audio,
    write_clip,
)

AUDIBLE = [p for p in clip_paths() if has_audio(p)]
KEPT = tuple(c for c in CLASSES if c != SILENT_CLASS)


def lists(root: Path) -> Path:
    return root / data.LIST_DIR


def test_lists_in_the_release_format(ucf_root: Path) -> None:
    raw = (lists(ucf_root) / "trainlist01.txt").read_bytes()
    assert raw.endswith(b"\r\n") and b" 1\r\n" in raw  # CRLF, "<path> <label>" as released
    index = data.read_class_index(lists(ucf_root) / "classInd.txt")
    assert index == {name: i for i, name in enumerate(CLASSES, start=1)}
    for split in data.SPLITS:
        train = data.read_train_list(lists(ucf_root) / data.train_list(split), index)
        test = data.read_test_list(lists(ucf_root) / data.test_list(split), index)
        assert sorted(c.path for c in train + test) == clip_paths()  # every clip, once per fold
        assert {c.group for c in test} == set(fold_test_groups(split)) & set(GROUPS)
        assert not {c.group for c in train} & set(fold_test_groups(split))
    clip = data.parse_clip_path("Archery/v_Archery_g08_c01.avi", "x")
    assert (clip.class_name, clip.group, clip.clip, clip.clip_id) == (
        "Archery", 8, 1, "v_Archery_g08_c01",
    )  # fmt: skip


def test_file_name_case_may_differ_from_its_folder() -> None:
    # the release files HandstandPushups clips as v_HandStandPushups_gXX_cYY.avi
    clip = data.parse_clip_path("HandstandPushups/v_HandStandPushups_g01_c01.avi", "x")
    assert clip.class_name == "HandstandPushups" and clip.group == 1


def test_malformed_lists_are_named(tmp_path: Path) -> None:
    index = {"Archery": 3, "Bowling": 4}
    cases = {
        "classInd.txt": ("1 Archery\nArchery 2\n", "expected '<index> <Class>'"),
        "dup.txt": ("1 Archery\n1 Bowling\n", "listed twice"),
        "label.txt": ("Archery/v_Archery_g01_c01.avi 4\n", "label 4 .* disagrees"),
        "unknown.txt": ("Diving/v_Diving_g01_c01.avi 3\n", "'Diving' is not in classInd"),
        "name.txt": ("Archery/Archery_g01_c01.avi 3\n", "expected <Class>/v_<Class>_gXX"),
        "folder.txt": ("Bowling/v_Archery_g01_c01.avi 4\n", "filed under another class"),
        "nolabel.txt": ("Archery/v_Archery_g01_c01.avi\n", "<label>"),
    }
    for name, (text, message) in cases.items():
        path = tmp_path / name
        path.write_text(text)
        line = 2 if name in ("classInd.txt", "dup.txt") else 1
        with pytest.raises(ValueError, match=f"{re.escape(name)}:{line}: .*{message}"):
            if name in ("classInd.txt", "dup.txt"):
                data.read_class_index(path)
            else:
                data.read_train_list(path, index)
    (tmp_path / "test.txt").write_text("Archery/v_Archery_g01_c01.avi 3\n")
    with pytest.raises(ValueError, match=r"test\.txt:1: expected '<Class>/"):
        data.read_test_list(tmp_path / "test.txt", index)
    with pytest.raises(FileNotFoundError, match=r"trainlist09\.txt"):
        data.read_train_list(tmp_path / "trainlist09.txt", index)
    with pytest.raises(FileNotFoundError, match="ucfTrainTestlist"):
        data.resolve_root(tmp_path)


def test_audio_filter_and_dense_labels(ucf_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        fold = data.load_split(ucf_root, 1)
    assert fold.classes == KEPT and fold.dropped == (SILENT_CLASS,)
    assert (fold.listed, fold.with_audio) == (len(clip_paths()), len(AUDIBLE))
    assert f"{len(AUDIBLE)} of {len(clip_paths())} listed clips have an audio stream" in caplog.text
    assert "5 of 6 classes kept" in caplog.text
    assert f"dropped for having no audio (1): {SILENT_CLASS}" in caplog.text
    used = [c for clips in fold.sets.values() for c in clips]
    assert sorted(c.path for c in used) == AUDIBLE  # silent clips of kept classes are gone too
    assert not set(SILENT_CLIPS) & {c.path for c in used}
    # classInd indices 1, 3, 4, 5, 6 (ApplyLipstick, 2, dropped) become 0..4 in classInd order
    assert {c.class_name: fold.label(c) for c in used} == {name: i for i, name in enumerate(KEPT)}
    records = data.records(ucf_root, fold, "test")
    assert [r.label for r in records] == list(range(5))
    assert (
        records[0].audio_path
        == records[0].video_path
        == (ucf_root / "UCF-101" / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g01_c01.avi")
    )
    assert fold.info()["dropped_classes"] == [SILENT_CLASS]
    assert data.load_split(ucf_root.parent, 1) == fold  # the parent folder works too


def test_a_class_heard_only_in_testing_is_reported(
    ucf_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real = data.has_audio_stream
    monkeypatch.setattr(  # BalanceBeam has audio only in its test group g01
        data,
        "has_audio_stream",
        lambda p: real(p) and not ("BalanceBeam" in str(p) and "g01" not in str(p)),
    )
    with caplog.at_level(logging.WARNING):
        fold = data.load_split(ucf_root, 1, probe_cache=tmp_path / "probe.json")
    assert "split 1: no training clip with audio for BalanceBeam" in caplog.text
    assert "BalanceBeam" in fold.classes and len(fold.sets["test"]) == 5


@pytest.mark.parametrize("split", data.SPLITS)
def test_folds_and_group_hold_out(ucf_root: Path, split: int) -> None:
    fold = data.load_split(ucf_root, split)
    groups = {name: {(c.class_name, c.group) for c in fold.sets[name]} for name in data.SPLIT_NAMES}
    assert {g for _, g in groups["test"]} == set(fold_test_groups(split)) & set(GROUPS)
    assert not {g for _, g in groups["train"] | groups["val"]} & set(fold_test_groups(split))
    assert not groups["train"] & groups["val"]  # a group never crosses train and validation
    for name in data.SPLIT_NAMES:  # stratified: every kept class is in every set
        assert {c.class_name for c in fold.sets[name]} == set(KEPT)
    # one of the (3 or 4) training groups per class is held out: round(0.1 * n) -> at least 1
    assert Counter(cls for cls, _ in groups["val"]) == Counter(KEPT)
    extra = "BandMarching/v_BandMarching_g23_c02.avi"  # shares group 23 with c01
    side = [n for n in ("train", "val") if extra in {c.path for c in fold.sets[n]}]
    partner = [
        n for n in ("train", "val") if extra.replace("c02", "c01") in {c.path for c in fold.sets[n]}
    ]
    assert side == partner and len(side) == 1


def test_hold_out_groups_rule() -> None:
    clips = [
        data.UcfClip(f"{c}/v_{c}_g{g:02d}_c{k:02d}.avi", c, g, k)
        for c in ("A", "B", "C")
        for g in range(8, 26)
        for k in (1, 2)
    ] + [data.UcfClip("D/v_D_g09_c01.avi", "D", 9, 1)]
    train, val = data.hold_out_groups(clips, val_fraction=0.1, seed=0)
    held = {(c.class_name, c.group) for c in val}
    assert Counter(cls for cls, _ in held) == {"A": 2, "B": 2, "C": 2}  # 2 of 18; D keeps its one
    assert len(val) == 12 and len(train) + len(val) == len(clips)
    assert [c for c in clips if c in set(train)] == train  # order kept
    again, _ = data.hold_out_groups(clips, val_fraction=0.1, seed=0)
    assert again == train
    draws = {
        frozenset(
            (c.class_name, c.group)
            for c in data.hold_out_groups(clips, val_fraction=0.1, seed=s)[1]
        )
        for s in range(5)
    }
    assert len(draws) > 1  # the seed matters
    assert data.hold_out_groups(clips, val_fraction=0.0, seed=0) == (clips, [])
    with pytest.raises(ValueError, match=r"0 <= val_fraction < 1, got 1\.5"):
        data.hold_out_groups(clips, val_fraction=1.5, seed=0)


def test_probe_answers_are_cached_until_a_file_changes(
    ucf_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "UCF101"
    shutil.copytree(ucf_root, root)
    cache_file = tmp_path / "probe.json"
    opened: list[Path] = []
    real = data.has_audio_stream

    def counting(path: Path) -> bool:
        opened.append(Path(path))
        return real(path)

    monkeypatch.setattr(data, "has_audio_stream", counting)
    first = data.load_split(root, 2, probe_cache=cache_file)
    assert len(opened) == len(clip_paths()) and cache_file.is_file()
    opened.clear()
    assert data.load_split(root, 3, probe_cache=cache_file).classes == first.classes
    assert opened == []  # the second run opens no file
    touched = root / "UCF-101" / "Archery" / "v_Archery_g08_c01.avi"
    write_clip(touched, CLASSES.index("Archery"), 0, audio=False)  # now silent
    os.utime(touched, ns=(1, 1))  # a different mtime even if the size happened to match
    changed = data.load_split(root, 2, probe_cache=cache_file)
    assert opened == [touched]
    before = {c.path for s in first.sets.values() for c in s}
    after = {c.path for s in changed.sets.values() for c in s}
    assert before - after == {"Archery/v_Archery_g08_c01.avi"}
    # the default home: the feature cache dir, else $XDG_CACHE_HOME (a temp dir in these tests)
    assert (
        data.default_probe_cache(root, tmp_path / "c") == tmp_path / "c" / "ucf101-audio-probe.json"
    )
    assert data.default_probe_cache(root).parent == Path(os.environ["XDG_CACHE_HOME"]) / "mcr-reg"


def test_datasets_round_trip(ucf_root: Path) -> None:
    sets, fold = data.build_datasets(ucf_root, 1, smoke=True, progress=False)
    assert {n: len(sets[n]) for n in data.SPLIT_NAMES} == {
        n: len(fold.sets[n]) for n in data.SPLIT_NAMES
    }
    for name in data.SPLIT_NAMES:
        assert sets[name].labels == [fold.label(c) for c in fold.sets[name]]
    item = sets["val"][1]
    assert item["audio"].shape == (1, 65, 66) and item["video"].shape == (3, 4, 32, 32)
    assert int(item["label"]) == fold.label(fold.sets["val"][1])


def test_standard_settings_shapes(ucf_root: Path) -> None:
    sets, _ = data.build_datasets(ucf_root, 1, progress=False)
    item = sets["test"][0]
    assert item["audio"].shape == (1, 257, 1004) and item["video"].shape == (3, 4, 224, 224)
    assert item["audio"].dtype == item["video"].dtype == torch.float32


def test_bad_media(
    ucf_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    root = tmp_path / "UCF101"
    shutil.copytree(ucf_root, root)
    videos = root / "UCF-101"
    missing = videos / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g01_c01.avi"
    garbled = videos / "Archery" / "v_Archery_g01_c01.avi"
    cut = videos / "BabyCrawling" / "v_BabyCrawling_g01_c01.avi"
    probe = tmp_path / "probe.json"

    def build(**options: Any) -> tuple[dict[str, AVClipDataset], data.UcfSplit]:
        return data.build_datasets(
            root, 1, smoke=True, progress=False, probe_cache=probe, **options
        )

    # truncated after the header: it opens and declares its streams, but holds no frame
    body = cut.read_bytes()
    cut.write_bytes(body[: body.index(b"movi") + 4])
    with pytest.raises(MediaError, match=re.escape(cut.name)):
        build(cache_dir=tmp_path / "c")
    garbled.write_bytes(garbled.read_bytes()[:1000])  # the header is cut: FFmpeg cannot open it
    with pytest.raises(MediaError, match=re.escape(garbled.name)):
        build()
    # the unopenable file's error is remembered: reported again without opening it
    monkeypatch.setattr(data, "has_audio_stream", lambda path: pytest.fail(f"re-probed {path}"))
    with pytest.raises(MediaError, match=re.escape(garbled.name)):
        build()
    monkeypatch.undo()
    missing.unlink()  # listed before the garbled one
    with pytest.raises(FileNotFoundError, match=re.escape(missing.name)):
        build()
    missing.write_bytes(b"")  # present but empty
    with pytest.raises(MediaError, match=re.escape(missing.name)):
        build()
    missing.unlink()
    with caplog.at_level(logging.WARNING):
        sets, fold = build(skip_bad=True)
    assert f"skipped 2 of {len(clip_paths())} listed clips" in caplog.text
    assert "skipped 1 of 3 clips" in caplog.text  # the frameless one, found by the media check
    assert fold.bad == 2 and len(fold.sets["test"]) == 3 and len(sets["test"]) == 2
    assert len(sets["train"]) == len(fold.sets["train"])
    assert {r.video_path for r in sets["test"].records}.isdisjoint({missing, garbled, cut})


def test_cli_fills_the_cache(ucf_root: Path, tmp_path: Path) -> None:
    data.main(["--data-root", str(ucf_root), "--cache-dir", str(tmp_path), "--smoke"])
    (directory,) = tmp_path.glob("ucf51-*")
    assert len(list(directory.glob("*.npz"))) == len(AUDIBLE)  # every clip with audio, once
    assert (tmp_path / "ucf101-audio-probe.json").is_file()
