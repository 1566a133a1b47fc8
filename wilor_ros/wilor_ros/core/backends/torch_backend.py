"""PyTorch runtime of the reconstructor (our own WiLoR implementation).

Options, all off by default except what the config asks for (PipelineConfig / TorchOptions):
* precision fp32 | bf16 | fp16: the mixed recipe of ``WiLoR.set_compute_dtype`` (ViT matrix work in half,
  LayerNorm/softmax/residual/6D/refinement/MANO in float32). bf16 runs on CUDA and on CPUs with bf16
  matrix instructions (core/models/cpu_features.py); fp16 on CUDA only.
* torch_compile: the network through ``torch.compile`` (inductor), compiled at construction.
* cuda_graphs: one captured CUDA graph per batch size 1..max_batch, replayed with the crops copied into
  its static input (no per-kernel launch cost); larger batches run without a graph.
* weight_loading memory | mmap and lock_weights: how the CPU weights are held (core/models/reconstructor.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from wilor_ros.core.backends.base import ReconstructorBackend, ReconstructorOutput, check_crops
from wilor_ros.core.backends.registry import BACKENDS
from wilor_ros.core.hand.constants import CROP_SIZE
from wilor_ros.core.models.wilor import WiLoR

LOG = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# eager runs before a capture: cuBLAS/cuDNN pick and allocate their workspaces outside the graph
CAPTURE_WARMUP_RUNS = 2

ForwardFn = Callable[[torch.Tensor], tuple[torch.Tensor, ...]]


@dataclass(frozen=True)
class TorchOptions:
    """How the PyTorch backend runs the network (see the module docstring)."""

    precision: str = "fp32"
    torch_compile: bool = False
    cuda_graphs: bool = False
    max_batch: int = 4  # CUDA graphs are captured for batch sizes 1..max_batch
    weight_loading: str = "memory"
    lock_weights: bool = False


def official_outputs(out: dict) -> tuple[torch.Tensor, ...]:
    """The official forward dictionary -> tensors in ReconstructorOutput field order."""
    mano = out["pred_mano_params"]
    batch = out["pred_cam"].shape[0]
    return (
        out["pred_cam"],
        mano["global_orient"].reshape(batch, 3, 3),  # B x 1 x 3 x 3 -> B x 3 x 3
        mano["hand_pose"],
        mano["betas"],
        out["pred_keypoints_3d"],
        out["pred_vertices"],
        out["pred_keypoints_2d"],
        out["pred_cam_t"],
    )


class OutputTuple(torch.nn.Module):
    """The reconstructor with its outputs as a flat tuple, in ReconstructorOutput field order: what
    torch.compile, CUDA graphs and the ONNX export (tools/export.py) trace."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return official_outputs(self.model(crops))


def compile_forward(module: torch.nn.Module, device: torch.device) -> ForwardFn:
    """``torch.compile`` (inductor) of ``module``; the compilation itself happens on the first calls.

    On the CPU inductor's freezing is switched on: it folds the (inference-only) weights into the graph
    as constants and pre-packs them for oneDNN, which is where the CPU speed-up comes from.
    """
    if device.type == "cpu":
        import torch._inductor.config as inductor_config

        check_cpp_compiler()
        inductor_config.freezing = True
    # dynamic=None: batch 1 is compiled static; a second batch size recompiles once with a dynamic batch
    # dimension that then serves the other sizes (TorchBackend.warmup_batches says which are compiled)
    return torch.compile(module, backend="inductor", dynamic=None)


def check_cpp_compiler() -> None:
    """Fail now, clearly, when inductor has no C++ compiler for its CPU kernels (it would otherwise fail
    only after tracing the whole network, on the first call)."""
    try:
        from torch._inductor.cpp_builder import get_cpp_compiler
    except ImportError:  # a torch without this helper: the compile itself reports the problem
        return
    try:
        get_cpp_compiler()
    except Exception as exc:  # InvalidCxxCompiler, or whatever the lookup raises
        raise compile_error(exc, torch.device("cpu")) from exc


def compile_error(exc: Exception, device: torch.device) -> RuntimeError:
    """A RuntimeError saying what torch.compile needs, with the original error's first line."""
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    needs = (
        "a working C++ compiler (g++ or clang++ on PATH, or CXX=/path/to/compiler) and the Python headers"
        if device.type == "cpu"
        else "Triton with a working CUDA toolchain for this GPU"
    )
    return RuntimeError(
        f"torch.compile (inductor) failed on {device}: {type(exc).__name__}: {first}. Compiling needs "
        f"{needs}; set torch_compile to false to run the network eagerly"
    )


