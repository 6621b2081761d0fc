"""AVE (Audio-Visual Event): the raw on-disk layout, its splits, and audio-visual datasets.

Layout (the public release)::

    <root>/AVE/<VideoID>.mp4     10 s YouTube clips, video + audio
    <root>/Annotations.txt       Category&VideoID&Quality&StartTime&EndTime, one event a line
    <root>/trainSet.txt          same row format, no header (3339 lines)
    <root>/valSet.txt            (402)
    <root>/testSet.txt           (402)

``<root>`` is the ``AVE_Dataset`` folder; passing its parent also works. ``Annotations.txt``
is read with or without its header line (both variants circulate); the split files are read
the same way, every category must be one of the 28 classes, and split rows missing from the
annotations are reported.

Each clip's label is its event category (28 classes, :data:`CLASSES` order) and only the event
segment ``[StartTime, EndTime)`` is used: its audio (16 kHz, tiled to 10 s) and its frames at
1 fps (4 consecutive frames). A VideoID listed more than once in a split file (a video with
several events) is used once, with its first row; the others are dropped with a logged count.

Run ``python -m examples.ave.data --data-root DIR --cache-dir DIR`` to decode everything once
into a feature cache (with a progress bar).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from examples.av_common import features
from examples.av_common.dataset import AVClipDataset, ClipRecord, FeatureCache, build_split_datasets
from examples.av_common.features import AudioSettings, VideoSettings
from examples.av_common.runner import fill_cache, parse_cache_args

logger = logging.getLogger(__name__)

CLASSES = (
    "Church bell", "Male speech, man speaking", "Bark", "Fixed-wing aircraft, airplane",
    "Race car, auto racing", "Female speech, woman speaking", "Helicopter", "Violin, fiddle",
    "Flute", "Ukulele", "Frying (food)", "Truck", "Shofar", "Motorcycle", "Acoustic guitar",
    "Train horn", "Clock", "Banjo", "Goat", "Baby cry, infant cry", "Bus", "Chainsaw", "Cat",
    "Horse", "Toilet flush", "Rodents, rats, mice", "Accordion", "Mandolin",
)  # fmt: skip
NUM_CLASSES = len(CLASSES)
HEADER = ("Category", "VideoID", "Quality", "StartTime", "EndTime")
SPLIT_FILES = {"train": "trainSet.txt", "val": "valSet.txt", "test": "testSet.txt"}
SPLIT_NAMES = tuple(SPLIT_FILES)

#: The standard preprocessing of ten-second clips (:mod:`examples.av_common.features`).
AUDIO = features.TEN_SECOND_AUDIO
VIDEO = features.TEN_SECOND_VIDEO
#: ``--smoke``: 1 s at 8 kHz -> (65, 66); 4 frames of 32 x 32.
SMOKE_AUDIO = features.TEN_SECOND_SMOKE_AUDIO
SMOKE_VIDEO = features.TEN_SECOND_SMOKE_VIDEO


@dataclass(frozen=True)
class AveEvent:
    """One annotated event: a row ``Category&VideoID&Quality&StartTime&EndTime``."""

    category: str
    video_id: str
    quality: str
    start: float
    end: float

    @property
    def label(self) -> int:
        return CLASSES.index(self.category)

    def to_line(self) -> str:
        return "&".join(
            [self.category, self.video_id, self.quality, f"{self.start:g}", f"{self.end:g}"]
        )


def parse_annotation_file(path: str | Path) -> list[AveEvent]:
    """Rows of ``Annotations.txt`` or a split file (an optional header line is skipped).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: a row does not have 5 ``&``-separated fields, has an unknown category, or a
            bad time segment; the message names the file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"AVE annotation file {path} does not exist")
    events = []
    with path.open(encoding="utf-8-sig") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line:
                continue
            fields = line.split("&")
            if number == 1 and tuple(f.strip() for f in fields) == HEADER:
                continue
            events.append(_parse_row(fields, f"{path}:{number}"))
    return events


def _parse_row(fields: list[str], where: str) -> AveEvent:
    if len(fields) != len(HEADER):
        raise ValueError(f"{where}: expected {'&'.join(HEADER)}, got {'&'.join(fields)!r}")
    category, video_id, quality, start_text, end_text = (f.strip() for f in fields)
    if category not in CLASSES:
        raise ValueError(f"{where}: unknown AVE category {category!r}")
    try:
        start, end = float(start_text), float(end_text)
    except ValueError as err:
        raise ValueError(f"{where}: expected numeric StartTime/EndTime, got {fields[3:]}") from err
    if not 0 <= start < end:
        raise ValueError(f"{where}: expected 0 <= StartTime < EndTime, got {start} and {end}")
    return AveEvent(category, video_id, quality, start, end)


