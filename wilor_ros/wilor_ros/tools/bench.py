"""``wilor-ros bench``: per-stage latency, FPS, memory and accuracy of every way to run the reconstructor.

Each benchmarked way is a backend spec (compare_backends.BackendSpec): ``pytorch``, ``onnxruntime``,
``tensorrt`` (fp16 on GPU), and PyTorch options such as ``pytorch:bf16``, ``pytorch+compile``,
``pytorch:fp16+graphs``. For each spec, image size and hand count the pipeline runs on a synthetic frame
with supplied boxes (so synthetic models work) and its ``StageTimings`` are averaged: image conversion,
detector (0 here: boxes given), crop/normalise, reconstructor, post-processing. The detector is timed
separately on the detector ONNX per image size.

The baseline works the way the official demo does (demo.py): the hands of ONE image go through a
``torch.utils.data.DataLoader`` with batch size 16; the dataset item is the reference crop (a full-image
blurred, mirrored copy per hand, :func:`preprocessing.crop_hand_reference`), each batch is one fp32
PyTorch forward, then the same post-processing. Every row reports its speed-up over it and the mean/max
deviation of its vertices and joints (mm, MANO frame) from the plain fp32 PyTorch outputs on the same crops.

``run_weight_loading_bench`` measures how the weights are held (memory vs mmap, optionally locked): load
time, first forward, steady-state latency over paired calls with the page faults per call, and one call
after the weights were paged out (a stand-in for memory pressure).
"""

from __future__ import annotations

import ctypes
import json
import logging
import mmap
import os
import platform
import resource
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from errno import EINVAL
from pathlib import Path

import numpy as np
import psutil

from wilor_ros.core.backends.base import ReconstructorBackend, ReconstructorOutput
from wilor_ros.core.backends.registry import BACKEND_CHOICES
from wilor_ros.core.hand import camera
from wilor_ros.core.image import preprocessing
from wilor_ros.core.models.cpu_features import describe_bf16_support
from wilor_ros.core.pipeline import HandPipeline, make_backend
from wilor_ros.core.pipeline_config import ModelPaths
from wilor_ros.core.types import HandDetection, Side
from wilor_ros.tools.compare_backends import METRES_TO_MM, OFFICIAL_DEMO_BATCH, BackendSpec, concat_outputs

LOG = logging.getLogger(__name__)

MS = 1000.0
MB = float(1 << 20)
BASELINE = "baseline-eager"
DEFAULT_BACKENDS = BACKEND_CHOICES  # every runtime of core/backends/registry.py
DEFAULT_HANDS = (1, 2, 4)
DEFAULT_SIZES = ((640, 480), (1280, 720))
HAND_BOX_FRACTION = 0.22  # hand box side as a fraction of the image height (a hand at ~1 m)
STAGES = ("convert", "detect", "crop", "reconstruct", "postprocess")
LOADAVG_PATH = Path("/proc/loadavg")


@dataclass
class BenchConfig:
    model_dir: str | None = None  # None: a synthetic set of ``model_size`` under cache_dir
    model_size: str = "small"  # small | medium | full (synthetic only)
    cache_dir: str = "out/bench_models"
    # specs runtime[:precision][+compile][+graphs][+devcrop], or "baseline-eager" to place the baseline
    backends: tuple[str, ...] = DEFAULT_BACKENDS
    hands: tuple[int, ...] = DEFAULT_HANDS
    image_sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES  # (width, height)
    device: str | None = None  # None: cuda when available, else cpu
    precision: str | None = None  # for specs without one; None: fp16 for tensorrt, fp32 otherwise
    warmup: int = 3
    iterations: int = 20
    baseline: bool = True
    detector: bool = True
    accuracy: bool = True  # mm deviation of every row from plain fp32 PyTorch on the same crops
    threads: int | None = None  # torch / ONNX Runtime CPU threads (None: library default)
    weight_loading: str = "memory"  # pytorch rows: memory | mmap (the live node uses memory)
    budget_s: float | None = None  # ways not started within this many seconds are skipped (and say so)

    @classmethod
    def quick(cls, **overrides: object) -> BenchConfig:
        """CI-sized: two backends, small model, one image size, 1-2 hands, few iterations."""
        base = dict(
            backends=("pytorch", "onnxruntime"),
            hands=(1, 2),
            image_sizes=((640, 480),),
            warmup=1,
            iterations=2,
        )
        base.update(overrides)
        return cls(**base)  # type: ignore[arg-type]


