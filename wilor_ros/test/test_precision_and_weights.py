"""The bf16 mixed recipe on the CPU (where the CPU has bf16 instructions) and how the CPU weights are held
(memory vs mmap, mlock). Parity of the float32 path is in test_reconstructor.py."""

from __future__ import annotations

import gc
from pathlib import Path

import numpy as np
import pytest
import torch

from wilor_ros.core.models import ReconstructorConfig, cpu_features
from wilor_ros.core.models.checkpoint import write_checkpoint
from wilor_ros.core.models.reconstructor import load_reconstructor

torch.set_num_threads(2)

HAS_CPU_BF16 = bool(cpu_features.bf16_cpu_flags())
needs_cpu_bf16 = pytest.mark.skipif(
    not HAS_CPU_BF16, reason="this CPU has no amx_bf16/avx512_bf16: bf16 is refused on it (tested below)"
)


@pytest.fixture(scope="module")
def golden(reference_dir: Path) -> dict[str, np.ndarray]:
    with np.load(reference_dir / "golden_small.npz") as data:
        return {k: np.array(data[k]) for k in data.files}


@pytest.fixture(scope="module")
def mano_pkl(reference_dir: Path) -> Path:
    return reference_dir / "mano_synthetic_right.pkl"


@pytest.fixture(scope="module")
def small_ckpt(tmp_path_factory: pytest.TempPathFactory, golden: dict[str, np.ndarray]) -> Path:
    prefix = "state_dict/"
    state = {k[len(prefix) :]: torch.from_numpy(v) for k, v in golden.items() if k.startswith(prefix)}
    path = tmp_path_factory.mktemp("ckpt") / "golden_small.ckpt"
    return write_checkpoint(path, state, ReconstructorConfig.small(), synthetic=False)


# ------------------------------------------------------------------ bf16 on the CPU
@needs_cpu_bf16
def test_cpu_bf16_keeps_the_fp32_islands_and_stays_close(small_ckpt, mano_pkl, golden):
    model = load_reconstructor(small_ckpt, mano_pkl, dtype=torch.bfloat16)
    blocks = model.backbone.blocks
    # half: patch embedding and the blocks' attention/MLP layers (nearly all FLOPs)
    assert model.compute_dtype == torch.bfloat16
    assert blocks[0].attn.qkv.weight.dtype == blocks[-1].mlp.fc2.weight.dtype == torch.bfloat16
    # float32 islands: LayerNorms, token embeddings, read-outs, mean parameters, refinement net, MANO
    float32 = [
        blocks[0].norm1.weight, blocks[0].norm2.weight, model.backbone.last_norm.weight,
        model.backbone.pos_embed, model.backbone.pose_emb.weight, model.backbone.decpose.weight,
        model.backbone.init_hand_pose, model.refine_net.dec_pose.weight,
        model.refine_net.deconv.first_conv[0].weight, model.mano.v_template,
    ]  # fmt: skip
    assert all(t.dtype == torch.float32 for t in float32)
    crops = torch.from_numpy(golden["in/img"])
    with torch.inference_mode():
        out = model(crops)
    for key in ("pred_vertices", "pred_keypoints_3d", "pred_cam_t", "pred_keypoints_2d"):
        assert out[key].dtype == torch.float32 and torch.isfinite(out[key]).all(), key
    vertex_mm = np.abs(out["pred_vertices"].numpy() - golden["out/pred_vertices"]) * 1000
    assert vertex_mm.mean() < 1.0 and vertex_mm.max() < 5.0, (vertex_mm.mean(), vertex_mm.max())
    np.testing.assert_allclose(out["pred_keypoints_2d"].numpy(), golden["out/pred_keypoints_2d"], atol=0.02)


def test_cpu_bf16_is_refused_without_cpu_support(small_ckpt, mano_pkl, tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Old CPU\nflags\t\t: fpu sse2 avx avx2 fma avx512f\n")
    monkeypatch.setattr(cpu_features, "CPUINFO_PATH", cpuinfo)
    with pytest.raises(ValueError, match="avx512_bf16") as err:
        load_reconstructor(small_ckpt, mano_pkl, dtype=torch.bfloat16)
    assert "fp32" in str(err.value)
    with pytest.raises(ValueError, match="CUDA"):  # fp16 stays CUDA-only whatever the CPU has
        load_reconstructor(small_ckpt, mano_pkl, dtype=torch.float16)


# ------------------------------------------------------------------ memory vs mmap
def mapping_of(address: int) -> str | None:
    """The file behind the mapping of ``address`` in /proc/self/maps ('' for anonymous memory)."""
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        start, end = (int(x, 16) for x in fields[0].split("-"))
        if start <= address < end:
            return fields[5].strip() if len(fields) == 6 else ""
    return None


def files_mapped() -> set[str]:
    return {line.split(maxsplit=5)[5] for line in Path("/proc/self/maps").read_text().splitlines() if
            len(line.split(maxsplit=5)) == 6}  # fmt: skip


def locked_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmLck:"):
            return int(line.split()[1])
    raise AssertionError("no VmLck in /proc/self/status")


needs_proc = pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs Linux /proc")


@needs_proc
def test_mmap_weights_are_pages_of_the_checkpoint(small_ckpt, mano_pkl):
    model = load_reconstructor(small_ckpt, mano_pkl, weight_loading="mmap")
    weight = model.backbone.blocks[0].mlp.fc1.weight
    assert mapping_of(weight.data_ptr()) == str(small_ckpt.resolve())


@needs_proc
def test_memory_weights_are_private_and_the_file_is_released(small_ckpt, mano_pkl, golden):
    model = load_reconstructor(small_ckpt, mano_pkl, weight_loading="memory")
    gc.collect()
    path = str(small_ckpt.resolve())
    tensors = [*model.parameters(), *model.buffers()]
    assert all(mapping_of(t.data_ptr()) != path for t in tensors if t.numel())
    assert path not in files_mapped()  # nothing can be paged in from the file any more
    with torch.inference_mode():  # and the outputs are the same weights'
        out = model(torch.from_numpy(golden["in/img"][:1]))
    np.testing.assert_allclose(out["pred_vertices"].numpy(), golden["out/pred_vertices"][:1], atol=1e-5)


@needs_proc
def test_locked_weights_count_in_vmlck(small_ckpt, mano_pkl):
    before = locked_kb()
    try:
        model = load_reconstructor(small_ckpt, mano_pkl, lock_weights=True)
    except RuntimeError as exc:  # unprivileged with a low `ulimit -l`: the message must say what to do
        assert "ulimit -l" in str(exc) and "lock_weights" in str(exc)
        pytest.skip(f"mlock not permitted here: {exc}")
    weight_kb = sum(t.untyped_storage().nbytes() for t in (*model.parameters(), *model.buffers())) // 1024
    assert locked_kb() - before >= weight_kb * 0.99
    # freeing the model unlocks its pages (a reloading node must not creep up the locked limit)
    del model
    gc.collect()
    assert locked_kb() - before < weight_kb * 0.01


def test_unknown_weight_loading_is_refused(small_ckpt, mano_pkl):
    with pytest.raises(ValueError, match="weight_loading"):
        load_reconstructor(small_ckpt, mano_pkl, weight_loading="swap")
