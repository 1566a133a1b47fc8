"""OnnxHandDetector against ultralytics itself, and the detector's composition.

A tiny 2-class YOLO (own YAML) is trained for a few seconds on rendered shapes (red boxes = "left",
blue ellipses = "right"), exported with our exporter, and our ONNX Runtime detector must reproduce
``YOLO.predict`` (same letterbox, decoding, NMS, scaling): same count and classes, box IoU >= 0.99,
scores within 1e-3, on square and non-square images. ultralytics is used only here and in the tools.

The letterbox/decoding/NMS code is shared by every detector runtime (core/image/detector.py composes it with a
network runner); the composition tests run it with ONNX Runtime runners of other batch limits and with
the TensorRT detector's fp16 graph, here on the CPU.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pytest

from wilor_ros.core.image.detector import HandDetector, OnnxHandDetector, OnnxRuntimeRunner, YoloHandDetector
from wilor_ros.core.image.yolo import (
    KeypointHandDetection,
    check_class_names,
    letterbox,
    nms_per_class,
    parse_metadata,
)
from wilor_ros.core.types import HandDetection, Side

pytest.importorskip("ultralytics", reason="ultralytics is needed to build and export test detectors")

IMGSZ = 160  # training and export size: small enough to train in seconds on 2 CPU cores
TRAIN_IMAGES = 24
TRAIN_EPOCHS = 80
BOX_IOU_MIN = 0.99
SCORE_TOL = 1e-3
NAMES = {0: "left", 1: "right"}
BACKGROUND = (150, 230)  # grey-ish background value range (uint8)
LEFT_BGR = (0, 0, 220)  # class 0: filled red rectangle
RIGHT_BGR = (220, 60, 0)  # class 1: filled blue ellipse
# (height, width) of the parity images: square, 200 x 130 and 97 x 211 (W x H) and a larger one
TEST_SHAPES = ((160, 160), (130, 200), (211, 97), (240, 320))
TRAIN_SHAPE_SIZE = (0.2, 0.38)  # shape sides as fractions of the shorter image side
# larger on the parity images: once letterboxed into 160 pixels, a narrow image's shapes shrink
TEST_SHAPE_SIZE = (0.35, 0.5)

# A small YOLOv8-style network of our own: strides 16 and 32 (max 32, as ultralytics assumes for .pt).
TINY_DETECT_YAML = """\
nc: 2
backbone:
  - [-1, 1, Conv, [8, 3, 2]]
  - [-1, 1, Conv, [16, 3, 2]]
  - [-1, 1, C2f, [16, True]]
  - [-1, 1, Conv, [32, 3, 2]]
  - [-1, 1, C2f, [32, True]]
  - [-1, 1, Conv, [48, 3, 2]]
  - [-1, 1, C2f, [48, True]]
  - [-1, 1, Conv, [64, 3, 2]]
  - [-1, 1, SPPF, [64, 5]]
head:
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 6], 1, Concat, [1]]
  - [-1, 1, C2f, [48]]
  - [[11, 8], 1, Detect, [nc]]
"""
KPT_SHAPE = (5, 3)
TINY_POSE_YAML = TINY_DETECT_YAML.replace("nc: 2\n", f"nc: 2\nkpt_shape: {list(KPT_SHAPE)}\n").replace(
    "Detect, [nc]", "Pose, [nc, kpt_shape]"
)


# ------------------------------------------------------------------ synthetic data
def draw_scene(
    rng: np.random.Generator,
    height: int,
    width: int,
    classes: list[int],
    size_range: tuple[float, float] = TRAIN_SHAPE_SIZE,
) -> tuple[np.ndarray, list]:
    """BGR uint8 image with one non-overlapping shape per class id, each side a size_range fraction of
    the shorter image side; labels (cls, cx, cy, w, h) normalised to [0, 1]."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = rng.integers(*BACKGROUND, 3)
    side = min(height, width)
    placed: list[tuple[int, int, int, int]] = []
    labels = []
    for cls in classes:
        w = int(rng.integers(side * size_range[0], side * size_range[1]))
        h = int(rng.integers(side * size_range[0], side * size_range[1]))
        for _ in range(100):
            x, y = int(rng.integers(0, width - w)), int(rng.integers(0, height - h))
            if all(x + w < a or a + c < x or y + h < b or b + d < y for a, b, c, d in placed):
                break
        placed.append((x, y, w, h))
        if cls == 0:
            cv2.rectangle(image, (x, y), (x + w - 1, y + h - 1), LEFT_BGR, -1)
        else:
            cv2.ellipse(image, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, RIGHT_BGR, -1)
        labels.append((cls, (x + w / 2) / width, (y + h / 2) / height, w / width, h / height))
    return image, labels


