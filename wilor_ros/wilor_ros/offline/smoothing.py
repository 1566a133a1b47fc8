"""Zero-lag smoothing of whole trajectories: a two-sided (Rauch-Tung-Striebel) Kalman smoother.

Every coordinate is modelled as a constant-velocity process (state = position, velocity) with
white-noise acceleration, observed with white noise. The forward Kalman filter followed by the
backward RTS pass gives the minimum-variance estimate from the WHOLE sequence: it has no lag
(it is symmetric in time), reproduces constant-velocity motion exactly and follows the real
stamps (irregular frame spacing, dropped frames). Only the ratio of the process noise q to the
measurement noise r matters; it is set from a cutoff frequency f_c:

    q / r = (2 pi f_c)^4

which places the filter's closed-loop natural frequency at f_c (the steady-state Kalman filter
of a double integrator has sqrt(2)-damped poles at (q / r)^(1/4) rad/s); the two-sided
smoother attenuates somewhat more. Below f_c motion passes, above it jitter is removed.

The gains depend only on the stamps and f_c, not on the data, so ONE linear smoother applies
to every coordinate of a hand (joints, vertices, cam_t, betas, quaternion components): affine
relations between them survive exactly (e.g. the joints stay the same combination of the
vertices, and keypoints_3d - cam_t stays the model-frame hand). Written by hand because the
Python Kalman libraries (filterpy, pykalman) are unmaintained and run one full state per
coordinate; here the 2 x 2 recursion is shared and vectorised across the D coordinates.

Rotations are smoothed on the unit-quaternion sphere: the quaternions of a track are first made
sign-continuous (each in the hemisphere of the previous one, q and -q being the same rotation),
smoothed component-wise with the same linear smoother, then renormalised. For the small
rotation spread inside the smoother's window this is the chordal (projected Euclidean) mean of
nearby rotations; it never touches Euler angles and is exact for a constant rotation.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wilor_ros.core.temporal.one_euro import align_hemisphere

QUAT_DIM = 4
# Velocity variance of the initial state relative to the measurement noise: "unknown" (diffuse
# prior), so the first frames are not pulled towards zero velocity.
_DIFFUSE_VELOCITY = 1e12
CHUNK_ROWS = 512  # rows read from a (possibly memory-mapped) input at a time
IN_MEMORY_STATE_BYTES = 256 * 2**20  # larger filtered states go to memmaps in a scratch folder


@dataclass(frozen=True)
class RtsGains:
    """The data-independent part of the smoother for T stamps.

    dt: (T-1,) seconds between frames; gain: T x 2 Kalman gains (position, velocity);
    back: (T-1) x 2 x 2 RTS smoother gains C_k = P_k F^T (P_{k+1|k})^-1.
    """

    dt: np.ndarray
    gain: np.ndarray
    back: np.ndarray


def rts_gains(stamps_s: np.ndarray, cutoff_hz: float) -> RtsGains:
    """Gains of the constant-velocity RTS smoother for strictly increasing ``stamps_s`` (T,)."""
    stamps = np.asarray(stamps_s, dtype=np.float64).reshape(-1)
    if not (math.isfinite(cutoff_hz) and cutoff_hz > 0):
        raise ValueError(f"smoothing cutoff must be a positive frequency in Hz, got {cutoff_hz}")
    dt = np.diff(stamps)
    if np.any(dt <= 0) or not np.all(np.isfinite(stamps)):
        raise ValueError("smoothing needs finite, strictly increasing stamps")
    q = (2.0 * math.pi * cutoff_hz) ** 4  # with r = 1
    count = len(stamps)
    gain = np.zeros((count, 2))
    back = np.zeros((max(count - 1, 0), 2, 2))
    cov = np.array([[1.0, 0.0], [0.0, _DIFFUSE_VELOCITY]])
    gain[0] = [1.0, 0.0]  # the first position is taken as measured, velocity stays unknown
    for k in range(1, count):
        h = dt[k - 1]
        transition = np.array([[1.0, h], [0.0, 1.0]])
        noise = q * np.array([[h**3 / 3.0, h**2 / 2.0], [h**2 / 2.0, h]])
        predicted = transition @ cov @ transition.T + noise
        back[k - 1] = cov @ transition.T @ np.linalg.inv(predicted)
        k_gain = predicted[:, 0] / (predicted[0, 0] + 1.0)
        gain[k] = k_gain
        cov = predicted - np.outer(k_gain, predicted[0, :])
    return RtsGains(dt=dt, gain=gain, back=back)


def rts_smooth(
    values: np.ndarray, gains: RtsGains, out: np.ndarray | None = None, scratch: Path | None = None
) -> np.ndarray:
    """Smooth T x D ``values`` (any array-like with row slicing, e.g. a memmap) along T.

    Returns (or fills) ``out`` T x D. The filtered states (2 x T x D float64) stay in memory up
    to ``IN_MEMORY_STATE_BYTES``, beyond that in memmaps under ``scratch`` (default: the system
    temporary folder), so memory stays bounded for long tracks.
    """
    count = len(gains.gain)
    if len(values) != count:
        raise ValueError(f"{len(values)} rows for {count} stamps")
    width = int(np.prod(values.shape[1:])) if count else 0
    out = np.empty((count, width)) if out is None else out
    if count == 0:
        return out
    with tempfile.TemporaryDirectory(dir=scratch) as folder:
        position, velocity = (scratch_array(Path(folder) / name, count, width) for name in ("p", "v"))
        _forward_backward(values, gains, position, velocity, out)
    return out


def scratch_array(path: Path, count: int, width: int) -> np.ndarray:
    """A count x width float64 array: in memory when small, else a memmap at ``path``."""
    if count * width * 8 <= IN_MEMORY_STATE_BYTES // 2:
        return np.empty((count, width))
    return np.memmap(path, dtype=np.float64, mode="w+", shape=(count, width))


def _forward_backward(
    values: np.ndarray, gains: RtsGains, position: np.ndarray, velocity: np.ndarray, out: np.ndarray
) -> None:
    count, width = position.shape
    # ---- forward Kalman filter
    p = v = np.zeros(width)
    for start in range(0, count, CHUNK_ROWS):
        block = np.asarray(values[start : start + CHUNK_ROWS], dtype=np.float64).reshape(-1, width)
        for offset, z in enumerate(block):
            k = start + offset
            if k == 0:
                p, v = z.copy(), np.zeros(width)
            else:
                p_pred = p + gains.dt[k - 1] * v
                innovation = z - p_pred
                p = p_pred + gains.gain[k, 0] * innovation
                v = v + gains.gain[k, 1] * innovation
            position[k], velocity[k] = p, v
    # ---- backward RTS pass: x_k += C_k (xs_{k+1} - F x_k)
    ps, vs = position[-1].copy(), velocity[-1].copy()
    out[count - 1] = ps
    for k in range(count - 2, -1, -1):
        p, v = position[k], velocity[k]
        dp = ps - (p + gains.dt[k] * v)
        dv = vs - v
        c = gains.back[k]
        ps = p + c[0, 0] * dp + c[0, 1] * dv
        vs = v + c[1, 0] * dp + c[1, 1] * dv
        out[k] = ps


def continuous_quaternions(quats: np.ndarray) -> np.ndarray:
    """T x ... x 4 quaternions with each frame moved to the hemisphere of the previous one."""
    out = np.array(quats, dtype=np.float64, copy=True)
    for k in range(1, len(out)):
        out[k] = align_hemisphere(out[k], out[k - 1])
    return out


def normalise_quaternions(quats: np.ndarray) -> np.ndarray:
    """Unit quaternions (... x 4); the smoother's output is nearly unit already."""
    return quats / np.linalg.norm(quats, axis=-1, keepdims=True)
