"""ONNX Runtime sessions as every runtime part opens them: providers for a device, options, metadata.

The reconstructor backend (backends/onnxruntime_backend.py) and the hand detector's network runner
(detector.py) both open their files here, so a provider or threading choice is made once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import onnxruntime as ort

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"


def default_providers(device: str) -> list[str]:
    """CUDA first when asked for and available, CPU always as the fallback."""
    available = ort.get_available_providers()
    wanted = [CUDA_PROVIDER] if str(device).startswith("cuda") else []
    return [p for p in wanted if p in available] + [CPU_PROVIDER]


def open_session(
    path: str | Path,
    device: str = "cpu",
    threads: int | None = None,
    providers: Sequence[str] | None = None,
) -> ort.InferenceSession:
    """An inference session with every graph optimisation on.

    threads: intra-op CPU threads (None or 0: ONNX Runtime's default, one per core);
    providers: explicit provider list, else :func:`default_providers` of ``device``.
    """
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    chosen = list(providers) if providers is not None else default_providers(device)
    return ort.InferenceSession(str(path), options, providers=chosen)


def read_metadata(session: ort.InferenceSession) -> dict[str, str]:
    """The custom metadata map of the session's ONNX file (written by our exporters / ultralytics)."""
    return dict(session.get_modelmeta().custom_metadata_map)
