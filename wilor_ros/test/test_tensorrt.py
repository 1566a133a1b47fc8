"""TensorRT backend: engine-cache key and staleness logic, mixed-precision ONNX (CPU, with ONNX
Runtime), clear errors without TensorRT/GPU; real engine builds only where a GPU and TensorRT exist."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

from wilor_ros.core.backends.base import ReconstructorOutput
from wilor_ros.core.backends.tensorrt import build, mixed_precision, runtime
from wilor_ros.core.backends.tensorrt import cache as engine_cache
from wilor_ros.core.backends.tensorrt.backend import TensorRTBackend
from wilor_ros.core.files import onnx_files

DEVICE = engine_cache.DeviceInfo("NVIDIA GeForce RTX 4090", (8, 9), "10.13.0.35")
SHA = "ab" * 32


def has_gpu_tensorrt() -> tuple[bool, str]:
    import torch

    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False, "TensorRT is not installed"
    if not torch.cuda.is_available():
        return False, "no CUDA GPU on this machine"
    return True, ""


GPU_OK, GPU_REASON = has_gpu_tensorrt()
needs_gpu = pytest.mark.skipif(not GPU_OK, reason=f"needs TensorRT and a GPU: {GPU_REASON}")


# ------------------------------------------------------------------ cache key (pure)
def test_key_changes_with_every_field():
    base = engine_cache.EngineKey(DEVICE, "fp16", 4, SHA)
    variants = [
        engine_cache.EngineKey(
            engine_cache.DeviceInfo("NVIDIA A100-SXM4-80GB", (8, 9), "10.13.0.35"), "fp16", 4, SHA
        ),
        engine_cache.EngineKey(
            engine_cache.DeviceInfo(DEVICE.gpu_name, (8, 6), "10.13.0.35"), "fp16", 4, SHA
        ),
        engine_cache.EngineKey(
            engine_cache.DeviceInfo(DEVICE.gpu_name, (8, 9), "11.4.0.106"), "fp16", 4, SHA
        ),
        engine_cache.EngineKey(DEVICE, "fp32", 4, SHA),
        engine_cache.EngineKey(DEVICE, "fp16", 2, SHA),
        engine_cache.EngineKey(DEVICE, "fp16", 4, "cd" * 32),
        engine_cache.EngineKey(DEVICE, "fp16", 4, SHA, recipe=engine_cache.RECIPE_VERSION + 1),
    ]
    slugs = {base.slug()} | {v.slug() for v in variants}
    assert len(slugs) == len(variants) + 1
    assert base.slug() == engine_cache.EngineKey(DEVICE, "fp16", 4, SHA).slug()  # deterministic
    slug = base.slug()
    assert slug.startswith("nvidia-geforce-rtx-4090-sm89-trt10.13.0.35-fp16-b4-")
    assert "/" not in slug and " " not in slug


def test_key_round_trips_through_json():
    key = engine_cache.EngineKey(DEVICE, "fp32", 3, SHA)
    assert engine_cache.EngineKey.from_dict(json.loads(json.dumps(key.as_dict()))) == key


def test_key_rejects_bad_values():
    with pytest.raises(ValueError, match="precision"):
        engine_cache.EngineKey(DEVICE, "int8", 4, SHA)
    with pytest.raises(ValueError, match="max_batch"):
        engine_cache.EngineKey(DEVICE, "fp16", 0, SHA)


def test_engine_paths_and_timing_cache(tmp_path):
    onnx_path = tmp_path / "wilor.onnx"
    key = engine_cache.EngineKey(DEVICE, "fp16", 4, SHA)
    paths = engine_cache.engine_paths(onnx_path, key)
    assert paths.engine.parent == tmp_path / "engines"
    assert paths.engine.name == f"wilor-{key.slug()}.engine"
    assert paths.sidecar.name == f"wilor-{key.slug()}.json"
    assert engine_cache.engine_paths(onnx_path, key, tmp_path / "x").engine.parent == tmp_path / "x"
    cache = engine_cache.timing_cache_path(paths.engine.parent, DEVICE)
    assert cache.parent == paths.engine.parent and "rtx-4090" in cache.name and "10.13.0.35" in cache.name


def test_file_sha256_matches_hashlib(tmp_path):
    import hashlib

    data = np.random.default_rng(0).bytes(3 * onnx_files.SHA_CHUNK_BYTES + 17)  # several chunks and a tail
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert onnx_files.file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_staleness_lifecycle(tmp_path):
    onnx_path = tmp_path / "wilor.onnx"
    onnx_path.write_bytes(b"model v1")
    key = engine_cache.EngineKey(DEVICE, "fp16", 4, onnx_files.file_sha256(onnx_path))
    paths = engine_cache.engine_paths(onnx_path, key)

    usable, reason = engine_cache.engine_status(paths, key)
    assert not usable and "no engine" in reason

    engine_cache.write_engine(paths, b"serialized-engine", key, onnx_path, {"profile": []})
    assert engine_cache.engine_status(paths, key) == (True, "up to date")
    sidecar = json.loads(paths.sidecar.read_text())
    assert sidecar["engine_bytes"] == len(b"serialized-engine") and sidecar["key"]["precision"] == "fp16"
    assert not list(paths.engine.parent.glob(".*.tmp"))  # atomic writes leave no temporaries

    # another GPU / TensorRT / precision: same file names would differ, and the sidecar check says why
    other = engine_cache.EngineKey(
        engine_cache.DeviceInfo(DEVICE.gpu_name, (8, 9), "11.4.0.106"), "fp16", 4, key.onnx_sha256
    )
    usable, reason = engine_cache.engine_status(paths, other)
    assert not usable and "device" in reason

    # the ONNX file changes: its sha256 changes, so does the key and the engine file name
    onnx_path.write_bytes(b"model v2")
    new_key = engine_cache.EngineKey(DEVICE, "fp16", 4, onnx_files.file_sha256(onnx_path))
    assert new_key != key and engine_cache.engine_paths(onnx_path, new_key).engine != paths.engine
    assert not engine_cache.engine_status(engine_cache.engine_paths(onnx_path, new_key), new_key)[0]

    # truncated engine, corrupt sidecar, missing sidecar
    paths.engine.write_bytes(b"short")
    assert "truncated" in engine_cache.engine_status(paths, key)[1]
    paths.sidecar.write_text("{not json")
    assert "unreadable" in engine_cache.engine_status(paths, key)[1]
    paths.sidecar.unlink()
    assert "no sidecar" in engine_cache.engine_status(paths, key)[1]


def test_stale_engines_lists_only_other_builds_of_the_same_stem(tmp_path):
    onnx_path = tmp_path / "wilor.onnx"
    keys = [engine_cache.EngineKey(DEVICE, p, b, SHA) for p, b in (("fp16", 4), ("fp32", 4), ("fp16", 2))]
    for key in keys:
        engine_cache.write_engine(engine_cache.engine_paths(onnx_path, key), b"e", key, onnx_path)
    det_key = engine_cache.EngineKey(DEVICE, "fp16", 1, SHA)
    engine_cache.write_engine(
        engine_cache.engine_paths(tmp_path / "detector.onnx", det_key), b"e", det_key, onnx_path
    )
    keep = engine_cache.engine_paths(onnx_path, keys[0]).engine
    stale = engine_cache.stale_engines(tmp_path / "engines", "wilor", keep=[keep])
    assert sorted(stale) == sorted(engine_cache.engine_paths(onnx_path, k).engine for k in keys[1:])


def test_reconstructor_profile():
    (shape,) = build.reconstructor_profile(4)
    assert shape.name == "crops" and shape.min[0] == 1 and shape.opt[0] == 2 and shape.max[0] == 4
    assert shape.max[1:] == (3, 256, 256)
    assert build.reconstructor_profile(1)[0].opt[0] == 1


# ------------------------------------------------------------------ mixed precision ONNX (CPU)
def test_mixed_precision_onnx_runs_and_stays_close(synthetic_model_dir, tmp_path):
    import onnxruntime as ort

    src = synthetic_model_dir / "wilor.onnx"
    out = tmp_path / "mixed.onnx"
    counts = mixed_precision.make_mixed_precision_onnx(src, out)
    assert counts["fp16_nodes"] > 0 and counts["fp32_nodes"] > 0
    model = onnx.load(str(out))
    half_ops = {n.op_type for n in model.graph.node if any(i.endswith("__fp16") for i in n.input)}
    assert "MatMul" in half_ops  # the ViT's matmuls really run in fp16
    assert not half_ops & set(mixed_precision.FP32_OPS)  # LayerNorm / softmax never do
    for value in (*model.graph.input, *model.graph.output):
        assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float32 I/O kept
    crops = np.random.default_rng(0).standard_normal((2, 3, 256, 256)).astype(np.float32)
    ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"crops": crops})
    mixed = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"crops": crops})
    names = ReconstructorOutput.names()
    diffs = {n: float(np.abs(a - b).max()) for n, a, b in zip(names, ref, mixed)}
    print("mixed fp16 vs fp32 ONNX (ONNX Runtime CPU) max |diff|:", diffs)
    assert all(np.isfinite(v) for v in diffs.values())
    assert diffs["vertices"] < 5e-3 and diffs["keypoints_3d"] < 5e-3  # metres: under 5 mm on random weights
    assert any(v > 0 for v in diffs.values())  # fp16 really changed the arithmetic


def test_mixed_precision_rejects_foreign_graph(tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ValueError, match="fp16 scopes"):
        mixed_precision.make_mixed_precision_onnx(path, tmp_path / "out.onnx")


# ------------------------------------------------------------------ errors without TensorRT / GPU
def tensorrt_installed() -> bool:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return False
    return True


def expected_hint(device: str) -> str:
    """The part of the error that tells the user what to do on this machine."""
    if not tensorrt_installed():
        return "pip install tensorrt-cu12"
    return "use device 'cuda'" if device == "cpu" else "torch sees none"


@pytest.mark.skipif(GPU_OK, reason="this machine has TensorRT and a GPU")
def test_clear_error_without_tensorrt_or_gpu(synthetic_model_dir):
    with pytest.raises(RuntimeError) as info:
        TensorRTBackend.from_onnx(synthetic_model_dir / "wilor.onnx", device="cuda")
    message = str(info.value)
    assert expected_hint("cuda") in message and "backend 'onnxruntime'" in message, message


def test_cpu_device_is_refused():
    with pytest.raises(RuntimeError, match="CUDA GPU") as info:
        runtime.cuda_device("cpu")
    assert "use device 'cuda'" in str(info.value) and "'onnxruntime'" in str(info.value)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_pipeline_names_tensorrt_errors_clearly(synthetic_detector_dir, device):
    """backend tensorrt where it cannot run: the reconstructor, the detector and the whole pipeline each
    say what to install (or which device to use) and that backend onnxruntime runs instead. The detector
    is TensorRT's: ONNX Runtime's would load here without error."""
    from wilor_ros.core.pipeline import HandPipeline, make_backend, make_detector
    from wilor_ros.core.pipeline_config import ModelPaths, PipelineConfig

    if GPU_OK and device == "cuda":
        pytest.skip("this machine runs TensorRT")
    config = PipelineConfig(
        models=ModelPaths(model_dir=str(synthetic_detector_dir)), backend="tensorrt", device=device
    )
    for build_part in (make_backend, make_detector, HandPipeline.from_config):
        with pytest.raises(RuntimeError) as info:
            build_part(config)
        message = str(info.value)
        assert "TensorRT" in message and expected_hint(device) in message, (build_part, message)
        assert "backend 'onnxruntime'" in message, (build_part, message)


# ------------------------------------------------------------------ detector engine, without a GPU
def test_detector_profile():
    (dynamic,) = build.detector_profile("images", (640, 640), 1, dynamic_hw=True)
    assert dynamic.min == (1, 3, build.DETECTOR_MIN_SIDE, build.DETECTOR_MIN_SIDE)
    assert dynamic.opt == dynamic.max == (1, 3, 640, 640)
    (static,) = build.detector_profile("images", (384, 640), 2, dynamic_hw=False)
    assert static.min == static.opt == (1, 3, 384, 640) and static.max == (2, 3, 384, 640)


@pytest.mark.parametrize("dynamic", [True, False])
def test_detector_signature_without_a_session_matches_onnxruntime(synthetic_detector_dir, tmp_path, dynamic):
    """The TensorRT detector reads its I/O and metadata from the file (the engine profile is made from
    them before any engine exists): they must be what ONNX Runtime reads, so both detectors letterbox,
    batch and decode alike."""
    from wilor_ros.core.backends.tensorrt.detector import OnnxSignature
    from wilor_ros.core.image.detector import OnnxHandDetector
    from wilor_ros.tools.export_detector import export_detector

    path = synthetic_detector_dir / "detector.onnx"
    if not dynamic:
        path = export_detector(synthetic_detector_dir / "detector.pt", tmp_path / "s.onnx", dynamic=False)
    signature = OnnxSignature.read(path)
    reference = OnnxHandDetector(path)
    assert signature.inputs == reference.runner.inputs and signature.outputs == reference.runner.outputs
    assert signature.metadata == reference.runner.metadata
    layout = signature.layout(str(path))
    assert layout == reference.layout
    assert layout.dynamic_hw is dynamic and (layout.static_batch is None) is dynamic


# ------------------------------------------------------------------ real engines (GPU only)
@needs_gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_build_reuse_and_parity(synthetic_model_dir, tmp_path, precision):
    from wilor_ros.core.backends.onnxruntime_backend import OnnxRuntimeBackend

    onnx_path = tmp_path / "wilor.onnx"
    shutil.copy(synthetic_model_dir / "wilor.onnx", onnx_path)
    backend = TensorRTBackend.from_onnx(onnx_path, device="cuda", precision=precision, max_batch=3)
    engines = list((tmp_path / "engines").glob("*.engine"))
    assert len(engines) == 1 and engines[0].with_suffix(".json").is_file()
    assert list((tmp_path / "engines").glob("timing-*.cache"))
    mtime = engines[0].stat().st_mtime_ns
    crops = np.random.default_rng(0).standard_normal((5, 3, 256, 256)).astype(np.float32)  # > max batch
    out = backend.infer(crops)
    ref = OnnxRuntimeBackend(onnx_path).infer(crops)
    tol = 1e-3 if precision == "fp32" else 5e-3
    for name in ReconstructorOutput.names():
        assert getattr(out, name).shape == getattr(ref, name).shape
        assert np.abs(getattr(out, name) - getattr(ref, name)).max() < tol, name
    assert len(backend.infer(crops[:0])) == 0
    backend.close()
    again = TensorRTBackend.from_onnx(onnx_path, device="cuda", precision=precision, max_batch=3)
    assert engines[0].stat().st_mtime_ns == mtime  # reused, not rebuilt
    again.close()


@needs_gpu
def test_engine_rebuilt_when_onnx_changes(synthetic_model_dir, tmp_path):
    onnx_path = tmp_path / "wilor.onnx"
    shutil.copy(synthetic_model_dir / "wilor.onnx", onnx_path)
    TensorRTBackend.from_onnx(onnx_path, precision="fp32", max_batch=1).close()
    model = onnx.load(str(onnx_path))
    model.doc_string = "changed"
    onnx.save(model, str(onnx_path))
    TensorRTBackend.from_onnx(onnx_path, precision="fp32", max_batch=1).close()
    assert len(list((tmp_path / "engines").glob("*.engine"))) == 2
    assert len(engine_cache.stale_engines(tmp_path / "engines", "wilor", keep=[])) == 2
    assert Path(tmp_path / "engines").is_dir()


@needs_gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_detector_engine_matches_onnxruntime(synthetic_detector_dir, tmp_path, precision):
    """The TensorRT detector's network gives ONNX Runtime's raw predictions on the same letterboxed
    input; lists longer than the engine's batch run in chunks."""
    from wilor_ros.core.backends.tensorrt.detector import TensorRTHandDetector
    from wilor_ros.core.image.detector import OnnxHandDetector

    path = tmp_path / "detector.onnx"
    shutil.copy(synthetic_detector_dir / "detector.onnx", path)
    engine_detector = TensorRTHandDetector(path, precision=precision, conf_threshold=0.0)
    reference = OnnxHandDetector(path, conf_threshold=0.0)
    assert engine_detector.layout == reference.layout and engine_detector.runner.max_batch == 1
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, shape, dtype=np.uint8) for shape in ((480, 640, 3), (720, 1280, 3))]
    box_tol, score_tol = (1e-2, 1e-4) if precision == "fp32" else (2.0, 2e-2)  # pixels, score units
    for image in images:
        tensor, _ = reference.preprocess([image])
        got, want = engine_detector.raw_predict(tensor), reference.raw_predict(tensor)
        assert got.shape == want.shape
        assert np.abs(got[:, :4] - want[:, :4]).max() < box_tol
        assert np.abs(got[:, 4:] - want[:, 4:]).max() < score_tol
    assert len(engine_detector.detect_batch(images * 2)) == 4
    engine_detector.close()


@needs_gpu
def test_pipeline_loads_the_engines_build_engines_builds(synthetic_detector_dir, tmp_path):
    """backend tensorrt: the pipeline's detector runs as an engine, and `build-engines` finds both
    engines the pipeline built up to date (the same cache keys), so a robot built ahead of time
    never builds on its first frame."""
    from wilor_ros.core.backends.tensorrt.detector import TensorRTHandDetector
    from wilor_ros.core.pipeline import HandPipeline
    from wilor_ros.core.pipeline_config import ModelPaths, PipelineConfig
    from wilor_ros.tools.build_engines import build_engines

    folder = tmp_path / "models"
    shutil.copytree(synthetic_detector_dir, folder)
    config = PipelineConfig(
        models=ModelPaths(model_dir=str(folder)), backend="tensorrt", device="cuda", precision="fp16"
    )
    pipeline = HandPipeline.from_config(config)
    assert isinstance(pipeline.detector, TensorRTHandDetector)
    assert pipeline.predict(np.full((480, 640, 3), 90, np.uint8)) == []  # random weights find no hand
    pipeline.close()
    statuses = {built.role: built.status for built in build_engines(folder, precision="fp16")}
    assert statuses == {"reconstructor": "reused", "detector": "reused"}