class CudaGraphs:
    """One CUDA graph per batch size, captured on first use (or by ``capture``) and replayed after.

    All graphs share one memory pool: each replay's outputs are read (copied to the host) before the next
    replay, so a later graph may reuse an earlier one's intermediate memory.
    """

    def __init__(self, forward: ForwardFn, device: torch.device, max_batch: int) -> None:
        if device.type != "cuda":
            raise ValueError(f"cuda_graphs needs a CUDA device, got {device}; set cuda_graphs to false")
        self.forward = forward
        self.device = device
        self.max_batch = max_batch
        self.pool = torch.cuda.graph_pool_handle()
        # batch -> (graph, static input B x 3 x 256 x 256, static outputs)
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, tuple[torch.Tensor, ...]]] = {}

    def capture(self, batch: int) -> None:
        static_input = torch.zeros((batch, 3, CROP_SIZE, CROP_SIZE), device=self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(CAPTURE_WARMUP_RUNS):
                self.forward(static_input)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            static_output = self.forward(static_input)
        self.graphs[batch] = (graph, static_input, static_output)
        LOG.info("captured the reconstructor's CUDA graph for batch %d", batch)

    def __call__(self, crops: torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch = crops.shape[0]
        if batch > self.max_batch:  # beyond the captured sizes: a plain launch, same results
            return self.forward(crops)
        if batch not in self.graphs:
            self.capture(batch)
        graph, static_input, static_output = self.graphs[batch]
        static_input.copy_(crops)
        graph.replay()
        return static_output


class TorchBackend(ReconstructorBackend):
    """Runs a reconstructor nn.Module (from ``load_reconstructor``) on CPU or CUDA."""

    name = "pytorch"
    supports_device_input = BACKENDS[name].device_input

    def __init__(
        self,
        model: WiLoR,
        device: str = "cpu",
        synthetic: bool = False,
        options: TorchOptions | None = None,
    ) -> None:
        self.model = model.eval()
        self.device = torch.device(device)
        self.synthetic = synthetic
        self.options = options or TorchOptions()
        self.faces = np.asarray(model.mano.faces, dtype=np.int64)
        if self.options.max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {self.options.max_batch}")
        wrapped = OutputTuple(self.model).eval()
        self._forward: ForwardFn = wrapped
        if self.options.torch_compile:
            self._forward = compile_forward(wrapped, self.device)
        if self.options.cuda_graphs:
            self._forward = CudaGraphs(self._forward, self.device, self.options.max_batch)
        #: seconds ``warmup`` spent compiling / capturing at construction (0 when neither is on)
        self.warmup_seconds = 0.0
        if self.options.torch_compile or self.options.cuda_graphs:
            self.warmup_seconds = self.warmup()

    @classmethod
    def from_files(
        cls,
        checkpoint: str | Path,
        mano: str | Path,
        device: str = "cpu",
        precision: str = "fp32",
        options: TorchOptions | None = None,
    ) -> TorchBackend:
        """Load the checkpoint and build the backend. ``options.precision`` wins over ``precision``
        when ``options`` is given."""
        from wilor_ros.core.models.reconstructor import load_reconstructor

        options = options or TorchOptions(precision=precision)
        if options.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {options.precision!r}")
        if options.cuda_graphs and not str(device).startswith("cuda"):
            raise ValueError(
                f"cuda_graphs needs a CUDA device (got device={device!r}); set cuda_graphs to false"
            )
        model = load_reconstructor(
            checkpoint,
            mano,
            device=device,
            dtype=PRECISIONS[options.precision],
            weight_loading=options.weight_loading,
            lock_weights=options.lock_weights,
        )
        return cls(model, device=device, synthetic=model.synthetic, options=options)

    def warmup_batches(self) -> list[int]:
        """Batch sizes ``warmup`` runs: every captured size for CUDA graphs. For compile alone 1, 2 and
        max_batch: the static batch-1 graph, the dynamic-batch graph, and the largest batch, because the
        dynamic graph can carry an upper bound (torch 2.13 on the CPU: 2 <= B <= 15, from the convolution's
        shape rules) beyond which a third compilation would otherwise hit a live frame."""
        if self.options.cuda_graphs:
            return list(range(1, self.options.max_batch + 1))
        return sorted({1, min(2, self.options.max_batch), self.options.max_batch})

    @torch.inference_mode()
    def warmup(self) -> float:
        """Compile / capture now, not on live frames: one call per size of ``warmup_batches``.

        Returns the seconds it took. A failing compilation raises RuntimeError saying what is missing.
        """
        start = time.perf_counter()
        for batch in self.warmup_batches():
            crops = torch.zeros((batch, 3, CROP_SIZE, CROP_SIZE), device=self.device)
            try:
                self._forward(crops)
            except Exception as exc:
                if self.options.torch_compile and _is_compile_failure(exc):
                    raise compile_error(exc, self.device) from exc
                raise
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        seconds = time.perf_counter() - start
        LOG.info(
            "reconstructor warm-up (compile=%s, cuda_graphs=%s, batches %s): %.1f s",
            self.options.torch_compile,
            self.options.cuda_graphs,
            self.warmup_batches(),
            seconds,
        )
        return seconds

    @torch.inference_mode()
    def infer(self, crops: np.ndarray) -> ReconstructorOutput:
        crops = check_crops(crops)
        if crops.shape[0] == 0:
            return ReconstructorOutput.empty()
        x = torch.from_numpy(crops).to(self.device, non_blocking=True)
        return self.infer_tensor(x)

    @torch.inference_mode()
    def infer_tensor(self, crops: torch.Tensor) -> ReconstructorOutput:
        """crops: B x 3 x 256 x 256 float32 tensor already on the model's device."""
        if crops.shape[0] == 0:
            return ReconstructorOutput.empty()
        tensors = self._forward(crops)
        return ReconstructorOutput(*(t.float().cpu().numpy() for t in tensors))


def _is_compile_failure(exc: Exception) -> bool:
    """True for errors raised by dynamo/inductor (not by the network itself, e.g. a bad input)."""
    module = type(exc).__module__
    return module.startswith(("torch._dynamo", "torch._inductor")) or "Compile" in type(exc).__name__
