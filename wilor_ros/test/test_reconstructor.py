"""Tests of our WiLoR reconstructor: layout vs the official manifest, numerical parity with the official
golden run, safe checkpoint loading, synthetic checkpoints, half precision on GPU."""

from __future__ import annotations

import json
import os
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from wilor_ros.core.hand.constants import NUM_JOINTS, NUM_VERTICES
from wilor_ros.core.hand.geometry import (
    axis_angle_to_rotmat,
    axis_angle_to_rotmat_np,
    rot6d_to_rotmat,
    rotmat_to_axis_angle_np,
    rotmat_to_rot6d,
)
from wilor_ros.core.hand.mano import load_mano
from wilor_ros.core.models import ManoLayer, ReconstructorConfig, WiLoR, placeholder_data_struct
from wilor_ros.core.models.checkpoint import CheckpointError, read_checkpoint, write_checkpoint
from wilor_ros.core.models.reconstructor import load_reconstructor
from wilor_ros.tools.synthetic_checkpoint import make_synthetic_checkpoint, synthetic_state_dict

torch.set_num_threads(2)

ATOL = 1e-5  # SPEC 11.4 suggested check on out/* and mid/*
TOKEN_RTOL = 1e-4  # SPEC 11.4: relative tolerance for the larger token activations
CAM_T_RTOL = 1e-6  # pred_cam_t ~ 10: compared relatively (one float32 ulp is 1e-6 there)
TOKEN_KEYS = ("patch_tokens", "tokens_before_last_norm", "tokens_after_last_norm", "vit_img_feat")


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def mano_pkl(reference_dir: Path) -> Path:
    return reference_dir / "mano_synthetic_right.pkl"


@pytest.fixture(scope="module")
def golden(reference_dir: Path) -> dict[str, np.ndarray]:
    with np.load(reference_dir / "golden_small.npz") as data:
        return {k: np.array(data[k]) for k in data.files}


