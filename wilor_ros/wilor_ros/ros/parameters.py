"""Every parameter of the hand reconstruction node, declared in one place.

Each entry has a default (mirrored in config/wilor.yaml), a description and a range or a set of
choices; ``validate`` gives the reason a value is rejected, which the node returns from its
on-set-parameters callback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from wilor_ros.core.backends.registry import BACKEND_CHOICES, PRECISION_CHOICES
from wilor_ros.core.pipeline import WEIGHT_LOADING_CHOICES
from wilor_ros.ros.input_qos import INPUT_QOS_CHOICES


@dataclass(frozen=True)
class ParamSpec:
    name: str
    default: Any
    description: str
    choices: tuple | None = None
    minimum: float | None = None
    maximum: float | None = None
    # read-only parameters shape the pipeline or the topics: they are fixed at start-up
    read_only: bool = False

    def validate(self, value: Any) -> str | None:
        """None when ``value`` is acceptable, else the reason it is not."""
        if isinstance(self.default, bool):
            if not isinstance(value, bool):
                return f"{self.name} must be true or false, got {value!r}"
            return None
        if isinstance(self.default, (int, float)) and not isinstance(self.default, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return f"{self.name} must be a number, got {value!r}"
            if isinstance(self.default, int) and not isinstance(value, int):
                return f"{self.name} must be an integer, got {value!r}"
            if value != value:  # NaN
                return f"{self.name} must not be NaN"
            if self.minimum is not None and value < self.minimum:
                return f"{self.name} must be >= {self.minimum}, got {value}"
            if self.maximum is not None and value > self.maximum:
                return f"{self.name} must be <= {self.maximum}, got {value}"
            return None
        if isinstance(self.default, str):
            if not isinstance(value, str):
                return f"{self.name} must be a string, got {value!r}"
            if self.choices is not None and value not in self.choices:
                return f"{self.name} must be one of {', '.join(self.choices)}, got {value!r}"
        return None


def _spec(*args: Any, **kwargs: Any) -> ParamSpec:
    return ParamSpec(*args, **kwargs)


PARAMETERS: tuple[ParamSpec, ...] = (
    # ---- inputs
    _spec(
        "image_transport",
        "raw",
        "'raw' subscribes sensor_msgs/Image on 'image'; 'compressed' "
        "subscribes sensor_msgs/CompressedImage on 'image/compressed'",
        choices=("raw", "compressed"),
        read_only=True,
    ),
    _spec(
        "input_qos",
        "auto",
        "reliability of the image and depth subscriptions: 'auto' follows the publishers (reliable "
        "when all are reliable: lost fragments of large images are resent; best effort when one is "
        "best effort), 'reliable', or 'best_effort' (sensor-data QoS; for large images give the "
        "camera driver config/fastdds_large_images.xml)",
        choices=INPUT_QOS_CHOICES,
        read_only=True,
    ),
    _spec(
        "default_frame_id",
        "camera_color_optical_frame",
        "frame used for the outputs of images whose header.frame_id is empty (warned once)",
    ),
    _spec(
        "use_camera_info",
        True,
        "use intrinsics from 'camera_info' (until one arrives, or when false, "
        "the official focal heuristic 5000/256*max(W,H) is used)",
    ),
    _spec(
        "use_depth",
        False,
        "correct each hand's distance from an aligned depth image on 'depth' "
        "(16UC1 millimetres or 32FC1 metres)",
        read_only=True,
    ),
    _spec(
        "depth_max_age",
        0.05,
        "largest |stamp difference| (s) between an image and the depth image used for it",
        minimum=0.0,
        maximum=1.0,
    ),
    _spec(
        "depth_timeout",
        0.1,
        "longest wait (s) of an image for the depth image of its stamp (then the nearest within "
        "depth_max_age is used, or none)",
        minimum=0.0,
        maximum=2.0,
    ),
    _spec(
        "use_external_boxes",
        False,
        "take hand boxes from 'hand_boxes' (wilor_msgs/HandDetectionArray, "
        "paired by stamp) instead of running the detector",
        read_only=True,
    ),
    _spec(
        "external_boxes_timeout",
        0.2,
        "longest wait (s) of an image for the hand_boxes message of its stamp (boxes usually come "
        "after their image); an image whose boxes do not come is dropped and counted",
        minimum=0.0,
        maximum=5.0,
    ),
    # ---- models / runtime
    _spec(
        "model_dir",
        "models",
        "folder with the model files (relative names below are looked up in it)",
        read_only=True,
    ),
    _spec("detector_file", "detector.onnx", "hand detector ONNX (wilor-ros export)", read_only=True),
    _spec(
        "checkpoint_file", "wilor_final.ckpt", "reconstructor checkpoint (pytorch backend)", read_only=True
    ),
    _spec("mano_file", "MANO_RIGHT.pkl", "MANO right-hand model (pytorch backend)", read_only=True),
    _spec(
        "reconstructor_onnx_file",
        "wilor.onnx",
        "reconstructor ONNX (onnxruntime/tensorrt backends)",
        read_only=True,
    ),
    _spec("backend", "onnxruntime", "reconstructor runtime", choices=BACKEND_CHOICES, read_only=True),
    _spec("device", "cpu", "'cpu', 'cuda' or 'cuda:N'", read_only=True),
    _spec(
        "precision",
        "fp32",
        "network precision. pytorch: bf16 on CUDA or on a CPU with AMX / AVX512-BF16 (refused on other "
        "CPUs), fp16 on CUDA only (LayerNorm, softmax, 6D rotations and MANO stay float32); onnxruntime: "
        "int8 (ViT blocks dynamically quantized, file made on first use); tensorrt: fp16",
        choices=PRECISION_CHOICES,
        read_only=True,
    ),
    _spec(
        "weight_loading",
        "memory",
        "pytorch backend: 'memory' copies the weights into RAM at start-up (no page-ins later); "
        "'mmap' maps the checkpoint file (faster start-up, pages may be evicted and re-read)",
        choices=WEIGHT_LOADING_CHOICES,
        read_only=True,
    ),
    _spec(
        "lock_weights",
        False,
        "pytorch backend on CPU: mlock the weights so they are never swapped out (needs "
        "CAP_IPC_LOCK or a high enough 'ulimit -l')",
        read_only=True,
    ),
    _spec(
        "torch_compile",
        False,
        "pytorch backend: torch.compile (inductor) the network at start-up (minutes for the "
        "released model; needs a C++ compiler on CPU, Triton on CUDA)",
        read_only=True,
    ),
    _spec(
        "cuda_graphs",
        False,
        "pytorch backend on CUDA: replay one captured CUDA graph per batch size 1..max_hands",
        read_only=True,
    ),
    # ---- detection
    _spec("detection_threshold", 0.3, "minimum detector confidence of a hand", minimum=0.0, maximum=1.0),
    _spec(
        "nms_iou_threshold",
        0.7,
        "IoU above which overlapping boxes of one side are suppressed (0.7: ultralytics' default, "
        "which the official demo uses)",
        minimum=0.01,
        maximum=1.0,
    ),
    _spec(
        "max_hands",
        4,
        "most hands reconstructed per image: the highest scores, whatever the box source",
        minimum=1,
        maximum=32,
    ),
    _spec(
        "rescale_factor",
        2.0,
        "crop side = rescale_factor * box size (official demo 2.0, training 2.5)",
        minimum=1.0,
        maximum=4.0,
    ),
    # ---- temporal: tracking, filtering, detector skipping (core/temporal.py)
    _spec(
        "use_tracking",
        True,
        "track hands across frames: stable HandMesh.id and TF names per hand (off: hands are "
        "numbered 1..N per image, and filtering and detector skipping are off too)",
    ),
    _spec(
        "use_filter",
        True,
        "smooth each tracked hand with the One Euro filter (positions and rotations)",
    ),
    _spec(
        "detector_skipping",
        True,
        "between detector frames, reconstruct from the tracked hands' predicted boxes "
        "(MediaPipe-style; new hands are found only on detector frames)",
    ),
    _spec(
        "redetect_every_n_frames",
        10,
        "with detector_skipping, run the detector at least every N frames (also when a track is "
        "lost or unsure)",
        minimum=1,
        maximum=1000,
    ),
    _spec(
        "track_min_hits",
        1,
        "frames a new hand must be seen before it is published (1: from its first frame; "
        "higher hides one-frame false detections at that many frames of delay)",
        minimum=1,
        maximum=30,
    ),
    _spec(
        "track_max_missed_frames",
        5,
        "frames a tracked hand may go unseen before its track (and id) ends",
        minimum=0,
        maximum=300,
    ),
    _spec(
        "filter_min_cutoff",
        1.0,
        "One Euro cutoff (Hz) for a still hand: lower = less jitter at rest, more lag when motion starts",
        minimum=0.01,
        maximum=100.0,
    ),
    _spec(
        "filter_beta",
        20.0,
        "One Euro speed coefficient (1/m): higher = less lag in fast motion, more jitter; the "
        "lag error never exceeds 1/(2 pi beta) metres",
        minimum=0.0,
        maximum=1000.0,
    ),
    # ---- outputs
    _spec(
        "publish_teleop",
        True,
        "publish wilor_msgs/TeleopHandArray on 'teleop_hands' (dex-retargeting convention, "
        "every processed image, empty when no hand)",
    ),
    _spec("frame_prefix", "", "prefix of every TF frame name, e.g. 'cam1/' -> 'cam1/right_hand_wrist'"),
    _spec("publish_tf", True, "publish one TF frame per joint on /tf"),
    _spec("publish_markers", True, "publish RViz markers on 'markers' (built only while subscribed)"),
    _spec("publish_debug_image", True, "publish an overlay on 'debug_image' (built only while subscribed)"),
    _spec(
        "diagnostics_period",
        1.0,
        "seconds between /diagnostics messages and status log lines",
        minimum=0.1,
        maximum=60.0,
    ),
    _spec("warn_throttle", 5.0, "seconds between two warnings of the same kind", minimum=0.0, maximum=600.0),
)

PARAMETER_NAMES = tuple(spec.name for spec in PARAMETERS)
BY_NAME = {spec.name: spec for spec in PARAMETERS}
