"""``python -m wilor_ros.tools.bench_memory``: peak host-memory growth of one frame, up to 7680x4320.

For every frame size and stage a fresh Python process makes an rgb8 frame (smooth random colours)
with two close-up hands (boxes of :data:`HAND_FRACTION` of the frame height, one right, one left:
crops far above the anti-alias blur threshold), runs the stage once on a small frame (imports, lazy
initialisation), resets the kernel's peak-RSS mark (``/proc/self/clear_refs``, Linux), runs the stage
once on the big frame and reports the peak RSS reached (VmHWM) minus the RSS before the call: the
memory the frame costs beyond its own bytes, which the caller already holds.

Stages:
* ``crop``: :func:`preprocessing.crop_hands`, the CPU crop the pipeline uses;
* ``crop-torch``: :func:`device_preprocessing.crop_hands_torch` on CPU tensors (on a GPU its working
  memory is device memory; here it shows the same algorithm's footprint on the host);
* ``pipeline``: ``HandPipeline.predict`` with the boxes given (ONNX Runtime backend, synthetic small
  models unless ``--model-dir``): image conversion, crops, reconstructor, post-processing.

Speed figures (ms) are from the same single call and are noisy; use ``wilor-ros bench`` for speed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MB = float(1 << 20)
MS = 1000.0
HAND_FRACTION = 0.45  # hand box side / frame height: a hand close to the camera
WARMUP_SIZE = (320, 240)
DEFAULT_SIZES = ((640, 480), (1280, 720), (1920, 1080), (3840, 2160), (7680, 4320))
STAGES = ("crop", "crop-torch", "pipeline")
CHILD_TIMEOUT_S = 900
CLEAR_REFS_RESET_PEAK = "5"  # proc(5): writing 5 resets the peak resident set size (VmHWM)
RGB_BYTES = 3


@dataclass
class MemoryRow:
    stage: str
    width: int
    height: int
    frame_mb: float
    peak_growth_mb: float
    seconds: float

    @property
    def times_frame(self) -> float:
        return self.peak_growth_mb / self.frame_mb


# ------------------------------------------------------------------ inside the measuring process
def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field} line")


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text(CLEAR_REFS_RESET_PEAK)
    except OSError as exc:
        raise RuntimeError(
            f"cannot reset the peak-RSS mark ({exc}); this benchmark needs Linux's /proc/self/clear_refs"
        ) from exc


def frame_and_hands(width: int, height: int) -> tuple[np.ndarray, list]:
    """height x width x 3 uint8 frame and two close-up hands (right at 30 %, left at 70 % of the width)."""
    from wilor_ros.core.types import HandDetection, Side
    from wilor_ros.tools.bench import synthetic_frame

    side = HAND_FRACTION * height
    hands = []
    for fraction, hand_side in ((0.3, Side.RIGHT), (0.7, Side.LEFT)):
        cx, cy = fraction * width, 0.5 * height
        box = np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], np.float32)
        hands.append(HandDetection(box, hand_side, 1.0))
    return synthetic_frame(width, height), hands


def _stage_function(stage: str, model_dir: str) -> Callable[[np.ndarray, list], object]:
    from wilor_ros.core.image import preprocessing

    if stage == "crop":
        return lambda frame, hands: preprocessing.crop_hands(frame, hands)
    if stage == "crop-torch":
        import torch

        from wilor_ros.core.image.device_preprocessing import crop_hands_torch

        torch.set_num_threads(1)
        return lambda frame, hands: crop_hands_torch(torch.from_numpy(frame), hands)
    if stage == "pipeline":
        from wilor_ros.core.config import load_config
        from wilor_ros.core.pipeline import HandPipeline
        from wilor_ros.core.pipeline_config import PipelineConfig

        config = load_config(
            PipelineConfig,
            None,
            {"models.model_dir": model_dir, "backend": "onnxruntime", "use_detector": False},
        )
        pipeline = HandPipeline.from_config(config)
        return lambda frame, hands: pipeline.predict(frame, boxes=hands)
    raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")


def measure(stage: str, width: int, height: int, model_dir: str) -> MemoryRow:
    """Run ``stage`` once on a width x height frame in THIS process -> its peak RSS growth."""
    run = _stage_function(stage, model_dir)
    run(*frame_and_hands(*WARMUP_SIZE))
    frame, hands = frame_and_hands(width, height)
    before_kb = _status_kb("VmRSS")
    _reset_peak()
    start = time.perf_counter()
    result = run(frame, hands)
    seconds = time.perf_counter() - start
    peak_kb = _status_kb("VmHWM")
    del result
    return MemoryRow(stage, width, height, frame.nbytes / MB, (peak_kb - before_kb) * 1024 / MB, seconds)


# ------------------------------------------------------------------ driver
def run_child(stage: str, width: int, height: int, model_dir: str) -> MemoryRow:
    """``measure`` in a fresh interpreter (no allocator state or caches from earlier rows)."""
    command = [
        sys.executable,
        "-m",
        "wilor_ros.tools.bench_memory",
        "--child",
        stage,
        str(width),
        str(height),
    ]
    command += ["--model-dir", model_dir]
    result = subprocess.run(command, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    if result.returncode != 0:
        raise RuntimeError(f"{stage} at {width}x{height} failed:\n{result.stderr[-3000:]}")
    return MemoryRow(**json.loads(result.stdout.strip().splitlines()[-1]))


def format_table(rows: list[MemoryRow]) -> str:
    lines = [
        "| stage | frame | frame MB | peak growth MB | x frame | ms |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.stage} | {r.width}x{r.height} | {r.frame_mb:.1f} | {r.peak_growth_mb:.1f} | "
            f"{r.times_frame:.2f} | {r.seconds * MS:.0f} |"
        )
    return "\n".join(lines)


def _parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m wilor_ros.tools.bench_memory", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--sizes", nargs="+", type=_parse_size, default=list(DEFAULT_SIZES), help="WxH frames"
    )
    parser.add_argument("--stages", nargs="+", choices=STAGES, default=list(STAGES))
    parser.add_argument("--model-dir", default=None, help="models for 'pipeline' (default: synthetic small)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    parser.add_argument("--child", nargs=3, metavar=("STAGE", "W", "H"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        stage, width, height = args.child
        row = measure(stage, int(width), int(height), args.model_dir or "")
        print(json.dumps(row.__dict__))
        return 0
    with tempfile.TemporaryDirectory(prefix="wilor-bench-memory-") as scratch:
        model_dir = args.model_dir
        if model_dir is None and "pipeline" in args.stages:
            from wilor_ros.tools.synthetic_models import make_synthetic_models

            model_dir = str(Path(scratch) / "models")
            make_synthetic_models(model_dir, size="small", detector=False)
        rows = []
        for width, height in args.sizes:
            for stage in args.stages:
                rows.append(run_child(stage, width, height, model_dir or ""))
                print(format_table(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(format_table(rows))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
