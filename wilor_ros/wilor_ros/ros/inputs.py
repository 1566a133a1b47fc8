"""Everything the node subscribes to, up to a checked frame ready for the core.

``NodeInputs`` owns the subscriptions (image or compressed image, camera_info, depth, hand_boxes),
the ``StampPairer`` that waits for late boxes and depth, the newest-frame slot the worker takes
from, and the conversion of a paired frame into numpy inputs (``FrameInputs``), each bad part
skipped or dropped with a rate-limited warning.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header

from wilor_msgs.msg import HandDetectionArray
from wilor_ros.core.image.external_boxes import check_boxes
from wilor_ros.core.types import CameraIntrinsics, HandDetection
from wilor_ros.ros import image_conversion
from wilor_ros.ros.diagnostics import FrameStatistics, ThrottledWarnings
from wilor_ros.ros.input_qos import InputSubscription
from wilor_ros.ros.input_sync import LatestFrameSlot, PairedFrame, StampPairer, stamp_ns
from wilor_ros.ros.node_config import NodeConfig

if TYPE_CHECKING:
    from rclpy.node import Node

BOXES_DEPTH = 50  # hand_boxes messages queued by DDS (they are small; never lose one to a burst)


class SkipFrame(ValueError):
    """A frame that cannot be processed; ``kind`` groups the rate-limited warning."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class FrameInputs:
    """One frame, converted and checked, as ``TemporalHandPipeline.process`` takes it."""

    header: Header  # stamp and frame_id for the outputs (frame_id never empty)
    stamp: int  # nanoseconds
    rgb: np.ndarray  # H x W x 3 uint8
    boxes: list[HandDetection] | None  # external boxes (None: run the detector)
    depth_m: np.ndarray | None  # H x W float32 metres aligned with rgb
    intrinsics: CameraIntrinsics | None  # None: the official focal heuristic


class NodeInputs:
    """Subscriptions, pairing by stamp and conversion (see the module docstring)."""

    def __init__(
        self, node: Node, config: NodeConfig, warnings: ThrottledWarnings, stats: FrameStatistics
    ) -> None:
        self.config = config.inputs
        self._warnings, self._stats = warnings, stats
        self._log = node.get_logger()
        pairing = config.pairing_config()
        self.pairer = StampPairer(pairing)
        self.slot = LatestFrameSlot()
        self.intrinsics: CameraIntrinsics | None = None
        params = self.config
        compressed = params.image_transport == "compressed"
        image_type, topic = (CompressedImage, "image/compressed") if compressed else (Image, "image")
        qos_mode, info = params.input_qos, self._log.info
        self.image = InputSubscription(
            node, image_type, topic, self._input(self.pairer.add_image), qos_mode, info
        )
        node.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos_profile_sensor_data)
        if params.use_depth:
            InputSubscription(node, Image, "depth", self._input(self.pairer.add_depth), qos_mode, info)
        if params.use_external_boxes:
            reliable = QoSProfile(depth=BOXES_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
            node.create_subscription(
                HandDetectionArray, "hand_boxes", self._input(self.pairer.add_boxes), reliable
            )
        if pairing.waits:
            period = min(pairing.boxes_timeout_s, pairing.depth_timeout_s) / 4
            node.create_timer(max(0.005, period), lambda: self._hand_on(self.pairer.expire()))

    def reconfigure(self, config: NodeConfig) -> None:
        """Live input settings (frame id, camera_info use, pairing timeouts)."""
        self.config = config.inputs
        self.pairer.reconfigure(config.pairing_config())

    # ------------------------------------------------------------------ callbacks (no inference)
    def _hand_on(self, frames: list[PairedFrame]) -> None:
        for frame in frames:
            self.slot.put(frame)

    def _input(self, add: Callable[[int, Any], list[PairedFrame]]) -> Callable[[Any], None]:
        def callback(msg: Any) -> None:
            self._hand_on(add(stamp_ns(msg.header.stamp.sec, msg.header.stamp.nanosec), msg))

        return callback

    def _on_camera_info(self, msg: CameraInfo) -> None:
        if not self.config.use_camera_info:
            return
        self._stats.camera_info_received += 1
        try:
            intrinsics = CameraIntrinsics.from_matrix(np.asarray(msg.k, dtype=np.float64))
        except ValueError as exc:
            self._stats.camera_info_rejected += 1
            self._warnings.warn("camera_info", f"ignoring camera_info: {exc}")
            return
        if self.intrinsics is None:
            k = intrinsics
            self._log.info(f"camera_info received: fx={k.fx:.1f} fy={k.fy:.1f} cx={k.cx:.1f} cy={k.cy:.1f}")
        self.intrinsics = intrinsics

    def counters(self) -> dict[str, int]:
        pairing = self.pairer.counters
        return {
            "frames_received": pairing.images,
            "frames_dropped": self.slot.dropped + pairing.superseded + pairing.evicted,
            "frames_without_boxes": pairing.images_without_boxes,
            "boxes_without_image": pairing.boxes_without_image,
            "frames_without_depth": pairing.depth_missing,
        }

    # ------------------------------------------------------------------ conversion (worker thread)
    def convert(self, frame: PairedFrame) -> FrameInputs:
        """The frame's numpy inputs; raises SkipFrame when the image itself is unusable."""
        p = self.config
        header = frame.image.header
        if not header.frame_id:
            header.frame_id = p.default_frame_id
            self._warnings.once(
                "frame_id", f"images have an empty frame_id: publishing in '{header.frame_id}'"
            )
        try:
            if isinstance(frame.image, CompressedImage):
                rgb = image_conversion.compressed_image_to_rgb(frame.image)
            else:
                rgb = image_conversion.image_to_rgb(frame.image)
        except ValueError as exc:
            raise SkipFrame("image", f"image skipped: {exc}") from exc
        intrinsics = self.intrinsics if p.use_camera_info else None
        if intrinsics is None:
            self._warnings.once(
                "heuristic",
                "no camera_info yet: using the official focal heuristic (5000/256 * max(W, H)); "
                "3D positions are approximate until camera_info arrives",
            )
        return FrameInputs(
            header=header,
            stamp=frame.stamp,
            rgb=rgb,
            boxes=self._boxes(frame.boxes, rgb.shape[:2]) if p.use_external_boxes else None,
            depth_m=self._depth(frame, rgb.shape[:2]) if p.use_depth else None,
            intrinsics=intrinsics,
        )

    def _boxes(self, msg: HandDetectionArray, image_size: tuple[int, int]) -> list[HandDetection]:
        dets = msg.detections
        check = check_boxes(
            [d.box for d in dets], [int(d.side) for d in dets], [d.score for d in dets], image_size
        )
        if check.rejected:
            self._stats.boxes_rejected += len(check.rejected)
            self._warnings.warn(
                "boxes", f"{len(check.rejected)} hand box(es) dropped: {'; '.join(check.rejected)}"
            )
        return check.detections

    def _depth(self, frame: PairedFrame, image_shape: tuple[int, int]) -> np.ndarray | None:
        """The paired depth image (H x W metres) or None, with a throttled warning saying why."""
        if frame.depth is None:
            self._warnings.warn("depth", f"use_depth is set but the image has no depth: {frame.depth_note}")
            return None
        try:
            depth = image_conversion.depth_image_to_metres(frame.depth)
        except ValueError as exc:
            self._warnings.warn("depth", f"depth image skipped: {exc}")
            return None
        if depth.shape != tuple(image_shape):
            self._warnings.warn(
                "depth", f"depth image {depth.shape} is not aligned with the image {image_shape}: not used"
            )
            return None
        return depth
