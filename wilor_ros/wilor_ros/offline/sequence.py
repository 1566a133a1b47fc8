"""Whole-sequence tracks: one side per track, gaps filled, smoothing with the sequence in view.

Works on the rows of a ``HandStore`` (one row per hand per frame, with a first-pass track id)
and the ``FrameTable`` of the processed frames:

* ``majority_sides``: each track's side is the side most of its frames were detected with
  (ties: the larger summed detector score), so a detector that flips for a few frames cannot
  flip the track; rows reconstructed for the other side are re-reconstructed by the runner.
* ``fill_gaps``: a track unseen for 1 .. ``max_gap`` processed frames between two observations
  gets interpolated rows there (positions linear in time, rotations by slerp, 2D keypoints
  re-projected with that frame's intrinsics), flagged ``interpolated``.
* ``smooth_offline``: the zero-lag RTS smoother of ``smoothing.py`` over each whole track:
  joints, vertices, cam_t and betas with one linear smoother (their affine relations are kept),
  MANO rotations on the quaternion sphere; then the per-joint frames follow from the smoothed
  MANO rotations (``store.hand_from_row``) and the 2D keypoints are re-projected.
* ``smooth_causal``: the node's One Euro filter (``core.temporal.filtering.HandFilter``) in frame order,
  for comparison.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from wilor_ros.core.hand import camera
from wilor_ros.core.hand.constants import NUM_HAND_JOINTS
from wilor_ros.core.temporal.filtering import FilterConfig, HandFilter
from wilor_ros.core.temporal.one_euro import relative_rotvec, slerp_by_rotvec
from wilor_ros.core.types import CameraIntrinsics, Side
from wilor_ros.offline import smoothing
from wilor_ros.offline.store import FrameTable, HandStore, hand_from_row

NS_PER_S = 1e9
CHUNK_ROWS = 256
# positions smoothed by the one linear smoother, in this column order
LINEAR_FIELDS = ("keypoints_3d", "vertices", "cam_t", "betas")
ROTATION_FIELDS = ("global_orient_matrix", "hand_pose_matrix")  # smoothed as quaternions
_ROTATIONS_PER_ROW = 1 + NUM_HAND_JOINTS


def track_rows(store: HandStore) -> dict[int, np.ndarray]:
    """Kept rows of every track, in frame order."""
    keep = np.flatnonzero(np.asarray(store.array("keep")))
    tracks = np.asarray(store.array("track"))[keep]
    frames = np.asarray(store.array("frame"))[keep]
    order = np.lexsort((frames, tracks))
    out: dict[int, np.ndarray] = {}
    for track in np.unique(tracks):
        selected = order[tracks[order] == track]
        out[int(track)] = keep[selected]
    return out


def intrinsics_of(frames: FrameTable, row: int) -> CameraIntrinsics:
    record = frames.data[row]
    fx, fy, cx, cy = (float(v) for v in record["intrinsics"])
    return CameraIntrinsics(fx, fy, cx, cy, bool(record["from_camera_info"]))


def majority_sides(store: HandStore, tracks: dict[int, np.ndarray]) -> dict[int, Side]:
    """Each track's side: the most frequent detected side (ties: the larger summed score)."""
    detected = np.asarray(store.array("detected_side"))
    scores = np.asarray(store.array("score"))
    sides = {}
    for track, rows in tracks.items():
        votes = {
            side: (int(np.sum(detected[rows] == side)), float(np.sum(scores[rows][detected[rows] == side])))
            for side in Side
        }
        sides[track] = max(Side, key=lambda s: votes[s])
    return sides


