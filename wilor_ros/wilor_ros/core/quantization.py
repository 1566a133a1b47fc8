"""INT8 reconstructor for ONNX Runtime on the CPU: dynamic quantization of the ViT blocks' Linear layers.

``onnxruntime.quantization.quantize_dynamic`` stores the weights of the blocks' attention (qkv, proj) and
MLP (fc1, fc2) MatMuls as int8 and quantizes their inputs per call (MatMulInteger); everything else
(patch embedding, LayerNorm, softmax, read-outs, refinement net, MANO) stays float32. The quantized file
``<stem>.int8.onnx`` is written beside the float32 export on first use and rebuilt when the export is
newer. Accuracy and speed measured against float32: docs/performance.md (``wilor-ros compare-backends
onnxruntime onnxruntime:int8``).
"""

from __future__ import annotations

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


def int8_path(onnx_path: str | Path) -> Path:
    """Where the quantized copy of ``onnx_path`` lives: ``wilor.onnx`` -> ``wilor.int8.onnx``."""
    path = Path(onnx_path)
    return path.with_name(path.stem + INT8_SUFFIX)


def vit_linear_nodes(onnx_path: str | Path) -> list[str]:
    """Names of the MatMuls that are quantized (4 per ViT block)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type == "MatMul" and VIT_LINEAR_NODE.match(n.name)]


def quantize_vit_blocks(onnx_path: str | Path, out_path: str | Path) -> int:
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
            extra_options={"MatMulConstBOnly": True},
        )
        os.replace(tmp_name, out_path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return len(nodes)


def ensure_int8_onnx(onnx_path: str | Path) -> Path:
    """The quantized copy of ``onnx_path``: reused when newer than it, (re)written otherwise."""
    onnx_path = Path(onnx_path)
    target = int8_path(onnx_path)
    if target.is_file() and target.stat().st_mtime >= onnx_path.stat().st_mtime:
        return target
    start = time.perf_counter()
    count = quantize_vit_blocks(onnx_path, target)
    LOG.info("wrote %s (%d ViT MatMuls int8) in %.1f s", target, count, time.perf_counter() - start)
    return target
