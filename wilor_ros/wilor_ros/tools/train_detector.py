"""``wilor-ros train-detector``: fine-tune the WiLoR hand detector (an ultralytics YOLO model) on a
YOLO-format dataset, then hand the result to ``wilor-ros export-detector``.

Dataset: the ultralytics YAML layout (``path``, ``train``, ``val`` image folders with ``labels/`` beside
``images/``, one ``class cx cy w h`` line per box, normalised to [0, 1]). The WiLoR detector's classes
are 0 = left hand and 1 = right hand (the person's anatomical side, SPEC 1), so the YAML must declare
exactly ``names: {0: left, 1: right}``; anything else would silently swap or break handedness.

This is a thin wrapper over ``ultralytics.YOLO(weights).train(...)`` (ultralytics is an optional
dependency); every ultralytics training argument can be passed through ``extra``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

LOG = logging.getLogger(__name__)

EXPECTED_NAMES = {0: "left", 1: "right"}


def check_dataset_yaml(data_yaml: str | Path) -> dict[str, Any]:
    """Read the dataset YAML and check the class names; raises ValueError with what to change."""
    path = Path(data_yaml)
    if not path.is_file():
        raise FileNotFoundError(f"detector dataset YAML not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    names = data.get("names")
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or {int(k): str(v).lower() for k, v in names.items()} != EXPECTED_NAMES:
        raise ValueError(
            f"{path}: names must be {{0: left, 1: right}} (the WiLoR detector's classes), got {names!r}"
        )
    for split in ("train", "val"):
        if split not in data:
            raise ValueError(f"{path}: missing '{split}' (image folder or list, relative to 'path')")
    return data


def train_detector(
    weights: str | Path,
    data_yaml: str | Path,
    out_dir: str | Path,
    *,
    epochs: int = 50,
    imgsz: int = 640,
    batch: int = 16,
    device: str = "",
    workers: int = 4,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Fine-tune ``weights`` (detector.pt, or a model .yaml to start from scratch) and return the path
    of the best weights (``<out_dir>/train/weights/best.pt``). Export it with ``wilor-ros export-detector``.
    """
    try:
        from ultralytics import YOLO
    except ImportError as exc:
        raise RuntimeError("train-detector needs ultralytics: pip install ultralytics") from exc
    check_dataset_yaml(data_yaml)
    if not str(weights).endswith((".yaml", ".yml")) and not Path(weights).is_file():
        raise FileNotFoundError(f"detector weights not found: {weights}")
    out_dir = Path(out_dir).resolve()
    model = YOLO(str(weights))
    args: dict[str, Any] = {
        "data": str(Path(data_yaml).resolve()),
        "epochs": epochs,
        "imgsz": imgsz,
        "batch": batch,
        "workers": workers,
        "project": str(out_dir),
        "name": "train",
        "exist_ok": True,
        # flips would swap left and right hands: keep the images unmirrored
        "fliplr": 0.0,
    }
    if device:
        args["device"] = device
    args.update(extra or {})
    model.train(**args)
    best = out_dir / "train" / "weights" / "best.pt"
    if not best.is_file():
        last = out_dir / "train" / "weights" / "last.pt"
        if not last.is_file():
            raise RuntimeError(
                f"ultralytics training finished without weights in {out_dir / 'train' / 'weights'}"
            )
        best = last
    LOG.info("detector weights: %s (next: wilor-ros export-detector %s)", best, best)
    return best
