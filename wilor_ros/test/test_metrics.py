"""FreiHAND-style and temporal metrics on cases with known answers; Procrustes against scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import procrustes as scipy_procrustes
from scipy.spatial.transform import Rotation

from wilor_ros.core.temporal.filtering import FilterConfig
from wilor_ros.tools import metrics
from wilor_ros.tools.eval_temporal import run_on_npz


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def _hand_like(rng: np.random.Generator, n: int = 21) -> np.ndarray:
    """n x 3 points of hand size (about 10 cm) half a metre in front of the camera."""
    return rng.normal(scale=0.04, size=(n, 3)) + np.array([0.05, -0.02, 0.5])


def test_procrustes_matches_scipy_on_noisy_similarity(rng: np.random.Generator) -> None:
    gt = _hand_like(rng)
    rot = Rotation.from_rotvec([0.4, -1.1, 0.7]).as_matrix()
    pred = 1.3 * gt @ rot.T + np.array([0.2, -0.1, 0.3]) + rng.normal(scale=0.004, size=gt.shape)

    aligned, transform = metrics.procrustes_align(pred, gt)
    std_gt, std_pred_scipy, disparity = scipy_procrustes(gt, pred)

    # scipy centres both sets and scales them to unit Frobenius norm, then aligns pred onto gt;
    # our alignment expressed in the same standardised frame must give the same points
    centre, norm = gt.mean(axis=0), np.linalg.norm(gt - gt.mean(axis=0))
    ours_std = (aligned - centre) / norm
    np.testing.assert_allclose(ours_std, std_pred_scipy, atol=1e-9)
    np.testing.assert_allclose(np.sum((ours_std - std_gt) ** 2), disparity, rtol=1e-9)
    assert np.linalg.det(transform.rotation) == pytest.approx(1.0)
    assert transform.scale == pytest.approx(1 / 1.3, rel=0.02)


def test_procrustes_never_reflects_unlike_scipy(rng: np.random.Generator) -> None:
    gt = _hand_like(rng)
    mirrored = gt * np.array([-1.0, 1.0, 1.0])  # a left hand offered as a right hand
    _, _, disparity = scipy_procrustes(gt, mirrored)
    assert disparity < 1e-20  # scipy's orthogonal Procrustes happily reflects

    aligned, transform = metrics.procrustes_align(mirrored, gt)
    assert np.linalg.det(transform.rotation) == pytest.approx(1.0)
    assert metrics.pa_mpjpe_mm(mirrored, gt) > 5.0
    # still the best proper alignment: better than leaving the mirrored points in place
    assert np.mean(np.linalg.norm(aligned - gt, axis=1)) < np.mean(np.linalg.norm(mirrored - gt, axis=1))


def test_known_similarity_is_removed_exactly(rng: np.random.Generator) -> None:
    gt = _hand_like(rng, 778)
    rot = Rotation.from_euler("xyz", [30, -50, 120], degrees=True).as_matrix()
    pred = 0.8 * gt @ rot.T + np.array([-0.3, 0.05, 0.9])
    assert metrics.mpjpe_mm(pred, gt) > 100.0
    assert metrics.pa_mpvpe_mm(pred, gt) == pytest.approx(0.0, abs=1e-9)
    _, transform = metrics.procrustes_align(pred, gt)
    assert transform.scale == pytest.approx(1 / 0.8)
    np.testing.assert_allclose(transform.rotation, rot.T, atol=1e-12)
    np.testing.assert_allclose(transform.apply(pred), gt, atol=1e-12)


def test_identical_and_known_offset(rng: np.random.Generator) -> None:
    gt = _hand_like(rng)
    assert metrics.mpjpe_mm(gt, gt) == 0.0
    offset = gt + np.array([0.003, 0.004, 0.0])  # 5 mm
    assert metrics.mpjpe_mm(offset, gt) == pytest.approx(5.0)
    assert metrics.pa_mpjpe_mm(offset, gt) == pytest.approx(0.0, abs=1e-9)
    np.testing.assert_allclose(metrics.point_errors_mm(offset, gt), 5.0)


def test_procrustes_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="N x 3"):
        metrics.procrustes_align(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="coincide"):
        metrics.procrustes_align(np.ones((5, 3)), np.arange(15.0).reshape(5, 3))
    with pytest.raises(ValueError, match="must both be"):
        metrics.mpjpe_mm(np.zeros((21, 3)), np.zeros((20, 3)))


def test_f_score_thresholds() -> None:
    # points 5 cm apart: the nearest neighbour of a shifted point is its own counterpart
    grid = np.stack(np.meshgrid(*[np.arange(4) * 0.05] * 3), axis=-1).reshape(-1, 3)
    shifted = grid + np.array([0.010, 0.0, 0.0])  # 10 mm
    assert metrics.f_score(grid, grid, 5.0) == 1.0
    assert metrics.f_score(shifted, grid, 5.0) == 0.0
    assert metrics.f_score(shifted, grid, 15.0) == 1.0
    half = grid.copy()
    half[::2] += np.array([0.010, 0.0, 0.0])
    assert metrics.f_score(half, grid, 5.0) == pytest.approx(0.5)
    # precision and recall differ: extra far-away predicted points lower only the precision
    extra = np.concatenate([grid, grid[:16] + 1.0])
    precision, recall = len(grid) / len(extra), 1.0
    assert metrics.f_score(extra, grid, 5.0) == pytest.approx(2 * precision * recall / (precision + recall))


def test_pck_auc_known_errors() -> None:
    assert metrics.auc_pck(np.zeros(21)) == pytest.approx(1.0)
    assert metrics.auc_pck(np.full(21, 60.0)) == 0.0
    # every error at 25 mm: PCK is a step at mid-range, so the area is half (up to the grid)
    step = metrics.PCK_MAX_MM / (metrics.PCK_NUM_THRESHOLDS - 1)
    assert metrics.auc_pck(np.full(21, 25.0)) == pytest.approx(0.5, abs=step / metrics.PCK_MAX_MM)
    curve = metrics.pck_curve(np.array([1.0, 30.0]))
    assert curve[0] == 0.0 and curve[-1] == 1.0
    assert set(np.unique(curve)) == {0.0, 0.5, 1.0}


def test_pck_2d_relative_to_box() -> None:
    gt = np.zeros((4, 2))
    pred = np.array([[5.0, 0.0], [15.0, 0.0], [0.0, 9.9], [0.0, 30.0]])
    box = np.array([10.0, 10.0, 110.0, 60.0])  # longer side 100 px -> 10 px at ratio 0.1
    assert metrics.pck_2d(pred, gt, box) == pytest.approx(0.5)
    assert metrics.pck_2d(pred, gt, box, ratio=0.2) == pytest.approx(0.75)
    assert metrics.pck_2d(pred, gt, box, visible=np.array([True, False, True, False])) == 1.0
    with pytest.raises(ValueError, match="XYXY"):
        metrics.pck_2d(pred, gt, np.array([10.0, 10.0, 5.0, 60.0]))


def test_evaluate_and_aggregate(rng: np.random.Generator) -> None:
    joints, verts = _hand_like(rng), _hand_like(rng, 778)
    perfect = metrics.evaluate_sample(joints, joints, verts, verts)
    assert perfect.pa_mpjpe_mm == pytest.approx(0.0, abs=1e-9)
    assert perfect.f_score_5mm == 1.0 and perfect.f_score_15mm == 1.0
    off = metrics.evaluate_sample(
        joints + 0.002, joints, verts + rng.normal(scale=0.004, size=verts.shape), verts
    )
    assert off.mpjpe_mm == pytest.approx(2.0 * np.sqrt(3))
    assert off.pa_mpjpe_mm == pytest.approx(0.0, abs=1e-9)
    assert 0.0 < off.f_score_5mm < off.f_score_15mm <= 1.0
    summary = metrics.aggregate([perfect, off])
    assert summary.num_samples == 2
    assert summary.pa_mpvpe_mm == pytest.approx(np.mean([perfect.pa_mpvpe_mm, off.pa_mpvpe_mm]))
    assert summary.auc_joints == pytest.approx(1.0, abs=0.01)  # float-level errors miss only t = 0
    assert 0.5 < summary.auc_vertices < 1.0
    joints_only = metrics.aggregate([metrics.evaluate_sample(joints, joints)])
    assert joints_only.pa_mpvpe_mm is None and joints_only.auc_vertices is None
    with pytest.raises(ValueError, match="both"):
        metrics.evaluate_sample(joints, joints, verts, None)


def test_jitter_units_with_uneven_stamps(rng: np.random.Generator) -> None:
    stamps = np.cumsum(rng.uniform(0.02, 0.05, size=40))
    accel = np.array([0.5, -1.0, 2.0])  # m/s^2
    points = (0.5 * stamps[:, None] ** 2 * accel)[:, None, :] + np.zeros((1, 21, 3))
    # the non-uniform central difference is exact on a quadratic
    assert metrics.jitter(points, stamps) == pytest.approx(np.linalg.norm(accel) * 1000.0)
    line = (stamps[:, None] * np.array([0.3, 0.0, 0.1]))[:, None, :] + np.zeros((1, 21, 3))
    assert metrics.jitter(line, stamps) == pytest.approx(0.0, abs=1e-6)
    frames = (np.arange(10.0) ** 2)[:, None, None] * np.array([0.001, 0.0, 0.0])  # mm per frame^2 = 2
    assert metrics.jitter(frames) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="increasing"):
        metrics.jitter(points, stamps[::-1])


def test_per_frame_errors() -> None:
    gt = np.zeros((5, 21, 3))
    pred = gt.copy()
    pred[2] += np.array([0.0, 0.0, 0.010])
    np.testing.assert_allclose(metrics.per_frame_errors_mm(pred, gt), [0, 0, 10, 0, 0])
    assert metrics.mpfje_mm(pred, gt) == pytest.approx(2.0)
    assert metrics.mpfve_mm(np.ones((3, 778, 3)) * 0.001, np.zeros((3, 778, 3))) == pytest.approx(np.sqrt(3))


def test_lag_from_cross_correlation(rng: np.random.Generator) -> None:
    fps, frames = 30.0, 200
    stamps = np.arange(frames) / fps

    def signal(t: np.ndarray) -> np.ndarray:
        return np.stack(
            [0.1 * np.sin(2.1 * t) + 0.03 * np.sin(7.3 * t), 0.05 * np.cos(3.7 * t), 0 * t], axis=-1
        )

    reference = signal(stamps)[:, None, :]
    for delay_frames in (0.0, 3.0, 2.5):
        delayed = signal(stamps - delay_frames / fps)[:, None, :]
        lag = metrics.estimate_lag(delayed, reference, stamps)
        assert lag.frames == pytest.approx(delay_frames, abs=0.15)
        assert lag.seconds == pytest.approx(delay_frames / fps, abs=0.15 / fps)
        assert lag.correlation > 0.95
    ahead = signal(stamps + 2.0 / fps)[:, None, :]
    assert metrics.estimate_lag(ahead, reference, stamps).frames == pytest.approx(-2.0, abs=0.15)


def test_ramp_lag() -> None:
    stamps = np.cumsum(np.full(50, 1 / 30))
    velocity = np.array([0.3, -0.1, 0.05])
    reference = (stamps[:, None] * velocity)[:, None, :]
    output = ((stamps - 0.04)[:, None] * velocity)[:, None, :]
    lag = metrics.ramp_lag(output, reference, stamps)
    assert lag.seconds == pytest.approx(0.04)
    assert lag.frames == pytest.approx(1.2)
    with pytest.raises(ValueError, match="does not move"):
        metrics.ramp_lag(output, np.zeros_like(reference), stamps)


def test_eval_temporal_on_recorded_npz(tmp_path, rng: np.random.Generator) -> None:

    frames = 150
    stamps = np.cumsum(rng.uniform(0.025, 0.042, size=frames))
    motion = 0.03 * np.sin(2 * np.pi * 0.25 * stamps)[:, None, None] * np.array([1.0, 0.5, 0.0])
    gt = _hand_like(rng)[None] + motion
    gt_vertices = _hand_like(rng, 778)[None] + motion
    noisy = gt + rng.normal(scale=0.003, size=gt.shape)
    noisy_vertices = gt_vertices + rng.normal(scale=0.003, size=gt_vertices.shape)
    path = tmp_path / "sequence.npz"
    np.savez(
        path,
        stamps=stamps,
        keypoints_3d=noisy,
        gt_keypoints_3d=gt,
        vertices=noisy_vertices,
        gt_vertices=gt_vertices,
    )
    report = run_on_npz(path)
    assert report.num_frames == frames
    assert report.raw.mpfje_mm == pytest.approx(metrics.mpfje_mm(noisy, gt))
    assert report.raw.jitter_mm_s2 == pytest.approx(metrics.jitter(noisy, stamps))
    assert report.filtered is not None
    assert report.filtered.jitter_mm_s2 * 3 < report.raw.jitter_mm_s2
    assert report.filtered.mpfje_mm < report.raw.mpfje_mm
    assert report.filtered.mpfve_mm < report.raw.mpfve_mm
    assert report.gt_jitter_mm_s2 < report.filtered.jitter_mm_s2
    # noise alone does not delay; velocity differencing of noisy data blurs the peak (~1 frame)
    assert abs(report.raw.lag_frames) < 1.0
    # a slow motion keeps the cutoff near min_cutoff: the lag is at most its time constant
    assert 0.0 < report.filtered.lag_s <= 1.0 / (2 * np.pi * FilterConfig().min_cutoff)

    # without ground truth: lag of the filtered output against the raw one
    np.savez(tmp_path / "raw_only.npz", stamps=stamps, keypoints_3d=noisy)
    raw_only = run_on_npz(tmp_path / "raw_only.npz")
    assert raw_only.raw.mpfje_mm is None and raw_only.raw.lag_s is None
    assert raw_only.filtered is not None and raw_only.filtered.lag_s is not None

    np.savez(tmp_path / "bad.npz", stamps=stamps)
    with pytest.raises(ValueError, match="keypoints_3d"):
        run_on_npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "short.npz", stamps=stamps[:3], keypoints_3d=noisy[:3])
    with pytest.raises(ValueError, match="at least"):
        run_on_npz(tmp_path / "short.npz")
    with pytest.raises(ValueError, match="not found"):
        run_on_npz(tmp_path / "missing.npz")
