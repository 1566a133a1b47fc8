"""core.temporal.temporal_pipeline: metric wrist with real intrinsics and aligned depth, stable ids, detector
skipping and its switches, on projected synthetic MANO hands whose truth is known.

The reconstructor is replaced by an *oracle* that behaves like a perfect network: for each
crop it returns the true MANO hand (model frame) and the weak-perspective crop camera that
best explains the hand's true 2D keypoints in that crop (fitted by least squares, exactly the
quantity the real network regresses). Everything after it (crop-camera -> full camera with
K, depth correction, tracking, filtering) is the production code under test.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from helpers import TruthHand, make_hand, oracle_output, stack_outputs

from wilor_ros.core.backends.base import ReconstructorBackend, ReconstructorOutput
from wilor_ros.core.image.render import RenderMesh, rasterize
from wilor_ros.core.pipeline import HandPipeline
from wilor_ros.core.pipeline_config import PipelineConfig
from wilor_ros.core.temporal.filtering import FilterConfig
from wilor_ros.core.temporal.temporal_pipeline import (
    TemporalConfig,
    TemporalHandPipeline,
)
from wilor_ros.core.temporal.tracks import TrackerConfig
from wilor_ros.core.types import BoxSource, CameraIntrinsics, HandDetection, Side
from wilor_ros.tools import metrics

WIDTH, HEIGHT = 640, 480
# A real-looking calibration: fx != fy, principal point off the image centre.
REAL_K = CameraIntrinsics(fx=610.0, fy=598.0, cx=331.0, cy=247.5)
FPS = 30.0


@pytest.fixture(scope="module")
def mano_path(tmp_path_factory) -> Path:
    from wilor_ros.tools.synthetic_mano import make_synthetic_mano

    path = tmp_path_factory.mktemp("mano") / "MANO_RIGHT.pkl"
    make_synthetic_mano(path, seed=0)
    return path


class OracleBackend(ReconstructorBackend):
    """A perfect network for the hands in ``scene`` (see the module docstring)."""

    name = "oracle"

    def __init__(self) -> None:
        self.scene: list[TruthHand] = []
        self.depth_scale = 1.0  # > 1: the "network" believes the hand is further away
        self.fail = False  # True: every output is NaN (lost hand)
        self.noise_m = 0.0
        self.rng = np.random.default_rng(0)
        self.pipeline: HandPipeline | None = None
        self.camera = REAL_K  # the camera that "took" the picture (whatever K the pipeline uses)

    def infer(self, crops: np.ndarray) -> ReconstructorOutput:
        assert self.pipeline is not None
        boxes = self.pipeline.last_detections  # the hands as the pipeline cropped them
        assert len(boxes) == len(crops)
        intr = self.camera
        outputs = []
        for det in boxes:
            centre = 0.5 * (det.box[:2] + det.box[2:])
            hand = min(
                self.scene,
                key=lambda h: np.linalg.norm(0.5 * (h.box(intr)[:2] + h.box(intr)[2:]) - centre),
            )
            noise = self.rng.normal(0.0, self.noise_m, 3) if self.noise_m else np.zeros(3)
            outputs.append(
                oracle_output(
                    hand, det, intr, self.pipeline.config.rescale_factor, noise, self.depth_scale, self.fail
                )
            )
        return stack_outputs(outputs)


class TruthDetector:
    """HandDetector stand-in: the tight boxes of the scene's hands; counts its calls."""

    def __init__(self, backend: OracleBackend) -> None:
        self.backend = backend
        self.calls = 0
        self.mislabel: set[int] = set()  # scene hands reported with the other side

    def detect(self, rgb: np.ndarray) -> list[HandDetection]:
        self.calls += 1
        assert self.backend.pipeline is not None
        intr = self.backend.camera
        return [
            HandDetection(h.box(intr), Side(1 - h.side) if i in self.mislabel else h.side, 0.95)
            for i, h in enumerate(self.backend.scene)
        ]

    def detect_batch(self, images: Sequence[np.ndarray]) -> list[list[HandDetection]]:
        return [self.detect(image) for image in images]

    def reconfigure(self, conf_threshold: float | None = None, iou_threshold: float | None = None) -> None:
        """The scene's boxes have no threshold to change."""

    def close(self) -> None:
        """Nothing to release."""