def write_dataset(root: Path, keypoints: bool = False) -> Path:
    """YOLO-format dataset (train = val) in root; returns the data YAML. With keypoints, each object
    gets its 4 box corners and centre as K = 5 visible keypoints."""
    rng = np.random.default_rng(0)
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    for i in range(TRAIN_IMAGES):
        image, labels = draw_scene(rng, IMGSZ, IMGSZ, [i % 2, (i + 1) % 2])
        cv2.imwrite(str(root / "images" / "train" / f"{i:03d}.png"), image)
        lines = []
        for cls, cx, cy, w, h in labels:
            line = f"{cls} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}"
            if keypoints:
                pts = [(cx - w / 2, cy - h / 2), (cx + w / 2, cy - h / 2), (cx + w / 2, cy + h / 2)]
                pts += [(cx - w / 2, cy + h / 2), (cx, cy)]
                line += "".join(f" {x:.6f} {y:.6f} 2" for x, y in pts)
            lines.append(line)
        (root / "labels" / "train" / f"{i:03d}.txt").write_text("\n".join(lines) + "\n")
    extra = f"kpt_shape: {list(KPT_SHAPE)}\n" if keypoints else ""
    data_yaml = root / "data.yaml"
    data_yaml.write_text(
        f"path: {root}\ntrain: images/train\nval: images/train\n{extra}names:\n  0: left\n  1: right\n"
    )
    return data_yaml


@dataclass
class TrainedDetector:
    pt: Path
    onnx: Path  # dynamic export (our exporter)
    images_bgr: list[np.ndarray]  # parity images, TEST_SHAPES


@pytest.fixture(scope="session")
def trained_detector(tmp_path_factory) -> TrainedDetector:
    """Train the tiny YOLO once per session (about 20 s on 2 cores) and export it."""
    import torch

    from wilor_ros.tools.export_detector import export_detector
    from wilor_ros.tools.train_detector import train_detector

    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("detector")
    data_yaml = write_dataset(root / "data")
    model_yaml = root / "tiny.yaml"
    model_yaml.write_text(TINY_DETECT_YAML)
    best = train_detector(
        model_yaml,
        data_yaml,
        root / "runs",
        epochs=TRAIN_EPOCHS,
        imgsz=IMGSZ,
        batch=8,
        device="cpu",
        workers=0,
        # no colour jitter (colour is the class), no mosaic; no plots/AMP (they would download files)
        extra={
            "amp": False,
            "plots": False,
            "val": False,
            "hsv_h": 0.0,
            "hsv_s": 0.0,
            "hsv_v": 0.0,
            "mosaic": 0.0,
            "close_mosaic": 0,
            "optimizer": "AdamW",
            "lr0": 0.003,
            "warmup_epochs": 1,
            "seed": 0,
            "verbose": False,
        },
    )
    onnx_path = export_detector(best, root / "detector.onnx", imgsz=IMGSZ, dynamic=True)
    rng = np.random.default_rng(123)
    images = [draw_scene(rng, h, w, [0, 1], TEST_SHAPE_SIZE)[0] for h, w in TEST_SHAPES]
    return TrainedDetector(best, onnx_path, images)


