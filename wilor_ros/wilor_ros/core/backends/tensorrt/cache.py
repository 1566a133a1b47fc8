"""The engine cache: which serialized engine fits this GPU, TensorRT, precision, batch and ONNX file.

Layout (next to the ONNX files)::

    <model_dir>/engines/<stem>-<key>.engine     serialized engine
    <model_dir>/engines/<stem>-<key>.json       sidecar: the key fields, I/O tensors, build time
    <model_dir>/engines/timing-<gpu>-trt<ver>.cache   TensorRT timing cache (reused by every build)

The key covers everything that makes an engine unusable elsewhere: GPU name, compute capability,
TensorRT version, precision, max batch, the sha256 of the ONNX file and of its external-data side
file (``wilor.onnx.data``, see core/files/onnx_files.py) and our build recipe version. An engine whose
sidecar is missing, unreadable or disagrees with the wanted key is rebuilt on first use; otherwise it
is reused. The key and file logic are pure functions of a :class:`DeviceInfo`, so they are tested
without a GPU (test_tensorrt.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from wilor_ros.core.backends.registry import BACKENDS

ENGINE_DIR_NAME = "engines"
ENGINE_SUFFIX = ".engine"
SIDECAR_SUFFIX = ".json"
# Bump when the build recipe changes (precision scopes, flags): old engines then count as stale.
RECIPE_VERSION = 1
TRT_PRECISIONS = BACKENDS["tensorrt"].precisions


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


def atomic_write(path: Path, data: bytes) -> None:
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
    atomic_write(paths.engine, bytes(engine_bytes))
    sidecar = {
        "key": key.as_dict(),
        "onnx": str(Path(onnx_path).resolve()),
        "engine_bytes": len(engine_bytes),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **(extra or {}),
    }
    atomic_write(paths.sidecar, json.dumps(sidecar, indent=2).encode())


def stale_engines(engine_dir: str | Path, stem: str, keep: Sequence[Path] = ()) -> list[Path]:
    """Engines of the ONNX ``stem`` in ``engine_dir`` other than ``keep`` (for pruning old builds)."""
    folder = Path(engine_dir)
    if not folder.is_dir():
        return []
    kept = {Path(p).resolve() for p in keep}
    pattern = re.compile(rf"^{re.escape(stem)}-.+-b\d+-[0-9a-f]{{12}}{re.escape(ENGINE_SUFFIX)}$")
    return sorted(p for p in folder.iterdir() if pattern.match(p.name) and p.resolve() not in kept)
