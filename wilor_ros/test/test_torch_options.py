"""PyTorch backend options: torch.compile, CUDA graphs, precision on CUDA, and how bad combinations are
refused. GPU tests skip with a reason without CUDA; compiling on the CPU is marked slow."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from wilor_ros.core.backends.base import ReconstructorOutput
from wilor_ros.core.backends.torch_backend import TorchBackend, TorchOptions
from wilor_ros.core.pipeline import make_backend
from wilor_ros.core.pipeline_config import ModelPaths, PipelineConfig

torch.set_num_threads(2)
CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA GPU available")


def files(model_dir) -> tuple[str, str]:
    return str(model_dir / "wilor_final.ckpt"), str(model_dir / "MANO_RIGHT.pkl")


def crops(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 3, 256, 256)).astype(np.float32)


def max_difference(a: ReconstructorOutput, b: ReconstructorOutput) -> dict[str, float]:
    return {n: float(np.abs(getattr(a, n) - getattr(b, n)).max()) for n in ReconstructorOutput.names()}


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"backend": "onnxruntime", "torch_compile": True}, "torch_compile applies to the pytorch backend"),
        ({"backend": "onnxruntime", "cuda_graphs": True}, "cuda_graphs applies to the pytorch backend"),
        ({"backend": "pytorch", "cuda_graphs": True}, "cuda_graphs needs a CUDA device"),
        ({"weight_loading": "disk"}, "weight_loading must be one of"),
    ],
)
def test_config_refuses_bad_combinations(overrides, message):
    with pytest.raises(ValueError, match=message):
        PipelineConfig(**overrides).validate()


def test_cuda_graphs_on_cpu_is_refused_by_the_backend(synthetic_model_dir):
    with pytest.raises(ValueError, match="cuda_graphs needs a CUDA device"):
        TorchBackend.from_files(*files(synthetic_model_dir), options=TorchOptions(cuda_graphs=True))


def test_missing_cpp_compiler_is_a_clear_error(synthetic_model_dir):
    """torch.compile on the CPU without a C++ compiler: the CLI says what is missing and how to run anyway."""
    env = {**os.environ, "CXX": "/nonexistent/g++"}
    cmd = [sys.executable, "-m", "wilor_ros.tools.cli", "compare-backends", "pytorch+compile", "pytorch",
           "--model-dir", str(synthetic_model_dir), "--count", "1", "--device", "cpu"]  # fmt: skip
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "torch.compile (inductor) failed on cpu" in result.stderr
    assert "C++ compiler" in result.stderr and "set torch_compile to false" in result.stderr


def test_compile_warmup_covers_static_dynamic_and_largest_batch(synthetic_model_dir):
    model = TorchBackend.from_files(*files(synthetic_model_dir)).model
    for max_batch, expected in ((1, [1]), (3, [1, 2, 3]), (16, [1, 2, 16])):
        assert TorchBackend(model, options=TorchOptions(max_batch=max_batch)).warmup_batches() == expected


@pytest.mark.slow
def test_compiled_cpu_matches_eager(synthetic_model_dir):
    eager = TorchBackend.from_files(*files(synthetic_model_dir))
    compiled = TorchBackend.from_files(
        *files(synthetic_model_dir), options=TorchOptions(torch_compile=True, max_batch=1)
    )
    assert compiled.warmup_seconds > 0 and compiled.warmup_batches() == [1]
    x = crops(1)
    diffs = max_difference(eager.infer(x), compiled.infer(x))
    assert max(diffs.values()) < 1e-4, diffs


# ------------------------------------------------------------------ CUDA
@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_cuda_graphs_replay_equals_eager(synthetic_model_dir, precision):
    eager = TorchBackend.from_files(*files(synthetic_model_dir), device="cuda", precision=precision)
    graphs = TorchBackend.from_files(
        *files(synthetic_model_dir),
        device="cuda",
        options=TorchOptions(precision=precision, cuda_graphs=True, max_batch=3),
    )
    assert sorted(graphs._forward.graphs) == [1, 2, 3]  # type: ignore[attr-defined]
    for batch in (1, 3, 2, 5):  # 5 > max_batch runs without a graph
        x = crops(batch, seed=batch)
        diffs = max_difference(eager.infer(x), graphs.infer(x))
        assert max(diffs.values()) < 1e-5, (batch, diffs)


@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_half_precision_within_a_few_mm_of_fp32(synthetic_model_dir, precision):
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    reference = TorchBackend.from_files(*files(synthetic_model_dir), device="cuda")
    half = TorchBackend.from_files(*files(synthetic_model_dir), device="cuda", precision=precision)
    x = crops(4)
    vertex_mm = np.abs(reference.infer(x).vertices - half.infer(x).vertices) * 1000
    assert vertex_mm.mean() < 1.0 and vertex_mm.max() < 5.0, (vertex_mm.mean(), vertex_mm.max())


@needs_cuda
@pytest.mark.gpu
@pytest.mark.slow
def test_compiled_cuda_graphs_match_eager(synthetic_model_dir):
    config = PipelineConfig(
        models=ModelPaths(model_dir=str(synthetic_model_dir)), device="cuda", precision="fp16",
        torch_compile=True, cuda_graphs=True, max_hands=2,
    )  # fmt: skip
    fast = make_backend(config)
    eager = TorchBackend.from_files(*files(synthetic_model_dir), device="cuda", precision="fp16")
    x = crops(2)
    diffs = max_difference(eager.infer(x), fast.infer(x))
    assert diffs["vertices"] < 1e-3, diffs  # metres: compiled fp16 kernels round differently
