"""TensorRT runtime: engines built from our ONNX files, cached per GPU, run with the tensor API.

Layout of the engine cache (next to the ONNX files)::

    <model_dir>/engines/<stem>-<key>.engine     serialized engine
    <model_dir>/engines/<stem>-<key>.json       sidecar: the key fields, I/O tensors, build time
    <model_dir>/engines/timing-<gpu>-trt<ver>.cache   TensorRT timing cache (reused by every build)

The key covers everything that makes an engine unusable elsewhere: GPU name, compute capability,
TensorRT version, precision, max batch, the sha256 of the ONNX file and of its external-data side
file (``wilor.onnx.data``, see core/onnx_files.py) and our build recipe version. An engine whose
sidecar is missing, unreadable or disagrees with the wanted key is rebuilt on first use; otherwise it
is reused. The key and file logic are pure functions of a :class:`DeviceInfo`, so they
are tested without a GPU (test_tensorrt.py).

Precision (the documented choice): **strongly typed networks with a mixed-precision ONNX**.
TensorRT 11 removed weak typing (BuilderFlag.FP16, layer.precision, OBEY_PRECISION_CONSTRAINTS;
facts: TensorRT "Migrating from 10.x to 11.x", docs.nvidia.com), and TensorRT 10 already supports
NetworkDefinitionCreationFlag.STRONGLY_TYPED, so one path serves both: for ``fp16`` we rewrite the
float32 ONNX into a mixed graph (:func:`make_mixed_precision_onnx`; inputs/outputs stay float32)
converting only the ViT blocks and the patch embedding, where nearly all FLOPs are, and keeping LayerNorm and
softmax inside them in float32; the token embeddings, the decoders with the 6D -> rotation
conversion, the refinement net and the MANO layer stay float32 (tiny compute, precision-sensitive).
``fp32`` builds the unmodified file with TF32 disabled, so it is a true float32 reference.

Device buffers (the documented choice): torch CUDA tensors. The caching allocator owns and frees
them (no manual cudaFree paths to leak), they share torch's current stream, and crops already on
the GPU (see gpu_crop.py) are passed in without a host round trip. CUDA errors seen after a launch
are reported with their CUDA error names via cuda-python (``cuda.bindings.runtime``) when installed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from wilor_ros.core.backends.base import (
    INPUT_NAME,
    ReconstructorBackend,
    ReconstructorOutput,
    check_crops,
    decode_faces,
)
from wilor_ros.core.constants import CROP_SIZE
from wilor_ros.core.onnx_files import (
    check_external_data,
    external_data_paths,
    load_graph,
    model_sha256,
    remove_onnx,
    write_onnx,
)

if TYPE_CHECKING:
    import torch

    from wilor_ros.core.types import HandDetection

LOG = logging.getLogger(__name__)

INSTALL_HINT = (
    "install TensorRT's Python package matching your CUDA driver, e.g. `pip install tensorrt-cu12` "
    "(or tensorrt-cu13; on Jetson use JetPack's python3-libnvinfer) and a CUDA build of torch; "
    "or use backend 'onnxruntime'"
)
ENGINE_DIR_NAME = "engines"
ENGINE_SUFFIX = ".engine"
SIDECAR_SUFFIX = ".json"
# Bump when the build recipe changes (precision scopes, flags): old engines then count as stale.
RECIPE_VERSION = 1
TRT_PRECISIONS = ("fp16", "fp32")
DEFAULT_PRECISION = "fp16"
DEFAULT_MAX_BATCH = 4  # PipelineConfig.max_hands default
TYPICAL_BATCH = 2  # two hands: the optimisation profile's "opt" batch
WORKSPACE_BYTES = 4 << 30  # builder scratch limit; TensorRT uses less when it can
# ONNX node-name scopes (torch.onnx module paths) converted to fp16 in the reconstructor.
RECONSTRUCTOR_FP16_SCOPES = ("/model/backbone/blocks", "/model/backbone/patch_embed")
# ops kept float32 even inside an fp16 scope (reductions that overflow/lose precision in fp16)
FP32_OPS = ("LayerNormalization", "Softmax", "ReduceMean", "ReduceL2", "ReduceSum", "Pow", "Sqrt")
FLOAT_PARAM_INPUTS = {"Resize": (1, 2)}  # op -> input positions that must stay float32
DETECTOR_MIN_SIDE = 32  # smallest letterboxed side of the detector profile (one stride-32 cell)


# ============================================================================ pure cache logic
@dataclass(frozen=True)
class DeviceInfo:
    """What an engine is specific to (from :func:`query_device_info`, or made up in tests)."""

    gpu_name: str
    compute_capability: tuple[int, int]
    tensorrt_version: str


@dataclass(frozen=True)
class EngineKey:
    """Everything that decides whether a cached engine may be reused."""

    device: DeviceInfo
    precision: str
    max_batch: int
    onnx_sha256: str  # onnx_files.model_sha256: the graph file and its side file, if any
    recipe: int = RECIPE_VERSION

    def __post_init__(self) -> None:
        if self.precision not in TRT_PRECISIONS:
            raise ValueError(f"TensorRT precision must be one of {TRT_PRECISIONS}, got {self.precision!r}")
        if self.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.max_batch}")

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["device"]["compute_capability"] = list(self.device.compute_capability)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineKey:
        dev = data["device"]
        device = DeviceInfo(
            str(dev["gpu_name"]),
            tuple(int(v) for v in dev["compute_capability"]),
            str(dev["tensorrt_version"]),
        )
        return cls(
            device,
            str(data["precision"]),
            int(data["max_batch"]),
            str(data["onnx_sha256"]),
            int(data["recipe"]),
        )

    def slug(self) -> str:
        """File-name part: readable fields plus a short hash of the whole key (so no two keys collide)."""
        gpu = re.sub(r"[^A-Za-z0-9]+", "-", self.device.gpu_name).strip("-").lower() or "gpu"
        major, minor = self.device.compute_capability
        trt = re.sub(r"[^0-9.]+", "", self.device.tensorrt_version)
        digest = hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:12]
        return f"{gpu}-sm{major}{minor}-trt{trt}-{self.precision}-b{self.max_batch}-{digest}"


@dataclass(frozen=True)
class EnginePaths:
    engine: Path
    sidecar: Path


def default_engine_dir(onnx_path: str | Path) -> Path:
    return Path(onnx_path).parent / ENGINE_DIR_NAME


def engine_paths(onnx_path: str | Path, key: EngineKey, engine_dir: str | Path | None = None) -> EnginePaths:
    folder = Path(engine_dir) if engine_dir is not None else default_engine_dir(onnx_path)
    base = f"{Path(onnx_path).stem}-{key.slug()}"
    return EnginePaths(folder / f"{base}{ENGINE_SUFFIX}", folder / f"{base}{SIDECAR_SUFFIX}")


def timing_cache_path(engine_dir: str | Path, device: DeviceInfo) -> Path:
    """One timing cache per GPU model and TensorRT version, shared by every engine built there."""
    gpu = re.sub(r"[^A-Za-z0-9]+", "-", device.gpu_name).strip("-").lower() or "gpu"
    return Path(engine_dir) / f"timing-{gpu}-trt{device.tensorrt_version}.cache"


def engine_status(paths: EnginePaths, key: EngineKey) -> tuple[bool, str]:
    """(usable, reason): whether the cached engine at ``paths`` was built for exactly ``key``."""
    if not paths.engine.is_file():
        return False, f"no engine at {paths.engine}"
    if not paths.sidecar.is_file():
        return False, f"no sidecar {paths.sidecar.name} (interrupted build?)"
    try:
        sidecar = json.loads(paths.sidecar.read_text())
        stored = EngineKey.from_dict(sidecar["key"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return False, f"unreadable sidecar {paths.sidecar.name}: {exc}"
    if stored != key:
        wanted, have = key.as_dict(), stored.as_dict()
        changed = sorted(k for k in wanted if wanted[k] != have[k])
        return False, f"built for a different {', '.join(changed)}"
    size = sidecar.get("engine_bytes")
    if size is not None and size != paths.engine.stat().st_size:
        return False, f"engine size {paths.engine.stat().st_size} != {size} recorded (truncated?)"
    return True, "up to date"


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_engine(
    paths: EnginePaths, engine_bytes: bytes, key: EngineKey, onnx_path: str | Path, extra: dict | None = None
) -> None:
    """Write the engine, then its sidecar (each atomically): a crash leaves no sidecar, i.e. a stale entry."""
    paths.engine.parent.mkdir(parents=True, exist_ok=True)
    if paths.sidecar.exists():
        paths.sidecar.unlink()
    _atomic_write(paths.engine, bytes(engine_bytes))
    sidecar = {
        "key": key.as_dict(),
        "onnx": str(Path(onnx_path).resolve()),
        "engine_bytes": len(engine_bytes),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }
    _atomic_write(paths.sidecar, json.dumps(sidecar, indent=2).encode())


def stale_engines(engine_dir: str | Path, stem: str, keep: Sequence[Path] = ()) -> list[Path]:
    """Engines of the ONNX ``stem`` in ``engine_dir`` other than ``keep`` (for pruning old builds)."""
    folder = Path(engine_dir)
    if not folder.is_dir():
        return []
    kept = {Path(p).resolve() for p in keep}
    pattern = re.compile(rf"^{re.escape(stem)}-.+-b\d+-[0-9a-f]{{12}}{re.escape(ENGINE_SUFFIX)}$")
    return sorted(p for p in folder.iterdir() if pattern.match(p.name) and p.resolve() not in kept)


# ============================================================================ mixed precision ONNX
def fp16_node_filter(scopes: Sequence[str] | None) -> Callable[[Any], bool]:
    """Predicate over ONNX nodes: True = convert to fp16. ``scopes`` None = every node."""

    def convert(node: Any) -> bool:
        if node.op_type in FP32_OPS:
            return False
        return scopes is None or any(node.name.startswith(scope) for scope in scopes)

    return convert


def make_mixed_precision_onnx(
    onnx_path: str | Path, out_path: str | Path, scopes: Sequence[str] | None = RECONSTRUCTOR_FP16_SCOPES
) -> dict[str, int]:
    """Write an fp16/fp32 mixed copy of ``onnx_path`` (float32 graph inputs/outputs kept) -> node counts.

    Nodes accepted by :func:`fp16_node_filter` compute in float16: their float initializers and float
    Constant values become float16 (a copy when an fp32 node shares the initializer), Cast-to-float
    inside the region becomes Cast-to-float16, and Cast nodes are inserted where float tensors cross the
    region's border (one per tensor and direction). Everything else is untouched float32.

    Written here rather than with onnxconverter-common's float16 converter because that converter (1.16)
    produced type-inconsistent graphs on our export (it dropped the backbone's input Cast and left shared
    Identity'd weights float32 in front of fp16 Convs); this rewrite is small because our fp16 region is
    one contiguous block. The result is checked with ONNX's strict type inference.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    source_dir = Path(onnx_path).parent
    model = load_graph(onnx_path)  # external weights (wilor.onnx.data) are read only where converted
    external = bool(external_data_paths(onnx_path, model))  # the copy keeps the source's layout
    graph = model.graph
    if any(i.type.tensor_type.elem_type == TensorProto.FLOAT16 for i in graph.input):
        # already a half-precision export (e.g. ultralytics half=True): build it as it is
        write_onnx(model, out_path, source_dir=source_dir, external_data=external)
        return {"fp16_nodes": len(graph.node), "fp32_nodes": 0}
    inferred = onnx.shape_inference.infer_shapes(model)
    elem_type = {v.name: v.type.tensor_type.elem_type for v in (*inferred.graph.value_info, *graph.input)}
    inits = {t.name: t for t in graph.initializer}
    for name, tensor in inits.items():
        elem_type[name] = tensor.data_type
    # inputs that stay float32 whatever the data type (e.g. Resize's roi and scales)
    float_params = {
        n.input[k] for n in graph.node for k in FLOAT_PARAM_INPUTS.get(n.op_type, ()) if k < len(n.input)
    }
    convert = fp16_node_filter(scopes)
    region = [n for n in graph.node if convert(n) and not (set(n.output) & float_params)]
    if not region:
        raise ValueError(f"{onnx_path}: no node lies in the fp16 scopes {scopes}; is this our export?")
    region_ids = {id(n) for n in region}
    produced_in_region = {o for n in region for o in n.output}
    users_outside = {i for n in graph.node if id(n) not in region_ids for i in n.input}
    users_outside |= {o.name for o in graph.output}

    new_inits: list[TensorProto] = []
    casts_in: dict[str, str] = {}  # fp32 tensor -> its fp16 copy
    nodes_before: list[TensorProto] = []

    def half_name(name: str) -> str:
        if name not in casts_in:
            casts_in[name] = f"{name}__fp16"
            if name in inits and name not in users_outside:
                tensor = numpy_helper.from_array(
                    numpy_helper.to_array(inits[name], str(source_dir)).astype(np.float16), casts_in[name]
                )
                new_inits.append(tensor)
            else:
                nodes_before.append(
                    helper.make_node(
                        "Cast", [name], [casts_in[name]], name=f"{name}__to_fp16", to=TensorProto.FLOAT16
                    )
                )
        return casts_in[name]

    for node in region:
        for k, name in enumerate(node.input):
            if k in FLOAT_PARAM_INPUTS.get(node.op_type, ()):
                continue
            if name and name not in produced_in_region and elem_type.get(name) == TensorProto.FLOAT:
                node.input[k] = half_name(name)
        if node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == TensorProto.FLOAT:
                    attr.i = TensorProto.FLOAT16
        if node.op_type in ("Constant", "ConstantOfShape"):
            for attr in node.attribute:
                if attr.name in ("value_float", "value_floats"):
                    raise ValueError(
                        f"{onnx_path}: Constant {node.name} uses {attr.name}; not supported here"
                    )
                if attr.name == "value" and attr.t.data_type == TensorProto.FLOAT:
                    attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16)))
    # region outputs read outside: rename the fp16 producer output, cast back under the old name
    nodes_after = []
    for node in region:
        for k, name in enumerate(node.output):
            if name in users_outside and elem_type.get(name) == TensorProto.FLOAT:
                node.output[k] = f"{name}__fp16out"
                nodes_after.append(
                    helper.make_node(
                        "Cast", [node.output[k]], [name], name=f"{name}__to_fp32", to=TensorProto.FLOAT
                    )
                )
    renamed = {c.input[0][: -len("__fp16out")]: c.input[0] for c in nodes_after}
    for node in region:  # region readers of a renamed output keep reading the fp16 tensor
        for k, name in enumerate(node.input):
            if name in renamed:
                node.input[k] = renamed[name]
    # keep a topological order: every inserted Cast right after the producer of what it reads
    # (casts of graph inputs and initializers first)
    inserted = nodes_before + nodes_after
    produced = {o for n in graph.node for o in n.output}
    ordered = [c for c in inserted if c.input[0] not in produced]
    after_input = {}
    for cast in inserted:
        after_input.setdefault(cast.input[0], []).append(cast)
    for node in graph.node:
        ordered.append(node)
        for out in node.output:
            ordered += after_input.get(out, [])
    del graph.node[:]
    graph.node.extend(ordered)
    graph.initializer.extend(new_inits)
    new_inits.clear()  # extend copied them: do not hold the fp16 weights twice
    unused = (
        {t.name for t in graph.initializer}
        - {i for n in graph.node for i in n.input}
        - {i.name for i in graph.input}
    )
    kept = [t for t in graph.initializer if t.name not in unused]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.value_info[:]
    counts = {"fp16_nodes": len(region), "fp32_nodes": len(graph.node) - len(region)}
    write_onnx(model, out_path, source_dir=source_dir, external_data=external)
    onnx.checker.check_model(str(out_path))  # by path: works for any size, checks the side file
    onnx.shape_inference.infer_shapes(load_graph(out_path), check_type=True, strict_mode=True)
    return counts


