"""Image in, hands out: detector -> batched crops -> reconstructor -> full-image hands.

``HandPipeline.predict(image, intrinsics=None, boxes=None)`` is the whole ROS-free core:
* detect hands (or use the given boxes with sides, e.g. from a tracker or another detector);
* crop every hand with the official geometry (left hands mirrored) without copying the
  full image per hand;
* reconstruct ALL crops in ONE batch on the configured backend;
* un-mirror left hands, place them in the full-image camera frame (real intrinsics when
  given, else the official focal heuristic) and return typed ``HandEstimate`` results.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wilor_ros.core.backends.base import ReconstructorBackend, ReconstructorOutput
from wilor_ros.core.backends.registry import backend_entry
from wilor_ros.core.config import Setting, settings_of
from wilor_ros.core.files.model_files import (
    DETECTOR_ONNX,
    ModelFileInfo,
    check_model_files,
)
from wilor_ros.core.hand import camera
from wilor_ros.core.hand.constants import OPENPOSE_ROTATION_SOURCE
from wilor_ros.core.hand.rotations import global_joint_rotations, rotmat_to_axis_angle_np
from wilor_ros.core.image import preprocessing
from wilor_ros.core.pipeline_config import PipelineConfig
from wilor_ros.core.types import CameraIntrinsics, HandDetection, HandEstimate, Side

if TYPE_CHECKING:
    from wilor_ros.core.image.detector import HandDetector

LOG = logging.getLogger(__name__)


@dataclass
class StageTimings:
    """Seconds spent in each stage of the last predict() call."""

    convert: float = 0.0
    detect: float = 0.0
    crop: float = 0.0
    reconstruct: float = 0.0
    postprocess: float = 0.0

    @property
    def total(self) -> float:
        return self.convert + self.detect + self.crop + self.reconstruct + self.postprocess

    def __add__(self, other: StageTimings) -> StageTimings:
        return StageTimings(
            *(getattr(self, f.name) + getattr(other, f.name) for f in dataclasses.fields(StageTimings))
        )


def reconstructor_files(config: PipelineConfig) -> list[tuple[Path, ModelFileInfo]]:
    """The files the configured reconstructor backend reads (resolved paths, with their info)."""
    return backend_entry(config.backend).files(config.models)


def required_model_files(config: PipelineConfig) -> list[tuple[Path, ModelFileInfo]]:
    """Every model file the pipeline needs: the detector (when used) and the reconstructor's."""
    paths = config.models
    detector = [(paths.resolve(paths.detector), DETECTOR_ONNX)] if config.use_detector else []
    return detector + reconstructor_files(config)


def make_backend(config: PipelineConfig) -> ReconstructorBackend:
    """The reconstructor runtime the config names (files checked first, all at once)."""
    files = reconstructor_files(config)
    check_model_files(files)
    return backend_entry(config.backend).build(config, [path for path, _ in files])


def make_detector(config: PipelineConfig) -> HandDetector:
    """The hand detector that goes with the configured backend (TensorRT's runs as an engine)."""
    path = config.models.resolve(config.models.detector)
    check_model_files([(path, DETECTOR_ONNX)])
    return backend_entry(config.backend).build_detector(config, path)


