"""HandEstimate -> wilor_msgs/TeleopHand(Array): the retargeting-ready output.

The numbers come from ``core.retarget`` (dex-retargeting's vector-retargeting convention); the
field meanings are documented in wilor_msgs/msg/TeleopHand.msg and docs/teleoperation.md.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from std_msgs.msg import Header

from wilor_msgs.msg import TeleopHand, TeleopHandArray
from wilor_ros.core.retarget import retarget_hand
from wilor_ros.core.types import HandEstimate, Side
from wilor_ros.ros.messages import UINT32_MAX, quaternion_xyzw


def teleop_hand_msg(hand: HandEstimate, header: Header) -> TeleopHand:
    """One TeleopHand; raises ValueError for a hand whose palm points are degenerate or
    non-finite (see ``core.retarget.wrist_frame``) or whose id does not fit a uint32."""
    track_id = int(hand.track_id)
    if not 0 <= track_id <= UINT32_MAX:
        raise ValueError(f"TeleopHand.id is a uint32, got track_id={hand.track_id}")
    result = retarget_hand(hand)
    msg = TeleopHand()
    msg.header = header
    msg.id = track_id
    msg.side = TeleopHand.RIGHT if Side.parse(hand.side) == Side.RIGHT else TeleopHand.LEFT
    msg.confidence = float(np.clip(hand.score, 0.0, 1.0))
    msg.keypoints = np.ascontiguousarray(result.keypoints, dtype=np.float32).reshape(-1)
    pose = msg.wrist_pose
    pose.position.x, pose.position.y, pose.position.z = (float(v) for v in result.wrist_position)
    qx, qy, qz, qw = (float(v) for v in quaternion_xyzw(result.rotation))
    pose.orientation.x, pose.orientation.y, pose.orientation.z, pose.orientation.w = qx, qy, qz, qw
    msg.wrist_frame = np.ascontiguousarray(result.frame, dtype=np.float32).reshape(-1)
    msg.operator2mano = np.ascontiguousarray(result.operator2mano, dtype=np.float32).reshape(-1)
    msg.tracked = bool(hand.extras.get("tracked", False))
    msg.filtered = bool(hand.extras.get("filtered", False))
    msg.depth_corrected = bool(hand.depth_corrected)
    return msg


def teleop_array_msg(hands: Sequence[HandEstimate], header: Header) -> tuple[TeleopHandArray, int]:
    """TeleopHandArray of ``hands`` ordered by track id, and the number of hands left out
    because no wrist frame could be built for them."""
    msg = TeleopHandArray(header=header)
    skipped = 0
    for hand in sorted(hands, key=lambda h: int(h.track_id)):
        try:
            msg.hands.append(teleop_hand_msg(hand, header))
        except ValueError:
            skipped += 1
    return msg, skipped
