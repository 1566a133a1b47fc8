"""Training/evaluation data: three on-disk formats -> one record type -> augmented tensors.

Formats (details and field units in docs/training.md):

1. **FreiHAND** (Zimmermann et al. 2019, public release layout): ``training/rgb/%08d.jpg`` and
   ``training_K.json`` (N x 3 x 3 intrinsics), ``training_xyz.json`` (N x 21 x 3 joints, metres, camera
   frame), ``training_mano.json`` (N x 1 x 61: 48 pose axis-angle = 3 global + 45 fingers, 10 shape,
   3 translation), optional ``training_verts.json`` (N x 778 x 3). The training folder holds 4 colour
   versions of each of the N = 32560 samples: image i uses annotation i mod N. FreiHAND's joint order is
   wrist, then thumb, index, middle, ring, pinky from the palm to the tip: the same as the OpenPose hand
   order this project uses (constants.JOINT_NAMES), so no re-ordering is needed. All hands are right
   hands. There are no boxes: the box is the tight box of the projected joints (uv = K xyz).
2. **WiLoR/HaMeR webdataset tar shards**: facts from HaMeR's ``datasets/image_dataset.py``
   (``load_tars_as_webdataset``, ``process_webdataset_tar_item``): each sample is a group of tar members
   sharing a key; ``<key>.jpg`` (or jpeg/png) is the image, ``<key>.data.pyd`` a pickled LIST of per-hand
   dicts with ``keypoints_2d`` (21 x 3 px + conf), ``keypoints_3d`` (21 x 4 metres + conf), ``center``
   (2,), ``scale`` (2,) = box size / 200 (already including the rescale), ``hand_pose`` (48,) axis-angle
   (global + 45), ``betas`` (10,), ``right`` (1 = right hand), ``has_hand_pose``, ``has_betas`` and
   ``extra_info``; an optional ``<key>.detection.npz`` holds masks (unused here). Left hands are stored in
   their own convention and mirrored at crop time. The pickle is read with the restricted unpickler of
   core/files/safe_pickle.py (allowlist: numpy arrays and plain containers). Read with the standard library's
   tarfile (the ``webdataset`` package is not needed).
3. **JSONL index** (our format for a team's own data): one JSON object per line (or a JSON list), see
   :func:`read_jsonl`.
"""

from __future__ import annotations

import codecs
import glob
import io
import json
import logging
import math
import os
import pickle
import tarfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from wilor_ros.core.files.safe_pickle import NUMPY_GLOBALS, Allowlist, RestrictedUnpickler, numpy_dtype_class
from wilor_ros.core.hand.constants import NUM_BETAS, NUM_HAND_JOINTS, NUM_JOINTS, NUM_VERTICES
from wilor_ros.core.image.preprocessing import crop_geometry
from wilor_ros.core.types import Side
from wilor_ros.tools.train.augment import AugmentParams, make_training_example, sample_augment
from wilor_ros.tools.train.config import AugmentConfig, DatasetEntry
from wilor_ros.tools.train.validation import (
    BAD_SHAPE,
    CORRUPT_IMAGE,
    INVALID,
    MISSING_IMAGE,
    OUT_OF_RANGE,
    BadSample,
    BadSampleError,
    DataReport,
    SampleError,
    SampleRef,
    require_finite,
    require_shape,
    validate_box_in_image,
    validate_record,
)

LOG = logging.getLogger(__name__)

MANO_POSE_DIM = 3 * (NUM_HAND_JOINTS + 1)  # 48
FREIHAND_MANO_DIM = MANO_POSE_DIM + NUM_BETAS + 3  # 61
SCALE_UNIT = 200.0  # HaMeR's box "scale" convention: size / 200
IMAGE_EXTENSIONS = ("jpg", "jpeg", "png")
MAX_LOGGED_BAD = 10  # warnings per dataset while reading; the summary lists them all


