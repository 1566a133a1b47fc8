"""The hand detector with its network as a TensorRT engine (letterbox, decoding, NMS: core/image/detector.py).

The engine is built from ``detector.onnx`` (every node in fp16 but the reductions of
``mixed_precision.FP32_OPS`` for ``fp16``) through the same cache as the reconstructor's, so
``wilor-ros build-engines`` builds exactly the engine the pipeline loads for backend ``tensorrt``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wilor_ros.core.backends.tensorrt.backend import DEFAULT_PRECISION
from wilor_ros.core.backends.tensorrt.build import CachedEngine, detector_profile, ensure_engine
from wilor_ros.core.backends.tensorrt.cache import DeviceInfo
from wilor_ros.core.backends.tensorrt.runtime import TensorRTEngineRunner, query_device_info
from wilor_ros.core.image.detector import YoloHandDetector, check_thresholds, detector_file
from wilor_ros.core.image.yolo import (
    DEFAULT_CONF_THRESHOLD,
    DEFAULT_IOU_THRESHOLD,
    DEFAULT_MAX_DETECTIONS,
    NetworkLayout,
    TensorSpec,
    network_layout,
    parse_metadata,
)

# Images per engine call. The node detects one frame at a time; longer lists (offline batches) run in
# chunks of this many, so the engine stays small and `build-engines` needs no batch option for it.
DETECTOR_MAX_BATCH = 1


@dataclass(frozen=True)
class OnnxSignature:
    """The inputs, outputs and metadata an ONNX file declares, named as ONNX Runtime names them
    (``tensor(float)``; symbolic axes by name, None when unnamed), read without a session."""

    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    metadata: dict[str, str]

    @classmethod
    def read(cls, onnx_path: str | Path) -> OnnxSignature:
        import onnx

        model = onnx.load(str(onnx_path), load_external_data=False)

        def spec(value: onnx.ValueInfoProto) -> TensorSpec:
            tensor = value.type.tensor_type
            dims = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim
            )
            return TensorSpec(
                value.name, dims, f"tensor({onnx.TensorProto.DataType.Name(tensor.elem_type).lower()})"
            )

        weights = {t.name for t in model.graph.initializer}  # older exports list weights as inputs too
        inputs = tuple(spec(v) for v in model.graph.input if v.name not in weights)
        return cls(
            inputs, tuple(spec(v) for v in model.graph.output), {p.key: p.value for p in model.metadata_props}
        )

    def layout(self, source: str) -> NetworkLayout:
        return network_layout(self.inputs, self.outputs, parse_metadata(self.metadata, source), source)


def detector_engine(
    onnx_path: str | Path,
    device_info: DeviceInfo,
    precision: str = DEFAULT_PRECISION,
    rebuild: bool = False,
    signature: OnnxSignature | None = None,
) -> CachedEngine:
    """The detector's engine from the cache beside ``onnx_path`` (built first when missing, stale or
    ``rebuild``): DETECTOR_MAX_BATCH images per call, or a fixed-batch export's own batch.
    ``signature``: the file's, when already read."""
    layout = (signature or OnnxSignature.read(onnx_path)).layout(str(onnx_path))
    batch = layout.static_batch or DETECTOR_MAX_BATCH
    profile = detector_profile(layout.input_name, layout.imgsz, batch, layout.dynamic_hw)
    return ensure_engine(onnx_path, device_info, precision, batch, profile, rebuild=rebuild, fp16_scopes=None)


class TensorRTRunner:
    """A detector NetworkRunner (core/image/detector.py) whose network is the cached engine of ``onnx_path``
    (built first when missing or stale, as ``build-engines`` builds it)."""

    def __init__(
        self, onnx_path: str | Path, device: str = "cuda", precision: str = DEFAULT_PRECISION
    ) -> None:
        info = query_device_info(device)  # first: no TensorRT or GPU is the likelier error
        signature = OnnxSignature.read(onnx_path)
        self.inputs, self.outputs, self.metadata = signature.inputs, signature.outputs, signature.metadata
        engine = detector_engine(onnx_path, info, precision, signature=signature)
        self.engine = TensorRTEngineRunner(engine.paths.engine, device)
        self.max_batch: int | None = int(self.engine.profile_shape(self.inputs[0].name)[2][0])

    def run(self, tensor: np.ndarray) -> np.ndarray:
        import torch

        out = self.engine.run({self.inputs[0].name: torch.from_numpy(np.ascontiguousarray(tensor))})
        return out[self.outputs[0].name].float().cpu().numpy()

    def close(self) -> None:
        self.engine.close()


class TensorRTHandDetector(YoloHandDetector):
    """The YOLO hand detector with its network on TensorRT: the engine's ``precision`` (fp16 | fp32),
    the other arguments as OnnxHandDetector's (keyword-only)."""

    def __init__(
        self,
        onnx_path: str | Path,
        device: str = "cuda",
        precision: str = DEFAULT_PRECISION,
        *,
        conf_threshold: float = DEFAULT_CONF_THRESHOLD,
        iou_threshold: float = DEFAULT_IOU_THRESHOLD,
        max_detections: int = DEFAULT_MAX_DETECTIONS,
        rect: bool = True,
    ) -> None:
        path = detector_file(onnx_path)
        check_thresholds(conf_threshold, iou_threshold)  # before minutes of engine building
        runner = TensorRTRunner(path, device, precision)
        super().__init__(runner, path, conf_threshold, iou_threshold, max_detections, rect)