@dataclass
class Deviation:
    """|row - fp32 PyTorch| over every vertex / joint coordinate of the row's hands, millimetres."""

    vertex_mean_mm: float
    vertex_max_mm: float
    joint_mean_mm: float
    joint_max_mm: float


@dataclass
class BenchRow:
    backend: str  # the spec as written (pytorch, pytorch:bf16+compile, ...) or baseline-eager
    precision: str
    image_size: tuple[int, int]
    hands: int
    stages_ms: dict[str, float]  # mean per stage
    total_ms: float
    fps: float
    peak_rss_mb: float
    gpu_peak_mb: float | None
    first_call_ms: float  # the first predict() of this image size and hand count (before warm-up)
    speedup_vs_baseline: float | None = None
    deviation: Deviation | None = None


@dataclass
class SetupRow:
    """What one spec cost before its first row: loading and (when asked) compiling / capturing."""

    backend: str
    load_s: float  # building the backend, warm-up included
    warmup_s: float  # of which torch.compile / CUDA-graph capture (0: none)


@dataclass
class DetectorRow:
    image_size: tuple[int, int]
    mean_ms: float
    fps: float


@dataclass
class BenchReport:
    machine: dict[str, object]
    config: dict[str, object]
    rows: list[BenchRow] = field(default_factory=list)
    setup_rows: list[SetupRow] = field(default_factory=list)
    detector_rows: list[DetectorRow] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # backend -> why it did not run

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


# ------------------------------------------------------------------ inputs
def synthetic_frame(width: int, height: int, seed: int = 0) -> np.ndarray:
    """height x width x 3 uint8: smooth random colours (a realistic blur workload, not a flat image)."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(height // 16, 1), max(width // 16, 1), 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def synthetic_boxes(width: int, height: int, count: int) -> list[HandDetection]:
    """``count`` hand boxes spread over the frame, alternating right/left."""
    side = HAND_BOX_FRACTION * height
    boxes = []
    for i in range(count):
        cx = width * (i + 1) / (count + 1)
        cy = height * (0.4 + 0.2 * (i % 2))
        box = np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], np.float32)
        boxes.append(HandDetection(box, Side.RIGHT if i % 2 == 0 else Side.LEFT, 1.0))
    return boxes


# ------------------------------------------------------------------ measurement
class MemoryMonitor:
    """Peak host RSS (psutil, sampled after every iteration) and peak CUDA memory via torch."""

    def __init__(self, cuda: bool) -> None:
        self.process = psutil.Process()
        self.cuda = cuda
        self.peak_rss = 0

    def reset(self) -> None:
        self.peak_rss = self.process.memory_info().rss
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats()

    def sample(self) -> None:
        self.peak_rss = max(self.peak_rss, self.process.memory_info().rss)

    def gpu_peak_mb(self) -> float | None:
        if not self.cuda:
            return None
        import torch

        return torch.cuda.max_memory_allocated() / MB


def _sync(cuda: bool) -> None:
    if cuda:
        import torch

        torch.cuda.synchronize()


def load_average() -> str:
    """/proc/loadavg's first three numbers ("1.02 0.80 0.51"), or "n/a" where there is none."""
    try:
        return " ".join(LOADAVG_PATH.read_text().split()[:3])
    except OSError:
        return "n/a"


StageFn = Callable[[], dict[str, float]]  # one image through one way -> seconds per stage


