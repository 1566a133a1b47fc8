"""Engine builds: optimisation profiles, a strongly typed build from ONNX, build-or-reuse via the cache."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from wilor_ros.core.backends.base import INPUT_NAME
from wilor_ros.core.backends.tensorrt.cache import (
    DeviceInfo,
    EngineKey,
    EnginePaths,
    atomic_write,
    engine_paths,
    engine_status,
    timing_cache_path,
    write_engine,
)
from wilor_ros.core.backends.tensorrt.mixed_precision import (
    RECONSTRUCTOR_FP16_SCOPES,
    make_mixed_precision_onnx,
)
from wilor_ros.core.backends.tensorrt.runtime import import_tensorrt, trt_logger
from wilor_ros.core.files.onnx_files import check_external_data, model_sha256, remove_onnx
from wilor_ros.core.hand.constants import CROP_SIZE

LOG = logging.getLogger(__name__)

TYPICAL_BATCH = 2  # two hands: the optimisation profile's "opt" batch
WORKSPACE_BYTES = 4 << 30  # builder scratch limit; TensorRT uses less when it can
DETECTOR_MIN_SIDE = 32  # smallest letterboxed side of the detector profile (one stride-32 cell)


@dataclass(frozen=True)
class ProfileShape:
    """One input's optimisation-profile shapes (min / opt / max)."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class CachedEngine:
    """An engine file in the cache, and whether this call built it (False: an up-to-date one was reused)."""

    paths: EnginePaths
    built: bool


def reconstructor_profile(max_batch: int) -> list[ProfileShape]:
    """Batch 1..max_batch, tuned for two hands."""
    tail = (3, CROP_SIZE, CROP_SIZE)
    opt = min(TYPICAL_BATCH, max_batch)
    return [ProfileShape(INPUT_NAME, (1, *tail), (opt, *tail), (max_batch, *tail))]


def detector_profile(
    name: str, imgsz: tuple[int, int], max_batch: int, dynamic_hw: bool
) -> list[ProfileShape]:
    """Letterboxed images: any stride-multiple size up to imgsz (H, W) when dynamic, else exactly imgsz."""
    height, width = imgsz
    full = (1, 3, height, width)
    smallest = (1, 3, DETECTOR_MIN_SIDE, DETECTOR_MIN_SIDE) if dynamic_hw else full
    return [ProfileShape(name, smallest, full, (max_batch, 3, height, width))]


def build_engine(
    onnx_path: str | Path,
    profile: Sequence[ProfileShape],
    precision: str,
    timing_cache: Path | None = None,
    fp16_scopes: Sequence[str] | None = RECONSTRUCTOR_FP16_SCOPES,
    scratch_dir: Path | None = None,
) -> bytes:
    """Build a serialized engine from ``onnx_path`` (see the module docstring for precision)."""
    trt = import_tensorrt()
    logger = trt_logger(trt)
    source = Path(onnx_path)
    if precision == "fp16":
        source = (scratch_dir or source.parent) / f"{Path(onnx_path).stem}.mixed-fp16.onnx"
        counts = make_mixed_precision_onnx(onnx_path, source, fp16_scopes)
        LOG.info("mixed-precision ONNX %s: %s", source, counts)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)  # accepted (and implied) by 11.x
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source)):
        errors = "\n".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {source}:\n{errors}")
    for i in range(network.num_inputs):
        t = network.get_input(i)
        LOG.info("network input  %-16s shape %s dtype %s", t.name, tuple(t.shape), t.dtype)
    for i in range(network.num_outputs):
        t = network.get_output(i)
        LOG.info("network output %-16s shape %s dtype %s", t.name, tuple(t.shape), t.dtype)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if precision == "fp32" and hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32: the accuracy reference
    trt_profile = builder.create_optimization_profile()
    for shape in profile:
        trt_profile.set_shape(shape.name, shape.min, shape.opt, shape.max)
    config.add_optimization_profile(trt_profile)
    cache_bytes = timing_cache.read_bytes() if timing_cache is not None and timing_cache.is_file() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError(f"TensorRT failed to build an engine from {source} (see the TensorRT log above)")
    LOG.info("built %s engine from %s in %.1f s", precision, onnx_path, time.perf_counter() - start)
    if timing_cache is not None:
        timing_cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(timing_cache, bytes(config.get_timing_cache().serialize()))
    if source != Path(onnx_path):
        remove_onnx(source)
    return bytes(serialized)


def ensure_engine(
    onnx_path: str | Path,
    device_info: DeviceInfo,
    precision: str,
    max_batch: int,
    profile: Sequence[ProfileShape],
    engine_dir: str | Path | None = None,
    rebuild: bool = False,
    fp16_scopes: Sequence[str] | None = RECONSTRUCTOR_FP16_SCOPES,
) -> CachedEngine:
    """The cached engine for these settings, built first when missing or stale (or ``rebuild``)."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise RuntimeError(f"ONNX file not found: {onnx_path} (make it with `wilor-ros export`)")
    check_external_data(onnx_path)
    key = EngineKey(device_info, precision, int(max_batch), model_sha256(onnx_path))
    paths = engine_paths(onnx_path, key, engine_dir)
    usable, reason = engine_status(paths, key)
    if usable and not rebuild:
        LOG.info("reusing TensorRT engine %s", paths.engine)
        return CachedEngine(paths, built=False)
    LOG.info("building TensorRT engine %s (%s)", paths.engine.name, "forced" if rebuild else reason)
    folder = paths.engine.parent
    engine = build_engine(
        onnx_path, profile, precision, timing_cache_path(folder, device_info), fp16_scopes, scratch_dir=folder
    )
    profile_info = [asdict(p) for p in profile]
    write_engine(paths, engine, key, onnx_path, {"profile": profile_info})
    return CachedEngine(paths, built=True)
