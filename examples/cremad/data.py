"""CREMA-D: the raw on-disk layout, its splits, and audio-visual datasets.

Layout (the public release)::

    <root>/AudioWAV/<clip>.wav        16 kHz mono speech
    <root>/VideoFlash/<clip>.flv      the same performance on video (480x360)
    <root>/VideoDemographics.csv      "ActorID","Age","Sex","Race","Ethnicity"

A clip is named ``<ActorID>_<Sentence>_<Emotion>_<Level>`` (``1001_DFA_ANG_XX``); its label is
the emotion, in the class order NEU 0, HAP 1, SAD 2, FEA 3, DIS 4, ANG 5.

Splits (``split=``):

- ``"speaker"``: speaker-disjoint folds generated from the file names with a seed, in the
  proportions of the MCR paper's protocol (63 / 14 / 14 of 91 actors; see
  :func:`make_speaker_folds`).
- ``"fold-csv"``: the published speaker-independent folds of Goncalves et al. (CSV with header
  ``FileName,angry,sad,disgust,fear,neutral,happy,SpkrID,Gender,Split_Set``).
- ``"ogm"``: the random clip-level ``train.csv`` / ``test.csv`` of OGM-GE (no header, CRLF,
  ``1088_IOM_NEU_XX,NEU``), which shares actors between train and test; kept for comparison
  with older papers. A seeded 10 % of its training clips is held out for validation.

Run ``python -m examples.cremad.data --data-root DIR --cache-dir DIR`` to decode everything
once into a feature cache (with a progress bar).
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from examples.av_common.dataset import AVClipDataset, ClipRecord, FeatureCache, build_split_datasets
from examples.av_common.features import AudioSettings, VideoSettings
from examples.av_common.runner import fill_cache, parse_cache_args

EMOTIONS = ("NEU", "HAP", "SAD", "FEA", "DIS", "ANG")
SENTENCES = ("IEO", "TIE", "IOM", "IWW", "TAI", "MTI", "IWL", "ITH", "DFA", "ITS", "TSI", "WSI")
LEVELS = ("LO", "MD", "HI", "XX")
NUM_CLASSES = len(EMOTIONS)
SPLIT_NAMES = ("train", "val", "test")
#: Names of the sets in the published fold CSVs.
FOLD_CSV_SETS = {"Train": "train", "Development": "val", "Test": "test"}
#: Column order of the published fold CSVs.
FOLD_CSV_HEADER = (
    "FileName", "angry", "sad", "disgust", "fear", "neutral", "happy", "SpkrID", "Gender",
    "Split_Set",
)  # fmt: skip

#: The standard preprocessing: 3 s at 22.05 kHz, STFT 512 / 353 -> (257, 188); 3 frames at 1 fps.
AUDIO = AudioSettings(sample_rate=22050, seconds=3.0, n_fft=512, hop=353, kind="stft")
VIDEO = VideoSettings(fps=1.0, num_frames=3, frame_size=224, store_short_side=256)
#: ``--smoke``: 1 s at 8 kHz -> (65, 65); 3 frames of 32 x 32.
SMOKE_AUDIO = AudioSettings(sample_rate=8000, seconds=1.0, n_fft=128, hop=125, kind="stft")
SMOKE_VIDEO = VideoSettings(fps=1.0, num_frames=3, frame_size=32, store_short_side=36)


@dataclass(frozen=True)
class CremadClip:
    """The fields of a CREMA-D clip name."""

    clip_id: str
    actor: int
    sentence: str
    emotion: str
    level: str

    @property
    def label(self) -> int:
        return EMOTIONS.index(self.emotion)


def parse_clip_name(name: str) -> CremadClip:
    """Parse ``1001_DFA_ANG_XX`` (a ``.wav`` / ``.flv`` suffix is ignored).

    Raises:
        ValueError: the name does not follow ``<ActorID>_<Sentence>_<Emotion>_<Level>``.

    Example:
        >>> parse_clip_name("1026_IEO_ANG_HI.wav").label
        5
    """
    stem = Path(name).stem if name.endswith((".wav", ".flv")) else name
    parts = stem.split("_")
    if (
        len(parts) != 4
        or not parts[0].isdigit()
        or parts[1] not in SENTENCES
        or parts[2] not in EMOTIONS
        or parts[3] not in LEVELS
    ):
        raise ValueError(
            f"expected a CREMA-D clip name <ActorID>_<Sentence>_<Emotion>_<Level> such as "
            f"1001_DFA_ANG_XX, got {name!r}"
        )
    return CremadClip(stem, int(parts[0]), parts[1], parts[2], parts[3])


def list_clips(root: str | Path) -> list[str]:
    """Clip ids of every ``AudioWAV/*.wav`` and ``VideoFlash/*.flv`` under ``root``, sorted.

    The union of both folders is listed, so a clip whose audio or video is missing is still
    listed and later reported by name instead of silently left out.

    Raises:
        FileNotFoundError: ``root/AudioWAV`` is missing or holds no ``.wav`` file.
        ValueError: a file name is not a CREMA-D clip name.
    """
    audio_dir = Path(root) / "AudioWAV"
    if not audio_dir.is_dir():
        raise FileNotFoundError(f"expected the CREMA-D folder {audio_dir} (AudioWAV/*.wav)")
    clips = {p.stem for p in audio_dir.glob("*.wav")}
    if not clips:
        raise FileNotFoundError(f"no .wav files in {audio_dir}")
    clips |= {p.stem for p in (Path(root) / "VideoFlash").glob("*.flv")}
    for clip in clips:
        parse_clip_name(clip)
    return sorted(clips)


def read_demographics(root: str | Path) -> dict[int, dict[str, str]]:
    """``VideoDemographics.csv`` as ``{actor id: {"Age": ..., "Sex": ..., ...}}``."""
    path = Path(root) / "VideoDemographics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"expected {path}")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or "ActorID" not in rows[0]:
        raise ValueError(f"expected a header with ActorID in {path}")
    return {int(r["ActorID"]): {k: v for k, v in r.items() if k != "ActorID"} for r in rows}


def speakers_of(clip_ids: Iterable[str]) -> set[int]:
    return {parse_clip_name(c).actor for c in clip_ids}


def make_speaker_folds(
    clip_ids: Sequence[str],
    *,
    num_folds: int = 5,
    seed: int = 0,
    test_fraction: float = 14 / 91,
    val_fraction: float = 14 / 91,
) -> list[dict[str, list[str]]]:
    """Speaker-disjoint train / val / test folds from the clip names.

    The actors are shuffled with ``seed``. Fold ``k`` tests on the ``k``-th block of
    ``n_test = round(test_fraction * actors)`` actors, validates on the next ``n_val`` actors
    (cyclically) and trains on the rest; with 91 actors this is 63 / 14 / 14 per fold and the
    five test blocks are disjoint.

    Args:
        clip_ids: clip names.
        num_folds: number of folds.
        seed: shuffling seed.
        test_fraction: share of actors tested on per fold.
        val_fraction: share of actors validated on per fold.

    Returns:
        One ``{"train": [...], "val": [...], "test": [...]}`` per fold (sorted clip ids).

    Raises:
        ValueError: too few actors for a non-empty train, val and test set.
    """
    actors = sorted(speakers_of(clip_ids))
    n = len(actors)
    n_test = max(1, round(test_fraction * n))
    n_val = max(1, round(val_fraction * n))
    if n_test + n_val >= n:
        raise ValueError(
            f"expected more than {n_test + n_val} actors for speaker folds, got {n}: {actors}"
        )
    if num_folds < 1:
        raise ValueError(f"expected num_folds >= 1, got {num_folds}")
    random.Random(seed).shuffle(actors)
    folds = []
    for k in range(num_folds):
        test = {actors[(k * n_test + i) % n] for i in range(n_test)}
        val = {actors[(k * n_test + n_test + i) % n] for i in range(n_val)}
        split: dict[str, list[str]] = {name: [] for name in SPLIT_NAMES}
        for clip in sorted(clip_ids):
            actor = parse_clip_name(clip).actor
            name = "test" if actor in test else "val" if actor in val else "train"
            split[name].append(clip)
        folds.append(split)
    return folds


def read_fold_csv(path: str | Path) -> dict[str, list[str]]:
    """A published speaker-independent fold file -> ``{"train", "val", "test": clip ids}``.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the header or a row is not in the expected format.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"fold file {path} does not exist")
    split: dict[str, list[str]] = {name: [] for name in SPLIT_NAMES}
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or [h.strip() for h in header] != list(FOLD_CSV_HEADER):
            raise ValueError(
                f"expected the header {','.join(FOLD_CSV_HEADER)} in {path}, got {header}"
            )
        for line, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(FOLD_CSV_HEADER) or row[-1].strip() not in FOLD_CSV_SETS:
                raise ValueError(
                    f"{path}:{line}: expected {len(FOLD_CSV_HEADER)} fields ending in one of "
                    f"{sorted(FOLD_CSV_SETS)}, got {row}"
                )
            clip = parse_clip_name(row[0].strip()).clip_id
            split[FOLD_CSV_SETS[row[-1].strip()]].append(clip)
    return split


def write_fold_csv(
    path: str | Path, split: Mapping[str, Sequence[str]], genders: Mapping[int, str]
) -> None:
    """Write a split in the published fold-CSV format (used by the fixture builder).

    The emotion columns hold a one-hot-like soft label of the acted emotion.
    """
    order = ("ANG", "SAD", "DIS", "FEA", "NEU", "HAP")  # the CSV's emotion columns
    names = {v: k for k, v in FOLD_CSV_SETS.items()}
    with Path(path).open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(FOLD_CSV_HEADER)
        for set_name in SPLIT_NAMES:
            for clip_id in split[set_name]:
                clip = parse_clip_name(clip_id)
                scores = [0.9 if e == clip.emotion else 0.02 for e in order]
                writer.writerow(
                    [f"{clip_id}.wav", *scores, clip.actor, genders.get(clip.actor, "Unknown"),
                     names[set_name]]
                )  # fmt: skip


def read_ogm_csv(path: str | Path) -> list[str]:
    """An OGM-GE split file (no header, CRLF, ``1088_IOM_NEU_XX,NEU``) -> clip ids.

    Raises:
        ValueError: a line is malformed or its emotion disagrees with the clip name.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"OGM-GE split file {path} does not exist")
    clips = []
    with path.open(newline="") as handle:
        for line, row in enumerate(csv.reader(handle), start=1):
            if not row:
                continue
            if len(row) != 2:
                raise ValueError(f"{path}:{line}: expected 'clip,EMOTION', got {row}")
            clip = parse_clip_name(row[0].strip())
            if row[1].strip() != clip.emotion:
                raise ValueError(
                    f"{path}:{line}: emotion {row[1].strip()!r} disagrees with clip {clip.clip_id}"
                )
            clips.append(clip.clip_id)
    return clips


def ogm_split(
    train_csv: str | Path, test_csv: str | Path, *, seed: int = 0, val_fraction: float = 0.1
) -> dict[str, list[str]]:
    """OGM-GE's random split, with a seeded ``val_fraction`` of train held out for validation."""
    train = read_ogm_csv(train_csv)
    rng = random.Random(seed)
    shuffled = train[:]
    rng.shuffle(shuffled)
    n_val = max(1, round(val_fraction * len(train))) if len(train) > 1 else 0
    val = set(shuffled[:n_val])
    return {
        "train": [c for c in train if c not in val],
        "val": [c for c in train if c in val],
        "test": read_ogm_csv(test_csv),
    }


def _resolve(root: Path, path: str | Path) -> Path:
    path = Path(path)
    return path if path.is_absolute() else root / path


def load_split(
    root: str | Path,
    *,
    split: str = "speaker",
    fold: int = 0,
    seed: int = 0,
    num_folds: int = 5,
    fold_csv: str = "folds/fold_{fold}.csv",
    ogm_train_csv: str = "train.csv",
    ogm_test_csv: str = "test.csv",
) -> dict[str, list[str]]:
    """Clip ids of train / val / test under one of the split protocols (module docstring).

    Args:
        root: CREMA-D root.
        split: ``"speaker"``, ``"fold-csv"`` or ``"ogm"``.
        fold: fold index, ``0 <= fold < num_folds`` (``"speaker"``, ``"fold-csv"``).
        seed: seed of the generated folds / of the OGM validation hold-out.
        num_folds: number of generated folds.
        fold_csv: path of the fold file, relative to ``root`` unless absolute; ``{fold}`` is
            replaced by ``fold`` and ``{fold1}`` by ``fold + 1``.
        ogm_train_csv: OGM-GE train file, relative to ``root`` unless absolute.
        ogm_test_csv: OGM-GE test file, relative to ``root`` unless absolute.
    """
    root = Path(root)
    if split == "speaker":
        if not 0 <= fold < num_folds:
            raise ValueError(f"expected 0 <= fold < {num_folds}, got {fold}")
        return make_speaker_folds(list_clips(root), num_folds=num_folds, seed=seed)[fold]
    if split == "fold-csv":
        return read_fold_csv(_resolve(root, fold_csv.format(fold=fold, fold1=fold + 1)))
    if split == "ogm":
        return ogm_split(_resolve(root, ogm_train_csv), _resolve(root, ogm_test_csv), seed=seed)
    raise ValueError(f"expected split 'speaker', 'fold-csv' or 'ogm', got {split!r}")


def records(root: str | Path, clip_ids: Iterable[str]) -> list[ClipRecord]:
    """Clip records: audio from ``AudioWAV/<clip>.wav``, video from ``VideoFlash/<clip>.flv``."""
    root = Path(root)
    out = []
    for clip_id in clip_ids:
        clip = parse_clip_name(clip_id)
        out.append(
            ClipRecord(
                clip_id=clip.clip_id,
                label=clip.label,
                audio_path=root / "AudioWAV" / f"{clip.clip_id}.wav",
                video_path=root / "VideoFlash" / f"{clip.clip_id}.flv",
            )
        )
    return out


def settings(smoke: bool = False) -> tuple[AudioSettings, VideoSettings]:
    """The standard (or ``--smoke``) audio and video settings."""
    return (SMOKE_AUDIO, SMOKE_VIDEO) if smoke else (AUDIO, VIDEO)


def build_datasets(
    root: str | Path,
    *,
    split: str = "speaker",
    fold: int = 0,
    seed: int = 0,
    smoke: bool = False,
    cache_dir: str | Path | None = None,
    skip_bad: bool = False,
    progress: bool = True,
    audio: AudioSettings | None = None,
    video: VideoSettings | None = None,
    **split_options: str | int,
) -> dict[str, AVClipDataset]:
    """Train / val / test datasets of one split.

    Media are checked before any training: missing files raise :class:`FileNotFoundError`
    naming them (or, with ``skip_bad``, are dropped with a logged count). With ``cache_dir``
    every clip is decoded once up front (progress bar), which also catches corrupt files; without
    it, ``skip_bad`` opens each file once to find corrupt ones
    (:func:`examples.av_common.dataset.build_split_datasets`).

    Args:
        root: CREMA-D root.
        split, fold, seed: see :func:`load_split`.
        smoke: tiny inputs for fast CPU runs.
        cache_dir: feature cache root (optional).
        skip_bad: drop bad clips instead of raising.
        progress: show progress bars.
        audio, video: override the settings chosen by ``smoke``.
        **split_options: further arguments of :func:`load_split`.
    """
    audio_default, video_default = settings(smoke)
    ids = load_split(root, split=split, fold=fold, seed=seed, **split_options)  # type: ignore[arg-type]
    return build_split_datasets(
        {name: records(root, ids[name]) for name in SPLIT_NAMES},
        audio or audio_default,
        video or video_default,
        cache_name="cremad",
        title=f"CREMA-D split {split!r} (fold {fold})",
        cache_dir=cache_dir,
        skip_bad=skip_bad,
        progress=progress,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Decode every clip once into the feature cache."""
    args = parse_cache_args(__doc__.split("\n")[0], argv)
    cache = FeatureCache(args.cache_dir, "cremad", *settings(args.smoke))
    fill_cache(cache, records(args.data_root, list_clips(args.data_root)), skip_bad=args.skip_bad)


if __name__ == "__main__":
    main()
