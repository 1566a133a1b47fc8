"""Backend interface conformance: PyTorch and ONNX Runtime on one small synthetic model give the same
output names, shapes and dtypes, handle B = 0 and batches > 1, and agree within 1e-4."""

from __future__ import annotations

import json

import numpy as np
import pytest

from wilor_ros.core.backends.base import INPUT_SPEC, OUTPUT_SPECS, ReconstructorOutput
from wilor_ros.core.backends.onnxruntime_backend import OnnxRuntimeBackend
from wilor_ros.core.backends.registry import BACKEND_CHOICES, BACKENDS, PRECISION_CHOICES
from wilor_ros.core.backends.torch_backend import TorchBackend
from wilor_ros.core.pipeline import make_backend
from wilor_ros.core.pipeline_config import ModelPaths, PipelineConfig
from wilor_ros.tools.compare_backends import compare_outputs, run_compare

PARITY_TOL = 1e-4


@pytest.fixture(scope="module")
def backends(synthetic_model_dir):
    import torch

    torch.set_num_threads(2)
    made = {}
    for name in ("pytorch", "onnxruntime"):
        config = PipelineConfig(models=ModelPaths(model_dir=str(synthetic_model_dir)), backend=name)
        made[name] = make_backend(config)
    yield made
    for backend in made.values():
        backend.close()


def crops(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, *INPUT_SPEC.shape[1:])).astype(np.float32)


def test_types_synthetic_flag_and_faces(backends):
    assert isinstance(backends["pytorch"], TorchBackend)
    assert isinstance(backends["onnxruntime"], OnnxRuntimeBackend)
    for backend in backends.values():
        assert backend.synthetic
        assert backend.faces is not None and backend.faces.shape[1] == 3
    # the checkpoint's MANO faces and the ones the exporter wrote into the ONNX metadata
    np.testing.assert_array_equal(backends["pytorch"].faces, backends["onnxruntime"].faces)


def test_exported_file_declares_the_spec(backends):
    """What ONNX Runtime reads from the exported file itself (names, order, dynamic batch axis, fixed
    axes, dtypes) is the interface spec: a renamed, reordered, re-typed or fixed-batch export fails."""
    backend = backends["onnxruntime"]
    assert backend.input_spec() == INPUT_SPEC
    assert backend.output_spec() == OUTPUT_SPECS


@pytest.mark.parametrize("batch", [0, 2])
def test_infer_tensor_equals_infer(backends, batch):
    """The tensor entry point the pipeline's device preprocessing uses: PyTorch runs the tensor where it
    is (supports_device_input); ONNX Runtime takes the base class's host round trip."""
    import torch

    assert backends["pytorch"].supports_device_input and not backends["onnxruntime"].supports_device_input
    x = crops(batch, seed=3)
    for name, backend in backends.items():
        direct, via_tensor = backend.infer(x), backend.infer_tensor(torch.from_numpy(x))
        assert len(via_tensor) == batch, name
        for field in ReconstructorOutput.names():
            np.testing.assert_allclose(
                getattr(via_tensor, field), getattr(direct, field), atol=PARITY_TOL, err_msg=f"{name} {field}"
            )


@pytest.mark.parametrize("batch", [0, 1, 3])
def test_outputs_follow_the_spec(backends, batch):
    x = crops(batch)
    for name, backend in backends.items():
        out = backend.infer(x)
        assert isinstance(out, ReconstructorOutput) and len(out) == batch, name
        assert tuple(out.as_dict()) == tuple(s.name for s in OUTPUT_SPECS)
        for spec in OUTPUT_SPECS:
            value = getattr(out, spec.name)
            assert value.shape == (batch, *spec.shape[1:]), (name, spec.name)
            assert value.dtype == np.dtype(spec.dtype), (name, spec.name)
            assert np.all(np.isfinite(value)), (name, spec.name)


def test_onnxruntime_matches_pytorch(backends):
    x = crops(3, seed=1)
    rows = compare_outputs(backends["pytorch"].infer(x), backends["onnxruntime"].infer(x))
    worst = {r.name: r.max_abs for r in rows}
    print("ORT vs PyTorch max |diff| (lengths in mm):", worst)
    for row in rows:
        # lengths are reported in mm: 1e-4 m = 0.1 mm
        tol = PARITY_TOL * (1000.0 if row.unit == "mm" else 1.0)
        assert row.max_abs < tol, row


def test_batch_equals_single_calls(backends):
    x = crops(3, seed=2)
    for name, backend in backends.items():
        batched = backend.infer(x)
        for i in range(3):
            single = backend.infer(x[i : i + 1])
            for field in ReconstructorOutput.names():
                np.testing.assert_allclose(
                    getattr(single, field)[0],
                    getattr(batched, field)[i],
                    atol=PARITY_TOL,
                    err_msg=f"{name} {field}",
                )


