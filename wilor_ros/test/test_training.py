"""Fine-tuning: datasets in every supported format (rendered synthetic MANO hands), augmentation
consistency, losses, a short training run, exact resume, checkpoint loading/export, 2D-only data and
one detector epoch (slow).

Everything runs on CPU with the reduced architecture (ReconstructorConfig.small) and a handful of
160 x 120 images, so the whole file stays within a few minutes on two cores.
"""

from __future__ import annotations

import io
import json
import pickle
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from wilor_ros.core.config import load_config
from wilor_ros.core.hand.constants import NUM_JOINTS
from wilor_ros.core.hand.geometry import axis_angle_to_rotmat_np
from wilor_ros.core.image.render import default_hand_orient, render_synthetic_hand_image
from wilor_ros.core.models.wilor import ReconstructorConfig
from wilor_ros.core.types import Side
from wilor_ros.tools.synthetic_checkpoint import make_synthetic_checkpoint
from wilor_ros.tools.synthetic_mano import make_synthetic_mano
from wilor_ros.tools.train.augment import AugmentParams, make_training_example
from wilor_ros.tools.train.config import DatasetEntry, TrainConfig
from wilor_ros.tools.train.datasets import (
    HandDataset,
    StepBatchSampler,
    collate,
    read_dataset,
    record_to_example,
)
from wilor_ros.tools.train.losses import generator_losses
from wilor_ros.tools.train.trainer import train

IMAGE_SIZE = (160, 120)  # W, H: small renders keep CPU time low
NUM_SAMPLES = 6
POSE_SCALE = 0.25  # radians: finger pose spread of the rendered hands

torch.set_num_threads(2)


# ------------------------------------------------------------------------------ synthetic data
def _mirror(axis_angle: np.ndarray) -> np.ndarray:
    out = np.array(axis_angle, dtype=np.float64, copy=True)
    out[..., 1:] *= -1
    return out


def _render(mano_path: str, index: int, side: Side) -> tuple[np.ndarray, dict]:
    """One rendered hand with labels in the dataset conventions (left labels in left convention)."""
    rng = np.random.default_rng(100 + index)
    hand_pose = rng.normal(0.0, POSE_SCALE, size=(15, 3))
    from scipy.spatial.transform import Rotation

    tilt = Rotation.from_rotvec(rng.normal(0.0, 0.3, size=3))
    orient = (tilt * Rotation.from_rotvec(default_hand_orient())).as_rotvec()
    betas = rng.normal(0.0, 0.5, size=10)
    hand = render_synthetic_hand_image(
        mano_path,
        image_size=IMAGE_SIZE,
        global_orient=orient,
        hand_pose=hand_pose,
        betas=betas,
        side=side,
        depth=0.33 + 0.02 * index,
    )
    pose = np.concatenate([orient, hand_pose.reshape(-1)])
    if side == Side.LEFT:
        pose = _mirror(pose.reshape(-1, 3)).reshape(-1)
    labels = {
        "box": hand.box.tolist(),
        "side": side.label,
        "keypoints_2d": np.concatenate([hand.keypoints_2d, np.ones((NUM_JOINTS, 1))], 1).tolist(),
        "keypoints_3d": hand.keypoints_3d.tolist(),
        "mano": {"global_orient": pose[:3].tolist(), "hand_pose": pose[3:].tolist(), "betas": betas.tolist()},
        "vertices": hand.vertices.tolist(),
        "K": [
            [hand.intrinsics.fx, 0, hand.intrinsics.cx],
            [0, hand.intrinsics.fy, hand.intrinsics.cy],
            [0, 0, 1],
        ],
    }
    return hand.image, labels


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict:
    """Synthetic MANO, a small synthetic checkpoint, a mocap prior and rendered hands."""
    root = tmp_path_factory.mktemp("training")
    mano = make_synthetic_mano(root / "MANO_RIGHT.pkl")
    ckpt = make_synthetic_checkpoint(root / "small.ckpt", ReconstructorConfig.small(), mano)
    rng = np.random.default_rng(0)
    np.savez(
        root / "mocap.npz", hand_pose=rng.normal(0, POSE_SCALE, (64, 45)), betas=rng.normal(0, 0.5, (64, 10))
    )
    hands = [_render(mano, i, Side.LEFT if i % 3 == 2 else Side.RIGHT) for i in range(NUM_SAMPLES)]
    return {
        "root": root,
        "mano": str(mano),
        "ckpt": str(ckpt),
        "mocap": str(root / "mocap.npz"),
        "hands": hands,
    }


