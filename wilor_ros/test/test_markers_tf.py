"""Hand TF frames (names, parents, rotations) and RViz markers (content, winding, deletions)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="the ROS adapter needs rclpy and the ROS message packages")
pytest.importorskip("tf2_msgs.msg", reason="tf2_msgs not built: run scripts/setup.sh")

from builtin_interfaces.msg import Time
from helpers import random_hand_estimate
from rclpy.qos import DurabilityPolicy, HistoryPolicy, ReliabilityPolicy
from scipy.spatial.transform import Rotation
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from wilor_ros.core.hand.constants import JOINT_NAMES, NUM_FACES, NUM_JOINTS, NUM_VERTICES
from wilor_ros.core.types import Side
from wilor_ros.ros.markers import (
    JOINTS_ID,
    LABEL_ID,
    MARKER_IDS,
    MESH_ID,
    SKELETON_ID,
    HandMarkerBuilder,
    MarkerStyle,
)
from wilor_ros.ros.tf import hand_frame_name, hand_numbers, hand_transforms, tf_qos

pytestmark = pytest.mark.ros

HEADER = Header(stamp=Time(sec=10, nanosec=20), frame_id="cam_optical")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(2024)


@pytest.fixture
def faces(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, NUM_VERTICES, (NUM_FACES, 3))


def points_array(points: list) -> np.ndarray:
    return np.array([[p.x, p.y, p.z] for p in points])


# ---------------------------------------------------------------------------------------- TF


def test_frame_names_count_and_parents(rng: np.random.Generator) -> None:
    est = random_hand_estimate(rng, Side.LEFT)
    transforms = hand_transforms(est, HEADER, prefix="cam1/")
    assert len(transforms) == NUM_JOINTS == 21
    names = [t.child_frame_id for t in transforms]
    assert names[0] == "cam1/left_hand_wrist"
    assert names[8] == "cam1/left_hand_index_tip"
    assert names == [f"cam1/left_hand_{n}" for n in JOINT_NAMES]
    assert len(set(names)) == 21
    assert all(t.header.frame_id == "cam_optical" for t in transforms)
    assert all((t.header.stamp.sec, t.header.stamp.nanosec) == (10, 20) for t in transforms)


def test_quaternions_normalised_and_match_rotations(rng: np.random.Generator) -> None:
    est = random_hand_estimate(rng, Side.RIGHT)
    # a slightly non-orthonormal float32 matrix (as a network produces) still gives a unit quaternion
    est.joint_rotations = est.joint_rotations * np.float32(1.001)
    for j, t in enumerate(hand_transforms(est, HEADER)):
        q = t.transform.rotation
        quat = np.array([q.x, q.y, q.z, q.w])
        assert np.linalg.norm(quat) == pytest.approx(1.0, abs=1e-12)
        np.testing.assert_allclose(
            Rotation.from_quat(quat).as_matrix(), est.joint_rotations[j] / 1.001, atol=1e-5
        )
        tr = t.transform.translation
        np.testing.assert_array_equal([tr.x, tr.y, tr.z], est.keypoints_3d[j].astype(np.float64))


def test_track_suffix_for_second_hand_of_a_side(rng: np.random.Generator) -> None:
    assert hand_frame_name(Side.RIGHT, 0) == "right_hand_wrist"
    assert hand_frame_name("right", "wrist", hand_number=2) == "right_hand_2_wrist"
    assert hand_frame_name(0, 20, prefix="a/", hand_number=3) == "a/left_hand_3_pinky_tip"
    hands = [
        random_hand_estimate(rng, Side.RIGHT, 1),
        random_hand_estimate(rng, Side.LEFT, 2),
        random_hand_estimate(rng, Side.RIGHT, 3),
    ]
    assert hand_numbers(hands) == [1, 1, 2]
    second = hand_transforms(hands[2], HEADER, hand_number=2)
    assert second[0].child_frame_id == "right_hand_2_wrist"
    with pytest.raises(ValueError, match="unknown joint name"):
        hand_frame_name(Side.RIGHT, "elbow")
    with pytest.raises(ValueError, match="joint index"):
        hand_frame_name(Side.RIGHT, 21)
    with pytest.raises(ValueError, match="counts from 1"):
        hand_frame_name(Side.RIGHT, 0, hand_number=0)


def test_non_finite_hand_is_not_turned_into_tf(rng: np.random.Generator) -> None:
    est = random_hand_estimate(rng)
    est.keypoints_3d[4, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        hand_transforms(est, HEADER)


def test_tf_qos_matches_tf2_ros_broadcaster() -> None:
    qos = tf_qos()
    assert qos.depth == 100
    assert qos.history == HistoryPolicy.KEEP_LAST
    assert qos.reliability == ReliabilityPolicy.RELIABLE
    assert qos.durability == DurabilityPolicy.VOLATILE


# ----------------------------------------------------------------------------------- markers


def test_markers_per_hand(rng: np.random.Generator, faces: np.ndarray) -> None:
    builder = HandMarkerBuilder(faces)
    right = random_hand_estimate(rng, Side.RIGHT, track_id=5)
    left = random_hand_estimate(rng, Side.LEFT, track_id=9)
    markers = builder.build([right, left], HEADER).markers
    assert len(markers) == 8
    by_key = {(m.ns, m.id): m for m in markers}
    assert set(by_key) == {(f"hand_{h}", i) for h in (5, 9) for i in MARKER_IDS}
    assert all(m.action == Marker.ADD and m.header.frame_id == "cam_optical" for m in markers)

    mesh = by_key[("hand_5", MESH_ID)]
    assert mesh.type == Marker.TRIANGLE_LIST
    assert len(mesh.points) == 3 * NUM_FACES
    np.testing.assert_array_equal(points_array(mesh.points), right.vertices[faces.reshape(-1)].astype(float))

    skeleton = by_key[("hand_5", SKELETON_ID)]
    assert skeleton.type == Marker.LINE_LIST and len(skeleton.points) == 2 * 20
    segs = points_array(skeleton.points).reshape(20, 2, 3)
    # bone of the index tip (joint 8) goes from its parent, joint 7
    np.testing.assert_array_equal(segs[7], right.keypoints_3d[[7, 8]].astype(float))
    np.testing.assert_array_equal(segs[0], right.keypoints_3d[[0, 1]].astype(float))

    joints = by_key[("hand_5", JOINTS_ID)]
    assert joints.type == Marker.SPHERE_LIST
    np.testing.assert_array_equal(points_array(joints.points), right.keypoints_3d.astype(float))

    label = by_key[("hand_9", LABEL_ID)]
    assert label.type == Marker.TEXT_VIEW_FACING
    assert label.text.startswith("left #9 ")
    assert label.pose.position.y < left.keypoints_3d[0, 1]  # above the wrist (optical y is down)

    right_colour = (mesh.color.r, mesh.color.g, mesh.color.b)
    left_mesh = by_key[("hand_9", MESH_ID)]
    assert right_colour != (left_mesh.color.r, left_mesh.color.g, left_mesh.color.b)
    assert 0.0 < mesh.color.a <= 1.0


def test_left_hand_winding_reversed(rng: np.random.Generator, faces: np.ndarray) -> None:
    builder = HandMarkerBuilder(faces)
    left = random_hand_estimate(rng, Side.LEFT, track_id=1)
    right = random_hand_estimate(rng, Side.RIGHT, track_id=2)
    right.vertices = left.vertices.copy()  # same geometry, only the side differs
    markers = {m.ns: m for m in builder.build([left, right], HEADER).markers if m.id == MESH_ID}
    left_tris = points_array(markers["hand_1"].points).reshape(-1, 3, 3)
    right_tris = points_array(markers["hand_2"].points).reshape(-1, 3, 3)
    np.testing.assert_array_equal(left_tris[:, 0], right_tris[:, 0])
    np.testing.assert_array_equal(left_tris[:, 1], right_tris[:, 2])
    np.testing.assert_array_equal(left_tris[:, 2], right_tris[:, 1])

    # normals flip: the reversed winding faces the other way
    def normals(t: np.ndarray) -> np.ndarray:
        return np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])

    np.testing.assert_allclose(normals(left_tris), -normals(right_tris), atol=1e-12)


def test_delete_markers_for_vanished_hands(rng: np.random.Generator, faces: np.ndarray) -> None:
    builder = HandMarkerBuilder(faces)
    a, b, c = (random_hand_estimate(rng, Side.RIGHT, i) for i in (1, 2, 3))
    first = builder.build([a, b], HEADER).markers
    assert all(m.action == Marker.ADD for m in first)
    assert builder.published_ids == {1, 2}

    second = builder.build([b, c], HEADER).markers
    deletes = [m for m in second if m.action == Marker.DELETE]
    assert {(m.ns, m.id) for m in deletes} == {("hand_1", i) for i in MARKER_IDS}
    assert {m.ns for m in second if m.action == Marker.ADD} == {"hand_2", "hand_3"}
    assert builder.published_ids == {2, 3}

    third = builder.build([], HEADER).markers
    assert {(m.ns, m.id) for m in third} == {(f"hand_{h}", i) for h in (2, 3) for i in MARKER_IDS}
    assert all(m.action == Marker.DELETE for m in third)
    assert builder.build([], HEADER).markers == []  # nothing left to delete

    builder.build([a], HEADER)
    cleared = builder.clear(HEADER).markers
    assert {(m.ns, m.id, m.action) for m in cleared} == {("hand_1", i, Marker.DELETE) for i in MARKER_IDS}
    assert builder.published_ids == frozenset()


def test_marker_builder_errors(rng: np.random.Generator, faces: np.ndarray) -> None:
    with pytest.raises(ValueError, match="F x 3"):
        HandMarkerBuilder(faces[:, :2])
    with pytest.raises(ValueError, match="face indices"):
        HandMarkerBuilder(np.array([[0, 1, NUM_VERTICES]]))
    builder = HandMarkerBuilder(faces, MarkerStyle(lifetime_s=0.25))
    twins = [random_hand_estimate(rng, Side.RIGHT, 4), random_hand_estimate(rng, Side.LEFT, 4)]
    with pytest.raises(ValueError, match="distinct track ids"):
        builder.build(twins, HEADER)
    marker = builder.build(twins[:1], HEADER).markers[0]
    assert (marker.lifetime.sec, marker.lifetime.nanosec) == (0, 250_000_000)
