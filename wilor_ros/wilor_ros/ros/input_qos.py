"""Subscriptions for large sensor inputs (images, depth) whose reliability can follow the publishers.

Why not plain sensor-data QoS: with Fast DDS's default transports, a ~1 MB image from ANOTHER
process reaches a best-effort subscriber only when every UDP fragment arrives; measured with the
ROS 2 wheels (1280x720 rgb8 at 30 Hz, ../shared/ENVIRONMENT.md and docs in README "On a robot"):
0/60 frames from a best-effort or a reliable publisher into a best-effort subscriber, 60/60 into a
reliable subscriber (lost fragments are resent). A reliable subscriber, however, receives NOTHING
from a best-effort publisher (incompatible QoS). Hence the modes:

* ``auto`` (default): best effort until publishers are seen, then reliable when every publisher of
  the topic is reliable (most camera drivers, image_transport's default) and best effort as soon
  as one is best effort — what rosbag2 does when it records. Re-checked every ``CHECK_PERIOD_S``.
* ``reliable``: always reliable (no frames from best-effort publishers).
* ``best_effort``: sensor-data QoS. For large images from best-effort publishers, give the
  PUBLISHING process a Fast DDS profile with a large shared-memory segment
  (config/fastdds_large_images.xml; the subscriber's profile alone does not help: 2/60 measured).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

from wilor_ros.ros.node_config import INPUT_QOS_CHOICES

if TYPE_CHECKING:
    from rclpy.node import Node

CHECK_PERIOD_S = 0.25
# keep-last depth of a reliable input: enough to absorb a burst, small enough that a slow node
# never makes a reliable publisher block (keep-last never blocks the writer)
RELIABLE_DEPTH = 10


def input_qos(reliable: bool) -> QoSProfile:
    if not reliable:
        return qos_profile_sensor_data
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST, depth=RELIABLE_DEPTH, reliability=ReliabilityPolicy.RELIABLE
    )


class InputSubscription:
    """One input topic subscribed with the reliability ``mode`` asks for (see module docstring)."""

    def __init__(
        self,
        node: Node,
        msg_type: type,
        topic: str,
        callback: Callable[[Any], None],
        mode: str,
        log: Callable[[str], None],
    ) -> None:
        if mode not in INPUT_QOS_CHOICES:
            raise ValueError(f"input QoS must be one of {', '.join(INPUT_QOS_CHOICES)}, got {mode!r}")
        self._node, self._type, self._topic, self._callback = node, msg_type, topic, callback
        self._mode, self._log = mode, log
        self.reliable = mode == "reliable"
        self._subscription = node.create_subscription(msg_type, topic, callback, input_qos(self.reliable))
        self.topic_name: str = self._subscription.topic_name  # resolved (namespace, remaps)
        if mode == "auto":
            self._choose()
            node.create_timer(CHECK_PERIOD_S, self._choose)

    def publishers_reliable(self) -> bool | None:
        """True/False when every/some publisher of the topic is reliable; None without publishers."""
        infos = self._node.get_publishers_info_by_topic(self.topic_name)
        if not infos:
            return None
        return all(info.qos_profile.reliability == ReliabilityPolicy.RELIABLE for info in infos)

    def _choose(self) -> None:
        want = self.publishers_reliable()
        if want is None or want == self.reliable:
            return
        self._node.destroy_subscription(self._subscription)
        self.reliable = want
        self._subscription = self._node.create_subscription(
            self._type, self._topic, self._callback, input_qos(want)
        )
        why = "reliable (all publishers are reliable)" if want else "best effort (a publisher is best effort)"
        self._log(f"input_qos auto: '{self.topic_name}' now subscribed {why}")
