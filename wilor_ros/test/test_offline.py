"""wilor-ros process (wilor_ros/offline): bags, videos and folders in; bag, hands.npz, video out.

Bags are recorded with rosbags itself (tools/synthetic_bag.py): the kit's photos (with the kit's
boxes, since a synthetic detector finds nothing) for the I/O paths, and rendered MANO hands with
known truth answered by an oracle network (helpers.CropOracleBackend) for the sequence stage.
"""

from __future__ import annotations

import dataclasses
import hashlib
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import CropOracleBackend, TruthHand, make_hand

from wilor_ros.core.hand import camera
from wilor_ros.core.hand.constants import JOINT_NAMES
from wilor_ros.core.image.render import render_meshes
from wilor_ros.core.pipeline import HandPipeline
from wilor_ros.core.pipeline_config import ModelPaths, PipelineConfig
from wilor_ros.core.types import CameraIntrinsics, HandDetection, Side
from wilor_ros.offline import bagtypes
from wilor_ros.offline.runner import ProcessConfig, process
from wilor_ros.ros.messages import hand_mesh_from_msg
from wilor_ros.tools import metrics, synthetic_bag
from wilor_ros.tools.demo import load_boxes_file
from wilor_ros.tools.synthetic_bag import RecordedFrame, shifted_photo_frames, write_image_bag

MCAP_MAGIC = b"\x89MCAP0\r\n"
MCAP_CHUNK = 0x06  # record opcode
RECORD_HEADER = 9  # opcode + 8-byte length
SQLITE_PAGE = 4096
PHOTO = "test1.jpg"  # 480 x 360, one left and one right hand
PHOTO_K = CameraIntrinsics(fx=520.0, fy=515.0, cx=238.0, cy=181.0)
FRAMES = 6


