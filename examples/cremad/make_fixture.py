"""Write a tiny CREMA-D in the real layout, for tests and for trying the pipeline.

``python -m examples.cremad.make_fixture OUT_DIR`` writes, for 6 actors x 6 emotions (36 clips):

- ``AudioWAV/<clip>.wav``: 16 kHz mono 16-bit PCM, 1.2 - 2.4 s, a tone whose pitch depends on
  the emotion and the actor, plus noise;
- ``VideoFlash/<clip>.flv``: Sorenson H.263 (``flv1``) at 5 fps, 64 x 48, 2.6 s, a square whose
  colour depends on the emotion sliding over a noisy background;
- ``VideoDemographics.csv`` in the real format;
- ``folds/fold_{0..4}.csv``: speaker-disjoint folds in the published fold-CSV format;
- ``train.csv`` / ``test.csv``: an OGM-GE style random split (no header, CRLF).
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Sequence
from pathlib import Path

from examples.av_common.synth import moving_square_frames, tone, write_video, write_wav
from examples.cremad.data import EMOTIONS, SENTENCES, make_speaker_folds, write_fold_csv

ACTORS = tuple(range(1001, 1007))
AUDIO_RATE = 16000
VIDEO_FPS = 5
VIDEO_SIZE = (64, 48)  # width, height (4:3 like the real 480 x 360)
VIDEO_SECONDS = 2.6
COLOURS = ((200, 200, 200), (250, 220, 0), (0, 60, 250), (160, 0, 200), (0, 180, 40), (250, 0, 0))


def clip_names(actors: Sequence[int] = ACTORS) -> list[str]:
    """One clip per actor and emotion; anger uses sentence IEO with a cycling intensity level."""
    names = []
    for a, actor in enumerate(actors):
        for e, emotion in enumerate(EMOTIONS):
            if emotion == "ANG":
                names.append(f"{actor}_IEO_{emotion}_{('LO', 'MD', 'HI')[a % 3]}")
            else:
                sentence = SENTENCES[1 + (a + e) % (len(SENTENCES) - 1)]
                names.append(f"{actor}_{sentence}_{emotion}_XX")
    return names


def write_clip(root: Path, name: str, index: int) -> None:
    actor, _, emotion, _ = name.split("_")
    label = EMOTIONS.index(emotion)
    seconds = 1.2 + 0.2 * (index % 7)
    freq = 180.0 + 90.0 * label + 5.0 * (int(actor) - ACTORS[0])
    write_wav(
        root / "AudioWAV" / f"{name}.wav", tone(freq, seconds, AUDIO_RATE, seed=index), AUDIO_RATE
    )
    frames = moving_square_frames(
        round(VIDEO_SECONDS * VIDEO_FPS), *VIDEO_SIZE, COLOURS[label], seed=index
    )
    write_video(
        root / "VideoFlash" / f"{name}.flv", frames, VIDEO_FPS, container_format="flv", codec="flv"
    )


def make_fixture(out_dir: str | Path, *, seed: int = 0) -> Path:
    """Write the fixture to ``out_dir`` (created) and return it."""
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    names = clip_names()
    for index, name in enumerate(names):
        write_clip(root, name, index)
    genders = {actor: ("Male", "Female")[i % 2] for i, actor in enumerate(ACTORS)}
    lines = ['"ActorID","Age","Sex","Race","Ethnicity"']
    lines += [f"{a},{30 + i},{genders[a]},Caucasian,Not Hispanic" for i, a in enumerate(ACTORS)]
    (root / "VideoDemographics.csv").write_text("\n".join(lines) + "\n")
    (root / "folds").mkdir(exist_ok=True)
    for k, split in enumerate(make_speaker_folds(names, num_folds=5, seed=seed)):
        write_fold_csv(root / "folds" / f"fold_{k}.csv", split, genders)
    shuffled = names[:]
    random.Random(seed).shuffle(shuffled)
    n_test = max(1, len(names) // 9)
    for file_name, part in (("test.csv", shuffled[:n_test]), ("train.csv", shuffled[n_test:])):
        rows = "".join(f"{n},{n.split('_')[2]}\r\n" for n in part)
        (root / file_name).write_bytes(rows.encode())
    return root


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a tiny CREMA-D in the real layout.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    root = make_fixture(args.out_dir, seed=args.seed)
    print(f"wrote a CREMA-D fixture with {len(clip_names())} clips to {root}")


if __name__ == "__main__":
    main()
