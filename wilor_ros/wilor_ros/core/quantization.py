"""INT8 reconstructor for ONNX Runtime on the CPU: dynamic quantization of the ViT blocks' Linear layers.

``onnxruntime.quantization.quantize_dynamic`` stores the weights of the blocks' attention (qkv, proj) and
MLP (fc1, fc2) MatMuls as int8 with one scale per output channel and quantizes their inputs per call
(MatMulInteger); everything else (patch embedding, LayerNorm, softmax, read-outs, refinement net, MANO)
stays float32. Per output channel, because one scale per whole matrix was no faster (2.78x vs 2.85x over
float32 in paired runs) and had 2.6x the error on the bench frames (mean vertex deviation 1.18 vs 0.46 mm;
docs/performance.md). The
file ``<stem>.int8.onnx`` is written beside the float32 export on first use, with a sidecar
``<stem>.int8.json`` naming the recipe and the export it came from; it is rebuilt when either changes.
Accuracy and speed against float32: ``wilor-ros compare-backends onnxruntime onnxruntime:int8``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from pathlib import Path

LOG = logging.getLogger(__name__)

# ONNX node names of the blocks' Linear layers in our export (torch.onnx module scopes)
VIT_LINEAR_NODE = re.compile(r"^/model/backbone/blocks\.\d+/(attn/(qkv|proj)|mlp/fc[12])/MatMul$")
INT8_SUFFIX = ".int8.onnx"
RECIPE = "vit-blocks-matmul-int8-per-channel-v1"  # change it whenever quantize_vit_blocks changes


def int8_path(onnx_path: str | Path) -> Path:
    """Where the quantized copy of ``onnx_path`` lives: ``wilor.onnx`` -> ``wilor.int8.onnx``."""
    path = Path(onnx_path)
    return path.with_name(path.stem + INT8_SUFFIX)


def vit_linear_nodes(onnx_path: str | Path) -> list[str]:
    """Names of the MatMuls that are quantized (4 per ViT block)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type == "MatMul" and VIT_LINEAR_NODE.match(n.name)]


def quantize_vit_blocks(onnx_path: str | Path, out_path: str | Path, per_channel: bool = True) -> int:
    """Write the dynamically int8-quantized copy of ``onnx_path`` to ``out_path`` (atomically: a temporary
    file in the same folder, then a rename) -> number of MatMuls quantized."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    onnx_path, out_path = Path(onnx_path), Path(out_path)
    nodes = vit_linear_nodes(onnx_path)
    if not nodes:
        raise ValueError(f"{onnx_path}: no ViT block MatMul found; re-export it with `wilor-ros export`")
    handle, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".onnx", dir=out_path.parent)
    os.close(handle)
    try:
        quantize_dynamic(
            str(onnx_path),
            tmp_name,
            op_types_to_quantize=["MatMul"],
            nodes_to_quantize=nodes,
            weight_type=QuantType.QInt8,
            per_channel=per_channel,
            extra_options={"MatMulConstBOnly": True},
        )
        os.replace(tmp_name, out_path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return len(nodes)


def _source_key(onnx_path: Path) -> dict[str, object]:
    stat = onnx_path.stat()
    return {
        "recipe": RECIPE,
        "source": onnx_path.name,
        "source_size": stat.st_size,
        "source_mtime_ns": stat.st_mtime_ns,
    }


def ensure_int8_onnx(onnx_path: str | Path) -> Path:
    """The quantized copy of ``onnx_path``: reused when its sidecar names this recipe and this export,
    (re)written otherwise."""
    onnx_path = Path(onnx_path)
    target = int8_path(onnx_path)
    sidecar = target.with_suffix(".json")
    key = _source_key(onnx_path)
    try:
        current = target.is_file() and json.loads(sidecar.read_text()) == key
    except (OSError, ValueError):
        current = False
    if current:
        return target
    start = time.perf_counter()
    count = quantize_vit_blocks(onnx_path, target)
    sidecar.write_text(json.dumps(key, indent=2))
    LOG.info(
        "wrote %s (%d ViT MatMuls int8, %s) in %.1f s", target, count, RECIPE, time.perf_counter() - start
    )
    return target
