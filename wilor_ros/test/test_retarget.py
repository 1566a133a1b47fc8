"""core.hand.retarget: dex-retargeting's wrist frame and MANO axes, on posed synthetic MANO hands."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from wilor_ros.core.hand.constants import JOINT_NAMES
from wilor_ros.core.hand.retarget import (
    OPERATOR2MANO_LEFT,
    OPERATOR2MANO_RIGHT,
    operator2mano,
    retarget_keypoints,
    vector_reference,
    wrist_frame,
)
from wilor_ros.core.types import Side

MIRROR_X = np.array([-1.0, 1.0, 1.0])
# MANO finger joints (MANO order 1..12 are index, middle, pinky, ring; 13..15 thumb)
NON_THUMB_MANO_JOINTS = range(12)


@pytest.fixture(scope="module")
def mano_path(tmp_path_factory) -> Path:
    from wilor_ros.tools.synthetic_mano import make_synthetic_mano

    path = tmp_path_factory.mktemp("mano") / "MANO_RIGHT.pkl"
    make_synthetic_mano(path, seed=0)
    return path


def posed_joints(mano_path: Path, curl: float = 0.0, seed: int = 0) -> np.ndarray:
    """21 x 3 OpenPose joints (MANO frame, metres) of a right hand with its four fingers flexed
    by ``curl`` radians per joint (flexion = rotation about MANO z, which turns the fingers,
    lying along -x, towards the palm side -y) plus a little random pose noise."""
    from wilor_ros.core.image.render import pose_mano

    rng = np.random.default_rng(seed)
    pose = rng.normal(0.0, 0.05, (15, 3))
    pose[list(NON_THUMB_MANO_JOINTS), 2] += curl
    _, joints, _ = pose_mano(mano_path, np.zeros(3), pose)
    return joints


def place(joints: np.ndarray, rotation: Rotation, translation: np.ndarray) -> np.ndarray:
    return rotation.apply(joints) + translation


def test_operator2mano_are_rotations():
    for matrix in (OPERATOR2MANO_RIGHT, OPERATOR2MANO_LEFT):
        np.testing.assert_allclose(matrix @ matrix.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(matrix) == pytest.approx(1.0)
    np.testing.assert_array_equal(operator2mano("right"), OPERATOR2MANO_RIGHT)
    np.testing.assert_array_equal(operator2mano(Side.LEFT), OPERATOR2MANO_LEFT)


def test_frame_is_right_handed_and_follows_the_palm(mano_path):
    joints = posed_joints(mano_path)
    frame = wrist_frame(joints)
    np.testing.assert_allclose(frame.T @ frame, np.eye(3), atol=1e-9)
    assert np.linalg.det(frame) == pytest.approx(1.0)
    x_axis, normal, z_axis = frame.T
    wrist, index_mcp, middle_mcp = joints[0], joints[5], joints[9]
    assert np.dot(x_axis, wrist - middle_mcp) > 0  # x points back from the knuckles to the wrist
    assert abs(np.dot(normal, index_mcp - wrist)) < 1e-9  # normal is orthogonal to the palm
    assert abs(np.dot(normal, middle_mcp - wrist)) < 1e-9
    assert np.dot(z_axis, index_mcp - middle_mcp) > 0  # z points towards the index side


@pytest.mark.parametrize("seed", range(5))
def test_rotating_and_moving_the_hand_does_not_change_the_retarget_keypoints(mano_path, seed):
    joints = posed_joints(mano_path, curl=0.3, seed=seed)
    rng = np.random.default_rng(100 + seed)
    reference = retarget_keypoints(place(joints, Rotation.identity(), np.array([0.0, 0.0, 0.5])), "right")
    moved = place(
        joints, Rotation.random(random_state=seed), rng.uniform(-0.3, 0.3, 3) + np.array([0.0, 0.0, 0.6])
    )
    result = retarget_keypoints(moved, "right")
    np.testing.assert_allclose(result.keypoints, reference.keypoints, atol=1e-9)
    # ... while the wrist pose follows the hand
    np.testing.assert_allclose(result.wrist_position, moved[0], atol=1e-12)
    np.testing.assert_allclose(result.to_camera(), moved, atol=1e-9)
    np.testing.assert_allclose(result.rotation, result.frame @ OPERATOR2MANO_RIGHT, atol=1e-12)
    assert np.linalg.det(result.rotation) == pytest.approx(1.0)


def test_right_hand_axes_mean_palm_index_side_and_fingers(mano_path):
    """Right hand: +z from the wrist towards the fingers, +y towards the index side (from the
    pinky), +x out of the palm (a curled finger's tip moves to +x)."""
    flat = retarget_keypoints(place(posed_joints(mano_path), Rotation.random(random_state=7), [0, 0, 0.5]), 1)
    curled = retarget_keypoints(
        place(posed_joints(mano_path, curl=0.5), Rotation.random(random_state=8), [0.1, 0, 0.4]), 1
    )
    kp = flat.keypoints
    name = JOINT_NAMES.index
    np.testing.assert_allclose(kp[0], 0.0, atol=1e-12)
    assert kp[name("middle_tip"), 2] > 0.1  # fingers along +z, about a hand length away
    assert kp[name("index_mcp"), 1] > 0.005 > -0.005 > kp[name("pinky_mcp"), 1]
    assert abs(kp[name("middle_tip"), 0]) < 0.02  # a flat hand lies near the x = 0 plane
    for tip in ("index_tip", "middle_tip", "ring_tip", "pinky_tip"):
        assert curled.keypoints[name(tip), 0] > 0.02, tip  # curled towards the palm: +x


def test_left_hand_is_the_mirror_of_the_right(mano_path):
    """A left hand that is the mirror image (x -> -x in the camera) of a right hand gives the
    right hand's retarget keypoints with the y axis negated: OPERATOR2MANO_LEFT differs from
    OPERATOR2MANO_RIGHT by the sign of the frame's normal, which the mirror flips once more."""
    for seed in range(3):
        right_cam = place(
            posed_joints(mano_path, curl=0.2, seed=seed), Rotation.random(random_state=seed), [0, 0, 0.5]
        )
        right = retarget_keypoints(right_cam, "right")
        left = retarget_keypoints(right_cam * MIRROR_X, "left")
        np.testing.assert_allclose(left.keypoints, right.keypoints * np.array([1.0, -1.0, 1.0]), atol=1e-9)
        # fingers along +z for both sides
        assert left.keypoints[JOINT_NAMES.index("middle_tip"), 2] > 0.1


def test_bad_input_is_rejected():
    with pytest.raises(ValueError, match="21 x 3"):
        retarget_keypoints(np.zeros((20, 3)), "right")
    joints = np.zeros((21, 3))
    joints[:, 0] = np.linspace(0.0, 0.2, 21)  # every joint on one line
    with pytest.raises(ValueError, match="collinear"):
        wrist_frame(joints)
    joints[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        retarget_keypoints(joints, "left")
    with pytest.raises(ValueError, match="side"):
        retarget_keypoints(np.random.default_rng(0).normal(size=(21, 3)), "up")


def test_vector_reference_takes_task_minus_origin():
    joint_pos = np.arange(63, dtype=np.float64).reshape(21, 3)
    ref = vector_reference(joint_pos, np.array([0, 0, 5]), np.array([4, 8, 8]))
    np.testing.assert_allclose(ref, joint_pos[[4, 8, 8]] - joint_pos[[0, 0, 5]])
