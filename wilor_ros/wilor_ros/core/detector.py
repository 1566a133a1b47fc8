"""ONNX Runtime hand detector: the WiLoR-Det YOLO model exported by ultralytics, without ultralytics.

The official detector (``pretrained_models/detector.pt``) is an ultralytics YOLO model with two classes,
0 = left hand and 1 = right hand (SPEC 1; the person's anatomical side). ``wilor-ros export-detector``
turns it into ONNX; this module runs that file and reproduces what ``YOLO(...).predict`` does around the
network, so boxes, classes and scores match ultralytics' own predictions (checked in test_detector.py):

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
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from wilor_ros.core.backends.onnxruntime_backend import default_providers
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
    """One model input/output: name, shape (ints, or the symbolic dimension name for dynamic axes),
    ONNX element type (e.g. "tensor(float)")."""

    name: str
    shape: tuple[int | str, ...]
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


# ------------------------------------------------------------------ detector
class OnnxHandDetector:
    """Runs an ultralytics-exported YOLO hand detector (detect or pose head) with ONNX Runtime.

    onnx_path: the file written by ``wilor-ros export-detector`` (or ultralytics' own ONNX export).
    providers: ONNX Runtime providers; None = CUDA when ``device`` starts with "cuda" and available, then CPU.
    conf_threshold: keep boxes whose best class score is > this (official demo: 0.3).
    iou_threshold: NMS IoU above which the lower-scored box of the same class is dropped (ultralytics 0.7).
    max_detections: at most this many boxes per image (ultralytics max_det 300).
    rect: with a dynamic-shape model, pad only to a multiple of the stride as ultralytics' predictor
        does (``False`` = always pad to the full export size); ignored for static shapes.
    """

    def __init__(
        self,
        onnx_path: str | Path,
        providers: Sequence[str] | None = None,
        conf_threshold: float = DEFAULT_CONF_THRESHOLD,
        iou_threshold: float = DEFAULT_IOU_THRESHOLD,
        max_detections: int = DEFAULT_MAX_DETECTIONS,
        device: str = "cpu",
        threads: int | None = None,
        rect: bool = True,
    ) -> None:
        path = Path(onnx_path)
        if not path.is_file():
            raise RuntimeError(
                f"detector ONNX file not found: {path} (make it with `wilor-ros export-detector detector.pt`)"
            )
        if not 0.0 <= conf_threshold < 1.0:
            raise ValueError(f"conf_threshold must be in [0, 1), got {conf_threshold}")
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
        if max_detections < 1:
            raise ValueError(f"max_detections must be >= 1, got {max_detections}")
        self.path = path
        self.conf_threshold = float(conf_threshold)
        self.iou_threshold = float(iou_threshold)
        self.max_detections = int(max_detections)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        chosen = list(providers) if providers is not None else default_providers(device)
        self.session = ort.InferenceSession(str(path), options, providers=chosen)
        self.metadata = parse_metadata(self.session.get_modelmeta().custom_metadata_map, source=str(path))
        if self.metadata.end2end:
            raise ValueError(
                f"{path}: this is an NMS-free (end2end) export, which this runtime does not decode; export "
                "a YOLOv8-style detector (end2end=False)"
            )
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) < 1:
            raise ValueError(
                f"{path}: expected one image input and a prediction output, got {len(inputs)} inputs"
            )
        self._input = inputs[0]
        self._output_name = outputs[0].name
        shape = list(self._input.shape)
        if len(shape) != 4 or shape[1] not in (3, "3"):
            raise ValueError(f"{path}: expected a B x 3 x H x W input, got {shape}")
        self.dynamic_hw = not (isinstance(shape[2], int) and isinstance(shape[3], int))
        self.dynamic_batch = not isinstance(shape[0], int)
        if self.dynamic_hw:
            self.imgsz = self.metadata.imgsz
        else:
            self.imgsz = (int(shape[2]), int(shape[3]))
            if self.imgsz != self.metadata.imgsz:
                LOG.warning(
                    "%s: input %s differs from metadata imgsz %s; using the input",
                    path,
                    shape,
                    self.metadata.imgsz,
                )
        self.static_batch = None if self.dynamic_batch else int(shape[0])
        self.rect = bool(rect) and self.dynamic_hw
        self._input_dtype = np.float16 if self._input.type == "tensor(float16)" else np.float32
        self.channels = BOX_VALUES + self.metadata.num_classes + self.metadata.keypoint_values
        out_shape = outputs[0].shape
        if len(out_shape) != 3 or (isinstance(out_shape[1], int) and out_shape[1] != self.channels):
            raise ValueError(
                f"{path}: output {out_shape} does not match the metadata (expected B x {self.channels} x N "
                f"for task {self.metadata.task!r}, {self.metadata.num_classes} classes, kpt_shape "
                f"{self.metadata.kpt_shape})"
            )
        self.synthetic = self.metadata.synthetic
        if self.synthetic:
            LOG.warning("detector %s has SYNTHETIC (random) weights: it detects no real hands", path)

    # ------------------------------------------------------------------ description
    @property
    def task(self) -> str:
        return self.metadata.task

    @property
    def names(self) -> dict[int, str]:
        return dict(self.metadata.names)

    @property
    def kpt_shape(self) -> tuple[int, int] | None:
        return self.metadata.kpt_shape

    def input_spec(self) -> list[TensorSpec]:
        """The model inputs (one: images, B x 3 x H x W, RGB in [0, 1])."""
        return [TensorSpec(i.name, tuple(i.shape), i.type) for i in self.session.get_inputs()]

    def output_spec(self) -> list[TensorSpec]:
        """The model outputs (first: B x (4 + nc [+ K * D]) x N raw predictions)."""
        return [TensorSpec(o.name, tuple(o.shape), o.type) for o in self.session.get_outputs()]

    # ------------------------------------------------------------------ inference
    def preprocess(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[LetterboxInfo]]:
        """images: each H x W x 3 RGB uint8 -> (B x 3 x H' x W' network input, placements).

        Like ultralytics' predictor, the minimal (stride-multiple) padding is used only when every image
        has the same shape (so they stack) and the model accepts any size.
        """
        checked = [self._check_image(im) for im in images]
        same = len({im.shape for im in checked}) == 1
        minimal = self.rect and same
        padded, infos = [], []
        for im in checked:
            out, info = letterbox(im, self.imgsz, self.metadata.stride, minimal)
            padded.append(out)
            infos.append(info)
        batch = np.stack(padded).transpose(0, 3, 1, 2)
        tensor = np.ascontiguousarray(batch, dtype=np.float32) / PIXEL_SCALE
        return tensor.astype(self._input_dtype, copy=False), infos

    def raw_predict(self, tensor: np.ndarray) -> np.ndarray:
        """B x 3 x H x W network input -> B x C x N float32 raw predictions."""
        out = self.session.run([self._output_name], {self._input.name: tensor})[0]
        out = np.asarray(out, dtype=np.float32)
        if out.ndim != 3 or out.shape[1] != self.channels:
            raise RuntimeError(
                f"{self.path}: unexpected output shape {out.shape} (expected B x {self.channels} x N)"
            )
        return out

    def detect(self, image_rgb: np.ndarray) -> list[HandDetection]:
        """image_rgb: H x W x 3 RGB uint8 -> hands sorted by descending score (KeypointHandDetection for
        pose models), boxes XYXY in source pixels clipped to the image."""
        return self.detect_batch([image_rgb])[0]

    def detect_batch(self, images_rgb: Sequence[np.ndarray]) -> list[list[HandDetection]]:
        """One list of detections per image. One network call when the batch axis is dynamic; a model
        exported with a fixed batch runs per chunk of that size."""
        images = list(images_rgb)
        if not images:
            return []
        chunk = len(images) if self.static_batch is None else self.static_batch
        if self.static_batch is not None and self.static_batch != 1 and len(images) % self.static_batch:
            raise ValueError(f"this detector takes batches of exactly {self.static_batch} images")
        results: list[list[HandDetection]] = []
        for start in range(0, len(images), chunk):
            part = images[start : start + chunk]
            tensor, infos = self.preprocess(part)
            raw = self.raw_predict(tensor)
            for i, (im, info) in enumerate(zip(part, infos)):
                results.append(self.decode(raw[i], info, im.shape[:2]))
        return results

    def decode(self, raw: np.ndarray, info: LetterboxInfo, image_hw: tuple[int, int]) -> list[HandDetection]:
        """raw: C x N predictions of one image -> detections in source pixels (see module docstring)."""
        nc = self.metadata.num_classes
        preds = raw.T  # N x C
        class_scores = preds[:, BOX_VALUES : BOX_VALUES + nc]
        classes = np.argmax(class_scores, axis=1)
        scores = class_scores[np.arange(len(classes)), classes]
        candidates = np.flatnonzero(scores > self.conf_threshold)
        if len(candidates) > MAX_NMS_CANDIDATES:
            order = np.argsort(-scores[candidates], kind="stable")
            candidates = candidates[order[:MAX_NMS_CANDIDATES]]
        if len(candidates) == 0:
            return []
        xywh = preds[candidates, :BOX_VALUES]
        boxes = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], axis=1)
        keep = nms_per_class(
            boxes, scores[candidates], classes[candidates], self.iou_threshold, self.max_detections
        )
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
            if self.metadata.kpt_shape is None:
                detections.append(HandDetection(box, side, score))
                continue
            num_kpts, kpt_dim = self.metadata.kpt_shape
            kpts = preds[index, BOX_VALUES + nc :].reshape(num_kpts, kpt_dim).copy()
            kpts[:, :2] = np.clip((kpts[:, :2] - pad) / gain, 0.0, limit)
            detections.append(KeypointHandDetection(box, side, score, keypoints=kpts))
        return detections

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _check_image(image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"the detector takes H x W x 3 RGB uint8 images, got shape {image.shape} dtype {image.dtype} "
                "(convert with wilor_ros.core.preprocessing.to_rgb)"
            )
        if min(image.shape[:2]) < 1:
            raise ValueError(f"empty image of shape {image.shape}")
        return image

    def close(self) -> None:
        self.session = None
