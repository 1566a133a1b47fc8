"""``wilor-ros compare-backends A B``: two reconstructor runtimes on the same crops, output by output.

A backend is named ``runtime[:precision]``: ``pytorch``, ``onnxruntime``, ``tensorrt:fp16``,
``tensorrt:fp32``, ``pytorch:fp16`` (CUDA). The crops come from photos with given boxes (the same
crop code as the pipeline) or are random normalised crops. Lengths (vertices, joints, cam_t) are
reported in millimetres, everything else in the network's own units. This is how the FP16 engines'
accuracy is measured (docs/performance.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from wilor_ros.core import preprocessing
from wilor_ros.core.backends.base import ReconstructorBackend, ReconstructorOutput
from wilor_ros.core.constants import CROP_SIZE
from wilor_ros.core.pipeline import (
    BACKEND_CHOICES,
    PRECISION_CHOICES,
    ModelPaths,
    PipelineConfig,
    make_backend,
)

LOG = logging.getLogger(__name__)

METRES_TO_MM = 1000.0
LENGTH_OUTPUTS = ("keypoints_3d", "vertices", "cam_t")  # metres -> reported in mm
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
DEFAULT_RANDOM_CROPS = 4


@dataclass(frozen=True)
class BackendSpec:
    runtime: str
    precision: str

    @classmethod
    def parse(cls, text: str) -> BackendSpec:
        runtime, _, precision = text.partition(":")
        precision = precision or ("fp16" if runtime == "tensorrt" else "fp32")
        if runtime not in BACKEND_CHOICES:
            raise ValueError(f"backend {text!r}: runtime must be one of {BACKEND_CHOICES}")
        if precision not in PRECISION_CHOICES:
            raise ValueError(f"backend {text!r}: precision must be one of {PRECISION_CHOICES}")
        return cls(runtime, precision)

    def __str__(self) -> str:
        return f"{self.runtime}:{self.precision}"


@dataclass(frozen=True)
class OutputDiff:
    """|A - B| over every element of one output."""

    name: str
    unit: str
    max_abs: float
    mean_abs: float


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_backend(spec: BackendSpec, model_dir: str | Path, device: str) -> ReconstructorBackend:
    """The backend ``spec`` names, from the model folder's files (see PipelineConfig)."""
    config = PipelineConfig(
        models=ModelPaths(model_dir=str(model_dir)),
        backend=spec.runtime,
        device=device,
        precision=spec.precision,
    )
    config.validate()
    return make_backend(config)


def random_crops(count: int, seed: int = 0) -> np.ndarray:
    """count x 3 x 256 x 256 float32 standard-normal crops (the normalised input's scale)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((count, 3, CROP_SIZE, CROP_SIZE)).astype(np.float32)


def crops_from_images(images: str | Path, boxes_file: str | Path) -> np.ndarray:
    """Every boxed hand of every image in ``images`` (folder or file) -> N x 3 x 256 x 256 crops."""
    from wilor_ros.tools.demo import load_boxes_file

    boxes = load_boxes_file(boxes_file)
    folder = Path(images)
    files = (
        [folder]
        if folder.is_file()
        else sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    )
    crops = []
    for path in files:
        hands = boxes.get(path.name, [])
        if not hands:
            continue
        bgr = cv2.imread(str(path))
        if bgr is None:
            raise ValueError(f"cannot read image {path}")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        crops.append(preprocessing.crop_hands(rgb, hands).crops)
    if not crops:
        raise ValueError(f"no image in {images} has boxes in {boxes_file} (keys are image file names)")
    return np.concatenate(crops)


def compare_outputs(a: ReconstructorOutput, b: ReconstructorOutput) -> list[OutputDiff]:
    """Per-output max / mean absolute difference (lengths in mm)."""
    if len(a) != len(b):
        raise ValueError(f"outputs of different batch sizes: {len(a)} vs {len(b)}")
    rows = []
    for name in ReconstructorOutput.names():
        diff = np.abs(getattr(a, name).astype(np.float64) - getattr(b, name).astype(np.float64))
        scale, unit = (METRES_TO_MM, "mm") if name in LENGTH_OUTPUTS else (1.0, "")
        if diff.size == 0:
            rows.append(OutputDiff(name, unit, 0.0, 0.0))
            continue
        rows.append(OutputDiff(name, unit, float(diff.max() * scale), float(diff.mean() * scale)))
    return rows


def format_diff_table(rows: list[OutputDiff], title: str) -> str:
    """A rich table as plain text."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("output")
    table.add_column("unit")
    table.add_column("max |A-B|", justify="right")
    table.add_column("mean |A-B|", justify="right")
    for row in rows:
        table.add_row(row.name, row.unit or "-", f"{row.max_abs:.3e}", f"{row.mean_abs:.3e}")
    console = Console(width=100, record=True, force_terminal=False)
    with console.capture() as capture:
        console.print(table)
    return capture.get()


def run_compare(
    spec_a: str,
    spec_b: str,
    model_dir: str | Path,
    images: str | Path | None = None,
    boxes: str | Path | None = None,
    count: int = DEFAULT_RANDOM_CROPS,
    device: str | None = None,
    seed: int = 0,
) -> tuple[list[OutputDiff], str]:
    """Run both backends on the same crops -> (rows, printable table)."""
    if (images is None) != (boxes is None):
        raise ValueError("give --images and --boxes together (or neither, for random crops)")
    a, b = BackendSpec.parse(spec_a), BackendSpec.parse(spec_b)
    device = device or default_device()
    crops = crops_from_images(images, boxes) if images is not None else random_crops(count, seed)
    outputs = []
    for spec in (a, b):
        backend = load_backend(spec, model_dir, device)
        try:
            outputs.append(backend.infer(crops))
        finally:
            backend.close()
    rows = compare_outputs(outputs[0], outputs[1])
    source = f"{len(crops)} crops from {images}" if images is not None else f"{len(crops)} random crops"
    return rows, format_diff_table(rows, f"A = {a}  vs  B = {b}  ({source}, device {device})")
