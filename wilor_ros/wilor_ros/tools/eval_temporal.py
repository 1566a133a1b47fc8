"""Temporal evaluation of a recorded hand sequence: jitter, error against ground truth, lag,
and what the One Euro filter (``core.temporal.filtering``) would change.

Recorded sequence file (``.npz``), one hand over T frames:

* ``stamps``           (T,)          seconds, strictly increasing
* ``keypoints_3d``     T x 21 x 3    metres, the raw output
* ``gt_keypoints_3d``  T x 21 x 3    metres, optional ground truth
* ``vertices`` / ``gt_vertices``  T x 778 x 3, optional (MPFVE when both are present)

Without ground truth, the lag of the filtered output is measured against the raw output.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wilor_ros.core.hand.constants import NUM_JOINTS, NUM_VERTICES
from wilor_ros.core.temporal.filtering import FilterConfig
from wilor_ros.core.temporal.one_euro import OneEuroFilter
from wilor_ros.tools import metrics

MIN_FRAMES = 8  # fewer frames give no meaningful acceleration or lag
MAX_LAG_FRAMES = 15


@dataclass(frozen=True)
class TemporalSequence:
    """One hand over T frames (metres, seconds); ground truth optional."""

    stamps: np.ndarray  # (T,)
    keypoints_3d: np.ndarray  # T x 21 x 3
    gt_keypoints_3d: np.ndarray | None = None  # T x 21 x 3
    vertices: np.ndarray | None = None  # T x 778 x 3
    gt_vertices: np.ndarray | None = None  # T x 778 x 3

    def __post_init__(self) -> None:
        stamps = np.asarray(self.stamps, dtype=np.float64).reshape(-1)
        frames = stamps.shape[0]
        if frames < MIN_FRAMES:
            raise ValueError(f"a temporal sequence needs at least {MIN_FRAMES} frames, got {frames}")
        if np.any(np.diff(stamps) <= 0):
            raise ValueError("sequence stamps must be strictly increasing (drop duplicated frames first)")
        object.__setattr__(self, "stamps", stamps)
        for name, count in (
            ("keypoints_3d", NUM_JOINTS),
            ("gt_keypoints_3d", NUM_JOINTS),
            ("vertices", NUM_VERTICES),
            ("gt_vertices", NUM_VERTICES),
        ):
            value = getattr(self, name)
            if value is None:
                continue
            arr = np.asarray(value, dtype=np.float64)
            if arr.shape != (frames, count, 3):
                raise ValueError(f"{name} must be {frames} x {count} x 3 (T x N x 3 metres), got {arr.shape}")
            object.__setattr__(self, name, arr)


@dataclass(frozen=True)
class TemporalMetrics:
    """Temporal quality of one joint sequence."""

    jitter_mm_s2: float  # mean acceleration norm, mm/s^2 (actual stamps)
    jitter_mm_frame2: float  # mean second-difference norm, mm/frame^2
    mpfje_mm: float | None  # against ground truth
    mpfve_mm: float | None
    lag_s: float | None  # behind the ground truth (or, for filtered output, the raw output)
    lag_frames: float | None


@dataclass(frozen=True)
class TemporalReport:
    num_frames: int
    duration_s: float
    raw: TemporalMetrics
    filtered: TemporalMetrics | None  # None when no filter was applied
    gt_jitter_mm_s2: float | None  # the ground truth's own jitter (motion, not noise)


def _metrics(
    joints: np.ndarray,
    sequence: TemporalSequence,
    vertices: np.ndarray | None,
    lag_reference: np.ndarray | None,
) -> TemporalMetrics:
    stamps = sequence.stamps
    lag = (
        metrics.estimate_lag(joints, lag_reference, stamps, MAX_LAG_FRAMES)
        if lag_reference is not None
        else None
    )
    gt = sequence.gt_keypoints_3d
    return TemporalMetrics(
        jitter_mm_s2=metrics.jitter(joints, stamps),
        jitter_mm_frame2=metrics.jitter(joints),
        mpfje_mm=metrics.mpfje_mm(joints, gt) if gt is not None else None,
        mpfve_mm=(
            metrics.mpfve_mm(vertices, sequence.gt_vertices)
            if vertices is not None and sequence.gt_vertices is not None
            else None
        ),
        lag_s=lag.seconds if lag is not None else None,
        lag_frames=lag.frames if lag is not None else None,
    )


def _filter_hand(sequence: TemporalSequence, config: FilterConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """Joints (T x 21 x 3) filtered with one cutoff per frame, and the vertices (T x 778 x 3)
    smoothed with that same factor, as ``HandFilter`` does."""
    joint_filter = OneEuroFilter(config.position_params(), per_point=False)
    joints = np.empty_like(sequence.keypoints_3d)
    vertices = None if sequence.vertices is None else np.empty_like(sequence.vertices)
    for i, stamp in enumerate(sequence.stamps):
        joints[i] = joint_filter(sequence.keypoints_3d[i], float(stamp))
        if vertices is not None and sequence.vertices is not None:
            assert joint_filter.last_alpha is not None
            alpha = float(np.max(joint_filter.last_alpha))
            previous = vertices[i - 1] if i else sequence.vertices[0]
            vertices[i] = previous + alpha * (sequence.vertices[i] - previous)
    return joints, vertices


def eval_temporal(sequence: TemporalSequence, filter_config: FilterConfig | None = None) -> TemporalReport:
    """Temporal metrics of the raw sequence and, with ``filter_config``, of its filtered copy
    (joints and vertices filtered with one shared cutoff per frame, as ``HandFilter`` does)."""
    gt = sequence.gt_keypoints_3d
    raw = _metrics(sequence.keypoints_3d, sequence, sequence.vertices, gt)
    filtered = None
    if filter_config is not None and filter_config.enabled:
        joints, vertices = _filter_hand(sequence, filter_config)
        reference = gt if gt is not None else sequence.keypoints_3d
        filtered = _metrics(joints, sequence, vertices, reference)
    return TemporalReport(
        num_frames=len(sequence.stamps),
        duration_s=float(sequence.stamps[-1] - sequence.stamps[0]),
        raw=raw,
        filtered=filtered,
        gt_jitter_mm_s2=metrics.jitter(gt, sequence.stamps) if gt is not None else None,
    )


def load_npz(path: str | Path) -> TemporalSequence:
    """Read a recorded sequence (see the module docstring for the keys)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"sequence file not found: {path}")
    with np.load(path, allow_pickle=False) as data:
        missing = [key for key in ("stamps", "keypoints_3d") if key not in data]
        if missing:
            raise ValueError(f"{path} lacks {missing}; a sequence needs 'stamps' and 'keypoints_3d'")
        optional = {key: data[key] for key in ("gt_keypoints_3d", "vertices", "gt_vertices") if key in data}
        return TemporalSequence(stamps=data["stamps"], keypoints_3d=data["keypoints_3d"], **optional)


def run_on_npz(path: str | Path, filter_config: FilterConfig | None = None) -> TemporalReport:
    """``eval_temporal`` of a recorded ``.npz`` sequence; ``filter_config`` defaults to the
    default ``FilterConfig`` (so the report shows raw vs filtered)."""
    return eval_temporal(load_npz(path), filter_config if filter_config is not None else FilterConfig())