def first_occurrences(events: Sequence[AveEvent]) -> tuple[list[AveEvent], int]:
    """Keep the first row of every VideoID; returns the rows and how many were dropped."""
    seen: set[str] = set()
    kept = []
    for event in events:
        if event.video_id not in seen:
            seen.add(event.video_id)
            kept.append(event)
    return kept, len(events) - len(kept)


def resolve_root(root: str | Path) -> Path:
    """``root`` itself if it holds ``Annotations.txt``, else ``root/AVE_Dataset``."""
    root = Path(root)
    if not (root / "Annotations.txt").exists() and (root / "AVE_Dataset").is_dir():
        return root / "AVE_Dataset"
    return root


def load_split(root: str | Path) -> dict[str, list[AveEvent]]:
    """The given train / val / test events (first row per VideoID).

    Split rows that ``Annotations.txt`` does not list are used but logged as a warning.

    Raises:
        FileNotFoundError: a split file or ``Annotations.txt`` is missing.
        ValueError: a row is malformed (see :func:`parse_annotation_file`).
    """
    root = resolve_root(root)
    annotated = {
        (e.category, e.video_id, e.start, e.end)
        for e in parse_annotation_file(root / "Annotations.txt")
    }
    split: dict[str, list[AveEvent]] = {}
    for name, file_name in SPLIT_FILES.items():
        events, dropped = first_occurrences(parse_annotation_file(root / file_name))
        if dropped:
            logger.info("%s: %d repeated VideoIDs, first occurrence kept", file_name, dropped)
        missing = [e for e in events if (e.category, e.video_id, e.start, e.end) not in annotated]
        if missing:
            logger.warning(
                "%d rows of %s are not in Annotations.txt (used anyway), e.g. %r",
                len(missing),
                root / file_name,
                missing[0].to_line(),
            )
        split[name] = events
    return split


def records(root: str | Path, events: Iterable[AveEvent]) -> list[ClipRecord]:
    """Clip records: audio and video both from ``AVE/<VideoID>.mp4``, cut to the event."""
    media = resolve_root(root) / "AVE"
    return [
        ClipRecord(
            clip_id=e.video_id,
            label=e.label,
            audio_path=media / f"{e.video_id}.mp4",
            video_path=media / f"{e.video_id}.mp4",
            start=e.start,
            end=e.end,
        )
        for e in events
    ]


def settings(smoke: bool = False) -> tuple[AudioSettings, VideoSettings]:
    """The standard (or ``--smoke``) audio and video settings."""
    return (SMOKE_AUDIO, SMOKE_VIDEO) if smoke else (AUDIO, VIDEO)


def build_datasets(
    root: str | Path,
    *,
    smoke: bool = False,
    cache_dir: str | Path | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    audio: AudioSettings | None = None,
    video: VideoSettings | None = None,
) -> dict[str, AVClipDataset]:
    """Train / val / test datasets of the given AVE split.

    Bad media are handled as in :func:`examples.cremad.data.build_datasets`: a missing or
    undecodable file raises naming it, or with ``skip_bad`` is dropped with a logged count
    (:func:`examples.av_common.dataset.build_split_datasets`).

    Args:
        root: AVE root (``AVE_Dataset`` or its parent).
        smoke: tiny inputs for fast CPU runs.
        cache_dir: feature cache root (optional).
        skip_bad: drop bad clips instead of raising.
        progress: show progress bars.
        audio, video: override the settings chosen by ``smoke``.
    """
    audio_default, video_default = settings(smoke)
    split = load_split(root)
    return build_split_datasets(
        {name: records(root, split[name]) for name in SPLIT_NAMES},
        audio or audio_default,
        video or video_default,
        cache_name="ave",
        title="AVE",
        cache_dir=cache_dir,
        skip_bad=skip_bad,
        progress=progress,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Decode every clip of the three splits once into the feature cache."""
    args = parse_cache_args(__doc__.split("\n")[0], argv)
    cache = FeatureCache(args.cache_dir, "ave", *settings(args.smoke))
    split = load_split(args.data_root)
    events = [e for name in SPLIT_NAMES for e in split[name]]
    fill_cache(cache, records(args.data_root, events), skip_bad=args.skip_bad)


if __name__ == "__main__":
    main()