def measure(once: StageFn, cfg: BenchConfig, memory: MemoryMonitor) -> tuple[dict[str, float], float, float]:
    """(mean ms per stage, mean wall ms, first call ms): one call, ``warmup - 1`` more, then the timed
    ``iterations``."""
    cuda = memory.cuda
    start = time.perf_counter()
    once()
    _sync(cuda)
    first = time.perf_counter() - start
    for _ in range(cfg.warmup - 1):
        once()
    _sync(cuda)
    memory.reset()
    sums = dict.fromkeys(STAGES, 0.0)
    wall = 0.0
    for _ in range(cfg.iterations):
        start = time.perf_counter()
        stages = once()
        _sync(cuda)
        wall += time.perf_counter() - start
        for s in STAGES:
            sums[s] += stages[s]
        memory.sample()
    n = cfg.iterations
    return {s: v / n * MS for s, v in sums.items()}, wall / n * MS, first * MS


def pipeline_stages(pipeline: HandPipeline, frame: np.ndarray, boxes: list[HandDetection]) -> StageFn:
    """Our way: ``HandPipeline.predict`` with the boxes given."""

    def once() -> dict[str, float]:
        pipeline.predict(frame, boxes=boxes)
        timings = pipeline.last_timings
        return {s: getattr(timings, s) for s in STAGES}

    return once


class DemoHands:
    """The hands of ONE image as the official demo's dataset gives them (ViTDetDataset.__getitem__):
    item i = the reference crop of hand i (full-image blur and mirror, then the warp) with its box.

    A torch ``Dataset`` by duck typing (``__len__``/``__getitem__``), so this module imports torch
    lazily. ``crop_seconds`` accumulates the time spent cropping (for the stage columns).
    """

    def __init__(self, rgb: np.ndarray, boxes: list[HandDetection], rescale: float) -> None:
        self.rgb, self.boxes, self.rescale = rgb, boxes, rescale
        self.crop_seconds = 0.0

    def __len__(self) -> int:
        return len(self.boxes)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        det = self.boxes[index]
        ref = preprocessing.crop_hand_reference(self.rgb, det.box, det.side == Side.RIGHT, self.rescale)
        self.crop_seconds += time.perf_counter() - start
        return {
            "img": ref.crop,  # 3 x 256 x 256 float32
            "box_center": ref.box_center.astype(np.float32),
            "box_size": np.float64(ref.box_size),
            "side": np.int64(det.side),
            "affine": ref.affine,
        }


def demo_batches(dataset: DemoHands) -> Iterator[dict]:
    """The official demo's loader: DataLoader(dataset, batch_size=16, shuffle=False, num_workers=0)."""
    from torch.utils.data import DataLoader

    yield from DataLoader(dataset, batch_size=OFFICIAL_DEMO_BATCH, shuffle=False, num_workers=0)


def baseline_stages(
    pipeline: HandPipeline, frame: np.ndarray, boxes: list[HandDetection], cuda: bool
) -> StageFn:
    """The official demo's way on the same fp32 PyTorch weights (see the module docstring)."""
    backend = pipeline.backend

    def once() -> dict[str, float]:
        t0 = time.perf_counter()
        rgb = preprocessing.to_rgb(frame)
        t1 = time.perf_counter()
        dataset = DemoHands(rgb, boxes, pipeline.config.rescale_factor)
        outputs, batches, loop_s = [], [], 0.0
        loop_start = time.perf_counter()
        for batch in demo_batches(dataset):
            outputs.append(backend.infer_tensor(batch["img"].to(backend.device)))  # type: ignore[attr-defined]
            _sync(cuda)
            batches.append(batch)
        loop_s = time.perf_counter() - loop_start
        t2 = time.perf_counter()
        meta = preprocessing.CropMetadata(
            box_centers=np.concatenate([b["box_center"].numpy() for b in batches]),
            box_sizes=np.concatenate([b["box_size"].numpy() for b in batches]),
            sides=np.concatenate([b["side"].numpy() for b in batches]),
            affines=np.concatenate([b["affine"].numpy() for b in batches]),
            image_size=(rgb.shape[1], rgb.shape[0]),
        )
        output = concat_outputs(outputs)
        pipeline.postprocess(output, meta, boxes, camera.heuristic_intrinsics(*meta.image_size))
        t3 = time.perf_counter()
        return {
            "convert": t1 - t0,
            "detect": 0.0,
            "crop": dataset.crop_seconds,
            "reconstruct": loop_s - dataset.crop_seconds,  # forwards (+ the loader's collation)
            "postprocess": t3 - t2,
        }

    return once


