"""One TF frame per hand joint, published on /tf without tf2_ros.

tf2_ros has no PyPI wheel, so ``HandTfBroadcaster`` publishes tf2_msgs/TFMessage itself with the
same topic and QoS as tf2_ros's TransformBroadcaster (tf2_ros/transform_broadcaster.py:
``QoSProfile(depth=100)``, i.e. keep-last 100, reliable, volatile). Any tf2 listener receives
the frames as if tf2_ros had sent them.

Frame names (``hand_frame_name``):
    ``<prefix><side>_hand_<joint>``, e.g. ``right_hand_wrist``, ``left_hand_index_tip``;
    for a second (third, ...) hand of the same side in one image, a track suffix is inserted
    after ``hand``: ``right_hand_2_wrist``. Number 1 has no suffix so that the common single-hand
    case gets the short, stable names. ``prefix`` namespaces several cameras
    (e.g. ``"cam1/"`` -> ``cam1/right_hand_wrist``).
Each joint frame is a direct child of the image's optical frame (``header.frame_id``): origin at
the joint (``keypoints_3d[j]``, metres), axes = the joint's global MANO rotation
(``HandEstimate.joint_rotations[j]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from wilor_ros.core.hand.constants import JOINT_NAMES, NUM_JOINTS
from wilor_ros.core.types import HandEstimate, Side
from wilor_ros.ros.message_types import MessageTypes, rclpy_message_types
from wilor_ros.ros.messages import quaternion_xyzw

if TYPE_CHECKING:
    from rclpy.node import Node
    from rclpy.publisher import Publisher
    from rclpy.qos import QoSProfile

TF_TOPIC = "/tf"
# tf2_ros TransformBroadcaster's publisher depth (QoSProfile(depth=100)).
TF_QOS_DEPTH = 100


def tf_qos() -> QoSProfile:
    """The QoS tf2_ros's TransformBroadcaster publishes /tf with: keep last 100, reliable, volatile."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=TF_QOS_DEPTH,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.VOLATILE,
    )


def hand_frame_name(side: Side | str | int, joint: int | str, prefix: str = "", hand_number: int = 1) -> str:
    """TF frame name of one joint: ``<prefix><side>_hand[_<n>]_<joint>``.

    ``joint`` is an OpenPose index (0..20) or a name from ``constants.JOINT_NAMES``;
    ``hand_number`` counts hands of the same side in one image from 1 (1 = no suffix).
    """
    side_label = Side.parse(side).label
    if isinstance(joint, str):
        if joint not in JOINT_NAMES:
            raise ValueError(f"unknown joint name {joint!r}: expected one of {', '.join(JOINT_NAMES)}")
        joint_name = joint
    else:
        if not 0 <= int(joint) < NUM_JOINTS:
            raise ValueError(f"joint index must be in [0, {NUM_JOINTS}), got {joint}")
        joint_name = JOINT_NAMES[int(joint)]
    if hand_number < 1:
        raise ValueError(f"hand_number counts from 1, got {hand_number}")
    suffix = "" if hand_number == 1 else f"_{hand_number}"
    return f"{prefix}{side_label}_hand{suffix}_{joint_name}"


def hand_transforms(
    est: HandEstimate, header: Any, prefix: str = "", hand_number: int = 1, types: MessageTypes | None = None
) -> list[Any]:
    """21 TransformStamped (OpenPose order), parent ``header.frame_id``, stamp ``header.stamp``.

    Translation = ``est.keypoints_3d[j]`` (metres); rotation = unit quaternion (x, y, z, w) of
    ``est.joint_rotations[j]``. Raises ValueError on wrong shapes or non-finite values (tf2
    rejects NaN transforms, so they must never be published).
    """
    keypoints = np.asarray(est.keypoints_3d, dtype=np.float64)
    rotations = np.asarray(est.joint_rotations, dtype=np.float64)
    if keypoints.shape != (NUM_JOINTS, 3) or rotations.shape != (NUM_JOINTS, 3, 3):
        raise ValueError(
            f"need keypoints_3d {NUM_JOINTS} x 3 and joint_rotations {NUM_JOINTS} x 3 x 3, got "
            f"{keypoints.shape} and {rotations.shape}"
        )
    if not (np.all(np.isfinite(keypoints)) and np.all(np.isfinite(rotations))):
        raise ValueError("hand keypoints/rotations contain NaN or inf: drop the hand before publishing TF")
    quats = quaternion_xyzw(rotations)  # N x 4, unit length
    side = Side.parse(est.side)
    t = types or rclpy_message_types()
    return [
        t.TransformStamped(
            header=t.Header(stamp=header.stamp, frame_id=header.frame_id),
            child_frame_id=hand_frame_name(side, j, prefix, hand_number),
            transform=t.Transform(
                translation=t.Vector3(x=tx, y=ty, z=tz), rotation=t.Quaternion(x=qx, y=qy, z=qz, w=qw)
            ),
        )
        for j, ((tx, ty, tz), (qx, qy, qz, qw)) in enumerate(zip(keypoints.tolist(), quats.tolist()))
    ]


def hand_numbers(estimates: list[HandEstimate]) -> list[int]:
    """Per estimate, its 1-based number among the hands of the same side (in list order),
    for ``hand_frame_name``'s track suffix. Callers wanting stable names should order the list
    by track id first."""
    counts: dict[Side, int] = {}
    numbers = []
    for est in estimates:
        side = Side.parse(est.side)
        counts[side] = counts.get(side, 0) + 1
        numbers.append(counts[side])
    return numbers


def hands_transforms(
    estimates: list[HandEstimate], header: Any, prefix: str = "", types: MessageTypes | None = None
) -> list[Any]:
    """The joint frames of every hand of one image (numbered per side, see ``hand_numbers``)."""
    transforms: list[Any] = []
    for est, number in zip(estimates, hand_numbers(estimates)):
        transforms.extend(hand_transforms(est, header, prefix, number, types))
    return transforms


class HandTfBroadcaster:
    """Publishes hand joint frames on /tf for a node it is handed (it owns one publisher only)."""

    def __init__(self, node: Node, topic: str = TF_TOPIC, qos: QoSProfile | None = None) -> None:
        self._tf_message = rclpy_message_types().TFMessage
        self._publisher = node.create_publisher(self._tf_message, topic, qos if qos is not None else tf_qos())

    def send(self, transforms: list[Any]) -> None:
        """Publish the transforms in one TFMessage (nothing is sent for an empty list)."""
        if transforms:
            self._publisher.publish(self._tf_message(transforms=list(transforms)))

    def send_hands(self, estimates: list[HandEstimate], header: Any, prefix: str = "") -> int:
        """Publish the joint frames of every hand (numbered per side, see ``hand_numbers``);
        returns the number of transforms sent."""
        transforms = hands_transforms(estimates, header, prefix)
        self.send(transforms)
        return len(transforms)

    @property
    def publisher(self) -> Publisher:
        """The underlying rclpy publisher (for tests and subscription counts)."""
        return self._publisher
