"""``hand_reconstruction_node``: camera images in; HandMeshArray, TeleopHandArray, TF per
joint, markers out.

A thin ROS adapter around ``wilor_ros.core.temporal.TemporalHandPipeline`` (the
``HandPipeline`` plus depth correction, tracking, One Euro filtering and detector skipping, all
driven by the image stamps; each part can be switched off by a parameter):
* the image callback never runs inference: it only stores the newest frame (older unprocessed
  frames are dropped and counted), so memory stays bounded whatever the input rate;
* one worker thread converts and processes the newest frame and publishes the results;
* bad input (unsupported encoding, wrong step/size, corrupt JPEG, bad intrinsics, out-of-order
  stamps) is skipped with a rate-limited warning and the node keeps running;
* latency (image stamp to publish), processing rate and drops go to /diagnostics.

Ids and TF names: ``HandMesh.id`` / ``TeleopHand.id`` is the track id (stable while the hand is
tracked; never reused). Hands are published ordered by track id, so the TF names
(``ros/tf.py``: the first hand of a side is ``right_hand_*``, the next ``right_hand_2_*``, ...)
go to the hands of a side in the order their tracks were born: while two right hands are both
tracked, the older one is ``right_hand`` and the newer ``right_hand_2`` in every frame.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import rclpy
import rclpy.executors
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from wilor_msgs.msg import HandDetectionArray, HandMeshArray, MeshTopology, TeleopHandArray
from wilor_ros.core.filtering import FilterConfig, HandFilter
from wilor_ros.core.model_files import MissingModelFilesError
from wilor_ros.core.pipeline import HandPipeline, ModelPaths, PipelineConfig
from wilor_ros.core.temporal import TemporalConfig, TemporalHandPipeline
from wilor_ros.core.tracking import TrackerConfig
from wilor_ros.core.types import CameraIntrinsics, HandDetection, Side
from wilor_ros.ros import image_conversion
from wilor_ros.ros.messages import estimates_to_array_msg, mesh_topology_msg
from wilor_ros.ros.parameters import BY_NAME, PARAMETERS
from wilor_ros.ros.teleop import teleop_array_msg
from wilor_ros.ros.tf import HandTfBroadcaster

NODE_NAME = "hand_reconstruction"
LATENCY_WINDOW = 100  # frames in the rolling latency/rate statistics
EXTERNAL_BOX_CACHE = 30  # HandDetectionArray messages kept while waiting for their image


def stamp_seconds(header: Header) -> float:
    return header.stamp.sec + header.stamp.nanosec * 1e-9


@dataclass
class PendingFrame:
    msg: Image | CompressedImage
    received: float  # time.monotonic() at arrival


class LatestFrameSlot:
    """Holds only the newest unprocessed frame; replacing one counts a drop."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._frame: PendingFrame | None = None
        self.dropped = 0
        self.received = 0
        self._closed = False

    def put(self, frame: PendingFrame) -> None:
        with self._condition:
            self.received += 1
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self._condition.notify()

    def take(self, timeout: float) -> PendingFrame | None:
        with self._condition:
            if self._frame is None and not self._closed:
                self._condition.wait(timeout)
            frame, self._frame = self._frame, None
            return frame

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()


def _descriptor(spec) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
    if spec.choices:
        descriptor.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.minimum is not None and spec.maximum is not None and not isinstance(spec.default, bool):
        if isinstance(spec.default, int):
            descriptor.integer_range = [
                IntegerRange(from_value=int(spec.minimum), to_value=int(spec.maximum), step=1)
            ]
        else:
            descriptor.floating_point_range = [
                FloatingPointRange(from_value=float(spec.minimum), to_value=float(spec.maximum), step=0.0)
            ]
    return descriptor


