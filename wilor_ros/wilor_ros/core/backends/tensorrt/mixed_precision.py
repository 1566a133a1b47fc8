"""The fp16/fp32 mixed-precision copy of an ONNX file that strongly typed fp16 engines are built from.

For the reconstructor only the ViT blocks and the patch embedding, where nearly all FLOPs are, are
converted, with LayerNorm and softmax inside them kept float32; the token embeddings, the decoders
with the 6D -> rotation conversion, the refinement net and the MANO layer stay float32 (tiny compute,
precision-sensitive). The detector engine converts every node but those reductions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wilor_ros.core.files.onnx_files import external_data_paths, load_graph, write_onnx

# ONNX node-name scopes (torch.onnx module paths) converted to fp16 in the reconstructor.
RECONSTRUCTOR_FP16_SCOPES = ("/model/backbone/blocks", "/model/backbone/patch_embed")
# ops kept float32 even inside an fp16 scope (reductions that overflow/lose precision in fp16)
FP32_OPS = ("LayerNormalization", "Softmax", "ReduceMean", "ReduceL2", "ReduceSum", "Pow", "Sqrt")
FLOAT_PARAM_INPUTS = {"Resize": (1, 2)}  # op -> input positions that must stay float32


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
