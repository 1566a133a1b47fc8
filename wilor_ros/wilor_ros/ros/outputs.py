"""Everything the node publishes for one processed image, composed like tf2_ros's broadcaster:
handed a node, it owns the output publishers."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from wilor_msgs.msg import HandMeshArray, MeshTopology, TeleopHandArray
from wilor_ros.core.types import HandEstimate
from wilor_ros.ros import image_conversion
from wilor_ros.ros.messages import estimates_to_array_msg, mesh_topology_msg
from wilor_ros.ros.node_config import OutputConfig
from wilor_ros.ros.teleop import teleop_array_msg
from wilor_ros.ros.tf import HandTfBroadcaster

if TYPE_CHECKING:
    from rclpy.node import Node

OUTPUT_DEPTH = 10


class HandOutputs:
    """Publishers of hands, teleop_hands, hand_mesh_topology, /tf, markers, debug_image and
    /diagnostics.

    Markers and the debug overlay are built only while somebody subscribes.
    """

    def __init__(
        self,
        node: Node,
        faces: np.ndarray | None,
        label: str | None,
        warn: Callable[[str, str], None],
    ) -> None:
        reliable = QoSProfile(depth=OUTPUT_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.hands = node.create_publisher(HandMeshArray, "hands", reliable)
        self.teleop = node.create_publisher(TeleopHandArray, "teleop_hands", reliable)
        self.topology = node.create_publisher(MeshTopology, "hand_mesh_topology", latched)
        self.markers = node.create_publisher(MarkerArray, "markers", reliable)
        self.debug = node.create_publisher(Image, "debug_image", qos_profile_sensor_data)
        self.diagnostics = node.create_publisher(DiagnosticArray, "/diagnostics", reliable)
        self.tf = HandTfBroadcaster(node)
        self.faces = None if faces is None else np.asarray(faces)
        self._label = label
        self._warn = warn
        self.markers_built = 0  # MarkerArrays built (only while someone subscribes)
        self._marker_builder = None
        if self.faces is not None:
            from wilor_ros.ros.markers import HandMarkerBuilder

            self.topology.publish(mesh_topology_msg(self.faces))
            self._marker_builder = HandMarkerBuilder(self.faces)

    def publish(
        self, header: Header, hands: list[HandEstimate], rgb: np.ndarray, switches: OutputConfig
    ) -> None:
        self.hands.publish(estimates_to_array_msg(hands, header))
        if switches.publish_teleop:
            teleop, skipped = teleop_array_msg(hands, header)
            if skipped:
                self._warn("teleop", f"{skipped} hand(s) without a palm frame left out of teleop_hands")
            self.teleop.publish(teleop)
        if switches.publish_tf and hands:
            self.tf.send_hands(hands, header, switches.frame_prefix)
        if (
            switches.publish_markers
            and self._marker_builder is not None
            and self.markers.get_subscription_count()
        ):
            self.markers.publish(self._marker_builder.build(hands, header))
            self.markers_built += 1
        if switches.publish_debug_image and self.debug.get_subscription_count():
            from wilor_ros.core.image.overlay import draw_hands

            overlay = draw_hands(rgb, hands, self.faces, label=self._label)
            self.debug.publish(image_conversion.numpy_to_image(overlay, "rgb8", header))