# ------------------------------------------------------------------ comparison helpers
def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two XYXY boxes."""
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def ultralytics_predict(model, image_bgr: np.ndarray, conf: float, iou_thr: float) -> list[dict]:
    """ultralytics' own prediction: list of {box, cls, score[, kpts]} (numpy, source pixels)."""
    result = model.predict(image_bgr, conf=conf, iou=iou_thr, imgsz=IMGSZ, device="cpu", verbose=False)[0]
    boxes = result.boxes
    out = []
    for i in range(len(boxes)):
        item = {
            "box": boxes.xyxy[i].numpy(),
            "cls": int(boxes.cls[i]),
            "score": float(boxes.conf[i]),
        }
        if result.keypoints is not None:
            item["kpts"] = result.keypoints.data[i].numpy()
        out.append(item)
    return out


def assert_same_detections(ours: list[HandDetection], theirs: list[dict], where: str) -> None:
    assert len(ours) == len(theirs), f"{where}: {len(ours)} detections vs ultralytics {len(theirs)}"
    scores = [d.score for d in ours]
    assert scores == sorted(scores, reverse=True), f"{where}: not sorted by score"
    unmatched = list(range(len(ours)))
    for ref in sorted(theirs, key=lambda r: -r["score"]):
        best = max(unmatched, key=lambda j: iou(ours[j].box, ref["box"]))
        unmatched.remove(best)
        det = ours[best]
        assert iou(det.box, ref["box"]) >= BOX_IOU_MIN, f"{where}: {det.box} vs {ref['box']}"
        assert int(det.side) == ref["cls"], f"{where}: class {det.side} vs {ref['cls']}"
        assert abs(det.score - ref["score"]) <= SCORE_TOL, f"{where}: score {det.score} vs {ref['score']}"
        if "kpts" in ref:
            assert isinstance(det, KeypointHandDetection)
            np.testing.assert_allclose(det.keypoints, ref["kpts"], atol=0.05, err_msg=where)


def rgb(image_bgr: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image_bgr[..., ::-1])


# ------------------------------------------------------------------ parity with ultralytics
@pytest.mark.slow
@pytest.mark.parametrize(("conf", "iou_thr"), [(0.25, 0.7), (0.05, 0.5)])
def test_dynamic_export_matches_ultralytics(trained_detector: TrainedDetector, conf: float, iou_thr: float):
    from ultralytics import YOLO

    model = YOLO(str(trained_detector.pt))
    detector = OnnxHandDetector(trained_detector.onnx, conf_threshold=conf, iou_threshold=iou_thr)
    assert detector.dynamic_hw and detector.dynamic_batch and detector.imgsz == (IMGSZ, IMGSZ)
    total = 0
    for image in trained_detector.images_bgr:
        ours = detector.detect(rgb(image))
        theirs = ultralytics_predict(model, image, conf, iou_thr)
        assert_same_detections(ours, theirs, f"{image.shape} conf={conf}")
        total += len(ours)
        height, width = image.shape[:2]
        for det in ours:
            assert 0 <= det.box[0] < det.box[2] <= width and 0 <= det.box[1] < det.box[3] <= height
    # the training worked: the comparison is about real detections, not empty lists
    assert total >= len(trained_detector.images_bgr)


@pytest.mark.slow
def test_static_export_pads_to_full_size_like_ultralytics(trained_detector: TrainedDetector, tmp_path: Path):
    """A fixed-shape export: full-square letterbox; compared with ultralytics running the same ONNX."""
    from ultralytics import YOLO

    from wilor_ros.tools.export_detector import export_detector

    static = export_detector(trained_detector.pt, tmp_path / "static.onnx", imgsz=IMGSZ, dynamic=False)
    detector = OnnxHandDetector(static, conf_threshold=0.25)
    assert not detector.dynamic_hw and detector.static_batch == 1
    assert detector.input_spec()[0].shape == (1, 3, IMGSZ, IMGSZ)
    tensor, infos = detector.preprocess([rgb(trained_detector.images_bgr[1])])
    assert tensor.shape == (1, 3, IMGSZ, IMGSZ) and infos[0].pad_y > 0
    model = YOLO(str(static), task="detect")
    for image in trained_detector.images_bgr:
        assert_same_detections(
            detector.detect(rgb(image)), ultralytics_predict(model, image, 0.25, 0.7), f"static {image.shape}"
        )
    # a static batch of 1 still serves detect_batch, one image at a time
    assert len(detector.detect_batch([rgb(im) for im in trained_detector.images_bgr])) == len(TEST_SHAPES)


