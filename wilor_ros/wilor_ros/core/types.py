"""Typed values passed between the parts of the ROS-free core.

Conventions used everywhere in wilor_ros:
* images are H x W x 3 RGB uint8 numpy arrays (grayscale/RGBA are converted at the entry);
* boxes are XYXY pixels (x1, y1, x2, y2) of the source image, float32;
* 3D quantities are metres in the camera optical frame (x right, y down, z forward);
* joints are in OpenPose hand order (``constants.JOINT_NAMES``);
* rotations are 3 x 3 matrices acting on column vectors, or axis-angle vectors (radians).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum, IntEnum

import numpy as np


class Side(IntEnum):
    """Anatomical side of a hand (values equal wilor_msgs/HandMesh LEFT/RIGHT and the
    WiLoR detector classes: 0 = left, 1 = right)."""

    LEFT = 0
    RIGHT = 1

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str | int | Side) -> Side:
        """Accept 0/1, "left"/"right" (any case) or a Side."""
        if isinstance(value, str):
            key = value.strip().upper()
            if key not in cls.__members__:
                raise ValueError(f"hand side must be 'left' or 'right', got {value!r}")
            return cls[key]
        try:
            return cls(int(value))
        except ValueError as exc:
            raise ValueError(f"hand side must be 0 (left) or 1 (right), got {value!r}") from exc


class BoxSource(str, Enum):
    """Where the box a hand was cropped from came from."""

    EXTERNAL = "external"  # given by the caller (another detector, a tracker, a file)
    DETECTOR = "detector"  # the pipeline's hand detector
    TRACKER = "tracker"  # predicted by the tracker between detector frames


@dataclass(frozen=True)
class CameraIntrinsics:
    """Pinhole intrinsics in pixels (as in sensor_msgs/CameraInfo K)."""

    fx: float
    fy: float
    cx: float
    cy: float
    # True when the values come from a real calibration (CameraInfo), False for the official
    # focal heuristic (see camera.heuristic_intrinsics).
    from_camera_info: bool = True

    def __post_init__(self) -> None:
        values = (self.fx, self.fy, self.cx, self.cy)
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"camera intrinsics must be finite, got fx,fy,cx,cy={values}")
        if self.fx <= 0 or self.fy <= 0:
            raise ValueError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")

    @classmethod
    def from_matrix(cls, k: np.ndarray, from_camera_info: bool = True) -> CameraIntrinsics:
        """From a 3 x 3 camera matrix (or the 9 row-major values of CameraInfo.k)."""
        k = np.asarray(k, dtype=np.float64).reshape(3, 3)
        return cls(float(k[0, 0]), float(k[1, 1]), float(k[0, 2]), float(k[1, 2]), from_camera_info)

    def matrix(self) -> np.ndarray:
        """3 x 3 camera matrix K."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def as_array(self) -> np.ndarray:
        """(4,) float32: fx, fy, cx, cy (the HandMesh.intrinsics layout)."""
        return np.array([self.fx, self.fy, self.cx, self.cy], dtype=np.float32)


@dataclass(frozen=True)
class HandDetection:
    """One hand box: from the detector, or supplied from outside (tracker, other detector)."""

    box: np.ndarray  # (4,) float32, XYXY pixels
    side: Side  # the side the hand is cropped (mirrored) and published with
    score: float = 1.0
    # the detector's own call when ``side`` was decided otherwise (the tracker's side hysteresis);
    # None when no detector looked at this box (boxes predicted by the tracker)
    detected_side: Side | None = None

    def __post_init__(self) -> None:
        box = np.asarray(self.box, dtype=np.float32).reshape(-1)
        if box.shape != (4,) or not np.all(np.isfinite(box)):
            raise ValueError(f"a hand box needs 4 finite values x1, y1, x2, y2, got {self.box!r}")
        if box[2] <= box[0] or box[3] <= box[1]:
            raise ValueError(f"a hand box needs x2 > x1 and y2 > y1, got {box.tolist()}")
        object.__setattr__(self, "box", box)
        object.__setattr__(self, "side", Side.parse(self.side))
        if self.detected_side is not None:
            object.__setattr__(self, "detected_side", Side.parse(self.detected_side))


@dataclass
class HandEstimate:
    """One reconstructed hand in one image (everything already un-mirrored for left hands)."""

    box: np.ndarray  # (4,) float32, XYXY source-image pixels
    score: float  # detector confidence in [0, 1]
    side: Side
    keypoints_3d: np.ndarray  # (21, 3) float32, metres, camera frame, OpenPose order
    keypoints_2d: np.ndarray  # (21, 2) float32, source-image pixels (u, v)
    vertices: np.ndarray  # (778, 3) float32, metres, camera frame
    global_orient: np.ndarray  # (3,) float32 axis-angle, MANO root in the camera frame
    hand_pose: np.ndarray  # (15, 3) float32 axis-angle, MANO joint order, parent-relative
    global_orient_matrix: np.ndarray  # (3, 3) float32
    hand_pose_matrix: np.ndarray  # (15, 3, 3) float32
    betas: np.ndarray  # (10,) float32
    cam_t: np.ndarray  # (3,) float32, metres: model-frame vertices + cam_t = camera frame
    joint_rotations: np.ndarray  # (21, 3, 3) float32, global rotation of each OpenPose joint
    intrinsics: CameraIntrinsics
    track_id: int = 0
    depth_corrected: bool = False
    # the detector's side for this hand (may differ from ``side`` when the tracker's hysteresis
    # overrode a one-frame misclassification; ``side`` is always the side the geometry was
    # reconstructed for); None when the box came from the tracker, not a detector
    detected_side: Side | None = None
    tracked: bool = False  # track_id is a stable track id (False: hands numbered 1..N per image)
    filtered: bool = False  # went through the temporal (One Euro) filter
    box_source: BoxSource | None = None  # None: straight from HandPipeline.predict
    # the network's crop camera [s, tx, ty] (left hands: as seen in the mirrored crop) and the
    # side of the square crop in source pixels (before scaling to 256)
    crop_cam: np.ndarray | None = None
    box_size: float | None = None

    @property
    def wrist_position(self) -> np.ndarray:
        """(3,) metres, camera frame."""
        return self.keypoints_3d[0]
