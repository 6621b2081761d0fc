"""Something-Something v2: annotations, the two on-disk layouts, frame sampling, transforms.

Annotations (in ``ROOT`` or ``ROOT/labels``):

* ``something-something-v2-labels.json``: ``{template: "index"}``, 174 entries, templates
  without brackets;
* ``something-something-v2-train.json`` / ``-validation.json``: lists of
  ``{"id", "label", "template", "placeholders"}``; the class of an entry is
  ``labels[template with "[" and "]" removed]``.

Layouts:

* ``"hdf5"`` (the multimodal-distillation release of Radevski et al., used for the MCR runs):
  ``ROOT/dataset.hdf5`` (RGB) and ``ROOT/flow_dataset.hdf5`` (optical flow), one HDF5 dataset
  per video id whose element n is the encoded JPEG of frame n. Flow images decode to three
  channels and there is one flow frame fewer than RGB frames. Elements may be stored as
  variable-length uint8 arrays, fixed-length bytes or opaque bytes; all are read.
* ``"webm"``: the official videos ``ROOT/20bn-something-something-v2/<id>.webm`` (about
  12 fps), decoded with PyAV. They give RGB only; a flow stream is then read from
  ``ROOT/flow_dataset.hdf5`` if present (its frames must come from the same videos; this mix is
  not what the MCR runs used). :func:`convert_webm_to_hdf5` writes the RGB store from the videos.

Sampling (both layouts): ``num_frames`` uniform segments over the available frames; one random
index per segment in training, the segment midpoint in evaluation. With flow, the indices are
computed from the flow length and reused for RGB, so both streams see the same instants.

Transforms: training resizes the short side to ``size * U(1.15, 1.43)`` then takes a random
``size`` crop (one crop for all frames and both streams), with colour jitter on RGB only;
evaluation resizes the short side to ``size`` and takes the centre crop. No horizontal flips:
several classes name a direction ("... from left to right"). Both streams get ImageNet
normalisation. A sample is ``{"rgb": (3, T, S, S), "flow": (3, T, S, S), "label": long}``.
"""

from __future__ import annotations

import argparse
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import av
import h5py
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF
from tqdm import tqdm

Layout = Literal["hdf5", "webm"]
Split = Literal["train", "validation"]

LABELS_FILE = "something-something-v2-labels.json"
SPLIT_FILES: dict[str, str] = {
    "train": "something-something-v2-train.json",
    "validation": "something-something-v2-validation.json",
}
VIDEO_DIR = "20bn-something-something-v2"
RGB_STORE = "dataset.hdf5"
FLOW_STORE = "flow_dataset.hdf5"
STREAMS: tuple[str, ...] = ("rgb", "flow")
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
TRAIN_SCALE: tuple[float, float] = (1.15, 1.43)


# --------------------------------------------------------------------------- annotations
def template_to_class_name(template: str) -> str:
    """Remove the placeholder brackets: ``"Holding [something]"`` -> ``"Holding something"``.

    Example:
        >>> template_to_class_name("Putting [something] next to [something]")
        'Putting something next to something'
    """
    return template.replace("[", "").replace("]", "")


def find_annotation(root: str | Path, name: str) -> Path:
    """``ROOT/name`` or ``ROOT/labels/name``; raises FileNotFoundError naming both."""
    root = Path(root)
    for candidate in (root / name, root / "labels" / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"expected {name} in {root} or {root / 'labels'}; not found")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from err


def read_labels(path: str | Path) -> dict[str, int]:
    """Read the template -> class index mapping; checks indices are 0..C-1 without gaps.

    Raises:
        ValueError: not a mapping of strings to integer strings, or gaps/duplicates.
    """
    path = Path(path)
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise ValueError(f"expected {path} to map templates to indices, got {type(raw).__name__}")
    try:
        labels = {str(k): int(v) for k, v in raw.items()}
    except (TypeError, ValueError) as err:
        raise ValueError(f"expected integer class indices in {path}: {err}") from err
    if sorted(labels.values()) != list(range(len(labels))):
        raise ValueError(f"expected the class indices of {path} to be 0..{len(labels) - 1}")
    return labels


def read_split(path: str | Path, labels: Mapping[str, int]) -> list[tuple[str, int]]:
    """Read a train/validation list as ``[(video_id, class_index), ...]``.

    Raises:
        ValueError: entries without ``id``/``template`` or with a template not in ``labels``.
    """
    path = Path(path)
    raw = _read_json(path)
    if not isinstance(raw, list):
        raise ValueError(f"expected {path} to hold a list of entries, got {type(raw).__name__}")
    items: list[tuple[str, int]] = []
    for k, entry in enumerate(raw):
        if not isinstance(entry, dict) or "id" not in entry or "template" not in entry:
            raise ValueError(f"expected entry {k} of {path} to have 'id' and 'template': {entry!r}")
        name = template_to_class_name(str(entry["template"]))
        if name not in labels:
            raise ValueError(f"entry {k} of {path} has template {name!r}, not in the labels file")
        items.append((str(entry["id"]), labels[name]))
    return items