def encode(image: np.ndarray, ext: str = ".png") -> bytes:
    """RGB image -> encoded file bytes."""
    ok, data = cv2.imencode(ext, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert ok
    return data.tobytes()


def jsonl_entry(labels: dict, image_name: str, two_d_only: bool = False) -> dict:
    entry = {k: labels[k] for k in ("box", "side", "keypoints_2d")}
    entry["image"] = image_name
    if not two_d_only:
        entry.update(keypoints_3d=labels["keypoints_3d"], mano=labels["mano"], vertices=labels["vertices"])
    return entry


def write_jsonl(folder: Path, hands: list, two_d_only: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, (image, labels) in enumerate(hands):
        (folder / f"{i:03d}.png").write_bytes(encode(image))
        lines.append(json.dumps(jsonl_entry(labels, f"{i:03d}.png", two_d_only)))
    index = folder / "index.jsonl"
    index.write_text("\n".join(lines) + "\n")
    return index


def freihand_annotations(labels: list[dict]) -> dict[str, list]:
    """training_{K,xyz,mano,verts}.json contents; the pose stored flat (no mean)."""
    return {
        "K": [lab["K"] for lab in labels],
        "xyz": [lab["keypoints_3d"] for lab in labels],
        "mano": [
            [lab["mano"]["global_orient"] + lab["mano"]["hand_pose"] + lab["mano"]["betas"] + [0.0, 0.0, 0.0]]
            for lab in labels
        ],
        "verts": [lab["vertices"] for lab in labels],
    }


def write_freihand_files(folder: Path, images: dict[int, bytes], annotations: dict[str, list]) -> Path:
    """FreiHAND layout: training/rgb/%08d.jpg (the numbers given) and training_*.json."""
    (folder / "training" / "rgb").mkdir(parents=True, exist_ok=True)
    for number, data in images.items():
        (folder / "training" / "rgb" / f"{number:08d}.jpg").write_bytes(data)
    for name, values in annotations.items():
        (folder / f"training_{name}.json").write_text(json.dumps(values))
    return folder


def write_freihand(folder: Path, hands: list) -> Path:
    """FreiHAND layout; only right hands (FreiHAND has no left hands)."""
    rights = [(img, lab) for img, lab in hands if lab["side"] == "right"]
    images = {i: encode(image, ".jpg") for i, (image, _) in enumerate(rights)}
    return write_freihand_files(folder, images, freihand_annotations([lab for _, lab in rights]))


def tar_hand(lab: dict) -> dict:
    """One hand of a data.pyd list with HaMeR's keys."""
    box = np.asarray(lab["box"])
    return {
        "center": ((box[:2] + box[2:]) / 2).astype(np.float32),
        "scale": (2.5 * (box[2:] - box[:2]) / 200.0).astype(np.float32),
        "keypoints_2d": np.asarray(lab["keypoints_2d"], np.float32),
        "keypoints_3d": np.concatenate([np.asarray(lab["keypoints_3d"]), np.ones((21, 1))], 1),
        "hand_pose": np.asarray(lab["mano"]["global_orient"] + lab["mano"]["hand_pose"], np.float32),
        "betas": np.asarray(lab["mano"]["betas"], np.float32),
        "right": np.float32(lab["side"] == "right"),
        "has_hand_pose": np.float32(1.0),
        "has_betas": np.float32(1.0),
        "extra_info": {},
    }


def write_shard(path: Path, samples: list[dict[str, bytes]]) -> Path:
    """A webdataset shard: sample i's members {ext: bytes} become s%04d.<ext>."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for i, members in enumerate(samples):
            for ext, data in members.items():
                info = tarfile.TarInfo(f"s{i:04d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def write_tar(path: Path, hands: list) -> Path:
    """A webdataset shard with HaMeR's keys: <key>.jpg and <key>.data.pyd (list of per-hand dicts)."""
    samples = [
        {"jpg": encode(image, ".jpg"), "data.pyd": pickle.dumps([tar_hand(lab)])} for image, lab in hands
    ]
    return write_shard(path, samples)


@pytest.fixture(scope="module")
def datasets(assets) -> dict[str, DatasetEntry]:
    root = assets["root"]
    return {
        "jsonl": DatasetEntry(kind="jsonl", path=str(write_jsonl(root / "own", assets["hands"]))),
        "freihand": DatasetEntry(kind="freihand", path=str(write_freihand(root / "frei", assets["hands"]))),
        "webdataset": DatasetEntry(
            kind="webdataset", path=str(write_tar(root / "wds" / "000.tar", assets["hands"]))
        ),
        "jsonl2d": DatasetEntry(
            kind="jsonl", path=str(write_jsonl(root / "own2d", assets["hands"], two_d_only=True))
        ),
    }


def small_config(assets, datasets: list[DatasetEntry], out: Path, **train: object) -> TrainConfig:
    overrides = [
        f"model.init_checkpoint={assets['ckpt']}",
        f"model.mano_path={assets['mano']}",
        f"train.out_dir={out}",
        "train.batch_size=2",
        "train.progress=false",
        "data.num_workers=0",
        "data.freihand_pose_mean_relative=false",
        *[f"train.{k}={v}" for k, v in train.items()],
    ]
    cfg = load_config(TrainConfig, None, overrides)
    cfg.data.datasets = datasets
    return cfg


# ------------------------------------------------------------------------------ data formats
@pytest.mark.parametrize("kind", ["jsonl", "freihand", "webdataset"])
def test_formats_give_consistent_labels(assets, datasets, kind):
    """Without augmentation, every format's crop puts the GT 2D keypoints where the 3D keypoints project
    and the MANO global orientation/keypoints agree with the rendered hand (right-hand view)."""
    records = read_dataset(datasets[kind], rescale=2.5)
    expected = (
        NUM_SAMPLES if kind != "freihand" else sum(lab["side"] == "right" for _, lab in assets["hands"])
    )
    assert len(records) == expected
    for record in records:
        example = record_to_example(record, None, seed=0)
        assert example["img"].shape == (3, 256, 256)
        kp2d = example["keypoints_2d"]
        assert np.all(np.abs(kp2d[:, :2]) < 0.5), "hand keypoints must fall inside the crop"
        # the crop is a similarity of the image: bone-length ratios in 2D are preserved up to the scale
        crop_px = (kp2d[:, :2] + 0.5) * 256
        image_px = record.keypoints_2d[:, :2]
        scale = np.linalg.norm(crop_px[9] - crop_px[0]) / np.linalg.norm(image_px[9] - image_px[0])
        assert np.allclose(
            np.linalg.norm(crop_px[5] - crop_px[17]),
            scale * np.linalg.norm(image_px[5] - image_px[17]),
            rtol=1e-3,
        )
        if example["flipped"]:
            # mirrored: the thumb ends up on the other side of the wrist-middle line than in the image
            assert not record.is_right
        assert example["has_hand_pose"] == 1.0


def test_jsonl_rejects_bad_entries(tmp_path):
    index = tmp_path / "bad.jsonl"
    index.write_text(json.dumps({"image": "x.png", "box": [10, 10, 5, 20], "side": "right"}) + "\n")
    with pytest.raises(ValueError, match="box"):
        read_dataset(DatasetEntry(kind="jsonl", path=str(index)), rescale=2.5)
    index.write_text(json.dumps({"image": "x.png", "box": [0, 0, 5, 5], "side": "up"}) + "\n")
    with pytest.raises(ValueError, match="side"):
        read_dataset(DatasetEntry(kind="jsonl", path=str(index)), rescale=2.5)


def test_augmentation_is_consistent(assets, datasets):
    """Rotation + scale + translation + mirror: 2D labels follow the image (the keypoint pixel in the
    crop shows the hand), and 3D keypoints rotate with the global orientation."""
    record = read_dataset(datasets["jsonl"], rescale=2.5)[2]  # a left hand
    image = np.zeros((120, 160, 3), np.uint8)
    # a white dot on the index tip in the source image must land at the transformed label
    tip = np.round(record.keypoints_2d[8, :2]).astype(int)
    image[tip[1] - 1 : tip[1] + 2, tip[0] - 1 : tip[0] + 2] = 255
    params = AugmentParams(scale=1.2, rotation_deg=25.0, tx=0.02, ty=-0.01, flip=False)
    base = make_training_example(image, record, AugmentParams())
    out = make_training_example(image, record, params)
    assert out.flipped and base.flipped
    brightness = out.img.sum(axis=0)
    peak = np.unravel_index(np.argmax(brightness), brightness.shape)
    label = (out.keypoints_2d[8, :2] + 0.5) * 256
    assert np.hypot(peak[1] - label[0], peak[0] - label[1]) < 3.0
    # 3D: the augmented keypoints are the unaugmented ones rotated by the same in-plane rotation that
    # relates the two global orientations
    r_base = axis_angle_to_rotmat_np(base.global_orient)
    r_out = axis_angle_to_rotmat_np(out.global_orient)
    rot = r_out @ r_base.T
    assert np.allclose(out.keypoints_3d[:, :3], base.keypoints_3d[:, :3] @ rot.T, atol=1e-5)
    assert np.isclose(np.degrees(np.arccos((np.trace(rot) - 1) / 2)), 25.0, atol=1e-3)
    assert np.allclose(out.hand_pose, base.hand_pose)


def test_sampler_mixes_datasets_by_weight():
    sampler = StepBatchSampler(
        [10, 1000], [3.0, 1.0], batch_size=400, grad_accum=1, seed=0, start_step=0, total_steps=1
    )
    (batch,) = list(sampler)
    first = np.mean([i < 10 for i, _ in batch])
    assert 0.68 < first < 0.82  # expected 0.75
    again = StepBatchSampler([10, 1000], [3.0, 1.0], 400, 1, 0, 0, 1)
    assert list(again) == [batch]


def test_losses_match_definitions(assets, datasets):
    """A perfect prediction of the labels gives zero supervised loss; 2D-only samples produce no 3D or
    MANO loss whatever the prediction."""
    records = read_dataset(datasets["jsonl2d"], rescale=2.5)
    dataset = HandDataset([records], None)
    batch = collate([dataset[(i, 0)] for i in range(2)]).tensors
    assert batch is not None
    noise = torch.randn(2, 21, 3)
    output = {
        "pred_keypoints_3d": noise,
        "pred_keypoints_2d": batch["keypoints_2d"][:, :, :2].clone(),
        "pred_mano_params": {
            "global_orient": torch.randn(2, 1, 3, 3),
            "hand_pose": torch.randn(2, 15, 3, 3),
            "betas": torch.randn(2, 10),
        },
    }
    losses = generator_losses(output, batch, TrainConfig().loss, None)
    assert float(losses.total) == 0.0
    output["pred_keypoints_2d"] = output["pred_keypoints_2d"] + 0.1
    losses = generator_losses(output, batch, TrainConfig().loss, None)
    # sum over 2 samples x 21 joints x 2 coordinates of 0.1, weight 0.01
    assert float(losses.terms["keypoints_2d"]) == pytest.approx(2 * 21 * 2 * 0.1, rel=1e-5)
    assert float(losses.total) == pytest.approx(0.01 * 2 * 21 * 2 * 0.1, rel=1e-5)


# ------------------------------------------------------------------------------ training
def test_training_lowers_loss_and_checkpoint_loads_and_exports(assets, datasets, tmp_path):
    from wilor_ros.core.models.reconstructor import load_reconstructor
    from wilor_ros.tools.export import export_reconstructor_onnx

    cfg = small_config(
        assets,
        [datasets["jsonl"], datasets["freihand"], datasets["webdataset"]],
        tmp_path / "run",
        steps=36,
        checkpoint_every=36,
        log_every=6,
    )
    cfg.data.mocap_path = assets["mocap"]
    cfg.augment.enabled = False  # a fixed problem, so that the loss must fall
    cfg.optim.lr = 3e-4
    result = train(cfg)
    assert result.step == 36
    losses = [h["loss"] for h in result.history]
    assert "adversarial" in result.history[0] and "discriminator" in result.history[0]
    assert np.mean(losses[-6:]) < 0.7 * np.mean(losses[:6]), losses
    assert (tmp_path / "run" / "tensorboard").is_dir()
    model = load_reconstructor(result.last_checkpoint, assets["mano"])
    assert model.config == ReconstructorConfig.small()
    report = export_reconstructor_onnx(model, tmp_path / "ft.onnx", synthetic=True)
    assert max(report.max_abs_diff.values()) < 1e-3


def test_resume_is_exact(assets, datasets, tmp_path):
    """10 steps in one go == 5 steps, stop, resume, 5 steps: identical weights and optimiser state."""
    entries = [datasets["jsonl"], datasets["webdataset"]]
    straight = small_config(assets, entries, tmp_path / "a", steps=10, checkpoint_every=10)
    straight.data.mocap_path = assets["mocap"]
    train(straight)
    first = small_config(assets, entries, tmp_path / "b", steps=10, checkpoint_every=5)
    first.data.mocap_path = assets["mocap"]
    half = train(first, max_steps=5)
    assert half.step == 5
    second = small_config(
        assets, entries, tmp_path / "b", steps=10, checkpoint_every=5, resume=half.last_checkpoint
    )
    second.data.mocap_path = assets["mocap"]
    done = train(second)
    assert done.step == 10
    a = torch.load(tmp_path / "a" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "b" / "checkpoints" / "last.ckpt", weights_only=True)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key
    assert a["global_step"] == b["global_step"] == 10


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_two_d_only_training_runs(assets, datasets, tmp_path, amp):
    cfg = small_config(assets, [datasets["jsonl2d"]], tmp_path / "2d", steps=3, checkpoint_every=3, amp=amp)
    result = train(cfg)
    assert result.step == 3
    for record in result.history:
        assert record["keypoints_3d"] == 0.0 and record["hand_pose"] == 0.0 and record["keypoints_2d"] > 0


def test_bad_configuration_is_reported(assets, tmp_path):
    with pytest.raises(ValueError, match="unknown configuration key"):
        load_config(TrainConfig, None, ["train.stepz=3"])
    cfg = small_config(assets, [], tmp_path / "x", steps=1)
    with pytest.raises(ValueError, match=r"data\.datasets"):
        train(cfg)
    with pytest.raises(ValueError, match="kind"):
        load_config(TrainConfig, None, ["data.datasets=[{kind: coco, path: x}]"])


def test_example_config_loads():
    path = Path(__file__).resolve().parents[1] / "config" / "finetune_example.yaml"
    cfg = load_config(TrainConfig, path)
    assert cfg.train.batch_size * cfg.train.grad_accum >= 8
    assert cfg.data.datasets


# ------------------------------------------------------------------------------ detector
@pytest.mark.slow
def test_one_detector_epoch(assets, tmp_path):
    """One ultralytics epoch from a YOLO model definition on four rendered images with left/right boxes."""
    pytest.importorskip("ultralytics")
    from wilor_ros.tools.train_detector import check_dataset_yaml, train_detector

    for split in ("train", "val"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "labels" / split).mkdir(parents=True)
        for i, (image, lab) in enumerate(assets["hands"][:4]):
            cv2.imwrite(str(tmp_path / "images" / split / f"{i}.jpg"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            x1, y1, x2, y2 = lab["box"]
            width, height = IMAGE_SIZE
            cls = 1 if lab["side"] == "right" else 0
            cx, cy = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
            line = f"{cls} {cx} {cy} {(x2 - x1) / width} {(y2 - y1) / height}"
            (tmp_path / "labels" / split / f"{i}.txt").write_text(line + "\n")
    data = tmp_path / "hands.yaml"
    data.write_text(f"path: {tmp_path}\ntrain: images/train\nval: images/val\nnames: {{0: left, 1: right}}\n")
    check_dataset_yaml(data)
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"path: {tmp_path}\ntrain: images/train\nval: images/val\nnames: {{0: right, 1: left}}\n")
    with pytest.raises(ValueError, match="left"):
        check_dataset_yaml(bad)
    best = train_detector(
        "yolov8n.yaml", data, tmp_path / "runs", epochs=1, imgsz=64, batch=2, device="cpu", workers=0,
        extra={"plots": False, "amp": False, "val": True, "verbose": False},
    )  # fmt: skip
    assert best.is_file() and best.stat().st_size > 0


def test_cli_train(assets, datasets, tmp_path, capsys):
    from wilor_ros.tools import cli

    out = tmp_path / "cli"
    code = cli.main(
        [
            "train",
            "--data", f"jsonl:{datasets['jsonl'].path}",
            "--set", f"model.init_checkpoint={assets['ckpt']}",
            "--set", f"model.mano_path={assets['mano']}",
            "--set", f"train.out_dir={out}",
            "--set", "train.steps=2",
            "--set", "train.batch_size=2",
            "--set", "train.progress=false",
            "--set", "data.num_workers=0",
        ]
    )  # fmt: skip
    assert code == 0
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert "step 2" in capsys.readouterr().out


@pytest.mark.slow
def test_ddp_two_processes_with_torchrun_on_cpu(assets, datasets, tmp_path):
    """The multi-GPU path (torchrun + DDP) is the same code; here with 2 CPU processes (gloo)."""
    import shutil
    import subprocess
    import sys

    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun is installed with torch"
    out = tmp_path / "ddp"
    jsonl = datasets["jsonl"].path
    # a second dataset, half of it a corrupt image: with one sample per rank and micro-batch, a rank
    # regularly draws only a bad sample; both ranks must then skip that micro-batch together
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    image, labels = assets["hands"][0]
    (mixed / "good.png").write_bytes(encode(image))
    (mixed / "corrupt.png").write_bytes(b"not an image")
    (mixed / "index.jsonl").write_text(
        json.dumps(jsonl_entry(labels, "good.png"))
        + "\n"
        + json.dumps(jsonl_entry(labels, "corrupt.png"))
        + "\n"
    )
    command = [
        torchrun, "--standalone", "--nproc_per_node", "2", "-m", "wilor_ros.tools.cli", "train",
        "--data", f"jsonl:{jsonl}", "--data", f"jsonl:{mixed / 'index.jsonl'}",
        "--set", f"model.init_checkpoint={assets['ckpt']}", "--set", f"model.mano_path={assets['mano']}",
        "--set", f"train.out_dir={out}", "--set", "train.batch_size=1", "--set", "train.steps=4",
        "--set", "train.progress=false", "--set", "data.num_workers=0", "--set", "train.device=cpu",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "world 2" in result.stderr + result.stdout
    report = json.loads((out / "checkpoints" / "data_report.json").read_text())
    (bad,) = report["datasets"][1]["bad_samples"]
    assert bad["file"] == str(mixed / "corrupt.png") and bad["reason"] == "corrupt-image"
    assert bad["skipped_draws"] >= 1  # drawn (on either rank) and skipped, gathered to rank 0
    from wilor_ros.core.models.reconstructor import load_reconstructor

    trained = load_reconstructor(out / "checkpoints" / "last.ckpt", assets["mano"])
    start = load_reconstructor(assets["ckpt"], assets["mano"])
    moved = [
        not torch.equal(a, b)
        for (name, a), (_, b) in zip(trained.state_dict().items(), start.state_dict().items())
        if name.startswith(("backbone.", "refine_net.")) and a.is_floating_point()
    ]
    assert any(moved), "no weight changed in 3 DDP steps"
