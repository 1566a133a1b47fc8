"""End-to-end pipeline on real photos with given boxes (synthetic models), ONNX export round
trip, backend parity, left/right handling and missing-file errors."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from wilor_ros.core.backends.base import ReconstructorOutput, decode_faces
from wilor_ros.core.backends.onnxruntime_backend import OnnxRuntimeBackend
from wilor_ros.core.backends.torch_backend import TorchBackend
from wilor_ros.core.files.model_files import MissingModelFilesError
from wilor_ros.core.hand import camera
from wilor_ros.core.pipeline import HandPipeline
from wilor_ros.core.pipeline_config import ModelPaths, PipelineConfig
from wilor_ros.core.types import CameraIntrinsics, HandDetection, Side


def load_rgb(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def detections(entries: list[dict]) -> list[HandDetection]:
    return [HandDetection(np.asarray(e["box_xyxy"], np.float32), Side.parse(e["side"])) for e in entries]


class CountingBackend:
    """Wraps a real backend and records the batch size of every call."""

    def __init__(self, backend):
        self._backend = backend
        self.batches: list[int] = []

    def __getattr__(self, name):
        return getattr(self._backend, name)

    def infer(self, crops):
        self.batches.append(len(crops))
        return self._backend.infer(crops)


def make_pipeline(model_dir, backend: str = "pytorch", **kwargs) -> HandPipeline:
    config = PipelineConfig(
        models=ModelPaths(model_dir=str(model_dir)),
        backend=backend,
        use_detector=False,
        max_hands=16,
        **kwargs,
    )
    return HandPipeline.from_config(config)


@pytest.fixture(scope="module")
def torch_pipeline(synthetic_model_dir):
    return make_pipeline(synthetic_model_dir, "pytorch")


@pytest.fixture(scope="module")
def boxes(reference_dir):
    return json.loads((reference_dir / "demo_boxes.json").read_text())


def test_photos_with_given_boxes_shapes_and_frames(torch_pipeline, demo_images_dir, boxes):
    for name in ("test1.jpg", "test3.jpg", "test8.jpg"):
        rgb = load_rgb(demo_images_dir / name)
        given = detections(boxes[name]["hands"])
        hands = torch_pipeline.predict(rgb, boxes=given)
        assert len(hands) == len(given)
        height, width = rgb.shape[:2]
        heuristic = camera.heuristic_intrinsics(width, height)
        for hand, det in zip(hands, given):
            assert hand.side == det.side
            np.testing.assert_array_equal(hand.box, det.box)
            assert hand.keypoints_3d.shape == (21, 3) and hand.vertices.shape == (778, 3)
            assert hand.keypoints_2d.shape == (21, 2) and hand.joint_rotations.shape == (21, 3, 3)
            assert hand.hand_pose.shape == (15, 3) and hand.hand_pose_matrix.shape == (15, 3, 3)
            assert hand.intrinsics == heuristic and not hand.intrinsics.from_camera_info
            assert np.all(hand.keypoints_3d[:, 2] > 0), "hands must lie in front of the camera"
            # 2D keypoints are the projections of the 3D joints with the intrinsics used
            np.testing.assert_allclose(
                hand.keypoints_2d, camera.project_points(hand.keypoints_3d, heuristic), atol=1e-3
            )
            # fingertips are mesh vertices (MANO tips 744/320/443/554/671 -> OpenPose 4/8/12/16/20)
            np.testing.assert_allclose(hand.keypoints_3d[4], hand.vertices[744], atol=1e-6)
            np.testing.assert_allclose(hand.keypoints_3d[8], hand.vertices[320], atol=1e-6)
            # rotations: orthonormal, wrist frame = the root rotation
            rot = hand.joint_rotations.astype(np.float64)
            np.testing.assert_allclose(
                rot @ rot.transpose(0, 2, 1), np.broadcast_to(np.eye(3), rot.shape), atol=1e-5
            )
            np.testing.assert_allclose(np.linalg.det(rot), 1.0, atol=1e-5)
            np.testing.assert_allclose(hand.joint_rotations[0], hand.global_orient_matrix, atol=1e-6)
            # the projected hand lies around its box
            centre = hand.keypoints_2d.mean(axis=0)
            box_size = max(det.box[2] - det.box[0], det.box[3] - det.box[1])
            assert np.linalg.norm(centre - (det.box[:2] + det.box[2:]) / 2) < 2.0 * box_size


def test_left_hand_is_the_mirror_of_the_right_hand_in_the_flipped_image(
    torch_pipeline, demo_images_dir, boxes
):
    """A right hand at box B in image I and a left hand at the mirrored box in the mirrored image
    give the same crop (the pipeline mirrors left crops back), so their outputs must be mirror
    images: u_left = W - 1 - u_right (sub-pixel), rotations M R M, same betas."""
    rgb = load_rgb(demo_images_dir / "test1.jpg")
    width = rgb.shape[1]
    right_box = next(h for h in boxes["test1.jpg"]["hands"] if h["side"] == "right")["box_xyxy"]
    x1, y1, x2, y2 = right_box
    right = torch_pipeline.predict(rgb, boxes=[HandDetection(np.asarray(right_box, np.float32), Side.RIGHT)])[
        0
    ]
    mirrored_box = np.asarray([width - 1 - x2, y1, width - 1 - x1, y2], np.float32)
    left = torch_pipeline.predict(
        np.ascontiguousarray(rgb[:, ::-1]), boxes=[HandDetection(mirrored_box, Side.LEFT)]
    )[0]
    np.testing.assert_allclose(left.keypoints_2d[:, 0], width - 1 - right.keypoints_2d[:, 0], atol=0.05)
    np.testing.assert_allclose(left.keypoints_2d[:, 1], right.keypoints_2d[:, 1], atol=0.05)
    np.testing.assert_allclose(left.betas, right.betas, atol=1e-6)
    mirror = np.diag([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(
        left.global_orient_matrix, mirror @ right.global_orient_matrix @ mirror, atol=1e-5
    )
    np.testing.assert_allclose(left.keypoints_3d[:, 2], right.keypoints_3d[:, 2], rtol=1e-4)


def test_no_boxes_and_many_hands_in_one_batch(synthetic_model_dir, demo_images_dir, boxes):
    pipeline = make_pipeline(synthetic_model_dir)
    counting = CountingBackend(pipeline.backend)
    pipeline.backend = counting
    rgb = load_rgb(demo_images_dir / "test3.jpg")
    assert pipeline.predict(rgb, boxes=[]) == []
    given = detections(boxes["test3.jpg"]["hands"])
    assert len(given) >= 8
    hands = pipeline.predict(rgb, boxes=given)
    assert len(hands) == len(given)
    assert counting.batches == [0, len(given)], "all crops of one image must go through ONE batch"


def test_max_hands_keeps_the_first_boxes(synthetic_model_dir, demo_images_dir, boxes):
    pipeline = make_pipeline(synthetic_model_dir)
    pipeline.config.max_hands = 2
    given = detections(boxes["test3.jpg"]["hands"])
    hands = pipeline.predict(load_rgb(demo_images_dir / "test3.jpg"), boxes=given)
    assert [h.box.tolist() for h in hands] == [d.box.tolist() for d in given[:2]]


def test_grayscale_and_rgba_inputs(torch_pipeline, demo_images_dir, boxes):
    rgb = load_rgb(demo_images_dir / "test1.jpg")
    given = detections(boxes["test1.jpg"]["hands"])
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)])
    np.testing.assert_array_equal(
        torch_pipeline.predict(rgba, boxes=given)[0].vertices,
        torch_pipeline.predict(rgb, boxes=given)[0].vertices,
    )
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    from_gray = torch_pipeline.predict(gray, boxes=given)
    from_gray3 = torch_pipeline.predict(np.dstack([gray] * 3), boxes=given)
    np.testing.assert_array_equal(from_gray[0].vertices, from_gray3[0].vertices)


def test_real_intrinsics_are_used(torch_pipeline, demo_images_dir, boxes):
    rgb = load_rgb(demo_images_dir / "test1.jpg")
    k = CameraIntrinsics(fx=520.0, fy=515.0, cx=250.0, cy=170.0)
    hands = torch_pipeline.predict(rgb, intrinsics=k, boxes=detections(boxes["test1.jpg"]["hands"]))
    for hand in hands:
        assert hand.intrinsics == k and hand.intrinsics.from_camera_info
        np.testing.assert_allclose(hand.keypoints_2d, camera.project_points(hand.keypoints_3d, k), atol=1e-3)
    # a shorter real focal puts the same hand much closer than the 9375 px heuristic focal
    heuristic = torch_pipeline.predict(rgb, boxes=detections(boxes["test1.jpg"]["hands"]))
    assert hands[0].keypoints_3d[0, 2] < 0.2 * heuristic[0].keypoints_3d[0, 2]


def test_onnxruntime_pipeline_matches_pytorch(synthetic_model_dir, torch_pipeline, demo_images_dir, boxes):
    ort_pipeline = make_pipeline(synthetic_model_dir, "onnxruntime")
    assert ort_pipeline.synthetic
    rgb = load_rgb(demo_images_dir / "test8.jpg")
    given = detections(boxes["test8.jpg"]["hands"])
    for a, b in zip(ort_pipeline.predict(rgb, boxes=given), torch_pipeline.predict(rgb, boxes=given)):
        # relative to the hand's distance: the heuristic focal puts hands tens of metres away
        scale = float(b.keypoints_3d[0, 2])
        assert np.max(np.abs(a.vertices - b.vertices)) / scale < 1e-5
        np.testing.assert_allclose(a.keypoints_2d, b.keypoints_2d, atol=1e-2)
        np.testing.assert_allclose(a.hand_pose_matrix, b.hand_pose_matrix, atol=1e-4)


def test_export_round_trip(synthetic_model_dir, tmp_path):
    from wilor_ros.core.hand.mano import load_mano
    from wilor_ros.core.models.reconstructor import load_reconstructor
    from wilor_ros.tools.export import export_reconstructor_onnx

    model = load_reconstructor(
        synthetic_model_dir / "wilor_final.ckpt", synthetic_model_dir / "MANO_RIGHT.pkl"
    )
    report = export_reconstructor_onnx(model, tmp_path / "wilor.onnx", synthetic=True, model_version="test")
    assert max(report.max_abs_diff.values()) < 1e-4, report.max_abs_diff
    ort = OnnxRuntimeBackend(tmp_path / "wilor.onnx")
    torch_backend = TorchBackend(model)
    assert ort.synthetic
    assert ort.metadata["input_size"] == "256,256"
    assert ort.metadata["mean"] == "0.485,0.456,0.406" and ort.metadata["std"] == "0.229,0.224,0.225"
    assert json.loads(ort.metadata["wilor_ros"])["config"]["embed_dim"] == model.config.embed_dim
    np.testing.assert_array_equal(ort.faces, load_mano(synthetic_model_dir / "MANO_RIGHT.pkl").faces)
    np.testing.assert_array_equal(decode_faces(ort.metadata["faces"]), ort.faces)
    rng = np.random.default_rng(3)
    for batch in (1, 4):
        crops = rng.standard_normal((batch, 3, 256, 256)).astype(np.float32)
        a, b = ort.infer(crops), torch_backend.infer(crops)
        for name in ReconstructorOutput.names():
            assert getattr(a, name).shape == getattr(b, name).shape
            np.testing.assert_allclose(getattr(a, name), getattr(b, name), atol=1e-4, err_msg=name)
    assert len(ort.infer(np.zeros((0, 3, 256, 256), np.float32))) == 0


def test_missing_model_files_are_all_named(tmp_path):
    config = PipelineConfig(models=ModelPaths(model_dir=str(tmp_path)), backend="pytorch")
    with pytest.raises(MissingModelFilesError) as info:
        HandPipeline.from_config(config)
    message = str(info.value)
    for name in ("detector.onnx", "wilor_final.ckpt", "MANO_RIGHT.pkl"):
        assert name in message
    assert "mano.is.tue.mpg.de" in message and "CC-BY-NC-ND 4.0" in message
    assert "wilor-ros export" in message
    assert len(info.value.missing) == 3


def test_config_rejects_bad_values():
    from wilor_ros.core.config import load_config

    with pytest.raises(ValueError, match="backend"):
        load_config(PipelineConfig, overrides=["backend=tflite"])
    with pytest.raises(ValueError, match="unknown configuration key"):
        load_config(PipelineConfig, overrides=["max_handz=3"])
    with pytest.raises(ValueError, match="max_hands"):
        load_config(PipelineConfig, overrides=["max_hands=0"])
    cfg = load_config(PipelineConfig, overrides=["models.model_dir=/x", "rescale_factor=2.5"])
    assert cfg.models.model_dir == "/x" and cfg.rescale_factor == 2.5


def test_cli_export_writes_both_onnx_files_and_skips_when_up_to_date(synthetic_model_dir, tmp_path):
    import shutil

    from wilor_ros.core.image.detector import OnnxHandDetector
    from wilor_ros.tools.cli import main
    from wilor_ros.tools.export_detector import make_synthetic_detector

    for name in ("wilor_final.ckpt", "MANO_RIGHT.pkl"):
        shutil.copy(synthetic_model_dir / name, tmp_path / name)
    make_synthetic_detector(tmp_path / "det")
    shutil.copy(tmp_path / "det" / "detector.pt", tmp_path / "detector.pt")
    assert main(["export", "--model-dir", str(tmp_path)]) == 0
    recon, det = tmp_path / "wilor.onnx", tmp_path / "detector.onnx"
    assert OnnxRuntimeBackend(recon).synthetic
    detector = OnnxHandDetector(det)
    assert detector.names == {0: "left", 1: "right"}
    stamps = (recon.stat().st_mtime_ns, det.stat().st_mtime_ns)
    assert main(["export", "--model-dir", str(tmp_path)]) == 0
    assert (recon.stat().st_mtime_ns, det.stat().st_mtime_ns) == stamps, "up-to-date files were rewritten"


def test_cli_export_names_every_missing_file(tmp_path, capsys):
    from wilor_ros.tools.cli import main

    assert main(["export", "--model-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    for name in ("wilor_final.ckpt", "MANO_RIGHT.pkl", "detector.pt"):
        assert name in err