# --------------------------------------------------------------------------- sampling
def segment_indices(
    num_available: int,
    num_segments: int,
    *,
    train: bool,
    generator: torch.Generator | None = None,
) -> list[int]:
    """Uniform segment sampling (TSN style): one frame index per equal-length segment.

    Segment s covers ``[s * n / S, (s + 1) * n / S)``; training draws a uniform position in it,
    evaluation takes its midpoint. With fewer frames than segments, indices repeat.

    Args:
        num_available: frames to choose from (the flow length when flow is used).
        num_segments: frames to return (16 as released).
        train: random (True) or midpoint (False) positions.
        generator: optional source of randomness for training.

    Returns:
        ``num_segments`` non-decreasing indices in ``[0, num_available)``.

    Raises:
        ValueError: no frames or no segments.

    Example:
        >>> segment_indices(32, 4, train=False)
        [4, 12, 20, 28]
    """
    if num_available < 1:
        raise ValueError(f"expected at least one frame to sample from, got {num_available}")
    if num_segments < 1:
        raise ValueError(f"expected at least one segment, got {num_segments}")
    length = num_available / num_segments
    if train:
        offsets = torch.rand(num_segments, generator=generator, dtype=torch.float64).tolist()
    else:
        offsets = [0.5] * num_segments
    return [min(math.floor(length * (s + u)), num_available - 1) for s, u in enumerate(offsets)]


# --------------------------------------------------------------------------- decoding
def element_bytes(element: Any) -> bytes:
    """Bytes of one stored frame: a uint8 vector, fixed-length bytes or an opaque element."""
    if isinstance(element, bytes | np.bytes_):
        return bytes(element)
    if isinstance(element, np.void):
        return element.tobytes()
    array = np.asarray(element)
    if array.dtype == np.uint8 and array.ndim == 1:
        return array.tobytes()
    raise TypeError(
        f"expected a stored JPEG as uint8 vector or bytes, got {type(element).__name__} "
        f"{getattr(array, 'dtype', '')} of shape {getattr(array, 'shape', '')}"
    )


def decode_frames(encoded: Sequence[bytes], *, where: str = "") -> Tensor:
    """Decode JPEG frames to a ``(T, 3, H, W)`` uint8 tensor (grey images become 3 channels)."""
    frames = []
    for k, data in enumerate(encoded):
        try:
            with Image.open(io.BytesIO(data)) as image:
                array = np.asarray(image.convert("RGB"))
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"could not decode frame {k} {where}: {err}") from err
        frames.append(torch.from_numpy(array.copy()).permute(2, 0, 1))
    return torch.stack(frames)


def read_video_frames(path: str | Path) -> Tensor:
    """Decode every frame of a video file with PyAV: ``(N, 3, H, W)`` uint8.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the file cannot be decoded or holds no frames.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expected the video {path}; not found")
    try:
        with av.open(str(path)) as container:
            frames = [
                torch.from_numpy(frame.to_ndarray(format="rgb24"))
                for frame in container.decode(video=0)
            ]
    except (av.FFmpegError, IndexError) as err:
        raise ValueError(f"could not decode the video {path}: {err}") from err
    if not frames:
        raise ValueError(f"the video {path} holds no frames")
    return torch.stack(frames).permute(0, 3, 1, 2).contiguous()


class FrameStore:
    """Read-only access to an HDF5 frame store, opened lazily in each (worker) process.

    Args:
        path: ``dataset.hdf5`` or ``flow_dataset.hdf5``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"expected the frame store {self.path}; not found")
        self._file: h5py.File | None = None

    def _handle(self) -> h5py.File:
        if self._file is None:
            self._file = h5py.File(self.path, "r")
        return self._file

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers open their own handle
        return {"path": self.path, "_file": None}

    def __contains__(self, video_id: str) -> bool:
        return video_id in self._handle()

    def _dataset(self, video_id: str) -> h5py.Dataset:
        handle = self._handle()
        if video_id not in handle:
            raise KeyError(f"video {video_id!r} is not in the frame store {self.path}")
        return handle[video_id]

    def num_frames(self, video_id: str) -> int:
        """Number of stored frames of ``video_id``."""
        return int(self._dataset(video_id).shape[0])

    def read(self, video_id: str, indices: Iterable[int]) -> Tensor:
        """Decode the frames at ``indices`` (repeats allowed): ``(T, 3, H, W)`` uint8."""
        dataset = self._dataset(video_id)
        encoded = [element_bytes(dataset[i]) for i in indices]
        return decode_frames(encoded, where=f"of video {video_id!r} in {self.path}")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def write_frame_store(
    path: str | Path,
    videos: Mapping[str, Sequence[bytes]] | Iterable[tuple[str, Sequence[bytes]]],
    *,
    storage: str = "vlen",
) -> int:
    """Write encoded frames per video id as an HDF5 frame store, one video at a time.

    Args:
        path: output file (overwritten).
        videos: ``{video_id: [jpeg bytes per frame]}`` or an iterable of such pairs (a
            generator keeps memory flat for the full data set).
        storage: ``"vlen"`` (variable-length uint8 vectors) or ``"bytes"`` (fixed-length
            byte strings); both layouts are found in the wild and both are read back.

    Returns:
        The number of videos written.
    """
    if storage not in ("vlen", "bytes"):
        raise ValueError(f"expected storage 'vlen' or 'bytes', got {storage!r}")
    pairs = videos.items() if isinstance(videos, Mapping) else videos
    count = 0
    with h5py.File(path, "w") as fh:
        for video_id, frames in pairs:
            if storage == "vlen":
                data = np.empty(len(frames), dtype=h5py.vlen_dtype(np.uint8))
                for k, frame in enumerate(frames):
                    data[k] = np.frombuffer(frame, dtype=np.uint8)
                fh.create_dataset(video_id, data=data)
            else:
                fh.create_dataset(video_id, data=np.array(list(frames), dtype=np.bytes_))
            count += 1
    return count


