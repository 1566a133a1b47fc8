"""Hand boxes supplied from outside the pipeline (another detector, a tracker, a file, a bag):
each box is checked on its own, so one bad box never costs the other hands of the image."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from wilor_ros.core.types import HandDetection, Side


@dataclass
class BoxCheck:
    """The usable detections of one image and the reason each rejected box was dropped."""

    detections: list[HandDetection] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # "box 3: ...", in input order


def _reason(box: np.ndarray, side: object, score: float, width: int, height: int) -> str:
    if box.shape != (4,):
        return f"needs 4 values x1, y1, x2, y2, got {box.size}"
    if not np.all(np.isfinite(box)):
        return f"non-finite coordinates {box.tolist()}"
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 <= x1 or y2 <= y1:
        return f"inverted or zero-area box {box.tolist()} (needs x2 > x1 and y2 > y1)"
    # pixel (0, 0) covers [0, 1) x [0, 1): a box must overlap [0, W) x [0, H)
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        return f"box {box.tolist()} lies entirely outside the {width}x{height} image"
    if not math.isfinite(score):
        return f"non-finite score {score}"
    try:
        Side.parse(side)  # type: ignore[arg-type]
    except ValueError as exc:
        return str(exc)
    return ""


def check_boxes(
    boxes: Sequence[Sequence[float]] | np.ndarray,
    sides: Sequence[object],
    scores: Sequence[float],
    image_size: tuple[int, int],
) -> BoxCheck:
    """Keep the boxes that can be reconstructed, in input order, with their own scores.

    boxes: N x 4 XYXY pixels; sides: N (0/1 or "left"/"right"); scores: N;
    image_size: (H, W) of the image the boxes belong to. Boxes partly outside the image are kept
    (the crop pads them as the official demo does); boxes with NaN/inf values, inverted or
    zero-area boxes, boxes entirely outside the image and non-finite scores are dropped.
    """
    if not len(boxes) == len(sides) == len(scores):
        raise ValueError(f"got {len(boxes)} boxes, {len(sides)} sides and {len(scores)} scores")
    height, width = image_size
    result = BoxCheck()
    for index, (raw, side, score) in enumerate(zip(boxes, sides, scores)):
        box = np.asarray(raw, dtype=np.float64).reshape(-1)
        reason = _reason(box, side, float(score), width, height)
        if reason:
            result.rejected.append(f"box {index}: {reason}")
        else:
            result.detections.append(HandDetection(box.astype(np.float32), Side.parse(side), float(score)))  # type: ignore[arg-type]
    return result