def tree_hash(path: Path) -> str:
    """SHA-256 over every file (name and bytes) below ``path`` (or of the file)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def read_bag(path: Path) -> dict[str, list[tuple[int, object]]]:
    """topic -> [(log time, message)] of a bag, read with rosbags."""
    from rosbags.highlevel import AnyReader

    out: dict[str, list[tuple[int, object]]] = {}
    with AnyReader([path], default_typestore=bagtypes.typestore()) as reader:
        for connection, log_time, raw in reader.messages():
            out.setdefault(connection.topic, []).append(
                (log_time, reader.deserialize(raw, connection.msgtype))
            )
    return out


@pytest.fixture(scope="module")
def photo_pipeline(synthetic_model_dir: Path) -> HandPipeline:
    config = PipelineConfig(
        models=ModelPaths(model_dir=str(synthetic_model_dir)), backend="onnxruntime", use_detector=False
    )
    return HandPipeline.from_config(config)


@pytest.fixture(scope="module")
def photo_frames(reference_dir: Path, demo_images_dir: Path) -> list[RecordedFrame]:
    boxes = load_boxes_file(reference_dir / "demo_boxes.json")[PHOTO]
    rgb = cv2.cvtColor(cv2.imread(str(demo_images_dir / PHOTO)), cv2.COLOR_BGR2RGB)
    return shifted_photo_frames(rgb, boxes, FRAMES)


# ------------------------------------------------------------------------- bag in, bag out
@pytest.mark.parametrize(
    ("storage", "compressed", "with_info", "with_depth"),
    [
        ("sqlite3", False, True, True),
        ("mcap", True, False, False),
        ("mcap", False, True, False),
        ("sqlite3", True, False, True),
    ],
)
def test_bag_to_bag_and_dataset(
    tmp_path, photo_frames, photo_pipeline, storage, compressed, with_info, with_depth
):
    frames = [dataclasses.replace(f) for f in photo_frames]
    if with_depth:  # a wall 0.6 m away: every hand gets moved onto it
        for f in frames:
            f.depth_mm = np.full(f.rgb.shape[:2], 600, np.uint16)
    bag = write_image_bag(
        tmp_path / "in", frames, storage, compressed=compressed, intrinsics=PHOTO_K if with_info else None
    )
    before = tree_hash(bag)
    config = ProcessConfig(
        boxes_topic=synthetic_bag.BOXES_TOPIC,
        depth_topic=synthetic_bag.DEPTH_TOPIC if with_depth else None,
        copy_topics=[synthetic_bag.COMPRESSED_TOPIC if compressed else synthetic_bag.IMAGE_TOPIC],
        batch_frames=4,
    )
    summary = process(bag, tmp_path / "out", config, photo_pipeline, show_progress=False)
    assert tree_hash(bag) == before  # the input is never modified
    assert summary.frames_processed == FRAMES and not summary.skipped
    assert summary.tracks == 2 and summary.hands == 2 * FRAMES

    out_bag = tmp_path / "out" / "bag"
    assert (out_bag / "metadata.yaml").is_file()
    assert any(p.suffix == (".mcap" if storage == "mcap" else ".db3") for p in out_bag.iterdir())
    topics = read_bag(out_bag)
    image_stamps = [f.stamp_ns for f in frames]
    hands_msgs = [m for _, m in topics["hands"]]
    # one HandMeshArray per input image, with the image's stamp and frame_id
    assert [bagtypes.stamp_ns(m.header) for m in hands_msgs] == image_stamps
    assert all(m.header.frame_id == synthetic_bag.FRAME_ID for m in hands_msgs)
    assert [t for t, _ in topics["hands"]] == [s + 2_000_000 for s in image_stamps]  # the images' log times
    assert len(topics["teleop_hands"]) == FRAMES and len(topics["hand_mesh_topology"]) == 1
    assert len(topics[synthetic_bag.COMPRESSED_TOPIC if compressed else synthetic_bag.IMAGE_TOPIC]) == FRAMES
    # TF: 21 frames per hand, children of the image frame, named by side
    for (_, tf), hands in zip(topics["/tf"], hands_msgs):
        names = {t.child_frame_id for t in tf.transforms}
        assert len(tf.transforms) == 21 * len(hands.hands) == 42
        assert {f"left_hand_{JOINT_NAMES[0]}", f"right_hand_{JOINT_NAMES[20]}"} <= names
        assert {t.header.frame_id for t in tf.transforms} == {synthetic_bag.FRAME_ID}

    data = np.load(tmp_path / "out" / "hands.npz")
    assert len(data["track_id"]) == 2 * FRAMES and set(data["track_id"]) == {1, 2}
    assert bool(np.all(data["intrinsics_from_camera_info"])) == with_info
    if with_info:
        np.testing.assert_allclose(data["intrinsics"][0], PHOTO_K.as_array())
    assert bool(np.all(data["depth_corrected"])) == with_depth
    for msg in hands_msgs:
        stamp = bagtypes.stamp_ns(msg.header)
        for hand in (hand_mesh_from_msg(h) for h in msg.hands):
            row = np.flatnonzero((data["stamp_ns"] == stamp) & (data["track_id"] == hand.id))
            assert len(row) == 1
            r = row[0]
            np.testing.assert_allclose(data["keypoints_3d"][r], hand.keypoints_3d, atol=1e-6)
            np.testing.assert_allclose(data["keypoints_2d"][r], hand.keypoints_2d, atol=1e-4)
            np.testing.assert_allclose(data["wrist_position"][r], hand.wrist_position, atol=1e-6)
            np.testing.assert_allclose(
                data["wrist_quaternion_xyzw"][r], hand.wrist_quaternion_xyzw, atol=1e-6
            )
            np.testing.assert_allclose(data["hand_pose"][r], hand.hand_pose, atol=1e-6)
            np.testing.assert_allclose(data["cam_t"][r], hand.cam_t, atol=1e-6)
            assert data["side"][r] == int(hand.side) and data["depth_corrected"][r] == hand.depth_corrected
            assert data["intrinsics_from_camera_info"][r] == hand.intrinsics_from_camera_info
    if with_depth:  # the correction put the hands on the wall
        assert np.all(np.abs(data["wrist_position"][:, 2] - 0.6) < 0.1)


def test_bag_messages_equal_the_nodes_builders(tmp_path, photo_frames, photo_pipeline):
    """The rosbags HandMeshArray and the rclpy one of the same hands hold the same values."""
    from std_msgs.msg import Header

    from wilor_ros.ros.messages import estimates_to_array_msg

    bag = write_image_bag(tmp_path / "in", photo_frames[:2], "mcap", intrinsics=PHOTO_K)
    config = ProcessConfig(boxes_topic=synthetic_bag.BOXES_TOPIC, smoothing="none", max_gap=0)
    process(bag, tmp_path / "out", config, photo_pipeline, show_progress=False)
    stored = next(m for _, m in read_bag(tmp_path / "out" / "bag")["hands"])
    hands = photo_pipeline.predict(photo_frames[0].rgb, PHOTO_K, photo_frames[0].boxes)
    for track, hand in enumerate(hands, start=1):
        hand.track_id = track
    live = estimates_to_array_msg(hands, Header(frame_id=synthetic_bag.FRAME_ID))
    for a, b in zip(sorted(stored.hands, key=lambda h: h.id), live.hands):
        da, db = hand_mesh_from_msg(a), hand_mesh_from_msg(b)
        for field in dataclasses.fields(da):
            a_value, b_value = getattr(da, field.name), getattr(db, field.name)
            if field.name == "stamp_ns":
                continue
            if isinstance(a_value, np.ndarray):
                np.testing.assert_allclose(a_value, b_value, atol=1e-5, err_msg=field.name)
            else:
                assert a_value == b_value, field.name


# ------------------------------------------------------------------------- rendered sequence
WIDTH, HEIGHT = 320, 240
K = CameraIntrinsics(fx=300.0, fy=296.0, cx=163.0, cy=121.0)
FPS = 30.0
SEQUENCE = 60
DROPOUT = range(20, 25)  # the detector misses the hand for these 5 frames
FLIPPED = range(38, 41)  # ... and calls it a left hand for these
NOISE_M = 0.004  # per-frame jitter of the "network"


@pytest.fixture(scope="module")
def mano_path(tmp_path_factory) -> Path:
    from wilor_ros.tools.synthetic_mano import make_synthetic_mano

    path = tmp_path_factory.mktemp("mano") / "MANO_RIGHT.pkl"
    make_synthetic_mano(path, seed=0)
    return path


def truth_at(hand: TruthHand, frame: int) -> TruthHand:
    t = frame / FPS
    cam_t = np.array([0.05 * np.sin(2 * np.pi * 0.5 * t), 0.03 * np.sin(2 * np.pi * 0.7 * t), 0.55])
    return dataclasses.replace(hand, cam_t=cam_t)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory, mano_path):
    """A bag of a rendered right hand moving in front of the camera, the oracle that knows its
    crops, and the truth per frame."""
    from wilor_ros.core.hand.mano import load_mano

    faces = load_mano(mano_path).faces
    base = make_hand(mano_path, [0.0, 0.0, 0.55], Side.RIGHT, seed=7)
    oracle = CropOracleBackend(rescale=PipelineConfig().rescale_factor, noise_m=NOISE_M)
    frames, truths = [], []
    background = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
    for i in range(SEQUENCE):
        truth = truth_at(base, i)
        rgb = render_meshes(background, [(truth.vertices_cam, faces)], K, alpha=1.0)
        box = HandDetection(truth.box(K), Side.RIGHT, 0.9)
        shown = HandDetection(box.box, Side.LEFT if i in FLIPPED else Side.RIGHT, 0.9)
        oracle.register(rgb, box, truth, K)  # the right-side crop (also what the side fix asks)
        oracle.register(rgb, shown, truth, K)
        boxes = [] if i in DROPOUT else [shown]
        frames.append(RecordedFrame(rgb, 1_000_000_000 + round(i * 1e9 / FPS), boxes))
        truths.append(truth)
    bag = write_image_bag(tmp_path_factory.mktemp("rendered") / "bag", frames, "mcap", intrinsics=K)
    return bag, oracle, truths


def run_rendered(rendered, tmp_path: Path, **options) -> dict[str, np.ndarray]:
    bag, oracle, _ = rendered
    pipeline = HandPipeline(PipelineConfig(use_detector=False), oracle)
    config = ProcessConfig(boxes_topic=synthetic_bag.BOXES_TOPIC, **options)
    process(bag, tmp_path, config, pipeline, show_progress=False)
    data = np.load(tmp_path / "hands.npz")
    return {k: data[k] for k in data.files}


def test_sequence_gap_filled_side_kept_and_unmirrored(rendered, tmp_path):
    _, oracle, truths = rendered
    data = run_rendered(rendered, tmp_path, smoothing="none", batch_frames=6)
    assert max(oracle.calls) > 1 and len(oracle.calls) < SEQUENCE  # hands of several frames per call
    # one track over the whole sequence, one side
    assert set(data["track_id"]) == {1} and set(data["side"]) == {int(Side.RIGHT)}
    assert list(data["frame_index"]) == list(range(SEQUENCE))
    # the 5-frame dropout is filled and flagged
    interpolated = np.flatnonzero(data["interpolated"])
    assert list(data["frame_index"][interpolated]) == list(DROPOUT)
    assert not np.any(data["valid"][interpolated]) and np.all(data["valid"][~data["interpolated"]])
    truth_joints = np.stack([t.joints_cam for t in truths])
    mirrored = np.stack([t.joints * np.array([-1.0, 1.0, 1.0]) + t.cam_t for t in truths])
    joints = data["keypoints_3d"].astype(np.float64)

    def error(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # mean per joint, model frame (no cam_t)
        return np.linalg.norm((a - a[:, :1]) - (b - b[:, :1]), axis=-1).mean(axis=-1)

    assert np.all(error(joints[list(DROPOUT)], truth_joints[list(DROPOUT)]) < 0.01)
    # the flipped frames were re-reconstructed for the right side: the shape matches the truth,
    # not its mirror image (which is what the detector's side alone produces)
    flipped = list(FLIPPED)
    assert list(data["frame_index"][data["side_corrected"]]) == flipped
    assert np.all(error(joints[flipped], truth_joints[flipped]) < 0.01)
    assert np.all(
        error(joints[flipped], mirrored[flipped]) > 3 * error(joints[flipped], truth_joints[flipped])
    )
    assert error(mirrored, truth_joints).min() > 0.01  # the control: the mirror really differs

    # --max-gap 4: the 5-frame gap stays a gap (the hand is absent there)
    short = run_rendered(rendered, tmp_path / "gap4", smoothing="none", max_gap=4)
    assert not np.any(short["interpolated"]) and not set(DROPOUT) & set(short["frame_index"])


def test_offline_smoothing_beats_causal(rendered, tmp_path):
    runs = {
        mode: run_rendered(rendered, tmp_path / mode, smoothing=mode)
        for mode in ("none", "causal", "offline")
    }
    stamps = runs["none"]["stamp_ns"] / 1e9
    joints = {mode: run["keypoints_3d"].astype(np.float64) for mode, run in runs.items()}
    jitter = {mode: metrics.jitter(j, stamps) for mode, j in joints.items()}
    lag = {
        mode: metrics.estimate_lag(joints[mode], joints["none"], stamps).frames
        for mode in ("causal", "offline")
    }
    # at least 3x less jitter than the raw output, and less than the causal filter's
    assert jitter["offline"] * 3 <= jitter["none"] and jitter["offline"] < jitter["causal"], jitter
    # no lag (a two-sided smoother), while the causal filter trails the raw output
    assert abs(lag["offline"]) < 0.02 and lag["causal"] > 3 * abs(lag["offline"]) + 0.02, lag
    # joints and vertices went through the same linear smoother: the fingertip joints, which
    # are mesh vertices, are still exactly those vertices
    raw = [hand_mesh_from_msg(m.hands[0]) for _, m in read_bag(tmp_path / "none" / "bag")["hands"]]
    distance = np.linalg.norm(raw[0].vertices[None] - raw[0].keypoints_3d[:, None], axis=-1)
    tips = np.flatnonzero(distance.min(axis=1) < 1e-7)
    assert len(tips) == 5
    tip_vertices = distance[tips].argmin(axis=1)
    for _, msg in read_bag(tmp_path / "offline" / "bag")["hands"]:
        hand = hand_mesh_from_msg(msg.hands[0])
        np.testing.assert_allclose(hand.keypoints_3d[tips], hand.vertices[tip_vertices], atol=1e-6)
    offline = runs["offline"]
    # the 2D keypoints are the projections of the smoothed joints
    for row in range(0, SEQUENCE, 7):
        intr = CameraIntrinsics(*offline["intrinsics"][row].astype(float))
        projected = camera.project_points(offline["keypoints_3d"][row], intr)
        np.testing.assert_allclose(offline["keypoints_2d"][row], projected, atol=1e-3)


# ------------------------------------------------------------------------- bad input
def test_bad_frames_are_skipped_and_counted(tmp_path, photo_frames, photo_pipeline):
    frames = [dataclasses.replace(f) for f in photo_frames]
    frames[1].encoding = "32FC3"  # unsupported
    frames[3].stamp_ns = frames[2].stamp_ns  # repeated stamp
    bag = write_image_bag(tmp_path / "raw", frames, "sqlite3", intrinsics=np.full((3, 3), np.nan))
    config = ProcessConfig(boxes_topic=synthetic_bag.BOXES_TOPIC)
    summary = process(bag, tmp_path / "out", config, photo_pipeline, show_progress=False)
    assert summary.frames_in == FRAMES and summary.frames_processed == FRAMES - 2, summary.format()
    assert summary.skipped == {
        "unsupported image encoding '32FC3'": 1,
        "stamp not after the previous frame's (out of order or repeated)": 1,
    }
    assert summary.notes["camera_info with NaN or zero intrinsics (ignored)"] == FRAMES
    assert summary.heuristic_intrinsics == FRAMES - 2
    data = np.load(tmp_path / "out" / "hands.npz")
    assert dict(zip(data["skip_reasons"], data["skip_counts"])) == dict(summary.skipped)
    assert not np.any(data["intrinsics_from_camera_info"])
    assert sorted(set(data["frame_index"])) == [0, 2, 4, 5]

    jpeg = [dataclasses.replace(f) for f in photo_frames]
    jpeg[2].compressed_data = b"\xff\xd8\xff\xe0 this is not a JPEG"
    bag = write_image_bag(tmp_path / "jpeg", jpeg, "mcap", compressed=True)
    summary = process(bag, tmp_path / "out_jpeg", config, photo_pipeline, show_progress=False)
    assert summary.skipped == {"corrupt compressed image": 1} and summary.frames_processed == FRAMES - 1


def test_topic_errors_list_the_bags_topics(tmp_path, photo_frames, photo_pipeline):
    frames = [
        dataclasses.replace(f, depth_mm=np.full(f.rgb.shape[:2], 500, np.uint16)) for f in photo_frames[:2]
    ]
    bag = write_image_bag(tmp_path / "two", frames, "sqlite3", intrinsics=PHOTO_K)
    with pytest.raises(ValueError, match="more than one image topic") as error:
        process(bag, tmp_path / "out", ProcessConfig(), photo_pipeline, show_progress=False)
    text = str(error.value)
    for topic in (synthetic_bag.IMAGE_TOPIC, synthetic_bag.DEPTH_TOPIC, synthetic_bag.CAMERA_INFO_TOPIC):
        assert topic in text
    assert "[sensor_msgs/msg/Image]  2 messages" in text and "[sensor_msgs/msg/CameraInfo]" in text
    with pytest.raises(ValueError, match="no such topic"):
        process(
            bag, tmp_path / "out", ProcessConfig(image_topic="/nope"), photo_pipeline, show_progress=False
        )
    # an empty topic
    from rosbags.rosbag2 import Writer

    empty = tmp_path / "empty"
    with Writer(empty, version=8) as writer:
        writer.add_connection(synthetic_bag.IMAGE_TOPIC, bagtypes.IMAGE, typestore=bagtypes.typestore())
    with pytest.raises(ValueError, match="no non-empty image topic") as error:
        process(empty, tmp_path / "out", ProcessConfig(), photo_pipeline, show_progress=False)
    assert "0 messages" in str(error.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "wilor_ros.tools.cli", "process", *args, "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _storage_file(bag: Path) -> Path:
    return next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))


def corrupt_middle(data_file: Path) -> None:
    """Damage the storage structure in the middle of the file, as a bad disk block would.

    Neither format checksums message payloads (rosbags writes MCAP chunks without CRC, SQLite
    pages carry none), so a flipped pixel is undetectable by design; what must be caught is
    damaged structure: a message record's length in a middle MCAP chunk, or a whole SQLite page.
    """
    raw = bytearray(data_file.read_bytes())
    if data_file.suffix == ".mcap":
        chunks, pos = [], len(MCAP_MAGIC)
        while pos + RECORD_HEADER < len(raw):  # opcode (1 byte) + content length (8 bytes LE)
            if raw[pos] == MCAP_CHUNK:
                chunks.append(pos)
            pos += RECORD_HEADER + struct.unpack_from("<Q", raw, pos + 1)[0]
        # chunk content: start, end time, uncompressed size (8 bytes each), crc (4), compression
        # string (4-byte length, empty), records size (8); then the first message record
        first_record = chunks[len(chunks) // 2] + RECORD_HEADER + 8 + 8 + 8 + 4 + 4 + 8
        raw[first_record + 1 : first_record + RECORD_HEADER] = b"\xff" * 8
    else:
        page = (len(raw) // 2) // SQLITE_PAGE * SQLITE_PAGE
        raw[page : page + SQLITE_PAGE] = np.random.default_rng(0).bytes(SQLITE_PAGE)
    data_file.write_bytes(bytes(raw))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_truncated_or_corrupt_bag_leaves_no_output(tmp_path, photo_frames, synthetic_model_dir, storage):
    frames = [
        dataclasses.replace(f, stamp_ns=1_000_000_000 + i * 33_000_000)
        for i, f in enumerate([f for f in photo_frames for _ in range(3)])  # several MCAP chunks
    ]
    common = ["--boxes-topic", synthetic_bag.BOXES_TOPIC, "--model-dir", str(synthetic_model_dir)]
    common += ["--backend", "onnxruntime"]
    for damage, expected in (("corrupt", "corrupt chunk"), ("truncated", "truncated")):
        bag = write_image_bag(tmp_path / damage, frames, storage, intrinsics=PHOTO_K)
        data_file = _storage_file(bag)
        if damage == "corrupt":
            corrupt_middle(data_file)
        else:  # the recorder was killed: the file ends mid-way
            with open(data_file, "r+b") as handle:
                handle.truncate(data_file.stat().st_size * 2 // 3)
        before = tree_hash(bag)
        out = tmp_path / f"out_{damage}"
        result = cli(str(bag), "--out", str(out), *common)
        assert result.returncode == 2, result.stderr[-2000:]
        assert expected in result.stderr and ("reindex" in result.stderr or "recover" in result.stderr)
        assert tree_hash(bag) == before
        assert not out.exists() or list(out.iterdir()) == []


def test_ctrl_c_leaves_no_output(tmp_path, photo_frames, synthetic_model_dir):
    frames = [
        dataclasses.replace(f, stamp_ns=1_000_000_000 + i * 33_000_000)
        for i, f in enumerate([f for f in photo_frames for _ in range(20)])
    ]
    bag = write_image_bag(tmp_path / "bag", frames, "mcap", intrinsics=PHOTO_K)
    before = tree_hash(bag)
    out = tmp_path / "out"
    command = [sys.executable, "-m", "wilor_ros.tools.cli", "process", str(bag), "--out", str(out), "--quiet"]
    command += ["--boxes-topic", synthetic_bag.BOXES_TOPIC, "--model-dir", str(synthetic_model_dir)]
    command += ["--backend", "onnxruntime", "--batch-frames", "1"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    rows = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:  # wait until hands are being stored
        rows = next(out.glob(".wilor-process-work.*/hands/frame.bin"), None) if out.exists() else None
        if rows is not None and rows.stat().st_size > 0:
            break
        time.sleep(0.05)
    assert rows is not None and proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr and "no output" in stderr
    assert list(out.iterdir()) == []  # no bag, no hands.npz, no staging or work folder
    assert tree_hash(bag) == before


# ------------------------------------------------------------------------- videos, folders, CLI
def test_image_folder_with_boxes_file_calibration_and_video(tmp_path, photo_frames, synthetic_model_dir):
    import json

    folder = tmp_path / "images"
    folder.mkdir()
    boxes = {}
    for i, frame in enumerate(photo_frames):
        name = f"frame_{i:03d}.png"
        cv2.imwrite(str(folder / name), cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
        hands = [{"box_xyxy": b.box.tolist(), "side": b.side.label} for b in frame.boxes]
        boxes[name] = {"hands": hands}
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    height, width = photo_frames[0].rgb.shape[:2]
    (tmp_path / "cam.yaml").write_text(
        f"image_width: {width}\nimage_height: {height}\ncamera_name: test\n"
        "camera_matrix: {rows: 3, cols: 3, data: [520.0, 0.0, 238.0, 0.0, 515.0, 181.0, 0.0, 0.0, 1.0]}\n"
        "distortion_model: plumb_bob\ndistortion_coefficients: {rows: 1, cols: 5, data: [0, 0, 0, 0, 0]}\n"
    )
    common = ["--boxes", str(tmp_path / "boxes.json"), "--model-dir", str(synthetic_model_dir)]
    common += ["--backend", "onnxruntime", "--fps", "15"]
    video = tmp_path / "review.mp4"
    result = cli(
        str(folder),
        "--out",
        str(tmp_path / "out"),
        "--camera-info",
        str(tmp_path / "cam.yaml"),
        "--video",
        str(video),
        *common,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = np.load(tmp_path / "out" / "hands.npz")
    assert np.all(data["intrinsics_from_camera_info"]) and len(data["track_id"]) == 2 * FRAMES
    np.testing.assert_allclose(np.diff(data["frames_stamp_ns"]), 1e9 / 15, atol=1)
    capture = cv2.VideoCapture(str(video))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == FRAMES
    capture.release()
    assert (tmp_path / "out" / "bag" / "metadata.yaml").is_file()
    # without calibration: the focal heuristic, said once and flagged
    result = cli(str(folder), "--out", str(tmp_path / "out2"), "--storage", "sqlite3", *common)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stderr.count("focal heuristic") == 1 and "heuristic for 6 frames" in result.stdout
    assert not np.any(np.load(tmp_path / "out2" / "hands.npz")["intrinsics_from_camera_info"])
    # the outputs exist now: a second run refuses instead of overwriting
    result = cli(str(folder), "--out", str(tmp_path / "out2"), *common)
    assert result.returncode == 2 and "already exists" in result.stderr


ROS_FREE_SCRIPT = """
import sys