def make_temporal(
    config: TemporalConfig | None = None,
) -> tuple[TemporalHandPipeline, OracleBackend, TruthDetector]:
    backend = OracleBackend()
    detector = TruthDetector(backend)
    pipeline = HandPipeline(PipelineConfig(), backend, detector)
    backend.pipeline = pipeline
    return TemporalHandPipeline(pipeline, config), backend, detector


IMAGE = np.full((HEIGHT, WIDTH, 3), 100, np.uint8)


# ------------------------------------------------------------------------- metric wrist
def test_wrist_in_metres_with_real_intrinsics(mano_path):
    temporal, backend, _ = make_temporal(TemporalConfig(tracker=TrackerConfig(min_hits=1)))
    lateral, relative_depth, heuristic_errors = [], [], []
    for seed, cam_t in enumerate(([0.03, -0.02, 0.5], [-0.12, 0.06, 0.6], [0.15, 0.1, 0.8])):
        hand = make_hand(mano_path, cam_t, seed=seed)
        box = hand.box(REAL_K)
        assert box[0] >= 0 and box[1] >= 0 and box[2] < WIDTH and box[3] < HEIGHT  # fully in view
        backend.scene = [hand]
        temporal.reset()
        out = temporal.process(IMAGE, float(seed), intrinsics=REAL_K)
        assert len(out) == 1 and not out[0].depth_corrected
        error = out[0].wrist_position - hand.joints_cam[0]
        lateral.append(np.linalg.norm(error[:2]))
        relative_depth.append(abs(error[2]) / np.ptp(hand.joints_cam[:, 2]))
        temporal.reset()
        # control: the same scene estimated with the official focal heuristic instead of K
        heuristic = temporal.process(IMAGE, float(seed) + 0.5, intrinsics=None)
        heuristic_errors.append(np.linalg.norm(heuristic[0].wrist_position - hand.joints_cam[0]))
    # The crop camera is nearly orthographic (focal 5000 on 256 px): it explains the whole hand
    # with one depth, so even a perfect network places the wrist along the viewing ray only to
    # within the hand's own depth extent (a few cm for a tilted hand); across the image the
    # error stays within millimetres.
    assert max(lateral) < 0.006, lateral
    assert max(relative_depth) < 1.0, relative_depth
    assert min(heuristic_errors) > 0.5, heuristic_errors  # metres: the heuristic focal is ~20x K's


def _depth_image(hands: list[TruthHand], intrinsics: CameraIntrinsics, shift_m: float) -> np.ndarray:
    raster = rasterize((HEIGHT, WIDTH), [RenderMesh(h.vertices_cam, _FACES[0]) for h in hands], intrinsics)
    depth = np.where(raster.mask, raster.depth + shift_m, np.nan).astype(np.float32)
    return depth


_FACES: list[np.ndarray] = []


def test_depth_corrects_a_wrong_distance(mano_path):
    from wilor_ros.core.hand.mano import load_mano

    _FACES[:] = [load_mano(mano_path).faces]
    temporal, backend, _ = make_temporal(TemporalConfig(tracker=TrackerConfig(min_hits=1)))
    hand = make_hand(mano_path, [0.03, 0.02, 0.5], seed=3)
    backend.scene = [hand]
    backend.depth_scale = 1.3  # the monocular estimate is 30 % too far
    shift = 0.04  # the depth camera sees the hand 4 cm further than the truth (known offset)
    depth = _depth_image([hand], REAL_K, shift)
    out = temporal.process(IMAGE, 1.0, intrinsics=REAL_K, depth_m=depth)
    assert out[0].depth_corrected and temporal.last_report.num_depth_corrected == 1
    expected_z = hand.joints_cam[0, 2] + shift
    assert abs(out[0].wrist_position[2] - expected_z) < 0.01
    # without depth the same frame is ~8 cm too far
    temporal.reset()
    raw = temporal.process(IMAGE, 2.0, intrinsics=REAL_K)
    assert not raw[0].depth_corrected
    assert raw[0].wrist_position[2] - expected_z > 0.05
    # the correction moves the hand along its wrist's viewing ray: same pixel, new distance
    np.testing.assert_allclose(
        out[0].wrist_position / out[0].wrist_position[2],
        raw[0].wrist_position / raw[0].wrist_position[2],
        atol=1e-5,
    )
    with pytest.raises(ValueError, match="aligned"):
        temporal.process(IMAGE, 3.0, intrinsics=REAL_K, depth_m=depth[:100])


