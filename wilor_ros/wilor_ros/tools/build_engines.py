"""``wilor-ros build-engines``: build (or reuse) the TensorRT engines of a model folder ahead of time.

Building takes minutes for the full model, so a robot should not do it on its first frame: run this
once per machine (engines are specific to the GPU, TensorRT version, precision and max batch; see
core/backends/tensorrt_backend.py for the cache layout).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from wilor_ros.core.backends import tensorrt_backend as trtb
from wilor_ros.core.model_files import DETECTOR_ONNX, RECONSTRUCTOR_ONNX, check_model_files
from wilor_ros.core.onnx_files import model_sha256

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuiltEngine:
    role: str
    onnx: Path
    engine: Path
    status: str  # "reused" | "built"


def build_engines(
    model_dir: str | Path,
    precision: str = trtb.DEFAULT_PRECISION,
    max_hands: int = trtb.DEFAULT_MAX_BATCH,
    device: str = "cuda",
    detector: bool = True,
    rebuild: bool = False,
    prune: bool = False,
) -> list[BuiltEngine]:
    """Engines for the reconstructor (batch 1..max_hands) and, when present, the detector (batch 1)."""
    model_dir = Path(model_dir)
    recon = model_dir / RECONSTRUCTOR_ONNX.default_name
    check_model_files([(recon, RECONSTRUCTOR_ONNX)])
    info = trtb.query_device_info(device)
    jobs = [
        (
            "reconstructor",
            recon,
            max_hands,
            trtb.reconstructor_profile(max_hands),
            trtb.RECONSTRUCTOR_FP16_SCOPES,
        )
    ]
    det_path = model_dir / DETECTOR_ONNX.default_name
    if detector and det_path.is_file():
        from wilor_ros.core.detector import OnnxHandDetector

        probe = OnnxHandDetector(det_path, providers=["CPUExecutionProvider"])
        batch = 1 if probe.static_batch is None else probe.static_batch
        profile = trtb.detector_profile(probe.input_spec()[0].name, probe.imgsz, batch, probe.dynamic_hw)
        probe.close()
        jobs.append(("detector", det_path, batch, profile, None))
    built = []
    for role, onnx_path, batch, profile, scopes in jobs:
        key = trtb.EngineKey(info, precision, batch, model_sha256(onnx_path))
        paths = trtb.engine_paths(onnx_path, key)
        usable, _ = trtb.engine_status(paths, key)
        trtb.ensure_engine(onnx_path, info, precision, batch, profile, rebuild=rebuild, fp16_scopes=scopes)
        built.append(
            BuiltEngine(role, onnx_path, paths.engine, "reused" if usable and not rebuild else "built")
        )
        if prune:
            for old in trtb.stale_engines(paths.engine.parent, onnx_path.stem, keep=[paths.engine]):
                LOG.info("removing old engine %s", old)
                old.unlink()
                old.with_suffix(trtb.SIDECAR_SUFFIX).unlink(missing_ok=True)
    return built
