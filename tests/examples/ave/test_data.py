"""AVE loader on a fixture in the real layout: annotation variants, splits, items, bad media."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch

from examples.ave import data
from examples.ave.make_fixture import NUM_TEST, NUM_VAL, write_annotations
from tests.examples._helpers.av_pipelines import check_bad_media


def test_both_annotation_variants(ave_root: Path, tmp_path: Path) -> None:
    with_header = data.parse_annotation_file(ave_root / "Annotations.txt")
    assert (ave_root / "Annotations.txt").read_text().startswith("Category&VideoID&Quality")
    bare = tmp_path / "Annotations.txt"
    write_annotations(bare, with_header, header=False)
    assert bare.read_text().startswith(with_header[0].category + "&")
    assert data.parse_annotation_file(bare) == with_header
    assert len(with_header) == len(data.CLASSES) + 1 + NUM_VAL + NUM_TEST
    event = with_header[0]
    assert (event.category, event.quality, event.start, event.end) == ("Church bell", "good", 0, 2)


def test_split_files_and_repeated_video_ids(
    ave_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    raw_train = data.parse_annotation_file(ave_root / "trainSet.txt")
    assert len(raw_train) == 29
    with caplog.at_level(logging.INFO):
        split = data.load_split(ave_root)
    assert "1 repeated VideoIDs, first occurrence kept" in caplog.text
    assert [len(split[n]) for n in data.SPLIT_NAMES] == [28, NUM_VAL, NUM_TEST]
    repeated = raw_train[0].video_id
    kept = [e for e in split["train"] if e.video_id == repeated]
    assert kept == [raw_train[0]] and kept[0].label == 0
    assert sorted(e.label for e in split["train"]) == list(range(28))
    ids = {n: {e.video_id for e in split[n]} for n in data.SPLIT_NAMES}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"]
    assert data.load_split(ave_root.parent) == split  # the parent of AVE_Dataset works too


def test_malformed_rows_are_named(tmp_path: Path) -> None:
    cases = {
        "fields.txt": "Church bell&abc&good&0\n",
        "category.txt": "Doorbell&abc&good&0&10\n",
        "times.txt": "Church bell&abc&good&5&2\n",
        "numbers.txt": "Church bell&abc&good&zero&2\n",
    }
    messages = {
        "fields.txt": "expected Category&VideoID",
        "category.txt": "unknown AVE category 'Doorbell'",
        "times.txt": "StartTime < EndTime",
        "numbers.txt": "numeric",
    }
    for name, text in cases.items():
        (tmp_path / name).write_text("Church bell&ok&good&0&10\n" + text)
        with pytest.raises(ValueError, match=f"{name}:2: .*{messages[name]}"):
            data.parse_annotation_file(tmp_path / name)
    with pytest.raises(FileNotFoundError, match=r"nothing\.txt"):
        data.parse_annotation_file(tmp_path / "nothing.txt")


def test_unannotated_split_rows_are_reported(
    ave_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "AVE_Dataset"
    shutil.copytree(ave_root, root, ignore=shutil.ignore_patterns("AVE"))
    events = data.parse_annotation_file(root / "Annotations.txt")
    write_annotations(root / "Annotations.txt", events[1:], header=False)
    with caplog.at_level(logging.WARNING):
        data.load_split(root)
    assert "1 rows of" in caplog.text and events[0].video_id in caplog.text


def test_records_use_the_event_segment(ave_root: Path) -> None:
    split = data.load_split(ave_root)
    record = data.records(ave_root, split["val"][:1])[0]
    event = split["val"][0]
    assert record.audio_path == record.video_path == ave_root / "AVE" / f"{event.video_id}.mp4"
    assert (record.start, record.end, record.label) == (event.start, event.end, event.label)


def test_datasets_round_trip(ave_root: Path) -> None:
    sets = data.build_datasets(ave_root, smoke=True, progress=False)
    assert [len(sets[n]) for n in data.SPLIT_NAMES] == [28, NUM_VAL, NUM_TEST]
    split = data.load_split(ave_root)
    for name in data.SPLIT_NAMES:
        ds = sets[name]
        assert ds.labels == [e.label for e in split[name]]
        item = ds[1]
        assert item["audio"].shape == (1, 65, 66)
        assert item["video"].shape == (3, 4, 32, 32)
        assert int(item["label"]) == split[name][1].label


def test_standard_settings_shapes(ave_root: Path, tmp_path: Path) -> None:
    sets = data.build_datasets(ave_root, cache_dir=tmp_path / "cache", progress=False)
    item = sets["val"][0]
    assert item["audio"].shape == (1, 257, 1004) and item["video"].shape == (3, 4, 224, 224)
    assert item["audio"].dtype == item["video"].dtype == torch.float32
    assert len(list((tmp_path / "cache").glob("ave-*/*.npz"))) == 28 + NUM_VAL + NUM_TEST


def test_bad_media(ave_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "AVE_Dataset"
    shutil.copytree(ave_root, root)
    test_events = data.load_split(root)["test"]
    corrupt, missing = test_events[0].video_id, test_events[1].video_id
    (root / "AVE" / f"{missing}.mp4").unlink()
    (root / "AVE" / f"{corrupt}.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"junk" * 100)
    sets = check_bad_media(
        data.build_datasets,
        root,
        missing=f"{missing}.mp4",
        corrupt=f"{corrupt}.mp4",
        cache_dir=tmp_path / "c",
        caplog=caplog,
        skipped=f"skipped 2 of {NUM_TEST} clips",
    )
    assert len(sets["test"]) == NUM_TEST - 2 and len(sets["train"]) == 28


@pytest.mark.slow
def test_fixture_cli_without_header(tmp_path: Path) -> None:
    from examples.ave import make_fixture

    make_fixture.main([str(tmp_path), "--no-header"])
    text = (tmp_path / "AVE_Dataset" / "Annotations.txt").read_text()
    assert not text.startswith("Category&") and text.startswith("Church bell&")
    assert len(data.load_split(tmp_path)["train"]) == 28


def test_cli_fills_the_cache(ave_root: Path, tmp_path: Path) -> None:
    data.main(["--data-root", str(ave_root), "--cache-dir", str(tmp_path), "--smoke"])
    (directory,) = tmp_path.glob("ave-*")
    assert len(list(directory.glob("*.npz"))) == 28 + NUM_VAL + NUM_TEST
    assert (directory / "settings.json").is_file()