@pytest.mark.slow
def test_half_precision_exports(trained_detector: TrainedDetector, tmp_path: Path):
    """half=True on CPU: FP16 weights, float32 inputs/outputs (ultralytics' CPU path); a GPU export has
    float16 inputs/outputs, emulated here with ONNX Runtime's converter: the runtime casts for it."""
    import onnx
    from onnxruntime.transformers import float16
    from ultralytics import YOLO

    from wilor_ros.tools.export_detector import export_detector

    half = export_detector(trained_detector.pt, tmp_path / "half.onnx", imgsz=IMGSZ, half=True)
    detector = OnnxHandDetector(half, conf_threshold=0.25)
    model = YOLO(str(half), task="detect")
    for image in trained_detector.images_bgr[:2]:
        assert_same_detections(
            detector.detect(rgb(image)), ultralytics_predict(model, image, 0.25, 0.7), f"fp16 {image.shape}"
        )

    fp16_io = tmp_path / "fp16_io.onnx"
    onnx.save(
        float16.convert_float_to_float16(onnx.load(str(trained_detector.onnx)), keep_io_types=False), fp16_io
    )
    detector16 = OnnxHandDetector(fp16_io, conf_threshold=0.25)
    assert detector16.input_spec()[0].dtype == "tensor(float16)"
    reference = OnnxHandDetector(trained_detector.onnx, conf_threshold=0.25)
    image = rgb(trained_detector.images_bgr[0])
    got, want = detector16.detect(image), reference.detect(image)
    assert got and want
    assert got[0].side == want[0].side and abs(got[0].score - want[0].score) < 0.02
    assert iou(got[0].box, want[0].box) > 0.95


@pytest.mark.slow
def test_detect_batch(trained_detector: TrainedDetector):
    detector = OnnxHandDetector(trained_detector.onnx, conf_threshold=0.25)
    same = [rgb(trained_detector.images_bgr[1]), rgb(trained_detector.images_bgr[1][:, ::-1])]
    for batch_dets, single in zip(detector.detect_batch(same), [detector.detect(im) for im in same]):
        assert len(batch_dets) == len(single)
        for a, b in zip(batch_dets, single):
            np.testing.assert_allclose(a.box, b.box, atol=1e-3)
            assert a.side == b.side and abs(a.score - b.score) < 1e-5
    # different shapes cannot share a minimal rectangle: each is padded to the full size, as in
    # ultralytics' predictor, i.e. as a detector that never uses minimal padding
    mixed = [rgb(im) for im in trained_detector.images_bgr]
    full = OnnxHandDetector(trained_detector.onnx, conf_threshold=0.25, rect=False)
    for got, want in zip(detector.detect_batch(mixed), [full.detect(im) for im in mixed]):
        assert [(d.side, round(d.score, 4)) for d in got] == [(d.side, round(d.score, 4)) for d in want]
    assert detector.detect_batch([]) == []


@pytest.mark.slow
def test_pose_head_matches_ultralytics(trained_detector: TrainedDetector, tmp_path: Path):
    """A pose-head model (K = 5 keypoints): the trained box/class branches copied in, random keypoint
    branch; boxes, scores and keypoints must match ultralytics."""
    import torch
    from ultralytics import YOLO

    from wilor_ros.tools.export_detector import export_detector

    yaml_path = tmp_path / "tiny-pose.yaml"
    yaml_path.write_text(TINY_POSE_YAML)
    torch.manual_seed(0)
    pose = YOLO(str(yaml_path), task="pose")
    trained = YOLO(str(trained_detector.pt)).model.float().state_dict()
    missing = pose.model.load_state_dict(trained, strict=False).missing_keys
    assert missing and all(".cv4." in key for key in missing)  # only the keypoint branch stays random
    pose.model.names = dict(NAMES)
    pt_path = tmp_path / "pose.pt"
    pose.save(str(pt_path))
    onnx_path = export_detector(pt_path, tmp_path / "pose.onnx", imgsz=IMGSZ)

    detector = OnnxHandDetector(onnx_path, conf_threshold=0.25)
    assert detector.task == "pose" and detector.kpt_shape == KPT_SHAPE
    assert detector.output_spec()[0].shape[1] == 4 + 2 + KPT_SHAPE[0] * KPT_SHAPE[1]
    model = YOLO(str(pt_path))
    found = 0
    for image in trained_detector.images_bgr[:2]:
        ours = detector.detect(rgb(image))
        assert_same_detections(ours, ultralytics_predict(model, image, 0.25, 0.7), f"pose {image.shape}")
        for det in ours:
            assert det.keypoints.shape == KPT_SHAPE
        found += len(ours)
    assert found > 0


