"""Write rosbag2 recordings of given frames with rosbags (for tests and ``bench --offline``).

``write_image_bag`` records what a camera driver (plus an optional external hand detector)
would: colour images (raw rgb8 or JPEG CompressedImage), camera_info, aligned depth and
wilor_msgs/HandDetectionArray boxes, each with the frame's header stamp, in sqlite3 or MCAP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from wilor_ros.core.types import CameraIntrinsics, HandDetection
from wilor_ros.offline import bagtypes

IMAGE_TOPIC = "/camera/color/image_raw"
COMPRESSED_TOPIC = "/camera/color/image_raw/compressed"
CAMERA_INFO_TOPIC = "/camera/color/camera_info"
DEPTH_TOPIC = "/camera/aligned_depth_to_color/image_raw"
BOXES_TOPIC = "/hand_boxes"
FRAME_ID = "camera_color_optical_frame"


@dataclass
class RecordedFrame:
    """One camera frame to record."""

    rgb: np.ndarray  # H x W x 3 uint8
    stamp_ns: int
    boxes: list[HandDetection] | None = None  # recorded on BOXES_TOPIC when given
    depth_mm: np.ndarray | None = None  # H x W uint16 millimetres (16UC1), 0 = no reading
    encoding: str = "rgb8"  # raw images: the encoding written (the data stays rgb8 bytes)
    compressed_data: bytes | None = None  # compressed images: these bytes instead of the JPEG


def _header(stamp_ns: int) -> Any:
    return bagtypes.header(stamp_ns, FRAME_ID)


def image_msg(rgb: np.ndarray, stamp_ns: int, encoding: str = "rgb8") -> Any:
    types = bagtypes.typestore().types
    height, width = rgb.shape[:2]
    data = np.ascontiguousarray(rgb, dtype=np.uint8)
    return types[bagtypes.IMAGE](
        header=_header(stamp_ns),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=data.nbytes // height,
        data=data.reshape(-1),
    )


def compressed_msg(rgb: np.ndarray, stamp_ns: int, quality: int = 95, data: bytes | None = None) -> Any:
    if data is None:
        ok, jpeg = cv2.imencode(
            ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
        )
        if not ok:
            raise RuntimeError("OpenCV could not encode a JPEG")
        data = jpeg.tobytes()
    types = bagtypes.typestore().types
    payload = np.frombuffer(data, dtype=np.uint8).copy()
    return types[bagtypes.COMPRESSED_IMAGE](header=_header(stamp_ns), format="jpeg", data=payload)


def depth_msg(depth_mm: np.ndarray, stamp_ns: int) -> Any:
    types = bagtypes.typestore().types
    data = np.ascontiguousarray(depth_mm, dtype="<u2")
    height, width = data.shape
    return types[bagtypes.IMAGE](
        header=_header(stamp_ns),
        height=height,
        width=width,
        encoding="16UC1",
        is_bigendian=0,
        step=width * 2,
        data=data.view(np.uint8).reshape(-1),
    )


def camera_info_msg(camera_matrix: np.ndarray, width: int, height: int, stamp_ns: int) -> Any:
    """CameraInfo with K = ``camera_matrix`` (3 x 3, may hold NaN for bad-input tests)."""
    types = bagtypes.typestore().types
    matrix = np.asarray(camera_matrix, np.float64).reshape(3, 3)
    k = matrix.reshape(-1)
    p = np.concatenate([matrix, np.zeros((3, 1))], axis=1).reshape(-1)
    roi = types["sensor_msgs/msg/RegionOfInterest"](
        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False
    )
    return types[bagtypes.CAMERA_INFO](
        header=_header(stamp_ns),
        height=height,
        width=width,
        distortion_model="plumb_bob",
        d=np.zeros(5),
        k=k,
        r=np.eye(3).reshape(-1),
        p=p,
        binning_x=0,
        binning_y=0,
        roi=roi,
    )


def boxes_msg(boxes: Sequence[HandDetection], stamp_ns: int) -> Any:
    types = bagtypes.typestore().types
    detection = types["wilor_msgs/msg/HandDetection"]
    return types[bagtypes.HAND_DETECTION_ARRAY](
        header=_header(stamp_ns),
        detections=[
            detection(box=np.asarray(b.box, np.float32), side=int(b.side), score=float(b.score))
            for b in boxes
        ],
    )


def write_image_bag(
    path: Path,
    frames: Sequence[RecordedFrame],
    storage: str = "sqlite3",
    compressed: bool = False,
    intrinsics: CameraIntrinsics | np.ndarray | None = None,
    receive_delay_ns: int = 2_000_000,
) -> Path:
    """Record ``frames`` into a new rosbag2 folder ``path``; returns it.

    Topics: the image (``IMAGE_TOPIC`` raw or ``COMPRESSED_TOPIC``), ``CAMERA_INFO_TOPIC`` when
    ``intrinsics`` is given (CameraIntrinsics or a raw 3 x 3 K), ``DEPTH_TOPIC`` for frames with
    depth, ``BOXES_TOPIC`` for frames with boxes. Messages are logged ``receive_delay_ns`` after
    their stamp (depth a little later than the colour image, as a real driver delivers it).
    """
    from rosbags.rosbag2 import StoragePlugin, Writer

    store = bagtypes.typestore()
    k = intrinsics.matrix() if isinstance(intrinsics, CameraIntrinsics) else intrinsics
    plugin = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}[storage]
    with Writer(path, version=8, storage_plugin=plugin) as writer:
        image_type = bagtypes.COMPRESSED_IMAGE if compressed else bagtypes.IMAGE
        image = writer.add_connection(
            COMPRESSED_TOPIC if compressed else IMAGE_TOPIC, image_type, typestore=store
        )
        info = (
            writer.add_connection(CAMERA_INFO_TOPIC, bagtypes.CAMERA_INFO, typestore=store)
            if k is not None
            else None
        )
        depth = (
            writer.add_connection(DEPTH_TOPIC, bagtypes.IMAGE, typestore=store)
            if any(f.depth_mm is not None for f in frames)
            else None
        )
        boxes = (
            writer.add_connection(BOXES_TOPIC, bagtypes.HAND_DETECTION_ARRAY, typestore=store)
            if any(f.boxes is not None for f in frames)
            else None
        )
        for frame in frames:
            log = frame.stamp_ns + receive_delay_ns
            if compressed:
                msg = compressed_msg(frame.rgb, frame.stamp_ns, data=frame.compressed_data)
            else:
                msg = image_msg(frame.rgb, frame.stamp_ns, frame.encoding)
            writer.write(image, log, store.serialize_cdr(msg, image_type))
            if info is not None and k is not None:
                height, width = frame.rgb.shape[:2]
                cam = camera_info_msg(k, width, height, frame.stamp_ns)
                writer.write(info, log, store.serialize_cdr(cam, bagtypes.CAMERA_INFO))
            if boxes is not None and frame.boxes is not None:
                writer.write(
                    boxes,
                    log + 1,
                    store.serialize_cdr(
                        boxes_msg(frame.boxes, frame.stamp_ns), bagtypes.HAND_DETECTION_ARRAY
                    ),
                )
            if depth is not None and frame.depth_mm is not None:
                writer.write(
                    depth,
                    log + 1000,
                    store.serialize_cdr(depth_msg(frame.depth_mm, frame.stamp_ns), bagtypes.IMAGE),
                )
    return Path(path)


def shifted_photo_frames(
    photo_rgb: np.ndarray, boxes: Sequence[HandDetection], count: int, fps: float = 30.0, step_px: int = 2
) -> list[RecordedFrame]:
    """``count`` frames of one photo sliding right by ``step_px`` pixels per frame (a camera
    pan), with the boxes moved along; stamps from 1 s at ``fps``."""
    frames = []
    for i in range(count):
        shift = i * step_px
        moved = np.zeros_like(photo_rgb)
        moved[:, shift:] = photo_rgb[:, : photo_rgb.shape[1] - shift]
        offset = np.array([shift, 0, shift, 0], np.float32)
        frame_boxes = [HandDetection(b.box + offset, b.side, b.score) for b in boxes]
        frames.append(RecordedFrame(moved, 1_000_000_000 + round(i * 1e9 / fps), frame_boxes))
    return frames
