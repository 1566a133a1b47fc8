"""Per-hand results of a whole recording, spilled to disk so memory stays bounded.

``HandStore`` keeps one raw binary file per field (``<name>.bin`` in a work folder): rows are
appended as the frames are processed and read back through ``np.memmap`` (only the pages in
use stay in memory, and the OS may drop them), so a recording far larger than RAM works. Rows
are never removed: ``keep`` marks the rows that reach the outputs. ``FrameTable`` holds the
small per-frame values (a few dozen bytes per frame) in memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from wilor_ros.core.hand.constants import (
    NUM_BETAS,
    NUM_HAND_JOINTS,
    NUM_JOINTS,
    NUM_VERTICES,
    OPENPOSE_ROTATION_SOURCE,
)
from wilor_ros.core.hand.rotations import global_joint_rotations, rotmat_to_axis_angle_np
from wilor_ros.core.types import CameraIntrinsics, HandEstimate, Side

# name -> (dtype, shape of one row)
ROW_FIELDS: dict[str, tuple[Any, tuple[int, ...]]] = {
    "frame": (np.int64, ()),  # row of the FrameTable
    "track": (np.int64, ()),  # track id (first pass; final after the sequence stage)
    "side": (np.int8, ()),  # side the geometry was reconstructed for (0 left, 1 right)
    "detected_side": (np.int8, ()),  # the detector's (or the given box's) side
    "score": (np.float32, ()),
    "box": (np.float32, (4,)),  # XYXY pixels
    "keypoints_3d": (np.float32, (NUM_JOINTS, 3)),  # metres, camera frame
    "keypoints_2d": (np.float32, (NUM_JOINTS, 2)),  # pixels
    "vertices": (np.float32, (NUM_VERTICES, 3)),  # metres, camera frame
    "global_orient_matrix": (np.float32, (3, 3)),
    "hand_pose_matrix": (np.float32, (NUM_HAND_JOINTS, 3, 3)),
    "betas": (np.float32, (NUM_BETAS,)),
    "cam_t": (np.float32, (3,)),
    "depth_corrected": (np.bool_, ()),
    "interpolated": (np.bool_, ()),  # filled across a gap, not observed
    "side_corrected": (np.bool_, ()),  # re-reconstructed for its track's side
    "keep": (np.bool_, ()),  # reaches the outputs
}


class HandStore:
    """Append-only rows of ``ROW_FIELDS`` in ``folder``; ``array(name)`` is a writable memmap
    (N x shape) of the rows appended so far."""

    def __init__(self, folder: Path, fields: dict[str, tuple[Any, tuple[int, ...]]] = ROW_FIELDS) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fields = fields
        self.size = 0
        self._files = {name: (self.folder / f"{name}.bin").open("wb") for name in fields}
        self._maps: dict[str, np.memmap] = {}
        self._mapped_size = -1

    def append(self, rows: dict[str, np.ndarray]) -> np.ndarray:
        """Append K rows (every field, each K x shape); returns their row numbers."""
        counts = {len(np.asarray(v)) for v in rows.values()}
        if set(rows) != set(self.fields) or len(counts) != 1:
            raise ValueError(f"append needs K rows of every field {sorted(self.fields)}")
        count = counts.pop()
        self._flush_maps()
        for name, (dtype, shape) in self.fields.items():
            values = np.ascontiguousarray(rows[name], dtype=dtype)
            if values.shape != (count, *shape):
                raise ValueError(f"field {name}: expected {(count, *shape)}, got {values.shape}")
            self._files[name].write(values.tobytes())
        start, self.size = self.size, self.size + count
        return np.arange(start, self.size)

    def _flush_maps(self) -> None:
        for array in self._maps.values():
            array.flush()

    def array(self, name: str) -> np.memmap | np.ndarray:
        """N x shape view of one field (writes go to the file)."""
        if self._mapped_size != self.size:
            self._flush_maps()
            for handle in self._files.values():
                handle.flush()
            self._maps = {}
            self._mapped_size = self.size
        if self.size == 0:
            dtype, shape = self.fields[name]
            return np.zeros((0, *shape), dtype=dtype)
        if name not in self._maps:
            dtype, shape = self.fields[name]
            self._maps[name] = np.memmap(
                self.folder / f"{name}.bin", dtype=dtype, mode="r+", shape=(self.size, *shape)
            )
        return self._maps[name]

    def rows(self, indices: np.ndarray) -> dict[str, np.ndarray]:
        """In-memory copies of every field of the given rows."""
        return {name: np.asarray(self.array(name)[indices]) for name in self.fields}

    def write(self, indices: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """Overwrite some fields of the given rows."""
        for name, value in values.items():
            self.array(name)[indices] = value

    def close(self) -> None:
        self._flush_maps()
        self._maps = {}
        for handle in self._files.values():
            handle.close()


FRAME_DTYPE = np.dtype(
    [
        ("index", np.int64),  # position in the input image stream
        ("stamp_ns", np.int64),  # header stamp
        ("log_time_ns", np.int64),  # bag receive time
        ("frame_id", np.int32),  # into FrameTable.frame_ids
        ("intrinsics", np.float64, (4,)),  # fx, fy, cx, cy used
        ("from_camera_info", np.bool_),  # False: the official focal heuristic
        ("width", np.int32),
        ("height", np.int32),
    ]
)


class FrameTable:
    """The processed frames (one record each, ``FRAME_DTYPE``), grown by doubling."""

    def __init__(self) -> None:
        self._data = np.zeros(1024, dtype=FRAME_DTYPE)
        self.size = 0
        self.frame_ids: list[str] = []
        self._frame_id_numbers: dict[str, int] = {}

    def add(self, **values: Any) -> int:
        if self.size == len(self._data):
            self._data = np.concatenate([self._data, np.zeros_like(self._data)])
        frame_id = str(values.pop("frame_id"))
        if frame_id not in self._frame_id_numbers:
            self._frame_id_numbers[frame_id] = len(self.frame_ids)
            self.frame_ids.append(frame_id)
        record = self._data[self.size]
        record["frame_id"] = self._frame_id_numbers[frame_id]
        for key, value in values.items():
            record[key] = value
        self.size += 1
        return self.size - 1

    @property
    def data(self) -> np.ndarray:
        return self._data[: self.size]

    def frame_id(self, row: int) -> str:
        return self.frame_ids[int(self._data[row]["frame_id"])]


# ------------------------------------------------------------------------------ rows <-> hands
GEOMETRY_FIELDS = (
    "score",
    "box",
    "keypoints_3d",
    "keypoints_2d",
    "vertices",
    "global_orient_matrix",
    "hand_pose_matrix",
    "betas",
    "cam_t",
    "depth_corrected",
)


def geometry_rows(hands: list[HandEstimate]) -> dict[str, np.ndarray]:
    """The ``GEOMETRY_FIELDS`` of K hands as K-row arrays."""
    return {name: np.stack([np.asarray(getattr(h, name)) for h in hands]) for name in GEOMETRY_FIELDS}


def hand_from_row(
    row: dict[str, np.ndarray], intrinsics: CameraIntrinsics, *, tracked: bool = False, filtered: bool = False
) -> HandEstimate:
    """A HandEstimate of one stored row (``HandStore.rows`` of one index). The axis-angle fields
    and the per-joint frames are derived from the stored rotation matrices exactly as the
    pipeline derives them (``HandPipeline.postprocess``)."""
    orient = np.asarray(row["global_orient_matrix"], np.float32).reshape(3, 3)
    pose = np.asarray(row["hand_pose_matrix"], np.float32).reshape(NUM_HAND_JOINTS, 3, 3)
    local = np.concatenate([orient[None], pose])  # 16 x 3 x 3
    joint_rotations = global_joint_rotations(orient[None], pose[None])[0][list(OPENPOSE_ROTATION_SOURCE)]
    axis_angle = rotmat_to_axis_angle_np(local).astype(np.float32)  # 16 x 3
    return HandEstimate(
        box=np.asarray(row["box"], np.float32),
        score=float(row["score"]),
        side=Side(int(row["side"])),
        keypoints_3d=np.asarray(row["keypoints_3d"], np.float32),
        keypoints_2d=np.asarray(row["keypoints_2d"], np.float32),
        vertices=np.asarray(row["vertices"], np.float32),
        global_orient=axis_angle[0],
        hand_pose=axis_angle[1:],
        global_orient_matrix=orient,
        hand_pose_matrix=pose,
        betas=np.asarray(row["betas"], np.float32),
        cam_t=np.asarray(row["cam_t"], np.float32),
        joint_rotations=joint_rotations.astype(np.float32),
        intrinsics=intrinsics,
        track_id=int(row["track"]),
        depth_corrected=bool(row["depth_corrected"]),
        tracked=tracked,
        filtered=filtered,
    )
