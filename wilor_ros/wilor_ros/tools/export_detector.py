"""``wilor-ros export-detector``: the ultralytics hand detector (detector.pt) -> ONNX for OnnxHandDetector.

ultralytics is needed here only (it is an optional, export/training-time dependency); the runtime
(``wilor_ros.core.image.detector``) never imports it. Also: ``make_synthetic_detector``, a random-weight
2-class YOLOv8n with the official detector's interface (for tests and demos without the licensed
weights: it detects nothing), and a re-export of ``train_detector`` (``wilor-ros train-detector``).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from wilor_ros.core.files.model_files import DETECTOR_ONNX, DETECTOR_PT
from wilor_ros.core.image.detector import OnnxHandDetector
from wilor_ros.core.image.yolo import (
    EXPECTED_NAMES,
    EXPORT_INFO_KEY,
    SUPPORTED_TASKS,
    SYNTHETIC_KEY,
    check_class_names,
)
from wilor_ros.tools.train_detector import train_detector

__all__ = ["export_detector", "make_synthetic_detector", "train_detector", "write_onnx_metadata"]

LOG = logging.getLogger(__name__)

DEFAULT_IMGSZ = 640  # ultralytics' default inference size, which the official demo uses
# the synthetic detector's architecture: ultralytics' packaged YOLOv8 config at scale n (built from
# the YAML, never downloaded)
SYNTHETIC_BASE_YAML = "yolov8n.yaml"
# size of the blank frame used to check that a fresh export loads and runs (H, W)
SMOKE_TEST_HW = (480, 640)


def _import_ultralytics() -> Any:
    try:
        import ultralytics
    except ImportError as exc:
        raise RuntimeError(
            "exporting the detector needs ultralytics (pip install ultralytics); the runtime does not"
        ) from exc
    return ultralytics


def write_onnx_metadata(onnx_path: str | Path, values: dict[str, str]) -> None:
    """Add or replace metadata_props entries of an ONNX file in place (other entries are kept)."""
    import onnx

    path = Path(onnx_path)
    model = onnx.load(str(path))
    existing = {p.key: p for p in model.metadata_props}
    for key, value in values.items():
        if key in existing:
            existing[key].value = str(value)
        else:
            entry = model.metadata_props.add()
            entry.key, entry.value = key, str(value)
    onnx.save(model, str(path))


def export_detector(
    pt_path: str | Path,
    out_path: str | Path | None = None,
    imgsz: int = DEFAULT_IMGSZ,
    dynamic: bool = True,
    half: bool = False,
    device: str = "cpu",
    synthetic: bool = False,
) -> Path:
    """Export an ultralytics YOLO hand detector (classes {0: left, 1: right}) to ONNX and check it loads.

    pt_path: detector.pt; out_path: output .onnx (None = beside the .pt); imgsz: square export size;
    dynamic: dynamic batch/height/width axes (lets OnnxHandDetector pad to the stride like ultralytics'
    predictor); half: FP16 weights (ultralytics allows it only on a GPU ``device``, e.g. "0");
    synthetic: mark the file as random weights. Returns the written path.
    Raises RuntimeError when the file or ultralytics is missing, ValueError for wrong class names or task.
    """
    pt_path = Path(pt_path)
    if not pt_path.is_file():
        raise RuntimeError(
            f"detector weights not found: {pt_path} (get detector.pt from {DETECTOR_PT.source})"
        )
    out = Path(out_path) if out_path is not None else pt_path.with_suffix(".onnx")
    ultralytics = _import_ultralytics()
    from ultralytics import YOLO

    model = YOLO(str(pt_path))
    check_class_names(model.names, source=str(pt_path))
    if model.task not in SUPPORTED_TASKS:
        raise ValueError(f"{pt_path}: task {model.task!r} is not a box detector (expected {SUPPORTED_TASKS})")
    # export in a scratch folder: ultralytics writes beside its input, which must not clobber files there
    with tempfile.TemporaryDirectory(prefix="wilor_det_export_") as scratch:
        local_pt = Path(scratch) / pt_path.name
        shutil.copy2(pt_path, local_pt)
        exported = YOLO(str(local_pt)).export(
            format="onnx", imgsz=imgsz, dynamic=dynamic, half=half, device=device, simplify=True
        )
        exported = Path(exported)
        write_onnx_metadata(
            exported,
            {
                SYNTHETIC_KEY: "true" if synthetic else "false",
                EXPORT_INFO_KEY: json.dumps(
                    {
                        "source": pt_path.name,
                        "imgsz": imgsz,
                        "dynamic": dynamic,
                        "half": half,
                        "ultralytics": ultralytics.__version__,
                        "classes": {str(k): v for k, v in EXPECTED_NAMES.items()},
                    }
                ),
            },
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(exported), out)
    # load it with our own runtime right away: a broken export fails here, not on the robot
    detector = OnnxHandDetector(out)
    detections = detector.detect(np.zeros((*SMOKE_TEST_HW, 3), dtype=np.uint8))
    LOG.info(
        "exported %s -> %s (task %s, imgsz %s, dynamic %s; %d detections on a blank frame)",
        pt_path,
        out,
        detector.task,
        detector.imgsz,
        detector.dynamic_hw,
        len(detections),
    )
    return out


def make_synthetic_detector(out_dir: str | Path, seed: int = 0, imgsz: int = DEFAULT_IMGSZ) -> Path:
    """Write ``out_dir/detector.pt`` (random-weight 2-class YOLOv8n, names {0: left, 1: right}) and its
    ONNX export ``out_dir/detector.onnx`` (metadata ``wilor_ros_synthetic = true``); returns the ONNX path.

    The weights are untrained (ultralytics' initialisation biases class scores to ~0.01), so it finds
    no hands at the usual thresholds: it exercises the code paths, never the accuracy.
    """
    _import_ultralytics()
    import torch
    import yaml
    from ultralytics import YOLO
    from ultralytics.nn.tasks import yaml_model_load

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = yaml_model_load(SYNTHETIC_BASE_YAML)  # packaged config; the scale letter comes from the name
    cfg.pop("yaml_file", None)
    cfg["nc"] = len(EXPECTED_NAMES)
    pt_path = out_dir / DETECTOR_PT.default_name
    with tempfile.TemporaryDirectory(prefix="wilor_det_synth_") as scratch:
        # the file name keeps "yolov8n" so ultralytics picks the same scale from it
        cfg_path = Path(scratch) / "synthetic-yolov8n.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        torch.manual_seed(seed)
        model = YOLO(str(cfg_path), task="detect")
    model.model.names = dict(EXPECTED_NAMES)
    model.save(str(pt_path))
    onnx_path = export_detector(pt_path, out_dir / DETECTOR_ONNX.default_name, imgsz=imgsz, synthetic=True)
    LOG.info("wrote synthetic detector %s and %s", pt_path, onnx_path)
    return onnx_path
