"""UCF-51: the UCF-101 videos that carry a soundtrack, read from the official layout.

Layout (the public release: ``UCF101.rar`` and ``UCF101TrainTestSplits-RecognitionTask.zip``
unpacked side by side)::

    <root>/UCF-101/<Class>/v_<Class>_gXX_cYY.avi    13320 clips, 101 classes, groups g01-g25
    <root>/ucfTrainTestlist/classInd.txt            "<index> <Class>", index 1..101
    <root>/ucfTrainTestlist/trainlist0{1,2,3}.txt   "<Class>/v_<Class>_gXX_cYY.avi <index>"
    <root>/ucfTrainTestlist/testlist0{1,2,3}.txt    "<Class>/v_<Class>_gXX_cYY.avi"

Only about half of the clips have an audio stream. Every clip named in the chosen split's lists
is probed once with PyAV (does the container hold an audio stream?); the answers are kept in a
JSON file (:class:`AudioProbeCache`) keyed by the clip's path, size and modification time, so
that a second run opens no file and a changed file is probed again. The class set is the
classes of ``classInd.txt`` that keep at least one clip with audio (51 on the real data), in
``classInd`` order, re-indexed densely from 0; the loader logs how many clips and classes it
found and names the classes dropped for having no audio.

``--split {1,2,3}`` picks the official fold (test groups g01-g07, g08-g14, g15-g21). The
official lists have no validation set: :func:`hold_out_groups` takes, per class, a seeded
``val_fraction`` of the training list's groups (at least one, never all) as the validation set,
so clips of one group (same actor, same scene) never sit on both sides.

Each clip is used whole: its soundtrack and its frames at 1 fps, with the settings of ten-second clips
that AVE uses too (:data:`examples.av_common.features.TEN_SECOND_AUDIO`,
:data:`examples.av_common.features.TEN_SECOND_VIDEO`).

Run ``python -m examples.ucf.data --data-root DIR --cache-dir DIR`` to decode every listed clip
with audio (all three splits) once into a feature cache.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av

from examples.av_common.dataset import AVClipDataset, ClipRecord, FeatureCache, build_split_datasets
from examples.av_common.features import (
    TEN_SECOND_AUDIO,
    TEN_SECOND_SMOKE_AUDIO,
    TEN_SECOND_SMOKE_VIDEO,
    TEN_SECOND_VIDEO,
    AudioSettings,
    VideoSettings,
)
from examples.av_common.media import MediaError, require_file
from examples.av_common.runner import fill_cache, parse_cache_args
from examples.common.checkpoint import atomic_write_json

logger = logging.getLogger(__name__)

VIDEO_DIR = "UCF-101"
LIST_DIR = "ucfTrainTestlist"
CLASS_FILE = "classInd.txt"
SPLITS = (1, 2, 3)
SPLIT_NAMES = ("train", "val", "test")
#: ``v_<Class>_gXX_cYY.avi``; the class part may differ in case from its folder (the real data
#: has ``HandstandPushups/v_HandStandPushups_g01_c01.avi``), so it is compared case-insensitively.
CLIP_NAME = re.compile(r"^v_(?P<name>[A-Za-z0-9]+)_g(?P<group>\d+)_c(?P<clip>\d+)\.avi$")
PROBE_CACHE_FORMAT = 1


def train_list(split: int) -> str:
    return f"trainlist0{split}.txt"


def test_list(split: int) -> str:
    return f"testlist0{split}.txt"


@dataclass(frozen=True)
class UcfClip:
    """One clip named by a split list: ``<Class>/v_<Class>_gXX_cYY.avi``."""

    path: str  # relative to UCF-101/, with "/" separators
    class_name: str
    group: int
    clip: int

    @property
    def clip_id(self) -> str:
        return self.path.rsplit("/", 1)[-1].removesuffix(".avi")


def parse_clip_path(text: str, where: str) -> UcfClip:
    """``"<Class>/v_<Class>_gXX_cYY.avi"`` -> :class:`UcfClip`.

    Raises:
        ValueError: the text is not of that form, or the file name's class is not its folder's
            (case-insensitively); the message says where (``file:line``).
    """
    parts = text.replace("\\", "/").split("/")
    match = CLIP_NAME.match(parts[-1]) if len(parts) == 2 else None
    if match is None:
        raise ValueError(f"{where}: expected <Class>/v_<Class>_gXX_cYY.avi, got {text!r}")
    folder = parts[0]
    if match["name"].lower() != folder.lower():
        raise ValueError(f"{where}: clip {parts[1]!r} is filed under another class, {folder!r}")
    return UcfClip("/".join(parts), folder, int(match["group"]), int(match["clip"]))


def _lines(path: Path) -> Iterable[tuple[str, list[str]]]:
    """``(file:line, fields)`` of every non-empty line (CRLF or LF, optional BOM)."""
    if not path.is_file():
        raise FileNotFoundError(f"UCF-101 list file {path} does not exist")
    with path.open(encoding="utf-8-sig") as handle:
        for number, raw in enumerate(handle, start=1):
            fields = raw.split()
            if fields:
                yield f"{path}:{number}", fields


def read_class_index(path: str | Path) -> dict[str, int]:
    """``classInd.txt`` -> ``{class name: 1-based index}``, in file order.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: a line is not ``<index> <Class>``, or an index or name repeats.
    """
    classes: dict[str, int] = {}
    for where, fields in _lines(Path(path)):
        if len(fields) != 2 or not fields[0].isdigit():
            raise ValueError(f"{where}: expected '<index> <Class>', got {' '.join(fields)!r}")
        index, name = int(fields[0]), fields[1]
        if name in classes or index in classes.values():
            raise ValueError(f"{where}: class {name!r} or index {index} is listed twice")
        classes[name] = index
    if not classes:
        raise ValueError(f"expected class lines in {path}, got none")
    return classes


def read_train_list(path: str | Path, class_index: Mapping[str, int]) -> list[UcfClip]:
    """A ``trainlist0k.txt``: clips whose given label must be their folder's ``classInd`` index.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: a line is malformed, names an unknown class or carries another label.
    """
    clips = []
    for where, fields in _lines(Path(path)):
        if len(fields) != 2 or not fields[1].isdigit():
            raise ValueError(
                f"{where}: expected '<Class>/v_<Class>_gXX_cYY.avi <label>', got {' '.join(fields)!r}"
            )
        clip = _known(parse_clip_path(fields[0], where), class_index, where)
        if int(fields[1]) != class_index[clip.class_name]:
            raise ValueError(
                f"{where}: label {fields[1]} of {clip.path} disagrees with classInd.txt "
                f"({clip.class_name} is {class_index[clip.class_name]})"
            )
        clips.append(clip)
    return clips


def read_test_list(path: str | Path, class_index: Mapping[str, int]) -> list[UcfClip]:
    """A ``testlist0k.txt`` (no labels: the class is the clip's folder).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: a line is malformed or names an unknown class.
    """
    clips = []
    for where, fields in _lines(Path(path)):
        if len(fields) != 1:
            raise ValueError(
                f"{where}: expected '<Class>/v_<Class>_gXX_cYY.avi', got {' '.join(fields)!r}"
            )
        clips.append(_known(parse_clip_path(fields[0], where), class_index, where))
    return clips


def _known(clip: UcfClip, class_index: Mapping[str, int], where: str) -> UcfClip:
    if clip.class_name not in class_index:
        raise ValueError(f"{where}: class {clip.class_name!r} is not in classInd.txt")
    return clip


def resolve_root(root: str | Path) -> Path:
    """``root`` if it holds ``UCF-101/`` and ``ucfTrainTestlist/``; a single sub-folder that does
    (e.g. ``UCF101/``) also works.

    Raises:
        FileNotFoundError: neither holds both folders.
    """
    root = Path(root)
    candidates = [root] + (sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else [])
    for folder in candidates:
        if (folder / VIDEO_DIR).is_dir() and (folder / LIST_DIR).is_dir():
            return folder
    raise FileNotFoundError(
        f"expected {root} to hold {VIDEO_DIR}/<Class>/*.avi and {LIST_DIR}/classInd.txt"
    )


# --------------------------------------------------------------------------- audio probe
def has_audio_stream(path: str | Path) -> bool:
    """Whether the container holds an audio stream (opens the file; decodes nothing).

    Raises:
        FileNotFoundError: the file does not exist.
        MediaError: FFmpeg cannot open it (the message names it).
    """
    path = require_file(path, "video file")
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except av.FFmpegError as err:
        raise MediaError.for_file(path, f"FFmpeg could not open it ({err})") from err


def _stamp(path: Path) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


@dataclass
class AudioProbeCache:
    """Probe answers on disk: ``{"format": 1, "clips": {path: {"stamp": [size, mtime_ns],
    "audio": bool} | {"stamp": [...], "error": message}}}``.

    An entry counts only while its file has the same size and modification time. Unopenable
    files are remembered with their error, so a second run reports them without opening them.

    Args:
        path: the JSON file (``None``: keep answers in memory only).
        probe: the function that answers (default :func:`has_audio_stream`).
    """

    path: Path | None
    probe: Callable[[Path], bool] | None = None
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)
    probed: int = 0

    def __post_init__(self) -> None:
        if self.path is None or not self.path.is_file():
            return
        try:
            content = json.loads(self.path.read_text())
            if content.get("format") == PROBE_CACHE_FORMAT:
                self.entries = dict(content["clips"])
        except (OSError, ValueError, KeyError, AttributeError) as err:
            logger.warning("ignoring unreadable audio-probe cache %s (%s)", self.path, err)

    def has_audio(self, key: str, file: Path) -> bool:
        """The (cached) answer for ``file``, stored under ``key``.

        Raises:
            FileNotFoundError: the file does not exist.
            MediaError: it cannot be opened (now or when it was probed with the same stamp).
        """
        stamp = _stamp(require_file(file, "UCF-101 video"))
        entry = self.entries.get(key)
        if entry is None or entry.get("stamp") != stamp:
            self.probed += 1
            try:
                entry = {"stamp": stamp, "audio": bool((self.probe or has_audio_stream)(file))}
            except MediaError as err:
                entry = {"stamp": stamp, "error": str(err)}
            self.entries[key] = entry
        if "error" in entry:
            raise MediaError(entry["error"], file)
        return bool(entry["audio"])

    def save(self) -> None:
        """Write the answers atomically (nothing to do without a path or new answers)."""
        if self.path is None or not self.probed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json({"format": PROBE_CACHE_FORMAT, "clips": self.entries}, self.path)
        except OSError as err:
            logger.warning("could not write the audio-probe cache %s (%s)", self.path, err)


def default_probe_cache(root: str | Path, cache_dir: str | Path | None = None) -> Path:
    """Where the probe answers live: ``cache_dir/ucf101-audio-probe.json``, or without a cache
    dir ``$XDG_CACHE_HOME`` (default ``~/.cache``) ``/mcr-reg/ucf101-audio-probe-<hash>.json``,
    the hash being that of the resolved data root."""
    if cache_dir is not None:
        return Path(cache_dir) / "ucf101-audio-probe.json"
    digest = hashlib.sha256(str(Path(root).resolve()).encode()).hexdigest()[:12]
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "mcr-reg" / f"ucf101-audio-probe-{digest}.json"


def probe_clips(
    root: Path, clips: Iterable[UcfClip], cache: AudioProbeCache, *, skip_bad: bool
) -> tuple[dict[str, bool], list[tuple[UcfClip, Exception]]]:
    """Probe every clip for an audio stream, through ``cache``.

    Returns:
        ``{clip path: has audio}`` for the clips that open, and the bad clips with their
        errors (empty unless ``skip_bad``).

    Raises:
        FileNotFoundError, MediaError: a clip is missing or unopenable and not ``skip_bad``.
    """
    answers: dict[str, bool] = {}
    bad: list[tuple[UcfClip, Exception]] = []
    try:
        for clip in clips:
            if clip.path in answers:
                continue
            try:
                answers[clip.path] = cache.has_audio(clip.path, root / VIDEO_DIR / clip.path)
            except (FileNotFoundError, MediaError) as err:
                if not skip_bad:
                    raise
                bad.append((clip, err))
    finally:
        cache.save()
    return answers, bad


# --------------------------------------------------------------------------- the split
@dataclass(frozen=True)
class UcfSplit:
    """One official fold after the audio filter and the validation hold-out.

    Attributes:
        split: the fold, 1..3.
        classes: kept class names; the label of a clip is its class's position here.
        dropped: classes of ``classInd.txt`` without any listed clip that has audio.
        sets: ``{"train", "val", "test"}`` -> clips (with audio).
        listed: how many distinct clips the fold's two lists name.
        with_audio: how many of them have an audio stream.
        bad: listed clips that are missing or unopenable (skipped with ``skip_bad``).
    """

    split: int
    classes: tuple[str, ...]
    dropped: tuple[str, ...]
    sets: dict[str, list[UcfClip]]
    listed: int
    with_audio: int
    bad: int = 0

    def label(self, clip: UcfClip) -> int:
        return self.classes.index(clip.class_name)

    def info(self) -> dict[str, Any]:
        """Facts recorded in ``metrics.json``."""
        return {
            "dataset": "UCF-51",
            "split": self.split,
            "num_classes": len(self.classes),
            "classes": list(self.classes),
            "dropped_classes": list(self.dropped),
            "clips_listed": self.listed,
            "clips_with_audio": self.with_audio,
            "clips_bad": self.bad,
        }


def hold_out_groups(
    clips: Sequence[UcfClip], *, val_fraction: float, seed: int
) -> tuple[list[UcfClip], list[UcfClip]]:
    """Split the training list into train and validation by group, stratified by class.

    For every class, ``round(val_fraction * its number of groups)`` of its groups (at least one,
    but never all; none if it has a single group) are drawn with ``random.Random`` seeded by
    ``(seed, class)``; all clips of those groups go to validation. The draw does not depend on
    the other classes, so the audio filter of one class leaves the others' choice unchanged.

    Returns:
        ``(train, val)``, each in the input order.

    Raises:
        ValueError: ``val_fraction`` is not in ``[0, 1)``.
    """
    if not 0 <= val_fraction < 1:
        raise ValueError(f"expected 0 <= val_fraction < 1, got {val_fraction}")
    groups: dict[str, set[int]] = defaultdict(set)
    for clip in clips:
        groups[clip.class_name].add(clip.group)
    held: set[tuple[str, int]] = set()
    for name, found in groups.items():
        count = round(val_fraction * len(found)) if val_fraction > 0 else 0
        count = min(max(count, 1 if val_fraction > 0 else 0), len(found) - 1)
        chosen = random.Random(f"{seed}:{name}").sample(sorted(found), count)
        held.update((name, g) for g in chosen)
    train = [c for c in clips if (c.class_name, c.group) not in held]
    val = [c for c in clips if (c.class_name, c.group) in held]
    return train, val


def read_split_lists(root: Path, split: int) -> tuple[dict[str, int], dict[str, list[UcfClip]]]:
    """The class index and the train and test lists of one official fold, checked not to
    share a clip."""
    if split not in SPLITS:
        raise ValueError(f"expected split 1, 2 or 3, got {split!r}")
    lists = root / LIST_DIR
    class_index = read_class_index(lists / CLASS_FILE)
    listed = {
        "train": read_train_list(lists / train_list(split), class_index),
        "test": read_test_list(lists / test_list(split), class_index),
    }
    overlap = {c.path for c in listed["train"]} & {c.path for c in listed["test"]}
    if overlap:
        raise ValueError(
            f"split {split}: {len(overlap)} clips are in both lists, e.g. {min(overlap)}"
        )
    return class_index, listed


def load_split(
    root: str | Path,
    split: int = 1,
    *,
    val_fraction: float = 0.1,
    seed: int = 0,
    probe_cache: str | Path | None = None,
    cache_dir: str | Path | None = None,
    skip_bad: bool = False,
) -> UcfSplit:
    """Read one official fold, keep the clips with audio and hold out a validation set.

    Args:
        root: the folder holding ``UCF-101/`` and ``ucfTrainTestlist/``.
        split: the official fold, 1, 2 or 3.
        val_fraction: share of each class's training groups held out (:func:`hold_out_groups`).
        seed: seed of that hold-out.
        probe_cache: JSON file of the audio-probe answers (default :func:`default_probe_cache`).
        cache_dir: feature cache root, the default home of the probe answers.
        skip_bad: drop missing or unopenable clips (logged with a count) instead of raising.

    Raises:
        FileNotFoundError: a list file or (without ``skip_bad``) a listed clip is missing.
        MediaError: a listed clip cannot be opened (without ``skip_bad``).
        ValueError: a bad ``split``, a malformed list line, or no clip with audio at all.
    """
    root = resolve_root(root)
    class_index, listed = read_split_lists(root, split)
    cache = AudioProbeCache(Path(probe_cache or default_probe_cache(root, cache_dir)))
    answers, bad = probe_clips(root, listed["train"] + listed["test"], cache, skip_bad=skip_bad)
    if cache.probed:
        logger.info("probed %d clips for audio (answers kept in %s)", cache.probed, cache.path)
    if bad:
        logger.warning(
            "skipped %d of %d listed clips that are missing or cannot be opened: %s",
            len(bad),
            len(answers) + len(bad),
            "; ".join(str(err) for _, err in bad[:5]),
        )
    audible = {name: [c for c in clips if answers.get(c.path)] for name, clips in listed.items()}
    present = {c.class_name for clips in audible.values() for c in clips}
    classes = tuple(sorted(present, key=class_index.__getitem__))
    dropped = tuple(n for n in class_index if n not in present)
    if not classes:
        raise ValueError(f"none of the {len(answers)} clips listed in split {split} has audio")
    with_audio = sum(answers.values())
    logger.info(
        "UCF-101 split %d: %d of %d listed clips have an audio stream; %d of %d classes kept",
        split,
        with_audio,
        len(answers),
        len(classes),
        len(class_index),
    )
    if dropped:
        logger.info(
            "classes dropped for having no audio (%d): %s", len(dropped), ", ".join(dropped)
        )
    untrained = sorted(set(classes) - {c.class_name for c in audible["train"]})
    if untrained:
        logger.warning("split %d: no training clip with audio for %s", split, ", ".join(untrained))
    train, val = hold_out_groups(audible["train"], val_fraction=val_fraction, seed=seed)
    return UcfSplit(
        split=split,
        classes=classes,
        dropped=dropped,
        sets={"train": train, "val": val, "test": audible["test"]},
        listed=len(answers) + len(bad),
        with_audio=with_audio,
        bad=len(bad),
    )


def records(root: str | Path, fold: UcfSplit, name: str) -> list[ClipRecord]:
    """Clip records of one set: audio and frames both from the whole AVI."""
    videos = resolve_root(root) / VIDEO_DIR
    return [
        ClipRecord(
            clip_id=clip.clip_id,
            label=fold.label(clip),
            audio_path=videos / clip.path,
            video_path=videos / clip.path,
        )
        for clip in fold.sets[name]
    ]


def settings(smoke: bool = False) -> tuple[AudioSettings, VideoSettings]:
    """The ten-second-clip (as AVE's) or ``--smoke`` audio and video settings."""
    return (
        (TEN_SECOND_SMOKE_AUDIO, TEN_SECOND_SMOKE_VIDEO)
        if smoke
        else (TEN_SECOND_AUDIO, TEN_SECOND_VIDEO)
    )


def build_datasets(
    root: str | Path,
    split: int = 1,
    *,
    val_fraction: float = 0.1,
    split_seed: int = 0,
    probe_cache: str | Path | None = None,
    smoke: bool = False,
    cache_dir: str | Path | None = None,
    skip_bad: bool = False,
    progress: bool = True,
) -> tuple[dict[str, AVClipDataset], UcfSplit]:
    """Train / val / test datasets of one official fold, and the fold's facts.

    The audio probe (:func:`load_split`) opens every listed clip, so a missing or unopenable
    AVI stops the build there, naming it; one that opens but does not decode is found by the
    feature cache (``cache_dir``) or, with ``skip_bad``, by the media check of
    :func:`examples.av_common.dataset.build_split_datasets`. ``skip_bad`` drops both kinds.

    Args:
        root: the folder holding ``UCF-101/`` and ``ucfTrainTestlist/``.
        split, val_fraction, split_seed, probe_cache: see :func:`load_split`.
        smoke: tiny inputs for fast CPU runs.
        cache_dir: feature cache root (optional).
        skip_bad: drop bad clips instead of raising.
        progress: show progress bars.
    """
    fold = load_split(
        root,
        split,
        val_fraction=val_fraction,
        seed=split_seed,
        probe_cache=probe_cache,
        cache_dir=cache_dir,
        skip_bad=skip_bad,
    )
    datasets = build_split_datasets(
        {name: records(root, fold, name) for name in SPLIT_NAMES},
        *settings(smoke),
        cache_name="ucf51",
        title=f"UCF-51 split {split}",
        cache_dir=cache_dir,
        skip_bad=skip_bad,
        progress=progress,
    )
    return datasets, fold


def main(argv: Sequence[str] | None = None) -> None:
    """Decode every listed clip with audio (the three folds) once into the feature cache."""
    args = parse_cache_args(__doc__.split("\n")[0], argv)
    cache = FeatureCache(args.cache_dir, "ucf51", *settings(args.smoke))
    wanted: dict[str, ClipRecord] = {}
    for split in SPLITS:
        fold = load_split(args.data_root, split, cache_dir=args.cache_dir, skip_bad=args.skip_bad)
        for name in SPLIT_NAMES:
            wanted.update((r.clip_id, r) for r in records(args.data_root, fold, name))
    fill_cache(cache, list(wanted.values()), skip_bad=args.skip_bad)


if __name__ == "__main__":
    main()
