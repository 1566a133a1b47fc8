"""``wilor-ros bench --offline``: frames per second of ``process`` versus the node's per-frame path.

One bag is recorded (the kit's photo ``test1.jpg`` panning, or a plain picture when the kit is
absent; boxes recorded beside the images when the models have no real detector), then, with ONE
pipeline (same backend, same models, warmed up):

* per-frame: every image message is read, converted (``ros/image_conversion``) and pushed
  through ``TemporalHandPipeline.process`` one by one, as the node's worker does;
* process: ``offline.runner.process`` on the same bag, end to end (decoding thread, batched
  reconstruction, sequence stage, writing the output bag and hands.npz); its first pass alone
  is reported too.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from wilor_ros.core.pipeline import HandPipeline
from wilor_ros.core.temporal.temporal_pipeline import TemporalHandPipeline
from wilor_ros.core.types import HandDetection, Side
from wilor_ros.offline.runner import ProcessConfig, process
from wilor_ros.offline.sources import BagSource
from wilor_ros.tools.synthetic_bag import BOXES_TOPIC, shifted_photo_frames, write_image_bag

KIT_PHOTO = Path("demo_images") / "test1.jpg"
KIT_BOXES = "demo_boxes.json"
PLAIN_SIZE = (360, 480)  # H, W of the fallback picture
PLAIN_BOXES = (
    HandDetection(np.array([42, 221, 129, 360], np.float32), Side.LEFT),
    HandDetection(np.array([271, 165, 398, 274], np.float32), Side.RIGHT),
)


@dataclass(frozen=True)
class OfflineBenchResult:
    frames: int
    hands_per_frame: float
    image_size: tuple[int, int]  # W, H
    per_frame_s: float
    process_s: float
    first_pass_s: float
    batch_frames: int

    @property
    def ratio(self) -> float:
        return self.per_frame_s / self.process_s


def bench_frames(reference_dir: Path | None, count: int) -> list:
    """The recorded frames: the kit's photo with its boxes, else a plain picture."""
    if reference_dir is not None and (reference_dir / KIT_PHOTO).is_file():
        from wilor_ros.tools.demo import load_boxes_file

        rgb = cv2.cvtColor(cv2.imread(str(reference_dir / KIT_PHOTO)), cv2.COLOR_BGR2RGB)
        boxes = load_boxes_file(reference_dir / KIT_BOXES)[KIT_PHOTO.name]
    else:
        rgb = np.random.default_rng(0).integers(0, 255, (*PLAIN_SIZE, 3), dtype=np.uint8)
        boxes = list(PLAIN_BOXES)
    return shifted_photo_frames(rgb, boxes, count)


def run_offline_bench(
    pipeline: HandPipeline,
    workdir: Path,
    frames: int = 60,
    batch_frames: int = 8,
    reference_dir: Path | None = None,
) -> OfflineBenchResult:
    """Record a bag in ``workdir``, time both paths on it with ``pipeline`` (see module doc)."""
    workdir = Path(workdir)
    shutil.rmtree(workdir, ignore_errors=True)
    recorded = bench_frames(reference_dir, frames)
    bag = write_image_bag(workdir / "input", recorded, "mcap")
    use_boxes = pipeline.detector is None
    boxes_topic = BOXES_TOPIC if use_boxes else None
    # warm-up (sessions, allocators) outside both timings
    pipeline.predict(recorded[0].rgb, boxes=recorded[0].boxes if use_boxes else None)

    source = BagSource(bag, boxes_topic=boxes_topic)
    temporal = TemporalHandPipeline(pipeline)
    hands = 0
    start = time.perf_counter()
    for frame in source.frames():
        out = temporal.process(frame.rgb, frame.stamp_ns * 1e-9, frame.intrinsics, frame.boxes)
        hands += len(out)
    per_frame_s = time.perf_counter() - start

    config = ProcessConfig(boxes_topic=boxes_topic, batch_frames=batch_frames)
    summary = process(bag, workdir / "out", config, pipeline, show_progress=False)
    return OfflineBenchResult(
        frames=len(recorded),
        hands_per_frame=hands / len(recorded),
        image_size=(recorded[0].rgb.shape[1], recorded[0].rgb.shape[0]),
        per_frame_s=per_frame_s,
        process_s=summary.total_seconds,
        first_pass_s=summary.pass1_seconds,
        batch_frames=batch_frames,
    )


def format_offline_bench(result: OfflineBenchResult, description: str) -> str:
    n = result.frames
    rows = [
        ("node per-frame path (TemporalHandPipeline.process)", result.per_frame_s),
        (f"process, end to end (batch {result.batch_frames}, writes bag + npz)", result.process_s),
        ("process, first pass only (decode + reconstruct + track)", result.first_pass_s),
    ]
    width = max(len(r[0]) for r in rows)
    lines = [
        f"{n} frames {result.image_size[0]}x{result.image_size[1]}, "
        f"{result.hands_per_frame:.1f} hands/frame, "
        f"{description}",
        f"{'path':<{width}}  {'seconds':>8}  {'frames/s':>9}",
    ]
    lines += [f"{name:<{width}}  {s:>8.2f}  {n / s:>9.1f}" for name, s in rows]
    lines.append(f"process / per-frame speed ratio: {result.ratio:.2f}x")
    lines.append("load average (1, 5, 15 min): " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    return "\n".join(lines)
