"""Accuracy and temporal metrics for 3D hand reconstruction (FreiHAND conventions).

Units: every input is in metres (camera or any common frame) or pixels for 2D; every 3D error
this module returns is in MILLIMETRES (``M_TO_MM``).

Per-frame accuracy (FreiHAND evaluation protocol, Zimmermann et al. ICCV 2019):

* ``procrustes_align``: the similarity transform (scale, proper rotation, translation) that
  best maps the prediction onto the ground truth in the least-squares sense (Umeyama 1991).
  The rotation is constrained to det = +1: a mirrored hand must NOT be aligned onto a real one.
* PA-MPJPE / PA-MPVPE: mean joint / vertex distance after that alignment.
* F-score at 5 mm and 15 mm: on the aligned point sets, precision = fraction of predicted points
  whose nearest ground-truth point is closer than the threshold, recall = the converse; F is
  their harmonic mean.
* AUC of the 3D PCK curve: PCK(t) = fraction of per-point errors below t, for ``PCK_THRESHOLDS_MM``
  (100 thresholds evenly from 0 to 50 mm, like FreiHAND's evaluation script); the area under the
  curve is normalised by the 50 mm range, so it lies in [0, 1].
* 2D PCK: fraction of keypoints whose pixel error is below ``ratio * max(box width, height)``.

Temporal metrics (for sequences, T frames):

* jitter: mean norm of the acceleration (second derivative) of each point; in mm/s^2 when
  timestamps are given (finite differences on the actual, possibly uneven, dt), otherwise in
  mm/frame^2 (plain second difference).
* MPFJE / MPFVE: mean per-frame joint / vertex position error against ground truth (mm), no
  alignment: what a robot following the output would be off by.
* lag: the time shift maximising the cross-correlation of the velocities of an output and a
  reference (both resampled on a uniform grid); for a constant-speed ramp, where velocities are
  flat and correlation is undefined, ``ramp_lag`` measures the shift directly. Differencing
  amplifies noise: on raw, noisy outputs the velocity correlation is weak (see
  ``LagEstimate.correlation``) and the estimate is only good to about one frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.integrate import trapezoid
from scipy.spatial import cKDTree

M_TO_MM = 1000.0
F_SCORE_THRESHOLDS_MM = (5.0, 15.0)
PCK_MAX_MM = 50.0
PCK_NUM_THRESHOLDS = 100
PCK_THRESHOLDS_MM = np.linspace(0.0, PCK_MAX_MM, PCK_NUM_THRESHOLDS)
DEFAULT_PCK_2D_RATIO = 0.1  # of the box's longer side
_EPS = 1e-12


# ------------------------------------------------------------------------------ alignment
@dataclass(frozen=True)
class SimilarityTransform:
    """x -> scale * rotation @ x + translation (applied to row points N x 3)."""

    scale: float
    rotation: np.ndarray  # 3 x 3, det = +1
    translation: np.ndarray  # (3,)

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Transform N x 3 points."""
        return self.scale * np.asarray(points) @ self.rotation.T + self.translation