# ============================================================================ TensorRT / CUDA access
def import_tensorrt() -> Any:
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise RuntimeError(f"TensorRT is not installed: {INSTALL_HINT}") from exc
    major = int(trt.__version__.split(".")[0])
    if major < 10:
        raise RuntimeError(
            f"TensorRT {trt.__version__} is too old: the tensor API here needs >= 10 ({INSTALL_HINT})"
        )
    return trt


def cuda_device(device: str) -> torch.device:
    """'cuda' / 'cuda:N' -> torch.device, with a clear error when no GPU is usable."""
    import torch

    if not str(device).startswith("cuda"):
        raise RuntimeError(f"TensorRT runs on a CUDA GPU; got device={device!r} (use 'cuda' or 'cuda:N')")
    if not torch.cuda.is_available():
        raise RuntimeError(
            "TensorRT needs a CUDA GPU, but torch sees none (no NVIDIA driver, CPU-only torch, or "
            "CUDA_VISIBLE_DEVICES hides it); use backend 'onnxruntime' or 'pytorch' on the CPU"
        )
    dev = torch.device(device)
    return torch.device("cuda", torch.cuda.current_device() if dev.index is None else dev.index)


def query_device_info(device: str = "cuda") -> DeviceInfo:
    """The DeviceInfo of a real GPU (needs torch with CUDA and TensorRT)."""
    import torch

    trt = import_tensorrt()
    dev = cuda_device(device)
    return DeviceInfo(
        torch.cuda.get_device_name(dev), tuple(torch.cuda.get_device_capability(dev)), trt.__version__
    )


