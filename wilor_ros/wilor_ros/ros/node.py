"""``hand_reconstruction_node``: camera images in; HandMeshArray, TeleopHandArray, TF per
joint, markers out.

A thin ROS adapter around ``wilor_ros.core.temporal.TemporalHandPipeline`` (the
``HandPipeline`` plus depth correction, tracking, One Euro filtering and detector skipping, all
driven by the image stamps; each part can be switched off by a parameter):
* callbacks never run inference: images go through ``input_sync.StampPairer`` (which waits a
  bounded time for the external boxes and the depth image of their stamp) into a newest-frame
  slot; older unprocessed frames are dropped and counted, so memory and latency stay bounded;
* one worker thread converts and processes the newest frame and publishes the results
  (``outputs.HandOutputs``);
* bad input is skipped or dropped with a rate-limited warning and the node keeps running;
* latency (image stamp to publish), processing rate and every counter go to /diagnostics.

Ids and TF names: ``HandMesh.id`` / ``TeleopHand.id`` is the track id (stable while the hand is
tracked; never reused). Hands are published ordered by track id, so the TF names
(``ros/tf.py``: the first hand of a side is ``right_hand_*``, the next ``right_hand_2_*``, ...)
go to the hands of a side in the order their tracks were born.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import rclpy
import rclpy.executors
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from wilor_msgs.msg import HandDetectionArray
from wilor_ros.core.external_boxes import check_boxes
from wilor_ros.core.model_files import MissingModelFilesError
from wilor_ros.core.pipeline import HandPipeline, PipelineConfig
from wilor_ros.core.temporal import TemporalHandPipeline
from wilor_ros.core.types import CameraIntrinsics, HandDetection
from wilor_ros.ros import image_conversion
from wilor_ros.ros.diagnostics import FrameStatistics, ThrottledWarnings, diagnostic_array, status_line
from wilor_ros.ros.input_qos import InputSubscription
from wilor_ros.ros.input_sync import NS_PER_S, LatestFrameSlot, PairedFrame, StampPairer, stamp_ns
from wilor_ros.ros.node_parameters import NodeParameters, usage
from wilor_ros.ros.outputs import HandOutputs

NODE_NAME = "hand_reconstruction"
# a stamp this far (s) behind the last processed one is a clock reset (bag loop, simulation
# restart): start over; a smaller step back is an out-of-order frame and is skipped
CLOCK_RESET_S = 3.0


class HandReconstructionNode(Node):
    """See the module docstring. ``pipeline_factory`` lets tests and tools inject a pipeline."""

    def __init__(
        self,
        *,
        pipeline_factory: Callable[[PipelineConfig], HandPipeline] | None = None,
        node_name: str = NODE_NAME,
        **node_kwargs: Any,
    ) -> None:
        super().__init__(node_name, **node_kwargs)
        # what destroy_node needs exists before anything can fail
        self._worker: threading.Thread | None = None
        self._slot = LatestFrameSlot()
        self.temporal: TemporalHandPipeline | None = None
        self.params = NodeParameters(self, self._on_parameters_changed)
        p = self.params.values
        self.warnings = ThrottledWarnings(self.get_logger().warning, lambda: p["warn_throttle"])
        self.stats = FrameStatistics()

        factory = pipeline_factory or HandPipeline.from_config
        self.pipeline = factory(self.params.pipeline_config())  # MissingModelFilesError: refuse
        if self.pipeline.synthetic:
            self.get_logger().warning(
                "running with SYNTHETIC models: the published hands are not real estimates"
            )
        self.temporal = TemporalHandPipeline(self.pipeline, self.params.temporal_config())
        self._intrinsics: CameraIntrinsics | None = None
        self._last_stamp: int | None = None

        faces = getattr(self.pipeline.backend, "faces", None)
        self.outputs = HandOutputs(
            self, faces, "SYNTHETIC MODELS" if self.pipeline.synthetic else None, self.warnings.warn
        )
        self.pairer = StampPairer(self.params.pairing_config())

        info = self.get_logger().info
        compressed = p["image_transport"] == "compressed"
        image_type, image_topic = (CompressedImage, "image/compressed") if compressed else (Image, "image")
        self.image_input = InputSubscription(
            self, image_type, image_topic, self._on_image, p["input_qos"], info
        )
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos_profile_sensor_data)
        if p["use_depth"]:
            InputSubscription(self, Image, "depth", self._on_depth, p["input_qos"], info)
        if p["use_external_boxes"]:
            reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
            self.create_subscription(HandDetectionArray, "hand_boxes", self._on_boxes, reliable)
        if self.pairer.config.waits:
            period = min(self.pairer.config.boxes_timeout_s, self.pairer.config.depth_timeout_s) / 4
            self.create_timer(max(0.005, period), lambda: self._hand_on(self.pairer.expire()))
        self.create_timer(p["diagnostics_period"], self._publish_diagnostics)
        self._running = True
        self._worker = threading.Thread(target=self._work, name="wilor_worker", daemon=True)
        self._worker.start()
        config = self.pipeline.config
        info(f"ready: backend={config.backend} device={config.device} input={self.image_input.topic_name}")

    def _on_parameters_changed(self, updates: dict[str, Any]) -> None:
        """Live changes (validated by NodeParameters) reach the parts that use them."""
        if self.temporal is not None:
            self.params.apply_live(updates, self.pipeline, self.temporal)
            self.pairer.config = self.params.pairing_config()

    # ------------------------------------------------------------------ callbacks (no inference)
    def _hand_on(self, frames: list[PairedFrame]) -> None:
        for frame in frames:
            self._slot.put(frame)

    def _on_image(self, msg: Image | CompressedImage) -> None:
        self._hand_on(self.pairer.add_image(stamp_ns(msg.header.stamp.sec, msg.header.stamp.nanosec), msg))

    def _on_boxes(self, msg: HandDetectionArray) -> None:
        self._hand_on(self.pairer.add_boxes(stamp_ns(msg.header.stamp.sec, msg.header.stamp.nanosec), msg))

    def _on_depth(self, msg: Image) -> None:
        self._hand_on(self.pairer.add_depth(stamp_ns(msg.header.stamp.sec, msg.header.stamp.nanosec), msg))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        if not self.params.values["use_camera_info"]:
            return
        self.stats.camera_info_received += 1
        try:
            intrinsics = CameraIntrinsics.from_matrix(np.asarray(msg.k, dtype=np.float64))
        except ValueError as exc:
            self.stats.camera_info_rejected += 1
            self.warnings.warn("camera_info", f"ignoring camera_info: {exc}")
            return
        if self._intrinsics is None:
            k = intrinsics
            self.get_logger().info(
                f"camera_info received: fx={k.fx:.1f} fy={k.fy:.1f} cx={k.cx:.1f} cy={k.cy:.1f}"
            )
        self._intrinsics = intrinsics

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while self._running:
            frame = self._slot.take(timeout=0.1)
            if frame is None:
                continue
            try:
                self.process(frame)
            except Exception as exc:
                self.stats.skipped += 1
                self.warnings.warn("processing", f"frame skipped: {type(exc).__name__}: {exc}")

    def _skip(self, kind: str, message: str) -> None:
        self.stats.skipped += 1
        self.warnings.warn(kind, message)

    def process(self, frame: PairedFrame) -> None:
        """Convert, check and run one paired frame, then publish its results."""
        p = self.params.values
        header = frame.image.header
        if not header.frame_id:
            header.frame_id = p["default_frame_id"]
            self.warnings.once(
                "frame_id", f"images have an empty frame_id: publishing in '{header.frame_id}'"
            )
        if self._last_stamp is not None and frame.stamp < self._last_stamp:
            if self._last_stamp - frame.stamp < CLOCK_RESET_S * NS_PER_S:
                return self._skip(
                    "stamp", f"out-of-order image stamp {frame.stamp / NS_PER_S:.6f}: frame skipped"
                )
            self.get_logger().warning("image stamps jumped back (bag loop or clock reset): tracking restarts")
        try:
            convert = (
                image_conversion.compressed_image_to_rgb
                if isinstance(frame.image, CompressedImage)
                else image_conversion.image_to_rgb
            )
            rgb = convert(frame.image)
        except ValueError as exc:
            return self._skip("image", f"image skipped: {exc}")
        boxes = self._external_boxes(frame.boxes, rgb.shape[:2]) if p["use_external_boxes"] else None
        depth = self._depth(frame, rgb.shape[:2]) if p["use_depth"] else None
        intrinsics = self._intrinsics if p["use_camera_info"] else None
        if intrinsics is None:
            self.warnings.once(
                "heuristic",
                "no camera_info yet: using the official focal heuristic (5000/256 * max(W, H)); "
                "3D positions are approximate until camera_info arrives",
            )
        # depth correction, tracking and filtering happen inside, in that order (core/temporal.py)
        hands = self.temporal.process(
            rgb, frame.stamp / NS_PER_S, intrinsics=intrinsics, boxes=boxes, depth_m=depth
        )
        report = self.temporal.last_report
        if report is not None and report.num_nonfinite:
            self.warnings.warn("nan", f"{report.num_nonfinite} hand(s) with non-finite output dropped")
        # ordered by track id: TF names (right_hand, right_hand_2, ...) stay with their tracks
        hands = sorted(hands, key=lambda h: h.track_id)
        self._last_stamp = frame.stamp
        self.outputs.publish(header, hands, rgb, self.params.output_switches())
        self.stats.record_processed(self.get_clock().now().nanoseconds / NS_PER_S - frame.stamp / NS_PER_S)

    def _external_boxes(self, msg: HandDetectionArray, image_size: tuple[int, int]) -> list[HandDetection]:
        dets = msg.detections
        check = check_boxes(
            [d.box for d in dets], [int(d.side) for d in dets], [d.score for d in dets], image_size
        )
        if check.rejected:
            self.stats.boxes_rejected += len(check.rejected)
            self.warnings.warn(
                "boxes", f"{len(check.rejected)} hand box(es) dropped: {'; '.join(check.rejected)}"
            )
        return check.detections

    def _depth(self, frame: PairedFrame, image_shape: tuple[int, int]) -> np.ndarray | None:
        """The paired depth image (H x W metres) or None, with a throttled warning saying why."""
        if frame.depth is None:
            self.warnings.warn("depth", f"use_depth is set but the image has no depth: {frame.depth_note}")
            return None
        try:
            depth = image_conversion.depth_image_to_metres(frame.depth)
        except ValueError as exc:
            self.warnings.warn("depth", f"depth image skipped: {exc}")
            return None
        if depth.shape != tuple(image_shape):
            self.warnings.warn(
                "depth", f"depth image {depth.shape} is not aligned with the image {image_shape}: not used"
            )
            return None
        return depth

    # ------------------------------------------------------------------ diagnostics
    def statistics(self) -> dict[str, float]:
        pairing = self.pairer.counters
        counters = {
            "frames_received": pairing.images,
            "frames_dropped": self._slot.dropped + pairing.superseded + pairing.evicted,
            "frames_without_boxes": pairing.images_without_boxes,
            "boxes_without_image": pairing.boxes_without_image,
            "frames_without_depth": pairing.depth_missing,
            "detector_calls": self.temporal.detector_calls if self.temporal else 0,
        }
        return self.stats.snapshot(counters)

    def _publish_diagnostics(self) -> None:
        stats = self.statistics()
        config = self.pipeline.config
        name = f"{self.get_name()}: hand reconstruction"
        stamp = self.get_clock().now().to_msg()
        self.outputs.diagnostics.publish(
            diagnostic_array(name, f"{config.backend}/{config.device}", self.pipeline.synthetic, stats, stamp)
        )
        if stats["frames_received"]:
            self.get_logger().info(
                status_line(stats), throttle_duration_sec=max(5.0, self.params.values["diagnostics_period"])
            )

    def destroy_node(self) -> None:
        """Stops the worker and releases the pipeline; safe on a node whose start-up failed."""
        self._running = False
        self._slot.close()
        if self._worker is not None and self._worker.is_alive():
            self._worker.join(timeout=5.0)
        if self.temporal is not None:
            self.temporal.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    argv = sys.argv if args is None else args
    plain = rclpy.utilities.remove_ros_args(argv)[1:]
    if any(a in ("-h", "--help") for a in plain):
        print(usage())
        return 0
    if plain:
        print(
            f"hand_reconstruction_node: unknown argument(s) {' '.join(plain)}\n\n{usage()}", file=sys.stderr
        )
        return 2
    rclpy.init(args=argv)
    try:
        node = HandReconstructionNode()
    except (MissingModelFilesError, ValueError, RuntimeError) as exc:
        print(f"hand_reconstruction_node: cannot start:\n{exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 1
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, rclpy.executors.ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
