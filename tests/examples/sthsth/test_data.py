"""Something-Something v2 loading on fixtures in both real layouts."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from examples.sthsth import data as sd
from examples.sthsth.data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ClipTransform,
    FrameStore,
    SomethingSomething,
    convert_webm_to_hdf5,
    element_bytes,
    read_labels,
    read_split,
    read_video_frames,
    segment_indices,
    template_to_class_name,
)
from examples.sthsth.make_fixture import CLASSES, VIDEOS_PER_CLASS, make_fixture


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fixture(tmp_path_factory.mktemp("sthsth"), layout="both", seed=0)


# ----------------------------------------------------------------------------- annotations
def test_template_brackets_removed() -> None:
    assert template_to_class_name("Pushing [something] from left to right") == (
        "Pushing something from left to right"
    )
    assert template_to_class_name("Moving [part] of [something]") == "Moving part of something"


def test_labels_and_splits(root: Path) -> None:
    labels = read_labels(root / sd.LABELS_FILE)
    assert labels == {name: k for k, (name, _, _) in enumerate(CLASSES)}
    raw = json.loads((root / sd.SPLIT_FILES["train"]).read_text())
    assert all("[" in entry["template"] for entry in raw)  # the real files keep the brackets
    items = read_split(root / sd.SPLIT_FILES["train"], labels)
    assert len(items) == VIDEOS_PER_CLASS["train"] * len(CLASSES)
    for (video_id, cls), entry in zip(items, raw, strict=True):
        assert video_id == entry["id"]
        assert CLASSES[cls][1] == entry["template"]


def test_annotations_found_in_labels_folder(tmp_path: Path) -> None:
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / sd.LABELS_FILE).write_text('{"Doing something": "0"}')
    assert sd.find_annotation(tmp_path, sd.LABELS_FILE) == tmp_path / "labels" / sd.LABELS_FILE
    with pytest.raises(FileNotFoundError, match="something-something-v2-train"):
        sd.find_annotation(tmp_path, sd.SPLIT_FILES["train"])


def test_annotation_errors(tmp_path: Path) -> None:
    labels_path = tmp_path / "labels.json"
    labels_path.write_text('{"A": "0", "B": "2"}')
    with pytest.raises(ValueError, match=r"0\.\.1"):
        read_labels(labels_path)
    split_path = tmp_path / "train.json"
    split_path.write_text(json.dumps([{"id": "1", "template": "Doing [something] else"}]))
    with pytest.raises(ValueError, match="'Doing something else', not in the labels file"):
        read_split(split_path, {"Doing something": 0})
    split_path.write_text("[{")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_split(split_path, {})


# ----------------------------------------------------------------------------- sampling
def test_segment_midpoints_by_hand() -> None:
    # n = 10, S = 4: segments of 2.5 frames, midpoints 1.25, 3.75, 6.25, 8.75
    assert segment_indices(10, 4, train=False) == [1, 3, 6, 8]
    # fewer frames than segments: midpoints 0.3, 0.9, 1.5, 2.1, 2.7 -> indices repeat
    assert segment_indices(3, 5, train=False) == [0, 0, 1, 2, 2]


def test_segment_training_draws_stay_in_their_segments() -> None:
    g = torch.Generator().manual_seed(0)
    seen: set[tuple[int, ...]] = set()
    for _ in range(50):
        idx = segment_indices(37, 16, train=True, generator=g)
        length = 37 / 16
        for s, i in enumerate(idx):
            assert np.floor(s * length) <= i < np.ceil((s + 1) * length)
        seen.add(tuple(idx))
    assert len(seen) > 1
    a = segment_indices(37, 16, train=True, generator=torch.Generator().manual_seed(3))
    b = segment_indices(37, 16, train=True, generator=torch.Generator().manual_seed(3))
    assert a == b


def test_segment_errors() -> None:
    with pytest.raises(ValueError, match="at least one frame"):
        segment_indices(0, 16, train=False)


# ----------------------------------------------------------------------------- stores
def test_fixture_stores_have_real_layout(root: Path) -> None:
    with h5py.File(root / sd.RGB_STORE) as rgb, h5py.File(root / sd.FLOW_STORE) as flow:
        assert set(rgb) == set(flow)
        for video_id in rgb:
            assert flow[video_id].shape[0] == rgb[video_id].shape[0] - 1
            first = element_bytes(rgb[video_id][0])
            assert first[:2] == b"\xff\xd8"  # JPEG start-of-image
            assert element_bytes(flow[video_id][0])[:2] == b"\xff\xd8"
        assert rgb[video_id].dtype == object  # variable-length uint8
        assert flow[video_id].dtype.kind == "S"  # fixed-length bytes


def test_flow_decodes_to_three_channels(root: Path) -> None:
    store = FrameStore(root / sd.FLOW_STORE)
    frames = store.read("1000", [0, 0, 2])
    assert frames.shape == (3, 3, 48, 64)
    assert frames.dtype == torch.uint8
    torch.testing.assert_close(frames[0], frames[1])
    with pytest.raises(KeyError, match="'nope' is not in the frame store"):
        store.read("nope", [0])


def test_element_bytes_kinds() -> None:
    payload = b"\xff\xd8abc\xff\xd9"
    assert element_bytes(np.frombuffer(payload, dtype=np.uint8)) == payload
    assert element_bytes(np.bytes_(payload)) == payload
    assert element_bytes(np.void(payload)) == payload
    with pytest.raises(TypeError, match="uint8 vector or bytes"):
        element_bytes(np.zeros((2, 2), dtype=np.float32))


def test_webm_frames_match_the_stored_frames(root: Path) -> None:
    store = FrameStore(root / sd.RGB_STORE)
    for video_id in ("1000", "1009"):
        webm = read_video_frames(root / sd.VIDEO_DIR / f"{video_id}.webm")
        stored = store.read(video_id, range(store.num_frames(video_id)))
        assert webm.shape == stored.shape
        # two lossy codecs on noisy frames: close, not equal
        assert (webm.float() - stored.float()).abs().mean() < 20


def test_missing_and_corrupt_video(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"x\.webm"):
        read_video_frames(tmp_path / "x.webm")
    bad = tmp_path / "bad.webm"
    bad.write_bytes(b"\x1a\x45\xdf\xa3 definitely not a video")
    with pytest.raises(ValueError, match=r"bad\.webm"):
        read_video_frames(bad)


def test_convert_webm_to_hdf5(root: Path, tmp_path: Path) -> None:
    out = tmp_path / "dataset.hdf5"
    assert convert_webm_to_hdf5(root, out, ids=["1000", "1001"]) == 2
    converted = FrameStore(out)
    original = FrameStore(root / sd.RGB_STORE)
    assert converted.num_frames("1000") == original.num_frames("1000")
    assert "1002" not in converted


# ----------------------------------------------------------------------------- transforms
def test_eval_transform_centre_crop_and_normalisation() -> None:
    frames = torch.zeros(2, 3, 48, 64, dtype=torch.uint8)
    frames[..., 20:28] = 200  # a vertical band in the middle columns
    out = ClipTransform(32, train=False)({"rgb": frames})["rgb"]
    assert out.shape == (3, 2, 32, 32)
    # short side 48 -> 32 scales by 2/3: width 64 -> 43 (rounded), centre crop starts at 5
    zero = (0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(out[:, 0, 0, 0], zero)
    assert (out[:, 0, 16, 8] > zero).all()  # the band, moved by the centre crop


def test_train_transform_shares_the_crop_between_streams() -> None:
    torch.manual_seed(0)
    frames = torch.randint(0, 256, (3, 3, 48, 64), dtype=torch.uint8)
    transform = ClipTransform(32, train=True, jitter=0.0)
    crops = []
    for _ in range(4):
        out = transform({"rgb": frames, "flow": frames.clone()})
        torch.testing.assert_close(out["rgb"], out["flow"])
        crops.append(out["rgb"])
    assert any(not torch.equal(crops[0], c) for c in crops[1:])


def test_train_jitter_only_on_rgb() -> None:
    torch.manual_seed(1)
    frames = torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8)
    out = ClipTransform(32, train=True, scale=(1.0, 1.0), jitter=0.8)(
        {"rgb": frames, "flow": frames.clone()}
    )
    assert not torch.allclose(out["rgb"], out["flow"])


# ----------------------------------------------------------------------------- data set
@pytest.mark.parametrize("layout", ["hdf5", "webm"])
def test_dataset_samples(root: Path, layout: str) -> None:
    ds = SomethingSomething(root, "validation", layout=layout, num_frames=4, size=32)  # type: ignore[arg-type]
    assert len(ds) == VIDEOS_PER_CLASS["validation"] * len(CLASSES)
    assert ds.num_classes == len(CLASSES)
    batch = next(iter(DataLoader(ds, batch_size=4, shuffle=False)))
    assert batch["rgb"].shape == (4, 3, 4, 32, 32)
    assert batch["flow"].shape == (4, 3, 4, 32, 32)
    assert batch["rgb"].dtype == torch.float32
    assert batch["label"].tolist() == [0, 1, 2, 3]


def test_rgb_indices_come_from_flow_length(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, list[int]]] = []
    original = FrameStore.read

    def recording_read(self: FrameStore, video_id: str, indices: list[int]) -> torch.Tensor:
        calls.append((self.path.name, list(indices)))
        return original(self, video_id, indices)

    monkeypatch.setattr(FrameStore, "read", recording_read)
    ds = SomethingSomething(root, "train", num_frames=16, size=32)
    torch.manual_seed(0)
    ds[0]
    (flow_name, flow_idx), (rgb_name, rgb_idx) = calls
    assert (flow_name, rgb_name) == (sd.FLOW_STORE, sd.RGB_STORE)
    assert rgb_idx == flow_idx
    assert max(flow_idx) < FrameStore(root / sd.FLOW_STORE).num_frames(ds.items[0][0])


def test_rgb_only_webm_and_id_subset(root: Path) -> None:
    ds = SomethingSomething(
        root, "train", layout="webm", streams=["rgb"], num_frames=3, size=32, ids=["1001", "1003"]
    )
    assert [video_id for video_id, _ in ds.items] == ["1001", "1003"]
    assert set(ds[1]) == {"rgb", "label"}


def test_dataset_errors(root: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="streams out of"):
        SomethingSomething(root, "train", streams=["depth"])
    with pytest.raises(ValueError, match="split 'train' or 'validation'"):
        SomethingSomething(root, "test")  # type: ignore[arg-type]
    for name in (sd.LABELS_FILE, *sd.SPLIT_FILES.values()):
        (tmp_path / name).write_text((root / name).read_text())
    with pytest.raises(FileNotFoundError, match=r"flow_dataset\.hdf5"):
        SomethingSomething(tmp_path, "train", layout="webm")
    with pytest.raises(FileNotFoundError, match="20bn-something-something-v2"):
        SomethingSomething(tmp_path, "train", layout="webm", streams=["rgb"])


def test_corrupt_stored_frame_names_the_video(tmp_path: Path) -> None:
    sd.write_frame_store(tmp_path / "s.hdf5", {"42": [b"\xff\xd8 truncated"]})
    with pytest.raises(ValueError, match="frame 0 of video '42'"):
        FrameStore(tmp_path / "s.hdf5").read("42", [0])
