"""``wilor-ros demo``: images, a folder, a video file or a camera -> overlays, .obj, JSON."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from wilor_ros.core.image.overlay import draw_hands
from wilor_ros.core.pipeline import HandPipeline
from wilor_ros.core.types import HandDetection, HandEstimate, Side

LOG = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
SYNTHETIC_LABEL = "SYNTHETIC MODELS - not real hand estimates"


@dataclass
class Frame:
    name: str  # file stem or frame index, used for output names
    image_rgb: np.ndarray  # H x W x 3 uint8
    boxes_key: str  # key into a boxes file (the image's file name)


def iter_inputs(inputs: list[str]) -> Iterator[Frame]:
    """Yield frames from image files, folders of images, video files or camera indices."""
    for item in inputs:
        path = Path(item)
        if item.isdigit() and not path.exists():
            yield from _iter_video(int(item), f"camera{item}")
        elif path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
            for file in files:
                yield _read_image(file)
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            yield from _iter_video(str(path), path.stem)
        elif path.is_file():
            yield _read_image(path)
        else:
            raise ValueError(f"input not found or not supported: {item}")


def _read_image(path: Path) -> Frame:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path}")
    return Frame(path.stem, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), path.name)


def _iter_video(source: int | str, stem: str) -> Iterator[Frame]:
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        raise ValueError(f"cannot open video source {source!r}")
    index = 0
    try:
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            yield Frame(f"{stem}_{index:06d}", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), f"{stem}_{index:06d}")
            index += 1
    finally:
        capture.release()


def load_boxes_file(path: str | Path) -> dict[str, list[HandDetection]]:
    """Boxes supplied from a JSON file: ``{image_name: {"hands": [{"box_xyxy": [x1, y1, x2, y2],
    "side": "left"|"right", "score": optional}]}}`` (the parity kit's demo_boxes.json layout)."""
    data = json.loads(Path(path).read_text())
    boxes = {}
    for name, entry in data.items():
        hands = entry.get("hands", []) if isinstance(entry, dict) else entry
        boxes[name] = [
            HandDetection(
                np.asarray(h["box_xyxy"], np.float32), Side.parse(h["side"]), float(h.get("score", 1.0))
            )
            for h in hands
        ]
    return boxes


def write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray, left: bool) -> None:
    """Wavefront OBJ of one hand (camera frame, metres); left hands get reversed winding."""
    faces = faces[:, [0, 2, 1]] if left else faces
    lines = [f"# wilor_ros hand mesh, camera optical frame, metres, {'left' if left else 'right'} hand"]
    lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")


def hand_to_json(hand: HandEstimate) -> dict:
    return {
        "side": hand.side.label,
        "score": hand.score,
        "track_id": hand.track_id,
        "box_xyxy": hand.box.tolist(),
        "keypoints_3d_m": hand.keypoints_3d.tolist(),
        "keypoints_2d_px": hand.keypoints_2d.tolist(),
        "cam_t_m": hand.cam_t.tolist(),
        "global_orient_axis_angle": hand.global_orient.tolist(),
        "hand_pose_axis_angle": hand.hand_pose.tolist(),
        "betas": hand.betas.tolist(),
        "intrinsics_fx_fy_cx_cy": hand.intrinsics.as_array().tolist(),
        "intrinsics_from_camera_info": hand.intrinsics.from_camera_info,
    }


@dataclass(frozen=True)
class DemoFrame:
    """What the demo found in one input frame."""

    name: str
    image_size: tuple[int, int]  # (W, H) pixels
    hands: list[HandEstimate]

    def to_json(self, synthetic: bool) -> dict:
        return {
            "image_size": list(self.image_size),
            "synthetic_models": synthetic,
            "hands": [hand_to_json(h) for h in self.hands],
        }


def run_demo(
    pipeline: HandPipeline,
    inputs: list[str],
    out_dir: str | Path,
    *,
    boxes: dict[str, list[HandDetection]] | None = None,
    save_obj: bool = False,
    save_video: bool = False,
    faces: np.ndarray | None = None,
    progress: bool = True,
) -> list[DemoFrame]:
    """Run the pipeline over every input frame; write overlays, .obj meshes and results.json
    (keyed by frame name); return the frames in input order."""
    from tqdm import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    faces = faces if faces is not None else pipeline.backend.faces
    label = SYNTHETIC_LABEL if pipeline.synthetic else None
    results: list[DemoFrame] = []
    writer = None
    frames = iter_inputs(inputs)
    for frame in tqdm(frames, desc="demo", unit="frame", disable=not progress):
        given = None if boxes is None else boxes.get(frame.boxes_key, [])
        hands = pipeline.predict(frame.image_rgb, boxes=given)
        overlay = draw_hands(frame.image_rgb, hands, faces, label=label)
        bgr = cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR)
        if save_video:
            if writer is None:
                height, width = bgr.shape[:2]
                writer = cv2.VideoWriter(
                    str(out_dir / "overlay.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30, (width, height)
                )
            writer.write(bgr)
        else:
            cv2.imwrite(str(out_dir / f"{frame.name}_overlay.png"), bgr)
        if save_obj and faces is not None:
            for i, hand in enumerate(hands):
                write_obj(
                    out_dir / f"{frame.name}_hand{i}_{hand.side.label}.obj",
                    hand.vertices,
                    faces,
                    hand.side == Side.LEFT,
                )
        size = (int(frame.image_rgb.shape[1]), int(frame.image_rgb.shape[0]))
        results.append(DemoFrame(frame.name, size, hands))
    if writer is not None:
        writer.release()
    report = {r.name: r.to_json(pipeline.synthetic) for r in results}
    (out_dir / "results.json").write_text(json.dumps(report, indent=1))
    return results