# ------------------------------------------------------------------------------ gaps
def _lerp(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    w = w.reshape(-1, *([1] * np.ndim(a)))
    return (1.0 - w) * np.asarray(a, np.float64) + w * np.asarray(b, np.float64)


def _slerp_matrices(a: np.ndarray, b: np.ndarray, w: np.ndarray) -> np.ndarray:
    """G x ... x 3 x 3 rotations from ``a`` towards ``b`` (... x 3 x 3) by fractions ``w`` (G,)."""
    shape = np.shape(a)[:-2]
    qa = Rotation.from_matrix(np.reshape(a, (-1, 3, 3))).as_quat()
    qb = Rotation.from_matrix(np.reshape(b, (-1, 3, 3))).as_quat()
    delta = relative_rotvec(qa, qb)  # N x 3
    out = [slerp_by_rotvec(qa, delta, np.full((len(qa), 1), weight)) for weight in w]
    return Rotation.from_quat(np.concatenate(out)).as_matrix().reshape(len(w), *shape, 3, 3)


def interpolated_rows(
    a: dict[str, np.ndarray], b: dict[str, np.ndarray], frame_rows: np.ndarray, frames: FrameTable
) -> dict[str, np.ndarray]:
    """Rows for the processed frames ``frame_rows`` strictly between the observations ``a`` and
    ``b`` (single rows of ``HandStore.rows``) of one track, at their stamps."""
    stamps = frames.data["stamp_ns"]
    t_a, t_b = stamps[int(a["frame"])], stamps[int(b["frame"])]
    w = (stamps[frame_rows] - t_a) / float(t_b - t_a)  # (G,) in (0, 1)
    count = len(frame_rows)
    rows: dict[str, np.ndarray] = {
        name: _lerp(a[name], b[name], w)
        for name in ("score", "box", "keypoints_3d", "vertices", "cam_t", "betas")
    }
    for name in ROTATION_FIELDS:
        rows[name] = _slerp_matrices(a[name], b[name], w)
    rows["keypoints_2d"] = np.stack(
        [
            camera.project_points(rows["keypoints_3d"][i], intrinsics_of(frames, r))
            for i, r in enumerate(frame_rows)
        ]
    )
    rows.update(
        frame=frame_rows,
        track=np.full(count, a["track"]),
        side=np.full(count, a["side"]),
        detected_side=np.full(count, a["side"]),
        depth_corrected=np.zeros(count, bool),
        interpolated=np.ones(count, bool),
        side_corrected=np.zeros(count, bool),
        keep=np.ones(count, bool),
    )
    return rows


def fill_gaps(store: HandStore, frames: FrameTable, tracks: dict[int, np.ndarray], max_gap: int) -> int:
    """Interpolate every gap of 1 .. ``max_gap`` processed frames inside a track; returns the
    number of rows added (``tracks`` is not updated: call ``track_rows`` again)."""
    if max_gap < 1:
        return 0
    added = 0
    frame_of = np.asarray(store.array("frame"))
    for rows in tracks.values():
        frame_rows = frame_of[rows]
        gaps = np.flatnonzero((np.diff(frame_rows) > 1) & (np.diff(frame_rows) <= max_gap + 1))
        for g in gaps:
            pair = store.rows(rows[[g, g + 1]])
            a = {k: v[0] for k, v in pair.items()}
            b = {k: v[1] for k, v in pair.items()}
            missing = np.arange(frame_rows[g] + 1, frame_rows[g + 1])
            store.append(interpolated_rows(a, b, missing, frames))
            frame_of = np.asarray(store.array("frame"))
            added += len(missing)
    return added


# ------------------------------------------------------------------------------ smoothing
def _chunks(rows: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    for start in range(0, len(rows), CHUNK_ROWS):
        yield start, rows[start : start + CHUNK_ROWS]


class _TrackMatrix:
    """T x D view of one track for the smoother: the LINEAR_FIELDS, then the sign-continuous
    quaternions of the MANO rotations; rows are gathered from the store on demand."""

    def __init__(self, store: HandStore, rows: np.ndarray, quats: np.ndarray) -> None:
        self.store, self.rows, self.quats = store, rows, quats  # quats: T x 16 x 4
        widths = [int(np.prod(store.fields[name][1])) for name in LINEAR_FIELDS]
        self.linear_width = sum(widths)
        self.shape = (len(rows), self.linear_width + quats[0].size)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: slice) -> np.ndarray:
        rows = self.rows[index]
        parts = [
            np.asarray(self.store.array(name)[rows], np.float64).reshape(len(rows), -1)
            for name in LINEAR_FIELDS
        ]
        parts.append(self.quats[index].reshape(len(rows), -1))
        return np.concatenate(parts, axis=1)


def _rotation_quats(store: HandStore, rows: np.ndarray) -> np.ndarray:
    """T x 16 x 4 quaternions (global orient, then the 15 finger joints), sign-continuous in time."""
    quats = np.empty((len(rows), _ROTATIONS_PER_ROW, 4))
    for start, part in _chunks(rows):
        orient = np.asarray(store.array("global_orient_matrix")[part], np.float64)[:, None]
        pose = np.asarray(store.array("hand_pose_matrix")[part], np.float64)
        mats = np.concatenate([orient, pose], axis=1).reshape(-1, 3, 3)
        quats[start : start + len(part)] = Rotation.from_matrix(mats).as_quat().reshape(len(part), -1, 4)
    return smoothing.continuous_quaternions(quats)


def _reproject(store: HandStore, frames: FrameTable, rows: np.ndarray) -> None:
    frame_of = np.asarray(store.array("frame"))
    for _, part in _chunks(rows):
        joints = np.asarray(store.array("keypoints_3d")[part], np.float64)
        store.array("keypoints_2d")[part] = np.stack(
            [camera.project_points(j, intrinsics_of(frames, int(frame_of[r]))) for j, r in zip(joints, part)]
        )


def smooth_offline(
    store: HandStore, frames: FrameTable, tracks: dict[int, np.ndarray], cutoff_hz: float, scratch: Path
) -> None:
    """Zero-lag smoothing of every track in place (see the module docstring)."""
    stamps_ns = frames.data["stamp_ns"]
    frame_of = np.asarray(store.array("frame"))
    for rows in tracks.values():
        if len(rows) < 3:
            continue  # nothing to smooth
        stamps = stamps_ns[frame_of[rows]] / NS_PER_S
        gains = smoothing.rts_gains(stamps - stamps[0], cutoff_hz)
        matrix = _TrackMatrix(store, rows, _rotation_quats(store, rows))
        out_path = Path(scratch) / "smoothed.bin"
        smoothed = smoothing.rts_smooth(
            matrix, gains, out=smoothing.scratch_array(out_path, *matrix.shape), scratch=scratch
        )
        for start, part in _chunks(rows):
            block = np.asarray(smoothed[start : start + len(part)])
            column = 0
            for name in LINEAR_FIELDS:
                shape = store.fields[name][1]
                width = int(np.prod(shape))
                store.array(name)[part] = block[:, column : column + width].reshape(len(part), *shape)
                column += width
            quats = smoothing.normalise_quaternions(
                block[:, column:].reshape(len(part), _ROTATIONS_PER_ROW, 4)
            )
            mats = (
                Rotation.from_quat(quats.reshape(-1, 4))
                .as_matrix()
                .reshape(len(part), _ROTATIONS_PER_ROW, 3, 3)
            )
            store.array("global_orient_matrix")[part] = mats[:, 0]
            store.array("hand_pose_matrix")[part] = mats[:, 1:]
        del smoothed
        out_path.unlink(missing_ok=True)
        _reproject(store, frames, rows)


def rows_in_frame_order(store: HandStore) -> np.ndarray:
    """Kept rows sorted by (frame, track)."""
    keep = np.flatnonzero(np.asarray(store.array("keep")))
    frame = np.asarray(store.array("frame"))[keep]
    track = np.asarray(store.array("track"))[keep]
    return keep[np.lexsort((track, frame))]


def smooth_causal(store: HandStore, frames: FrameTable, config: FilterConfig) -> None:
    """The node's One Euro filter over every kept row, in frame order, in place."""
    hand_filter = HandFilter(config)
    stamps_ns = frames.data["stamp_ns"]
    for _, part in _chunks(rows_in_frame_order(store)):
        values = store.rows(part)
        updates: dict[str, list[np.ndarray]] = defaultdict(list)
        for i in range(len(part)):
            row = {k: v[i] for k, v in values.items()}
            frame = int(row["frame"])
            hand = hand_filter.filter(
                hand_from_row(row, intrinsics_of(frames, frame)), stamps_ns[frame] / NS_PER_S
            )
            for name in (
                "keypoints_3d",
                "vertices",
                "keypoints_2d",
                "cam_t",
                "global_orient_matrix",
                "hand_pose_matrix",
            ):
                updates[name].append(np.asarray(getattr(hand, name)))
        store.write(part, {name: np.stack(v) for name, v in updates.items()})