# ------------------------------------------------------------------ composition: shared code, other runners
class CountingRunner(OnnxRuntimeRunner):
    """ONNX Runtime's runner limited to ``max_batch`` images per call, counting its calls."""

    def __init__(self, onnx_path: Path, max_batch: int | None) -> None:
        super().__init__(onnx_path)
        self.max_batch = max_batch
        self.calls: list[int] = []  # images per call

    def run(self, tensor: np.ndarray) -> np.ndarray:
        self.calls.append(len(tensor))
        return super().run(tensor)


def same_detections(got: list[HandDetection], want: list[HandDetection]) -> bool:
    return len(got) == len(want) and all(
        a.side == b.side and abs(a.score - b.score) < 1e-5 and np.allclose(a.box, b.box, atol=1e-3)
        for a, b in zip(got, want)
    )


@pytest.mark.slow
def test_runner_batch_limit_chunks_the_network_calls(trained_detector: TrainedDetector):
    """A runner that takes at most 2 images per call (as a TensorRT engine's profile does) gets chunks of
    2; the detections are those of one call over all images."""
    same_shape = [rgb(trained_detector.images_bgr[1])] * 3 + [
        rgb(trained_detector.images_bgr[1][:, ::-1])
    ] * 2
    limited = CountingRunner(trained_detector.onnx, max_batch=2)
    chunked = YoloHandDetector(limited, trained_detector.onnx, conf_threshold=0.25)
    unlimited = CountingRunner(trained_detector.onnx, max_batch=None)
    whole = YoloHandDetector(unlimited, trained_detector.onnx, conf_threshold=0.25)
    got, want = chunked.detect_batch(same_shape), whole.detect_batch(same_shape)
    assert limited.calls == [2, 2, 1] and unlimited.calls == [5]
    assert sum(len(d) for d in want) >= len(same_shape)  # real detections are compared
    assert all(same_detections(g, w) for g, w in zip(got, want))


@pytest.mark.slow
def test_reconfigure_changes_the_next_call_and_refuses_bad_values(trained_detector: TrainedDetector):
    detector = OnnxHandDetector(trained_detector.onnx, conf_threshold=0.05, iou_threshold=0.5)
    assert isinstance(detector, HandDetector)
    image = rgb(trained_detector.images_bgr[0])
    loose = detector.detect(image)
    best = loose[0].score
    detector.reconfigure(conf_threshold=best - 1e-4)  # IoU kept
    assert detector.iou_threshold == 0.5
    assert [d.score for d in detector.detect(image)] == [d.score for d in loose if d.score > best - 1e-4]
    for bad in ({"conf_threshold": 1.5}, {"iou_threshold": 0.0}):
        with pytest.raises(ValueError, match="threshold must be in"):
            detector.reconfigure(**bad)
    assert detector.conf_threshold == pytest.approx(best - 1e-4) and detector.iou_threshold == 0.5
    # 1.0 is inside PipelineConfig's and the ROS parameter's range: accepted, and keeps no box
    detector.reconfigure(conf_threshold=1.0)
    assert detector.detect(image) == []
    assert OnnxHandDetector(trained_detector.onnx, conf_threshold=1.0).detect(image) == []


