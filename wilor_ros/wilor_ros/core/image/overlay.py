"""Overlay pictures of reconstructed hands: shaded mesh, skeleton, side/score labels.

Shared by ``wilor-ros demo`` and the node's ``debug_image`` topic.
"""

from __future__ import annotations

import cv2
import numpy as np

from wilor_ros.core.hand.constants import OPENPOSE_PARENTS
from wilor_ros.core.image.render import render_meshes
from wilor_ros.core.types import HandEstimate, Side

# RGB colours: right hands blue-ish, left hands orange-ish (mesh, bones)
SIDE_COLOURS = {
    Side.RIGHT: ((110, 160, 235), (40, 90, 230)),
    Side.LEFT: ((240, 170, 100), (230, 110, 30)),
}
FINGER_COLOURS = ((255, 60, 60), (255, 170, 0), (60, 200, 60), (0, 170, 255), (170, 60, 255))


def _finger_of(joint: int) -> int:
    return (joint - 1) // 4


def draw_hands(
    image_rgb: np.ndarray,
    hands: list[HandEstimate],
    faces: np.ndarray | None,
    *,
    mesh_alpha: float = 0.75,
    draw_skeleton: bool = True,
    label: str | None = None,
) -> np.ndarray:
    """image_rgb: H x W x 3 uint8 -> a new H x W x 3 uint8 picture.

    faces: F x 3 MANO triangles (right-hand winding); None draws no mesh.
    label: text written in the top-left corner (e.g. "SYNTHETIC MODELS").
    """
    canvas = np.ascontiguousarray(image_rgb.copy())
    if faces is not None and hands:
        meshes = [
            (hand.vertices, faces, SIDE_COLOURS[hand.side][0], hand.side == Side.LEFT) for hand in hands
        ]
        canvas = render_meshes(canvas, meshes, hands[0].intrinsics, alpha=mesh_alpha)
    scale = max(1.0, max(canvas.shape[:2]) / 640.0)
    thickness = max(1, round(2 * scale))
    for hand in hands:
        points = np.round(hand.keypoints_2d).astype(np.int32)
        if draw_skeleton:
            for joint, parent in enumerate(OPENPOSE_PARENTS):
                if parent >= 0:
                    colour = FINGER_COLOURS[_finger_of(joint)]
                    cv2.line(
                        canvas, tuple(points[parent]), tuple(points[joint]), colour, thickness, cv2.LINE_AA
                    )
            for point in points:
                cv2.circle(canvas, tuple(point), thickness + 1, (255, 255, 255), -1, cv2.LINE_AA)
        x1, y1, x2, y2 = np.round(hand.box).astype(int)
        colour = SIDE_COLOURS[hand.side][1]
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        text = f"{hand.side.label} {hand.score:.2f}" + (f" #{hand.track_id}" if hand.track_id else "")
        _put_label(canvas, text, (x1, max(0, y1 - 4)), colour, scale)
    if label:
        _put_label(canvas, label, (5, int(22 * scale)), (220, 30, 30), scale)
    return canvas


def _put_label(canvas: np.ndarray, text: str, origin: tuple[int, int], colour: tuple, scale: float) -> None:
    font_scale = 0.55 * scale
    thickness = max(1, round(scale))
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
    x, y = origin
    y = max(y, height + 2)
    cv2.rectangle(canvas, (x, y - height - 3), (x + width + 4, y + baseline - 1), (255, 255, 255), -1)
    cv2.putText(
        canvas, text, (x + 2, y - 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, colour, thickness, cv2.LINE_AA
    )
