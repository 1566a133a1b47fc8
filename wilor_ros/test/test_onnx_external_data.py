"""ONNX exports whose weights live in one side file, ``wilor.onnx.data`` (issue 11, item 1b).

The released reconstructor's ~2.5 GB of weights cannot be one protobuf (2 GiB limit). Here the small
synthetic model is exported with external data forced, and every consumer is run on it for real:
ONNX Runtime, the model-file check, the TensorRT engine-cache hash and the mixed-fp16 rewrite.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from wilor_ros.core.backends.base import ReconstructorOutput
from wilor_ros.core.backends.onnxruntime_backend import OnnxRuntimeBackend
from wilor_ros.core.backends.tensorrt import build, mixed_precision
from wilor_ros.core.backends.tensorrt import cache as engine_cache
from wilor_ros.core.files import onnx_files
from wilor_ros.core.files.model_files import RECONSTRUCTOR_ONNX, MissingModelFilesError, check_model_files
from wilor_ros.core.models.reconstructor import load_reconstructor
from wilor_ros.tools import export as export_tool
from wilor_ros.tools.export import export_reconstructor_onnx

DEVICE = engine_cache.DeviceInfo("NVIDIA GeForce RTX 4090", (8, 9), "10.13.0.35")
DATA_NAME = "wilor.onnx.data"
FP16_VERTEX_BOUND_M = 5e-3  # as test_tensorrt: the mixed graph stays within 5 mm on random weights


def crops(batch: int = 3) -> np.ndarray:
    return np.random.default_rng(5).standard_normal((batch, 3, 256, 256)).astype(np.float32)


@pytest.fixture(scope="module")
def small_model(synthetic_model_dir: Path):
    return load_reconstructor(
        synthetic_model_dir / "wilor_final.ckpt", synthetic_model_dir / "MANO_RIGHT.pkl"
    )


@pytest.fixture(scope="module")
def external_export(small_model, synthetic_model_dir: Path, tmp_path_factory) -> Path:
    """The small model exported like synthetic_model_dir/wilor.onnx, but with external data forced."""
    folder = tmp_path_factory.mktemp("external")
    report = export_reconstructor_onnx(
        small_model,
        folder / "wilor.onnx",
        synthetic=True,
        model_version="synthetic-small",
        external_data=True,
    )
    assert report.data_path == folder / DATA_NAME
    assert max(report.max_abs_diff.values()) < 1e-4  # the ORT-vs-PyTorch check ran on it
    return report.path


def test_export_writes_one_side_file_and_nothing_else(
    external_export: Path, synthetic_model_dir: Path
) -> None:
    folder = external_export.parent
    assert sorted(p.name for p in folder.iterdir()) == ["wilor.onnx", DATA_NAME]  # no staging, no loose files
    graph = onnx_files.load_graph(external_export)
    external = [t for t in graph.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert external and {dict((e.key, e.value) for e in t.external_data)["location"] for t in external} == {
        DATA_NAME
    }
    assert onnx_files.external_data_paths(external_export) == [folder / DATA_NAME]
    assert onnx_files.external_data_paths(synthetic_model_dir / "wilor.onnx") == []  # small: one file
    # nearly all bytes moved out of the graph file
    assert external_export.stat().st_size < (folder / DATA_NAME).stat().st_size
    onnx.checker.check_model(str(external_export))


def test_export_holds_no_transposed_copy_of_a_linear_weight(external_export: Path, small_model) -> None:
    """Linear layers read their weights as stored (Gemm, transB=1): no constant-folded transposed copy
    of a weight is in the file, so the export never holds the linear weights twice (2.5 GB for the
    released model). Other folded constants (a slice of pos_embed, MANO products) are small."""
    from onnx import numpy_helper

    names = {f"model.{k}" for k in small_model.state_dict()}
    graph = onnx_files.load_graph(external_export)
    folded = [
        numpy_helper.to_array(t, str(external_export.parent))
        for t in graph.graph.initializer
        if t.name not in names
    ]
    linears = [m.weight.detach().numpy() for m in small_model.modules() if isinstance(m, torch.nn.Linear)]
    for weight in linears:
        assert not any(f.shape == weight.T.shape and np.array_equal(f, weight.T) for f in folded)
    constants = {t.name for t in graph.graph.initializer}
    assert not any(n.op_type == "MatMul" and set(n.input) & (constants - names) for n in graph.graph.node)
    gemm_weights = {n.input[1] for n in graph.graph.node if n.op_type == "Gemm"}
    assert gemm_weights and gemm_weights <= names  # linear layers: Gemm on the stored weight


def test_onnx_runtime_outputs_and_metadata_equal_the_single_file_export(
    external_export: Path, synthetic_model_dir: Path
) -> None:
    single = OnnxRuntimeBackend(synthetic_model_dir / "wilor.onnx")
    split = OnnxRuntimeBackend(external_export)
    assert split.metadata == single.metadata and "faces" in split.metadata
    np.testing.assert_array_equal(split.faces, single.faces)
    out_single, out_split = single.infer(crops()), split.infer(crops())
    for name in ReconstructorOutput.names():
        np.testing.assert_array_equal(getattr(out_split, name), getattr(out_single, name), err_msg=name)


def test_missing_side_file_is_named_by_every_check(external_export: Path, tmp_path: Path) -> None:
    onnx_path = tmp_path / "wilor.onnx"
    shutil.copy(external_export, onnx_path)  # the graph file copied alone
    with pytest.raises(MissingModelFilesError, match=DATA_NAME) as caught:
        check_model_files([(onnx_path, RECONSTRUCTOR_ONNX)])
    assert caught.value.missing[0][0] == tmp_path / DATA_NAME
    assert "wilor-ros export" in str(caught.value)
    with pytest.raises(RuntimeError, match=DATA_NAME):
        OnnxRuntimeBackend(onnx_path)
    with pytest.raises(RuntimeError, match=DATA_NAME):  # before any TensorRT or GPU is needed
        build.ensure_engine(onnx_path, DEVICE, "fp16", 1, build.reconstructor_profile(1))
    assert not onnx_files.is_complete(onnx_path)
    shutil.copy(external_export.parent / DATA_NAME, tmp_path / DATA_NAME)
    check_model_files([(onnx_path, RECONSTRUCTOR_ONNX)])
    assert onnx_files.is_complete(onnx_path)
    # a graph file pointing outside its folder is refused, not followed
    graph = onnx_files.load_graph(onnx_path)
    tensor = next(t for t in graph.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL)
    next(e for e in tensor.external_data if e.key == "location").value = f"../{DATA_NAME}"
    escaping = tmp_path / "escaping.onnx"
    escaping.write_bytes(graph.SerializeToString())
    with pytest.raises(ValueError, match="outside its folder"):
        onnx_files.model_sha256(escaping)


def test_engine_cache_key_changes_when_only_the_side_file_changes(
    external_export: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "models"
    shutil.copytree(external_export.parent, folder)
    onnx_path, data = folder / "wilor.onnx", folder / DATA_NAME
    before = onnx_files.model_sha256(onnx_path)
    key = engine_cache.EngineKey(DEVICE, "fp16", 4, before)
    graph_bytes = onnx_path.read_bytes()
    payload = bytearray(data.read_bytes())
    payload[len(payload) // 2] ^= 0x01  # one bit of one weight
    data.write_bytes(bytes(payload))
    assert onnx_path.read_bytes() == graph_bytes
    after = onnx_files.model_sha256(onnx_path)
    assert after != before
    new_key = engine_cache.EngineKey(DEVICE, "fp16", 4, after)
    assert (
        engine_cache.engine_paths(onnx_path, new_key).engine
        != engine_cache.engine_paths(onnx_path, key).engine
    )
    # a self-contained file hashes as the plain file
    single = tmp_path / "single.onnx"
    single.write_bytes(onnx.load(str(onnx_path)).SerializeToString())
    assert onnx_files.model_sha256(single) == onnx_files.file_sha256(single)


def test_mixed_fp16_rewrite_reads_and_writes_external_data(
    external_export: Path, synthetic_model_dir: Path, tmp_path: Path
) -> None:
    import onnxruntime as ort

    mixed = tmp_path / "engines" / "wilor.mixed-fp16.onnx"
    counts = mixed_precision.make_mixed_precision_onnx(external_export, mixed)
    assert counts["fp16_nodes"] > 0
    assert onnx_files.external_data_paths(mixed) == [tmp_path / "engines" / "wilor.mixed-fp16.onnx.data"]
    reference = tmp_path / "single" / "wilor.mixed-fp16.onnx"
    mixed_precision.make_mixed_precision_onnx(synthetic_model_dir / "wilor.onnx", reference)

    def run(path: Path) -> list[np.ndarray]:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {"crops": crops(2)})

    fp32 = run(external_export)
    out_mixed, out_reference = run(mixed), run(reference)
    for name, a, b, full in zip(ReconstructorOutput.names(), out_mixed, out_reference, fp32):
        np.testing.assert_array_equal(a, b, err_msg=name)  # same rewrite whatever the file layout
        if name in ("vertices", "keypoints_3d"):
            assert 0 < np.abs(a - full).max() < FP16_VERTEX_BOUND_M
    onnx_files.remove_onnx(mixed)  # what build_engine does with its scratch copy
    assert not any((tmp_path / "engines").iterdir())


def test_loose_per_tensor_files_are_gathered_into_one(external_export: Path, tmp_path: Path) -> None:
    """Above 2 GiB torch's exporter writes one file per tensor, location only (no offset/length);
    write_onnx gathers them into the single side file."""
    from onnx.external_data_helper import convert_model_to_external_data

    loose = tmp_path / "torch"
    loose.mkdir()
    model = onnx.load(str(external_export))
    convert_model_to_external_data(model, all_tensors_to_one_file=False, size_threshold=1024)
    onnx.save_model(model, str(loose / "wilor.onnx"))
    graph = onnx_files.load_graph(loose / "wilor.onnx")
    for tensor in graph.graph.initializer:
        kept = [(e.key, e.value) for e in tensor.external_data if e.key == "location"]
        del tensor.external_data[:]
        for key, value in kept:
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
    assert len(list(loose.iterdir())) > 10
    out = tmp_path / "out" / "wilor.onnx"
    onnx_files.write_onnx(graph, out, source_dir=loose, external_data=True)
    assert sorted(p.name for p in out.parent.iterdir()) == ["wilor.onnx", DATA_NAME]
    single = OnnxRuntimeBackend(external_export).infer(crops(1))
    gathered = OnnxRuntimeBackend(out).infer(crops(1))
    for name in ReconstructorOutput.names():
        np.testing.assert_array_equal(getattr(gathered, name), getattr(single, name), err_msg=name)


def test_failed_export_leaves_no_file_and_keeps_the_old_one(small_model, tmp_path: Path, monkeypatch) -> None:
    old = export_reconstructor_onnx(small_model, tmp_path / "wilor.onnx", synthetic=True, check=False)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    class FailingCheck:  # the ORT check is the last step: every new file exists in staging by then
        def __init__(self, path: Path) -> None:
            staged = sorted(p.name for p in Path(path).parent.iterdir())
            assert staged == ["wilor.onnx", DATA_NAME], staged
            raise RuntimeError("simulated failure after the files were written")

    monkeypatch.setattr(export_tool, "OnnxRuntimeBackend", FailingCheck)
    with pytest.raises(RuntimeError, match="simulated"):
        export_reconstructor_onnx(small_model, old.path, synthetic=True, external_data=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # nothing new, nothing lost


def test_staged_single_file_replaces_an_external_export(external_export: Path, tmp_path: Path) -> None:
    folder = tmp_path / "models"
    shutil.copytree(external_export.parent, folder)
    with onnx_files.staged_onnx(folder / "wilor.onnx") as staged:
        onnx_files.write_onnx(
            onnx_files.load_graph(external_export),
            staged,
            source_dir=external_export.parent,
            external_data=False,
        )
    assert sorted(p.name for p in folder.iterdir()) == ["wilor.onnx"]  # the stale side file went too
    assert onnx_files.external_data_paths(folder / "wilor.onnx") == []
    OnnxRuntimeBackend(folder / "wilor.onnx").infer(crops(1))