# ------------------------------------------------------------------------- tracking
def _moving_scene(mano_path: Path, frame: int) -> list[TruthHand]:
    t = frame / FPS
    right = make_hand(mano_path, [0.15 * t, 0.0, 0.6], Side.RIGHT, seed=1)
    left = make_hand(mano_path, [-0.1 * t, 0.03, 0.62], Side.LEFT, seed=2)
    return [right, left]


def test_ids_stay_stable_while_the_detector_is_skipped(mano_path):
    config = TemporalConfig(tracker=TrackerConfig(min_hits=2, redetect_every_n_frames=5))
    temporal, backend, detector = make_temporal(config)
    scenes = [_moving_scene(mano_path, f) for f in range(15)]
    ids_by_side: dict[Side, set[int]] = {Side.LEFT: set(), Side.RIGHT: set()}
    sources = []
    for frame, scene in enumerate(scenes):
        backend.scene = scene
        out = temporal.process(IMAGE, 10.0 + frame / FPS, intrinsics=REAL_K)
        sources.append(temporal.last_report.box_source)
        if frame == 0:
            assert out == []  # tentative tracks (min_hits=2) are not published
            continue
        assert sorted(h.side for h in out) == [Side.LEFT, Side.RIGHT]
        for hand in out:
            ids_by_side[hand.side].add(hand.track_id)
            assert hand.tracked and hand.filtered
            truth = next(h for h in scene if h.side == hand.side)
            assert np.all(truth.box(REAL_K)[:2] >= 0) and truth.box(REAL_K)[2] < WIDTH  # in view
            # filtered, moving at 0.15 m/s, weak-perspective depth: within a few centimetres
            assert np.linalg.norm(hand.wrist_position - truth.joints_cam[0]) < 0.04
    assert ids_by_side[Side.LEFT] != ids_by_side[Side.RIGHT]
    assert all(len(ids) == 1 for ids in ids_by_side.values()), ids_by_side
    # frames 0, 1 (tracks not yet confirmed), then every 5th frame runs the detector
    assert detector.calls == temporal.detector_calls == sources.count(BoxSource.DETECTOR)
    assert sources.count(BoxSource.TRACKER) >= 9, sources
    assert detector.calls <= 5, sources


def _handedness(vertices: np.ndarray, faces: np.ndarray) -> int:
    """+1 for right-hand geometry, -1 for its mirror image: the sign of the mesh's signed volume
    (MANO's faces are wound for the right hand; mirroring the vertices flips the sign whatever
    the pose or position)."""
    v = vertices - vertices.mean(axis=0)
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    return int(np.sign(np.einsum("ij,ij->", a, np.cross(b, c))))


def test_a_side_flip_of_the_detector_never_publishes_a_mirror_wrong_hand(mano_path):
    from wilor_ros.core.hand.mano import load_mano

    faces = load_mano(mano_path).faces
    config = TemporalConfig(detector_skipping=False, tracker=TrackerConfig(min_hits=1, side_flip_frames=3))
    temporal, backend, detector = make_temporal(config)
    flipped_frames = {4, 9, 10}  # the right hand is called LEFT once, then twice in a row
    for frame in range(14):
        scene = _moving_scene(mano_path, frame)
        backend.scene = scene
        detector.mislabel = {0} if frame in flipped_frames else set()
        out = temporal.process(IMAGE, 30.0 + frame / FPS, intrinsics=REAL_K)
        assert sorted(h.side for h in out) == [Side.LEFT, Side.RIGHT], frame
        for hand in out:
            # the label the teleop user reads and the geometry agree, and both are the truth
            assert _handedness(hand.vertices, faces) == (1 if hand.side == Side.RIGHT else -1), frame
            truth = next(h for h in scene if h.side == hand.side)
            assert np.abs(hand.keypoints_3d - truth.joints_cam).max() < 0.06, frame
            if frame in flipped_frames and hand.side == Side.RIGHT:
                assert hand.detected_side == Side.LEFT  # the detector's call is kept
        assert temporal.last_report.num_side_reruns == 0  # decided before the crop
    # control: the mesh test tells the sides apart (a left truth hand is mirror geometry)
    left = next(h for h in _moving_scene(mano_path, 0) if h.side == Side.LEFT)
    assert _handedness(left.vertices_cam, faces) == -1 and _handedness(left.vertices, faces) == 1


