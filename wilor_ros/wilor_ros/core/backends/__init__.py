"""Reconstructor runtimes behind one interface (see base.ReconstructorBackend).

Backends are imported lazily: the ONNX Runtime path must not need torch, and TensorRT is
optional.
"""

from wilor_ros.core.backends.base import (
    INPUT_SPEC,
    OUTPUT_SPECS,
    ReconstructorBackend,
    ReconstructorOutput,
    TensorSpec,
)

BACKENDS = ("pytorch", "onnxruntime", "tensorrt")

__all__ = [
    "BACKENDS",
    "INPUT_SPEC",
    "OUTPUT_SPECS",
    "ReconstructorBackend",
    "ReconstructorOutput",
    "TensorSpec",
]
