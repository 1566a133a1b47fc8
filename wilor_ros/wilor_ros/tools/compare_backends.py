"""``wilor-ros compare-backends A B``: two reconstructor runtimes on the same crops, output by output.

A backend is named ``runtime[:precision][+compile][+graphs][+devcrop]``: ``pytorch``, ``onnxruntime``,
``tensorrt:fp16``, ``tensorrt:fp32``, ``pytorch:bf16`` (CUDA, or a CPU with AMX / AVX512-BF16),
``pytorch:bf16+compile`` (torch.compile), ``pytorch:fp16+graphs`` (CUDA graphs), ``+devcrop`` (crops made
on the device; in ``bench``). The crops come from
photos with given boxes (the same crop code as the pipeline) or are random normalised crops. Lengths
(vertices, joints, cam_t) are reported in millimetres, everything else in the network's own units; each
backend's time per call is printed too. This is how the FP16/BF16 accuracy is measured
(docs/performance.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from wilor_ros.core.backends.base import ReconstructorBackend, ReconstructorOutput
from wilor_ros.core.backends.registry import (
    BACKEND_CHOICES,
    BACKENDS,
    PRECISION_CHOICES,
    BackendEntry,
    backends_where,
)
from wilor_ros.core.config import load_config
from wilor_ros.core.hand.constants import CROP_SIZE
from wilor_ros.core.image import preprocessing
from wilor_ros.core.pipeline import make_backend
from wilor_ros.core.pipeline_config import PipelineConfig

LOG = logging.getLogger(__name__)

METRES_TO_MM = 1000.0
MS = 1000.0
LENGTH_OUTPUTS = ("keypoints_3d", "vertices", "cam_t")  # metres -> reported in mm
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
DEFAULT_RANDOM_CROPS = 4
# crops per network call: the official demo's DataLoader batch size (demo.py, batch_size=16)
OFFICIAL_DEMO_BATCH = 16
# "+flag" -> PipelineConfig field, and which runtimes it applies to (core/backends/registry.py)
SPEC_FLAGS = {"compile": "torch_compile", "graphs": "cuda_graphs", "devcrop": "device_preprocessing"}
FLAG_APPLIES: dict[str, Callable[[BackendEntry], bool]] = {
    "compile": lambda entry: entry.torch_runtime,
    "graphs": lambda entry: entry.torch_runtime,
    "devcrop": lambda entry: entry.device_input,
}


@dataclass(frozen=True)
class BackendSpec:
    """One way to run the reconstructor: runtime, precision and the PyTorch options."""

    runtime: str
    precision: str
    torch_compile: bool = False
    cuda_graphs: bool = False
    device_preprocessing: bool = False  # crops made on the device (core/image/device_preprocessing.py)

    @classmethod
    def parse(cls, text: str, default_precision: str | None = None) -> BackendSpec:
        """``runtime[:precision][+compile][+graphs][+devcrop]``; without a precision:
        ``default_precision``, else the runtime's own (fp16 for tensorrt, fp32 for the others)."""
        head, *flags = text.split("+")
        runtime, _, precision = head.partition(":")
        if runtime not in BACKEND_CHOICES:
            raise ValueError(f"backend {text!r}: runtime must be one of {BACKEND_CHOICES}")
        precision = precision or default_precision or BACKENDS[runtime].default_precision
        if precision not in PRECISION_CHOICES:
            raise ValueError(f"backend {text!r}: precision must be one of {PRECISION_CHOICES}")
        unknown = [flag for flag in flags if flag not in SPEC_FLAGS]
        if unknown:
            raise ValueError(f"backend {text!r}: unknown option(s) {unknown}; known: {sorted(SPEC_FLAGS)}")
        for flag in flags:
            if not FLAG_APPLIES[flag](BACKENDS[runtime]):
                runtimes = " / ".join(backends_where(FLAG_APPLIES[flag]))
                raise ValueError(f"backend {text!r}: +{flag} applies to {runtimes} only")
        return cls(runtime, precision, **{SPEC_FLAGS[flag]: True for flag in flags})

    def __str__(self) -> str:
        flags = "".join(f"+{flag}" for flag, field_name in SPEC_FLAGS.items() if getattr(self, field_name))
        return f"{self.runtime}:{self.precision}{flags}"

    @classmethod
    def reference(cls) -> BackendSpec:
        """Plain fp32 PyTorch, the official model's own runtime: what every other way is measured against."""
        return cls("pytorch", "fp32")

    @property
    def is_reference(self) -> bool:
        return self == BackendSpec.reference()

    def pipeline_config(self, model_dir: str | Path, device: str, **overrides: object) -> PipelineConfig:
        """A PipelineConfig running this spec on the model folder's files (``overrides``: other fields)."""
        config = load_config(
            PipelineConfig,
            None,
            {
                "models.model_dir": str(model_dir),
                "backend": self.runtime,
                "device": device,
                "precision": self.precision,
                "torch_compile": self.torch_compile,
                "cuda_graphs": self.cuda_graphs,
                "device_preprocessing": self.device_preprocessing,
                **overrides,
            },
        )
        return config


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
    return make_backend(spec.pipeline_config(model_dir, device, max_hands=OFFICIAL_DEMO_BATCH))


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


