"""Write a tiny Something-Something v2 data set in the real layouts.

``python -m examples.sthsth.make_fixture OUT_DIR [--layout webm|hdf5|both] [--seed S]``

Writes the three annotation files with their real names and fields (four templates; train and
validation entries carry bracketed templates and placeholders), and then

* ``webm``: ``20bn-something-something-v2/<id>.webm``, VP8 at 12 fps, 64 x 48 pixels;
* ``hdf5``: ``dataset.hdf5`` (RGB, variable-length uint8 JPEG per frame) and
  ``flow_dataset.hdf5`` (three-channel flow images as fixed-length JPEG bytes, one frame fewer
  than RGB), so both storage kinds found in the wild are exercised.

Every clip shows a bright square on a noisy background moving in the direction named by its
class; the flow images encode that motion (x in channel 0, y in channel 1, magnitude in 2,
128 = no motion), as flow visualisations do. Clips have between 10 and 15 frames.
"""

from __future__ import annotations

import argparse
import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from examples.sthsth.data import (
    FLOW_STORE,
    LABELS_FILE,
    RGB_STORE,
    SPLIT_FILES,
    VIDEO_DIR,
    encode_frames,
    write_frame_store,
)

#: (label-file template, bracketed template, motion per frame in pixels (dx, dy))
CLASSES: tuple[tuple[str, str, tuple[int, int]], ...] = (
    ("Pushing something from left to right", "Pushing [something] from left to right", (3, 0)),
    ("Pushing something from right to left", "Pushing [something] from right to left", (-3, 0)),
    ("Moving something up", "Moving [something] up", (0, -2)),
    ("Moving something down", "Moving [something] down", (0, 2)),
)
VIDEOS_PER_CLASS: dict[str, int] = {"train": 2, "validation": 1}
HEIGHT, WIDTH, FPS = 48, 64, 12
SQUARE = 10


def _render(rng: np.random.Generator, n_frames: int, motion: tuple[int, int]) -> np.ndarray:
    """RGB frames ``(N, H, W, 3)`` uint8 of a square moving by ``motion`` per frame."""
    dx, dy = motion
    x0 = WIDTH // 2 - SQUARE // 2 - dx * n_frames // 2
    y0 = HEIGHT // 2 - SQUARE // 2 - dy * n_frames // 2
    colour = rng.integers(150, 256, size=3)
    frames = rng.integers(0, 60, size=(n_frames, HEIGHT, WIDTH, 3)).astype(np.uint8)
    for t in range(n_frames):
        x, y = x0 + dx * t, y0 + dy * t
        frames[t, max(y, 0) : max(y + SQUARE, 0), max(x, 0) : max(x + SQUARE, 0)] = colour
    return frames


def _flow_images(n_frames: int, motion: tuple[int, int]) -> np.ndarray:
    """Flow visualisations ``(N - 1, H, W, 3)`` uint8 for the square's motion."""
    dx, dy = motion
    x0 = WIDTH // 2 - SQUARE // 2 - dx * n_frames // 2
    y0 = HEIGHT // 2 - SQUARE // 2 - dy * n_frames // 2
    flow = np.full((n_frames - 1, HEIGHT, WIDTH, 3), 128, dtype=np.uint8)
    value = (128 + 20 * dx, 128 + 20 * dy, min(255, 128 + 20 * (abs(dx) + abs(dy))))
    for t in range(n_frames - 1):
        x, y = x0 + dx * t, y0 + dy * t
        flow[t, max(y, 0) : max(y + SQUARE, 0), max(x, 0) : max(x + SQUARE, 0)] = value
    return flow


def _write_webm(path: Path, frames: np.ndarray) -> None:
    with av.open(str(path), mode="w", format="webm") as container:
        stream = container.add_stream("libvpx", rate=FPS)
        stream.width, stream.height = WIDTH, HEIGHT
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, FPS)
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))


def _jpegs(frames: np.ndarray) -> list[bytes]:
    return encode_frames(torch.from_numpy(frames).permute(0, 3, 1, 2), quality=95)


def make_fixture(out_dir: str | Path, *, layout: str = "both", seed: int = 0) -> Path:
    """Write the fixture into ``out_dir``; returns ``out_dir``.

    Args:
        out_dir: data set root to create.
        layout: ``"webm"``, ``"hdf5"`` or ``"both"``.
        seed: seed of the noise, colours and clip lengths.
    """
    if layout not in ("webm", "hdf5", "both"):
        raise ValueError(f"expected layout 'webm', 'hdf5' or 'both', got {layout!r}")
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = {name: str(k) for k, (name, _, _) in enumerate(CLASSES)}
    (root / LABELS_FILE).write_text(json.dumps(labels, indent=1), encoding="utf-8")

    rgb: dict[str, list[bytes]] = {}
    flow: dict[str, list[bytes]] = {}
    if layout in ("webm", "both"):
        (root / VIDEO_DIR).mkdir(exist_ok=True)
    next_id = 1000
    for split, per_class in VIDEOS_PER_CLASS.items():
        entries = []
        for _, template, motion in CLASSES:
            for _ in range(per_class):
                video_id = str(next_id)
                next_id += 1
                n_frames = int(rng.integers(10, 16))
                frames = _render(rng, n_frames, motion)
                entries.append(
                    {
                        "id": video_id,
                        "label": template.replace("[something]", "a cup").lower(),
                        "template": template,
                        "placeholders": ["a cup"],
                    }
                )
                if layout in ("webm", "both"):
                    _write_webm(root / VIDEO_DIR / f"{video_id}.webm", frames)
                if layout in ("hdf5", "both"):
                    rgb[video_id] = _jpegs(frames)
                    flow[video_id] = _jpegs(_flow_images(n_frames, motion))
        (root / SPLIT_FILES[split]).write_text(json.dumps(entries, indent=1), encoding="utf-8")
    if layout in ("hdf5", "both"):
        write_frame_store(root / RGB_STORE, rgb, storage="vlen")
        write_frame_store(root / FLOW_STORE, flow, storage="bytes")
    return root


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--layout", choices=("webm", "hdf5", "both"), default="both")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(make_fixture(args.out_dir, layout=args.layout, seed=args.seed))


if __name__ == "__main__":
    main()
