"""Write a tiny UCF-101 in the official layout, for tests and for trying the pipeline.

``python -m examples.ucf.make_fixture OUT_DIR`` writes ``OUT_DIR/UCF-101/`` and
``OUT_DIR/ucfTrainTestlist/`` with

- six classes (the first six of the real ``classInd.txt``), each with the groups
  :data:`GROUPS` (one in every fold's test range g01-g07 / g08-g14 / g15-g21, two always in
  training) and clip ``c01`` per group, plus a second clip ``c02`` in one group of
  ``BandMarching``: 31 AVI files of 3 s, MPEG-4 video at 4 fps and 32 x 24 (a square whose
  colour depends on the class) with an MP3 16 kHz mono track (a class-dependent tone);
- no audio stream at all in the clips of :data:`SILENT_CLASS`, and none in the clips
  :data:`SILENT_CLIPS` of an otherwise audible class (which facts hold on the real data is not
  claimed: the fixture only exercises the filter);
- ``classInd.txt``, ``trainlist0{1,2,3}.txt`` (with labels) and ``testlist0{1,2,3}.txt``
  (without), split by the official group rule, CRLF line ends as in the release.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from examples.av_common.synth import moving_square_frames, tone, write_video
from examples.ucf.data import CLASS_FILE, LIST_DIR, SPLITS, VIDEO_DIR, test_list, train_list

CLASSES = (
    "ApplyEyeMakeup", "ApplyLipstick", "Archery", "BabyCrawling", "BalanceBeam", "BandMarching",
)  # fmt: skip
SILENT_CLASS = "ApplyLipstick"
SILENT_CLIPS = ("Archery/v_Archery_g22_c01.avi",)
GROUPS = (1, 8, 15, 22, 23)
EXTRA_CLIPS = ("BandMarching/v_BandMarching_g23_c02.avi",)
AUDIO_RATE = 16000
VIDEO_FPS = 4
VIDEO_SIZE = (32, 24)
SECONDS = 3


def fold_test_groups(split: int) -> range:
    """The official rule: fold k tests on groups 7(k-1)+1 .. 7k."""
    return range(7 * (split - 1) + 1, 7 * split + 1)


def clip_paths() -> list[str]:
    """Every clip of the fixture, ``<Class>/v_<Class>_gXX_cYY.avi``, sorted."""
    paths = [f"{c}/v_{c}_g{g:02d}_c01.avi" for c in CLASSES for g in GROUPS]
    return sorted(paths + list(EXTRA_CLIPS))


def has_audio(path: str) -> bool:
    return not path.startswith(SILENT_CLASS + "/") and path not in SILENT_CLIPS


def write_clip(file: Path, label: int, index: int, *, audio: bool) -> None:
    """One AVI: MPEG-4 video (and an MP3 track if ``audio``) of :data:`SECONDS` seconds."""
    colour = ((label * 67) % 256, (label * 101 + 40) % 256, (label * 29 + 150) % 256)
    frames = moving_square_frames(SECONDS * VIDEO_FPS, *VIDEO_SIZE, colour, seed=index)
    wave = tone(200.0 + 60.0 * label, SECONDS, AUDIO_RATE, seed=index) if audio else None
    write_video(
        file,
        frames,
        VIDEO_FPS,
        container_format="avi",
        codec="mpeg4",
        audio=wave,
        audio_rate=AUDIO_RATE,
        audio_codec="mp3",
    )


def write_lists(lists: Path, paths: Sequence[str]) -> None:
    """``classInd.txt`` and the three folds' train / test lists (CRLF)."""
    lists.mkdir(parents=True, exist_ok=True)
    index = {name: i for i, name in enumerate(CLASSES, start=1)}

    def write(name: str, lines: list[str]) -> None:
        (lists / name).write_bytes("".join(line + "\r\n" for line in lines).encode())

    write(CLASS_FILE, [f"{i} {name}" for name, i in index.items()])
    for split in SPLITS:
        tested = fold_test_groups(split)
        group = {p: int(p.split("_g")[1][:2]) for p in paths}
        train = [p for p in paths if group[p] not in tested]
        write(train_list(split), [f"{p} {index[p.split('/')[0]]}" for p in train])
        write(test_list(split), [p for p in paths if group[p] in tested])


def make_fixture(out_dir: str | Path) -> Path:
    """Write the fixture under ``out_dir`` and return ``out_dir``."""
    root = Path(out_dir)
    paths = clip_paths()
    for number, path in enumerate(paths):
        label = CLASSES.index(path.split("/")[0])
        write_clip(root / VIDEO_DIR / path, label, number, audio=has_audio(path))
    write_lists(root / LIST_DIR, paths)
    return root


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a tiny UCF-101 in the official layout.")
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    root = make_fixture(args.out_dir)
    print(f"wrote a UCF-101 fixture ({len(clip_paths())} clips) to {root}")


if __name__ == "__main__":
    main()
