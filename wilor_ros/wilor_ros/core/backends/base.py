"""The small interface every reconstructor runtime implements (PyTorch, ONNX Runtime, TensorRT).

A backend maps a batch of normalised crops (B x 3 x 256 x 256 float32) to the network's
outputs in the crop frame (left hands still mirrored); everything before and after is the
pipeline's job, shared by all backends, so one comparison script runs any pair.
"""

from __future__ import annotations

import base64
import logging
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wilor_ros.core.hand.constants import CROP_SIZE, NUM_HAND_JOINTS, NUM_JOINTS, NUM_VERTICES

if TYPE_CHECKING:
    import torch

LOG = logging.getLogger(__name__)

INPUT_NAME = "crops"


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (-1 for a dynamic axis) and dtype of one input or output tensor."""

    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass
class ReconstructorOutput:
    """Network outputs for B crops (crop camera frame; left hands still mirrored).

    Field names are also the ONNX/TensorRT output tensor names.
    """

    pred_cam: np.ndarray  # B x 3, weak-perspective crop camera [s, tx, ty]
    global_orient: np.ndarray  # B x 3 x 3, MANO root rotation
    hand_pose: np.ndarray  # B x 15 x 3 x 3, finger joint rotations (MANO order)
    betas: np.ndarray  # B x 10
    keypoints_3d: np.ndarray  # B x 21 x 3, metres, MANO model frame, OpenPose order
    vertices: np.ndarray  # B x 778 x 3, metres, MANO model frame
    keypoints_2d: np.ndarray  # B x 21 x 2, crop-normalised units (crop pixel = 128 + 256 * value)
    cam_t: np.ndarray  # B x 3, metres, crop camera translation (focal 5000, 256-px crop)

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def empty(cls) -> ReconstructorOutput:
        return cls(**{spec.name: np.zeros((0, *spec.shape[1:]), np.float32) for spec in OUTPUT_SPECS})

    def __len__(self) -> int:
        return int(self.pred_cam.shape[0])

    def as_dict(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.names()}


INPUT_SPEC = TensorSpec(INPUT_NAME, (-1, 3, CROP_SIZE, CROP_SIZE), "float32")
OUTPUT_SPECS = (
    TensorSpec("pred_cam", (-1, 3), "float32"),
    TensorSpec("global_orient", (-1, 3, 3), "float32"),
    TensorSpec("hand_pose", (-1, NUM_HAND_JOINTS, 3, 3), "float32"),
    TensorSpec("betas", (-1, 10), "float32"),
    TensorSpec("keypoints_3d", (-1, NUM_JOINTS, 3), "float32"),
    TensorSpec("vertices", (-1, NUM_VERTICES, 3), "float32"),
    TensorSpec("keypoints_2d", (-1, NUM_JOINTS, 2), "float32"),
    TensorSpec("cam_t", (-1, 3), "float32"),
)
assert tuple(s.name for s in OUTPUT_SPECS) == ReconstructorOutput.names()


class ReconstructorBackend(ABC):
    """One runtime for the reconstructor network."""

    name: str = "abstract"
    #: True when the loaded weights are synthetic (not the licensed WiLoR release)
    synthetic: bool = False
    #: F x 3 int64 MANO triangles (right-hand winding) of the mesh the backend outputs
    faces: np.ndarray | None = None
    #: True when ``infer_tensor`` runs crops that are already on the backend's device without a host
    #: round trip (the pipeline's ``device_preprocessing`` needs it; core/image/device_preprocessing.py)
    supports_device_input: bool = False
    #: seconds spent compiling / capturing / building at construction (0 when nothing was)
    warmup_seconds: float = 0.0

    def input_spec(self) -> TensorSpec:
        """The crops input as the runtime declares it (-1 for the dynamic batch axis)."""
        return INPUT_SPEC

    def output_spec(self) -> tuple[TensorSpec, ...]:
        """The outputs as the runtime declares them; a backend whose runtime describes its own tensors
        (an ONNX session, a TensorRT engine) reports those, so they can be checked against the spec."""
        return OUTPUT_SPECS

    @abstractmethod
    def infer(self, crops: np.ndarray) -> ReconstructorOutput:
        """crops: B x 3 x 256 x 256 float32 normalised -> outputs for the B crops (B may be 0)."""

    def take_export_metadata(self, metadata: Mapping[str, str], source: str | Path) -> None:
        """Set ``synthetic`` and ``faces`` from the metadata our exporter writes into the ONNX file
        (tools/export.py), which also travels to the engines built from it."""
        self.synthetic = metadata.get("synthetic", "false").lower() == "true"
        self.faces = decode_faces(metadata["faces"]) if "faces" in metadata else None
        if self.synthetic:
            LOG.warning("reconstructor %s has SYNTHETIC weights: outputs are not real hands", source)

    def infer_tensor(self, crops: torch.Tensor) -> ReconstructorOutput:
        """crops: B x 3 x 256 x 256 float32 torch tensor on any device -> outputs for the B crops.

        This default copies the crops to the host and calls ``infer``; backends with
        ``supports_device_input`` run them where they are.
        """
        return self.infer(crops.detach().cpu().numpy())

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing to release
        """Release runtime resources (device memory, sessions)."""

    def __enter__(self) -> ReconstructorBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def encode_faces(faces: np.ndarray) -> str:
    """F x 3 triangle indices -> compact text for ONNX metadata (base64 of uint16)."""
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.min() < 0 or faces.max() >= 1 << 16:
        raise ValueError(f"faces must be F x 3 indices below 65536, got shape {faces.shape}")
    return base64.b64encode(faces.astype("<u2").tobytes()).decode("ascii")


def decode_faces(text: str) -> np.ndarray:
    """Inverse of encode_faces -> F x 3 int64."""
    return np.frombuffer(base64.b64decode(text), dtype="<u2").reshape(-1, 3).astype(np.int64)


def check_crops(crops: np.ndarray) -> np.ndarray:
    """Validate and return crops as a contiguous float32 B x 3 x 256 x 256 array."""
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[1:] != (3, CROP_SIZE, CROP_SIZE):
        raise ValueError(f"crops must be B x 3 x {CROP_SIZE} x {CROP_SIZE}, got shape {crops.shape}")
    return np.ascontiguousarray(crops, dtype=np.float32)