@dataclass
class HandRecord:
    """One annotated hand, before cropping.

    image: a file path, or (tar path, byte offset, byte size) of an encoded image inside a tar.
    center (2,) and side: crop centre and square side in source pixels (rescale already applied).
    box: (4,) XYXY tight hand box (for 2D PCK; derived from the crop when the source has none).
    keypoints_2d: 21 x 3 (pixels, confidence; 0 = unannotated). keypoints_3d: 21 x 4 (metres, camera
    frame, confidence). mano_pose: (48,) axis-angle (global orient + 15 joints, flat-hand convention, in
    the hand's own side convention); betas (10,); has_pose/has_betas: 0 or 1. vertices: 778 x 3 metres
    (camera frame) when the source provides them (evaluation). dataset/index/file: where the sample
    comes from (validation.SampleRef), set by the reader.
    """

    image: str | tuple[str, int, int]
    center: np.ndarray
    side_px: float
    box: np.ndarray
    is_right: bool
    keypoints_2d: np.ndarray
    keypoints_3d: np.ndarray
    mano_pose: np.ndarray = field(default_factory=lambda: np.zeros(MANO_POSE_DIM, np.float32))
    betas: np.ndarray = field(default_factory=lambda: np.zeros(NUM_BETAS, np.float32))
    has_pose: float = 0.0
    has_betas: float = 0.0
    vertices: np.ndarray | None = None
    dataset: str = ""
    index: int = -1
    file: str = ""

    @property
    def has_3d(self) -> bool:
        return bool(np.any(self.keypoints_3d[:, 3] > 0))

    @property
    def ref(self) -> SampleRef:
        return SampleRef(self.dataset, self.index, self.file)