@pytest.mark.slow
def test_fp16_engine_graph_keeps_the_detections(trained_detector: TrainedDetector, tmp_path: Path):
    """The graph a TensorRT fp16 detector engine is built from (every node fp16 but the reductions),
    run with ONNX Runtime through the same shared code: the same hands, boxes and scores close."""
    from wilor_ros.core.backends.tensorrt.mixed_precision import make_mixed_precision_onnx

    mixed = tmp_path / "detector.mixed-fp16.onnx"
    counts = make_mixed_precision_onnx(trained_detector.onnx, mixed, scopes=None)
    assert counts["fp16_nodes"] > 10 * counts["fp32_nodes"]
    half = YoloHandDetector(OnnxRuntimeRunner(mixed), mixed, conf_threshold=0.25)
    full = OnnxHandDetector(trained_detector.onnx, conf_threshold=0.25)
    found = 0
    for image in trained_detector.images_bgr:
        got, want = half.detect(rgb(image)), full.detect(rgb(image))
        assert [d.side for d in got] == [d.side for d in want], image.shape
        for a, b in zip(got, want):
            assert iou(a.box, b.box) > 0.98 and abs(a.score - b.score) < 0.02
        found += len(want)
    assert found >= len(trained_detector.images_bgr)


# ------------------------------------------------------------------ class names, metadata, errors
def _props(**overrides: str) -> dict[str, str]:
    props = {
        "task": "detect",
        "names": "{0: 'left', 1: 'right'}",
        "imgsz": "[640, 640]",
        "stride": "32",
        "batch": "1",
        "end2end": "False",
    }
    props.update(overrides)
    return props


def test_parse_metadata():
    meta = parse_metadata(_props())
    assert meta.task == "detect" and meta.names == NAMES and meta.imgsz == (640, 640) and meta.stride == 32
    assert meta.kpt_shape is None and not meta.synthetic and not meta.end2end
    meta = parse_metadata(_props(task="pose", kpt_shape="[21, 3]", imgsz="320", wilor_ros_synthetic="true"))
    assert meta.kpt_shape == (21, 3) and meta.imgsz == (320, 320) and meta.synthetic
    assert meta.keypoint_values == 63
    assert parse_metadata(_props(imgsz="[384, 640]")).imgsz == (384, 640)
    assert parse_metadata(_props(names="{0: 'Left', 1: 'RIGHT'}")).names == NAMES


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"names": "{0: 'hand', 1: 'face'}"}, "left"),
        ({"names": "{0: 'right', 1: 'left'}"}, "left"),
        ({"names": "{0: 'left', 1: 'right', 2: 'face'}"}, "left"),
        ({"names": "__import__('os').getcwd()"}, "literal"),
        ({"imgsz": "[640, 'a']"}, "imgsz"),
        ({"task": "segment"}, "task"),
        ({"task": "pose"}, "kpt_shape"),
        ({"stride": "x"}, "integer"),
    ],
)
def test_parse_metadata_rejects(overrides: dict, message: str):
    with pytest.raises(ValueError, match=message):
        parse_metadata(_props(**overrides))
    with pytest.raises(ValueError, match="ultralytics export"):
        parse_metadata({"task": "detect"})


def test_check_class_names_accepts_lists():
    assert check_class_names(["left", "right"]) == NAMES
    with pytest.raises(ValueError, match="0 = left hand"):
        check_class_names(["right", "left"])


def test_wrong_class_names_are_refused(tmp_path: Path):
    """Export refuses a .pt whose classes are not {0: left, 1: right}; the runtime refuses such ONNX."""
    import torch
    from ultralytics import YOLO

    from wilor_ros.tools.export_detector import export_detector, write_onnx_metadata

    yaml_path = tmp_path / "tiny.yaml"
    yaml_path.write_text(TINY_DETECT_YAML)
    torch.manual_seed(0)
    model = YOLO(str(yaml_path), task="detect")
    model.model.names = {0: "hand", 1: "face"}
    pt_path = tmp_path / "wrong.pt"
    model.save(str(pt_path))
    with pytest.raises(ValueError, match="left"):
        export_detector(pt_path, tmp_path / "wrong.onnx", imgsz=IMGSZ)
    assert not (tmp_path / "wrong.onnx").exists()

    # an ONNX file exported by ultralytics directly with other names
    exported = Path(YOLO(str(pt_path)).export(format="onnx", imgsz=IMGSZ, dynamic=True, device="cpu"))
    with pytest.raises(ValueError, match="0 = left hand"):
        OnnxHandDetector(exported)
    write_onnx_metadata(exported, {"names": "{0: 'left', 1: 'right'}"})
    assert OnnxHandDetector(exported).names == NAMES
    write_onnx_metadata(exported, {"end2end": "True"})
    with pytest.raises(ValueError, match="end2end"):
        OnnxHandDetector(exported)