@dataclass(frozen=True)
class BackendTiming:
    """How long one backend took on the comparison's crops."""

    spec: str
    load_s: float  # building the backend (reading weights, compiling / capturing when asked)
    first_call_s: float  # the first chunk (lazy initialisation shows here)
    ms_per_crop: list[float]  # one figure per round over all crops, after the first call

    @property
    def median_ms(self) -> float:
        return float(np.median(self.ms_per_crop))


def concat_outputs(parts: list[ReconstructorOutput]) -> ReconstructorOutput:
    """The outputs of several calls as one batch, in call order."""
    return ReconstructorOutput(
        **{n: np.concatenate([getattr(p, n) for p in parts]) for n in ReconstructorOutput.names()}
    )


def run_chunks(backend: ReconstructorBackend, crops: np.ndarray, chunk: int) -> ReconstructorOutput:
    """``backend.infer`` over ``crops`` in calls of at most ``chunk`` crops, outputs concatenated."""
    return concat_outputs([backend.infer(crops[i : i + chunk]) for i in range(0, len(crops), chunk)])


def load_and_warm(
    spec: BackendSpec, model_dir: str | Path, device: str, crops: np.ndarray, chunk: int
) -> tuple[ReconstructorBackend, float, float]:
    """(backend, load seconds, first-call seconds on the first chunk)."""
    start = time.perf_counter()
    backend = load_backend(spec, model_dir, device)
    loaded = time.perf_counter()
    backend.infer(crops[:chunk])
    return backend, loaded - start, time.perf_counter() - loaded


def paired_runs(
    backends: list[ReconstructorBackend], crops: np.ndarray, rounds: int, chunk: int = OFFICIAL_DEMO_BATCH
) -> tuple[list[ReconstructorOutput], list[list[float]]]:
    """``rounds`` rounds over all crops, every backend once per round (order reversed every other round so
    a drifting machine load hits both alike) -> (first round's outputs, ms per crop per round)."""
    outputs: list[ReconstructorOutput | None] = [None] * len(backends)
    times: list[list[float]] = [[] for _ in backends]
    for index in range(rounds):
        order = range(len(backends)) if index % 2 == 0 else reversed(range(len(backends)))
        for which in order:
            start = time.perf_counter()
            output = run_chunks(backends[which], crops, chunk)
            times[which].append((time.perf_counter() - start) / len(crops) * MS)
            outputs[which] = outputs[which] or output
    return outputs, times  # type: ignore[return-value]


def format_timing_table(timings: list[BackendTiming], title: str) -> str:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in ("backend", "load s", "first call s", "ms per crop (median)", "every round"):
        table.add_column(column, justify="left" if column == "backend" else "right")
    for t in timings:
        rounds = " ".join(f"{v:.0f}" for v in t.ms_per_crop)
        table.add_row(t.spec, f"{t.load_s:.2f}", f"{t.first_call_s:.2f}", f"{t.median_ms:.1f}", rounds)
    console = Console(width=110, record=True, force_terminal=False)
    with console.capture() as capture:
        console.print(table)
        if len(timings) == 2:
            a, b = timings
            ratio = float(np.median(np.array(a.ms_per_crop) / np.array(b.ms_per_crop)))
            console.print(f"A / B time per crop, median over the paired rounds: {ratio:.2f}")
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
    rounds: int = 1,
) -> tuple[list[OutputDiff], str]:
    """Run both backends on the same crops -> (rows, printable tables: differences, then timings).

    Both backends are loaded together and timed in ``rounds`` paired rounds (see ``paired_runs``): on a
    shared machine the ratio of paired rounds is far steadier than two runs one after the other.
    """
    if (images is None) != (boxes is None):
        raise ValueError("give --images and --boxes together (or neither, for random crops)")
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    a, b = BackendSpec.parse(spec_a), BackendSpec.parse(spec_b)
    device = device or default_device()
    crops = crops_from_images(images, boxes) if images is not None else random_crops(count, seed)
    loaded = [load_and_warm(spec, model_dir, device, crops, OFFICIAL_DEMO_BATCH) for spec in (a, b)]
    backends = [backend for backend, _, _ in loaded]
    try:
        (out_a, out_b), times = paired_runs(backends, crops, rounds)
    finally:
        for backend in backends:
            backend.close()
    timings = [BackendTiming(str(spec), load_s, first_s, ms) for spec, (_, load_s, first_s), ms in
               zip((a, b), loaded, times)]  # fmt: skip
    rows = compare_outputs(out_a, out_b)
    source = f"{len(crops)} crops from {images}" if images is not None else f"{len(crops)} random crops"
    text = format_diff_table(rows, f"A = {a}  vs  B = {b}  ({source}, device {device})")
    timing_title = (
        f"time on the same crops (calls of <= {OFFICIAL_DEMO_BATCH} crops, {rounds} paired round(s))"
    )
    return rows, text + format_timing_table(timings, timing_title)
