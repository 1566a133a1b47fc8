"""Export the reconstructor (ViT + refinement + MANO) to ONNX with a dynamic batch axis.

One dummy input defines the input name and the dynamic axis; the file carries its metadata
(input size, mean/std, model version, synthetic or real, mesh faces); the export is checked at once
by running ONNX Runtime against PyTorch on the same crops. Models above 1 GiB of weights (the
released ViT-H) keep them in one external-data side file, ``wilor.onnx.data`` (core/files/onnx_files.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import shutil
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F

import wilor_ros
from wilor_ros.core.backends.base import INPUT_NAME, ReconstructorOutput, encode_faces
from wilor_ros.core.backends.onnxruntime_backend import OnnxRuntimeBackend
from wilor_ros.core.backends.torch_backend import OutputTuple as OnnxReconstructor
from wilor_ros.core.backends.torch_backend import TorchBackend
from wilor_ros.core.files.onnx_files import external_data_paths, load_graph, staged_onnx, write_onnx
from wilor_ros.core.hand.constants import CROP_SIZE, IMAGE_MEAN, IMAGE_STD
from wilor_ros.core.models.wilor import WiLoR

LOG = logging.getLogger(__name__)

DEFAULT_OPSET = 17  # GridSample (refinement sampling) needs >= 16; 17 adds LayerNormalization
EXPORT_BATCH = 2  # dummy batch for tracing; the batch axis is exported as dynamic
CHECK_BATCH = 3  # the ONNX Runtime check runs a batch size that was not traced
TORCH_OUTPUT_DIR = "torch"  # inside the staging folder: torch's own output


@dataclass
class ExportReport:
    path: Path
    max_abs_diff: dict[str, float]  # ONNX Runtime vs PyTorch, per output
    data_path: Path | None = None  # the external-data side file, None for a self-contained file


def export_reconstructor_onnx(
    model: WiLoR,
    out_path: str | Path,
    *,
    synthetic: bool,
    model_version: str = "wilor_final",
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    external_data: bool | None = None,
) -> ExportReport:
    """Write ``out_path`` (float32 graph; weights in ``out_path`` + ``.data`` when external) and verify
    it with ONNX Runtime.

    model: a reconstructor from ``load_reconstructor`` (any size), on the CPU.
    external_data: None = a side file only when the weights exceed 1 GiB (the released ViT-H model;
        protobuf cannot hold 2 GiB); True/False force it (see core/files/onnx_files.py).
    Atomic: everything is written and checked in a staging folder beside ``out_path`` and renamed into
    place at the end; on any failure nothing new is left in the folder.
    The caller keeps ``model`` during the ONNX Runtime check; :func:`export_checkpoint_onnx` does not.
    """
    return _export(
        lambda: model,
        out_path,
        synthetic=synthetic,
        model_version=model_version,
        opset=opset,
        check=check,
        external_data=external_data,
    )


def export_checkpoint_onnx(
    checkpoint: str | Path,
    mano: str | Path,
    out_path: str | Path,
    *,
    model_version: str | None = None,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    external_data: bool | None = None,
) -> ExportReport:
    """:func:`export_reconstructor_onnx` of the reconstructor in ``checkpoint`` + ``mano``, which this
    function loads and releases before the ONNX Runtime check, so PyTorch and ONNX Runtime never hold
    the weights at once (2.5 GB each for the released model). model_version: default the file stem."""
    from wilor_ros.core.models.reconstructor import load_reconstructor

    return _export(
        lambda: load_reconstructor(checkpoint, mano),
        out_path,
        synthetic=None,
        model_version=Path(checkpoint).stem if model_version is None else model_version,
        opset=opset,
        check=check,
        external_data=external_data,
    )


def _export(
    load: Callable[[], torch.nn.Module],
    out_path: str | Path,
    *,
    synthetic: bool | None,
    model_version: str,
    opset: int,
    check: bool,
    external_data: bool | None,
) -> ExportReport:
    """The export steps; ``load`` gives the model, dropped here after the torch export (synthetic None:
    the model's own ``synthetic`` flag)."""
    out_path = Path(out_path)
    model = load().float().cpu().eval()
    synthetic = model.synthetic if synthetic is None else synthetic
    crops = _check_crops()
    # the PyTorch side of the check runs first, so the model can go before ONNX Runtime loads the file
    reference = TorchBackend(model).infer(crops) if check else None
    diffs: dict[str, float] = {}
    with staged_onnx(out_path) as staged:
        raw = staged.parent / TORCH_OUTPUT_DIR / staged.name  # torch may drop one file per tensor here
        raw.parent.mkdir()
        _torch_export(model, raw, opset)
        proto = load_graph(raw)
        _set_metadata(proto, model, synthetic=synthetic, model_version=model_version)
        del model, load  # this function's references: the loaded weights go unless the caller holds them
        gc.collect()  # the exporter leaves reference cycles that hold the weights
        write_onnx(proto, staged, source_dir=raw.parent, external_data=external_data)
        del proto
        shutil.rmtree(raw.parent)
        onnx.checker.check_model(str(staged))  # by path: works above 2 GiB and checks the side file
        data = external_data_paths(staged)
        size = sum(p.stat().st_size for p in [staged, *data])
        LOG.info("wrote %s (%.1f MB%s)", out_path, size / 1e6, f", weights in {data[0].name}" if data else "")
        if reference is not None:
            diffs = _max_abs_diff(reference, OnnxRuntimeBackend(staged).infer(crops))
            LOG.info("ONNX Runtime vs PyTorch max |diff|: %s", {k: f"{v:.2e}" for k, v in diffs.items()})
    data_path = out_path.parent / data[0].name if data else None
    return ExportReport(out_path, diffs, data_path)


def _flat_linear(layer: torch.nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` computed on ``x`` flattened to 2-D (... x C_in -> ... x C_out)."""
    if x.ndim <= 2:
        return F.linear(x, layer.weight, layer.bias)
    out = F.linear(x.reshape(-1, x.shape[-1]), layer.weight, layer.bias)  # (B N) x C_out
    return out.reshape(*x.shape[:-1], out.shape[-1])


@contextlib.contextmanager
def _linears_as_gemm(model: WiLoR) -> Iterator[None]:
    """During the export, linear layers fed B x N x C tokens compute on (B N) x C instead.

    torch's TorchScript exporter writes a linear layer on 2-D input as Gemm(x, W, transB=1), which
    reads the weight as stored, but on 3-D input as MatMul(x, W^T) with W^T constant-folded into a
    NEW initializer: for the ViT-H backbone a second 2.5 GB copy of its weights in memory during the
    export. Flattened, every linear layer is a Gemm on the original weight (the same products; two
    Reshape nodes per layer). Instance attributes only: the model is restored on exit.
    """
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    for layer in linears:
        layer.forward = types.MethodType(_flat_linear, layer)  # type: ignore[method-assign]
    try:
        yield
    finally:
        for layer in linears:
            del layer.forward


def _torch_export(model: WiLoR, path: Path, opset: int) -> None:
    """torch's TorchScript-based exporter (the node names its module scopes give are what
    tensorrt.mixed_precision.RECONSTRUCTOR_FP16_SCOPES select).

    For weights above protobuf's 2 GiB it writes one loose file per tensor beside ``path``;
    write_onnx gathers them into the single side file.
    """
    wrapper = OnnxReconstructor(model).eval()
    generator = torch.Generator().manual_seed(0)
    dummy = torch.randn(EXPORT_BATCH, 3, CROP_SIZE, CROP_SIZE, generator=generator)
    names = list(ReconstructorOutput.names())
    with torch.inference_mode(), _linears_as_gemm(model):
        torch.onnx.export(
            wrapper,
            (dummy,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=names,
            dynamic_axes={INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in names}},
            opset_version=opset,
            dynamo=False,
        )


def _set_metadata(proto: onnx.ModelProto, model: WiLoR, *, synthetic: bool, model_version: str) -> None:
    """The file's metadata_props: versions, input size, mean/std, faces (see the module docstring)."""
    config = getattr(model, "config", None)
    info = {
        "wilor_ros_version": wilor_ros.__version__,
        "model_version": model_version,
        "synthetic": synthetic,
        "input_size": [CROP_SIZE, CROP_SIZE],
        "config": dataclasses.asdict(config) if dataclasses.is_dataclass(config) else None,
    }
    metadata = {
        "wilor_ros": json.dumps(info),
        "model_version": model_version,
        "synthetic": "true" if synthetic else "false",
        "input_size": f"{CROP_SIZE},{CROP_SIZE}",
        "mean": ",".join(str(v) for v in IMAGE_MEAN),
        "std": ",".join(str(v) for v in IMAGE_STD),
        "input_layout": "B x 3 x 256 x 256 float32, RGB normalised with mean/std on [0,1] values",
    }
    # the mesh topology travels with the file: the ONNX backends have no MANO file
    metadata["faces"] = encode_faces(np.asarray(model.mano.faces))
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def _check_crops(batch: int = CHECK_BATCH) -> np.ndarray:
    """Random crops (B x 3 x 256 x 256 float32) of a batch size not traced."""
    return np.random.default_rng(1).standard_normal((batch, 3, CROP_SIZE, CROP_SIZE)).astype(np.float32)


def _max_abs_diff(reference: ReconstructorOutput, other: ReconstructorOutput) -> dict[str, float]:
    return {
        name: float(np.max(np.abs(getattr(reference, name) - getattr(other, name))))
        for name in ReconstructorOutput.names()
    }
