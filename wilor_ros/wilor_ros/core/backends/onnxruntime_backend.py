"""ONNX Runtime runtime of the reconstructor (the file written by ``wilor-ros export``; with the
full-size model also its ``.data`` side file, which ONNX Runtime reads beside the graph file)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnxruntime as ort

from wilor_ros.core.backends.base import (
    INPUT_NAME,
    ReconstructorBackend,
    ReconstructorOutput,
    check_crops,
    decode_faces,
)
from wilor_ros.core.onnx_files import check_external_data

LOG = logging.getLogger(__name__)


def read_metadata(session: ort.InferenceSession) -> dict[str, str]:
    """The custom metadata map of an ONNX file (written by our exporter)."""
    return dict(session.get_modelmeta().custom_metadata_map)


def default_providers(device: str) -> list[str]:
    """CUDA first when asked for and available, CPU always as the fallback."""
    available = ort.get_available_providers()
    wanted = ["CUDAExecutionProvider"] if str(device).startswith("cuda") else []
    return [p for p in wanted if p in available] + ["CPUExecutionProvider"]


class OnnxRuntimeBackend(ReconstructorBackend):
    """Runs the exported reconstructor ONNX file (dynamic batch) with ONNX Runtime."""

    name = "onnxruntime"

    def __init__(self, onnx_path: str | Path, device: str = "cpu", threads: int | None = None):
        path = Path(onnx_path)
        if not path.is_file():
            raise RuntimeError(f"reconstructor ONNX file not found: {path} (make it with `wilor-ros export`)")
        check_external_data(path)  # ONNX Runtime's own message for a missing side file is obscure
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=default_providers(device))
        self.metadata = read_metadata(self.session)
        self.synthetic = self.metadata.get("synthetic", "false").lower() == "true"
        self.faces = decode_faces(self.metadata["faces"]) if "faces" in self.metadata else None
        names = [o.name for o in self.session.get_outputs()]
        expected = list(ReconstructorOutput.names())
        if names != expected or self.session.get_inputs()[0].name != INPUT_NAME:
            raise ValueError(
                f"{path} is not a wilor_ros reconstructor export (outputs {names}, expected {expected}); "
                "re-export it with `wilor-ros export`"
            )
        if self.synthetic:
            LOG.warning("reconstructor %s has SYNTHETIC weights: outputs are not real hands", path)

    @property
    def export_info(self) -> dict:
        return json.loads(self.metadata.get("wilor_ros", "{}"))

    def infer(self, crops: np.ndarray) -> ReconstructorOutput:
        crops = check_crops(crops)
        if crops.shape[0] == 0:
            return ReconstructorOutput.empty()
        outputs = self.session.run(None, {INPUT_NAME: crops})
        return ReconstructorOutput(*outputs)

    def close(self) -> None:
        self.session = None
