"""Clip records, an optional on-disk feature cache, and the audio-visual ``Dataset``.

A data set is a list of :class:`ClipRecord` (which files, which label, which time segment).
:class:`AVClipDataset` turns a record into ``{"audio": (1, F, T), "video": (3, T, S, S),
"label": ()}``. Decoding video is the slow part, so :class:`FeatureCache` can store, once, each
clip's spectrogram and its 1-fps frames (as JPEG) under a directory whose name is a hash of every
setting that changes the stored content: change a setting and a new cache is built beside the
old one, never silently reused. Entries also remember the size and modification time of their
source files and are rebuilt when those change.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from examples.av_common.features import (
    AudioSettings,
    VideoSettings,
    choose_frames,
    frame_transform,
    frames_to_tensor,
    log_spectrogram,
)
from examples.av_common.media import MediaError, load_audio, probe_media, sample_video_frames

logger = logging.getLogger(__name__)

#: Bump when the layout of a cache entry changes; part of every cache key.
CACHE_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ClipRecord:
    """One labelled clip: where its media lie and which segment of them to use.

    Attributes:
        clip_id: unique name, e.g. ``1001_DFA_ANG_XX`` or an AVE VideoID.
        label: class index.
        audio_path: file to read the audio from (WAV, or the video container itself).
        video_path: video container.
        start: segment start in seconds (``None``: whole clip).
        end: segment end in seconds (``None``: whole clip).
    """

    clip_id: str
    label: int
    audio_path: Path
    video_path: Path
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True)
class ClipFeatures:
    """What is cached per clip: the log spectrogram and every sampled frame."""

    spectrogram: np.ndarray  # (F, T) float32
    frames: np.ndarray  # (N, H, W, 3) uint8


def extract_features(
    record: ClipRecord, audio: AudioSettings, video: VideoSettings
) -> ClipFeatures:
    """Decode one clip's media into its spectrogram and 1-fps frames.

    Raises:
        FileNotFoundError: a media file is missing (the message names it).
        MediaError: a media file cannot be decoded (the message names it).
    """
    wave = load_audio(record.audio_path, audio.sample_rate, start=record.start, end=record.end)
    frames = sample_video_frames(
        record.video_path,
        video.fps,
        start=record.start or 0.0,
        end=record.end,
        short_side=video.store_short_side,
    )
    return ClipFeatures(log_spectrogram(wave, audio), frames)


def encode_jpeg(frame: np.ndarray, quality: int) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB -> JPEG bytes as a 1-D uint8 array."""
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
    return np.frombuffer(buffer.getvalue(), dtype=np.uint8)


def decode_jpeg(data: np.ndarray) -> np.ndarray:
    """JPEG bytes -> ``(H, W, 3)`` uint8 RGB."""
    with Image.open(io.BytesIO(data.tobytes())) as image:
        return np.asarray(image.convert("RGB"))


def cache_settings(dataset: str, audio: AudioSettings, video: VideoSettings) -> dict[str, Any]:
    """Every setting that changes what a cache entry holds (not the crop size or ``T``)."""
    video_part = video.to_dict()
    for name in ("num_frames", "frame_size"):  # applied when reading, not stored
        video_part.pop(name)
    return {
        "format": CACHE_FORMAT_VERSION,
        "dataset": dataset,
        "audio": audio.to_dict(),
        "video": video_part,
    }


