"""Real rclpy round trips of the wilor_msgs / TF messages built by wilor_ros.ros, and package.xml checks.

Every test publishes from one node and receives on another (same process, own Context on a
random DDS domain, so nothing leaks to or from other ROS graphs) through the real middleware,
i.e. through serialisation, then compares the received values with the sources.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy", reason="needs rclpy (ROS 2) in this environment")
wilor_msgs_msg = pytest.importorskip("wilor_msgs.msg", reason="wilor_msgs not built: run scripts/setup.sh")
pytest.importorskip("tf2_msgs.msg", reason="tf2_msgs not built: run scripts/setup.sh")

from builtin_interfaces.msg import Time  # noqa: E402
from helpers import random_hand_estimate, ros_context, spin_until  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from scipy.spatial.transform import Rotation  # noqa: E402
from std_msgs.msg import Header  # noqa: E402
from tf2_msgs.msg import TFMessage  # noqa: E402
from visualization_msgs.msg import MarkerArray  # noqa: E402

from wilor_msgs.msg import HandMeshArray, MeshTopology  # noqa: E402
from wilor_ros.core.hand.constants import JOINT_NAMES, NUM_FACES, NUM_VERTICES  # noqa: E402
from wilor_ros.core.types import Side  # noqa: E402
from wilor_ros.ros.markers import MESH_ID, HandMarkerBuilder  # noqa: E402
from wilor_ros.ros.messages import (  # noqa: E402
    estimates_to_array_msg,
    faces_from_topology_msg,
    hand_mesh_from_msg,
    mesh_topology_msg,
)
from wilor_ros.ros.tf import TF_TOPIC, HandTfBroadcaster, hand_frame_name, tf_qos  # noqa: E402

pytestmark = pytest.mark.ros

REPO_ROOT = Path(__file__).resolve().parents[2]


class Session:
    """Two nodes (talker, listener) and an executor in a private rclpy Context."""

    def __init__(self, context: object) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.context = context
        self.talker = rclpy.create_node(f"talker_{suffix}", context=context)
        self.listener = rclpy.create_node(f"listener_{suffix}", context=context)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.talker)
        self.executor.add_node(self.listener)

    def close(self) -> None:
        self.executor.shutdown()
        self.talker.destroy_node()
        self.listener.destroy_node()


@pytest.fixture(scope="module")
def session() -> Iterator[Session]:
    with ros_context() as context:
        s = Session(context)
        try:
            yield s
        finally:
            s.close()


def unique_topic(name: str) -> str:
    return f"/test_{uuid.uuid4().hex[:8]}/{name}"


def publish_and_receive(session: Session, msg_type: type, topic: str, message: object, qos: object) -> object:
    """Publish ``message`` once the subscriber is matched; return what the listener received."""
    received: list[object] = []
    sub = session.listener.create_subscription(msg_type, topic, received.append, qos)
    pub = session.talker.create_publisher(msg_type, topic, qos)
    try:
        assert spin_until(session.executor, lambda: pub.get_subscription_count() > 0), "no DDS match"
        pub.publish(message)
        assert spin_until(session.executor, lambda: len(received) > 0), "message not received"
        return received[0]
    finally:
        session.listener.destroy_subscription(sub)
        session.talker.destroy_publisher(pub)


def test_hand_mesh_array_round_trip_two_hands(session: Session) -> None:
    rng = np.random.default_rng(7)
    right = random_hand_estimate(rng, Side.RIGHT, track_id=7)
    left = random_hand_estimate(rng, Side.LEFT, track_id=4_000_000_000)  # large uint32 id
    right.depth_corrected, left.depth_corrected = True, False
    header = Header(stamp=Time(sec=1_700_000_123, nanosec=456_789), frame_id="camera_color_optical_frame")
    sent = estimates_to_array_msg([right, left], header)

    got = publish_and_receive(session, HandMeshArray, unique_topic("hands"), sent, 10)

    assert got.header.frame_id == "camera_color_optical_frame"
    assert (got.header.stamp.sec, got.header.stamp.nanosec) == (1_700_000_123, 456_789)
    assert len(got.hands) == 2
    for est, hand_msg in zip([right, left], got.hands):
        hand = hand_mesh_from_msg(hand_msg)
        assert hand.frame_id == header.frame_id
        assert hand.stamp_ns == 1_700_000_123 * 1_000_000_000 + 456_789
        assert hand.id == est.track_id
        assert hand.side == est.side
        assert hand.score == np.float32(est.score)
        assert hand.vertices.shape == (NUM_VERTICES, 3)
        assert np.array_equal(hand.vertices, est.vertices)  # exact float32 after the trip
        for name in ("box", "keypoints_3d", "keypoints_2d", "global_orient", "hand_pose", "betas", "cam_t"):
            assert np.array_equal(getattr(hand, name), getattr(est, name)), name
        assert np.array_equal(hand.intrinsics, est.intrinsics.as_array())
        assert hand.intrinsics_from_camera_info == est.intrinsics.from_camera_info
        assert hand.depth_corrected == est.depth_corrected
        assert np.array_equal(hand.wrist_position, est.keypoints_3d[0].astype(np.float64))
        # orientation: a unit quaternion of the global orientation matrix
        quat = hand.wrist_quaternion_xyzw
        assert np.linalg.norm(quat) == pytest.approx(1.0, abs=1e-9)
        np.testing.assert_allclose(Rotation.from_quat(quat).as_matrix(), est.global_orient_matrix, atol=1e-6)
    # the two hands really are different (no aliasing between the messages)
    assert not np.array_equal(got.hands[0].vertices, got.hands[1].vertices)


def test_empty_hand_array_round_trip(session: Session) -> None:
    header = Header(stamp=Time(sec=5, nanosec=6), frame_id="cam")
    got = publish_and_receive(
        session, HandMeshArray, unique_topic("hands"), estimates_to_array_msg([], header), 10
    )
    assert got.hands == [] and got.header.stamp.sec == 5


def test_tf_round_trip_on_slash_tf(session: Session) -> None:
    rng = np.random.default_rng(11)
    est = random_hand_estimate(rng, Side.RIGHT, track_id=3)
    header = Header(stamp=Time(sec=42, nanosec=7), frame_id="camera_optical")
    received: list[TFMessage] = []
    sub = session.listener.create_subscription(TFMessage, TF_TOPIC, received.append, tf_qos())
    broadcaster = HandTfBroadcaster(session.talker)
    try:
        assert spin_until(session.executor, lambda: broadcaster.publisher.get_subscription_count() > 0)
        assert broadcaster.send_hands([est], header) == len(JOINT_NAMES)
        assert spin_until(session.executor, lambda: len(received) > 0), "TFMessage not received"
    finally:
        session.listener.destroy_subscription(sub)
        session.talker.destroy_publisher(broadcaster.publisher)
    transforms = received[0].transforms
    assert [t.child_frame_id for t in transforms] == [f"right_hand_{name}" for name in JOINT_NAMES]
    for j, t in enumerate(transforms):
        assert t.header.frame_id == "camera_optical"
        assert (t.header.stamp.sec, t.header.stamp.nanosec) == (42, 7)
        tr = t.transform.translation
        assert np.array_equal([tr.x, tr.y, tr.z], est.keypoints_3d[j].astype(np.float64))
        q = t.transform.rotation
        np.testing.assert_allclose(
            Rotation.from_quat([q.x, q.y, q.z, q.w]).as_matrix(), est.joint_rotations[j], atol=1e-6
        )
    assert transforms[8].child_frame_id == hand_frame_name(Side.RIGHT, "index_tip")


def test_mesh_topology_reaches_late_subscriber(session: Session) -> None:
    rng = np.random.default_rng(3)
    faces = rng.integers(0, NUM_VERTICES, (NUM_FACES, 3))
    latched = QoSProfile(
        depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
    )
    topic = unique_topic("hand_mesh_topology")
    pub = session.talker.create_publisher(MeshTopology, topic, latched)
    pub.publish(mesh_topology_msg(faces))
    # the subscriber only appears after the message was published
    received: list[MeshTopology] = []
    sub = session.listener.create_subscription(MeshTopology, topic, received.append, latched)
    try:
        assert spin_until(session.executor, lambda: len(received) > 0), "late subscriber got nothing"
    finally:
        session.listener.destroy_subscription(sub)
        session.talker.destroy_publisher(pub)
    assert received[0].num_vertices == NUM_VERTICES
    assert np.array_equal(faces_from_topology_msg(received[0]), faces)


def test_marker_array_with_shared_points_round_trip(session: Session) -> None:
    """The mesh marker reuses one Point per vertex for every triangle corner: the received
    triangle list must still hold every corner's own coordinates."""
    rng = np.random.default_rng(9)
    faces = rng.integers(0, NUM_VERTICES, (NUM_FACES, 3))
    left = random_hand_estimate(rng, Side.LEFT, track_id=2)
    sent = HandMarkerBuilder(faces).build([left], Header(frame_id="cam"))
    got = publish_and_receive(session, MarkerArray, unique_topic("markers"), sent, 10)
    mesh = next(m for m in got.markers if m.id == MESH_ID)
    corners = np.array([[p.x, p.y, p.z] for p in mesh.points])
    expected = left.vertices[faces[:, [0, 2, 1]].reshape(-1)].astype(np.float64)  # LEFT winding
    assert np.array_equal(corners, expected)


