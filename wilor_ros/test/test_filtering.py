"""One Euro filtering: jitter vs lag with the default parameters, timestamps, quaternions,
per-track hand filtering."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from wilor_ros.core.hand.constants import FINGERTIP_JOINTS, FINGERTIP_VERTEX_IDS, NUM_VERTICES
from wilor_ros.core.temporal.filtering import FilterConfig, HandFilter
from wilor_ros.core.temporal.one_euro import (
    OneEuroFilter,
    OneEuroParams,
    RotationOneEuroFilter,
    filter_sequence,
)
from wilor_ros.core.types import CameraIntrinsics, HandEstimate, Side
from wilor_ros.tools import metrics

FPS = 30.0
NOISE_M = 0.003  # per-axis joint noise of a single-image reconstruction, metres
FRAMES = 300


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(3)


def _hand(rng: np.random.Generator) -> np.ndarray:
    return rng.normal(scale=0.03, size=(21, 3)) + np.array([0.0, 0.0, 0.5])


def _uneven_stamps(rng: np.random.Generator, frames: int = FRAMES) -> np.ndarray:
    """Variable frame rate around 30 fps: periods between 22 and 45 ms."""
    return np.cumsum(rng.uniform(0.022, 0.045, size=frames))


@pytest.mark.parametrize("uneven", [False, True])
@pytest.mark.parametrize(("amplitude_m", "frequency_hz"), [(0.0, 0.0), (0.03, 0.25)])
def test_default_filter_cuts_jitter_3x(
    rng: np.random.Generator, uneven: bool, amplitude_m: float, frequency_hz: float
) -> None:
    """A still hand and a hand hovering slowly (peak 5 cm/s): jitter drops at least 3x."""
    stamps = _uneven_stamps(rng) if uneven else np.arange(FRAMES) / FPS
    motion = amplitude_m * np.sin(2 * np.pi * frequency_hz * stamps)
    truth = _hand(rng)[None] + motion[:, None, None] * np.array([1.0, 0.5, 0.0])
    noisy = truth + rng.normal(scale=NOISE_M, size=truth.shape)
    filtered = filter_sequence(noisy, stamps, FilterConfig().position_params())
    assert metrics.jitter(noisy, stamps) / metrics.jitter(filtered, stamps) >= 3.0
    # smoothing must also bring the output closer to the truth, not just make it smooth
    assert metrics.mpfje_mm(filtered, truth) < metrics.mpfje_mm(noisy, truth)


@pytest.mark.parametrize("uneven", [False, True])
@pytest.mark.parametrize("speed_m_s", [0.2, 0.5, 1.5])
def test_default_filter_ramp_lag_within_one_frame(
    rng: np.random.Generator, uneven: bool, speed_m_s: float
) -> None:
    stamps = _uneven_stamps(rng) if uneven else np.arange(FRAMES) / FPS
    direction = np.array([0.6, -0.8, 0.0])
    ramp = _hand(rng)[None] + (speed_m_s * stamps)[:, None, None] * direction
    filtered = filter_sequence(ramp, stamps, FilterConfig().position_params())
    lag = metrics.ramp_lag(filtered, ramp, stamps, settle_frames=FRAMES // 3)
    frame_period = float(np.mean(np.diff(stamps)))
    assert 0.0 < lag.seconds <= frame_period
    # and the documented bound on the distance error: 1 / (2 pi beta)
    error_m = np.linalg.norm(filtered - ramp, axis=-1)[FRAMES // 3 :].max()
    assert error_m <= 1.0 / (2 * np.pi * FilterConfig().beta) + 1e-6


def test_timestamp_rules(rng: np.random.Generator) -> None:
    filt = OneEuroFilter(OneEuroParams(min_cutoff=1.0, beta=0.0), max_gap_s=0.5)
    first = rng.normal(size=(21, 3))
    np.testing.assert_array_equal(filt(first, 10.0), first)  # first sample passes through
    second = first + 1.0
    out = filt(second, 10.1)
    assert np.all((out > first) & (out < second))
    np.testing.assert_array_equal(filt(second + 5.0, 10.1), out)  # duplicate stamp: no new frame
    back = rng.normal(size=(21, 3))
    np.testing.assert_array_equal(filt(back, 9.0), back)  # time went backwards: restart
    gap = back + 3.0
    np.testing.assert_array_equal(filt(gap, 9.6), gap)  # gap > max_gap_s: restart
    with pytest.raises(ValueError, match="shape changed"):
        filt(np.zeros(3), 9.7)
    with pytest.raises(ValueError, match="NaN"):
        filt(np.full((21, 3), np.nan), 9.8)
    with pytest.raises(ValueError, match="min_cutoff"):
        OneEuroParams(min_cutoff=0.0)


def test_per_point_cutoff_follows_each_point(rng: np.random.Generator) -> None:
    """per_point=True: a fast point opens only its own cutoff."""
    stamps = np.arange(60) / FPS
    points = np.zeros((60, 2, 3))
    points[:, 0, 0] = 1.0 * stamps  # 1 m/s
    points[:, 1] += rng.normal(scale=NOISE_M, size=(60, 3))
    params = OneEuroParams(1.0, 20.0, 1.0)
    per_point = filter_sequence(points, stamps, params, per_point=True)
    shared = filter_sequence(points, stamps, params, per_point=False)
    still_jitter = [metrics.jitter(out[:, 1:2], stamps) for out in (per_point, shared)]
    assert still_jitter[0] < still_jitter[1]


def _rotation_sequence(stamps: np.ndarray, rate_rad_s: float, rng: np.random.Generator, noise_rad: float):
    axis = np.array([0.3, 0.9, -0.3]) / np.linalg.norm([0.3, 0.9, -0.3])
    truth = Rotation.from_rotvec((stamps * rate_rad_s)[:, None] * axis) * Rotation.from_rotvec(
        [0.2, 0.1, 0.0]
    )
    noise = Rotation.from_rotvec(rng.normal(scale=noise_rad, size=(len(stamps), 3)))
    return truth, truth * noise


def test_quaternion_filter_ignores_sign_flips(rng: np.random.Generator) -> None:
    stamps = np.arange(150) / FPS
    _, noisy = _rotation_sequence(stamps, 1.0, rng, 0.02)
    quats = noisy.as_quat()
    flipped = quats * np.where(rng.random(len(quats)) < 0.5, -1.0, 1.0)[:, None]
    params = FilterConfig().rotation_params()
    plain_filter, flip_filter = RotationOneEuroFilter(params), RotationOneEuroFilter(params)
    plain = np.stack([plain_filter(q, t) for q, t in zip(quats, stamps)])
    out = np.stack([flip_filter(q, t) for q, t in zip(flipped, stamps)])
    # same rotations whatever the input signs, and a sign-continuous, unit output
    np.testing.assert_allclose(np.abs(np.sum(plain * out, axis=1)), 1.0, atol=1e-9)
    assert np.all(np.sum(out[1:] * out[:-1], axis=1) > 0.99)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-12)


def test_quaternion_filter_through_half_turn(rng: np.random.Generator) -> None:
    """Rotating past 180 degrees (where canonical quaternions change hemisphere) stays smooth and
    cuts the rotational jitter."""
    stamps = np.arange(120) / FPS
    axis = np.array([0.0, 0.0, 1.0])
    angles = np.pi - 0.5 + 0.4 * stamps  # crosses pi at 1.25 s
    truth = Rotation.from_rotvec(angles[:, None] * axis)
    noisy = truth * Rotation.from_rotvec(rng.normal(scale=0.02, size=(len(stamps), 3)))
    quats = noisy.as_quat(canonical=True)
    assert np.any(np.sum(quats[1:] * quats[:-1], axis=1) < 0)  # the input does flip
    filt = RotationOneEuroFilter(FilterConfig().rotation_params())
    out = Rotation.from_quat(np.stack([filt(q, t) for q, t in zip(quats, stamps)]))
    steps = (out[1:] * out[:-1].inv()).magnitude()
    assert steps.max() < 0.05  # no 2 pi jump anywhere

    def angular_jitter(rotations: Rotation) -> float:
        """Mean norm of the frame-to-frame change of the angular step (rad/frame^2)."""
        step = (rotations[1:] * rotations[:-1].inv()).as_rotvec()
        return float(np.linalg.norm(np.diff(step, axis=0), axis=1).mean())

    assert angular_jitter(noisy) / angular_jitter(out) >= 3.0
    assert (out * truth.inv()).magnitude()[30:].mean() < (noisy * truth.inv()).magnitude()[30:].mean()


def test_quaternion_ramp_lag_within_one_frame(rng: np.random.Generator) -> None:
    stamps = _uneven_stamps(rng, 150)
    rate = 2.0  # rad/s, a brisk wrist turn
    truth, _ = _rotation_sequence(stamps, rate, rng, 0.0)
    filt = RotationOneEuroFilter(FilterConfig().rotation_params())
    out = Rotation.from_quat(np.stack([filt(q, t) for q, t in zip(truth.as_quat(), stamps)]))
    lag_s = (out * truth.inv()).magnitude()[50:].mean() / rate
    assert lag_s <= np.mean(np.diff(stamps))


# ------------------------------------------------------------------------------ HandFilter
def _estimate(
    joints: np.ndarray, rng: np.random.Generator, track_id: int = 1, side: Side = Side.RIGHT, rotvec=None
) -> HandEstimate:
    vertices = np.tile(joints.mean(axis=0), (NUM_VERTICES, 1)) + rng.normal(
        scale=0.02, size=(NUM_VERTICES, 3)
    )
    vertices[list(FINGERTIP_VERTEX_IDS)] = joints[list(FINGERTIP_JOINTS)]
    global_rot = Rotation.from_rotvec(np.zeros(3) if rotvec is None else rotvec)
    pose = Rotation.from_rotvec(rng.normal(scale=0.2, size=(15, 3)))
    k = CameraIntrinsics(600.0, 600.0, 320.0, 240.0)
    kp2d = joints[:, :2] / joints[:, 2:] * 600.0 + np.array([320.0, 240.0])
    return HandEstimate(
        box=np.array([0, 0, 100, 100], dtype=np.float32),
        score=0.9,
        side=side,
        keypoints_3d=joints.astype(np.float32),
        keypoints_2d=kp2d.astype(np.float32),
        vertices=vertices.astype(np.float32),
        global_orient=global_rot.as_rotvec().astype(np.float32),
        hand_pose=pose.as_rotvec().astype(np.float32),
        global_orient_matrix=global_rot.as_matrix().astype(np.float32),
        hand_pose_matrix=pose.as_matrix().astype(np.float32),
        betas=np.zeros(10, dtype=np.float32),
        cam_t=joints[0].astype(np.float32),
        joint_rotations=np.tile(global_rot.as_matrix(), (21, 1, 1)).astype(np.float32),
        intrinsics=k,
        track_id=track_id,
    )


def test_hand_filter_smooths_consistently(rng: np.random.Generator) -> None:
    stamps = _uneven_stamps(rng, 90)
    base = _hand(rng)
    hand_filter = HandFilter()
    raw, out = [], []
    for t in stamps:
        est = _estimate(
            base + rng.normal(scale=NOISE_M, size=base.shape), rng, rotvec=rng.normal(scale=0.02, size=3)
        )
        raw.append(est)
        out.append(hand_filter.filter(est, float(t)))
    assert out[0] is raw[0]  # first sample passes through
    filtered_joints = np.stack([o.keypoints_3d for o in out])
    raw_joints = np.stack([r.keypoints_3d for r in raw])
    assert metrics.jitter(raw_joints, stamps) / metrics.jitter(filtered_joints, stamps) >= 3.0
    last = out[-1]
    # one shared factor per frame keeps linear relations: fingertip joints are still vertices
    np.testing.assert_allclose(
        last.vertices[list(FINGERTIP_VERTEX_IDS)], last.keypoints_3d[list(FINGERTIP_JOINTS)], atol=1e-6
    )
    np.testing.assert_allclose(last.cam_t, last.keypoints_3d[0], atol=1e-6)
    # rotations stay rotations and the axis-angle copies agree with the matrices
    for mats in (last.hand_pose_matrix, last.joint_rotations, last.global_orient_matrix[None]):
        np.testing.assert_allclose(
            mats @ np.swapaxes(mats, -1, -2), np.broadcast_to(np.eye(3), mats.shape), atol=1e-5
        )
        assert mats.dtype == np.float32
    np.testing.assert_allclose(
        Rotation.from_rotvec(last.hand_pose).as_matrix(), last.hand_pose_matrix, atol=1e-5
    )
    raw_orient = np.stack([Rotation.from_matrix(r.global_orient_matrix).as_rotvec() for r in raw])
    out_orient = np.stack([o.global_orient for o in out])
    assert np.std(np.diff(out_orient, axis=0)) < np.std(np.diff(raw_orient, axis=0))
    # the input estimates are untouched
    assert raw[-1].keypoints_3d is not last.keypoints_3d


def test_hand_filter_tracks_and_resets(rng: np.random.Generator) -> None:
    hand_filter = HandFilter()
    a, b = _hand(rng), _hand(rng) + 0.2
    hand_filter.filter(_estimate(a, rng, track_id=1), 0.0)
    hand_filter.filter(_estimate(b, rng, track_id=2), 0.0)
    moved = hand_filter.filter(_estimate(a + 0.01, rng, track_id=1), 1 / FPS)
    assert not np.allclose(moved.keypoints_3d, a + 0.01)  # smoothed, with its own history
    assert np.linalg.norm(moved.keypoints_3d - a, axis=1).max() < 0.02  # not pulled towards hand 2
    # duplicate stamp returns the previous output
    assert hand_filter.filter(_estimate(a + 0.5, rng, track_id=1), 1 / FPS) is moved
    # a side change restarts the track's filter (mirrored meshes must not be blended)
    flipped = _estimate(a + 0.05, rng, track_id=1, side=Side.LEFT)
    assert hand_filter.filter(flipped, 2 / FPS) is flipped
    hand_filter.retain([1])
    assert hand_filter.track_ids == [1]
    fresh = _estimate(b, rng, track_id=2)
    assert hand_filter.filter(fresh, 3 / FPS) is fresh  # a dead track's state is gone
    hand_filter.filter_all([], 10.0)  # everything older than max_gap_s is dropped
    assert hand_filter.track_ids == []
    with pytest.raises(ValueError, match="track_id"):
        hand_filter.filter(_estimate(a, rng, track_id=0), 11.0)
    disabled = HandFilter(FilterConfig(enabled=False))
    est = _estimate(a, rng)
    assert disabled.filter(est, 0.0) is est
    with pytest.raises(ValueError, match="max_gap_s"):
        FilterConfig(max_gap_s=0.0)