BLOCKED = ("rclpy", "sensor_msgs", "std_msgs", "geometry_msgs", "builtin_interfaces", "tf2_msgs",
           "wilor_msgs", "torch", "ultralytics")

class Blocker:  # a dataset machine: no ROS, no torch
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
        return None

sys.meta_path.insert(0, Blocker())
from pathlib import Path
from wilor_ros.core.pipeline import HandPipeline
from wilor_ros.core.pipeline_config import ModelPaths, PipelineConfig
from wilor_ros.offline.runner import ProcessConfig, process

config = PipelineConfig(models=ModelPaths(model_dir=sys.argv[1]), backend="onnxruntime", use_detector=False)
summary = process(Path(sys.argv[2]), Path(sys.argv[3]), ProcessConfig(boxes_topic="/hand_boxes"),
                  HandPipeline.from_config(config), show_progress=False)
assert summary.hands == 4, summary.format()
assert not any(name.split(".")[0] in BLOCKED for name in sys.modules)
print("processed without ROS")
"""


def test_process_needs_no_ros_installation(tmp_path, photo_frames, synthetic_model_dir):
    bag = write_image_bag(tmp_path / "in", photo_frames[:2], "mcap", compressed=True, intrinsics=PHOTO_K)
    command = [
        sys.executable,
        "-c",
        ROS_FREE_SCRIPT,
        str(synthetic_model_dir),
        str(bag),
        str(tmp_path / "out"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "processed without ROS" in result.stdout
    assert len(read_bag(tmp_path / "out" / "bag")["hands"]) == 2


def test_video_input_with_boxes_by_frame_index(tmp_path, photo_frames, photo_pipeline):
    height, width = photo_frames[0].rgb.shape[:2]
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (width, height))
    for frame in photo_frames:
        writer.write(cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
    writer.release()
    boxes = {str(i): frame.boxes for i, frame in enumerate(photo_frames)}
    config = ProcessConfig(frame_id="head_camera", smoothing="causal")
    summary = process(video, tmp_path / "out", config, photo_pipeline, boxes=boxes, show_progress=False)
    assert summary.frames_processed == FRAMES and summary.tracks == 2
    data = np.load(tmp_path / "out" / "hands.npz")
    np.testing.assert_allclose(np.diff(data["frames_stamp_ns"]), 1e9 / 25.0, atol=1e3)
    assert set(data["frames_frame_id"]) == {"head_camera"} and str(data["smoothing"]) == "causal"
    teleop = read_bag(tmp_path / "out" / "bag")["teleop_hands"]
    assert len(teleop) == FRAMES and all(h.tracked and h.filtered for _, m in teleop for h in m.hands)


def test_rts_smoother_is_zero_lag_and_memory_mapped_state_is_identical(tmp_path, monkeypatch):
    from wilor_ros.offline import smoothing

    rng = np.random.default_rng(3)
    stamps = np.cumsum(rng.uniform(0.02, 0.05, 200))  # irregular frame spacing
    ramp = 0.3 * stamps[:, None] * np.array([1.0, -2.0, 0.5]) + 0.1  # constant velocity, 3 columns
    gains = smoothing.rts_gains(stamps, cutoff_hz=2.0)
    np.testing.assert_allclose(smoothing.rts_smooth(ramp, gains), ramp, atol=1e-9)  # no lag, no bias
    noisy = ramp + rng.normal(0.0, 0.004, ramp.shape)
    in_memory = smoothing.rts_smooth(noisy, gains)
    assert np.std(in_memory - ramp) < 0.6 * np.std(noisy - ramp)  # position noise (jitter: see above)
    monkeypatch.setattr(smoothing, "IN_MEMORY_STATE_BYTES", 0)  # force the memmap path
    mapped = smoothing.rts_smooth(noisy, gains, scratch=tmp_path)
    np.testing.assert_array_equal(mapped, in_memory)
    assert list(tmp_path.iterdir()) == []  # the state files are removed
    with pytest.raises(ValueError, match="increasing"):
        smoothing.rts_gains(np.array([0.0, 0.1, 0.1]), 2.0)