def check_cuda_stream(stream_handle: int, what: str) -> None:
    """Synchronise the stream and raise RuntimeError naming the CUDA error, if any."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:  # cuda-python absent: torch reports the error (with its description)
        import torch

        try:
            torch.cuda.current_stream().synchronize()
        except RuntimeError as exc:
            raise RuntimeError(f"CUDA error during {what}: {exc}") from exc
        return
    (err,) = cudart.cudaStreamSynchronize(stream_handle)
    if err != cudart.cudaError_t.cudaSuccess:
        _, name = cudart.cudaGetErrorName(err)
        _, text = cudart.cudaGetErrorString(err)
        raise RuntimeError(f"CUDA error during {what}: {name.decode()} ({text.decode()})")


class _TrtLogger:
    """A TensorRT ILogger forwarding to Python logging (made lazily: trt is optional)."""

    @staticmethod
    def make(trt: Any) -> Any:
        class Logger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity: Any, msg: str) -> None:
                level = {
                    trt.ILogger.INTERNAL_ERROR: logging.ERROR,
                    trt.ILogger.ERROR: logging.ERROR,
                    trt.ILogger.WARNING: logging.WARNING,
                    trt.ILogger.INFO: logging.DEBUG,
                }.get(severity, logging.DEBUG)
                LOG.log(level, "TensorRT: %s", msg)

        return Logger()


_LOGGER: Any = None


def trt_logger(trt: Any) -> Any:
    global _LOGGER
    if _LOGGER is None:
        _LOGGER = _TrtLogger.make(trt)
    return _LOGGER


# ============================================================================ building
@dataclass(frozen=True)
class ProfileShape:
    """One input's optimisation-profile shapes (min / opt / max)."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


