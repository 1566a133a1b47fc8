"""``hand_reconstruction_node``: camera images in; HandMeshArray, TeleopHandArray, TF per
joint, markers out.

A thin ROS adapter around ``wilor_ros.core.temporal.temporal_pipeline.TemporalHandPipeline`` (the
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

import rclpy
import rclpy.executors
from rclpy.node import Node

from wilor_ros.core.config import with_live_fields
from wilor_ros.core.files.model_files import MissingModelFilesError
from wilor_ros.core.pipeline import HandPipeline
from wilor_ros.core.pipeline_config import PipelineConfig
from wilor_ros.core.temporal.temporal_pipeline import TemporalHandPipeline
from wilor_ros.ros.diagnostics import FrameStatistics, ThrottledWarnings, diagnostic_array, status_line
from wilor_ros.ros.input_sync import NS_PER_S, PairedFrame
from wilor_ros.ros.inputs import NodeInputs, SkipFrame
from wilor_ros.ros.node_config import NodeConfig
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
        self._running = False
        self.inputs: NodeInputs | None = None
        self.temporal: TemporalHandPipeline | None = None
        self.params = NodeParameters(self, self._on_config_changed)
        config = self.params.config
        self.warnings = ThrottledWarnings(
            self.get_logger().warning, lambda: self.params.config.outputs.warn_throttle
        )
        self.stats = FrameStatistics()

        factory = pipeline_factory or HandPipeline.from_config
        self.pipeline = factory(config.pipeline_config())  # MissingModelFilesError: refuse
        if self.pipeline.synthetic:
            self.get_logger().warning(
                "running with SYNTHETIC models: the published hands are not real estimates"
            )
        self.temporal = TemporalHandPipeline(self.pipeline, config.temporal)
        self._last_stamp: int | None = None

        label = "SYNTHETIC MODELS" if self.pipeline.synthetic else None
        self.outputs = HandOutputs(self, self.pipeline.backend.faces, label, self.warnings.warn)
        self.inputs = NodeInputs(self, config, self.warnings, self.stats)
        self.create_timer(config.outputs.diagnostics_period, self._publish_diagnostics)
        self._running = True
        self._worker = threading.Thread(target=self._work, name="wilor_worker", daemon=True)
        self._worker.start()
        pipeline = self.pipeline.config
        self.get_logger().info(
            f"ready: backend={pipeline.backend} device={pipeline.device} input={self.inputs.image.topic_name}"
        )

    def _on_config_changed(self, old: NodeConfig, new: NodeConfig) -> None:
        """A live parameter change (validated by NodeParameters): each part takes its share."""
        del old
        if self.temporal is not None and self.inputs is not None:
            self.pipeline.reconfigure(with_live_fields(self.pipeline.config, new.pipeline))
            self.temporal.reconfigure(new.temporal)
            self.inputs.reconfigure(new)

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        assert self.inputs is not None
        while self._running:
            frame = self.inputs.slot.take(timeout=0.1)
            if frame is None:
                continue
            try:
                self.process(frame)
            except SkipFrame as exc:
                self.stats.skipped += 1
                self.warnings.warn(exc.kind, str(exc))
            except Exception as exc:
                self.stats.skipped += 1
                self.warnings.warn("processing", f"frame skipped: {type(exc).__name__}: {exc}")

    def process(self, frame: PairedFrame) -> None:
        """Check, convert and run one paired frame, then publish its results."""
        assert self.inputs is not None and self.temporal is not None
        if self._last_stamp is not None and frame.stamp < self._last_stamp:
            if self._last_stamp - frame.stamp < CLOCK_RESET_S * NS_PER_S:
                raise SkipFrame(
                    "stamp", f"out-of-order image stamp {frame.stamp / NS_PER_S:.6f}: frame skipped"
                )
            self.get_logger().warning("image stamps jumped back (bag loop or clock reset): tracking restarts")
        inputs = self.inputs.convert(frame)
        # depth correction, tracking and filtering happen inside, in that order
        # (core/temporal/temporal_pipeline.py)
        hands = self.temporal.process(
            inputs.rgb, inputs.stamp / NS_PER_S, inputs.intrinsics, boxes=inputs.boxes, depth_m=inputs.depth_m
        )
        report = self.temporal.last_report
        if report is not None and report.num_nonfinite:
            self.warnings.warn("nan", f"{report.num_nonfinite} hand(s) with non-finite output dropped")
        # ordered by track id: TF names (right_hand, right_hand_2, ...) stay with their tracks
        hands = sorted(hands, key=lambda h: h.track_id)
        self._last_stamp = frame.stamp
        self.outputs.publish(inputs.header, hands, inputs.rgb, self.params.config.outputs)
        self.stats.record_processed((self.get_clock().now().nanoseconds - frame.stamp) / NS_PER_S)

    # ------------------------------------------------------------------ diagnostics
    def statistics(self) -> dict[str, float]:
        counters = dict(self.inputs.counters()) if self.inputs else {}
        counters["detector_calls"] = self.temporal.detector_calls if self.temporal else 0
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
            period = max(5.0, self.params.config.outputs.diagnostics_period)
            self.get_logger().info(status_line(stats), throttle_duration_sec=period)

    def destroy_node(self) -> None:
        """Stops the worker and releases the pipeline; safe on a node whose start-up failed."""
        self._running = False
        if self.inputs is not None:
            self.inputs.slot.close()
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