def test_lost_track_triggers_redetection_and_external_boxes_win(mano_path):
    config = TemporalConfig(tracker=TrackerConfig(min_hits=1, redetect_every_n_frames=30))
    temporal, backend, detector = make_temporal(config)
    backend.scene = _moving_scene(mano_path, 0)[:1]
    temporal.process(IMAGE, 0.0, intrinsics=REAL_K)
    temporal.process(IMAGE, 1 / FPS, intrinsics=REAL_K)
    assert temporal.last_report.box_source == BoxSource.TRACKER and detector.calls == 1
    backend.fail = True  # the network loses the hand: NaN output is dropped
    assert temporal.process(IMAGE, 2 / FPS, intrinsics=REAL_K) == []
    assert temporal.last_report.num_raw == 1 and temporal.last_report.num_nonfinite == 1
    backend.fail = False
    temporal.process(IMAGE, 3 / FPS, intrinsics=REAL_K)
    assert temporal.last_report.box_source == BoxSource.DETECTOR
    assert temporal.last_report.redetect_reason == "no confident track"
    assert detector.calls == 2
    # external boxes are used as given even while the tracks are confident
    box = backend.scene[0].box(REAL_K)
    out = temporal.process(IMAGE, 4 / FPS, intrinsics=REAL_K, boxes=[HandDetection(box, Side.RIGHT, 1.0)])
    assert temporal.last_report.box_source == BoxSource.EXTERNAL and detector.calls == 2
    assert len(out) == 1 and out[0].track_id == 1


def test_switches(mano_path):
    scene = _moving_scene(mano_path, 0)
    temporal, backend, detector = make_temporal(TemporalConfig(tracking=False))
    backend.scene = scene
    for frame in range(3):
        out = temporal.process(IMAGE, frame / FPS, intrinsics=REAL_K)
        assert [h.track_id for h in out] == [1, 2]
        assert not any(h.tracked or h.filtered for h in out)
    assert detector.calls == 3  # no tracking: no skipping either

    temporal, backend, detector = make_temporal(
        TemporalConfig(detector_skipping=False, filtering=False, tracker=TrackerConfig(min_hits=1))
    )
    backend.scene = scene
    for frame in range(3):
        out = temporal.process(IMAGE, frame / FPS, intrinsics=REAL_K)
        assert {h.track_id for h in out} == {1, 2}
        assert all(h.tracked and not h.filtered for h in out)
    assert detector.calls == 3
    # a stamp from the past (bag loop) starts over with new ids
    out = temporal.process(IMAGE, 0.0, intrinsics=REAL_K)
    assert {h.track_id for h in out} == {3, 4}
    with pytest.raises(ValueError, match="finite"):
        temporal.process(IMAGE, float("nan"))


def test_filtering_reduces_jitter_of_a_noisy_still_hand(mano_path):
    hand = make_hand(mano_path, [0.0, 0.0, 0.5], seed=5)
    wrists = {}
    for enabled in (False, True):
        config = TemporalConfig(filter=FilterConfig(enabled=enabled), tracker=TrackerConfig(min_hits=1))
        temporal, backend, _ = make_temporal(config)
        backend.scene, backend.noise_m = [hand], 0.004
        series = [temporal.process(IMAGE, f / FPS, intrinsics=REAL_K)[0].keypoints_3d for f in range(30)]
        wrists[enabled] = np.stack(series)
    stamps = np.arange(30) / FPS
    assert metrics.jitter(wrists[True], stamps) < 0.3 * metrics.jitter(wrists[False], stamps)


