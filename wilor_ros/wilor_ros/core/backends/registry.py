"""The one table of reconstructor runtimes: name -> precisions, model files, device input, how to build.

The pipeline (``make_backend``, ``PipelineConfig.validate``), the ROS parameter choices, the command
line, ``bench``, ``compare-backends``, ``build-engines`` and the GPU check all read this table; a new
runtime is one entry here plus its backend module. Builders import their runtime when called, so
reading the table needs neither torch nor TensorRT.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from wilor_ros.core.files.model_files import MANO_RIGHT, RECONSTRUCTOR_CKPT, RECONSTRUCTOR_ONNX, ModelFileInfo

if TYPE_CHECKING:
    from wilor_ros.core.backends.base import ReconstructorBackend
    from wilor_ros.core.image.detector import HandDetector
    from wilor_ros.core.pipeline_config import ModelPaths, PipelineConfig

BackendBuilder = Callable[["PipelineConfig", list[Path]], "ReconstructorBackend"]
DetectorBuilder = Callable[["PipelineConfig", Path], "HandDetector"]


@dataclass(frozen=True)
class BackendEntry:
    """One reconstructor runtime and everything the rest of the package needs to know about it."""

    name: str
    precisions: tuple[
        str, ...
    ]  # what it runs (int8: core/backends/quantization.py; fp16/bf16: mixed recipes)
    default_precision: str  # for a backend spec that names none (compare-backends, bench)
    model_files: tuple[tuple[str, ModelFileInfo], ...]  # (ModelPaths field, what the file is) it reads
    build: BackendBuilder  # (config, the resolved model_files) -> backend
    build_detector: DetectorBuilder  # (config, detector ONNX path) -> the detector that goes with it
    # infer_tensor takes crops made on the device without a host round trip (device_preprocessing);
    # the backend class's supports_device_input is this value
    device_input: bool = False
    torch_runtime: bool = False  # torch_compile / cuda_graphs apply

    def files(self, paths: ModelPaths) -> list[tuple[Path, ModelFileInfo]]:
        """The reconstructor files this runtime reads, resolved in ``paths.model_dir``."""
        return [(paths.resolve(getattr(paths, field)), info) for field, info in self.model_files]


# ------------------------------------------------------------------ builders (runtime imported on call)
def _build_torch(config: PipelineConfig, files: list[Path]) -> ReconstructorBackend:
    from wilor_ros.core.backends.torch_backend import TorchBackend, TorchOptions

    checkpoint, mano = files
    options = TorchOptions(
        precision=config.precision,
        torch_compile=config.torch_compile,
        cuda_graphs=config.cuda_graphs,
        max_batch=config.max_hands,
        weight_loading=config.weight_loading,
        lock_weights=config.lock_weights,
    )
    return TorchBackend.from_files(checkpoint, mano, device=config.device, options=options)


def _build_onnxruntime(config: PipelineConfig, files: list[Path]) -> ReconstructorBackend:
    from wilor_ros.core.backends.onnxruntime_backend import OnnxRuntimeBackend

    (onnx_path,) = files
    if config.precision == "int8":
        from wilor_ros.core.backends.quantization import ensure_int8_onnx

        onnx_path = ensure_int8_onnx(onnx_path)
    return OnnxRuntimeBackend(onnx_path, device=config.device)


def _build_tensorrt(config: PipelineConfig, files: list[Path]) -> ReconstructorBackend:
    from wilor_ros.core.backends.tensorrt.backend import TensorRTBackend

    (onnx_path,) = files
    return TensorRTBackend.from_onnx(onnx_path, device=config.device, precision=config.precision)


def _thresholds(config: PipelineConfig) -> dict[str, float]:
    return {"conf_threshold": config.detection_threshold, "iou_threshold": config.nms_iou_threshold}


def _onnxruntime_detector(config: PipelineConfig, path: Path) -> HandDetector:
    from wilor_ros.core.image.detector import OnnxHandDetector

    return OnnxHandDetector(path, device=config.device, **_thresholds(config))


def _tensorrt_detector(config: PipelineConfig, path: Path) -> HandDetector:
    from wilor_ros.core.backends.tensorrt.detector import TensorRTHandDetector

    return TensorRTHandDetector(path, device=config.device, precision=config.precision, **_thresholds(config))


_ONNX = (("reconstructor_onnx", RECONSTRUCTOR_ONNX),)
# in BackendEntry's field order: name, precisions, default precision, model files, builders, flags
BACKENDS: dict[str, BackendEntry] = {
    entry.name: entry
    for entry in (
        BackendEntry(
            "pytorch",
            ("fp32", "fp16", "bf16"),
            "fp32",
            (("checkpoint", RECONSTRUCTOR_CKPT), ("mano", MANO_RIGHT)),
            _build_torch,
            _onnxruntime_detector,
            device_input=True,
            torch_runtime=True,
        ),
        BackendEntry(
            "onnxruntime",
            ("fp32", "int8"),
            "fp32",
            _ONNX,
            _build_onnxruntime,
            _onnxruntime_detector,
        ),
        # fp16 by default: what TensorRT is for; fp32 (TF32 off) is the accuracy reference
        BackendEntry(
            "tensorrt",
            ("fp32", "fp16"),
            "fp16",
            _ONNX,
            _build_tensorrt,
            _tensorrt_detector,
            device_input=True,
        ),
    )
}
BACKEND_CHOICES = tuple(BACKENDS)
# every precision some runtime runs, in first-seen order: fp32, fp16, bf16, int8
PRECISION_CHOICES = tuple(dict.fromkeys(p for entry in BACKENDS.values() for p in entry.precisions))


def backend_entry(name: str) -> BackendEntry:
    """The entry of runtime ``name``; ValueError listing the choices otherwise."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKEND_CHOICES}, got {name!r}")
    return BACKENDS[name]


def backends_where(has: Callable[[BackendEntry], bool]) -> tuple[str, ...]:
    """The names of the runtimes whose entry satisfies ``has``, e.g. ``lambda e: e.device_input``."""
    return tuple(name for name, entry in BACKENDS.items() if has(entry))