class HandPipeline:
    """The end-to-end core; build with ``HandPipeline.from_config`` or pass parts in."""

    def __init__(
        self,
        config: PipelineConfig,
        backend: ReconstructorBackend,
        detector: HandDetector | None = None,
    ) -> None:
        config.validate()
        self.config = config
        self.backend = backend
        self.detector = detector
        self.synthetic = backend.synthetic
        self.last_timings = StageTimings()
        # the hands of the latest predict() call, as cropped (after select and decide_sides)
        self.last_detections: list[HandDetection] = []

    @classmethod
    def from_config(cls, config: PipelineConfig) -> HandPipeline:
        config.validate()
        # every file up front, so the user gets ONE error listing all that is missing
        check_model_files(required_model_files(config))
        detector = make_detector(config) if config.use_detector else None
        return cls(config, make_backend(config), detector)

    def reconfigure(self, config: PipelineConfig) -> None:
        """Take ``config`` from the next frame on; only its ``live`` fields may differ."""
        config.validate()
        fixed = [
            f.name
            for f in dataclasses.fields(PipelineConfig)
            if not settings_of(PipelineConfig).get(f.name, Setting("")).live
            and getattr(config, f.name) != getattr(self.config, f.name)
        ]
        if fixed:
            raise ValueError(f"{', '.join(fixed)} cannot change on a running pipeline: build a new one")
        self.config = config
        if self.detector is not None:
            self.detector.reconfigure(
                conf_threshold=config.detection_threshold, iou_threshold=config.nms_iou_threshold
            )

    # ------------------------------------------------------------------ stages
    def detect(self, image_rgb: np.ndarray) -> list[HandDetection]:
        if self.detector is None:
            return []
        detections = self.detector.detect(image_rgb)
        return self.select(d for d in detections if d.score >= self.config.detection_threshold)

    def select(self, detections: Iterable[HandDetection]) -> list[HandDetection]:
        """The ``max_hands`` highest-scoring detections, best first (ties keep their order;
        a NaN score ranks last), whatever their source: detector, tracker or outside."""
        ranked = sorted(detections, key=lambda d: -d.score if math.isfinite(d.score) else math.inf)
        return ranked[: self.config.max_hands]

    def predict(
        self,
        image: np.ndarray,
        intrinsics: CameraIntrinsics | None = None,
        boxes: list[HandDetection] | None = None,
        decide_sides: Callable[[list[HandDetection]], list[HandDetection]] | None = None,
    ) -> list[HandEstimate]:
        """image: H x W (gray), H x W x 3 (RGB) or H x W x 4 (RGBA) uint8.

        boxes: hands to reconstruct (skips the detector); None = run the detector. Either way the
        ``max_hands`` highest scores are kept (``select``), and the results come in that order.
        decide_sides: called with the selected detections BEFORE cropping; returns them with the
        side each hand is to be cropped (mirrored) and labelled with, e.g. the tracker's side
        (``HandTracker.assign_sides``), so that geometry and label always agree.
        """
        timings = StageTimings()
        t0 = time.perf_counter()
        rgb = preprocessing.to_rgb(image)
        height, width = rgb.shape[:2]
        if intrinsics is None:
            intrinsics = camera.heuristic_intrinsics(width, height)
        t1 = time.perf_counter()
        timings.convert = t1 - t0

        if boxes is None:
            detections = self.detect(rgb)
        else:
            detections = self.select(boxes)
        if decide_sides is not None:
            detections = decide_sides(detections)
        self.last_detections = detections
        t2 = time.perf_counter()
        timings.detect = t2 - t1

        batch: preprocessing.CropMetadata
        if self.config.device_preprocessing:
            import torch  # lazy: only this option needs torch here

            from wilor_ros.core.image.device_preprocessing import crop_hands_torch

            # one upload per frame; crops stay on the device until the backend's outputs come back
            frame = torch.from_numpy(rgb).to(self.config.device)
            crops, batch = crop_hands_torch(frame, detections, self.config.rescale_factor)
        else:
            batch = preprocessing.crop_hands(rgb, detections, self.config.rescale_factor)
        t3 = time.perf_counter()
        timings.crop = t3 - t2

        if not self.config.device_preprocessing:
            output = self.backend.infer(batch.crops)
        elif len(batch) == 0:
            output = ReconstructorOutput.empty()
        else:
            output = self.backend.infer_tensor(crops)
        t4 = time.perf_counter()
        timings.reconstruct = t4 - t3

        hands = self.postprocess(output, batch, detections, intrinsics)
        timings.postprocess = time.perf_counter() - t4
        self.last_timings = timings
        return hands

    def postprocess(
        self,
        output: ReconstructorOutput,
        batch: preprocessing.CropMetadata,
        detections: list[HandDetection],
        intrinsics: CameraIntrinsics,
    ) -> list[HandEstimate]:
        """Crop-frame network outputs -> full-image HandEstimates (vectorised over hands)."""
        count = len(detections)
        if count == 0:
            return []
        is_right = np.array([d.side == Side.RIGHT for d in detections])
        sign = np.where(is_right, 1.0, -1.0).astype(np.float32)  # +1 right, -1 left

        # Left hands were mirrored before the network: flip tx and the model-frame x back
        # (official demo.py), and mirror the rotations (M R M) so they match the mesh.
        pred_cam = output.pred_cam.copy()
        pred_cam[:, 1] *= sign
        vertices = output.vertices.copy()
        joints = output.keypoints_3d.copy()
        vertices[..., 0] *= sign[:, None]
        joints[..., 0] *= sign[:, None]

        local = np.concatenate([output.global_orient[:, None], output.hand_pose], axis=1)  # B x 16 x 3 x 3
        local[~is_right] = camera.mirror_rotations(local[~is_right])
        global_rot = global_joint_rotations(local[:, 0], local[:, 1:])  # B x 16 x 3 x 3
        joint_rot = global_rot[:, list(OPENPOSE_ROTATION_SOURCE)]  # B x 21 x 3 x 3
        axis_angle = rotmat_to_axis_angle_np(local.reshape(-1, 3, 3)).reshape(count, 16, 3)

        cam_t = camera.cam_crop_to_full(
            pred_cam, batch.box_centers, batch.box_sizes, batch.image_size, intrinsics
        ).astype(np.float32)  # B x 3
        vertices_cam = vertices + cam_t[:, None]
        joints_cam = joints + cam_t[:, None]
        keypoints_2d = camera.project_points(joints_cam.reshape(-1, 3), intrinsics).reshape(count, -1, 2)

        hands = []
        for i, det in enumerate(detections):
            hands.append(
                HandEstimate(
                    box=np.asarray(det.box, np.float32),
                    score=float(det.score),
                    side=det.side,
                    keypoints_3d=joints_cam[i].astype(np.float32),
                    keypoints_2d=keypoints_2d[i].astype(np.float32),
                    vertices=vertices_cam[i].astype(np.float32),
                    global_orient=axis_angle[i, 0].astype(np.float32),
                    hand_pose=axis_angle[i, 1:].astype(np.float32),
                    global_orient_matrix=local[i, 0].astype(np.float32),
                    hand_pose_matrix=local[i, 1:].astype(np.float32),
                    betas=output.betas[i].astype(np.float32),
                    cam_t=cam_t[i],
                    joint_rotations=joint_rot[i].astype(np.float32),
                    intrinsics=intrinsics,
                    detected_side=det.detected_side,
                    crop_cam=output.pred_cam[i].copy(),
                    box_size=float(batch.box_sizes[i]),
                )
            )
        return hands

    def close(self) -> None:
        self.backend.close()
        if self.detector is not None:
            self.detector.close()
