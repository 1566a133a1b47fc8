"""Evaluate ONNX Runtime dynamic INT8 quantization of the ViT blocks (not shipped as a backend: see
docs/performance.md for the measured result and why).

    python -m wilor_ros.tools.int8_eval --model-dir DIR [--images PHOTOS --boxes BOXES.json] [--threads 2]

Quantizes the weight-bearing MatMuls of the ViT blocks (attention qkv/proj and MLP fc1/fc2: nearly all
FLOPs) of ``DIR/wilor.onnx`` with ``onnxruntime.quantization.quantize_dynamic`` (int8 weights, activations
quantized per call), then runs the float32 ONNX file and the quantized one with ONNX Runtime on the same
crops and prints the time per crop and the vertex/joint deviation in mm. The rule the numbers are held to:
ship it only if it is both faster than float32 and within 1 mm.
"""

from __future__ import annotations

import argparse
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wilor_ros.core.backends.base import ReconstructorOutput
from wilor_ros.core.backends.onnxruntime_backend import OnnxRuntimeBackend
from wilor_ros.tools.bench import Deviation, deviation, load_average
from wilor_ros.tools.compare_backends import (
    MS,
    OFFICIAL_DEMO_BATCH,
    crops_from_images,
    random_crops,
    run_chunks,
)

LOG = logging.getLogger(__name__)

# ONNX node names of the blocks' Linear layers in our export (torch.onnx module scopes)
VIT_LINEAR_NODE = re.compile(r"^/model/backbone/blocks\.\d+/(attn/(qkv|proj)|mlp/fc[12])/MatMul$")
SHIP_MAX_MEAN_VERTEX_MM = 1.0  # the bar: within 1 mm of float32


@dataclass
class Int8Result:
    crops: int
    fp32_ms_per_crop: float
    int8_ms_per_crop: float
    deviation: Deviation
    quantized_nodes: int
    loadavg: tuple[str, str]

    @property
    def faster(self) -> bool:
        return self.int8_ms_per_crop < self.fp32_ms_per_crop

    @property
    def within_1mm(self) -> bool:
        return self.deviation.vertex_mean_mm < SHIP_MAX_MEAN_VERTEX_MM


def quantize_vit_blocks(onnx_path: Path, out_path: Path, per_channel: bool = False) -> int:
    """Write the dynamically int8-quantized copy of ``onnx_path`` -> number of MatMuls quantized."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    nodes = [n.name for n in graph.node if n.op_type == "MatMul" and VIT_LINEAR_NODE.match(n.name)]
    if not nodes:
        raise ValueError(f"{onnx_path}: no ViT block MatMul found; is this a wilor_ros export?")
    large = sum(p.stat().st_size for p in onnx_path.parent.iterdir() if p.is_file()) > 2**31
    quantize_dynamic(
        str(onnx_path),
        str(out_path),
        op_types_to_quantize=["MatMul"],
        nodes_to_quantize=nodes,
        weight_type=QuantType.QInt8,
        per_channel=per_channel,
        use_external_data_format=large,
        extra_options={"MatMulConstBOnly": True},
    )
    return len(nodes)


def timed(backend: OnnxRuntimeBackend, crops: np.ndarray) -> tuple[ReconstructorOutput, float]:
    """Outputs and ms per crop (after one warm-up call on the first chunk)."""
    backend.infer(crops[:OFFICIAL_DEMO_BATCH])
    start = time.perf_counter()
    output = run_chunks(backend, crops, OFFICIAL_DEMO_BATCH)
    return output, (time.perf_counter() - start) / len(crops) * MS


def evaluate_int8(
    model_dir: Path,
    images: Path | None = None,
    boxes: Path | None = None,
    threads: int | None = None,
    per_channel: bool = False,
) -> Int8Result:
    before = load_average()
    fp32_path = model_dir / "wilor.onnx"
    int8_path = model_dir / "int8" / "wilor.int8.onnx"
    int8_path.parent.mkdir(exist_ok=True)
    count = quantize_vit_blocks(fp32_path, int8_path, per_channel)
    crops = crops_from_images(images, boxes) if images is not None else random_crops(8)
    fp32_out, fp32_ms = timed(OnnxRuntimeBackend(fp32_path, threads=threads), crops)
    int8_out, int8_ms = timed(OnnxRuntimeBackend(int8_path, threads=threads), crops)
    return Int8Result(
        len(crops), fp32_ms, int8_ms, deviation(int8_out, fp32_out), count, (before, load_average())
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="folder with wilor.onnx")
    parser.add_argument("--images", type=Path, help="photos (with --boxes); default: 8 random crops")
    parser.add_argument("--boxes", type=Path)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--per-channel", action="store_true", help="per-output-channel weight scales")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    r = evaluate_int8(args.model_dir, args.images, args.boxes, args.threads, args.per_channel)
    d = r.deviation
    print(
        f"ONNX Runtime, {r.crops} crops, {r.quantized_nodes} ViT MatMuls int8, per_channel {args.per_channel}"
    )
    print(f"  fp32 {r.fp32_ms_per_crop:.1f} ms/crop, int8 {r.int8_ms_per_crop:.1f} ms/crop "
          f"(x{r.fp32_ms_per_crop / r.int8_ms_per_crop:.2f})")  # fmt: skip
    print(f"  int8 vs fp32: vertices mean {d.vertex_mean_mm:.3f} / max {d.vertex_max_mm:.3f} mm, "
          f"joints mean {d.joint_mean_mm:.3f} / max {d.joint_max_mm:.3f} mm")  # fmt: skip
    verdict = "ship" if r.faster and r.within_1mm else "do not ship"
    print(f"  faster: {r.faster}, within 1 mm (mean vertex): {r.within_1mm} -> {verdict}")
    print(f"  load average before {r.loadavg[0]}, after {r.loadavg[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
