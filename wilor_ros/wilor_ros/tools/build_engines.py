"""``wilor-ros build-engines``: build (or reuse) the TensorRT engines of a model folder ahead of time.

Building takes minutes for the full model, so a robot should not do it on its first frame: run this
once per machine (engines are specific to the GPU, TensorRT version, precision and max batch; see
core/backends/tensorrt/cache.py for the cache layout). The engines are the ones the pipeline loads
for backend ``tensorrt``: the reconstructor's and the hand detector's, through the same functions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from wilor_ros.core.backends.tensorrt.backend import (
    DEFAULT_MAX_BATCH,
    DEFAULT_PRECISION,
    reconstructor_engine,
)
from wilor_ros.core.backends.tensorrt.build import CachedEngine
from wilor_ros.core.backends.tensorrt.cache import SIDECAR_SUFFIX, stale_engines
from wilor_ros.core.backends.tensorrt.detector import detector_engine
from wilor_ros.core.backends.tensorrt.runtime import query_device_info
from wilor_ros.core.files.model_files import DETECTOR_ONNX, RECONSTRUCTOR_ONNX, check_model_files

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuiltEngine:
    role: str
    onnx: Path
    engine: Path
    status: str  # "reused" | "built"


def build_engines(
    model_dir: str | Path,
    precision: str = DEFAULT_PRECISION,
    max_hands: int = DEFAULT_MAX_BATCH,
    device: str = "cuda",
    detector: bool = True,
    rebuild: bool = False,
    prune: bool = False,
) -> list[BuiltEngine]:
    """Engines for the reconstructor (batch 1..max_hands) and, when present, the detector (one image
    per call, as the pipeline runs it)."""
    model_dir = Path(model_dir)
    recon = model_dir / RECONSTRUCTOR_ONNX.default_name
    check_model_files([(recon, RECONSTRUCTOR_ONNX)])
    info = query_device_info(device)
    jobs: list[tuple[str, Path, CachedEngine]] = [
        ("reconstructor", recon, reconstructor_engine(recon, info, precision, max_hands, rebuild=rebuild))
    ]
    det_path = model_dir / DETECTOR_ONNX.default_name
    if detector and det_path.is_file():
        jobs.append(("detector", det_path, detector_engine(det_path, info, precision, rebuild=rebuild)))
    built = []
    for role, onnx_path, engine in jobs:
        paths = engine.paths
        built.append(BuiltEngine(role, onnx_path, paths.engine, "built" if engine.built else "reused"))
        if prune:
            for old in stale_engines(paths.engine.parent, onnx_path.stem, keep=[paths.engine]):
                LOG.info("removing old engine %s", old)
                old.unlink()
                old.with_suffix(SIDECAR_SUFFIX).unlink(missing_ok=True)
    return built