def cache_key(dataset: str, audio: AudioSettings, video: VideoSettings) -> str:
    """Short hash of :func:`cache_settings`; equal keys mean interchangeable entries."""
    text = json.dumps(cache_settings(dataset, audio, video), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _source_stamp(record: ClipRecord) -> np.ndarray:
    stamps = []
    for path in (record.audio_path, record.video_path):
        st = os.stat(path)
        stamps += [st.st_size, st.st_mtime_ns]
    return np.asarray(stamps, dtype=np.int64)


def _entry_name(record: ClipRecord) -> str:
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", record.clip_id)
    if record.start is not None or record.end is not None:
        name += f"__{record.start}_{record.end}"
    return name + ".npz"


class FeatureCache:
    """Per-clip feature files under ``root/<dataset>-<key>/``.

    Args:
        root: cache root directory (created if needed).
        dataset: data set name, part of the key and the directory name.
        audio: audio settings.
        video: video settings.
    """

    def __init__(
        self, root: str | Path, dataset: str, audio: AudioSettings, video: VideoSettings
    ) -> None:
        self.dataset = dataset
        self.audio = audio
        self.video = video
        self.key = cache_key(dataset, audio, video)
        self.directory = Path(root) / f"{dataset}-{self.key}"
        self.directory.mkdir(parents=True, exist_ok=True)
        settings_file = self.directory / "settings.json"
        if not settings_file.exists():
            settings_file.write_text(
                json.dumps(cache_settings(dataset, audio, video), indent=2, sort_keys=True)
            )

    def entry_path(self, record: ClipRecord) -> Path:
        return self.directory / _entry_name(record)

    def load(self, record: ClipRecord) -> ClipFeatures | None:
        """The cached features, or ``None`` if absent or older than the source files."""
        path = self.entry_path(record)
        if not path.exists():
            return None
        try:
            with np.load(path) as entry:
                if not np.array_equal(entry["source"], _source_stamp(record)):
                    return None
                spec = entry["spectrogram"]
                jpeg = entry["jpeg"]
                offsets = entry["offsets"].tolist()
        except (OSError, KeyError, ValueError) as err:
            logger.warning("ignoring unreadable cache entry %s (%s)", path, err)
            return None
        frames = [decode_jpeg(jpeg[a:b]) for a, b in pairwise(offsets)]
        return ClipFeatures(spec, np.stack(frames))

    def store(self, record: ClipRecord, features: ClipFeatures) -> None:
        """Write an entry atomically (safe with several DataLoader workers)."""
        encoded = [encode_jpeg(f, self.video.jpeg_quality) for f in features.frames]
        offsets = np.cumsum([0] + [e.size for e in encoded]).astype(np.int64)
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                np.savez(
                    handle,
                    spectrogram=features.spectrogram,
                    jpeg=np.concatenate(encoded),
                    offsets=offsets,
                    source=_source_stamp(record),
                )
            os.chmod(tmp, 0o644)  # mkstemp makes private files; cache entries are ordinary
            os.replace(tmp, self.entry_path(record))
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    def get(self, record: ClipRecord) -> ClipFeatures:
        """Cached features, extracting and storing them first if needed."""
        features = self.load(record)
        if features is None:
            features = extract_features(record, self.audio, self.video)
            self.store(record, features)
        return features

    def build(
        self, records: Sequence[ClipRecord], *, skip_bad: bool = False, progress: bool = True
    ) -> list[ClipRecord]:
        """Fill the cache for every record (one pass, with a progress bar).

        Args:
            records: clips to cache.
            skip_bad: drop clips whose media are missing or undecodable (logged with a count)
                instead of raising.
            progress: show a tqdm progress bar.

        Returns:
            The records whose features are now cached (all of them unless ``skip_bad``).
        """
        from tqdm.auto import tqdm

        def fill(record: ClipRecord) -> None:
            if self.load(record) is None:
                self.store(record, extract_features(record, self.audio, self.video))

        bar = tqdm(records, desc=f"caching {self.directory.name}", disable=not progress)
        return keep_good(bar, fill, skip_bad=skip_bad)


def keep_good(
    records: Iterable[ClipRecord], check: Callable[[ClipRecord], None], *, skip_bad: bool
) -> list[ClipRecord]:
    """Run ``check`` on every record and keep those it accepts.

    Args:
        records: clips, in order.
        check: raises :class:`FileNotFoundError` or :class:`MediaError` for a bad clip.
        skip_bad: drop bad clips, logging how many and why (:func:`report_skipped`), instead
            of letting the first error propagate.

    Returns:
        The good records, in order.
    """
    good: list[ClipRecord] = []
    bad: list[tuple[ClipRecord, Exception]] = []
    for record in records:
        try:
            check(record)
        except (FileNotFoundError, MediaError) as err:
            if not skip_bad:
                raise
            bad.append((record, err))
            continue
        good.append(record)
    report_skipped(bad, len(good) + len(bad))
    return good


def report_skipped(bad: Sequence[tuple[ClipRecord, Exception]], total: int) -> None:
    """Log how many clips were skipped for bad media, with the first few reasons."""
    if not bad:
        return
    shown = "; ".join(str(err) for _, err in bad[:5])
    more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
    logger.warning(
        "skipped %d of %d clips with missing or unreadable media: %s%s",
        len(bad),
        total,
        shown,
        more,
    )


def check_records(
    records: Sequence[ClipRecord], *, skip_bad: bool = False, probe: bool = False
) -> list[ClipRecord]:
    """Check that every record's media exist (and, with ``probe``, open and decode).

    Args:
        records: clips to check.
        skip_bad: drop bad clips with a logged count instead of raising.
        probe: also open each file and decode its first frame (slower, catches corrupt files).

    Returns:
        The good records.

    Raises:
        FileNotFoundError: a media file is missing and ``skip_bad`` is false.
        MediaError: ``probe`` found an undecodable file and ``skip_bad`` is false.
    """

    def check(record: ClipRecord) -> None:
        for path, kind in ((record.audio_path, "audio"), (record.video_path, "video")):
            if probe:
                probe_media(path, kind)
            elif not Path(path).is_file():
                raise FileNotFoundError(
                    f"{kind} file {path} of clip {record.clip_id} does not exist"
                )

    return keep_good(records, check, skip_bad=skip_bad)


class AVClipDataset(Dataset[dict[str, Tensor]]):
    """Audio-visual clips as ``{"audio": (1, F, T), "video": (3, T, S, S), "label": ()}``.

    Args:
        records: the clips.
        audio: audio settings.
        video: video settings.
        train: random frame window, random resized crop and flip (True) or the centred window
            and a plain resize (False).
        cache: read features through this cache (default: decode the media every time).
    """

    def __init__(
        self,
        records: Sequence[ClipRecord],
        audio: AudioSettings,
        video: VideoSettings,
        *,
        train: bool,
        cache: FeatureCache | None = None,
    ) -> None:
        if cache is not None and cache.key != cache_key(cache.dataset, audio, video):
            raise ValueError(
                f"the cache {cache.directory} was built with other audio/video settings than "
                "the dataset's"
            )
        self.records = list(records)
        self.audio = audio
        self.video = video
        self.train = train
        self.cache = cache
        self.transform = frame_transform(video, train=train)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> list[int]:
        return [r.label for r in self.records]

    def features(self, index: int) -> ClipFeatures:
        record = self.records[index]
        if self.cache is not None:
            return self.cache.get(record)
        return extract_features(record, self.audio, self.video)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        record = self.records[index]
        feats = self.features(index)
        chosen = choose_frames(len(feats.frames), self.video.num_frames, train=self.train)
        return {
            "audio": torch.from_numpy(feats.spectrogram).unsqueeze(0),  # (1, F, T)
            "video": frames_to_tensor(feats.frames[chosen], self.transform),  # (3, T, S, S)
            "label": torch.tensor(record.label, dtype=torch.long),
        }


def build_split_datasets(
    split_records: Mapping[str, Sequence[ClipRecord]],
    audio: AudioSettings,
    video: VideoSettings,
    *,
    cache_name: str,
    title: str,
    cache_dir: str | Path | None = None,
    skip_bad: bool = False,
    progress: bool = True,
) -> dict[str, AVClipDataset]:
    """One :class:`AVClipDataset` per split, with every clip's media checked before training.

    Missing files raise :class:`FileNotFoundError` naming them (or, with ``skip_bad``, are
    dropped with a logged count). With ``cache_dir`` every clip is decoded once up front into a
    :class:`FeatureCache` (progress bar), which also catches corrupt files; without it,
    ``skip_bad`` opens each file once to find corrupt ones. The ``"train"`` split gets the
    training transforms.

    Args:
        split_records: split name (``"train"``, ``"val"``, ``"test"``) -> its clips.
        audio: audio settings.
        video: video settings.
        cache_name: data set name of the cache (its directory is ``<cache_name>-<key>``).
        title: how messages name the data set and split, e.g. ``"AVE"``.
        cache_dir: feature cache root (optional).
        skip_bad: drop bad clips instead of raising.
        progress: show progress bars while caching.

    Returns:
        Split name -> dataset, in the order of ``split_records``.

    Raises:
        FileNotFoundError: a media file is missing and ``skip_bad`` is false.
        MediaError: a media file is undecodable (found when caching, or probing with
            ``skip_bad``) and ``skip_bad`` is false.
        ValueError: a split has no clips left.
    """
    cache = FeatureCache(cache_dir, cache_name, audio, video) if cache_dir is not None else None
    datasets = {}
    for split, records in split_records.items():
        if cache is not None:
            good = cache.build(records, skip_bad=skip_bad, progress=progress)
        else:
            good = check_records(records, skip_bad=skip_bad, probe=skip_bad)
        if not good:
            raise ValueError(f"the {split} set of {title} is empty")
        datasets[split] = AVClipDataset(good, audio, video, train=split == "train", cache=cache)
        logger.info("%s %s: %d clips", title, split, len(good))
    return datasets