def test_bad_input_is_a_value_error(backends):
    for backend in backends.values():
        with pytest.raises(ValueError, match="crops must be"):
            backend.infer(np.zeros((1, 3, 128, 128), np.float32))


def test_compare_backends_command(synthetic_model_dir, capsys):
    from wilor_ros.tools.cli import main

    rows, table = run_compare("pytorch", "onnxruntime", synthetic_model_dir, count=2, device="cpu")
    assert [r.name for r in rows] == list(ReconstructorOutput.names())
    assert all(r.max_abs < 0.1 for r in rows)  # within 0.1 mm / 1e-4 units
    assert "vertices" in table and "mm" in table
    code = main(
        [
            "compare-backends",
            "pytorch",
            "onnxruntime:fp32",
            "--model-dir",
            str(synthetic_model_dir),
            "--count",
            "1",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "keypoints_3d" in out and "max |A-B|" in out
    assert main(["compare-backends", "pytorch", "nonsense", "--model-dir", str(synthetic_model_dir)]) == 2


def test_int8_onnxruntime_backend(synthetic_model_dir, tmp_path):
    """precision int8 (onnxruntime): the 4 Linear MatMuls of every ViT block become int8 in a file written
    beside the export on first use and reused after; compare-backends reports its mm error and time."""
    import shutil

    from wilor_ros.core.backends.quantization import RECIPE, int8_path, vit_linear_nodes

    folder = tmp_path / "models"
    shutil.copytree(synthetic_model_dir, folder)
    assert len(vit_linear_nodes(folder / "wilor.onnx")) == 4 * 2  # small model: depth 2
    config = PipelineConfig(models=ModelPaths(model_dir=str(folder)), backend="onnxruntime", precision="int8")
    backend = make_backend(config)
    quantized = int8_path(folder / "wilor.onnx")
    assert quantized.is_file() and quantized.name == "wilor.int8.onnx"
    assert quantized.stat().st_size < (folder / "wilor.onnx").stat().st_size
    written = quantized.stat().st_mtime_ns
    assert backend.infer(crops(2)).vertices.shape == (2, 778, 3)
    make_backend(config)  # reused, not rewritten
    assert quantized.stat().st_mtime_ns == written
    sidecar = quantized.with_suffix(".json")
    assert json.loads(sidecar.read_text())["recipe"] == RECIPE
    sidecar.write_text(json.dumps({**json.loads(sidecar.read_text()), "recipe": "an-older-recipe"}))
    make_backend(config)  # another recipe made the file: it is rebuilt
    assert quantized.stat().st_mtime_ns != written and json.loads(sidecar.read_text())["recipe"] == RECIPE
    rows, table = run_compare("onnxruntime", "onnxruntime:int8", folder, count=3, device="cpu", rounds=2)
    vertices = next(r for r in rows if r.name == "vertices")
    assert 0 < vertices.mean_abs <= vertices.max_abs < 50  # mm: quantized, so different but close
    assert "2 paired round(s)" in table and "A / B time per crop" in table


@pytest.mark.parametrize(
    ("backend", "precision"), [("onnxruntime", "bf16"), ("pytorch", "int8"), ("tensorrt", "bf16")]
)
def test_precisions_a_runtime_cannot_run_are_refused(backend, precision):
    with pytest.raises(ValueError, match=f"the {backend} backend runs precision"):
        PipelineConfig(backend=backend, precision=precision).validate()


@pytest.mark.parametrize("name", BACKEND_CHOICES)
def test_validation_follows_the_registry(name):
    """PipelineConfig accepts exactly the precisions and options the registry gives each runtime."""
    entry = BACKENDS[name]
    for precision in PRECISION_CHOICES:
        config = PipelineConfig(backend=name, precision=precision)
        if precision in entry.precisions:
            config.validate()
        else:
            with pytest.raises(ValueError, match=f"runs precision {' [|] '.join(entry.precisions)}"):
                config.validate()
    options = {"device_preprocessing": entry.device_input, "torch_compile": entry.torch_runtime}
    for option, allowed in options.items():
        config = PipelineConfig(backend=name, precision=entry.precisions[0], **{option: True})
        if allowed:
            config.validate()
        else:
            with pytest.raises(ValueError, match=option):
                config.validate()


def test_entry_points_offer_the_registry_choices():
    """The ROS parameters and the command line list the registry's runtimes and precisions."""
    from wilor_ros.ros.parameters import BY_NAME
    from wilor_ros.tools.cli import build_parser

    assert BY_NAME["backend"].choices == BACKEND_CHOICES
    assert BY_NAME["precision"].choices == PRECISION_CHOICES
    args = build_parser().parse_args(["demo", "in.jpg", "--backend", "onnxruntime", "--precision", "int8"])
    assert (args.backend, args.precision) == ("onnxruntime", "int8")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "in.jpg", "--backend", "tflite"])
