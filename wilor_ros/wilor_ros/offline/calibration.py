"""Intrinsics from the YAML file the ROS camera calibrator writes (camera_calibration_parsers).

The file looks like::

    image_width: 640
    image_height: 480
    camera_name: head_camera
    camera_matrix: {rows: 3, cols: 3, data: [fx, 0, cx, 0, fy, cy, 0, 0, 1]}
    distortion_model: plumb_bob
    distortion_coefficients: {rows: 1, cols: 5, data: [k1, k2, t1, t2, k3]}
    rectification_matrix: {rows: 3, cols: 3, data: [...]}
    projection_matrix: {rows: 3, cols: 4, data: [...]}

Like the node (which reads ``CameraInfo.k``), the camera matrix K is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from wilor_ros.core.types import CameraIntrinsics

MATRIX_SIZE = 3


@dataclass(frozen=True)
class Calibration:
    """The parts of a camera-calibrator YAML the processing uses."""

    intrinsics: CameraIntrinsics
    width: int
    height: int


def load_camera_yaml(path: str | Path) -> Calibration:
    """Read a camera-calibrator YAML; ValueError naming the key when it is malformed."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"camera calibration file not found: {path}")
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected the ROS camera calibrator's YAML (a mapping), got {type(data)}")
    try:
        width, height = int(data["image_width"]), int(data["image_height"])
        matrix = data["camera_matrix"]
        values = np.asarray(matrix["data"], dtype=np.float64)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"{path}: needs image_width, image_height and camera_matrix: {{rows: 3, cols: 3, data: [9 "
            f"values]}} as written by the ROS camera calibrator ({type(exc).__name__}: {exc})"
        ) from exc
    if (int(matrix.get("rows", MATRIX_SIZE)), int(matrix.get("cols", MATRIX_SIZE))) != (
        3,
        3,
    ) or values.size != 9:
        raise ValueError(f"{path}: camera_matrix must be 3 x 3 (9 values), got {values.size} values")
    if width <= 0 or height <= 0:
        raise ValueError(f"{path}: image size must be positive, got {width} x {height}")
    try:
        intrinsics = CameraIntrinsics.from_matrix(values)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    return Calibration(intrinsics, width, height)
