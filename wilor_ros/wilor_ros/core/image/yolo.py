"""The WiLoR-Det YOLO export: its metadata, and the arithmetic around its network, without ultralytics.

The official detector (``pretrained_models/detector.pt``) is an ultralytics YOLO model with two classes,
0 = left hand and 1 = right hand (SPEC 1; the person's anatomical side). ``wilor-ros export-detector``
turns it into ONNX; this module reproduces what ``YOLO(...).predict`` does around the network, so boxes,
classes and scores match ultralytics' own predictions (checked in test_detector.py), whichever runtime
runs the network (core/image/detector.py composes them):

1. letterbox (facts read from ultralytics 8.4 ``data/augment.py::LetterBox`` and
   ``engine/predictor.py::pre_transform``): scale ``r = min(H / h, W / w)`` (up-scaling allowed), resized
   size ``max(round(w * r), 1) x max(round(h * r), 1)`` with ``cv2.INTER_LINEAR``, padding value 114 split
   around the image (``top = round(dh / 2 - 0.1)``, ``bottom = round(dh / 2 + 0.1)``, Python rounding).
   With a dynamic-shape export (and for ``.pt`` models, the official demo's case) ultralytics pads only to
   the next multiple of the stride ("minimum rectangle"), otherwise to the full ``imgsz``;
2. RGB, float32 in [0, 1], B x 3 x H x W;
3. raw output B x (4 + nc [+ nk * kd]) x N: box centre x, y, width, height in network-input pixels,
   per-class scores (already sigmoid), then nk keypoints of kd values (x, y[, visibility]) for pose heads;
4. best class per anchor, keep score > conf (strict, as ultralytics), class-aware NMS (IoU > iou suppresses),
   at most ``max_detections``; ultralytics ``utils/nms.py::non_max_suppression`` with ``multi_label=False``;
5. boxes and keypoints back to source pixels (``utils/ops.py::scale_boxes``: per-axis gain = resized size /
   source size, minus the left/top padding), clipped to the image.

ultralytics' own predictor defaults are conf 0.25 and IoU 0.7; the official WiLoR demo calls it with
``conf=0.3`` and the default IoU, hence the defaults here: ``conf_threshold=0.3``, ``iou_threshold=0.7``.
"""

from __future__ import annotations

import ast
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from wilor_ros.core.types import HandDetection, Side

LOG = logging.getLogger(__name__)
# ------------------------------------------------------------------ constants (ultralytics 8.4 facts)
DEFAULT_CONF_THRESHOLD = 0.3  # official WiLoR demo.py: detector(img, conf=0.3)
DEFAULT_IOU_THRESHOLD = 0.7  # ultralytics cfg/default.yaml `iou`, which the official demo keeps
DEFAULT_MAX_DETECTIONS = 300  # ultralytics cfg/default.yaml `max_det`
MAX_NMS_CANDIDATES = 30000  # ultralytics non_max_suppression `max_nms`: top-scoring boxes fed to NMS
LETTERBOX_PAD_VALUE = 114  # grey padding of ultralytics' LetterBox
LETTERBOX_ROUND_BIAS = 0.1  # top/left = round(pad/2 - 0.1), bottom/right = round(pad/2 + 0.1)
PIXEL_SCALE = 255.0  # uint8 -> [0, 1]
BOX_VALUES = 4  # cx, cy, w, h
EXPECTED_NAMES = {int(Side.LEFT): Side.LEFT.label, int(Side.RIGHT): Side.RIGHT.label}
SUPPORTED_TASKS = ("detect", "pose")
# metadata key our exporters add: "true" for the random-weight detector of make_synthetic_detector
SYNTHETIC_KEY = "wilor_ros_synthetic"
EXPORT_INFO_KEY = "wilor_ros_export"


# ------------------------------------------------------------------ typed values
@dataclass(frozen=True)
class KeypointHandDetection(HandDetection):
    """A HandDetection from a pose-head detector, with its keypoints.

    keypoints: K x D float32; columns x, y in source-image pixels (clipped to the image) and, when D == 3,
    the visibility score in [0, 1]. Everything that accepts a HandDetection accepts this.
    """

    keypoints: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))

    def __post_init__(self) -> None:
        super().__post_init__()
        kpts = np.asarray(self.keypoints, dtype=np.float32)
        if kpts.ndim != 2 or kpts.shape[1] not in (2, 3):
            raise ValueError(f"keypoints must be K x 2 or K x 3, got shape {kpts.shape}")
        object.__setattr__(self, "keypoints", kpts)