@pytest.fixture(scope="module")
def golden_state(golden: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    prefix = "state_dict/"
    return {k[len(prefix) :]: torch.from_numpy(v) for k, v in golden.items() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def small_model(golden_state: dict[str, torch.Tensor], mano_pkl: Path) -> WiLoR:
    model = WiLoR(ReconstructorConfig.small(), ManoLayer(load_mano(mano_pkl).smplx_data_struct()))
    model.load_state_dict(golden_state, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory: pytest.TempPathFactory, golden_state: dict[str, torch.Tensor]) -> Path:
    """The golden weights written as a project checkpoint (small config recorded inside)."""
    path = tmp_path_factory.mktemp("ckpt") / "golden_small.ckpt"
    return write_checkpoint(path, dict(golden_state), ReconstructorConfig.small(), synthetic=False)


def _golden_view(out: dict, key: str) -> torch.Tensor:
    """Our output for a golden out/* or mid/* key."""
    kind, name = key.split("/", 1)
    if kind == "out":
        value = out
        for part in name.split("/"):
            value = value[part]
        return value
    coarse = out["coarse"]
    params = coarse["pred_mano_params"]
    coarse_map = {
        "coarse_mano_params/global_orient": params["global_orient"],
        "coarse_mano_params/hand_pose": params["hand_pose"],
        "coarse_mano_params/betas": params["betas"],
        "coarse_feats/hand_pose": coarse["pred_pose_6d"],
        "coarse_feats/betas": params["betas"],
        "coarse_feats/cam": coarse["pred_cam"],
        "coarse_cam": coarse["pred_cam"],
        "coarse_vertices": coarse["pred_vertices"],
        "coarse_keypoints_3d": coarse["pred_keypoints_3d"],
    }
    return coarse_map[name] if name in coarse_map else out["intermediates"][name]


def _assert_matches_golden(out: dict, golden: dict[str, np.ndarray], keys: list[str]) -> None:
    for key in keys:
        ours = _golden_view(out, key).detach().float().cpu().numpy()
        ref = golden[key]
        assert ours.shape == ref.shape, key
        name = key.split("/", 1)[1]
        rtol = TOKEN_RTOL if name in TOKEN_KEYS else (CAM_T_RTOL if name == "pred_cam_t" else 0.0)
        np.testing.assert_allclose(ours, ref, rtol=rtol, atol=ATOL, err_msg=key)


def _output_keys(golden: dict[str, np.ndarray]) -> list[str]:
    return sorted(k for k in golden if k.startswith(("out/", "mid/")))


def _assert_hand_about_crop(out: dict) -> None:
    """Synthetic weights stay near the mean camera: joints centred in the crop, none far outside it."""
    pixels = out["pred_keypoints_2d"] * 256 + 128  # crop pixels
    centre = pixels.mean(dim=1)
    assert ((centre > 0) & (centre < 256)).all()
    assert ((pixels > -256) & (pixels < 512)).all()
    extent = (pixels.amax(dim=1) - pixels.amin(dim=1)).amax(dim=-1)
    assert ((extent > 10) & (extent < 512)).all()  # a hand of sensible size, not a point or a blow-up


# ------------------------------------------------------------------ (1) layout
def test_full_state_dict_matches_manifest(reference_dir: Path) -> None:
    manifest = json.loads((reference_dir / "checkpoint_manifest.json").read_text())
    with torch.device("meta"):
        model = WiLoR(ReconstructorConfig.full(), ManoLayer(placeholder_data_struct()))
    ours = [(k, list(v.shape), str(v.dtype).removeprefix("torch.")) for k, v in model.state_dict().items()]
    official = [(e["key"], e["shape"], e["dtype"]) for e in manifest["entries"]]
    assert ours == official  # same keys, shapes, dtypes and order
    params = {k: v.numel() for k, v in model.named_parameters()}
    counts = manifest["counts"]
    assert (
        sum(v for k, v in params.items() if k.startswith("backbone.")) == counts["backbone_parameter_values"]
    )
    assert (
        sum(v for k, v in params.items() if k.startswith("refine_net."))
        == counts["refine_net_parameter_values"]
    )


# ------------------------------------------------------------------ (2) parity
def test_golden_small_parity(
    small_model: WiLoR, golden: dict[str, np.ndarray], golden_state: dict, reference_dir: Path
) -> None:
    keys = _output_keys(golden)
    described = json.loads((reference_dir / "golden_small.json").read_text())["arrays"]
    assert keys == sorted(k for k in described if k.startswith(("out/", "mid/")))  # every one is checked
    with torch.no_grad():
        out = small_model(torch.from_numpy(golden["in/img"]), return_intermediates=True)
    _assert_matches_golden(out, golden, keys)
    # the MANO layer built from the pickle reproduces the official mano.* buffers exactly
    for key, value in small_model.mano.state_dict().items():
        assert torch.equal(value, golden_state[f"mano.{key}"]), key


def test_golden_small_through_loader(small_ckpt: Path, mano_pkl: Path, golden: dict[str, np.ndarray]) -> None:
    model = load_reconstructor(small_ckpt, mano_pkl)
    assert model.config == ReconstructorConfig.small() and not model.training
    with torch.no_grad():
        out = model(torch.from_numpy(golden["in/img"]))
    _assert_matches_golden(out, golden, sorted(k for k in golden if k.startswith("out/")))


def test_checkpoint_with_inference_entries_only(
    tmp_path: Path, golden_state: dict, mano_pkl: Path, golden: dict[str, np.ndarray]
) -> None:
    """No mano.* (taken from the MANO file), no discriminator, flag or BN counters (defaults)."""
    state = {
        k: v
        for k, v in golden_state.items()
        if not k.startswith(("mano.", "discriminator.")) and k != "initialized" and "num_batches" not in k
    }
    path = write_checkpoint(tmp_path / "no_mano.ckpt", state, ReconstructorConfig.small(), synthetic=False)
    model = load_reconstructor(path, mano_pkl)
    assert not any(t.is_meta for t in model.state_dict().values())
    assert torch.equal(model.mano.v_template, golden_state["mano.v_template"])
    assert model.discriminator(torch.eye(3).expand(2, 15, 3, 3), torch.zeros(2, 10)).shape == (2, 17)
    with torch.no_grad():
        out = model(torch.from_numpy(golden["in/img"][:1]))
    np.testing.assert_allclose(out["pred_vertices"].numpy(), golden["out/pred_vertices"][:1], atol=ATOL)


# ------------------------------------------------------------------ (3) wrong files
def test_wrong_checkpoint_lists_keys(tmp_path: Path, golden_state: dict, mano_pkl: Path) -> None:
    state = {k: v for k, v in golden_state.items() if k != "refine_net.dec_cam.weight"}
    state["model.head.weight"] = torch.zeros(3)
    path = write_checkpoint(tmp_path / "wrong.ckpt", state, ReconstructorConfig.small(), synthetic=False)
    with pytest.raises(CheckpointError) as info:
        load_reconstructor(path, mano_pkl)
    message = str(info.value)
    assert "refine_net.dec_cam.weight" in message and "model.head.weight" in message


def test_small_weights_as_official_checkpoint_report_shapes(
    tmp_path: Path, golden_state: dict, mano_pkl: Path
) -> None:
    # no project metadata -> treated as the official full-size model: every shape differs
    path = tmp_path / "bare.ckpt"
    torch.save({"state_dict": dict(golden_state), "epoch": 3}, path)
    with pytest.raises(CheckpointError, match=r"shape mismatch.*backbone\.pos_embed"):
        load_reconstructor(path, mano_pkl)


def test_not_a_checkpoint(tmp_path: Path, mano_pkl: Path) -> None:
    path = tmp_path / "junk.ckpt"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError):
        load_reconstructor(path, mano_pkl)
    with pytest.raises(FileNotFoundError):
        load_reconstructor(tmp_path / "absent.ckpt", mano_pkl)


# ------------------------------------------------------------------ (4) safe loading
def _fake_yacs_module(calls: list[str]) -> tuple[types.ModuleType, types.ModuleType]:
    """A stand-in ``yacs.config`` whose CfgNode records any code run at unpickling time."""
    yacs = types.ModuleType("yacs")
    config = types.ModuleType("yacs.config")

    class CfgNode(dict):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            self.__dict__["__immutable__"] = False

        def __setstate__(self, state: dict) -> None:
            calls.append("setstate")
            self.__dict__.update(state)

        def __setitem__(self, key: str, value: object) -> None:
            calls.append("setitem")
            super().__setitem__(key, value)

    CfgNode.__module__ = "yacs.config"
    CfgNode.__qualname__ = "CfgNode"
    config.CfgNode = CfgNode
    yacs.config = config
    return yacs, config


def _lightning_ckpt_with_cfgnode(path: Path, state: dict, calls: list[str]) -> None:
    yacs, config = _fake_yacs_module(calls)
    sys.modules["yacs"], sys.modules["yacs.config"] = yacs, config
    try:
        cfg = config.CfgNode({"MODEL": config.CfgNode({"IMAGE_SIZE": 256}), "EXTRA": {"FOCAL_LENGTH": 5000}})
        calls.clear()
        torch.save(
            {
                "epoch": 10,
                "global_step": 1000,
                "pytorch-lightning_version": "2.0.0",
                "state_dict": state,
                "hyper_parameters": {"cfg": cfg, "init_renderer": False},
                "wilor_ros": {
                    "config": {"embed_dim": 128, "depth": 2, "num_heads": 4, "refine_feat_dim": 128}
                },
            },
            path,
        )
    finally:
        del sys.modules["yacs"], sys.modules["yacs.config"]


def test_lightning_checkpoint_with_yacs_cfgnode_loads_without_yacs(
    tmp_path: Path, golden_state: dict, mano_pkl: Path
) -> None:
    calls: list[str] = []
    path = tmp_path / "lightning.ckpt"
    _lightning_ckpt_with_cfgnode(path, dict(golden_state), calls)
    assert "yacs.config" not in sys.modules
    with pytest.raises(pickle.UnpicklingError):  # what torch alone does with such a file
        torch.load(path, weights_only=True)
    contents = read_checkpoint(path)
    assert set(contents.state_dict) == set(golden_state)
    assert "hyper_parameters" in contents.top_level_keys
    model = load_reconstructor(path, mano_pkl)
    assert model.config == ReconstructorConfig.small()
    assert "yacs.config" not in sys.modules


def test_cfgnode_code_never_runs_even_if_yacs_is_importable(tmp_path: Path, golden_state: dict) -> None:
    calls: list[str] = []
    path = tmp_path / "lightning.ckpt"
    _lightning_ckpt_with_cfgnode(path, dict(golden_state), calls)
    yacs, config = _fake_yacs_module(calls)
    sys.modules["yacs"], sys.modules["yacs.config"] = yacs, config
    try:
        read_checkpoint(path)
    finally:
        del sys.modules["yacs"], sys.modules["yacs.config"]
    assert calls == []  # the stand-in was used, not the class found in sys.modules


class _Exploit:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


@pytest.mark.parametrize("where", ["hyper_parameters", "state_dict"])
def test_malicious_checkpoint_is_refused(tmp_path: Path, golden_state: dict, where: str) -> None:
    marker = tmp_path / "pwned"
    payload: dict = {"state_dict": dict(golden_state), "hyper_parameters": {}}
    payload[where]["evil"] = _Exploit(f"touch {marker}")
    path = tmp_path / "evil.ckpt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="system"):
        read_checkpoint(path)
    assert not marker.exists()


# ------------------------------------------------------------------ (5) empty batch
def test_empty_batch(small_model: WiLoR) -> None:
    with torch.no_grad():
        out = small_model(torch.zeros(0, 3, 256, 256))
    expected = {
        "pred_cam": (0, 3),
        "pred_cam_t": (0, 3),
        "focal_length": (0, 2),
        "pred_keypoints_3d": (0, NUM_JOINTS, 3),
        "pred_vertices": (0, NUM_VERTICES, 3),
        "pred_keypoints_2d": (0, NUM_JOINTS, 2),
    }
    for key, shape in expected.items():
        assert tuple(out[key].shape) == shape, key
    params = out["pred_mano_params"]
    assert tuple(params["global_orient"].shape) == (0, 1, 3, 3)
    assert tuple(params["hand_pose"].shape) == (0, 15, 3, 3)
    assert tuple(params["betas"].shape) == (0, 10)
    assert tuple(out["coarse"]["pred_vertices"].shape) == (0, NUM_VERTICES, 3)


def test_rejects_wrong_input_shape(small_model: WiLoR) -> None:
    with pytest.raises(ValueError, match="256"):
        small_model(torch.zeros(1, 3, 224, 224))


# ------------------------------------------------------------------ (6) synthetic round trip
def test_synthetic_small_round_trip(tmp_path: Path, mano_pkl: Path, golden: dict[str, np.ndarray]) -> None:
    config = ReconstructorConfig.small()
    path = make_synthetic_checkpoint(tmp_path / "syn.ckpt", config, mano_pkl, seed=3)
    raw = torch.load(path, weights_only=True)  # our own files need no allowlist at all
    assert (
        raw["wilor_ros"]["synthetic"] is True and raw["wilor_ros"]["config"]["embed_dim"] == config.embed_dim
    )
    model = load_reconstructor(path, mano_pkl)
    assert model.synthetic and model.config == config
    # deterministic: the same seed gives the same weights, another seed does not
    mano_layer = ManoLayer(load_mano(mano_pkl).smplx_data_struct())
    again = synthetic_state_dict(config, mano_layer, seed=3)
    other = synthetic_state_dict(config, mano_layer, seed=4)
    loaded = model.state_dict()
    assert set(again) == set(loaded)
    assert all(torch.equal(again[k], loaded[k]) for k in again)
    assert not torch.equal(other["backbone.pos_embed"], again["backbone.pos_embed"])
    # outputs finite and hand-like: mean-ish camera, the hand projected about the crop
    with torch.no_grad():
        out = model(torch.from_numpy(golden["in/img"]))
    assert all(torch.isfinite(out[k]).all() for k in ("pred_vertices", "pred_keypoints_2d", "pred_cam_t"))
    assert ((out["pred_cam"][:, 0] > 3.0) & (out["pred_cam"][:, 0] < 5.0)).all()
    _assert_hand_about_crop(out)
    rot = out["pred_mano_params"]["hand_pose"]
    assert torch.allclose(rot @ rot.transpose(-1, -2), torch.eye(3).expand_as(rot), atol=1e-5)
    # different crops give different hands
    assert not torch.allclose(out["pred_vertices"][0], out["pred_vertices"][1])


# ------------------------------------------------------------------ (7) full size
@pytest.mark.slow
def test_full_size_synthetic_checkpoint(
    tmp_path: Path, mano_pkl: Path, golden: dict[str, np.ndarray]
) -> None:
    path = make_synthetic_checkpoint(tmp_path / "full.ckpt", ReconstructorConfig.full(), mano_pkl)
    model = load_reconstructor(path, mano_pkl)
    assert model.config == ReconstructorConfig.full()
    with torch.no_grad():
        out = model(torch.from_numpy(golden["in/img"][:1]))
    assert tuple(out["pred_vertices"].shape) == (1, NUM_VERTICES, 3)
    assert torch.isfinite(out["pred_vertices"]).all() and torch.isfinite(out["pred_cam_t"]).all()
    _assert_hand_about_crop(out)


# ------------------------------------------------------------------ (8) half precision
@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_on_gpu(small_ckpt: Path, mano_pkl: Path, golden: dict, dtype: torch.dtype) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU available: half precision runs on GPU only")
    model = load_reconstructor(small_ckpt, mano_pkl, device="cuda", dtype=dtype)
    assert model.compute_dtype == dtype and model.backbone.init_hand_pose.dtype == torch.float32
    assert model.mano.v_template.dtype == torch.float32
    with torch.no_grad():
        out = model(torch.from_numpy(golden["in/img"]).cuda())
    for key in ("pred_vertices", "pred_keypoints_3d", "pred_cam_t", "pred_keypoints_2d"):
        assert out[key].dtype == torch.float32 and torch.isfinite(out[key]).all(), key
    # crop-normalised 2D joints within 0.02 (5 crop pixels) of the float32 golden
    np.testing.assert_allclose(
        out["pred_keypoints_2d"].cpu().numpy(), golden["out/pred_keypoints_2d"], atol=0.02
    )


def test_half_precision_needs_cuda(small_ckpt: Path, mano_pkl: Path) -> None:
    with pytest.raises(ValueError, match="CUDA"):
        load_reconstructor(small_ckpt, mano_pkl, device="cpu", dtype=torch.float16)


# ------------------------------------------------------------------ geometry
def test_rot6d_conventions() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=gen)
    rot = rot6d_to_rotmat(x)
    assert torch.allclose(rot @ rot.transpose(-1, -2), torch.eye(3).expand(64, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(64), atol=1e-5)
    # the first three numbers give column 1 (not row 1, not interleaved)
    assert torch.allclose(rot[:, :, 0], x[:, :3] / x[:, :3].norm(dim=-1, keepdim=True), atol=1e-6)
    assert torch.allclose(rot6d_to_rotmat(rotmat_to_rot6d(rot)), rot, atol=1e-5)
    aa = np.random.default_rng(0).normal(scale=0.5, size=(10, 3))
    assert (np.linalg.norm(aa, axis=-1) < np.pi).all()  # canonical range: the round trip is exact
    np.testing.assert_allclose(rotmat_to_axis_angle_np(axis_angle_to_rotmat_np(aa)), aa, atol=1e-9)
    np.testing.assert_allclose(
        axis_angle_to_rotmat(torch.from_numpy(aa)).numpy(), axis_angle_to_rotmat_np(aa)
    )
    assert torch.equal(axis_angle_to_rotmat(torch.zeros(2, 3)), torch.eye(3).expand(2, 3, 3))
