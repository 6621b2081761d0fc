"""Write a tiny AVE in the real layout, for tests and for trying the pipeline.

``python -m examples.ave.make_fixture OUT_DIR`` writes ``OUT_DIR/AVE_Dataset/`` with

- ``AVE/<VideoID>.mp4``: 10 s, H.264 at 2 fps, 48 x 32, with an AAC 16 kHz mono track (a tone
  whose pitch depends on the class); the video shows a square whose colour depends on the class;
- ``trainSet.txt`` (one clip per class, 28, plus a second event of one video),
  ``valSet.txt`` and ``testSet.txt`` (8 clips each), in the real ``&``-separated format;
- ``Annotations.txt``: every row, with the header line (``--no-header`` leaves it out, the
  other variant in circulation).
"""

from __future__ import annotations

import argparse
import random
import string
from collections.abc import Sequence
from pathlib import Path

from examples.av_common.synth import moving_square_frames, tone, write_video
from examples.ave.data import CLASSES, HEADER, SPLIT_FILES, AveEvent

AUDIO_RATE = 16000
VIDEO_FPS = 2
VIDEO_SIZE = (48, 32)
SECONDS = 10
NUM_VAL = 8
NUM_TEST = 8


def _video_id(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits + "-_"
    return "".join(rng.choice(alphabet) for _ in range(11))


def _colour(label: int) -> tuple[int, int, int]:
    return ((label * 37) % 256, (label * 91 + 60) % 256, (label * 53 + 120) % 256)


def _events(rng: random.Random) -> dict[str, list[AveEvent]]:
    def event(label: int, index: int) -> AveEvent:
        start = index % 4
        end = min(SECONDS, start + 2 + index % 5)
        return AveEvent(CLASSES[label], _video_id(rng), "good", start, end)

    train = [event(label, i) for i, label in enumerate(range(len(CLASSES)))]
    # A video with two events: the second row repeats the VideoID with another class.
    first = train[0]
    train.append(AveEvent(CLASSES[1], first.video_id, "good", 6, 9))
    val = [event(i % len(CLASSES), 100 + i) for i in range(NUM_VAL)]
    test = [event((i + NUM_VAL) % len(CLASSES), 200 + i) for i in range(NUM_TEST)]
    return {"train": train, "val": val, "test": test}


def write_annotations(path: str | Path, events: Sequence[AveEvent], *, header: bool) -> None:
    """Write rows in the real format (LF line ends), optionally after the header line."""
    lines = (["&".join(HEADER)] if header else []) + [e.to_line() for e in events]
    Path(path).write_text("\n".join(lines) + "\n")


def make_fixture(out_dir: str | Path, *, header: bool = True, seed: int = 0) -> Path:
    """Write the fixture under ``out_dir/AVE_Dataset`` and return that folder."""
    root = Path(out_dir) / "AVE_Dataset"
    (root / "AVE").mkdir(parents=True, exist_ok=True)
    split = _events(random.Random(seed))
    written: set[str] = set()
    for index, event in enumerate(e for name in SPLIT_FILES for e in split[name]):
        if event.video_id in written:
            continue
        written.add(event.video_id)
        frames = moving_square_frames(
            SECONDS * VIDEO_FPS, *VIDEO_SIZE, _colour(event.label), seed=index
        )
        audio = tone(150.0 + 40.0 * event.label, SECONDS, AUDIO_RATE, seed=index)
        write_video(
            root / "AVE" / f"{event.video_id}.mp4",
            frames,
            VIDEO_FPS,
            container_format="mp4",
            codec="libx264",
            audio=audio,
            audio_rate=AUDIO_RATE,
        )
    for name, file_name in SPLIT_FILES.items():
        write_annotations(root / file_name, split[name], header=False)
    everything = [e for name in SPLIT_FILES for e in split[name]]
    write_annotations(root / "Annotations.txt", everything, header=header)
    return root


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a tiny AVE in the real layout.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-header", action="store_true", help="write Annotations.txt without its header line"
    )
    args = parser.parse_args(argv)
    root = make_fixture(args.out_dir, header=not args.no_header, seed=args.seed)
    print(f"wrote an AVE fixture to {root}")


if __name__ == "__main__":
    main()