def encode_frames(frames: Tensor, quality: int = 90) -> list[bytes]:
    """JPEG-encode ``(T, 3, H, W)`` uint8 frames."""
    out = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame.permute(1, 2, 0).numpy()).save(buffer, format="JPEG", quality=quality)
        out.append(buffer.getvalue())
    return out


def convert_webm_to_hdf5(
    root: str | Path, out: str | Path, *, ids: Iterable[str] | None = None, quality: int = 90
) -> int:
    """Decode ``ROOT/20bn-something-something-v2/<id>.webm`` and write an RGB frame store.

    Videos are decoded and written one at a time, with a progress bar.

    Args:
        root: data set root.
        out: output HDF5 path (e.g. ``ROOT/dataset.hdf5``).
        ids: video ids to convert (default: every ``.webm`` in the video folder).
        quality: JPEG quality.

    Returns:
        The number of videos written.
    """
    video_dir = Path(root) / VIDEO_DIR
    if not video_dir.is_dir():
        raise FileNotFoundError(f"expected the video folder {video_dir}; not found")
    id_list = sorted(p.stem for p in video_dir.glob("*.webm")) if ids is None else list(ids)
    pairs = (
        (i, encode_frames(read_video_frames(video_dir / f"{i}.webm"), quality))
        for i in tqdm(id_list, desc="webm -> hdf5", unit="video")
    )
    return write_frame_store(out, pairs)


