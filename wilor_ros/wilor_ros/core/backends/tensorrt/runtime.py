"""TensorRT and CUDA access (clear errors when either is missing) and one engine run on torch tensors."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from wilor_ros.core.backends.base import TensorSpec
from wilor_ros.core.backends.tensorrt.cache import DeviceInfo

if TYPE_CHECKING:
    import torch

LOG = logging.getLogger(__name__)

INSTALL_HINT = (
    "install TensorRT's Python package matching your CUDA driver, e.g. `pip install tensorrt-cu12` "
    "(or tensorrt-cu13; on Jetson use JetPack's python3-libnvinfer) and a CUDA build of torch; "
    "or use backend 'onnxruntime'"
)


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
        raise RuntimeError(
            f"TensorRT runs on a CUDA GPU; got device={device!r}: use device 'cuda' or 'cuda:N', or backend "
            "'onnxruntime' or 'pytorch' on the CPU"
        )
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


@dataclass(frozen=True)
class TrtTensorInfo:
    name: str
    is_input: bool
    shape: tuple[int, ...]  # -1 for dynamic axes
    dtype: str  # numpy dtype name

    @property
    def spec(self) -> TensorSpec:
        return TensorSpec(self.name, self.shape, self.dtype)


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
