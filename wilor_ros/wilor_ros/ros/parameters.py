"""The node's ROS parameters, derived from the fields of ``NodeConfig``.

Only the flat parameter names are written here (the names users already have in their parameter
files and launch commands), each with the dotted path of its configuration field. Default,
description, range or choices, and whether the parameter can change on a running node (``live``),
all come from the field's ``setting(...)`` declaration, so a value is written exactly once.
config/wilor.yaml and the README table are generated from these (``parameter_docs.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wilor_ros.core.config import Setting, field_info
from wilor_ros.ros.node_config import NodeConfig

# (parameter name, NodeConfig field path), in the order of the docs and of `--help`
EXPOSED: tuple[tuple[str, str], ...] = (
    # ---- inputs
    ("image_transport", "inputs.image_transport"),
    ("input_qos", "inputs.input_qos"),
    ("default_frame_id", "inputs.default_frame_id"),
    ("use_camera_info", "inputs.use_camera_info"),
    ("use_depth", "inputs.use_depth"),
    ("depth_max_age", "inputs.depth_max_age"),
    ("depth_timeout", "inputs.depth_timeout"),
    ("use_external_boxes", "inputs.use_external_boxes"),
    ("external_boxes_timeout", "inputs.external_boxes_timeout"),
    # ---- models / runtime
    ("model_dir", "pipeline.models.model_dir"),
    ("detector_file", "pipeline.models.detector"),
    ("checkpoint_file", "pipeline.models.checkpoint"),
    ("mano_file", "pipeline.models.mano"),
    ("reconstructor_onnx_file", "pipeline.models.reconstructor_onnx"),
    ("backend", "pipeline.backend"),
    ("device", "pipeline.device"),
    ("precision", "pipeline.precision"),
    ("weight_loading", "pipeline.weight_loading"),
    ("lock_weights", "pipeline.lock_weights"),
    ("torch_compile", "pipeline.torch_compile"),
    ("cuda_graphs", "pipeline.cuda_graphs"),
    ("device_preprocessing", "pipeline.device_preprocessing"),
    # ---- detection
    ("detection_threshold", "pipeline.detection_threshold"),
    ("nms_iou_threshold", "pipeline.nms_iou_threshold"),
    ("max_hands", "pipeline.max_hands"),
    ("rescale_factor", "pipeline.rescale_factor"),
    # ---- temporal: tracking, filtering, detector skipping (core/temporal/temporal_pipeline.py)
    ("use_tracking", "temporal.tracking"),
    ("use_filter", "temporal.filtering"),
    ("detector_skipping", "temporal.detector_skipping"),
    ("redetect_every_n_frames", "temporal.tracker.redetect_every_n_frames"),
    ("track_min_hits", "temporal.tracker.min_hits"),
    ("track_max_missed_frames", "temporal.tracker.max_missed_frames"),
    ("filter_min_cutoff", "temporal.filter.min_cutoff"),
    ("filter_beta", "temporal.filter.beta"),
    # ---- outputs
    ("publish_teleop", "outputs.publish_teleop"),
    ("frame_prefix", "outputs.frame_prefix"),
    ("publish_tf", "outputs.publish_tf"),
    ("publish_markers", "outputs.publish_markers"),
    ("publish_debug_image", "outputs.publish_debug_image"),
    ("diagnostics_period", "outputs.diagnostics_period"),
    ("warn_throttle", "outputs.warn_throttle"),
)


@dataclass(frozen=True)
class ParamSpec:
    """One ROS parameter: its name and the NodeConfig field it sets."""

    name: str
    path: str  # dotted NodeConfig field path
    default: Any
    description: str
    choices: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    # read-only parameters shape the pipeline or the topics: they are fixed at start-up
    read_only: bool = False

    @classmethod
    def derive(cls, name: str, path: str) -> ParamSpec:
        info = field_info(NodeConfig, path)
        spec = info.setting
        return cls(
            name, path, info.default, spec.doc, spec.choices, spec.minimum, spec.maximum, not spec.live
        )

    def validate(self, value: Any) -> str | None:
        """None when ``value`` is acceptable, else the reason it is not."""
        if isinstance(self.default, bool):
            return None if isinstance(value, bool) else f"{self.name} must be true or false, got {value!r}"
        if isinstance(self.default, (int, float)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return f"{self.name} must be a number, got {value!r}"
            if isinstance(self.default, int) and not isinstance(value, int):
                return f"{self.name} must be an integer, got {value!r}"
        elif isinstance(self.default, str) and not isinstance(value, str):
            return f"{self.name} must be a string, got {value!r}"
        return Setting(self.description, self.minimum, self.maximum, self.choices).reason(self.name, value)


PARAMETERS: tuple[ParamSpec, ...] = tuple(ParamSpec.derive(name, path) for name, path in EXPOSED)
PARAMETER_NAMES = tuple(spec.name for spec in PARAMETERS)
BY_NAME = {spec.name: spec for spec in PARAMETERS}