def test_missing_file_and_bad_arguments(tmp_path: Path):
    with pytest.raises(RuntimeError, match="export-detector"):
        OnnxHandDetector(tmp_path / "nope.onnx")
    from wilor_ros.tools.export_detector import export_detector

    with pytest.raises(RuntimeError, match="not found"):
        export_detector(tmp_path / "nope.pt")


# ------------------------------------------------------------------ building blocks
@pytest.mark.parametrize("shape", [(160, 160), (130, 200), (211, 97), (480, 640), (1, 300), (37, 5)])
@pytest.mark.parametrize("minimal", [False, True])
def test_letterbox_equals_ultralytics(shape: tuple[int, int], minimal: bool):
    from ultralytics.data.augment import LetterBox

    image = np.random.default_rng(0).integers(0, 255, (*shape, 3), dtype=np.uint8)
    ours, info = letterbox(image, (IMGSZ, IMGSZ), 32, minimal)
    theirs = LetterBox((IMGSZ, IMGSZ), auto=minimal, stride=32)(image=image)
    assert ours.shape == theirs.shape
    np.testing.assert_array_equal(ours, theirs)
    assert (info.input_height, info.input_width) == ours.shape[:2]
    # the centre of the placed image maps back to the source centre
    centre = (np.array([shape[1], shape[0]]) / 2) * [info.gain_x, info.gain_y] + [info.pad_x, info.pad_y]
    assert np.allclose(centre, np.array(ours.shape[1::-1]) / 2, atol=1.0)


def test_nms_is_class_aware():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0.5, 0, 10.5, 10], [30, 30, 40, 40]], np.float32)
    scores = np.array([0.9, 0.8, 0.95, 0.5], np.float32)
    classes = np.array([0, 0, 1, 0])
    keep = nms_per_class(boxes, scores, classes, 0.5, 10)
    # box 1 overlaps box 0 (same class) and goes; box 2 overlaps too but is the other class
    assert keep.tolist() == [2, 0, 3]
    assert nms_per_class(boxes, scores, classes, 0.5, 2).tolist() == [2, 0]
    assert nms_per_class(boxes[:0], scores[:0], classes[:0], 0.5, 10).tolist() == []


def test_keypoint_detection_is_a_hand_detection():
    det = KeypointHandDetection([1, 2, 3, 4], "right", 0.5, keypoints=np.zeros((21, 3)))
    assert isinstance(det, HandDetection) and det.side is Side.RIGHT and det.keypoints.dtype == np.float32
    with pytest.raises(ValueError, match="keypoints"):
        KeypointHandDetection([1, 2, 3, 4], 0, 0.5, keypoints=np.zeros(5))


# ------------------------------------------------------------------ synthetic detector
@pytest.mark.slow
def test_synthetic_detector_finds_nothing(tmp_path: Path, demo_images_dir: Path):
    from wilor_ros.tools.export_detector import make_synthetic_detector

    onnx_path = make_synthetic_detector(tmp_path, seed=0)
    assert onnx_path == tmp_path / "detector.onnx" and (tmp_path / "detector.pt").is_file()
    detector = OnnxHandDetector(onnx_path)
    assert detector.synthetic and detector.names == NAMES and detector.imgsz == (640, 640)
    photo = cv2.imread(str(sorted(demo_images_dir.iterdir())[0]))
    assert photo is not None
    assert detector.detect(rgb(photo)) == []
    with pytest.raises(ValueError, match="RGB uint8"):
        detector.detect(photo.astype(np.float32))
    # copying keeps the marker (it lives in the file, not beside it)
    shutil.copy(onnx_path, tmp_path / "copy.onnx")
    assert OnnxHandDetector(tmp_path / "copy.onnx").synthetic
