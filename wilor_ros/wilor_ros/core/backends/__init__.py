"""Reconstructor runtimes behind one interface (base.ReconstructorBackend), listed in one table
(registry.BACKENDS).

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
from wilor_ros.core.backends.registry import BACKEND_CHOICES, BACKENDS, PRECISION_CHOICES, BackendEntry

__all__ = [
    "BACKENDS",
    "BACKEND_CHOICES",
    "INPUT_SPEC",
    "OUTPUT_SPECS",
    "PRECISION_CHOICES",
    "BackendEntry",
    "ReconstructorBackend",
    "ReconstructorOutput",
    "TensorSpec",
]
