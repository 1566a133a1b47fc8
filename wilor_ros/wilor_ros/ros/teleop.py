"""HandEstimate -> wilor_msgs/TeleopHand(Array): the retargeting-ready output.

The numbers come from ``core.hand.retarget`` (dex-retargeting's vector-retargeting convention); the
field meanings are documented in wilor_msgs/msg/TeleopHand.msg and docs/teleoperation.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from wilor_ros.core.hand.retarget import retarget_hand
from wilor_ros.core.types import HandEstimate, Side
from wilor_ros.ros.message_types import MessageTypes, rclpy_message_types
from wilor_ros.ros.messages import UINT32_MAX, pose_msg


def _flat_f32(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float32).reshape(-1)


def teleop_hand_msg(hand: HandEstimate, header: Any, types: MessageTypes | None = None) -> Any:
    """One TeleopHand (rclpy's, or of ``types``); raises ValueError for a hand whose palm points
    are degenerate or non-finite (see ``core.hand.retarget.wrist_frame``) or whose id does not fit a
    uint32."""
    track_id = int(hand.track_id)
    if not 0 <= track_id <= UINT32_MAX:
        raise ValueError(f"TeleopHand.id is a uint32, got track_id={hand.track_id}")
    result = retarget_hand(hand)
    t = types or rclpy_message_types()
    return t.TeleopHand(
        header=header,
        id=track_id,
        side=int(Side.parse(hand.side)),  # TeleopHand.LEFT/RIGHT equal Side's values
        confidence=float(np.clip(hand.score, 0.0, 1.0)),
        keypoints=_flat_f32(result.keypoints),
        wrist_pose=pose_msg(result.wrist_position, result.rotation, t),
        wrist_frame=_flat_f32(result.frame),
        operator2mano=_flat_f32(result.operator2mano),
        tracked=bool(hand.tracked),
        filtered=bool(hand.filtered),
        depth_corrected=bool(hand.depth_corrected),
    )


def teleop_array_msg(
    hands: Sequence[HandEstimate], header: Any, types: MessageTypes | None = None
) -> tuple[Any, int]:
    """TeleopHandArray of ``hands`` ordered by track id, and the number of hands left out
    because no wrist frame could be built for them."""
    t = types or rclpy_message_types()
    out = []
    skipped = 0
    for hand in sorted(hands, key=lambda h: int(h.track_id)):
        try:
            out.append(teleop_hand_msg(hand, header, t))
        except ValueError:
            skipped += 1
    return t.TeleopHandArray(header=header, hands=out), skipped
