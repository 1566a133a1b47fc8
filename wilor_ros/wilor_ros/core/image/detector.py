"""Hand detectors: the ``HandDetector`` interface, and the YOLO detector built from parts.

``YoloHandDetector`` is composed of the runtime-free pre/post-processing of core/image/yolo.py (letterbox,
decoding, NMS, as ultralytics' predictor does them) and a small ``NetworkRunner`` that only runs the
network: ``OnnxRuntimeRunner`` here, the TensorRT engine runner in core/backends/tensorrt/detector.py.
So the ONNX Runtime and TensorRT detectors differ in one part, and the parity tests against
ultralytics (test_detector.py) cover the code both share.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from wilor_ros.core.files.onnx_runtime import open_session, read_metadata
from wilor_ros.core.image.yolo import (
    DEFAULT_CONF_THRESHOLD,
    DEFAULT_IOU_THRESHOLD,
    DEFAULT_MAX_DETECTIONS,
    PIXEL_SCALE,
    DetectorMetadata,
    LetterboxInfo,
    NetworkLayout,
    TensorSpec,
    decode_predictions,
    letterbox,
    network_layout,
    parse_metadata,
)
from wilor_ros.core.types import HandDetection

LOG = logging.getLogger(__name__)


@runtime_checkable
class HandDetector(Protocol):
    """What the pipeline, the temporal pipeline and the offline runner need of a hand detector."""

    def detect(self, image_rgb: np.ndarray) -> list[HandDetection]:
        """image_rgb: H x W x 3 RGB uint8 -> hands, best score first, boxes XYXY in source pixels."""
        ...

    def detect_batch(self, images_rgb: Sequence[np.ndarray]) -> list[list[HandDetection]]:
        """One list of hands per image, as ``detect`` gives them."""
        ...

    def reconfigure(self, conf_threshold: float | None = None, iou_threshold: float | None = None) -> None:
        """Change the score / NMS thresholds for the next call (None: keep); ValueError when out of range."""
        ...

    def close(self) -> None:
        """Release the runtime (sessions, engines, device memory)."""
        ...


class NetworkRunner(Protocol):
    """Runs a detector network and nothing else: B x 3 x H x W input -> B x C x N raw predictions."""

    inputs: tuple[TensorSpec, ...]  # as declared by the network file (symbolic names for dynamic axes)
    outputs: tuple[TensorSpec, ...]
    metadata: dict[str, str]  # the file's metadata_props (ultralytics' keys and ours)
    max_batch: int | None  # most images one call takes (None: any)

    def run(self, tensor: np.ndarray) -> np.ndarray:
        """tensor: B x 3 x H x W in the input's dtype -> the first output, B x C x N (any float dtype)."""
        ...

    def close(self) -> None: ...


class OnnxRuntimeRunner:
    """The detector network in an ONNX Runtime session (providers: core/files/onnx_runtime.py)."""

    max_batch: int | None = None

    def __init__(
        self,
        onnx_path: str | Path,
        device: str = "cpu",
        threads: int | None = None,
        providers: Sequence[str] | None = None,
    ) -> None:
        self.session = open_session(onnx_path, device, threads, providers)
        self.metadata = read_metadata(self.session)
        self.inputs = tuple(TensorSpec(i.name, tuple(i.shape), i.type) for i in self.session.get_inputs())
        self.outputs = tuple(TensorSpec(o.name, tuple(o.shape), o.type) for o in self.session.get_outputs())

    def run(self, tensor: np.ndarray) -> np.ndarray:
        return self.session.run([self.outputs[0].name], {self.inputs[0].name: tensor})[0]

    def close(self) -> None:
        self.session = None


def detector_file(onnx_path: str | Path) -> Path:
    """``onnx_path`` as a Path; RuntimeError saying how to make it when it does not exist."""
    path = Path(onnx_path)
    if not path.is_file():
        raise RuntimeError(
            f"detector ONNX file not found: {path} (make it with `wilor-ros export-detector detector.pt`)"
        )
    return path


def check_thresholds(conf_threshold: float, iou_threshold: float) -> None:
    """The ranges of PipelineConfig.detection_threshold / nms_iou_threshold and of the ROS parameters, so
    a value they accept is never refused here (conf 1.0 keeps no box: scores are at most 1)."""
    if not 0.0 <= conf_threshold <= 1.0:
        raise ValueError(f"conf_threshold must be in [0, 1], got {conf_threshold}")
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")


