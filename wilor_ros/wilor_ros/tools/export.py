"""Export the reconstructor (ViT + refinement + MANO) to ONNX with a dynamic batch axis.

One dummy input defines the input name and the dynamic axis; the file carries its metadata
(input size, mean/std, model version, synthetic or real); the export is checked at once by
running ONNX Runtime against PyTorch on the same crops.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

import wilor_ros
from wilor_ros.core.backends.base import INPUT_NAME, ReconstructorOutput, encode_faces
from wilor_ros.core.backends.torch_backend import OutputTuple as OnnxReconstructor
from wilor_ros.core.constants import CROP_SIZE, IMAGE_MEAN, IMAGE_STD

LOG = logging.getLogger(__name__)

DEFAULT_OPSET = 17  # GridSample (refinement sampling) needs >= 16; 17 adds LayerNormalization
EXPORT_BATCH = 2  # dummy batch for tracing; the batch axis is exported as dynamic


@dataclass
class ExportReport:
    path: Path
    max_abs_diff: dict[str, float]  # ONNX Runtime vs PyTorch, per output


def export_reconstructor_onnx(
    model: torch.nn.Module,
    out_path: str | Path,
    *,
    synthetic: bool,
    model_version: str = "wilor_final",
    opset: int = DEFAULT_OPSET,
    check: bool = True,
) -> ExportReport:
    """Write ``out_path`` (float32 graph) and verify it with ONNX Runtime.

    model: a reconstructor from ``load_reconstructor`` (any size), on the CPU.
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    model = model.float().cpu().eval()
    wrapper = OnnxReconstructor(model).eval()
    generator = torch.Generator().manual_seed(0)
    dummy = torch.randn(EXPORT_BATCH, 3, CROP_SIZE, CROP_SIZE, generator=generator)
    names = list(ReconstructorOutput.names())
    with torch.inference_mode():
        torch.onnx.export(
            wrapper,
            (dummy,),
            str(out_path),
            input_names=[INPUT_NAME],
            output_names=names,
            dynamic_axes={INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in names}},
            opset_version=opset,
            dynamo=False,
        )
    proto = onnx.load(str(out_path))
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
    faces = getattr(getattr(model, "mano", None), "faces", None)
    if faces is not None:
        # the mesh topology travels with the file: the ONNX backends have no MANO file
        metadata["faces"] = encode_faces(np.asarray(faces))
    del proto.metadata_props[:]
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out_path))
    LOG.info("wrote %s (%.1f MB)", out_path, out_path.stat().st_size / 1e6)

    diffs: dict[str, float] = {}
    if check:
        diffs = compare_onnx_to_torch(model, out_path, batch=3)
        LOG.info("ONNX Runtime vs PyTorch max |diff|: %s", {k: f"{v:.2e}" for k, v in diffs.items()})
    return ExportReport(out_path, diffs)


def compare_onnx_to_torch(model: torch.nn.Module, onnx_path: Path, batch: int = 3) -> dict[str, float]:
    """Max |ONNX Runtime - PyTorch| per output on random crops of a batch size not traced."""
    from wilor_ros.core.backends.onnxruntime_backend import OnnxRuntimeBackend
    from wilor_ros.core.backends.torch_backend import TorchBackend

    crops = np.random.default_rng(1).standard_normal((batch, 3, CROP_SIZE, CROP_SIZE)).astype(np.float32)
    reference = TorchBackend(model).infer(crops)
    exported = OnnxRuntimeBackend(onnx_path).infer(crops)
    return {
        name: float(np.max(np.abs(getattr(reference, name) - getattr(exported, name))))
        for name in ReconstructorOutput.names()
    }
