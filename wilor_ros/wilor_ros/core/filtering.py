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
from wilor_ros.core.types import HandEstimate, Side

QUAT_DIM = 4  # quaternions are (x, y, z, w), scipy's scalar-last convention
_MIN_QUAT_NORM = 1e-8


# ------------------------------------------------------------------------------ parameters
@dataclass(frozen=True)
class OneEuroParams:
    """Parameters of one One Euro filter (see the module docstring for their meaning)."""

    min_cutoff: float = 1.0  # Hz
    beta: float = 0.0  # 1 / (unit of the signal)
    d_cutoff: float = 1.0  # Hz

    def __post_init__(self) -> None:
        if not (math.isfinite(self.min_cutoff) and self.min_cutoff > 0):
            raise ValueError(f"min_cutoff must be a positive frequency in Hz, got {self.min_cutoff}")
        if not (math.isfinite(self.beta) and self.beta >= 0):
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if not (math.isfinite(self.d_cutoff) and self.d_cutoff > 0):
            raise ValueError(f"d_cutoff must be a positive frequency in Hz, got {self.d_cutoff}")


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


# ------------------------------------------------------------------------------ helpers
def smoothing_factor(cutoff_hz: np.ndarray | float, dt: float) -> np.ndarray:
    """Exponential-smoothing factor alpha in (0, 1] of a first-order low-pass at ``cutoff_hz``
    sampled with period ``dt`` seconds: alpha = 1 / (1 + tau / dt), tau = 1 / (2 pi cutoff)."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


def _stamp_step(last_stamp: float | None, stamp: float, max_gap_s: float | None) -> float | None:
    """dt to the previous sample; None when the filter must (re)start from this sample.

    Returns 0.0 for a duplicate stamp (callers return their previous output)."""
    if not math.isfinite(stamp):
        raise ValueError(f"filter timestamps must be finite seconds, got {stamp}")
    if last_stamp is None:
        return None
    dt = stamp - last_stamp
    if dt < 0.0:
        return None  # time went backwards: restart (documented in the module docstring)
    if max_gap_s is not None and dt > max_gap_s:
        return None
    return dt


def _speed(derivative: np.ndarray, per_point: bool) -> np.ndarray:
    """Speed driving the cutoff. ``derivative`` is ... x D (D = coordinates of one point).

    per_point: the norm of each point's velocity (shape ... x 1). Otherwise one value for the
    whole array (shape 1 x ... x 1, broadcastable): the norm of the MEAN point velocity. The
    mean averages independent per-point noise down by sqrt(N) (an RMS of point speeds keeps a
    noise floor that would hold the filter open for a still hand) while still seeing the hand
    move or the fingers close (their joints move together); a hand spinning about its centroid
    is caught by the rotation filter instead (see HandFilter).
    """
    if per_point:
        return np.linalg.norm(derivative, axis=-1, keepdims=True)
    mean_velocity = derivative.reshape(-1, derivative.shape[-1]).mean(axis=0)
    return np.full((1,) * derivative.ndim, float(np.linalg.norm(mean_velocity)))


class _AdaptiveCutoff:
    """The speed half of the One Euro filter: low-passes a derivative, turns it into alpha."""

    def __init__(self, params: OneEuroParams, per_point: bool) -> None:
        self.params = params
        self.per_point = per_point
        self.derivative: np.ndarray | None = None  # ... x D, smoothed

    def reset(self) -> None:
        self.derivative = None

    def alpha(self, raw_derivative: np.ndarray, dt: float) -> np.ndarray:
        """Update the smoothed derivative with ``raw_derivative`` (... x D) and return alpha."""
        if self.derivative is None or self.derivative.shape != raw_derivative.shape:
            self.derivative = np.zeros_like(raw_derivative)
        alpha_d = smoothing_factor(self.params.d_cutoff, dt)
        self.derivative = self.derivative + alpha_d * (raw_derivative - self.derivative)
        cutoff = self.params.min_cutoff + self.params.beta * _speed(self.derivative, self.per_point)
        return smoothing_factor(cutoff, dt)


def _as_points(x: np.ndarray | float) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if not np.all(np.isfinite(arr)):
        raise ValueError("filter input contains NaN or infinite values; drop that sample instead")
    return arr


def _normalise_quats(quats: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(quats, axis=-1, keepdims=True)
    if np.any(norms < _MIN_QUAT_NORM) or not np.all(np.isfinite(quats)):
        raise ValueError("rotation filter input must be finite non-zero quaternions (x, y, z, w)")
    return quats / norms


def align_hemisphere(quats: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Flip the sign of each quaternion (... x 4) lying in the opposite hemisphere of
    ``reference`` (... x 4): q and -q are one rotation, this picks the nearer representative."""
    dots = np.sum(quats * reference, axis=-1, keepdims=True)
    return np.where(dots < 0.0, -quats, quats)