# --------------------------------------------------------------------------- transforms
class ClipTransform:
    """Spatial transform shared by the streams of one sample (see the module docstring).

    Args:
        size: output side S (224 as released).
        train: random scale/crop and RGB colour jitter (True) or resize + centre crop.
        scale: range of the training short-side factor.
        jitter: brightness, contrast and saturation strength of the RGB colour jitter.
    """

    def __init__(
        self,
        size: int = 224,
        *,
        train: bool,
        scale: tuple[float, float] = TRAIN_SCALE,
        jitter: float = 0.4,
    ) -> None:
        self.size = size
        self.train = train
        self.scale = scale
        self.jitter = v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter)

    def __call__(self, streams: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """``{name: (T, 3, H, W) uint8}`` -> ``{name: (3, T, S, S) float32}`` (normalised)."""
        short = self.size
        if self.train:
            low, high = self.scale
            short = round(self.size * (low + (high - low) * torch.rand(()).item()))
        resized = {k: TF.resize(v, short, antialias=True) for k, v in streams.items()}
        shapes = {tuple(v.shape[-2:]) for v in resized.values()}
        if len(shapes) != 1:
            raise ValueError(f"expected streams of one frame size, got {sorted(shapes)}")
        height, width = shapes.pop()
        if self.train:
            top = int(torch.randint(0, height - self.size + 1, ()).item())
            left = int(torch.randint(0, width - self.size + 1, ()).item())
        else:
            top, left = (height - self.size) // 2, (width - self.size) // 2
        out = {}
        for name, frames in resized.items():
            clip = frames[..., top : top + self.size, left : left + self.size]
            if self.train and name == "rgb":
                clip = self.jitter(clip)  # one draw of jitter parameters for the whole clip
            clip = TF.normalize(clip.float() / 255.0, list(IMAGENET_MEAN), list(IMAGENET_STD))
            out[name] = clip.permute(1, 0, 2, 3).contiguous()  # (3, T, S, S)
        return out


# --------------------------------------------------------------------------- data set
class SomethingSomething(Dataset[dict[str, Tensor]]):
    """Something-Something v2 clips as dict samples.

    Args:
        root: data set root (annotations, videos and/or HDF5 stores).
        split: ``"train"`` or ``"validation"``.
        layout: ``"hdf5"`` or ``"webm"`` (see the module docstring).
        streams: names out of ``("rgb", "flow")``.
        num_frames: frames per clip (16 as released).
        size: crop side (224 as released; smaller for smoke runs).
        train: training sampling/transforms; default: ``split == "train"``.
        ids: optional subset of video ids (in the split's order).

    Raises:
        FileNotFoundError: an annotation file, the video folder or a store is missing.
        ValueError: unknown layout/stream/split names.
    """

    def __init__(
        self,
        root: str | Path,
        split: Split = "train",
        *,
        layout: Layout = "hdf5",
        streams: Sequence[str] = STREAMS,
        num_frames: int = 16,
        size: int = 224,
        train: bool | None = None,
        ids: Iterable[str] | None = None,
    ) -> None:
        if split not in SPLIT_FILES:
            raise ValueError(f"expected split 'train' or 'validation', got {split!r}")
        if layout not in ("hdf5", "webm"):
            raise ValueError(f"expected layout 'hdf5' or 'webm', got {layout!r}")
        unknown = [s for s in streams if s not in STREAMS]
        if unknown or not streams or len(set(streams)) != len(streams):
            raise ValueError(f"expected distinct streams out of {STREAMS}, got {list(streams)}")
        self.root = Path(root)
        self.layout = layout
        self.streams = tuple(s for s in STREAMS if s in streams)
        self.num_frames = num_frames
        self.train = split == "train" if train is None else train
        self.labels = read_labels(find_annotation(self.root, LABELS_FILE))
        self.classes = sorted(self.labels, key=self.labels.__getitem__)
        items = read_split(find_annotation(self.root, SPLIT_FILES[split]), self.labels)
        if ids is not None:
            wanted = set(ids)
            items = [it for it in items if it[0] in wanted]
        self.items = items
        self.transform = ClipTransform(size, train=self.train)
        self.rgb_store = (
            FrameStore(self.root / RGB_STORE)
            if "rgb" in self.streams and layout == "hdf5"
            else None
        )
        self.flow_store = FrameStore(self.root / FLOW_STORE) if "flow" in self.streams else None
        if layout == "webm" and "rgb" in self.streams and not (self.root / VIDEO_DIR).is_dir():
            raise FileNotFoundError(f"expected the video folder {self.root / VIDEO_DIR}; not found")

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def __len__(self) -> int:
        return len(self.items)

    def _rgb_frames(self, video_id: str, indices: list[int] | None) -> Tensor:
        if self.rgb_store is not None:
            if indices is None:
                indices = segment_indices(
                    self.rgb_store.num_frames(video_id), self.num_frames, train=self.train
                )
            return self.rgb_store.read(video_id, indices)
        frames = read_video_frames(self.root / VIDEO_DIR / f"{video_id}.webm")
        if indices is None:
            indices = segment_indices(len(frames), self.num_frames, train=self.train)
        if max(indices) >= len(frames):
            raise ValueError(
                f"video {video_id!r} has {len(frames)} frames, fewer than its flow needs "
                f"(index {max(indices)})"
            )
        return frames[indices]

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        video_id, label = self.items[index]
        streams: dict[str, Tensor] = {}
        indices: list[int] | None = None
        if self.flow_store is not None:
            n_flow = self.flow_store.num_frames(video_id)
            indices = segment_indices(n_flow, self.num_frames, train=self.train)
            streams["flow"] = self.flow_store.read(video_id, indices)
        if "rgb" in self.streams:
            streams["rgb"] = self._rgb_frames(video_id, indices)
        sample = self.transform({s: streams[s] for s in self.streams})
        sample["label"] = torch.tensor(label, dtype=torch.long)
        return sample


def main(argv: list[str] | None = None) -> None:
    """``python -m examples.sthsth.data to-hdf5 ROOT [--out PATH]``: build the RGB store."""
    parser = argparse.ArgumentParser(description="Something-Something v2 data tools")
    sub = parser.add_subparsers(dest="command", required=True)
    conv = sub.add_parser("to-hdf5", help="decode the .webm videos into dataset.hdf5")
    conv.add_argument("root", type=Path)
    conv.add_argument("--out", type=Path, default=None)
    conv.add_argument("--quality", type=int, default=90)
    args = parser.parse_args(argv)
    out = args.out or args.root / RGB_STORE
    n = convert_webm_to_hdf5(args.root, out, quality=args.quality)
    print(f"wrote {n} videos to {out}")


if __name__ == "__main__":
    main()
