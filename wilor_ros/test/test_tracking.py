"""Hand tracking: ids through crossings and occlusions, side hysteresis, birth and death,
predicted boxes and the re-detection schedule, on synthetic hands seen by a pinhole camera."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from wilor_ros.core.temporal.tracking import HandTracker
from wilor_ros.core.temporal.tracks import TrackerConfig, box_iou, keypoint_box
from wilor_ros.core.types import CameraIntrinsics, HandDetection, HandEstimate, Side

FPS = 30.0
CAMERA = CameraIntrinsics(600.0, 600.0, 320.0, 240.0)
# a flat-ish hand, 21 joints relative to the wrist (metres), fixed so tests are reproducible
HAND_SHAPE = np.random.default_rng(11).normal(scale=0.035, size=(21, 3)) * np.array([1.0, 1.0, 0.3])
HAND_SHAPE[0] = 0.0


def _project(points: np.ndarray) -> np.ndarray:
    return points[:, :2] / points[:, 2:] * np.array([CAMERA.fx, CAMERA.fy]) + np.array([CAMERA.cx, CAMERA.cy])


def _estimate(wrist: np.ndarray, side: Side, score: float = 0.9) -> HandEstimate:
    """A hand whose wrist is at ``wrist`` (camera frame, metres) as the pipeline would return it."""
    joints = np.asarray(wrist, dtype=np.float64) + HAND_SHAPE
    kp2d = _project(joints)
    eye = np.eye(3, dtype=np.float32)
    return HandEstimate(
        box=keypoint_box(kp2d, 0.1, 8.0).astype(np.float32),
        score=score,
        side=side,
        keypoints_3d=joints.astype(np.float32),
        keypoints_2d=kp2d.astype(np.float32),
        vertices=np.zeros((778, 3), dtype=np.float32),
        global_orient=np.zeros(3, dtype=np.float32),
        hand_pose=np.zeros((15, 3), dtype=np.float32),
        global_orient_matrix=eye,
        hand_pose_matrix=np.tile(eye, (15, 1, 1)),
        betas=np.zeros(10, dtype=np.float32),
        cam_t=np.asarray(wrist, dtype=np.float32),
        joint_rotations=np.tile(eye, (21, 1, 1)),
        intrinsics=CAMERA,
    )


def _ids_by_side(published: list[HandEstimate]) -> dict[Side, int]:
    return {e.side: e.track_id for e in published}


def _track_frame(
    tracker: HandTracker, hands: list[HandEstimate], stamp: float, reruns: list[int] | None = None
) -> list[HandEstimate]:
    """One detector frame the way TemporalHandPipeline runs it around the network. ``hands``
    are the estimates as the detector labelled them; here a hand's geometry does not depend on
    its side, so "reconstructing with a side" is setting it. Sides are decided before the crop
    (``assign_sides``); hands the 3D plan puts on another side are reconstructed again
    (counted in ``reruns``); then ``update``."""
    detections = [HandDetection(h.box, h.side, h.score) for h in hands]
    decided = tracker.assign_sides(detections, stamp)
    cropped = [replace(h, side=d.side, detected_side=d.detected_side) for h, d in zip(hands, decided)]
    plan = tracker.plan(cropped, stamp)
    again = [replace(h, side=side) if h.side != side else h for h, side in zip(cropped, plan.sides)]
    if reruns is not None:
        reruns.append(sum(a is not c for a, c in zip(again, cropped)))
    published = tracker.update(again, stamp, plan=plan)
    for hand in published:  # the tracker never relabels: the label is the geometry's side
        assert any(hand.side == a.side and hand.keypoints_3d is a.keypoints_3d for a in again)
    return published


def test_birth_after_min_hits_and_ids_never_reused() -> None:
    tracker = HandTracker(TrackerConfig(min_hits=3, max_missed_frames=2))
    wrist = np.array([0.0, 0.0, 0.5])
    stamp = 0.0
    for _ in range(2):
        assert tracker.update([_estimate(wrist, Side.RIGHT)], stamp) == []  # tentative
        stamp += 1 / FPS
    (first,) = tracker.update([_estimate(wrist, Side.RIGHT)], stamp)
    assert first.track_id == 1 and tracker.active_track_ids == [1]
    # a one-frame flicker elsewhere is never published and consumes no id
    stamp += 1 / FPS
    out = tracker.update(
        [_estimate(wrist, Side.RIGHT), _estimate(wrist + np.array([0.3, 0, 0]), Side.LEFT)], stamp
    )
    assert [e.track_id for e in out] == [1]
    # the hand leaves: the track dies after max_missed_frames missed frames
    for _ in range(3):
        stamp += 1 / FPS
        assert tracker.update([], stamp) == []
    assert tracker.active_track_ids == []
    # it comes back: a new track with a new id
    for _ in range(3):
        stamp += 1 / FPS
        out = tracker.update([_estimate(wrist, Side.RIGHT)], stamp)
    assert [e.track_id for e in out] == [2]
    # time going backwards (bag loop) restarts tracking but ids keep counting
    for k in range(3):
        out = tracker.update([_estimate(wrist, Side.RIGHT)], k / FPS)
    assert [e.track_id for e in out] == [3]


def test_death_by_time_without_match() -> None:
    tracker = HandTracker(TrackerConfig(min_hits=1, max_missed_frames=100, max_missed_s=0.3))
    tracker.update([_estimate(np.array([0.0, 0.0, 0.5]), Side.LEFT)], 0.0)
    tracker.update([], 0.2)
    assert tracker.active_track_ids == [1]
    tracker.update([], 0.4)
    assert tracker.active_track_ids == []


def _run_crossing(config: TrackerConfig) -> tuple[int, int, float]:
    """Two hands cross in the image at different depths; the classifier swaps their sides on
    the crossing frame. Returns (id switches, side errors, largest box IoU)."""
    tracker = HandTracker(config)
    frames, speed = 60, 0.3  # m/s, in opposite directions
    crossing_frame = frames // 2
    owner: dict[Side, int] = {}
    switches = side_errors = 0
    max_iou = 0.0
    for k in range(frames):
        t = k / FPS
        dx = speed * (t - crossing_frame / FPS)
        # the left hand in front (45 cm), the right one behind (55 cm): same image path
        left = np.array([dx * 0.45 / 0.5, 0.0, 0.45])
        right = np.array([-dx * 0.55 / 0.5, 0.0, 0.55])
        est_left, est_right = _estimate(left, Side.LEFT), _estimate(right, Side.RIGHT)
        if k == crossing_frame:  # mixed up exactly where the boxes overlap
            est_left, est_right = _estimate(left, Side.RIGHT), _estimate(right, Side.LEFT)
        max_iou = max(max_iou, float(box_iou(est_left.box, est_right.box)[0, 0]))
        order = [est_right, est_left] if k % 2 else [est_left, est_right]  # input order must not matter
        for est in _track_frame(tracker, order, t):
            true_side = Side.LEFT if est.keypoints_3d[0, 2] < 0.5 else Side.RIGHT
            if owner.setdefault(true_side, est.track_id) != est.track_id:
                switches += 1
                owner[true_side] = est.track_id
            side_errors += int(est.side != true_side)
    return switches, side_errors, max_iou


def test_ids_survive_two_hands_crossing_with_overlapping_boxes() -> None:
    switches, side_errors, max_iou = _run_crossing(TrackerConfig())
    assert max_iou > 0.6  # the boxes really overlap at the crossing
    assert switches == 0 and side_errors == 0
    # control: without the 3D wrist term the swapped sides drag the ids across
    switches_2d, _, _ = _run_crossing(TrackerConfig(distance_weight=0.0, max_wrist_distance_m=10.0))
    assert switches_2d > 0


def test_ids_survive_short_occlusion_while_moving() -> None:
    tracker = HandTracker(TrackerConfig(max_missed_frames=5))
    velocity = np.array([0.4, -0.1, 0.0])  # m/s
    start = np.array([-0.1, 0.05, 0.5])
    other = np.array([0.15, 0.0, 0.5])  # a second, still hand
    ids = set()
    for k in range(40):
        t = k / FPS
        estimates = [_estimate(other, Side.LEFT)]
        if not 15 <= k < 19:  # four frames hidden
            estimates.append(_estimate(start + velocity * t, Side.RIGHT))
        out = tracker.update(estimates, t)
        if k >= 3:
            ids.add(tuple(sorted(_ids_by_side(out).items())))
    assert ids == {((Side.LEFT, 1), (Side.RIGHT, 2)), ((Side.LEFT, 1),)}


def test_side_hysteresis() -> None:
    tracker = HandTracker(TrackerConfig(min_hits=1, side_flip_frames=3))
    wrist = np.array([0.0, 0.0, 0.5])
    sides = (
        [Side.RIGHT] * 5 + [Side.LEFT] + [Side.RIGHT] * 3 + [Side.LEFT] * 2 + [Side.RIGHT] + [Side.LEFT] * 3
    )
    published = []
    reruns: list[int] = []
    for k, side in enumerate(sides):
        (est,) = _track_frame(tracker, [_estimate(wrist, side)], k / FPS, reruns)
        published.append(est)
        assert est.track_id == 1
        assert est.detected_side == side
    reported = [e.side for e in published]
    # single and double misclassifications are corrected; three in a row flip the track
    assert reported == [Side.RIGHT] * (len(sides) - 1) + [Side.LEFT]
    # decided before the crop: no hand needed a second reconstruction
    assert reruns == [0] * len(sides)


def test_update_never_relabels_and_tracker_frames_cast_no_side_vote() -> None:
    tracker = HandTracker(TrackerConfig(min_hits=1, side_flip_frames=2))
    wrist = np.array([0.0, 0.0, 0.5])
    tracker.update([_estimate(wrist, Side.RIGHT)], 0.0)
    # straight into update (no assign_sides): the left-labelled estimate keeps its label, since
    # its geometry would have been reconstructed (mirrored) as a left hand
    (out,) = tracker.update([_estimate(wrist, Side.LEFT)], 1 / FPS)
    assert out.side == Side.LEFT and out.track_id == 1
    # one disagreement is on record: frames from predicted boxes (no detector) do not clear it
    tracker.update([_estimate(wrist, Side.RIGHT)], 2 / FPS, from_detector=False)
    (det,) = tracker.assign_sides([HandDetection(_estimate(wrist, Side.LEFT).box, Side.LEFT, 0.9)], 3 / FPS)
    assert det.side == Side.LEFT and det.detected_side == Side.LEFT  # second vote in a row flips


def test_predict_boxes_follow_a_moving_hand() -> None:
    config = TrackerConfig()
    tracker = HandTracker(config)
    velocity = np.array([0.25, 0.1, 0.0])
    start = np.array([-0.1, -0.05, 0.5])
    assert tracker.predict_boxes(0.0) == []
    for k in range(6):
        tracker.update([_estimate(start + velocity * k / FPS, Side.LEFT)], k / FPS)
    t_next = 6 / FPS
    (det,) = tracker.predict_boxes(t_next)
    assert det.side == Side.LEFT and det.score == pytest.approx(0.9)
    upcoming = _estimate(start + velocity * t_next, Side.LEFT).keypoints_2d
    stale = _estimate(start + velocity * 5 / FPS, Side.LEFT).keypoints_2d
    center = 0.5 * (det.box[:2] + det.box[2:])
    tight, tight_stale = keypoint_box(upcoming, 0.0, 1.0), keypoint_box(stale, 0.0, 1.0)
    # moved with the hand: centred on the next keypoints' box, not on the last seen one
    assert np.linalg.norm(center - 0.5 * (tight[:2] + tight[2:])) < 1.0
    assert np.linalg.norm(center - 0.5 * (tight_stale[:2] + tight_stale[2:])) > 3.0
    assert np.all(upcoming >= det.box[:2]) and np.all(upcoming <= det.box[2:])
    expected = keypoint_box(upcoming, config.box_margin, config.min_box_size_px)
    assert box_iou(det.box, expected)[0, 0] > 0.9


def test_tracking_loop_from_predicted_boxes_and_redetect_schedule() -> None:
    """Pipeline-style loop: detector frames, then frames run from predicted boxes."""
    config = TrackerConfig(min_hits=2, redetect_every_n_frames=5)
    tracker = HandTracker(config)
    velocity = np.array([0.3, 0.0, 0.0])
    start = np.array([-0.2, 0.0, 0.5])
    assert tracker.should_redetect(0.0) and tracker.redetect_reason == "detector never ran"
    schedule = []
    for k in range(16):
        t = k / FPS
        detect = tracker.should_redetect(t)
        schedule.append(detect)
        hand = _estimate(start + velocity * t, Side.RIGHT)
        if not detect:
            (box,) = tracker.predict_boxes(t)
            assert np.all(hand.keypoints_2d >= box.box[:2]) and np.all(hand.keypoints_2d <= box.box[2:])
        out = tracker.update([hand], t, from_detector=detect)
        if k >= 1:
            assert [e.track_id for e in out] == [1]
    # the detector runs until the track is confirmed, then every fifth frame
    assert schedule == [True, True] + ([False] * 4 + [True]) * 2 + [False] * 4
    # a lost track asks for the detector at once
    tracker.update([], 16 / FPS, from_detector=False)
    assert tracker.should_redetect() and tracker.redetect_reason in ("a track was lost", "no confident track")


def test_redetect_on_low_confidence_or_tiny_hand() -> None:
    config = TrackerConfig(min_hits=1, redetect_every_n_frames=100)
    tracker = HandTracker(config)
    near, far = np.array([0.0, 0.0, 0.5]), np.array([0.1, 0.0, 0.5])
    tracker.update([_estimate(near, Side.RIGHT), _estimate(far, Side.LEFT)], 0.0)
    assert not tracker.should_redetect()
    for k in range(1, 6):  # the left hand's confidence collapses
        tracker.update([_estimate(near, Side.RIGHT), _estimate(far, Side.LEFT, score=0.1)], k / FPS, False)
    assert tracker.should_redetect() and tracker.redetect_reason == "low confidence"
    assert [d.side for d in tracker.predict_boxes(6 / FPS)] == [Side.RIGHT]
    small = HandTracker(TrackerConfig(min_hits=1, min_keypoint_spread_px=500.0))
    small.update([_estimate(near, Side.RIGHT)], 0.0)
    assert small.should_redetect() and small.redetect_reason == "keypoint spread too small"


def test_update_does_not_modify_inputs_and_validates() -> None:
    tracker = HandTracker(TrackerConfig(min_hits=1))
    est = _estimate(np.array([0.0, 0.0, 0.5]), Side.RIGHT)
    (out,) = tracker.update([est], 0.0)
    assert est.track_id == 0 and est.detected_side is None
    assert out.track_id == 1 and out.keypoints_3d is est.keypoints_3d
    with pytest.raises(ValueError, match="finite"):
        tracker.update([est], float("nan"))
    with pytest.raises(ValueError, match="min_hits"):
        TrackerConfig(min_hits=0)
    with pytest.raises(ValueError, match="velocity_smoothing"):
        TrackerConfig(velocity_smoothing=0.0)