def deviation(output: ReconstructorOutput, reference: ReconstructorOutput) -> Deviation:
    """Mean / max |output - reference| of vertices and joints (every coordinate), millimetres."""
    vertices = np.abs(output.vertices.astype(np.float64) - reference.vertices) * METRES_TO_MM
    joints = np.abs(output.keypoints_3d.astype(np.float64) - reference.keypoints_3d) * METRES_TO_MM
    return Deviation(float(vertices.mean()), float(vertices.max()), float(joints.mean()), float(joints.max()))


def time_detector(
    detector_path: Path, sizes: tuple[tuple[int, int], ...], cfg: BenchConfig, device: str
) -> list[DetectorRow]:
    from wilor_ros.core.image.detector import OnnxHandDetector

    detector = OnnxHandDetector(detector_path, device=device, threads=cfg.threads)
    rows = []
    for width, height in sizes:
        frame = synthetic_frame(width, height, seed=1)
        for _ in range(cfg.warmup):
            detector.detect(frame)
        start = time.perf_counter()
        for _ in range(cfg.iterations):
            detector.detect(frame)
        mean = (time.perf_counter() - start) / cfg.iterations
        rows.append(DetectorRow((width, height), mean * MS, 1.0 / mean))
    detector.close()
    return rows


# ------------------------------------------------------------------ driver
def resolve_model_dir(cfg: BenchConfig) -> Path:
    if cfg.model_dir is not None:
        return Path(cfg.model_dir)
    from wilor_ros.tools.synthetic_models import make_synthetic_models

    folder = Path(cfg.cache_dir) / cfg.model_size
    make_synthetic_models(folder, size=cfg.model_size, detector=cfg.detector)
    return folder