@dataclass(frozen=True)
class TensorSpec:
    """One model input/output: name, shape (ints; for dynamic axes the symbolic dimension name, or None
    when unnamed), ONNX element type (e.g. "tensor(float)")."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: str

    @property
    def dynamic_axes(self) -> tuple[int, ...]:
        return tuple(i for i, d in enumerate(self.shape) if not isinstance(d, int))


@dataclass(frozen=True)
class DetectorMetadata:
    """What ultralytics writes into the ONNX metadata_props (values are Python literals as text)."""

    task: str  # "detect" | "pose"
    names: dict[int, str]  # class index -> name; must be {0: "left", 1: "right"}
    imgsz: tuple[int, int]  # network input (H, W) used at export
    stride: int  # largest feature stride; letterbox pads to multiples of it in "rect" mode
    batch: int  # batch size at export (the batch axis may still be dynamic)
    kpt_shape: tuple[int, int] | None  # (K keypoints, D values each) for pose heads
    end2end: bool  # True for NMS-free heads (YOLOv10/YOLO26 style); not supported here
    synthetic: bool  # our make_synthetic_detector marker
    raw: dict[str, str]  # every key as stored

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def keypoint_values(self) -> int:
        return 0 if self.kpt_shape is None else self.kpt_shape[0] * self.kpt_shape[1]


@dataclass(frozen=True)
class NetworkLayout:
    """How images enter one detector network and what leaves it (from its declared I/O and metadata)."""

    input_name: str
    output_name: str
    imgsz: tuple[int, int]  # (H, W) the letterbox targets
    dynamic_hw: bool  # the network takes any input size (letterbox may pad only to the stride)
    static_batch: int | None  # images per call of a fixed-batch export; None: dynamic batch axis
    input_dtype: type[np.floating]  # np.float32, or np.float16 for a half-precision-input export
    channels: int  # C of the B x C x N raw output: 4 box values + classes [+ keypoint values]


@dataclass(frozen=True)
class LetterboxInfo:
    """How a source image was placed in the network input: input = source * gain + pad (per axis)."""

    gain_x: float
    gain_y: float
    pad_x: int
    pad_y: int
    input_width: int
    input_height: int


# ------------------------------------------------------------------ metadata parsing
def _literal(key: str, text: str) -> object:
    """ultralytics stores Python reprs (``"{0: 'left'}"``, ``"[640, 640]"``, ``"False"``); parse them as
    literals only (never eval)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError) as exc:
        raise ValueError(f"detector metadata '{key}' is not a Python literal: {text!r}") from exc


def _as_imgsz(value: object) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return (int(value[0]), int(value[1]))
    if isinstance(value, (list, tuple)) and len(value) == 1 and isinstance(value[0], int):
        return (int(value[0]), int(value[0]))
    raise ValueError(f"detector metadata 'imgsz' must be an int or [h, w], got {value!r}")


def check_class_names(names: Mapping[int, str] | Sequence[str], source: str = "detector") -> dict[int, str]:
    """Return names as {int: str} if they are exactly {0: left, 1: right} (any case), else ValueError.

    The runtime maps class 0 to Side.LEFT and 1 to Side.RIGHT; any other naming would silently swap or
    drop handedness, so it is refused.
    """
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    if not isinstance(names, Mapping):
        raise ValueError(f"{source}: class names must be a mapping {{0: 'left', 1: 'right'}}, got {names!r}")
    try:
        normalised = {int(k): str(v).strip().lower() for k, v in names.items()}
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: class indices must be integers, got {names!r}") from exc
    if normalised != EXPECTED_NAMES:
        raise ValueError(
            f"{source}: class names are {dict(names)!r}, but a WiLoR hand detector needs exactly "
            f"{EXPECTED_NAMES!r} (0 = left hand, 1 = right hand). Use the official detector.pt, or train "
            "with a dataset YAML declaring `names: {0: left, 1: right}` (wilor-ros train-detector)."
        )
    return normalised


