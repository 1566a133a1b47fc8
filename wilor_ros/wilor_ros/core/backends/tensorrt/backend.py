"""The reconstructor backend on TensorRT: the cached engine of ``wilor.onnx``, run on torch CUDA tensors."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wilor_ros.core.backends.base import (
    INPUT_NAME,
    ReconstructorBackend,
    ReconstructorOutput,
    TensorSpec,
    check_crops,
)
from wilor_ros.core.backends.registry import BACKENDS
from wilor_ros.core.backends.tensorrt.build import CachedEngine, ensure_engine, reconstructor_profile
from wilor_ros.core.backends.tensorrt.cache import TRT_PRECISIONS, DeviceInfo
from wilor_ros.core.backends.tensorrt.mixed_precision import RECONSTRUCTOR_FP16_SCOPES
from wilor_ros.core.backends.tensorrt.runtime import TensorRTEngineRunner, query_device_info
from wilor_ros.core.hand.constants import CROP_SIZE

if TYPE_CHECKING:
    import torch


DEFAULT_PRECISION = BACKENDS["tensorrt"].default_precision
DEFAULT_MAX_BATCH = 4  # PipelineConfig.max_hands default


def read_onnx_metadata(onnx_path: str | Path) -> dict[str, str]:
    """The metadata_props of an ONNX file (its weights are not read)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def reconstructor_engine(
    onnx_path: str | Path,
    device_info: DeviceInfo,
    precision: str = DEFAULT_PRECISION,
    max_batch: int = DEFAULT_MAX_BATCH,
    rebuild: bool = False,
) -> CachedEngine:
    """The reconstructor's engine for batches 1..max_batch (ViT blocks in fp16 for ``fp16``), from the
    cache beside ``onnx_path`` (built first when missing, stale or ``rebuild``)."""
    profile = reconstructor_profile(max_batch)
    return ensure_engine(
        onnx_path,
        device_info,
        precision,
        max_batch,
        profile,
        rebuild=rebuild,
        fp16_scopes=RECONSTRUCTOR_FP16_SCOPES,
    )


class TensorRTBackend(ReconstructorBackend):
    """The reconstructor as a TensorRT engine (outputs float32, same names as the ONNX file)."""

    name = "tensorrt"
    supports_device_input = BACKENDS[name].device_input

    def __init__(
        self,
        engine_path: str | Path,
        device: str = "cuda",
        metadata: dict[str, str] | None = None,
        precision: str = DEFAULT_PRECISION,
    ) -> None:
        self.runner = TensorRTEngineRunner(Path(engine_path), device)
        self.precision = precision
        names = [t.name for t in self.runner.outputs]
        if [t.name for t in self.runner.inputs] != [INPUT_NAME] or names != list(ReconstructorOutput.names()):
            raise ValueError(
                f"{engine_path} is not a wilor_ros reconstructor engine (outputs {names}); rebuild it with "
                "`wilor-ros build-engines`"
            )
        self.max_batch = int(self.runner.profile_shape(INPUT_NAME)[2][0])
        self.take_export_metadata(metadata or {}, engine_path)

    @classmethod
    def from_onnx(
        cls,
        onnx_path: str | Path,
        device: str = "cuda",
        precision: str = DEFAULT_PRECISION,
        max_batch: int = DEFAULT_MAX_BATCH,
    ) -> TensorRTBackend:
        """Build (first use) or reuse the cached engine of ``onnx_path`` and load it (a forced rebuild:
        ``wilor-ros build-engines --rebuild``)."""
        if precision not in TRT_PRECISIONS:  # before the GPU is looked for: bad input first
            raise ValueError(f"TensorRT precision must be one of {TRT_PRECISIONS}, got {precision!r}")
        engine = reconstructor_engine(onnx_path, query_device_info(device), precision, max_batch)
        return cls(engine.paths.engine, device, read_onnx_metadata(onnx_path), precision)

    def input_spec(self) -> TensorSpec:
        return self.runner.inputs[0].spec

    def output_spec(self) -> tuple[TensorSpec, ...]:
        return tuple(t.spec for t in self.runner.outputs)

    def infer(self, crops: np.ndarray) -> ReconstructorOutput:
        import torch

        crops = check_crops(crops)
        if crops.shape[0] == 0:
            return ReconstructorOutput.empty()
        return self.infer_tensor(torch.from_numpy(crops))

    def infer_tensor(self, crops: torch.Tensor) -> ReconstructorOutput:
        """crops: B x 3 x 256 x 256 tensor (on the GPU for the fast path); batches above the engine's
        max batch run in chunks."""
        if crops.ndim != 4 or tuple(crops.shape[1:]) != (3, CROP_SIZE, CROP_SIZE):
            raise ValueError(
                f"crops must be B x 3 x {CROP_SIZE} x {CROP_SIZE}, got shape {tuple(crops.shape)}"
            )
        if crops.shape[0] == 0:
            return ReconstructorOutput.empty()
        parts: dict[str, list[np.ndarray]] = {n: [] for n in ReconstructorOutput.names()}
        for start in range(0, crops.shape[0], self.max_batch):
            out = self.runner.run({INPUT_NAME: crops[start : start + self.max_batch]})
            for name in parts:
                parts[name].append(out[name].float().cpu().numpy())
        return ReconstructorOutput(**{n: np.concatenate(v) for n, v in parts.items()})

    def close(self) -> None:
        self.runner.close()
