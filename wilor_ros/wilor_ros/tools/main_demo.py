"""What ``make demo`` runs: the main job with the models in models/ when present, otherwise
with synthetic models (clearly labelled) and boxes supplied from a file."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wilor_ros.core.config import load_config
from wilor_ros.core.files.model_files import (
    DETECTOR_PT,
    MANO_RIGHT,
    RECONSTRUCTOR_CKPT,
    MissingModelFilesError,
    check_model_files,
)
from wilor_ros.core.pipeline import HandPipeline
from wilor_ros.core.pipeline_config import PipelineConfig

if TYPE_CHECKING:
    from wilor_ros.core.types import HandDetection
    from wilor_ros.tools.demo import DemoFrame

LOG = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]


def reference_dir() -> Path:
    """The parity kit (with real demo photos) beside the checkout, or $WILOR_REFERENCE."""
    return Path(os.environ.get("WILOR_REFERENCE", REPO_ROOT.parent / "shared" / "reference"))


def render_sample_images(folder: Path, mano_path: Path, count: int = 3, seed: int = 0) -> Path:
    """Render images of the synthetic hand (when no real photos are available) and write a
    boxes file for them; returns the boxes file."""
    import cv2

    from wilor_ros.core.image.render import render_synthetic_hand_image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    boxes = {}
    for index in range(count):
        side = "right" if index % 2 == 0 else "left"
        sample = render_synthetic_hand_image(
            mano_path,
            hand_pose=rng.normal(0.0, 0.15, (15, 3)),
            side=side,
            depth=float(rng.uniform(0.35, 0.6)),
        )
        name = f"synthetic_hand_{index}.png"
        cv2.imwrite(str(folder / name), cv2.cvtColor(sample.image, cv2.COLOR_RGB2BGR))
        boxes[name] = {"hands": [{"box_xyxy": [float(v) for v in sample.box], "side": side}]}
    boxes_file = folder / "boxes.json"
    boxes_file.write_text(json.dumps(boxes, indent=1))
    return boxes_file


def run_main_demo(model_dir: Path, out_dir: Path) -> int:
    from wilor_ros.tools.demo import load_boxes_file, run_demo

    print("wilor_ros: real-time 3D hands for ROS 2 (WiLoR detector + ViT + MANO).")
    print("  node:   ros2 launch wilor_ros wilor.launch.py   (topics: hands, /tf, markers, debug_image)")
    print(f"  models: {model_dir}")
    licensed = [
        (model_dir / DETECTOR_PT.default_name, DETECTOR_PT),
        (model_dir / RECONSTRUCTOR_CKPT.default_name, RECONSTRUCTOR_CKPT),
        (model_dir / MANO_RIGHT.default_name, MANO_RIGHT),
    ]
    kit = reference_dir()
    photos = kit / "demo_images"
    try:
        check_model_files(licensed)
        real = True
    except MissingModelFilesError as exc:
        real = False
        print(str(exc))

    if real:
        from wilor_ros.tools.model_export import export_all

        export_all(model_dir)
        config = load_config(PipelineConfig, None, {"models.model_dir": str(model_dir), "max_hands": 8})
        boxes_file = None
        if photos.is_dir():
            inputs = [str(photos)]
        else:
            boxes_file = render_sample_images(out_dir / "inputs", model_dir / MANO_RIGHT.default_name)
            inputs = [str(out_dir / "inputs")]
    else:
        from wilor_ros.tools.synthetic_models import make_synthetic_models

        synthetic_dir = model_dir / "synthetic"
        print(
            f"Running the demo on SYNTHETIC models ({synthetic_dir}); the hands drawn are not real estimates."
        )
        make_synthetic_models(synthetic_dir, detector=False)
        config = load_config(
            PipelineConfig,
            None,
            {"models.model_dir": str(synthetic_dir), "use_detector": False, "max_hands": 8},
        )
        if photos.is_dir() and (kit / "demo_boxes.json").is_file():
            print(f"Boxes come from {kit / 'demo_boxes.json'} (a synthetic detector finds nothing).")
            inputs, boxes_file = [str(photos)], kit / "demo_boxes.json"
        else:
            print(f"No demo photos at {photos}: rendering images of the synthetic hand instead.")
            boxes_file = render_sample_images(out_dir / "inputs", synthetic_dir / MANO_RIGHT.default_name)
            inputs = [str(out_dir / "inputs")]

    pipeline = HandPipeline.from_config(config)
    boxes = load_boxes_file(boxes_file) if boxes_file else None
    results = run_demo(pipeline, inputs, out_dir, boxes=boxes, save_obj=True)
    pipeline.close()
    _print_summary(results, out_dir)
    _node_demo(config, inputs, boxes, out_dir / "node")
    return 0


def _node_demo(
    config: PipelineConfig, inputs: list[str], boxes: dict[str, list[HandDetection]] | None, out_dir: Path
) -> None:
    """The same images through the ROS 2 node, in-process."""
    try:
        from wilor_ros.tools.node_demo import print_node_rows, run_node_demo
    except ImportError as exc:  # no rclpy / messages: the ROS part cannot run here
        print(f"skipping the ROS 2 node demo: {exc}")
        return
    from wilor_ros.tools.demo import IMAGE_SUFFIXES

    images = sorted(p for p in Path(inputs[0]).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)[:4]
    print(f"\nRunning hand_reconstruction_node in-process on {len(images)} image(s)...")
    rows = run_node_demo(Path(config.models.model_dir), images, out_dir, boxes, backend=config.backend)
    print_node_rows(rows)
    print(f"debug_image overlays received from the node written to {out_dir}")


def _print_summary(results: list[DemoFrame], out_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="wilor_ros demo results")
    for column in ("image", "hands", "sides", "wrist depth (m)"):
        table.add_column(column)
    for result in results:
        sides = " ".join(h.side.label for h in result.hands)
        depths = " ".join(f"{h.wrist_position[2]:.2f}" for h in result.hands)
        table.add_row(result.name, str(len(result.hands)), sides, depths)
    Console().print(table)
    print(
        "Depths use the official focal heuristic (5000/256 * max(W, H)) unless camera intrinsics are "
        "given: they are metric only with the real camera (the node uses camera_info)."
    )
    print(f"overlays, .obj meshes and results.json written to {out_dir}")
