"""The node's parameters at run time: declared from ``parameters.PARAMETERS``, validated when set,
turned into the configurations of the parts, and applied live where a part allows it."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult

from wilor_ros.core.filtering import FilterConfig, HandFilter
from wilor_ros.core.pipeline import ModelPaths, PipelineConfig
from wilor_ros.core.temporal import TemporalConfig
from wilor_ros.core.tracking import TrackerConfig
from wilor_ros.ros.input_sync import PairingConfig
from wilor_ros.ros.outputs import OutputSwitches
from wilor_ros.ros.parameters import BY_NAME, PARAMETERS, ParamSpec

if TYPE_CHECKING:
    from rclpy.node import Node

    from wilor_ros.core.pipeline import HandPipeline
    from wilor_ros.core.temporal import TemporalHandPipeline


def descriptor(spec: ParamSpec) -> ParameterDescriptor:
    """The ROS descriptor of one parameter: description, read-only flag, range or choices."""
    result = ParameterDescriptor(description=spec.description, read_only=spec.read_only)
    if spec.choices:
        result.additional_constraints = "one of: " + ", ".join(spec.choices)
    if spec.minimum is not None and spec.maximum is not None and not isinstance(spec.default, bool):
        if isinstance(spec.default, int):
            result.integer_range = [
                IntegerRange(from_value=int(spec.minimum), to_value=int(spec.maximum), step=1)
            ]
        else:
            result.floating_point_range = [
                FloatingPointRange(from_value=float(spec.minimum), to_value=float(spec.maximum), step=0.0)
            ]
    return result


class NodeParameters:
    """Declares every parameter on ``node``; ``values`` always holds the current ones.

    A value set at run time is validated (the reason of a rejection goes back to the caller);
    accepted changes are passed to ``on_change``.
    """

    def __init__(self, node: Node, on_change: Callable[[dict[str, Any]], None]) -> None:
        for spec in PARAMETERS:
            node.declare_parameter(spec.name, spec.default, descriptor(spec))
        self.values: dict[str, Any] = {spec.name: node.get_parameter(spec.name).value for spec in PARAMETERS}
        for name, value in self.values.items():
            reason = BY_NAME[name].validate(value)
            if reason:
                raise ValueError(f"parameter {reason}")
        self._on_change = on_change
        node.add_on_set_parameters_callback(self._on_set)

    def _on_set(self, parameters: list[Any]) -> SetParametersResult:
        updates = {}
        for param in parameters:
            spec = BY_NAME.get(param.name)
            if spec is None:
                continue  # parameters of other libraries (e.g. use_sim_time)
            reason = spec.validate(param.value)
            if reason:
                return SetParametersResult(successful=False, reason=reason)
            updates[param.name] = param.value
        self.values.update(updates)
        self._on_change(updates)
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ configurations
    def pipeline_config(self) -> PipelineConfig:
        p = self.values
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
        p = self.values
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

    def pairing_config(self) -> PairingConfig:
        p = self.values
        return PairingConfig(
            boxes=p["use_external_boxes"],
            boxes_timeout_s=p["external_boxes_timeout"],
            depth=p["use_depth"],
            depth_timeout_s=p["depth_timeout"],
            depth_max_age_s=p["depth_max_age"],
        )

    def output_switches(self) -> OutputSwitches:
        p = self.values
        return OutputSwitches(
            teleop=p["publish_teleop"],
            tf=p["publish_tf"],
            markers=p["publish_markers"],
            debug_image=p["publish_debug_image"],
            frame_prefix=p["frame_prefix"],
        )

    def apply_live(
        self, updates: dict[str, Any], pipeline: HandPipeline, temporal: TemporalHandPipeline
    ) -> None:
        """Live changes of the detection and temporal parameters (read at the next frame)."""
        cfg = pipeline.config
        for key in ("detection_threshold", "nms_iou_threshold", "max_hands", "rescale_factor"):
            if key in updates:
                setattr(cfg, key, updates[key])
        if pipeline.detector is not None:
            pipeline.detector.reconfigure(
                conf_threshold=updates.get("detection_threshold"),
                iou_threshold=updates.get("nms_iou_threshold"),
            )
        tcfg = temporal.config
        for key, attr in (
            ("use_tracking", "tracking"),
            ("use_filter", "filtering"),
            ("detector_skipping", "detector_skipping"),
        ):
            if key in updates:
                setattr(tcfg, attr, updates[key])
        for key, attr in (
            ("track_min_hits", "min_hits"),
            ("track_max_missed_frames", "max_missed_frames"),
            ("redetect_every_n_frames", "redetect_every_n_frames"),
        ):
            if key in updates:
                setattr(tcfg.tracker, attr, updates[key])
        if "filter_min_cutoff" in updates or "filter_beta" in updates:
            # filter states keep the parameters they started with: start them over
            tcfg.filter = FilterConfig(
                min_cutoff=self.values["filter_min_cutoff"], beta=self.values["filter_beta"]
            )
            temporal.hand_filter = HandFilter(tcfg.filter)


def usage() -> str:
    """``hand_reconstruction_node --help``: how to run it, its topics and parameters."""
    lines = [
        "usage: hand_reconstruction_node [--ros-args -p NAME:=VALUE ... -r FROM:=TO ...]",
        "",
        "Camera images in; wilor_msgs/HandMeshArray ('hands'), TeleopHandArray ('teleop_hands'),",
        "one TF frame per hand joint, RViz markers and a debug overlay out. Inputs: 'image' (or",
        "'image/compressed'), 'camera_info', optional 'depth' and 'hand_boxes'.",
        "Model files: ros2 run wilor_ros wilor-ros export --model-dir DIR (see the README).",
        "",
        "parameters (name, default: description):",
    ]
    for spec in PARAMETERS:
        text = f"{spec.name} = {spec.default!r}: {spec.description}"
        if spec.choices:
            text += f" ({' | '.join(spec.choices)})"
        elif spec.minimum is not None:
            text += f" ({spec.minimum} .. {spec.maximum})"
        if spec.read_only:
            text += "; fixed at start-up"
        lines += textwrap.wrap(text, 100, initial_indent="  ", subsequent_indent="      ")
    return "\n".join(lines)
