"""What detector skipping saves: frames/s and detector calls per frame with and without it.

``bench_detector_skipping`` renders a synthetic hand moving across the image
(``core.image.render.render_synthetic_hand_image``) and runs the same frames through a
``TemporalHandPipeline`` twice: detector on every frame, and MediaPipe-style skipping (the
detector every ``redetect_every_n_frames`` frames, tracked boxes in between).

The detector: the pipeline's own ONNX detector when it has one. The synthetic detector
(``make-synthetic-models``) is an untrained YOLO that finds nothing, so its real inference cost
is paid on every call but the boxes it returns are replaced by the rendered hand's true box
(``TimedTruthDetector``): without that, no hand would ever be tracked and skipping could not
start. Only without any detector ONNX a cost-free stand-in gives the true boxes, and the table
says so (then the speed-up shown is the reconstructor's alone).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wilor_ros.core.backends.registry import BACKEND_CHOICES
from wilor_ros.core.pipeline import HandPipeline
from wilor_ros.core.temporal.temporal_pipeline import TemporalConfig, TemporalHandPipeline
from wilor_ros.core.temporal.tracks import TrackerConfig
from wilor_ros.core.types import CameraIntrinsics, HandDetection, Side

if TYPE_CHECKING:
    from wilor_ros.core.image.detector import HandDetector

DEFAULT_FRAMES = 30
DEFAULT_FPS = 30.0
HAND_SPEED_M_S = 0.15  # across the image, a calm teleoperation motion
HAND_DEPTH_M = 0.5


@dataclass(frozen=True)
class SyntheticFrame:
    image: np.ndarray  # H x W x 3 RGB
    stamp: float  # seconds
    box: np.ndarray  # (4,) tight XYXY box of the rendered hand
    side: Side


def moving_hand_frames(
    mano_path: str | Path,
    frames: int = DEFAULT_FRAMES,
    fps: float = DEFAULT_FPS,
    image_size: tuple[int, int] = (640, 480),
    intrinsics: CameraIntrinsics | None = None,
) -> list[SyntheticFrame]:
    """A right hand rendered at ``HAND_DEPTH_M`` moving right at ``HAND_SPEED_M_S``."""
    from wilor_ros.core.image.render import render_synthetic_hand_image

    out = []
    for i in range(frames):
        t = i / fps
        shot = render_synthetic_hand_image(
            mano_path,
            image_size=image_size,
            intrinsics=intrinsics,
            transl=np.array([-0.1 + HAND_SPEED_M_S * t, 0.0, HAND_DEPTH_M]),
        )
        out.append(SyntheticFrame(shot.image, t, shot.box, shot.side))
    return out


class TimedTruthDetector:
    """A HandDetector that runs a real detector for its cost and answers with the rendered hand's
    true box.

    ``inner`` None: a cost-free stand-in (the table then marks the detector as not timed).
    """

    def __init__(self, inner: HandDetector | None) -> None:
        self.inner = inner
        self.truth: list[HandDetection] = []
        self.calls = 0
        self.seconds = 0.0

    def detect(self, image_rgb: np.ndarray) -> list[HandDetection]:
        return self.detect_batch([image_rgb])[0]

    def detect_batch(self, images_rgb: Sequence[np.ndarray]) -> list[list[HandDetection]]:
        self.calls += len(images_rgb)
        if self.inner is not None:
            start = time.perf_counter()
            self.inner.detect_batch(images_rgb)
            self.seconds += time.perf_counter() - start
        return [list(self.truth) for _ in images_rgb]

    def reconfigure(self, conf_threshold: float | None = None, iou_threshold: float | None = None) -> None:
        if self.inner is not None:
            self.inner.reconfigure(conf_threshold, iou_threshold)

    def close(self) -> None:
        """The inner detector belongs to the pipeline it came from, which closes it."""


@dataclass(frozen=True)
class SkippingResult:
    mode: str  # "detector every frame" | "detector skipping"
    frames: int
    fps: float  # frames per second of the whole temporal pipeline (predict + tracking + filter)
    ms_per_frame: float
    detector_calls: int
    detector_calls_per_frame: float
    detector_ms_per_frame: float  # NaN when the detector stand-in was used
    frames_with_hand: int


def bench_detector_skipping(
    pipeline: HandPipeline,
    frames: list[SyntheticFrame],
    redetect_every_n_frames: int = 10,
    warmup: int = 2,
) -> list[SkippingResult]:
    """Time ``frames`` through ``pipeline`` without and with detector skipping.

    The pipeline's detector (if any) is wrapped in ``TimedTruthDetector``; it is restored
    afterwards. ``warmup`` frames run first (not timed) so one-off costs do not count.
    """
    if not frames:
        raise ValueError("bench_detector_skipping needs at least one frame")
    original = pipeline.detector
    detector = TimedTruthDetector(original)
    pipeline.detector = detector
    results = []
    try:
        for mode, skipping in (("detector every frame", False), ("detector skipping", True)):
            config = TemporalConfig(
                detector_skipping=skipping,
                tracker=TrackerConfig(min_hits=1, redetect_every_n_frames=redetect_every_n_frames),
            )
            for frame in frames[:warmup]:
                detector.truth = [HandDetection(frame.box, frame.side, 0.9)]
                TemporalHandPipeline(pipeline, config).process(frame.image, frame.stamp)
            temporal = TemporalHandPipeline(pipeline, config)
            detector.calls, detector.seconds = 0, 0.0
            with_hand = 0
            start = time.perf_counter()
            for frame in frames:
                detector.truth = [HandDetection(frame.box, frame.side, 0.9)]
                with_hand += bool(temporal.process(frame.image, frame.stamp))
            elapsed = time.perf_counter() - start
            count = len(frames)
            results.append(
                SkippingResult(
                    mode=mode,
                    frames=count,
                    fps=count / elapsed,
                    ms_per_frame=1e3 * elapsed / count,
                    detector_calls=detector.calls,
                    detector_calls_per_frame=detector.calls / count,
                    detector_ms_per_frame=1e3 * detector.seconds / count
                    if original is not None
                    else float("nan"),
                    frames_with_hand=with_hand,
                )
            )
    finally:
        pipeline.detector = original
    return results


def format_table(results: list[SkippingResult], detector_timed: bool) -> str:
    """A plain-text table of ``bench_detector_skipping`` results."""
    header = (
        f"{'mode':<22} {'frames':>6} {'fps':>8} {'ms/frame':>9} {'det calls/frame':>15} {'det ms/frame':>12}"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        det_ms = f"{r.detector_ms_per_frame:12.2f}" if detector_timed else f"{'not timed':>12}"
        lines.append(
            f"{r.mode:<22} {r.frames:>6d} {r.fps:>8.2f} {r.ms_per_frame:>9.2f} "
            f"{r.detector_calls_per_frame:>15.2f} {det_ms}"
        )
    if len(results) == 2 and results[1].fps > 0:
        lines.append(f"speed-up with skipping: {results[1].fps / results[0].fps:.2f}x")
    if not detector_timed:
        lines.append("no detector ONNX: a cost-free stand-in gave the boxes (detector cost not included)")
    return "\n".join(lines)


def run_skipping_bench(
    pipeline: HandPipeline,
    mano_path: str | Path,
    frames: int = DEFAULT_FRAMES,
    redetect_every_n_frames: int = 10,
    image_size: tuple[int, int] = (640, 480),
) -> tuple[list[SkippingResult], str]:
    """Render the moving-hand sequence, benchmark, and return (results, table). This is what
    ``wilor-ros bench --detector-skipping`` calls."""
    sequence = moving_hand_frames(mano_path, frames=frames, image_size=image_size)
    results = bench_detector_skipping(pipeline, sequence, redetect_every_n_frames)
    return results, format_table(results, detector_timed=pipeline.detector is not None)


def main(argv: list[str] | None = None) -> int:
    """``python -m wilor_ros.tools.bench_temporal --model-dir DIR``: print the table."""
    import argparse

    from wilor_ros.core.config import load_config
    from wilor_ros.core.pipeline_config import ModelPaths, PipelineConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, help="models (detector.onnx optional, MANO_RIGHT.pkl)")
    parser.add_argument("--backend", default="onnxruntime", choices=BACKEND_CHOICES)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--frames", type=int, default=DEFAULT_FRAMES)
    parser.add_argument("--redetect-every", type=int, default=10)
    args = parser.parse_args(argv)
    paths = ModelPaths(model_dir=args.model_dir)
    overrides = {"models.model_dir": args.model_dir, "backend": args.backend, "device": args.device}
    config = load_config(
        PipelineConfig, None, {**overrides, "use_detector": paths.resolve(paths.detector).is_file()}
    )
    pipeline = HandPipeline.from_config(config)
    try:
        _, table = run_skipping_bench(pipeline, paths.resolve(paths.mano), args.frames, args.redetect_every)
    finally:
        pipeline.close()
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
