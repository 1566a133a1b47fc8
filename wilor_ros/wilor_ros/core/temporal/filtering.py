"""Temporal smoothing of hand reconstructions for teleoperation: the One Euro filter.

The One Euro filter (Casiez, Roussel, Vogel: "1€ Filter: A Simple Speed-based Low-pass Filter
for Noisy Input in Interactive Systems", CHI 2012) is a first-order low-pass filter whose cutoff
frequency rises with the signal's speed:

    cutoff = min_cutoff + beta * |dx/dt|          (Hz)
    alpha  = 1 / (1 + tau / dt),  tau = 1 / (2 pi cutoff)
    x_hat  = x_hat + alpha * (x - x_hat)

* ``min_cutoff`` (Hz): the cutoff when the hand is still. Lower = less jitter at rest, more lag
  when it starts moving.
* ``beta`` (1 / unit of x, here 1/m or 1/rad): how fast the cutoff grows with speed. Higher =
  less lag during fast motion. The steady-state position error on a constant-speed motion is
  ``v * tau = v / (2 pi (min_cutoff + beta v))``, which never exceeds ``1 / (2 pi beta)``.
* ``d_cutoff`` (Hz): cutoff of the low-pass applied to the speed estimate itself (keeps noise
  from opening the filter).

Everything is driven by timestamps (seconds), so a variable frame rate is handled: the
smoothing factor is recomputed from each frame's ``dt``. Timestamp rules, the same for every
filter here:

* the first sample passes through unchanged;
* a sample with the same stamp as the previous one (``dt == 0``) returns the previous output and
  leaves the state untouched (a duplicate message must not count as a frame);
* a stamp earlier than the previous one (``dt < 0``: bag loop, simulated-time reset) resets the
  filter and passes the sample through;
* a gap longer than ``max_gap_s`` (when given) resets the filter too: old state is stale.

Rotations are filtered on the unit-quaternion sphere: each input quaternion is first moved to
the hemisphere of the filtered one (q and -q are the same rotation; a sign flip of the input
must not look like a 360 degree jump), the angular velocity is the rotation vector of
``q_hat^-1 q`` over ``dt``, and the update is a slerp by the adaptive alpha.

``HandFilter`` smooths whole ``HandEstimate``s per track id. Every position array (joints,
vertices, 2D keypoints, cam_t) of a hand shares ONE smoothing factor per frame, set by the
joints' mean velocity; because exponential smoothing with a shared factor preserves linear
relations, the filtered vertices, joints and ``cam_t`` stay consistent with each other (e.g.
fingertip joints remain mesh vertices). Every rotation (wrist, MANO joints, OpenPose joint
frames) shares one factor too: the larger of the wrist angular-speed factor and the position
factor, applied by slerp.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from wilor_ros.core.config import setting
from wilor_ros.core.temporal.one_euro import (
    QUAT_DIM,
    AdaptiveCutoff,
    OneEuroParams,
    align_hemisphere,
    relative_rotvec,
    slerp_by_rotvec,
    stamp_step,
)
from wilor_ros.core.types import HandEstimate, Side


@dataclass
class FilterConfig:
    """Smoothing of published hands (per track). Defaults favour low lag (teleoperation).

    Measured with the defaults at 30 fps and 3 mm of per-axis joint noise (test_filtering.py):
    jitter (mean acceleration norm) drops about 8x for a still hand and 4x for a hand hovering
    at up to 5 cm/s; on a constant-speed ramp the lag is under one frame from about 0.1 m/s up
    (0.5 frame at 0.3 m/s), and the position error due to lag never exceeds
    1 / (2 pi beta) = 8 mm. Trade-off: a higher beta cuts lag but keeps more jitter in motion;
    a lower min_cutoff smooths a still hand more but delays the start of a motion.
    """

    enabled: bool = True
    # positions (joints, vertices, cam_t, and 2D keypoints, which follow the same factor)
    min_cutoff: float = setting(
        1.0,
        doc="One Euro cutoff (Hz) for a still hand: lower = less jitter at rest, more lag when motion starts",
        minimum=0.01,
        maximum=100.0,
        live=True,
    )
    beta: float = setting(
        20.0,
        doc="One Euro speed coefficient (1/m): higher = less lag in fast motion, more jitter; the "
        "lag error never exceeds 1/(2 pi beta) metres",
        minimum=0.0,
        maximum=1000.0,
        live=True,
    )
    d_cutoff: float = 1.0  # Hz, smoothing of the speed estimate
    # wrist orientation: a fast wrist rotation also opens the filter
    rotation_min_cutoff: float = 1.0  # Hz
    rotation_beta: float = 2.0  # 1/rad: cutoff grows 2 Hz per rad/s
    rotation_d_cutoff: float = 1.0  # Hz
    # a track not seen for longer than this restarts from its next raw sample
    max_gap_s: float = 0.5

    def __post_init__(self) -> None:
        self.position_params()
        self.rotation_params()
        if not (math.isfinite(self.max_gap_s) and self.max_gap_s > 0):
            raise ValueError(f"max_gap_s must be a positive number of seconds, got {self.max_gap_s}")

    def position_params(self) -> OneEuroParams:
        return OneEuroParams(self.min_cutoff, self.beta, self.d_cutoff)

    def rotation_params(self) -> OneEuroParams:
        return OneEuroParams(self.rotation_min_cutoff, self.rotation_beta, self.rotation_d_cutoff)


# ------------------------------------------------------------------------------ hands
def _matrices_to_quats(matrices: np.ndarray) -> np.ndarray:
    """... x 3 x 3 rotation matrices -> ... x 4 quaternions."""
    shape = matrices.shape[:-2]
    return Rotation.from_matrix(matrices.reshape(-1, 3, 3)).as_quat().reshape(*shape, QUAT_DIM)


def _quats_to_matrices(quats: np.ndarray) -> np.ndarray:
    shape = quats.shape[:-1]
    return Rotation.from_quat(quats.reshape(-1, QUAT_DIM)).as_matrix().reshape(*shape, 3, 3)


# Position arrays smoothed linearly with the hand's shared factor.
_POSITION_FIELDS = ("keypoints_3d", "vertices", "keypoints_2d", "cam_t")
# Rotation arrays (matrices) smoothed by slerp with the same factor.
_ROTATION_FIELDS = ("global_orient_matrix", "hand_pose_matrix", "joint_rotations")


@dataclass
class _HandState:
    stamp: float
    side: Side
    positions: dict[str, np.ndarray]  # field -> float64 array
    quats: dict[str, np.ndarray]  # field -> ... x 4
    position_cutoff: AdaptiveCutoff
    rotation_cutoff: AdaptiveCutoff
    output: HandEstimate


class HandFilter:
    """One Euro smoothing of ``HandEstimate``s, one state per track id.

    Call ``filter(estimate, stamp)`` with estimates that carry a ``track_id`` (from
    ``tracking.HandTracker``); call ``retain(ids)`` (or ``reset(id)``) when tracks die so a new
    hand never inherits an old hand's state. A track whose side changes restarts too (the mesh
    of the other side is mirrored: blending the two would be meaningless).
    """

    def __init__(self, config: FilterConfig | None = None) -> None:
        self.config = config or FilterConfig()
        self._states: dict[int, _HandState] = {}

    @property
    def track_ids(self) -> list[int]:
        return sorted(self._states)

    def reset(self, track_id: int | None = None) -> None:
        """Forget one track's state (or all states when ``track_id`` is None)."""
        if track_id is None:
            self._states.clear()
        else:
            self._states.pop(track_id, None)

    def retain(self, track_ids: Iterable[int]) -> None:
        """Keep only the states of ``track_ids`` (the tracker's living tracks)."""
        keep = set(track_ids)
        for tid in list(self._states):
            if tid not in keep:
                del self._states[tid]

    def filter_all(self, estimates: Iterable[HandEstimate], stamp: float) -> list[HandEstimate]:
        """Filter every estimate of one frame; states of tracks unseen for longer than
        ``max_gap_s`` are dropped."""
        out = [self.filter(est, stamp) for est in estimates]
        for tid, state in list(self._states.items()):
            if stamp - state.stamp > self.config.max_gap_s:
                del self._states[tid]
        return out

    def filter(self, estimate: HandEstimate, stamp: float) -> HandEstimate:
        """Smoothed copy of ``estimate`` (taken at ``stamp`` seconds); the input is not changed.

        Filtered: keypoints_3d (hence the wrist), vertices, keypoints_2d, cam_t,
        global_orient(_matrix), hand_pose(_matrix), joint_rotations. Box, score, betas pass
        through.
        """
        if estimate.track_id <= 0:
            raise ValueError(
                "HandFilter needs tracked hands (track_id > 0); run tracking.HandTracker.update first"
            )
        if not self.config.enabled:
            return estimate
        state = self._states.get(estimate.track_id)
        dt = None if state is None else stamp_step(state.stamp, stamp, self.config.max_gap_s)
        if state is not None and state.side != estimate.side:
            dt = None
        if dt is None or state is None:
            self._states[estimate.track_id] = self._start(estimate, stamp)
            return estimate
        if dt == 0.0:
            return state.output

        positions = {name: np.asarray(getattr(estimate, name), dtype=np.float64) for name in _POSITION_FIELDS}
        quats = {
            name: align_hemisphere(
                _matrices_to_quats(np.asarray(getattr(estimate, name), dtype=np.float64)), state.quats[name]
            )
            for name in _ROTATION_FIELDS
        }
        joints = positions["keypoints_3d"]
        alpha_pos = state.position_cutoff.alpha((joints - state.positions["keypoints_3d"]) / dt, dt)
        wrist_delta = relative_rotvec(state.quats["global_orient_matrix"], quats["global_orient_matrix"])
        alpha_rot = state.rotation_cutoff.alpha(wrist_delta / dt, dt)
        # positions follow the joints' speed; rotations open when the wrist turns OR the hand
        # moves (fingers closing change the joint rotations while the wrist stays still)
        alpha_position = float(np.max(alpha_pos))
        alpha_rotation = max(float(np.max(alpha_rot)), alpha_position)

        for name, value in positions.items():
            state.positions[name] = state.positions[name] + alpha_position * (value - state.positions[name])
        for name, value in quats.items():
            delta = relative_rotvec(state.quats[name], value)
            state.quats[name] = slerp_by_rotvec(state.quats[name], delta, np.asarray(alpha_rotation))
        state.stamp = stamp
        state.output = self._compose(estimate, state)
        return state.output

    def _start(self, estimate: HandEstimate, stamp: float) -> _HandState:
        return _HandState(
            stamp=stamp,
            side=estimate.side,
            positions={
                name: np.array(getattr(estimate, name), dtype=np.float64) for name in _POSITION_FIELDS
            },
            quats={
                name: _matrices_to_quats(np.asarray(getattr(estimate, name), dtype=np.float64))
                for name in _ROTATION_FIELDS
            },
            position_cutoff=AdaptiveCutoff(self.config.position_params(), per_point=False),
            rotation_cutoff=AdaptiveCutoff(self.config.rotation_params(), per_point=False),
            output=estimate,
        )

    @staticmethod
    def _compose(estimate: HandEstimate, state: _HandState) -> HandEstimate:
        mats = {name: _quats_to_matrices(q).astype(np.float32) for name, q in state.quats.items()}
        global_mat = mats["global_orient_matrix"].reshape(3, 3)
        pose_mats = mats["hand_pose_matrix"]
        return dataclasses.replace(
            estimate,
            keypoints_3d=state.positions["keypoints_3d"].astype(np.float32),
            vertices=state.positions["vertices"].astype(np.float32),
            keypoints_2d=state.positions["keypoints_2d"].astype(np.float32),
            cam_t=state.positions["cam_t"].astype(np.float32),
            global_orient_matrix=global_mat,
            global_orient=Rotation.from_matrix(global_mat).as_rotvec().astype(np.float32),
            hand_pose_matrix=pose_mats,
            hand_pose=Rotation.from_matrix(pose_mats.reshape(-1, 3, 3))
            .as_rotvec()
            .reshape((*pose_mats.shape[:-2], 3))
            .astype(np.float32),
            joint_rotations=mats["joint_rotations"],
        )