# ------------------------------------------------------------------------- tools
def test_record_video_and_eval_temporal_cli(mano_path, tmp_path):
    import json

    import cv2

    from wilor_ros.tools.cli import main as cli_main
    from wilor_ros.tools.eval_temporal import load_npz
    from wilor_ros.tools.record import record_video

    video = tmp_path / "still.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    for _ in range(12):
        writer.write(IMAGE)
    writer.release()
    temporal, backend, _ = make_temporal(
        TemporalConfig(filtering=False, tracker=TrackerConfig(min_hits=1, redetect_every_n_frames=4))
    )
    backend.scene, backend.noise_m = [make_hand(mano_path, [0.0, 0.0, 0.5], seed=4)], 0.003
    recorder = record_video(temporal, video, intrinsics=REAL_K)
    assert recorder.frames == 12 and recorder.track_ids == [1]
    npz = recorder.save_npz(tmp_path / "seq.npz")
    sequence = load_npz(npz)
    np.testing.assert_allclose(np.diff(sequence.stamps), 1.0 / FPS, atol=2e-3)
    assert sequence.keypoints_3d.shape == (12, 21, 3) and sequence.vertices.shape == (12, 778, 3)

    out_json = tmp_path / "report.json"
    assert cli_main(["eval-temporal", str(npz), "--json", str(out_json)]) == 0
    report = json.loads(out_json.read_text())
    assert report["num_frames"] == 12
    # a still hand with noise: the filter removes most of the jitter
    assert report["filtered"]["jitter_mm_s2"] < 0.5 * report["raw"]["jitter_mm_s2"]
    assert report["raw"]["mpfje_mm"] is None  # no ground truth recorded
    assert cli_main(["eval-temporal", str(tmp_path / "missing.npz")]) == 2


def test_detector_skipping_bench_counts_detector_calls(mano_path):
    from wilor_ros.tools.bench_temporal import SyntheticFrame, bench_detector_skipping, format_table

    temporal, backend, detector = make_temporal()
    frames = []
    for i in range(10):
        hand = make_hand(mano_path, [0.1 * i / FPS, 0.0, 0.5], seed=6)
        frames.append(SyntheticFrame(IMAGE, i / FPS, hand.box(REAL_K), Side.RIGHT))
    # the oracle answers from the scene: the hand barely moves over these 10 frames
    backend.scene = [make_hand(mano_path, [0.0, 0.0, 0.5], seed=6)]
    results = bench_detector_skipping(temporal.pipeline, frames, redetect_every_n_frames=5, warmup=1)
    every, skipping = results
    assert every.detector_calls == 10 and every.detector_calls_per_frame == 1.0
    assert skipping.detector_calls == 2  # frames 0 and 5
    assert every.frames_with_hand == skipping.frames_with_hand == 10
    assert temporal.pipeline.detector is detector  # restored
    table = format_table(results, detector_timed=True)
    assert "detector skipping" in table and "speed-up" in table


def test_skipping_bench_runs_the_real_synthetic_pipeline(synthetic_model_dir):
    from wilor_ros.core.pipeline_config import ModelPaths
    from wilor_ros.tools.bench_temporal import run_skipping_bench

    config = PipelineConfig(models=ModelPaths(model_dir=str(synthetic_model_dir)), backend="onnxruntime")
    config.use_detector = False  # the fixture has no detector ONNX: the stand-in gives the boxes
    pipeline = HandPipeline.from_config(config)
    try:
        results, table = run_skipping_bench(
            pipeline,
            synthetic_model_dir / "MANO_RIGHT.pkl",
            frames=6,
            redetect_every_n_frames=3,
            image_size=(320, 240),
        )
    finally:
        pipeline.close()
    print(table)
    # the synthetic network's random hands can look unsure to the tracker (small keypoint spread),
    # which forces extra detector frames; the schedule alone would give 2
    assert results[0].detector_calls == 6 and 2 <= results[1].detector_calls < 6
    assert all(r.frames_with_hand == 6 for r in results)
    assert "not timed" in table