class YoloHandDetector:
    """An ultralytics-exported YOLO hand detector (detect or pose head) run by ``runner``.

    source: the network's file, for messages.
    conf_threshold: keep boxes whose best class score is > this (official demo: 0.3).
    iou_threshold: NMS IoU above which the lower-scored box of the same class is dropped (ultralytics 0.7).
    max_detections: at most this many boxes per image (ultralytics max_det 300).
    rect: with a dynamic-shape model, pad only to a multiple of the stride as ultralytics' predictor
        does (``False`` = always pad to the full export size); ignored for static shapes.
    """

    def __init__(
        self,
        runner: NetworkRunner,
        source: str | Path,
        conf_threshold: float = DEFAULT_CONF_THRESHOLD,
        iou_threshold: float = DEFAULT_IOU_THRESHOLD,
        max_detections: int = DEFAULT_MAX_DETECTIONS,
        rect: bool = True,
    ) -> None:
        check_thresholds(conf_threshold, iou_threshold)
        if max_detections < 1:
            raise ValueError(f"max_detections must be >= 1, got {max_detections}")
        self.runner = runner
        self.path = Path(source)
        self.conf_threshold = float(conf_threshold)
        self.iou_threshold = float(iou_threshold)
        self.max_detections = int(max_detections)
        self.metadata: DetectorMetadata = parse_metadata(runner.metadata, source=str(source))
        self.layout: NetworkLayout = network_layout(runner.inputs, runner.outputs, self.metadata, str(source))
        self.rect = bool(rect) and self.layout.dynamic_hw
        self.synthetic = self.metadata.synthetic
        if self.synthetic:
            LOG.warning("detector %s has SYNTHETIC (random) weights: it detects no real hands", source)

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

    @property
    def imgsz(self) -> tuple[int, int]:
        return self.layout.imgsz

    @property
    def dynamic_hw(self) -> bool:
        return self.layout.dynamic_hw

    @property
    def dynamic_batch(self) -> bool:
        return self.layout.static_batch is None

    @property
    def static_batch(self) -> int | None:
        return self.layout.static_batch

    def input_spec(self) -> list[TensorSpec]:
        """The model inputs (one: images, B x 3 x H x W, RGB in [0, 1])."""
        return list(self.runner.inputs)

    def output_spec(self) -> list[TensorSpec]:
        """The model outputs (first: B x (4 + nc [+ K * D]) x N raw predictions)."""
        return list(self.runner.outputs)

    def reconfigure(self, conf_threshold: float | None = None, iou_threshold: float | None = None) -> None:
        conf = self.conf_threshold if conf_threshold is None else float(conf_threshold)
        iou = self.iou_threshold if iou_threshold is None else float(iou_threshold)
        check_thresholds(conf, iou)
        self.conf_threshold, self.iou_threshold = conf, iou

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
        return tensor.astype(self.layout.input_dtype, copy=False), infos

    def raw_predict(self, tensor: np.ndarray) -> np.ndarray:
        """B x 3 x H x W network input -> B x C x N float32 raw predictions."""
        out = np.asarray(self.runner.run(tensor), dtype=np.float32)
        if out.ndim != 3 or out.shape[1] != self.layout.channels:
            raise RuntimeError(
                f"{self.path}: unexpected output shape {out.shape} (expected B x {self.layout.channels} x N)"
            )
        return out

    def detect(self, image_rgb: np.ndarray) -> list[HandDetection]:
        """image_rgb: H x W x 3 RGB uint8 -> hands sorted by descending score (KeypointHandDetection for
        pose models), boxes XYXY in source pixels clipped to the image."""
        return self.detect_batch([image_rgb])[0]

    def detect_batch(self, images_rgb: Sequence[np.ndarray]) -> list[list[HandDetection]]:
        """One list of detections per image. One network call when the batch axis is dynamic and the
        runner takes any batch; otherwise calls of the export's fixed batch / the runner's largest."""
        images = list(images_rgb)
        if not images:
            return []
        static = self.layout.static_batch
        if static is not None and static != 1 and len(images) % static:
            raise ValueError(f"this detector takes batches of exactly {static} images")
        chunk = static or self.runner.max_batch or len(images)
        results: list[list[HandDetection]] = []
        for start in range(0, len(images), chunk):
            part = images[start : start + chunk]
            tensor, infos = self.preprocess(part)
            raw = self.raw_predict(tensor)
            for i, (im, info) in enumerate(zip(part, infos)):
                results.append(self.decode(raw[i], info, im.shape[:2]))
        return results

    def decode(self, raw: np.ndarray, info: LetterboxInfo, image_hw: tuple[int, int]) -> list[HandDetection]:
        """raw: C x N predictions of one image -> detections in source pixels (core/image/yolo.py)."""
        return decode_predictions(
            raw, info, image_hw, self.metadata, self.conf_threshold, self.iou_threshold, self.max_detections
        )

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _check_image(image: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"the detector takes H x W x 3 RGB uint8 images, got shape {image.shape} dtype {image.dtype} "
                "(convert with wilor_ros.core.image.preprocessing.to_rgb)"
            )
        if min(image.shape[:2]) < 1:
            raise ValueError(f"empty image of shape {image.shape}")
        return image

    def close(self) -> None:
        self.runner.close()


class OnnxHandDetector(YoloHandDetector):
    """The YOLO hand detector on ONNX Runtime: the file written by ``wilor-ros export-detector`` (or
    ultralytics' own ONNX export).

    providers: ONNX Runtime providers; None = CUDA when ``device`` starts with "cuda" and available, then CPU.
    threads: intra-op CPU threads (None: ONNX Runtime's default). Other arguments: ``YoloHandDetector``.
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
        path = detector_file(onnx_path)
        check_thresholds(conf_threshold, iou_threshold)  # before a session is opened for nothing
        runner = OnnxRuntimeRunner(path, device, threads, providers)
        super().__init__(runner, path, conf_threshold, iou_threshold, max_detections, rect)