def reconstructor_profile(max_batch: int) -> list[ProfileShape]:
    """Batch 1..max_batch, tuned for two hands."""
    tail = (3, CROP_SIZE, CROP_SIZE)
    opt = min(TYPICAL_BATCH, max_batch)
    return [ProfileShape(INPUT_NAME, (1, *tail), (opt, *tail), (max_batch, *tail))]


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
        _atomic_write(timing_cache, bytes(config.get_timing_cache().serialize()))
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
) -> EnginePaths:
    """The cached engine for these settings, built first when missing or stale."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise RuntimeError(f"ONNX file not found: {onnx_path} (make it with `wilor-ros export`)")
    check_external_data(onnx_path)
    key = EngineKey(device_info, precision, int(max_batch), model_sha256(onnx_path))
    paths = engine_paths(onnx_path, key, engine_dir)
    usable, reason = engine_status(paths, key)
    if usable and not rebuild:
        LOG.info("reusing TensorRT engine %s", paths.engine)
        return paths
    LOG.info("building TensorRT engine %s (%s)", paths.engine.name, "forced" if rebuild else reason)
    folder = paths.engine.parent
    engine = build_engine(
        onnx_path, profile, precision, timing_cache_path(folder, device_info), fp16_scopes, scratch_dir=folder
    )
    profile_info = [asdict(p) for p in profile]
    write_engine(paths, engine, key, onnx_path, {"profile": profile_info})
    return paths


# ============================================================================ running
@dataclass(frozen=True)
class TrtTensorInfo:
    name: str
    is_input: bool
    shape: tuple[int, ...]  # -1 for dynamic axes
    dtype: str  # numpy dtype name


@dataclass
class TensorRTEngineRunner:
    """One deserialized engine + execution context on one GPU; I/O as torch CUDA tensors."""

    engine_path: Path
    device: str = "cuda"
    tensors: list[TrtTensorInfo] = field(default_factory=list)

    def __post_init__(self) -> None:
        import torch

        trt = import_tensorrt()
        self._torch_device = cuda_device(self.device)
        self._trt = trt
        with torch.cuda.device(self._torch_device):
            self._runtime = trt.Runtime(trt_logger(trt))
            self._engine = self._runtime.deserialize_cuda_engine(Path(self.engine_path).read_bytes())
            if self._engine is None:
                raise RuntimeError(
                    f"TensorRT could not load {self.engine_path} (built by another TensorRT/GPU?); delete it "
                    "and run `wilor-ros build-engines`"
                )
            self._context = self._engine.create_execution_context()
        self.tensors = []
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            info = TrtTensorInfo(
                name,
                self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                tuple(self._engine.get_tensor_shape(name)),
                np.dtype(trt.nptype(self._engine.get_tensor_dtype(name))).name,
            )
            kind = "input " if info.is_input else "output"
            LOG.info("engine %s %-16s shape %s dtype %s", kind, info.name, info.shape, info.dtype)
            self.tensors.append(info)

    @property
    def inputs(self) -> list[TrtTensorInfo]:
        return [t for t in self.tensors if t.is_input]

    @property
    def outputs(self) -> list[TrtTensorInfo]:
        return [t for t in self.tensors if not t.is_input]

    def profile_shape(self, name: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(min, opt, max) of an input in profile 0."""
        shapes = self._engine.get_tensor_profile_shape(name, 0)
        return tuple(tuple(s) for s in shapes)  # type: ignore[return-value]

    def run(self, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """inputs: name -> CUDA tensor (converted to the engine's dtype, made contiguous) -> outputs."""
        import torch

        if not hasattr(self, "_context"):
            raise RuntimeError(f"the TensorRT engine {self.engine_path.name} was closed; load it again")

        keep = []  # inputs converted here must live until the launch has finished
        with torch.cuda.device(self._torch_device):
            stream = torch.cuda.current_stream(self._torch_device)
            for info in self.inputs:
                if info.name not in inputs:
                    raise ValueError(f"missing engine input {info.name!r}")
                x = inputs[info.name].to(self._torch_device, getattr(torch, info.dtype)).contiguous()
                keep.append(x)
                if not self._context.set_input_shape(info.name, tuple(x.shape)):
                    lo, _, hi = self.profile_shape(info.name)
                    raise ValueError(
                        f"input {info.name} shape {tuple(x.shape)} is outside the engine profile {lo}..{hi}"
                    )
                self._context.set_tensor_address(info.name, x.data_ptr())
            outputs = {}
            for info in self.outputs:
                shape = tuple(self._context.get_tensor_shape(info.name))
                out = torch.empty(shape, dtype=getattr(torch, info.dtype), device=self._torch_device)
                self._context.set_tensor_address(info.name, out.data_ptr())
                outputs[info.name] = out
            if not self._context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError(f"TensorRT execute_async_v3 failed for {self.engine_path.name}")
            check_cuda_stream(stream.cuda_stream, f"TensorRT inference ({self.engine_path.name})")
        del keep
        return outputs

    def close(self) -> None:
        # context before engine before runtime: TensorRT objects must die in this order
        for attr in ("_context", "_engine", "_runtime"):
            if hasattr(self, attr):
                delattr(self, attr)


def read_onnx_metadata(onnx_path: str | Path) -> dict[str, str]:
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


class TensorRTBackend(ReconstructorBackend):
    """The reconstructor as a TensorRT engine (outputs float32, same names as the ONNX file)."""

    name = "tensorrt"

    def __init__(
        self,
        engine_path: str | Path,
        device: str = "cuda",
        metadata: dict[str, str] | None = None,
        precision: str = DEFAULT_PRECISION,
    ):
        self.runner = TensorRTEngineRunner(Path(engine_path), device)
        self.precision = precision
        names = [t.name for t in self.runner.outputs]
        if [t.name for t in self.runner.inputs] != [INPUT_NAME] or names != list(ReconstructorOutput.names()):
            raise ValueError(
                f"{engine_path} is not a wilor_ros reconstructor engine (outputs {names}); rebuild it with "
                "`wilor-ros build-engines`"
            )
        self.max_batch = int(self.runner.profile_shape(INPUT_NAME)[2][0])
        metadata = metadata or {}
        self.synthetic = metadata.get("synthetic", "false").lower() == "true"
        self.faces = decode_faces(metadata["faces"]) if "faces" in metadata else None
        if self.synthetic:
            LOG.warning(
                "reconstructor engine %s has SYNTHETIC weights: outputs are not real hands", engine_path
            )

    @classmethod
    def from_onnx(
        cls,
        onnx_path: str | Path,
        device: str = "cuda",
        precision: str = DEFAULT_PRECISION,
        max_batch: int = DEFAULT_MAX_BATCH,
        engine_dir: str | Path | None = None,
        rebuild: bool = False,
    ) -> TensorRTBackend:
        """Build (first use) or reuse the cached engine of ``onnx_path`` and load it."""
        if precision not in TRT_PRECISIONS:
            raise ValueError(f"TensorRT precision must be one of {TRT_PRECISIONS}, got {precision!r}")
        info = query_device_info(device)
        paths = ensure_engine(
            onnx_path, info, precision, max_batch, reconstructor_profile(max_batch), engine_dir, rebuild
        )
        return cls(paths.engine, device, read_onnx_metadata(onnx_path), precision)

    def infer(self, crops: np.ndarray) -> ReconstructorOutput:
        import torch

        crops = check_crops(crops)
        if crops.shape[0] == 0:
            return ReconstructorOutput.empty()
        return self.infer_tensor(torch.from_numpy(crops))

    def infer_tensor(self, crops: torch.Tensor) -> ReconstructorOutput:
        """crops: B x 3 x 256 x 256 tensor (on the GPU for the fast path); batches above the engine's
        max batch run in chunks."""
        if crops.ndim != 4 or tuple(crops.shape[1:]) != (3, CROP_SIZE, CROP_SIZE):
            raise ValueError(
                f"crops must be B x 3 x {CROP_SIZE} x {CROP_SIZE}, got shape {tuple(crops.shape)}"
            )
        if crops.shape[0] == 0:
            return ReconstructorOutput.empty()
        parts: dict[str, list[np.ndarray]] = {n: [] for n in ReconstructorOutput.names()}
        for start in range(0, crops.shape[0], self.max_batch):
            out = self.runner.run({INPUT_NAME: crops[start : start + self.max_batch]})
            for name in parts:
                parts[name].append(out[name].float().cpu().numpy())
        return ReconstructorOutput(**{n: np.concatenate(v) for n, v in parts.items()})

    def close(self) -> None:
        self.runner.close()


# ============================================================================ detector on TensorRT
def detector_profile(
    name: str, imgsz: tuple[int, int], max_batch: int, dynamic_hw: bool
) -> list[ProfileShape]:
    """Letterboxed inputs: any stride-multiple size up to imgsz when dynamic, else exactly imgsz."""
    height, width = imgsz
    if not dynamic_hw:
        return [
            ProfileShape(name, (1, 3, height, width), (1, 3, height, width), (max_batch, 3, height, width))
        ]
    return [
        ProfileShape(
            name,
            (1, 3, DETECTOR_MIN_SIDE, DETECTOR_MIN_SIDE),
            (1, 3, height, width),
            (max_batch, 3, height, width),
        )
    ]


def make_tensorrt_detector(
    onnx_path: str | Path,
    device: str = "cuda",
    precision: str = DEFAULT_PRECISION,
    max_batch: int = 1,
    engine_dir: str | Path | None = None,
    **detector_kwargs: Any,
) -> Any:
    """An OnnxHandDetector whose network runs as a TensorRT engine (same detect()/detect_batch()).

    Letterboxing, decoding and NMS are the ONNX detector's own code; only raw_predict changes.
    """
    from wilor_ros.core.detector import OnnxHandDetector

    class TensorRTHandDetector(OnnxHandDetector):
        def __init__(self) -> None:
            # The ONNX Runtime CPU session only reads the metadata and I/O signature, then is dropped.
            super().__init__(onnx_path, providers=["CPUExecutionProvider"], **detector_kwargs)
            name = self._input.name
            self.session = None
            self.max_batch = int(max_batch) if self.static_batch is None else self.static_batch
            info = query_device_info(device)
            profile = detector_profile(name, self.imgsz, self.max_batch, self.dynamic_hw)
            paths = ensure_engine(
                onnx_path, info, precision, self.max_batch, profile, engine_dir, fp16_scopes=None
            )
            self.runner = TensorRTEngineRunner(paths.engine, device)

        def raw_predict(self, tensor: np.ndarray) -> np.ndarray:
            import torch

            out = self.runner.run({self._input.name: torch.from_numpy(np.ascontiguousarray(tensor))})
            raw = out[self._output_name].float().cpu().numpy()
            if raw.ndim != 3 or raw.shape[1] != self.channels:
                raise RuntimeError(f"{self.path}: unexpected engine output shape {raw.shape}")
            return raw

        def detect_batch(self, images_rgb: Sequence[np.ndarray]) -> list[list[HandDetection]]:
            # the engine profile ends at max_batch images: larger lists run in chunks
            images = list(images_rgb)
            results: list[list[HandDetection]] = []
            for start in range(0, len(images), self.max_batch):
                results += super().detect_batch(images[start : start + self.max_batch])
            return results

        def close(self) -> None:
            self.runner.close()

    return TensorRTHandDetector()