def load_image(image: str | tuple[str, int, int]) -> np.ndarray:
    """H x W x 3 RGB uint8 from a path or a (tar, offset, size) reference.

    Raises SampleError (missing-image / corrupt-image) when the file is gone or does not decode.
    """
    if isinstance(image, tuple):
        tar_path, offset, size = image
        with open(tar_path, "rb") as handle:
            handle.seek(offset)
            data = np.frombuffer(handle.read(size), dtype=np.uint8)
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
        where = f"{tar_path}@{offset}"
    else:
        if not os.path.isfile(image):
            raise SampleError(MISSING_IMAGE, f"image file not found: {image}")
        bgr = cv2.imread(image, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        where = image
    if bgr is None or bgr.size == 0:
        raise SampleError(CORRUPT_IMAGE, f"cannot decode image {where}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _box_to_crop(box: np.ndarray, is_right: bool, rescale: float) -> tuple[np.ndarray, float]:
    """Official centre and square side (3:4 widening, SPEC 2.1) of an XYXY box."""
    geometry = crop_geometry(np.asarray(box, np.float32), is_right, rescale)
    return geometry.box_center.astype(np.float64), float(geometry.box_size)


def _keypoint_box(points: np.ndarray) -> np.ndarray:
    """XYXY box of N x 2 points (N >= 1)."""
    return np.array([*points.min(axis=0), *points.max(axis=0)], dtype=np.float32)


# ------------------------------------------------------------------------------------------ per sample
Item = HandRecord | BadSample  # what the readers return per sample


def _guarded(dataset: str, index: int, file: str, build: Callable[..., HandRecord], *args: Any) -> Item:
    """``build(*args)`` validated (validation.validate_record), or the BadSample saying why not: one
    broken sample never stops the reading of the others."""
    try:
        record = build(*args)
        record.dataset, record.index, record.file = dataset, index, file
        validate_record(record)
        return record
    except SampleError as exc:
        return BadSample(dataset, index, file, exc.reason, exc.detail)
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        return BadSample(dataset, index, file, INVALID, f"{type(exc).__name__}: {exc}")


# ------------------------------------------------------------------------------------------ FreiHAND
def read_freihand(
    root: str | os.PathLike[str],
    split: str = "training",
    rescale: float = 2.5,
    hands_mean: np.ndarray | None = None,
    label: str = "freihand",
) -> list[Item]:
    """Records of a FreiHAND folder (module docstring). ``hands_mean`` (45,): when given, added to the 45
    finger values to turn FreiHAND's mean-relative pose into the flat-hand convention WiLoR predicts.

    Image i is ``<split>/rgb/%08d.jpg`` (its number, not its position in the folder, selects annotation
    i mod N); a number missing from the sequence is reported as a missing image."""
    root = Path(root)
    k_path, xyz_path = root / f"{split}_K.json", root / f"{split}_xyz.json"
    for path in (k_path, xyz_path):
        if not path.is_file():
            raise FileNotFoundError(f"FreiHAND file missing: {path} (expected the public FreiHAND layout)")
    intrinsics = np.asarray(json.loads(k_path.read_text()), dtype=np.float64)
    xyz = np.asarray(json.loads(xyz_path.read_text()), dtype=np.float64)
    if intrinsics.ndim != 3 or intrinsics.shape[1:] != (3, 3) or xyz.shape[1:] != (NUM_JOINTS, 3):
        raise ValueError(f"{root}: expected K N x 3 x 3, xyz N x 21 x 3; got {intrinsics.shape}, {xyz.shape}")
    count = len(xyz)
    mano_path = root / f"{split}_mano.json"
    mano = None
    if mano_path.is_file():
        mano = np.asarray(json.loads(mano_path.read_text()), dtype=np.float64).reshape(count, -1)
        if mano.shape[1] != FREIHAND_MANO_DIM:
            raise ValueError(f"{mano_path}: expected 61 values per sample, got {mano.shape[1]}")
    verts_path = root / f"{split}_verts.json"
    verts = np.asarray(json.loads(verts_path.read_text()), np.float32) if verts_path.is_file() else None
    image_dir = root / split / "rgb"
    images: dict[int, Path] = {}
    for path in image_dir.glob("*"):
        if path.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS:
            if not path.stem.isdigit():
                raise ValueError(f"{path}: FreiHAND images are named by number (%08d.jpg)")
            images[int(path.stem)] = path
    if not images:
        raise FileNotFoundError(f"no images in {image_dir}")
    # the folder holds whole versions of the N annotations (training: 4, evaluation: 1)
    expected = math.ceil((max(images) + 1) / count) * count
    items = []
    for image_index in range(expected):
        path = images.get(image_index, image_dir / f"{image_index:08d}.jpg")
        items.append(
            _guarded(
                label, image_index, str(path), _freihand_record, path if image_index in images else None,
                image_index % count, intrinsics, xyz, mano, verts, hands_mean, rescale,
            )
        )  # fmt: skip
    return items


def _freihand_record(
    image_path: Path | None,
    i: int,
    intrinsics: np.ndarray,
    xyz: np.ndarray,
    mano: np.ndarray | None,
    verts: np.ndarray | None,
    hands_mean: np.ndarray | None,
    rescale: float,
) -> HandRecord:
    """Annotation ``i`` with its image (None: missing from the folder)."""
    if image_path is None:
        raise SampleError(MISSING_IMAGE, "image missing from the numbered sequence of the rgb folder")
    k = require_finite("intrinsics (K.json)", intrinsics[i])
    joints = require_finite("keypoints_3d (xyz.json)", xyz[i])
    if np.any(joints[:, 2] <= 0):
        raise SampleError(
            OUT_OF_RANGE, "keypoints_3d (xyz.json): a joint has depth z <= 0 (behind the camera)"
        )
    uvw = joints @ k.T
    uv = require_finite("projected keypoints (K . xyz)", uvw[:, :2] / uvw[:, 2:3])
    box = _keypoint_box(uv)
    center, side = _box_to_crop(box, True, rescale)
    pose = np.zeros(MANO_POSE_DIM)
    betas = np.zeros(NUM_BETAS)
    if mano is not None:
        pose = require_finite("mano pose (mano.json)", mano[i, :MANO_POSE_DIM]).copy()
        betas = require_finite("betas (mano.json)", mano[i, MANO_POSE_DIM : MANO_POSE_DIM + NUM_BETAS])
        if hands_mean is not None:
            pose[3:] += np.asarray(hands_mean, np.float64).reshape(-1)
    return HandRecord(
        image=str(image_path),
        center=center,
        side_px=side,
        box=box,
        is_right=True,
        keypoints_2d=np.concatenate([uv, np.ones((NUM_JOINTS, 1))], 1).astype(np.float32),
        keypoints_3d=np.concatenate([joints, np.ones((NUM_JOINTS, 1))], 1).astype(np.float32),
        mano_pose=pose.astype(np.float32),
        betas=np.asarray(betas, np.float32),
        has_pose=float(mano is not None),
        has_betas=float(mano is not None),
        vertices=None if verts is None else verts[i],
    )


# ------------------------------------------------------------------------------------------ tar shards
def _pyd_refusal(module: str, name: str) -> str:
    return f"data.pyd references {module}.{name}, which is not plain data; refused"


class _DataUnpickler(RestrictedUnpickler):
    """Builds only numpy arrays/scalars and plain containers (data.pyd holds nothing else)."""

    allowlist = Allowlist(
        globals={**NUMPY_GLOBALS, ("_codecs", "encode"): codecs.encode},
        refusal=_pyd_refusal,
        rule=numpy_dtype_class,
    )


def _load_pyd(data: bytes) -> Any:
    return _DataUnpickler(io.BytesIO(data)).load()


def expand_shards(path: str) -> list[str]:
    """A .tar file, a folder of .tar files or a glob -> sorted shard paths."""
    target = Path(path)
    if target.is_dir():
        shards = sorted(str(p) for p in target.glob("*.tar"))
    elif any(ch in path for ch in "*?["):
        shards = sorted(glob.glob(path))
    else:
        shards = [path] if target.is_file() else []
    if not shards:
        raise FileNotFoundError(f"no webdataset .tar shards at {path}")
    return shards


def _split_member(name: str) -> tuple[str, str]:
    """webdataset convention: key = path up to the first dot of the base name, extension = the rest."""
    folder, base = os.path.split(name)
    if "." not in base:
        return name, ""
    stem, ext = base.split(".", 1)
    return os.path.join(folder, stem), ext.lower()


def read_webdataset(path: str, label: str = "webdataset") -> list[Item]:
    """Records of every hand in the shards at ``path`` (module docstring). Images are read lazily.

    Every hand is one sample; a key whose data.pyd or image is missing or unreadable counts as one bad
    sample named ``<shard>:<member>``."""
    items: list[Item] = []
    for shard in expand_shards(path):
        groups: dict[str, dict[str, tarfile.TarInfo]] = {}
        with tarfile.open(shard, "r:") as tar:
            for member in tar:
                if member.isfile():
                    key, ext = _split_member(member.name)
                    groups.setdefault(key, {})[ext] = member
            for key, members in groups.items():
                image_member = next((members[e] for e in IMAGE_EXTENSIONS if e in members), None)
                file = f"{shard}:{(image_member or next(iter(members.values()))).name}"
                if image_member is None or "data.pyd" not in members:
                    missing = "image (.jpg/.jpeg/.png)" if image_member is None else "data.pyd"
                    reason = MISSING_IMAGE if image_member is None else INVALID
                    items.append(BadSample(label, len(items), file, reason, f"sample {key} has no {missing}"))
                    continue
                try:
                    extracted = tar.extractfile(members["data.pyd"])
                    assert extracted is not None  # a regular file member
                    hands = _load_pyd(extracted.read())
                except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
                    detail = f"{key}.data.pyd is unreadable ({type(exc).__name__}: {exc})"
                    items.append(BadSample(label, len(items), file, INVALID, detail))
                    continue
                if isinstance(hands, dict):
                    hands = [hands]
                ref = (shard, image_member.offset_data, image_member.size)
                for hand in hands:
                    items.append(_guarded(label, len(items), file, _record_from_pyd, hand, ref))
    return items


def _record_from_pyd(hand: dict[str, Any], image_ref: tuple[str, int, int]) -> HandRecord:
    center = require_finite("center", hand["center"]).reshape(2)
    scale = require_finite("scale", hand["scale"]).reshape(-1)
    size_wh = np.resize(scale, 2) * SCALE_UNIT
    if not np.all(size_wh > 0):
        raise SampleError(OUT_OF_RANGE, f"scale must be positive, got {scale.tolist()}")
    is_right = bool(float(np.asarray(hand.get("right", 1.0))) > 0.5)
    box = np.array([*(center - size_wh / 2), *(center + size_wh / 2)], np.float32)
    # the stored scale already includes the rescale factor: widen to 3:4 and square only (rescale 1)
    crop_center, side = _box_to_crop(box, is_right, 1.0)
    kp2d = np.asarray(hand.get("keypoints_2d", np.zeros((NUM_JOINTS, 3))), np.float32).reshape(NUM_JOINTS, 3)
    kp3d = np.asarray(hand.get("keypoints_3d", np.zeros((NUM_JOINTS, 4))), np.float32).reshape(NUM_JOINTS, 4)
    require_finite("keypoints_2d", kp2d)
    visible = kp2d[kp2d[:, 2] > 0, :2]
    return HandRecord(
        image=image_ref,
        center=crop_center,
        side_px=side,
        box=_keypoint_box(visible) if len(visible) >= 2 else box,
        is_right=is_right,
        keypoints_2d=kp2d,
        keypoints_3d=kp3d,
        mano_pose=np.asarray(hand.get("hand_pose", np.zeros(MANO_POSE_DIM)), np.float32).reshape(-1),
        betas=np.asarray(hand.get("betas", np.zeros(NUM_BETAS)), np.float32).reshape(NUM_BETAS),
        has_pose=float(np.asarray(hand.get("has_hand_pose", 0.0))),
        has_betas=float(np.asarray(hand.get("has_betas", 0.0))),
    )


# ------------------------------------------------------------------------------------------ JSONL
def read_jsonl(path: str | os.PathLike[str], rescale: float = 2.5, label: str = "jsonl") -> list[Item]:
    """Our index format: a .jsonl file (one object per line) or a .json list of objects::

        {"image": "frames/000123.jpg",          # relative to the index file's folder, or absolute
         "box": [x1, y1, x2, y2],               # pixels, tight around the hand (a detector box is fine)
         "side": "right",                       # or "left" (the person's anatomical side)
         "keypoints_2d": [[u, v, conf], ...],   # 21 OpenPose-order joints, pixels; conf 0 = unlabelled
         "keypoints_3d": [[x, y, z], ...],      # optional: 21 x 3 (or x 4 with conf), metres, camera frame
         "mano": {"global_orient": [3], "hand_pose": [45], "betas": [10]},   # optional, axis-angle,
                                                # flat-hand convention, the hand's own side's MANO
         "vertices": [[x, y, z], ...]}          # optional: 778 x 3 metres (evaluation only)

    Left-hand labels are given as observed (unmirrored); the loader mirrors them with the crop. Sample i
    is the i-th object; a line that is not JSON is a bad sample named ``<index file>:<line>``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset index not found: {path}")
    text = path.read_text()
    if path.suffix == ".json":
        entries = json.loads(text)
        if not isinstance(entries, list):
            raise ValueError(f"{path}: a .json index must hold a list of samples")
        numbered = [(f"{path}#{i}", entry) for i, entry in enumerate(entries)]
    else:
        numbered = []
        for line_no, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    numbered.append((f"{path}:{line_no}", json.loads(line)))
                except json.JSONDecodeError as exc:
                    numbered.append((f"{path}:{line_no}", exc))
    items: list[Item] = []
    for index, (where, entry) in enumerate(numbered):
        if isinstance(entry, Exception):
            items.append(BadSample(label, index, where, INVALID, f"not a JSON object: {entry}"))
            continue
        file = where
        if isinstance(entry, dict) and isinstance(entry.get("image"), str):
            file = str(_resolve(entry["image"], path.parent))
        items.append(_guarded(label, index, file, _record_from_json, entry, path.parent, rescale))
    return items


def _resolve(image: str, base: Path) -> Path:
    return Path(image) if Path(image).is_absolute() else base / image


def _keypoints_with_confidence(entry: dict[str, Any], key: str, dims: int) -> np.ndarray:
    """``entry[key]`` (21 x dims, or 21 x (dims + 1) with a confidence column) as 21 x (dims + 1)
    float32; confidence 1 where the entry has none, all zeros (unlabelled) when the key is absent."""
    out = np.zeros((NUM_JOINTS, dims + 1), np.float32)
    if entry.get(key) is not None:
        raw = np.asarray(entry[key], np.float32)
        if raw.shape not in ((NUM_JOINTS, dims), (NUM_JOINTS, dims + 1)):
            raise SampleError(BAD_SHAPE, f"{key} must be 21 x {dims} or 21 x {dims + 1}, got {raw.shape}")
        out[:, :dims] = raw[:, :dims]
        out[:, dims] = raw[:, dims] if raw.shape[1] == dims + 1 else 1.0
    return out


def _record_from_json(entry: dict[str, Any], base: Path, rescale: float) -> HandRecord:
    for key in ("image", "box", "side"):
        if key not in entry:
            raise ValueError(f"missing required field {key!r}")
    box = require_finite("box", require_shape("box", np.asarray(entry["box"], np.float64).reshape(-1), (4,)))
    if box[2] <= box[0] or box[3] <= box[1]:
        raise SampleError(OUT_OF_RANGE, f"box must be [x1, y1, x2, y2], x2 > x1, y2 > y1; got {entry['box']}")
    box = box.astype(np.float32)
    is_right = Side.parse(entry["side"]) == Side.RIGHT
    kp2d = _keypoints_with_confidence(entry, "keypoints_2d", 2)
    kp3d = _keypoints_with_confidence(entry, "keypoints_3d", 3)
    pose, has_pose = np.zeros(MANO_POSE_DIM, np.float32), 0.0
    betas, has_betas = np.zeros(NUM_BETAS, np.float32), 0.0
    mano = entry.get("mano")
    if mano:
        orient = np.asarray(mano.get("global_orient", []), np.float32).reshape(-1)
        fingers = np.asarray(mano.get("hand_pose", []), np.float32).reshape(-1)
        if orient.size == 3 and fingers.size == 3 * NUM_HAND_JOINTS:
            pose, has_pose = np.concatenate([orient, fingers]), 1.0
        if mano.get("betas") is not None:
            betas, has_betas = np.asarray(mano["betas"], np.float32).reshape(NUM_BETAS), 1.0
    vertices = None
    if entry.get("vertices") is not None:
        vertices = np.asarray(entry["vertices"], np.float32).reshape(NUM_VERTICES, 3)
    center, side = _box_to_crop(box, is_right, float(entry.get("rescale", rescale)))
    image = _resolve(str(entry["image"]), base)
    if not image.is_file():  # a stat only: decoding waits until the sample is drawn
        raise SampleError(MISSING_IMAGE, f"image file not found: {image}")
    return HandRecord(
        image=str(image),
        center=center,
        side_px=side,
        box=box,
        is_right=is_right,
        keypoints_2d=kp2d,
        keypoints_3d=kp3d,
        mano_pose=pose,
        betas=betas,
        has_pose=has_pose,
        has_betas=has_betas,
        vertices=vertices,
    )


def distinguish_labels(entries: Sequence[DatasetEntry]) -> None:
    """Name unnamed entries whose default labels collide (two ``index.jsonl`` files, say) after their
    folder too, so that reports and tables tell them apart; ValueError if labels still collide."""
    counts = Counter(entry.label for entry in entries)
    for entry in entries:
        if not entry.name and counts[entry.label] > 1:
            path = Path(entry.path)
            entry.name = f"{entry.kind}:{path.parent.name}/{path.name}"
    clashes = sorted(label for label, count in Counter(e.label for e in entries).items() if count > 1)
    if clashes:
        raise ValueError(f"several datasets are labelled {clashes}: give each a distinct `name`")


def read_dataset_items(
    entry: DatasetEntry, rescale: float, hands_mean: np.ndarray | None = None
) -> list[Item]:
    """Every sample of ``entry`` in order, good (HandRecord) or bad (BadSample). Raises
    ValueError/FileNotFoundError only for a dataset that cannot be read at all (missing index file,
    wrong FreiHAND layout ...), naming the offending path."""
    if entry.kind == "freihand":
        return read_freihand(entry.path, entry.split, rescale, hands_mean, entry.label)
    if entry.kind == "webdataset":
        return read_webdataset(entry.path, entry.label)
    return read_jsonl(entry.path, rescale, entry.label)


def read_dataset(
    entry: DatasetEntry,
    rescale: float,
    hands_mean: np.ndarray | None = None,
    report: DataReport | None = None,
    strict: bool = False,
) -> list[HandRecord]:
    """The good records of ``entry``; bad samples go to ``report`` (logged when there is none).

    Raises BadSampleError for the first bad sample when ``strict``, ValueError when no good sample is
    left, and whatever :func:`read_dataset_items` raises.
    """
    items = read_dataset_items(entry, rescale, hands_mean)
    records = [item for item in items if isinstance(item, HandRecord)]
    bad = [item for item in items if isinstance(item, BadSample)]
    if strict and bad:
        raise BadSampleError(bad[0])
    if report is not None:
        report.set_samples(entry.label, len(items))
        for item in bad:
            report.add(item)
    for item in bad[:MAX_LOGGED_BAD]:
        LOG.warning("skipping bad sample %s", item.describe())
    if len(bad) > MAX_LOGGED_BAD:
        LOG.warning(
            "... %d more bad samples in %s (all are in the summary)", len(bad) - MAX_LOGGED_BAD, entry.label
        )
    if not records:
        reasons = "; ".join(item.describe() for item in bad[:3])
        raise ValueError(
            f"dataset {entry.label} ({entry.path}) holds no usable samples"
            + (f": all {len(bad)} are bad, e.g. {reasons}" if bad else "")
            + " (`wilor-ros check-data` lists them)"
        )
    LOG.info("dataset %s: %d hands (%d bad samples skipped)", entry.label, len(records), len(bad))
    return records


# ------------------------------------------------------------------------------------------ torch side
def record_to_example(record: HandRecord, augment: AugmentConfig | None, seed: int) -> dict[str, Any]:
    """Crop (and augment when ``augment`` is given) one record -> a dict of numpy arrays/scalars.

    Raises SampleError when the image is missing or corrupt or the box lies outside it."""
    rng = np.random.default_rng(seed)
    params = sample_augment(augment, rng) if augment is not None else AugmentParams()
    image = load_image(record.image)
    validate_box_in_image(record.box, image.shape[1], image.shape[0])
    sample = make_training_example(image, record, params, rng)
    return {
        "img": sample.img,
        "keypoints_2d": sample.keypoints_2d,
        "keypoints_3d": sample.keypoints_3d,
        "global_orient": sample.global_orient,
        "hand_pose": sample.hand_pose,
        "betas": sample.betas,
        "has_global_orient": np.float32(record.has_pose),
        "has_hand_pose": np.float32(record.has_pose),
        "has_betas": np.float32(record.has_betas),
        "affine": sample.affine.astype(np.float64),
        "flipped": np.bool_(sample.flipped),
    }


def try_example(record: HandRecord, augment: AugmentConfig | None, seed: int) -> dict[str, Any] | BadSample:
    """:func:`record_to_example`, or the BadSample naming the record when its image cannot be used.

    Runs inside DataLoader workers: nothing is raised there (a worker exception would end the run with
    the worker's traceback); the traceback is logged at debug level (``wilor-ros -v``)."""
    try:
        return record_to_example(record, augment, seed)
    except SampleError as exc:
        LOG.debug("bad sample %s", record.ref.describe(), exc_info=True)
        return BadSample(*record.ref, exc.reason, exc.detail)
    except (ValueError, OSError, cv2.error) as exc:
        LOG.debug("bad sample %s", record.ref.describe(), exc_info=True)
        return BadSample(*record.ref, CORRUPT_IMAGE, f"{type(exc).__name__}: {exc}")


@dataclass
class Example:
    """One good training example: where it came from and its arrays (record_to_example)."""

    ref: SampleRef
    arrays: dict[str, Any]


class HandDataset(torch.utils.data.Dataset):
    """Concatenation of several record lists; items are addressed by (global index, augmentation seed)
    so that a sample's crop depends only on the sampler's stream (exact resume, any worker count).

    An item is an :class:`Example`, or a BadSample when its image turns out unusable."""

    def __init__(self, sources: Sequence[list[HandRecord]], augment: AugmentConfig | None) -> None:
        self.sources = list(sources)
        self.offsets = np.cumsum([0] + [len(s) for s in self.sources])
        self.augment = augment

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def record(self, index: int) -> HandRecord:
        source = int(np.searchsorted(self.offsets, index, side="right") - 1)
        return self.sources[source][index - int(self.offsets[source])]

    def __getitem__(self, item: tuple[int, int] | int) -> Example | BadSample:
        index, seed = item if isinstance(item, tuple) else (int(item), int(item))
        record = self.record(int(index))
        loaded = try_example(record, self.augment, int(seed))
        return loaded if isinstance(loaded, BadSample) else Example(record.ref, loaded)


@dataclass(eq=False)
class Batch:
    """A collated micro-batch: B-first tensors of the good examples (None when every drawn sample was
    bad), where each of them came from, and the bad samples that were drawn and left out."""

    tensors: dict[str, torch.Tensor] | None
    samples: list[SampleRef]
    bad: list[BadSample]

    def __len__(self) -> int:
        return len(self.samples)

    def pin_memory(self) -> Batch:
        """Called by the DataLoader (pin_memory=True) in its pinning thread."""
        if self.tensors is not None:
            self.tensors = {k: v.pin_memory() for k, v in self.tensors.items()}
        return self


def collate(items: list[Example | BadSample]) -> Batch:
    """Stack the good examples into B-first tensors; set the bad ones aside (they reach the main process
    with the batch, which is how counts from worker processes come back)."""
    good = [item for item in items if isinstance(item, Example)]
    bad = [item for item in items if isinstance(item, BadSample)]
    tensors = None
    if good:
        tensors = {key: torch.as_tensor(np.stack([e.arrays[key] for e in good])) for key in good[0].arrays}
    return Batch(tensors, [e.ref for e in good], bad)


class StepBatchSampler(torch.utils.data.Sampler):
    """Micro-batches of (index, seed) pairs as a pure function of (seed, step, micro-batch, rank).

    Dataset d is drawn with probability weight_d / sum(weights), then a hand uniformly within it (with
    replacement). Starting at ``start_step`` reproduces exactly the stream an uninterrupted run sees there.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        weights: Sequence[float],
        batch_size: int,
        grad_accum: int,
        seed: int,
        start_step: int,
        total_steps: int,
        rank: int = 0,
    ) -> None:
        self.sizes = np.asarray(sizes, np.int64)
        probs = np.asarray(weights, np.float64)
        self.probs = probs / probs.sum()
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])
        self.batch_size, self.grad_accum = batch_size, grad_accum
        self.seed, self.start_step, self.total_steps, self.rank = seed, start_step, total_steps, rank

    def __len__(self) -> int:
        return max(0, self.total_steps - self.start_step) * self.grad_accum

    def batch(self, step: int, micro: int) -> list[tuple[int, int]]:
        rng = np.random.default_rng([self.seed, step, micro, self.rank])
        which = rng.choice(len(self.sizes), size=self.batch_size, p=self.probs)
        within = (rng.random(self.batch_size) * self.sizes[which]).astype(np.int64)
        seeds = rng.integers(0, 2**62, size=self.batch_size)
        return [(int(self.offsets[d] + i), int(s)) for d, i, s in zip(which, within, seeds)]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start_step, self.total_steps):
            for micro in range(self.grad_accum):
                yield self.batch(step, micro)


class MocapPrior:
    """The discriminator's "real" samples: npz with hand_pose (N, 45) axis-angle (flat-hand convention,
    MANO joint order, right hand) and betas (N, 10)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"mocap prior not found: {path}")
        with np.load(path) as data:
            missing = [k for k in ("hand_pose", "betas") if k not in data]
            if missing:
                raise ValueError(f"{path}: mocap npz needs hand_pose (N, 45), betas (N, 10); lacks {missing}")
            self.hand_pose = np.asarray(data["hand_pose"], np.float32).reshape(len(data["hand_pose"]), -1)
            self.betas = np.asarray(data["betas"], np.float32)
        count = len(self.hand_pose)
        if self.hand_pose.shape[1] != 3 * NUM_HAND_JOINTS or self.betas.shape != (count, NUM_BETAS):
            raise ValueError(
                f"{path}: expected hand_pose (N, 45) and betas (N, 10), "
                f"got {self.hand_pose.shape}, {self.betas.shape}"
            )

    def sample(self, count: int, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """count x 15 x 3 axis-angles and count x 10 betas drawn with replacement."""
        index = rng.integers(0, len(self.hand_pose), size=count)
        pose = torch.from_numpy(self.hand_pose[index].reshape(count, NUM_HAND_JOINTS, 3))
        return pose, torch.from_numpy(self.betas[index])
