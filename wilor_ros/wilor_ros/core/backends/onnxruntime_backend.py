"""ONNX Runtime runtime of the reconstructor (the file written by ``wilor-ros export``; with the
full-size model also its ``.data`` side file, which ONNX Runtime reads beside the graph file)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from wilor_ros.core.backends.base import (
    INPUT_NAME,
    ReconstructorBackend,
    ReconstructorOutput,
    TensorSpec,
    check_crops,
)
from wilor_ros.core.backends.registry import BACKENDS
from wilor_ros.core.files.onnx_files import check_external_data
from wilor_ros.core.files.onnx_runtime import open_session, read_metadata

# ONNX Runtime's element type names -> numpy dtype names (TensorSpec.dtype)
ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64"}


def session_spec(value: ort.NodeArg) -> TensorSpec:
    """One session input/output as a TensorSpec (symbolic axes -> -1; unknown types kept as named)."""
    shape = tuple(d if isinstance(d, int) else -1 for d in value.shape)
    return TensorSpec(value.name, shape, ORT_DTYPES.get(value.type, value.type))


class OnnxRuntimeBackend(ReconstructorBackend):
    """Runs the exported reconstructor ONNX file (dynamic batch) with ONNX Runtime."""

    name = "onnxruntime"
    supports_device_input = BACKENDS[name].device_input

    def __init__(self, onnx_path: str | Path, device: str = "cpu", threads: int | None = None) -> None:
        path = Path(onnx_path)
        if not path.is_file():
            raise RuntimeError(f"reconstructor ONNX file not found: {path} (make it with `wilor-ros export`)")
        check_external_data(path)  # ONNX Runtime's own message for a missing side file is obscure
        self.session = open_session(path, device, threads)
        self.metadata = read_metadata(self.session)
        self.take_export_metadata(self.metadata, path)
        names = [o.name for o in self.session.get_outputs()]
        expected = list(ReconstructorOutput.names())
        if names != expected or self.session.get_inputs()[0].name != INPUT_NAME:
            raise ValueError(
                f"{path} is not a wilor_ros reconstructor export (outputs {names}, expected {expected}); "
                "re-export it with `wilor-ros export`"
            )

    @property
    def export_info(self) -> dict:
        return json.loads(self.metadata.get("wilor_ros", "{}"))

    def input_spec(self) -> TensorSpec:
        return session_spec(self.session.get_inputs()[0])

    def output_spec(self) -> tuple[TensorSpec, ...]:
        return tuple(session_spec(o) for o in self.session.get_outputs())

    def infer(self, crops: np.ndarray) -> ReconstructorOutput:
        crops = check_crops(crops)
        if crops.shape[0] == 0:
            return ReconstructorOutput.empty()
        outputs = self.session.run(None, {INPUT_NAME: crops})
        return ReconstructorOutput(*outputs)

    def close(self) -> None:
        self.session = None
