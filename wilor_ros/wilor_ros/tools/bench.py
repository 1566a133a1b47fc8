"""``wilor-ros bench``: per-stage latency, FPS and memory of every available backend.

For each backend (pytorch, onnxruntime, tensorrt when it can run), image size and hand count, the
pipeline runs on a synthetic frame with supplied boxes (so synthetic models work) and its
``StageTimings`` are averaged: image conversion, detector (0 here: boxes given), crop/normalise,
reconstructor, post-processing. The detector is timed separately on the detector ONNX per image size.

The baseline works the way the official demo does: per hand, a full-image blurred (and mirrored)
copy and the reference crop (:func:`preprocessing.crop_hand_reference`), one fp32 PyTorch forward
per hand, then the same post-processing; every row reports its speed-up over it.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import psutil

from wilor_ros.core import camera, preprocessing
from wilor_ros.core.backends.base import ReconstructorOutput
from wilor_ros.core.pipeline import HandPipeline, ModelPaths, PipelineConfig, StageTimings, make_backend
from wilor_ros.core.types import HandDetection, Side

LOG = logging.getLogger(__name__)

MS = 1000.0
MB = float(1 << 20)
BASELINE = "baseline-eager"
DEFAULT_BACKENDS = ("pytorch", "onnxruntime", "tensorrt")
DEFAULT_HANDS = (1, 2, 4)
DEFAULT_SIZES = ((640, 480), (1280, 720))
HAND_BOX_FRACTION = 0.22  # hand box side as a fraction of the image height (a hand at ~1 m)
STAGES = ("convert", "detect", "crop", "reconstruct", "postprocess")


@dataclass
class BenchConfig:
    model_dir: str | None = None  # None: a synthetic set of ``model_size`` under cache_dir
    model_size: str = "small"  # small | medium | full (synthetic only)
    cache_dir: str = "out/bench_models"
    backends: tuple[str, ...] = DEFAULT_BACKENDS
    hands: tuple[int, ...] = DEFAULT_HANDS
    image_sizes: tuple[tuple[int, int], ...] = DEFAULT_SIZES  # (width, height)
    device: str | None = None  # None: cuda when available, else cpu
    precision: str | None = None  # None: fp16 on GPU for tensorrt, fp32 otherwise
    warmup: int = 3
    iterations: int = 20
    baseline: bool = True
    detector: bool = True
    threads: int | None = None  # torch / ONNX Runtime CPU threads (None: library default)

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
class BenchRow:
    backend: str
    precision: str
    image_size: tuple[int, int]
    hands: int
    stages_ms: dict[str, float]  # mean per stage
    total_ms: float
    fps: float
    peak_rss_mb: float
    gpu_peak_mb: float | None
    speedup_vs_baseline: float | None = None


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

    def __init__(self, cuda: bool):
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


def time_pipeline(
    pipeline: HandPipeline,
    frame: np.ndarray,
    boxes: list[HandDetection],
    cfg: BenchConfig,
    memory: MemoryMonitor,
) -> tuple[dict[str, float], float]:
    """Mean StageTimings (ms) and mean wall time (ms) of ``cfg.iterations`` predict() calls."""
    cuda = memory.cuda
    for _ in range(cfg.warmup):
        pipeline.predict(frame, boxes=boxes)
    _sync(cuda)
    memory.reset()
    sums = StageTimings()
    wall = 0.0
    for _ in range(cfg.iterations):
        start = time.perf_counter()
        pipeline.predict(frame, boxes=boxes)
        _sync(cuda)
        wall += time.perf_counter() - start
        for stage in STAGES:
            setattr(sums, stage, getattr(sums, stage) + getattr(pipeline.last_timings, stage))
        memory.sample()
    n = cfg.iterations
    return {s: getattr(sums, s) / n * MS for s in STAGES}, wall / n * MS


def time_baseline(
    pipeline: HandPipeline,
    frame: np.ndarray,
    boxes: list[HandDetection],
    cfg: BenchConfig,
    memory: MemoryMonitor,
) -> tuple[dict[str, float], float]:
    """The official-demo way on the same (PyTorch fp32) weights: reference crop + one forward per hand."""

    def once() -> dict[str, float]:
        t0 = time.perf_counter()
        rgb = preprocessing.to_rgb(frame)
        t1 = time.perf_counter()
        results, crop_s, net_s = [], 0.0, 0.0
        for det in boxes:
            c0 = time.perf_counter()
            ref = preprocessing.crop_hand_reference(
                rgb, det.box, det.side == Side.RIGHT, pipeline.config.rescale_factor
            )
            c1 = time.perf_counter()
            results.append((ref, pipeline.backend.infer(ref.crop[None])))
            _sync(memory.cuda)
            crop_s += c1 - c0
            net_s += time.perf_counter() - c1
        t2 = time.perf_counter()
        batch = preprocessing.CropBatch(
            crops=np.stack([r.crop for r, _ in results]),
            box_centers=np.stack([r.box_center for r, _ in results]),
            box_sizes=np.array([r.box_size for r, _ in results]),
            sides=np.array([int(d.side) for d in boxes]),
            affines=np.stack([r.affine for r, _ in results]),
            image_size=(rgb.shape[1], rgb.shape[0]),
        )
        output = ReconstructorOutput(
            **{n: np.concatenate([getattr(o, n) for _, o in results]) for n in ReconstructorOutput.names()}
        )
        intrinsics = camera.heuristic_intrinsics(*batch.image_size)
        pipeline.postprocess(output, batch, boxes, intrinsics)
        t3 = time.perf_counter()
        return {
            "convert": t1 - t0,
            "detect": 0.0,
            "crop": crop_s,
            "reconstruct": net_s,
            "postprocess": t3 - t2,
        }

    for _ in range(cfg.warmup):
        once()
    memory.reset()
    sums = dict.fromkeys(STAGES, 0.0)
    wall = 0.0
    for _ in range(cfg.iterations):
        start = time.perf_counter()
        stages = once()
        wall += time.perf_counter() - start
        for s in STAGES:
            sums[s] += stages[s]
        memory.sample()
    n = cfg.iterations
    return {s: v / n * MS for s, v in sums.items()}, wall / n * MS


def time_detector(
    detector_path: Path, sizes: tuple[tuple[int, int], ...], cfg: BenchConfig, device: str
) -> list[DetectorRow]:
    from wilor_ros.core.detector import OnnxHandDetector

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


def machine_info(device: str) -> dict[str, object]:
    import torch

    info: dict[str, object] = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_cores": psutil.cpu_count(logical=True),
        "memory_gb": round(psutil.virtual_memory().total / (1 << 30), 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": device,
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def precision_for(backend: str, cfg: BenchConfig, device: str) -> str:
    if cfg.precision is not None:
        return cfg.precision
    return "fp16" if backend == "tensorrt" and device.startswith("cuda") else "fp32"


def run_bench(cfg: BenchConfig) -> BenchReport:
    import torch

    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    cuda = device.startswith("cuda")
    model_dir = resolve_model_dir(cfg)
    report = BenchReport(machine_info(device), {**asdict(cfg), "device": device, "model_dir": str(model_dir)})
    memory = MemoryMonitor(cuda)
    baselines: dict[tuple[tuple[int, int], int], float] = {}

    names = list(cfg.backends) + ([BASELINE] if cfg.baseline else [])
    for name in names:
        runtime = "pytorch" if name == BASELINE else name
        precision = "fp32" if name == BASELINE else precision_for(runtime, cfg, device)
        config = PipelineConfig(
            models=ModelPaths(model_dir=str(model_dir)),
            backend=runtime,
            device=device,
            precision=precision,
            use_detector=False,
            max_hands=max(cfg.hands),
        )
        try:
            backend = make_backend(config)
        except (RuntimeError, ValueError, ImportError) as exc:
            report.skipped[name] = str(exc).splitlines()[0]
            LOG.warning("bench: skipping %s: %s", name, report.skipped[name])
            continue
        pipeline = HandPipeline(config, backend)
        try:
            for width, height in cfg.image_sizes:
                frame = synthetic_frame(width, height)
                for count in cfg.hands:
                    boxes = synthetic_boxes(width, height, count)
                    timer = time_baseline if name == BASELINE else time_pipeline
                    stages, wall = timer(pipeline, frame, boxes, cfg, memory)
                    row = BenchRow(
                        name, precision, (width, height), count, stages, wall, MS / wall,
                        memory.peak_rss / MB, memory.gpu_peak_mb(),
                    )  # fmt: skip
                    if name == BASELINE:
                        baselines[((width, height), count)] = wall
                    report.rows.append(row)
                    LOG.info("bench %s %dx%d %d hand(s): %.1f ms", name, width, height, count, wall)
        finally:
            pipeline.close()
    for row in report.rows:
        base = baselines.get((tuple(row.image_size), row.hands))
        row.speedup_vs_baseline = None if base is None else base / row.total_ms

    detector_path = model_dir / ModelPaths().detector
    if cfg.detector and detector_path.is_file():
        report.detector_rows = time_detector(detector_path, cfg.image_sizes, cfg, device)
    elif cfg.detector:
        report.skipped["detector"] = f"no detector ONNX at {detector_path}"
    return report


def format_bench_table(report: BenchReport) -> str:
    """Rich tables (pipeline rows, then the detector) as plain text."""
    from rich.console import Console
    from rich.table import Table

    where = report.machine.get("gpu") or report.machine["cpu"]
    table = Table(title=f"wilor_ros bench on {where} ({report.machine['device']})")
    for column in (
        "backend",
        "prec",
        "image",
        "hands",
        *STAGES,
        "total ms",
        "FPS",
        "RSS MB",
        "GPU MB",
        "x base",
    ):
        table.add_column(column, justify="left" if column in ("backend", "prec", "image") else "right")
    for r in report.rows:
        table.add_row(
            r.backend, r.precision, f"{r.image_size[0]}x{r.image_size[1]}", str(r.hands),
            *(f"{r.stages_ms[s]:.2f}" for s in STAGES), f"{r.total_ms:.1f}", f"{r.fps:.1f}",
            f"{r.peak_rss_mb:.0f}", "-" if r.gpu_peak_mb is None else f"{r.gpu_peak_mb:.0f}",
            "-" if r.speedup_vs_baseline is None else f"{r.speedup_vs_baseline:.2f}",
        )  # fmt: skip
    console = Console(width=180, record=True, force_terminal=False)
    with console.capture() as capture:
        console.print(table)
        if report.detector_rows:
            det = Table(title="detector (ONNX Runtime, letterbox + network + NMS)")
            for column in ("image", "mean ms", "FPS"):
                det.add_column(column, justify="right")
            for d in report.detector_rows:
                det.add_row(f"{d.image_size[0]}x{d.image_size[1]}", f"{d.mean_ms:.1f}", f"{d.fps:.1f}")
            console.print(det)
        for name, why in report.skipped.items():
            console.print(f"skipped {name}: {why}")
    return capture.get()


def write_report(report: BenchReport, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.as_dict(), indent=2))
    return path
