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
from typing import Any

from wilor_ros.core.files.onnx_files import external_data_paths

LOG = logging.getLogger(__name__)

# ONNX node names of the blocks' Linear layers in our export (torch.onnx module scopes). The export
# writes them as Gemm (x, W, b, transB=1: tools/export.py keeps the weight as stored); ONNX Runtime's
# dynamic quantization covers MatMul, not Gemm, so they become MatMul(x, W^T) + b first.
VIT_LINEAR_NODE = re.compile(r"^/model/backbone/blocks\.\d+/(attn/(qkv|proj)|mlp/fc[12])/(MatMul|Gemm)$")
INT8_SUFFIX = ".int8.onnx"
RECIPE = "vit-blocks-matmul-int8-per-channel-v2"  # change it whenever quantize_vit_blocks changes


def int8_path(onnx_path: str | Path) -> Path:
    """Where the quantized copy of ``onnx_path`` lives: ``wilor.onnx`` -> ``wilor.int8.onnx``."""
    path = Path(onnx_path)
    return path.with_name(path.stem + INT8_SUFFIX)


def vit_linear_nodes(onnx_path: str | Path) -> list[str]:
    """Names of the blocks' linear nodes (MatMul or Gemm; 4 per ViT block)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm") and VIT_LINEAR_NODE.match(n.name)]


def gemms_as_matmuls(model: Any, names: set[str]) -> list[str]:
    """Rewrite the named Gemm(x, W, b, transB=1) nodes of ``model`` (in place) as MatMul(x, W^T) + b,
    W^T a new initializer replacing W (the same products); returns the MatMul names to quantize."""
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    users: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    out_nodes, matmuls = [], []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type != "Gemm" or node.name not in names:
            out_nodes.append(node)
            if node.op_type == "MatMul" and node.name in names:
                matmuls.append(node.name)
            continue
        if attrs.get("transA", 0) or not attrs.get("transB", 0) or attrs.get("alpha", 1.0) != 1.0:
            raise ValueError(f"{node.name}: expected Gemm(x, W, b, transB=1), got attributes {attrs}")
        x, weight_name, bias = node.input
        if weight_name not in initializers or users[weight_name] != 1:
            raise ValueError(f"{node.name}: its weight is not a constant used once")
        weight = numpy_helper.to_array(initializers[weight_name])  # C_out x C_in
        transposed = numpy_helper.from_array(weight.T.copy(), weight_name + "_t")  # C_in x C_out
        graph.initializer.remove(initializers[weight_name])
        graph.initializer.append(transposed)
        prefix = node.name[: -len("Gemm")]
        product = node.name + "_product"
        out_nodes.append(helper.make_node("MatMul", [x, transposed.name], [product], name=prefix + "MatMul"))
        out_nodes.append(helper.make_node("Add", [product, bias], list(node.output), name=prefix + "Add"))
        matmuls.append(prefix + "MatMul")
    del graph.node[:]
    graph.node.extend(out_nodes)
    return matmuls


def quantize_vit_blocks(onnx_path: str | Path, out_path: str | Path, per_channel: bool = True) -> int:
    """Write the dynamically int8-quantized copy of ``onnx_path`` to ``out_path`` (atomically: a temporary
    file in the same folder, then a rename) -> number of MatMuls quantized."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    onnx_path, out_path = Path(onnx_path), Path(out_path)
    found = vit_linear_nodes(onnx_path)
    if not found:
        raise ValueError(
            f"{onnx_path}: no ViT block linear layer found; re-export it with `wilor-ros export`"
        )
    model = onnx.load(str(onnx_path))  # with its external data
    nodes = gemms_as_matmuls(model, set(found))
    handle, tmp_name = tempfile.mkstemp(prefix=f".{out_path.name}.", suffix=".onnx", dir=out_path.parent)
    os.close(handle)
    try:
        quantize_dynamic(
            model,
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
    """What the quantized copy was made from: the recipe and both files of the export."""
    key: dict[str, object] = {"recipe": RECIPE, "source": onnx_path.name}
    for path in [onnx_path, *external_data_paths(onnx_path)]:
        stat = path.stat()
        key[f"{path.name}_size"], key[f"{path.name}_mtime_ns"] = stat.st_size, stat.st_mtime_ns
    return key


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