def test_mesh_topology_rejects_bad_faces() -> None:
    with pytest.raises(ValueError, match="F x 3"):
        mesh_topology_msg(np.zeros((4, 2), np.int64))
    with pytest.raises(ValueError, match=r"\[0, 778\)"):
        mesh_topology_msg(np.array([[0, 1, 778]]))
    with pytest.raises(ValueError, match="integer"):
        mesh_topology_msg(np.zeros((2, 3), np.float32))


def test_hand_estimate_to_msg_rejects_bad_shapes() -> None:
    rng = np.random.default_rng(5)
    est = random_hand_estimate(rng)
    est.vertices = est.vertices[:-1]
    with pytest.raises(ValueError, match="vertices must be 778 x 3"):
        estimates_to_array_msg([est], Header())
    est = random_hand_estimate(rng)
    est.keypoints_2d = est.keypoints_2d[:20]
    with pytest.raises(ValueError, match="keypoints_2d needs 42 values"):
        estimates_to_array_msg([est], Header())
    est = random_hand_estimate(rng, track_id=-1)
    with pytest.raises(ValueError, match="uint32"):
        estimates_to_array_msg([est], Header())


@pytest.mark.parametrize("package", ["wilor_msgs", "wilor_ros"])
def test_package_xml_validates(package: str) -> None:
    catkin_package = pytest.importorskip("catkin_pkg.package", reason="catkin_pkg not installed")
    pkg = catkin_package.parse_package(str(REPO_ROOT / package / "package.xml"))
    pkg.validate()  # raises InvalidPackage on any error
    assert pkg.name == package
    assert pkg.package_format == 3
