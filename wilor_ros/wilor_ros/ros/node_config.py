"""The node's whole configuration as one dataclass: the core's pipeline and temporal configurations
plus what only the ROS adapter has (inputs, outputs). The node's parameters are derived from these
fields (``parameters.py``); nothing here imports rclpy."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from wilor_ros.core.config import setting
from wilor_ros.core.pipeline_config import PipelineConfig
from wilor_ros.core.temporal.temporal_pipeline import TemporalConfig
from wilor_ros.ros.input_sync import PairingConfig

IMAGE_TRANSPORTS = ("raw", "compressed")
INPUT_QOS_CHOICES = ("auto", "reliable", "best_effort")  # see ros/input_qos.py


@dataclass
class InputConfig:
    """What the node subscribes to and how it pairs messages by stamp."""

    image_transport: str = setting(
        "raw",
        doc="'raw' subscribes sensor_msgs/Image on 'image'; 'compressed' subscribes "
        "sensor_msgs/CompressedImage on 'image/compressed'",
        choices=IMAGE_TRANSPORTS,
    )
    input_qos: str = setting(
        "auto",
        doc="reliability of the image and depth subscriptions: 'auto' follows the publishers (reliable "
        "when all are reliable: lost fragments of large images are resent; best effort when one is "
        "best effort), 'reliable', or 'best_effort' (sensor-data QoS; for large images give the "
        "camera driver config/fastdds_large_images.xml)",
        choices=INPUT_QOS_CHOICES,
    )
    default_frame_id: str = setting(
        "camera_color_optical_frame",
        doc="frame used for the outputs of images whose header.frame_id is empty (warned once)",
        live=True,
    )
    use_camera_info: bool = setting(
        True,
        doc="use intrinsics from 'camera_info' (until one arrives, or when false, the official focal "
        "heuristic 5000/256*max(W,H) is used)",
        live=True,
    )
    use_depth: bool = setting(
        False,
        doc="correct each hand's distance from an aligned depth image on 'depth' (16UC1 millimetres or "
        "32FC1 metres)",
    )
    depth_max_age: float = setting(
        0.05,
        doc="largest |stamp difference| (s) between an image and the depth image used for it",
        minimum=0.0,
        maximum=1.0,
        live=True,
    )
    depth_timeout: float = setting(
        0.1,
        doc="longest wait (s) of an image for the depth image of its stamp (then the nearest within "
        "depth_max_age is used, or none)",
        minimum=0.0,
        maximum=2.0,
        live=True,
    )
    use_external_boxes: bool = setting(
        False,
        doc="take hand boxes from 'hand_boxes' (wilor_msgs/HandDetectionArray, paired by stamp) instead "
        "of running the detector",
    )
    external_boxes_timeout: float = setting(
        0.2,
        doc="longest wait (s) of an image for the hand_boxes message of its stamp (boxes usually come "
        "after their image); an image whose boxes do not come is dropped and counted",
        minimum=0.0,
        maximum=5.0,
        live=True,
    )


@dataclass
class OutputConfig:
    """What the node publishes besides 'hands' (always published)."""

    publish_teleop: bool = setting(
        True,
        doc="publish wilor_msgs/TeleopHandArray on 'teleop_hands' (dex-retargeting convention, every "
        "processed image, empty when no hand)",
        live=True,
    )
    frame_prefix: str = setting(
        "", doc="prefix of every TF frame name, e.g. 'cam1/' -> 'cam1/right_hand_wrist'", live=True
    )
    publish_tf: bool = setting(True, doc="publish one TF frame per joint on /tf", live=True)
    publish_markers: bool = setting(
        True, doc="publish RViz markers on 'markers' (built only while subscribed)", live=True
    )
    publish_debug_image: bool = setting(
        True, doc="publish an overlay on 'debug_image' (built only while subscribed)", live=True
    )
    diagnostics_period: float = setting(
        1.0, doc="seconds between /diagnostics messages and status log lines", minimum=0.1, maximum=60.0
    )
    warn_throttle: float = setting(
        5.0, doc="seconds between two warnings of the same kind", minimum=0.0, maximum=600.0, live=True
    )


@dataclass
class NodeConfig:
    """Everything that shapes a hand_reconstruction_node."""

    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    temporal: TemporalConfig = field(default_factory=TemporalConfig)
    inputs: InputConfig = field(default_factory=InputConfig)
    outputs: OutputConfig = field(default_factory=OutputConfig)

    def pipeline_config(self) -> PipelineConfig:
        """The pipeline's configuration: no detector when the boxes come from outside."""
        return dataclasses.replace(self.pipeline, use_detector=not self.inputs.use_external_boxes)

    def pairing_config(self) -> PairingConfig:
        inputs = self.inputs
        return PairingConfig(
            boxes=inputs.use_external_boxes,
            boxes_timeout_s=inputs.external_boxes_timeout,
            depth=inputs.use_depth,
            depth_timeout_s=inputs.depth_timeout,
            depth_max_age_s=inputs.depth_max_age,
        )