def parse_metadata(props: Mapping[str, str], source: str = "detector") -> DetectorMetadata:
    """Parse the ONNX custom metadata written by ultralytics' exporter (plus our own keys).

    Raises ValueError naming the missing/invalid key when the file was not exported by ultralytics.
    """
    missing = [k for k in ("task", "names", "imgsz", "stride") if k not in props]
    if missing:
        raise ValueError(
            f"{source}: ONNX metadata lacks {missing}; is it an ultralytics export? "
            "Re-export detector.pt with `wilor-ros export-detector`."
        )
    task = str(props["task"]).strip()
    if task not in SUPPORTED_TASKS:
        raise ValueError(f"{source}: task {task!r} is not supported (expected one of {SUPPORTED_TASKS})")
    names = _literal("names", props["names"])
    if not isinstance(names, (dict, list, tuple)):
        raise ValueError(f"{source}: metadata 'names' must be a dict, got {names!r}")
    names = check_class_names(names, source)
    imgsz = _as_imgsz(_literal("imgsz", props["imgsz"]))
    try:
        stride = int(props["stride"])
        batch = int(props.get("batch", "1"))
    except ValueError as exc:
        raise ValueError(f"{source}: metadata 'stride'/'batch' must be integers, got {props!r}") from exc
    if stride <= 0 or min(imgsz) <= 0:
        raise ValueError(f"{source}: invalid stride {stride} or imgsz {imgsz} in metadata")
    kpt_shape = None
    if task == "pose":
        if "kpt_shape" not in props:
            raise ValueError(f"{source}: a pose export needs 'kpt_shape' metadata")
        value = _literal("kpt_shape", props["kpt_shape"])
        if not (isinstance(value, (list, tuple)) and len(value) == 2 and value[1] in (2, 3) and value[0] > 0):
            raise ValueError(f"{source}: 'kpt_shape' must be [K, 2 or 3], got {value!r}")
        kpt_shape = (int(value[0]), int(value[1]))
    end2end = bool(_literal("end2end", props["end2end"])) if "end2end" in props else False
    synthetic = str(props.get(SYNTHETIC_KEY, "false")).strip().lower() == "true"
    return DetectorMetadata(
        task=task,
        names=names,
        imgsz=imgsz,
        stride=stride,
        batch=batch,
        kpt_shape=kpt_shape,
        end2end=end2end,
        synthetic=synthetic,
        raw=dict(props),
    )


# ------------------------------------------------------------------ pre/post-processing
def letterbox(
    image: np.ndarray, new_shape: tuple[int, int], stride: int, minimal: bool
) -> tuple[np.ndarray, LetterboxInfo]:
    """Resize keeping the aspect ratio and pad with grey 114, as ultralytics' LetterBox (center=True).

    image: H x W x C uint8; new_shape: (H', W') target; minimal: pad only up to a multiple of ``stride``
    (ultralytics ``auto=True``) instead of to the full target. Returns the padded image and the placement.
    """
    height, width = image.shape[:2]
    target_h, target_w = new_shape
    scale = min(target_h / height, target_w / width)
    new_w = max(round(width * scale), 1)
    new_h = max(round(height * scale), 1)
    pad_w, pad_h = target_w - new_w, target_h - new_h
    if minimal:
        pad_w, pad_h = pad_w % stride, pad_h % stride
    half_w, half_h = pad_w / 2, pad_h / 2
    top, bottom = round(half_h - LETTERBOX_ROUND_BIAS), round(half_h + LETTERBOX_ROUND_BIAS)
    left, right = round(half_w - LETTERBOX_ROUND_BIAS), round(half_w + LETTERBOX_ROUND_BIAS)
    out = image
    if (new_w, new_h) != (width, height):
        out = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    out = cv2.copyMakeBorder(
        out, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(LETTERBOX_PAD_VALUE,) * 3
    )
    info = LetterboxInfo(
        gain_x=new_w / width,
        gain_y=new_h / height,
        pad_x=left,
        pad_y=top,
        input_width=out.shape[1],
        input_height=out.shape[0],
    )
    return out, info


def nms_per_class(
    boxes_xyxy: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float, max_keep: int
) -> np.ndarray:
    """Class-aware NMS; returns kept indices, highest score first.

    boxes_xyxy: N x 4, scores: (N,), classes: (N,) int. OpenCV's ``cv2.dnn.NMSBoxesBatched`` is used
    (OpenCV is already a dependency; torchvision's NMS would pull torch into the runtime). Its rule matches
    torchvision's as ultralytics uses it: greedy by score, a box is dropped when its IoU with a kept box of
    the same class is > iou_threshold; float boxes are taken as Rect2d (x, y, w, h), no +1 pixel convention.
    """
    if len(scores) == 0:
        return np.zeros(0, dtype=np.int64)
    xywh = np.concatenate([boxes_xyxy[:, :2], boxes_xyxy[:, 2:] - boxes_xyxy[:, :2]], axis=1)
    # scores were already filtered by the caller: a threshold below all of them keeps every candidate
    keep = cv2.dnn.NMSBoxesBatched(
        xywh.astype(np.float64),
        scores.astype(np.float32),
        classes.astype(np.int32),
        float(np.min(scores)) - 1.0,
        float(iou_threshold),
        top_k=int(max_keep),
    )
    keep = np.asarray(keep, dtype=np.int64).reshape(-1)
    # stable sort by descending score (OpenCV already returns this order; made explicit)
    return keep[np.argsort(-scores[keep], kind="stable")][:max_keep]