def cpu_model_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: str) -> dict[str, object]:
    import torch

    info: dict[str, object] = {
        "cpu": cpu_model_name(),
        "cpu_cores": psutil.cpu_count(logical=True),
        "cpu_bf16": describe_bf16_support(),
        "torch_threads": torch.get_num_threads(),
        "memory_gb": round(psutil.virtual_memory().total / (1 << 30), 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def parse_specs(cfg: BenchConfig) -> list[tuple[str, BackendSpec]]:
    """(name as given, parsed spec) for every benchmarked way, the baseline last unless ``backends``
    places it (as "baseline-eager"); ValueError for a malformed spec."""
    ways = [
        (text, BackendSpec.reference() if text == BASELINE else BackendSpec.parse(text, cfg.precision))
        for text in cfg.backends
    ]
    if cfg.baseline and BASELINE not in cfg.backends:
        ways.append((BASELINE, BackendSpec.reference()))
    return ways


def run_bench(cfg: BenchConfig) -> BenchReport:
    import torch

    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.startswith("cuda")
    ways = parse_specs(cfg)  # malformed specs fail before any model is built
    started = time.monotonic()
    model_dir = resolve_model_dir(cfg)
    if cfg.threads:  # after making synthetic models: ultralytics' detector export changes torch's threads
        torch.set_num_threads(cfg.threads)
    report = BenchReport(machine_info(device), {**asdict(cfg), "device": device, "model_dir": str(model_dir)})
    report.machine["loadavg_before"] = load_average()
    memory = MemoryMonitor(cuda)
    baselines: dict[tuple[tuple[int, int], int], float] = {}
    outputs: dict[tuple[str, tuple[int, int], int], ReconstructorOutput] = {}
    reference_name: str | None = None  # the row name whose outputs are the fp32 PyTorch reference

    for name, spec in ways:
        if cfg.budget_s is not None and time.monotonic() - started > cfg.budget_s:
            report.skipped[name] = f"time budget of {cfg.budget_s:.0f} s used up before it started"
            continue
        try:
            config = spec.pipeline_config(
                model_dir,
                device,
                use_detector=False,
                max_hands=max(cfg.hands),
                weight_loading=cfg.weight_loading,
            )
            start = time.perf_counter()
            backend = make_backend(config)
            load_s = time.perf_counter() - start
        except (RuntimeError, ValueError, ImportError) as exc:
            report.skipped[name] = str(exc).splitlines()[0]
            LOG.warning("bench: skipping %s: %s", name, report.skipped[name])
            continue
        report.setup_rows.append(SetupRow(name, load_s, backend.warmup_seconds))
        if spec.is_reference and reference_name is None:
            reference_name = name
        pipeline = HandPipeline(config, backend)
        try:
            for width, height in cfg.image_sizes:
                frame = synthetic_frame(width, height)
                for count in cfg.hands:
                    boxes = synthetic_boxes(width, height, count)
                    if name == BASELINE:
                        once = baseline_stages(pipeline, frame, boxes, cuda)
                    else:
                        once = pipeline_stages(pipeline, frame, boxes)
                    stages, wall, first = measure(once, cfg, memory)
                    row = BenchRow(
                        name, spec.precision, (width, height), count, stages, wall, MS / wall,
                        memory.peak_rss / MB, memory.gpu_peak_mb(), first,
                    )  # fmt: skip
                    if name == BASELINE:
                        baselines[((width, height), count)] = wall
                    report.rows.append(row)
                    if cfg.accuracy:
                        crops = preprocessing.crop_hands(preprocessing.to_rgb(frame), boxes).crops
                        outputs[(name, (width, height), count)] = backend.infer(crops)
                    LOG.info("bench %s %dx%d %d hand(s): %.1f ms", name, width, height, count, wall)
        finally:
            pipeline.close()
            del pipeline, backend  # free this model before the next one is built
            if spec.torch_compile:  # dynamo's caches hold the compiled model (and its frozen weights)
                torch._dynamo.reset()
    for row in report.rows:
        key = (tuple(row.image_size), row.hands)
        base = baselines.get(key)
        row.speedup_vs_baseline = None if base is None else base / row.total_ms
        if reference_name is not None and (row.backend, *key) in outputs:
            row.deviation = deviation(outputs[(row.backend, *key)], outputs[(reference_name, *key)])

    detector_path = model_dir / ModelPaths().detector
    if cfg.detector and detector_path.is_file():
        report.detector_rows = time_detector(detector_path, cfg.image_sizes, cfg, device)
    elif cfg.detector:
        report.skipped["detector"] = f"no detector ONNX at {detector_path}"
    report.machine["loadavg_after"] = load_average()
    return report


def _mm(dev: Deviation | None, which: str) -> str:
    if dev is None:
        return "-"
    return f"{getattr(dev, f'{which}_mean_mm'):.3f} / {getattr(dev, f'{which}_max_mm'):.3f}"


def format_bench_table(report: BenchReport) -> str:
    """Rich tables (pipeline rows, set-up costs, then the detector) as plain text."""
    from rich.console import Console
    from rich.table import Table

    m = report.machine
    where = m.get("gpu") or f"{m['cpu']}, bf16: {m['cpu_bf16']}, {m['torch_threads']} threads"
    table = Table(title=f"wilor_ros bench on {where} ({m['device']})")
    columns = ("backend", "prec", "image", "hands", *STAGES, "total ms", "FPS", "RSS MB", "GPU MB", "x base")
    for column in (*columns, "vert mm mean/max", "joint mm mean/max"):
        table.add_column(column, justify="left" if column in ("backend", "prec", "image") else "right")
    for r in report.rows:
        table.add_row(
            r.backend, r.precision, f"{r.image_size[0]}x{r.image_size[1]}", str(r.hands),
            *(f"{r.stages_ms[s]:.2f}" for s in STAGES), f"{r.total_ms:.1f}", f"{r.fps:.1f}",
            f"{r.peak_rss_mb:.0f}", "-" if r.gpu_peak_mb is None else f"{r.gpu_peak_mb:.0f}",
            "-" if r.speedup_vs_baseline is None else f"{r.speedup_vs_baseline:.2f}",
            _mm(r.deviation, "vertex"), _mm(r.deviation, "joint"),
        )  # fmt: skip
    console = Console(width=220, record=True, force_terminal=False)
    with console.capture() as capture:
        console.print(table)
        console.print(
            "mm: |row - pytorch fp32| on the same crops, MANO frame, every coordinate of every hand"
        )
        setup = Table(title="set-up per backend (first call = first row's image size and hand count)")
        for column in ("backend", "load s", "compile/capture warm-up s", "first call ms"):
            setup.add_column(column, justify="left" if column == "backend" else "right")
        for s in report.setup_rows:
            first = next((r.first_call_ms for r in report.rows if r.backend == s.backend), None)
            setup.add_row(
                s.backend, f"{s.load_s:.2f}", f"{s.warmup_s:.1f}", "-" if first is None else f"{first:.0f}"
            )
        console.print(setup)
        if report.detector_rows:
            det = Table(title="detector (ONNX Runtime, letterbox + network + NMS)")
            for column in ("image", "mean ms", "FPS"):
                det.add_column(column, justify="right")
            for d in report.detector_rows:
                det.add_row(f"{d.image_size[0]}x{d.image_size[1]}", f"{d.mean_ms:.1f}", f"{d.fps:.1f}")
            console.print(det)
        for name, why in report.skipped.items():
            console.print(f"skipped {name}: {why}")
        console.print(f"load average before: {m.get('loadavg_before')}, after: {m.get('loadavg_after')}")
    return capture.get()


def write_report(report: BenchReport | WeightLoadingReport, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.as_dict(), indent=2))
    return path


# ------------------------------------------------------------------ weight loading (memory vs mmap)
# madvise(2) advice that reclaims the given pages now (Linux >= 5.4): clean file-backed pages are dropped
# and must be read again; anonymous pages are swapped (nothing happens without swap); locked pages stay.
MADV_PAGEOUT = getattr(mmap, "MADV_PAGEOUT", 21)
POSIX_FADV_DONTNEED = getattr(os, "POSIX_FADV_DONTNEED", 4)


@dataclass
class WeightLoadingRow:
    mode: str  # mmap | memory | memory+lock
    load_s: float
    first_forward_s: float
    steady_ms: list[float]  # every paired call after the first
    steady_median_ms: float
    steady_max_ms: float
    faults_per_call: float  # minor + major page faults per steady call (page-ins show here)
    after_pageout_ms: float  # the call right after the weights were paged out
    after_pageout_faults: int
    pageout_refused_mb: float  # weights the kernel would not page out (locked)


@dataclass
class WeightLoadingReport:
    machine: dict[str, object]
    config: dict[str, object]
    rows: list[WeightLoadingRow] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _faults() -> int:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_minflt + usage.ru_majflt


def drop_file_cache(path: Path) -> None:
    """Ask the kernel to drop ``path``'s cached pages (those no process maps), so a load reads it cold."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def page_out(tensors: list) -> int:
    """madvise(MADV_PAGEOUT) over the storages of CPU ``tensors`` (a stand-in for memory pressure) ->
    bytes the kernel refused to page out (locked pages: EINVAL)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    page = mmap.PAGESIZE
    refused = 0
    for tensor in tensors:
        storage = tensor.untyped_storage()
        start = storage.data_ptr() // page * page
        end = storage.data_ptr() + storage.nbytes()
        if (
            end <= start
            or libc.madvise(ctypes.c_void_p(start), ctypes.c_size_t(end - start), MADV_PAGEOUT) == 0
        ):
            continue
        errno = ctypes.get_errno()
        if errno != EINVAL:
            raise RuntimeError(f"madvise(MADV_PAGEOUT) failed: {os.strerror(errno)}")
        refused += end - start
    return refused


def run_weight_loading_bench(
    model_dir: str | Path, calls: int = 10, hands: int = 1, lock: bool = True, threads: int | None = None
) -> WeightLoadingReport:
    """memory vs mmap (vs memory+lock) on the CPU: the three models are loaded one after another from a
    cold file cache, then called in turn ``calls`` times on the same crops (paired: each round runs every
    mode once), then each is called once more right after its weights were paged out."""
    import itertools

    import torch

    from wilor_ros.core.backends.torch_backend import TorchBackend, TorchOptions

    if threads:
        torch.set_num_threads(threads)
    paths = ModelPaths(model_dir=str(model_dir))
    checkpoint, mano = paths.resolve(paths.checkpoint), paths.resolve(paths.mano)
    modes = [("mmap", False), ("memory", False)] + ([("memory", True)] if lock else [])
    crops = torch.from_numpy(
        preprocessing.crop_hands(synthetic_frame(640, 480), synthetic_boxes(640, 480, hands)).crops
    )
    report = WeightLoadingReport(
        {**machine_info("cpu"), "loadavg_before": load_average()},
        {"model_dir": str(model_dir), "calls": calls, "hands": hands, "threads": threads},
    )
    backends: dict[str, ReconstructorBackend] = {}
    first: dict[str, float] = {}
    load: dict[str, float] = {}
    for loading, locked in modes:
        name = f"{loading}+lock" if locked else loading
        drop_file_cache(checkpoint)
        start = time.perf_counter()
        backend = TorchBackend.from_files(
            checkpoint, mano, options=TorchOptions(weight_loading=loading, lock_weights=locked)
        )
        load[name] = time.perf_counter() - start
        start = time.perf_counter()
        backend.infer_tensor(crops)
        first[name] = time.perf_counter() - start
        backends[name] = backend
    steady: dict[str, list[float]] = {name: [] for name in backends}
    faults: dict[str, int] = dict.fromkeys(backends, 0)
    for _ in range(calls):
        for name, backend in backends.items():
            before, start = _faults(), time.perf_counter()
            backend.infer_tensor(crops)  # type: ignore[attr-defined]
            steady[name].append((time.perf_counter() - start) * MS)
            faults[name] += _faults() - before
    for name, backend in backends.items():
        model = backend.model  # type: ignore[attr-defined]
        refused = page_out([t for t in itertools.chain(model.parameters(), model.buffers())])
        before, start = _faults(), time.perf_counter()
        backend.infer_tensor(crops)  # type: ignore[attr-defined]
        after_ms, after_faults = (time.perf_counter() - start) * MS, _faults() - before
        report.rows.append(
            WeightLoadingRow(
                mode=name,
                load_s=load[name],
                first_forward_s=first[name],
                steady_ms=steady[name],
                steady_median_ms=statistics.median(steady[name]),
                steady_max_ms=max(steady[name]),
                faults_per_call=faults[name] / calls,
                after_pageout_ms=after_ms,
                after_pageout_faults=after_faults,
                pageout_refused_mb=refused / MB,
            )
        )
    report.machine["loadavg_after"] = load_average()
    return report


def format_weight_loading_table(report: WeightLoadingReport) -> str:
    from rich.console import Console
    from rich.table import Table

    c = report.config
    table = Table(
        title=f"weight loading: {c['calls']} paired calls of {c['hands']} hand(s), {report.machine['cpu']}"
    )
    columns = ("mode", "load s", "first forward s", "steady median ms", "steady max ms", "faults/call",
               "after page-out ms", "faults after page-out")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "mode" else "right")
    for r in report.rows:
        table.add_row(
            r.mode, f"{r.load_s:.2f}", f"{r.first_forward_s:.2f}", f"{r.steady_median_ms:.0f}",
            f"{r.steady_max_ms:.0f}", f"{r.faults_per_call:.0f}", f"{r.after_pageout_ms:.0f}",
            str(r.after_pageout_faults),
        )  # fmt: skip
    console = Console(width=180, record=True, force_terminal=False)
    with console.capture() as capture:
        console.print(table)
        m = report.machine
        console.print(f"load average before: {m.get('loadavg_before')}, after: {m.get('loadavg_after')}")
    return capture.get()
