"""The One Euro filter (Casiez, Roussel, Vogel, CHI 2012) on points and on unit quaternions, driven by
timestamps; filtering.HandFilter applies it to whole hands (see filtering.py for the maths
and the timestamp rules)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

QUAT_DIM = 4  # quaternions are (x, y, z, w), scipy's scalar-last convention
_MIN_QUAT_NORM = 1e-8


# ------------------------------------------------------------------------------ parameters
@dataclass(frozen=True)
class OneEuroParams:
    """Parameters of one One Euro filter (their meaning: filtering.py module docstring)."""

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


# ------------------------------------------------------------------------------ helpers
def smoothing_factor(cutoff_hz: np.ndarray | float, dt: float) -> np.ndarray:
    """Exponential-smoothing factor alpha in (0, 1] of a first-order low-pass at ``cutoff_hz``
    sampled with period ``dt`` seconds: alpha = 1 / (1 + tau / dt), tau = 1 / (2 pi cutoff)."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz, dtype=np.float64))
    return 1.0 / (1.0 + tau / dt)


def stamp_step(last_stamp: float | None, stamp: float, max_gap_s: float | None) -> float | None:
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


class AdaptiveCutoff:
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

    def __init__(self, params: OneEuroParams, per_item: bool, max_gap_s: float | None) -> None:
        self.params = params
        self.max_gap_s = max_gap_s
        self._cutoff = AdaptiveCutoff(params, per_item)
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
        dt = stamp_step(self._stamp, stamp, self.max_gap_s)
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

    def __init__(self, params: OneEuroParams, per_point: bool = True, max_gap_s: float | None = None) -> None:
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

    def __init__(
        self, params: OneEuroParams, per_rotation: bool = True, max_gap_s: float | None = None
    ) -> None:
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