def network_layout(
    inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec], metadata: DetectorMetadata, source: str
) -> NetworkLayout:
    """Check a detector network's declared I/O against its metadata -> its layout (ValueError if unfit)."""
    if metadata.end2end:
        raise ValueError(
            f"{source}: this is an NMS-free (end2end) export, which this runtime does not decode; export "
            "a YOLOv8-style detector (end2end=False)"
        )
    if len(inputs) != 1 or len(outputs) < 1:
        raise ValueError(
            f"{source}: expected one image input and a prediction output, got {len(inputs)} inputs"
        )
    image, prediction = inputs[0], outputs[0]
    shape = list(image.shape)
    if len(shape) != 4 or shape[1] not in (3, "3"):
        raise ValueError(f"{source}: expected a B x 3 x H x W input, got {shape}")
    dynamic_hw = not (isinstance(shape[2], int) and isinstance(shape[3], int))
    imgsz = metadata.imgsz if dynamic_hw else (int(shape[2]), int(shape[3]))
    if imgsz != metadata.imgsz:
        LOG.warning(
            "%s: input %s differs from metadata imgsz %s; using the input", source, shape, metadata.imgsz
        )
    channels = BOX_VALUES + metadata.num_classes + metadata.keypoint_values
    out_shape = prediction.shape
    if len(out_shape) != 3 or (isinstance(out_shape[1], int) and out_shape[1] != channels):
        raise ValueError(
            f"{source}: output {out_shape} does not match the metadata (expected B x {channels} x N for task "
            f"{metadata.task!r}, {metadata.num_classes} classes, kpt_shape {metadata.kpt_shape})"
        )
    return NetworkLayout(
        input_name=image.name,
        output_name=prediction.name,
        imgsz=imgsz,
        dynamic_hw=dynamic_hw,
        static_batch=int(shape[0]) if isinstance(shape[0], int) else None,
        input_dtype=np.float16 if image.dtype == "tensor(float16)" else np.float32,
        channels=channels,
    )


def decode_predictions(
    raw: np.ndarray,
    info: LetterboxInfo,
    image_hw: tuple[int, int],
    metadata: DetectorMetadata,
    conf_threshold: float,
    iou_threshold: float,
    max_detections: int,
) -> list[HandDetection]:
    """raw: C x N predictions of one image -> detections in source pixels, best first (module docstring
    steps 3-5); KeypointHandDetection for pose heads."""
    nc = metadata.num_classes
    preds = raw.T  # N x C
    class_scores = preds[:, BOX_VALUES : BOX_VALUES + nc]
    classes = np.argmax(class_scores, axis=1)
    scores = class_scores[np.arange(len(classes)), classes]
    candidates = np.flatnonzero(scores > conf_threshold)
    if len(candidates) > MAX_NMS_CANDIDATES:
        order = np.argsort(-scores[candidates], kind="stable")
        candidates = candidates[order[:MAX_NMS_CANDIDATES]]
    if len(candidates) == 0:
        return []
    xywh = preds[candidates, :BOX_VALUES]
    boxes = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], axis=1)
    keep = nms_per_class(boxes, scores[candidates], classes[candidates], iou_threshold, max_detections)
    height, width = image_hw
    gain = np.array([info.gain_x, info.gain_y], dtype=np.float32)
    pad = np.array([info.pad_x, info.pad_y], dtype=np.float32)
    limit = np.array([width, height], dtype=np.float32)
    detections: list[HandDetection] = []
    for k in keep:
        index = candidates[k]
        box = boxes[k].reshape(2, 2)
        box = np.clip((box - pad) / gain, 0.0, limit).reshape(4)
        if box[2] <= box[0] or box[3] <= box[1]:
            continue  # entirely in the padding: no pixels of the image left after clipping
        side = Side(int(classes[index]))
        score = float(scores[index])
        if metadata.kpt_shape is None:
            detections.append(HandDetection(box, side, score))
            continue
        num_kpts, kpt_dim = metadata.kpt_shape
        kpts = preds[index, BOX_VALUES + nc :].reshape(num_kpts, kpt_dim).copy()
        kpts[:, :2] = np.clip((kpts[:, :2] - pad) / gain, 0.0, limit)
        detections.append(KeypointHandDetection(box, side, score, keypoints=kpts))
    return detections