class HandReconstructionNode(Node):
    """See the module docstring. ``pipeline_factory`` lets tests and tools inject a pipeline."""

    def __init__(
        self,
        *,
        pipeline_factory: Callable[[PipelineConfig], HandPipeline] | None = None,
        node_name: str = NODE_NAME,
        **node_kwargs,
    ) -> None:
        super().__init__(node_name, **node_kwargs)
        for spec in PARAMETERS:
            self.declare_parameter(spec.name, spec.default, _descriptor(spec))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._params = {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}
        for name, value in self._params.items():
            reason = BY_NAME[name].validate(value)
            if reason:
                raise ValueError(f"parameter {reason}")

        config = self.pipeline_config()
        factory = pipeline_factory or HandPipeline.from_config
        self.pipeline = factory(config)  # MissingModelFilesError: the node refuses to start
        if self.pipeline.synthetic:
            self.get_logger().warning(
                "running with SYNTHETIC models: the published hands are not real estimates"
            )

        self.temporal = TemporalHandPipeline(self.pipeline, self.temporal_config())

        # ---- state
        self._slot = LatestFrameSlot()
        self._intrinsics: CameraIntrinsics | None = None
        self._heuristic_announced = False
        self._last_stamp: float | None = None
        self._depth: deque[tuple[float, Image]] = deque(maxlen=4)
        self._external_boxes: deque[HandDetectionArray] = deque(maxlen=EXTERNAL_BOX_CACHE)
        self._boxes_lock = threading.Lock()
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._done_times: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.processed = 0
        self.skipped = 0
        self.markers_built = 0  # MarkerArrays built (only while someone subscribes)
        self._warn_times: dict[str, float] = {}

        # ---- outputs
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.hands_pub = self.create_publisher(HandMeshArray, "hands", reliable)
        self.teleop_pub = self.create_publisher(TeleopHandArray, "teleop_hands", reliable)
        latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.topology_pub = self.create_publisher(MeshTopology, "hand_mesh_topology", latched)
        self.faces = getattr(self.pipeline.backend, "faces", None)
        if self.faces is not None:
            self.topology_pub.publish(mesh_topology_msg(np.asarray(self.faces)))
        self.tf = HandTfBroadcaster(self)
        self.markers_pub = self.create_publisher(MarkerArray, "markers", reliable)
        self.debug_pub = self.create_publisher(Image, "debug_image", qos_profile_sensor_data)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", reliable)
        self._marker_builder = None
        if self.faces is not None:
            from wilor_ros.ros.markers import HandMarkerBuilder

            self._marker_builder = HandMarkerBuilder(np.asarray(self.faces))

        # ---- inputs (sensor-data QoS: best effort, keep last)
        if self._params["image_transport"] == "compressed":
            self.create_subscription(
                CompressedImage, "image/compressed", self._on_image, qos_profile_sensor_data
            )
        else:
            self.create_subscription(Image, "image", self._on_image, qos_profile_sensor_data)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos_profile_sensor_data)
        if self._params["use_depth"]:
            self.create_subscription(Image, "depth", self._on_depth, qos_profile_sensor_data)
        if self._params["use_external_boxes"]:
            self.create_subscription(HandDetectionArray, "hand_boxes", self._on_boxes, reliable)

        self._diag_timer = self.create_timer(self._params["diagnostics_period"], self._publish_diagnostics)
        self._running = True
        self._worker = threading.Thread(target=self._work, name="wilor_worker", daemon=True)
        self._worker.start()
        self.get_logger().info(
            f"ready: backend={config.backend} device={config.device} "
            f"input={'image/compressed' if self._params['image_transport'] == 'compressed' else 'image'}"
        )

    # ------------------------------------------------------------------ parameters
    def pipeline_config(self) -> PipelineConfig:
        p = self._params
        return PipelineConfig(
            models=ModelPaths(
                model_dir=p["model_dir"],
                detector=p["detector_file"],
                checkpoint=p["checkpoint_file"],
                mano=p["mano_file"],
                reconstructor_onnx=p["reconstructor_onnx_file"],
            ),
            backend=p["backend"],
            device=p["device"],
            precision=p["precision"],
            detection_threshold=p["detection_threshold"],
            nms_iou_threshold=p["nms_iou_threshold"],
            max_hands=p["max_hands"],
            rescale_factor=p["rescale_factor"],
            use_detector=not p["use_external_boxes"],
        )

    def temporal_config(self) -> TemporalConfig:
        p = self._params
        return TemporalConfig(
            tracking=p["use_tracking"],
            filtering=p["use_filter"],
            detector_skipping=p["detector_skipping"],
            tracker=TrackerConfig(
                min_hits=p["track_min_hits"],
                max_missed_frames=p["track_max_missed_frames"],
                redetect_every_n_frames=p["redetect_every_n_frames"],
            ),
            filter=FilterConfig(min_cutoff=p["filter_min_cutoff"], beta=p["filter_beta"]),
        )

    def _apply_temporal_updates(self, updates: dict) -> None:
        """Live changes of the temporal parameters (read by the worker at its next frame)."""
        cfg = self.temporal.config
        for key, attr in (
            ("use_tracking", "tracking"),
            ("use_filter", "filtering"),
            ("detector_skipping", "detector_skipping"),
        ):
            if key in updates:
                setattr(cfg, attr, updates[key])
        for key, attr in (
            ("track_min_hits", "min_hits"),
            ("track_max_missed_frames", "max_missed_frames"),
            ("redetect_every_n_frames", "redetect_every_n_frames"),
        ):
            if key in updates:
                setattr(cfg.tracker, attr, updates[key])
        if "filter_min_cutoff" in updates or "filter_beta" in updates:
            # filter states keep the parameters they started with: start them over
            cfg.filter = FilterConfig(
                min_cutoff=updates.get("filter_min_cutoff", cfg.filter.min_cutoff),
                beta=updates.get("filter_beta", cfg.filter.beta),
            )
            self.temporal.hand_filter = HandFilter(cfg.filter)

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        updates = {}
        for param in parameters:
            spec = BY_NAME.get(param.name)
            if spec is None:
                continue  # parameters of other libraries (e.g. use_sim_time)
            reason = spec.validate(param.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            updates[param.name] = param.value
        if hasattr(self, "pipeline"):
            cfg = self.pipeline.config
            for key in ("detection_threshold", "nms_iou_threshold", "max_hands", "rescale_factor"):
                if key in updates:
                    setattr(cfg, key, updates[key])
            detector = self.pipeline.detector
            if detector is not None:
                for key, attr in (
                    ("detection_threshold", "conf_threshold"),
                    ("nms_iou_threshold", "iou_threshold"),
                ):
                    if key in updates and hasattr(detector, attr):
                        setattr(detector, attr, updates[key])
        if hasattr(self, "temporal"):
            self._apply_temporal_updates(updates)
        if hasattr(self, "_params"):
            self._params.update(updates)
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ warnings
    def warn_throttled(self, kind: str, message: str) -> None:
        """One warning per ``kind`` per warn_throttle seconds (counts every skipped frame)."""
        now = time.monotonic()
        if now - self._warn_times.get(kind, -math.inf) >= self._params["warn_throttle"]:
            self._warn_times[kind] = now
            self.get_logger().warning(message)

    # ------------------------------------------------------------------ callbacks (no inference)
    def _on_image(self, msg: Image | CompressedImage) -> None:
        self._slot.put(PendingFrame(msg, time.monotonic()))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        if not self._params["use_camera_info"]:
            return
        try:
            intrinsics = CameraIntrinsics.from_matrix(np.asarray(msg.k, dtype=np.float64))
        except ValueError as exc:
            self.warn_throttled("camera_info", f"ignoring camera_info: {exc}")
            return
        if self._intrinsics is None:
            self.get_logger().info(
                f"camera_info received: fx={intrinsics.fx:.1f} fy={intrinsics.fy:.1f} "
                f"cx={intrinsics.cx:.1f} cy={intrinsics.cy:.1f}"
            )
        self._intrinsics = intrinsics

    def _on_depth(self, msg: Image) -> None:
        self._depth.append((stamp_seconds(msg.header), msg))

    def _on_boxes(self, msg: HandDetectionArray) -> None:
        with self._boxes_lock:
            self._external_boxes.append(msg)

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while self._running:
            frame = self._slot.take(timeout=0.1)
            if frame is None:
                continue
            try:
                self.process(frame)
            except Exception as exc:
                self.skipped += 1
                self.warn_throttled("processing", f"frame skipped: {type(exc).__name__}: {exc}")

    def _boxes_for(self, header: Header) -> list[HandDetection] | None:
        """External boxes for this image's stamp (None: none arrived; skip the frame)."""
        stamp = (header.stamp.sec, header.stamp.nanosec)
        with self._boxes_lock:
            for msg in reversed(self._external_boxes):
                if (msg.header.stamp.sec, msg.header.stamp.nanosec) == stamp:
                    return [
                        HandDetection(np.asarray(d.box, np.float32), Side(int(d.side)), float(d.score))
                        for d in msg.detections
                    ]
        return None

    def process(self, frame: PendingFrame) -> None:
        msg = frame.msg
        header = msg.header
        stamp = stamp_seconds(header)
        if self._last_stamp is not None and stamp < self._last_stamp:
            self.skipped += 1
            self.warn_throttled(
                "stamp", f"out-of-order image stamp {stamp:.6f} < {self._last_stamp:.6f}: frame skipped"
            )
            return
        try:
            if isinstance(msg, CompressedImage):
                rgb = image_conversion.compressed_image_to_rgb(msg)
            else:
                rgb = image_conversion.image_to_rgb(msg)
        except ValueError as exc:
            self.skipped += 1
            self.warn_throttled("image", f"image skipped: {exc}")
            return

        boxes = None
        if self._params["use_external_boxes"]:
            boxes = self._boxes_for(header)
            if boxes is None:
                self.skipped += 1
                self.warn_throttled("boxes", "no hand_boxes message with this image's stamp: frame skipped")
                return

        intrinsics = self._intrinsics if self._params["use_camera_info"] else None
        if intrinsics is None and not self._heuristic_announced:
            self._heuristic_announced = True
            self.get_logger().info(
                "no camera_info yet: using the official focal heuristic (5000/256 * max(W, H)); "
                "3D positions are approximate until camera_info arrives"
            )
        depth = self._depth_for(stamp, rgb.shape[:2]) if self._params["use_depth"] else None
        # depth correction, tracking and filtering happen inside, in that order (core/temporal.py)
        hands = self.temporal.process(rgb, stamp, intrinsics=intrinsics, boxes=boxes, depth_m=depth)
        report = self.temporal.last_report
        if report is not None and report.num_nonfinite:
            self.warn_throttled("nan", f"{report.num_nonfinite} hand(s) with non-finite output dropped")
        # ordered by track id: TF names (right_hand, right_hand_2, ...) stay with their tracks
        hands = sorted(hands, key=lambda h: h.track_id)
        self._last_stamp = stamp
        self.publish(header, hands, rgb)
        now = time.monotonic()
        self._done_times.append(now)
        latency = self.get_clock().now().nanoseconds * 1e-9 - stamp
        self._latencies.append(latency)
        self.processed += 1

    def _depth_for(self, stamp: float, image_shape: tuple[int, int]) -> np.ndarray | None:
        """The aligned depth image (H x W metres) nearest to ``stamp``; None (with a throttled
        warning) when none is close enough, readable or aligned."""
        candidates = [(abs(s - stamp), m) for s, m in list(self._depth)]
        if not candidates:
            self.warn_throttled("depth", "use_depth is set but no depth image arrived on 'depth'")
            return None
        age, depth_msg = min(candidates, key=lambda c: c[0])
        if age > self._params["depth_max_age"]:
            self.warn_throttled(
                "depth", f"nearest depth image is {age * 1e3:.0f} ms away from the image: not used"
            )
            return None
        try:
            depth = image_conversion.depth_image_to_metres(depth_msg)
        except ValueError as exc:
            self.warn_throttled("depth", f"depth image skipped: {exc}")
            return None
        if depth.shape != tuple(image_shape):
            self.warn_throttled(
                "depth", f"depth image {depth.shape} is not aligned with the image {image_shape}: not used"
            )
            return None
        return depth

    def publish(self, header: Header, hands, rgb: np.ndarray) -> None:
        self.hands_pub.publish(estimates_to_array_msg(hands, header))
        if self._params["publish_teleop"]:
            teleop, skipped = teleop_array_msg(hands, header)
            if skipped:
                self.warn_throttled(
                    "teleop", f"{skipped} hand(s) without a palm frame left out of teleop_hands"
                )
            self.teleop_pub.publish(teleop)
        if self._params["publish_tf"] and hands:
            self.tf.send_hands(hands, header, self._params["frame_prefix"])
        if (
            self._params["publish_markers"]
            and self._marker_builder is not None
            and self.markers_pub.get_subscription_count() > 0
        ):
            self.markers_pub.publish(self._marker_builder.build(hands, header))
            self.markers_built += 1
        if self._params["publish_debug_image"] and self.debug_pub.get_subscription_count() > 0:
            from wilor_ros.core.overlay import draw_hands

            label = "SYNTHETIC MODELS" if self.pipeline.synthetic else None
            overlay = draw_hands(rgb, hands, self.faces, label=label)
            self.debug_pub.publish(image_conversion.numpy_to_image(overlay, "rgb8", header))

    # ------------------------------------------------------------------ diagnostics
    def statistics(self) -> dict[str, float]:
        latencies = list(self._latencies)
        done = list(self._done_times)
        rate = (len(done) - 1) / (done[-1] - done[0]) if len(done) > 1 and done[-1] > done[0] else 0.0
        return {
            "frames_received": float(self._slot.received),
            "frames_processed": float(self.processed),
            "frames_dropped": float(self._slot.dropped),
            "frames_skipped": float(self.skipped),
            "detector_calls": float(self.temporal.detector_calls),
            "processing_rate_hz": rate,
            "latency_mean_ms": 1e3 * float(np.mean(latencies)) if latencies else 0.0,
            "latency_max_ms": 1e3 * float(np.max(latencies)) if latencies else 0.0,
        }

    def _publish_diagnostics(self) -> None:
        stats = self.statistics()
        status = DiagnosticStatus(
            name=f"{self.get_name()}: hand reconstruction",
            hardware_id=f"{self.pipeline.config.backend}/{self.pipeline.config.device}",
            level=DiagnosticStatus.WARN if self.pipeline.synthetic else DiagnosticStatus.OK,
            message="synthetic models" if self.pipeline.synthetic else "running",
            values=[KeyValue(key=k, value=f"{v:.3f}") for k, v in stats.items()],
        )
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diag_pub.publish(array)
        if stats["frames_received"]:
            self.get_logger().info(
                f"{stats['processing_rate_hz']:.1f} Hz, latency {stats['latency_mean_ms']:.0f} ms "
                f"(max {stats['latency_max_ms']:.0f}), received {stats['frames_received']:.0f}, "
                f"dropped {stats['frames_dropped']:.0f}, skipped {stats['frames_skipped']:.0f}",
                throttle_duration_sec=max(5.0, self._params["diagnostics_period"]),
            )

    def destroy_node(self) -> None:
        self._running = False
        self._slot.close()
        if self._worker.is_alive():
            self._worker.join(timeout=5.0)
        self.temporal.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
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