# ------------------------------------------------------------------------------ filters
class _OneEuroBase:
    """What both One Euro filters share: the last output and its stamp, the adaptive cutoff, and the
    update around each filter's own step (first sample, gap, repeated stamp)."""

    kind = "filter"  # names the filter in messages

    def __init__(self, params: OneEuroParams, per_item: bool, max_gap_s: float | None):
        self.params = params
        self.max_gap_s = max_gap_s
        self._cutoff = _AdaptiveCutoff(params, per_item)
        self._value: np.ndarray | None = None
        self._stamp: float | None = None
        self.last_alpha: np.ndarray | None = None  # the factor used by the latest update

    def reset(self) -> None:
        self._value = None
        self._stamp = None
        self.last_alpha = None
        self._cutoff.reset()

    def _filter(self, sample: np.ndarray, stamp: float) -> np.ndarray:
        """Filter one checked sample: it restarts the filter when it is the first, after a gap or when
        the stamp goes back; a repeated stamp returns the last output; otherwise ``_step``."""
        if self._value is not None and sample.shape != self._value.shape:
            raise ValueError(
                f"{self.kind} input shape changed from {self._value.shape} to {sample.shape}; "
                "call reset() before filtering a different signal"
            )
        dt = _stamp_step(self._stamp, stamp, self.max_gap_s)
        if dt is None or self._value is None:
            self.reset()
            self._value, self._stamp = sample.copy(), stamp
            self.last_alpha = np.ones((1,) * sample.ndim)
            return sample.copy()
        if dt == 0.0:
            return self._value.copy()
        self._value, self.last_alpha = self._step(self._value, sample, dt)
        self._stamp = stamp
        return self._value.copy()

    def _step(self, value: np.ndarray, sample: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """(new output, alpha) moving from the last output ``value`` towards ``sample`` after ``dt`` s."""
        raise NotImplementedError


class OneEuroFilter(_OneEuroBase):
    """One Euro filter over arrays of points (... x D; a flat vector counts as one point).

    per_point=True gives each point (last axis) its own cutoff from its own speed; False uses
    one cutoff for the whole array (see ``_speed``), keeping rigid/linear relations intact.
    """

    def __init__(self, params: OneEuroParams, per_point: bool = True, max_gap_s: float | None = None):
        super().__init__(params, per_point, max_gap_s)

    def __call__(self, x: np.ndarray | float, stamp: float) -> np.ndarray:
        """Filter one sample ``x`` (... x D) taken at ``stamp`` seconds; returns float64 ... x D."""
        return self._filter(_as_points(x), stamp)

    def _step(self, value: np.ndarray, sample: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
        alpha = self._cutoff.alpha((sample - value) / dt, dt)
        return value + alpha * (sample - value), alpha


class RotationOneEuroFilter(_OneEuroBase):
    """One Euro filter for rotations given as unit quaternions ... x 4 (x, y, z, w).

    Speed = |angular velocity| (rad/s) of ``q_hat^-1 q``; update = slerp from ``q_hat`` towards
    ``q`` by the adaptive alpha, done as ``q_hat * exp(alpha * log(q_hat^-1 q))``. The output is
    renormalised and kept in the hemisphere of the previous output (sign-continuous).
    """

    kind = "rotation filter"

    def __init__(self, params: OneEuroParams, per_rotation: bool = True, max_gap_s: float | None = None):
        super().__init__(params, per_rotation, max_gap_s)

    def __call__(self, quats: np.ndarray, stamp: float) -> np.ndarray:
        """Filter quaternions ``quats`` (... x 4, any sign, roughly unit) taken at ``stamp``."""
        q = np.asarray(quats, dtype=np.float64)
        if q.ndim == 0 or q.shape[-1] != QUAT_DIM:
            raise ValueError(f"quaternions must have shape ... x 4 (x, y, z, w), got {q.shape}")
        return self._filter(_normalise_quats(q), stamp)

    def _step(self, value: np.ndarray, sample: np.ndarray, dt: float) -> tuple[np.ndarray, np.ndarray]:
        q = align_hemisphere(sample, value)
        delta = relative_rotvec(value, q)  # ... x 3, body frame of q_hat
        alpha = self._cutoff.alpha(delta / dt, dt)
        return slerp_by_rotvec(value, delta, alpha), alpha


def relative_rotvec(q_from: np.ndarray, q_to: np.ndarray) -> np.ndarray:
    """Rotation vector (... x 3, radians) of ``q_from^-1 q_to`` for quaternions ... x 4."""
    shape = q_from.shape[:-1]
    r_from = Rotation.from_quat(q_from.reshape(-1, QUAT_DIM))
    r_to = Rotation.from_quat(q_to.reshape(-1, QUAT_DIM))
    # scipy returns the shortest rotation vector (angle <= pi) whatever the quaternion sign
    return (r_from.inv() * r_to).as_rotvec().reshape(*shape, 3)


def slerp_by_rotvec(q_from: np.ndarray, delta: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """``q_from * exp(alpha * delta)`` (... x 4), i.e. slerp towards ``q_from * exp(delta)``,
    renormalised and sign-aligned with ``q_from``."""
    shape = q_from.shape
    step = Rotation.from_rotvec((np.broadcast_to(alpha, delta.shape) * delta).reshape(-1, 3))
    out = (Rotation.from_quat(q_from.reshape(-1, QUAT_DIM)) * step).as_quat().reshape(shape)
    return align_hemisphere(_normalise_quats(out), q_from)


def filter_sequence(
    points: np.ndarray, stamps: np.ndarray, params: OneEuroParams, per_point: bool = False
) -> np.ndarray:
    """Run a fresh One Euro filter over a recorded sequence.

    points: T x ... x D (e.g. T x 21 x 3 metres); stamps: (T,) seconds. Returns T x ... x D.
    per_point=False (default) matches ``HandFilter``: one cutoff per frame for the whole hand.
    """
    points = np.asarray(points, dtype=np.float64)
    stamps = np.asarray(stamps, dtype=np.float64).reshape(-1)
    if points.ndim < 1 or points.shape[0] != stamps.shape[0]:
        raise ValueError(f"need one stamp per frame, got {stamps.shape[0]} stamps for {points.shape}")
    filt = OneEuroFilter(params, per_point=per_point)
    return np.stack([filt(frame, float(t)) for frame, t in zip(points, stamps)]) if len(points) else points


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
    position_cutoff: _AdaptiveCutoff
    rotation_cutoff: _AdaptiveCutoff
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
        dt = None if state is None else _stamp_step(state.stamp, stamp, self.config.max_gap_s)
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
            position_cutoff=_AdaptiveCutoff(self.config.position_params(), per_point=False),
            rotation_cutoff=_AdaptiveCutoff(self.config.rotation_params(), per_point=False),
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