def _check_points(pred: np.ndarray, gt: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape or pred.ndim < 2 or pred.shape[-1] not in (2, 3):
        raise ValueError(
            f"{what}: prediction and ground truth must both be ... x N x 2|3, got {pred.shape}, {gt.shape}"
        )
    if not (np.all(np.isfinite(pred)) and np.all(np.isfinite(gt))):
        raise ValueError(f"{what}: inputs contain NaN or infinite values")
    return pred, gt


def procrustes_align(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, SimilarityTransform]:
    """Align ``pred`` (N x 3) onto ``gt`` (N x 3) with the best similarity transform.

    Written with numpy's SVD (Umeyama's closed form) rather than scipy.spatial.procrustes
    because scipy standardises both sets and allows reflections, while the FreiHAND metric
    needs the transform applied to the prediction in the ground truth's units and a proper
    rotation. Returns (aligned prediction N x 3, transform).
    """
    pred, gt = _check_points(pred, gt, "procrustes_align")
    if pred.ndim != 2 or pred.shape[1] != 3 or pred.shape[0] < 3:
        raise ValueError(f"procrustes_align needs N x 3 points with N >= 3, got {pred.shape}")
    mu_pred, mu_gt = pred.mean(axis=0), gt.mean(axis=0)
    x, y = pred - mu_pred, gt - mu_gt
    var_x = float(np.sum(x * x))
    if var_x < _EPS:
        raise ValueError("procrustes_align: the prediction's points all coincide; no scale can be fitted")
    # maximise trace(R^T Y^T X): SVD of the 3 x 3 cross-covariance
    u, s, vt = np.linalg.svd(y.T @ x)
    d = np.ones(3)
    d[2] = np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0  # flip the weakest axis, never reflect
    rotation = (u * d) @ vt
    scale = float(np.sum(s * d) / var_x)
    translation = mu_gt - scale * rotation @ mu_pred
    transform = SimilarityTransform(scale, rotation, translation)
    return transform.apply(pred), transform


# ------------------------------------------------------------------------------ per sample
def point_errors_mm(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Euclidean distance of corresponding points (... x N x 3 metres) in mm: ... x N."""
    pred, gt = _check_points(pred, gt, "point_errors_mm")
    return np.linalg.norm(pred - gt, axis=-1) * M_TO_MM


def mpjpe_mm(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean per-joint position error (mm), no alignment."""
    return float(np.mean(point_errors_mm(pred, gt)))


def pa_errors_mm(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Per-point errors (N,) in mm after Procrustes alignment of pred onto gt."""
    aligned, _ = procrustes_align(pred, gt)
    return point_errors_mm(aligned, gt)


def pa_mpjpe_mm(pred_joints: np.ndarray, gt_joints: np.ndarray) -> float:
    """PA-MPJPE (mm) of 21 x 3 (or any N x 3) joints."""
    return float(np.mean(pa_errors_mm(pred_joints, gt_joints)))


def pa_mpvpe_mm(pred_vertices: np.ndarray, gt_vertices: np.ndarray) -> float:
    """PA-MPVPE (mm) of 778 x 3 vertices."""
    return float(np.mean(pa_errors_mm(pred_vertices, gt_vertices)))


def f_score(pred: np.ndarray, gt: np.ndarray, threshold_mm: float) -> float:
    """FreiHAND F-score of two point sets (N x 3 and M x 3, metres, already aligned).

    Distances are point-to-nearest-point in each direction (cKDTree), not correspondences.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if (
        pred.ndim != 2
        or gt.ndim != 2
        or pred.shape[1] != 3
        or gt.shape[1] != 3
        or not len(pred)
        or not len(gt)
    ):
        raise ValueError(f"f_score needs two non-empty N x 3 point sets, got {pred.shape}, {gt.shape}")
    if threshold_mm <= 0:
        raise ValueError(f"f_score threshold must be positive mm, got {threshold_mm}")
    threshold_m = threshold_mm / M_TO_MM
    pred_to_gt, _ = cKDTree(gt).query(pred)
    gt_to_pred, _ = cKDTree(pred).query(gt)
    precision = float(np.mean(pred_to_gt < threshold_m))
    recall = float(np.mean(gt_to_pred < threshold_m))
    if precision + recall == 0.0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def pck_curve(errors_mm: np.ndarray, thresholds_mm: np.ndarray = PCK_THRESHOLDS_MM) -> np.ndarray:
    """PCK for each threshold: fraction of ``errors_mm`` (any shape) <= threshold."""
    errors = np.asarray(errors_mm, dtype=np.float64).reshape(-1)
    if errors.size == 0:
        raise ValueError("pck_curve needs at least one error")
    return np.mean(errors[None, :] <= np.asarray(thresholds_mm, dtype=np.float64)[:, None], axis=1)


def auc_pck(errors_mm: np.ndarray, thresholds_mm: np.ndarray = PCK_THRESHOLDS_MM) -> float:
    """Area under the PCK curve over ``thresholds_mm``, normalised by their range (in [0, 1])."""
    thresholds = np.asarray(thresholds_mm, dtype=np.float64)
    span = float(thresholds[-1] - thresholds[0])
    if thresholds.ndim != 1 or len(thresholds) < 2 or span <= 0:
        raise ValueError("auc_pck needs at least two increasing thresholds")
    return float(trapezoid(pck_curve(errors_mm, thresholds), thresholds) / span)


def pck_2d(
    pred_2d: np.ndarray,
    gt_2d: np.ndarray,
    box: np.ndarray,
    ratio: float = DEFAULT_PCK_2D_RATIO,
    visible: np.ndarray | None = None,
) -> float:
    """2D PCK: fraction of keypoints (N x 2 pixels) within ``ratio * max(w, h)`` of the
    ground-truth box (XYXY). ``visible`` (N,) bool restricts to annotated keypoints."""
    pred, gt = _check_points(pred_2d, gt_2d, "pck_2d")
    box = np.asarray(box, dtype=np.float64).reshape(-1)
    if box.shape != (4,) or box[2] <= box[0] or box[3] <= box[1]:
        raise ValueError(f"pck_2d needs an XYXY box with x2 > x1, y2 > y1, got {box.tolist()}")
    if ratio <= 0:
        raise ValueError(f"pck_2d ratio must be positive, got {ratio}")
    threshold = ratio * max(box[2] - box[0], box[3] - box[1])
    hits = np.linalg.norm(pred - gt, axis=-1) <= threshold
    if visible is not None:
        mask = np.asarray(visible, dtype=bool).reshape(-1)
        if mask.shape != hits.shape:
            raise ValueError(f"visible mask must have {hits.shape[0]} entries, got {mask.shape[0]}")
        if not mask.any():
            raise ValueError("pck_2d: no visible keypoint to evaluate")
        hits = hits[mask]
    return float(np.mean(hits))


@dataclass(frozen=True)
class SampleMetrics:
    """Metrics of one predicted hand against its ground truth (errors in mm)."""

    mpjpe_mm: float
    pa_mpjpe_mm: float
    pa_joint_errors_mm: np.ndarray  # (J,)
    pa_mpvpe_mm: float | None = None
    pa_vertex_errors_mm: np.ndarray | None = None  # (V,)
    f_score_5mm: float | None = None  # on aligned vertices (FreiHAND)
    f_score_15mm: float | None = None


@dataclass(frozen=True)
class AggregateMetrics:
    """Dataset-level metrics: means over samples, AUCs over all pooled per-point errors."""

    num_samples: int
    mpjpe_mm: float
    pa_mpjpe_mm: float
    auc_joints: float  # PA joint PCK, 0..50 mm
    pa_mpvpe_mm: float | None
    auc_vertices: float | None
    f_score_5mm: float | None
    f_score_15mm: float | None


def evaluate_sample(
    pred_joints: np.ndarray,
    gt_joints: np.ndarray,
    pred_vertices: np.ndarray | None = None,
    gt_vertices: np.ndarray | None = None,
) -> SampleMetrics:
    """FreiHAND metrics of one hand: joints J x 3 and optionally vertices V x 3 (metres).

    As in FreiHAND, joints and vertices are aligned independently; the F-scores use the
    aligned vertices.
    """
    joint_errors = pa_errors_mm(pred_joints, gt_joints)
    if (pred_vertices is None) != (gt_vertices is None):
        raise ValueError("give both predicted and ground-truth vertices, or neither")
    if pred_vertices is None or gt_vertices is None:
        return SampleMetrics(mpjpe_mm(pred_joints, gt_joints), float(joint_errors.mean()), joint_errors)
    aligned, _ = procrustes_align(pred_vertices, gt_vertices)
    gt_v = np.asarray(gt_vertices, dtype=np.float64)
    vertex_errors = point_errors_mm(aligned, gt_v)
    return SampleMetrics(
        mpjpe_mm=mpjpe_mm(pred_joints, gt_joints),
        pa_mpjpe_mm=float(joint_errors.mean()),
        pa_joint_errors_mm=joint_errors,
        pa_mpvpe_mm=float(vertex_errors.mean()),
        pa_vertex_errors_mm=vertex_errors,
        f_score_5mm=f_score(aligned, gt_v, F_SCORE_THRESHOLDS_MM[0]),
        f_score_15mm=f_score(aligned, gt_v, F_SCORE_THRESHOLDS_MM[1]),
    )


def aggregate(samples: Sequence[SampleMetrics]) -> AggregateMetrics:
    """Combine per-sample metrics; vertex metrics only when every sample has them."""
    if not samples:
        raise ValueError("aggregate needs at least one evaluated sample")
    joints = np.concatenate([s.pa_joint_errors_mm for s in samples])
    with_vertices = all(s.pa_vertex_errors_mm is not None for s in samples)
    vertex_errors = (
        np.concatenate([s.pa_vertex_errors_mm for s in samples if s.pa_vertex_errors_mm is not None])
        if with_vertices
        else None
    )

    def mean_of(values: list[float | None]) -> float | None:
        return float(np.mean([v for v in values if v is not None])) if with_vertices else None

    return AggregateMetrics(
        num_samples=len(samples),
        mpjpe_mm=float(np.mean([s.mpjpe_mm for s in samples])),
        pa_mpjpe_mm=float(np.mean([s.pa_mpjpe_mm for s in samples])),
        auc_joints=auc_pck(joints),
        pa_mpvpe_mm=mean_of([s.pa_mpvpe_mm for s in samples]),
        auc_vertices=auc_pck(vertex_errors) if vertex_errors is not None else None,
        f_score_5mm=mean_of([s.f_score_5mm for s in samples]),
        f_score_15mm=mean_of([s.f_score_15mm for s in samples]),
    )


# ------------------------------------------------------------------------------ temporal
def _check_sequence(
    points: np.ndarray, stamps: np.ndarray | None, what: str
) -> tuple[np.ndarray, np.ndarray | None]:
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim < 2:
        raise ValueError(f"{what}: need a T x ... x D sequence, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: sequence contains NaN or infinite values")
    if stamps is None:
        return arr, None
    t = np.asarray(stamps, dtype=np.float64).reshape(-1)
    if t.shape[0] != arr.shape[0]:
        raise ValueError(f"{what}: {t.shape[0]} stamps for {arr.shape[0]} frames")
    if np.any(np.diff(t) <= 0):
        raise ValueError(f"{what}: stamps must be strictly increasing (drop duplicated frames first)")
    return arr, t


def acceleration(points: np.ndarray, stamps: np.ndarray | None = None) -> np.ndarray:
    """Second derivative of a T x ... x D sequence: (T-2) x ... x D.

    With stamps (T,) seconds: non-uniform central difference (units/s^2); without: second
    difference per frame (units/frame^2)."""
    x, t = _check_sequence(points, stamps, "acceleration")
    if x.shape[0] < 3:
        raise ValueError("acceleration needs at least 3 frames")
    if t is None:
        return np.diff(x, n=2, axis=0)
    dt = np.diff(t).reshape((-1,) + (1,) * (x.ndim - 1))
    velocity = np.diff(x, axis=0) / dt
    return 2.0 * np.diff(velocity, axis=0) / (dt[1:] + dt[:-1])


def jitter(points: np.ndarray, stamps: np.ndarray | None = None) -> float:
    """Mean acceleration norm of a T x N x 3 (metres) sequence: mm/s^2 with stamps, else
    mm/frame^2."""
    return float(np.mean(np.linalg.norm(acceleration(points, stamps), axis=-1)) * M_TO_MM)


def per_frame_errors_mm(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Mean point error of each frame (T,) in mm for T x N x 3 sequences (no alignment)."""
    pred, gt = _check_points(pred, gt, "per_frame_errors_mm")
    if pred.ndim != 3:
        raise ValueError(f"per_frame_errors_mm needs T x N x 3 sequences, got {pred.shape}")
    return np.mean(np.linalg.norm(pred - gt, axis=-1), axis=1) * M_TO_MM


def mpfje_mm(pred_joints: np.ndarray, gt_joints: np.ndarray) -> float:
    """Mean per-frame joint error (mm) of T x 21 x 3 sequences."""
    return float(np.mean(per_frame_errors_mm(pred_joints, gt_joints)))


def mpfve_mm(pred_vertices: np.ndarray, gt_vertices: np.ndarray) -> float:
    """Mean per-frame vertex error (mm) of T x 778 x 3 sequences."""
    return float(np.mean(per_frame_errors_mm(pred_vertices, gt_vertices)))


def _uniform_resample(points: np.ndarray, stamps: np.ndarray) -> tuple[np.ndarray, float]:
    """Resample T x K values on a uniform grid with the median dt; returns (T' x K, dt)."""
    dt = float(np.median(np.diff(stamps)))
    grid = np.arange(stamps[0], stamps[-1] + 0.5 * dt, dt)
    grid = grid[grid <= stamps[-1]]
    return np.stack([np.interp(grid, stamps, col) for col in points.T], axis=1), dt


@dataclass(frozen=True)
class LagEstimate:
    """How far an output trails a reference (positive: output is late)."""

    seconds: float
    frames: float  # in units of the (median) frame period
    correlation: float  # normalised cross-correlation at the chosen shift (1 = same shape)


def estimate_lag(
    output: np.ndarray, reference: np.ndarray, stamps: np.ndarray | None = None, max_lag_frames: int = 15
) -> LagEstimate:
    """Lag of ``output`` behind ``reference`` (both T x ... x D, same frames) from the peak of
    the normalised cross-correlation of their velocities, refined to sub-frame by a parabola
    through the peak. Without stamps, frames are assumed uniform (1 frame = 1 s unit)."""
    out, t = _check_sequence(output, stamps, "estimate_lag")
    ref, _ = _check_sequence(reference, stamps, "estimate_lag")
    if out.shape != ref.shape:
        raise ValueError(f"estimate_lag: output {out.shape} and reference {ref.shape} differ")
    out2, ref2 = out.reshape(len(out), -1), ref.reshape(len(ref), -1)
    if t is None:
        dt = 1.0
    else:
        both, dt = _uniform_resample(np.concatenate([out2, ref2], axis=1), t)
        out2, ref2 = both[:, : out2.shape[1]], both[:, out2.shape[1] :]
    v_out, v_ref = np.diff(out2, axis=0), np.diff(ref2, axis=0)
    n = len(v_out)
    max_lag = min(max_lag_frames, n // 2)
    if max_lag < 1:
        raise ValueError("estimate_lag needs more frames than twice the largest lag searched")
    v_out = v_out - v_out.mean(axis=0)
    v_ref = v_ref - v_ref.mean(axis=0)
    shifts = np.arange(-max_lag, max_lag + 1)
    scores = np.empty(len(shifts))
    for i, k in enumerate(shifts):
        # output at frame f + k compared with reference at frame f
        a = v_out[max(k, 0) : n + min(k, 0)]
        b = v_ref[max(-k, 0) : n - max(k, 0)]
        denom = np.sqrt(np.sum(a * a) * np.sum(b * b))
        scores[i] = np.sum(a * b) / denom if denom > _EPS else 0.0
    best = int(np.argmax(scores))
    offset = 0.0
    if 0 < best < len(shifts) - 1:
        left, mid, right = scores[best - 1 : best + 2]
        curvature = left - 2.0 * mid + right
        if curvature < 0:
            offset = 0.5 * (left - right) / curvature
    frames = float(shifts[best] + offset)
    return LagEstimate(seconds=frames * dt, frames=frames, correlation=float(scores[best]))


def ramp_lag(
    output: np.ndarray, reference: np.ndarray, stamps: np.ndarray, settle_frames: int = 0
) -> LagEstimate:
    """Lag of ``output`` behind a constant-velocity ``reference`` (T x ... x D, metres),
    measured in steady state (frames from ``settle_frames`` on) as the shortfall along the
    motion divided by the speed: for a ramp, output(t) = reference(t - lag)."""
    out, t = _check_sequence(output, stamps, "ramp_lag")
    ref, _ = _check_sequence(reference, stamps, "ramp_lag")
    assert t is not None
    if out.shape != ref.shape:
        raise ValueError(f"ramp_lag: output {out.shape} and reference {ref.shape} differ")
    if not 0 <= settle_frames < len(t) - 1:
        raise ValueError(f"ramp_lag: settle_frames must leave at least 2 frames, got {settle_frames}")
    velocity = np.diff(ref, axis=0) / np.diff(t).reshape((-1,) + (1,) * (ref.ndim - 1))
    v = velocity[settle_frames:].reshape(-1, ref.shape[-1])
    shortfall = (ref - out)[settle_frames + 1 :].reshape(-1, ref.shape[-1])
    speed_sq = float(np.sum(v * v))
    if speed_sq < _EPS:
        raise ValueError("ramp_lag: the reference does not move")
    seconds = float(np.sum(shortfall * v) / speed_sq)
    dt = float(np.median(np.diff(t)))
    return LagEstimate(seconds=seconds, frames=seconds / dt, correlation=1.0)
