"""``wilor-ros bench --quick`` on the CPU: PyTorch, ONNX Runtime and the eager baseline run, the table
prints and the JSON report holds one row per backend, image size and hand count."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from wilor_ros.core.backends.torch_backend import TorchBackend
from wilor_ros.core.image import preprocessing
from wilor_ros.core.models import cpu_features
from wilor_ros.core.models.cpu_features import bf16_cpu_flags, describe_bf16_support
from wilor_ros.core.pipeline import HandPipeline, make_backend
from wilor_ros.core.pipeline_config import ModelPaths, PipelineConfig
from wilor_ros.core.types import Side
from wilor_ros.tools.bench import (
    STAGES,
    BenchConfig,
    DemoHands,
    baseline_stages,
    demo_batches,
    format_bench_table,
    run_bench,
    run_weight_loading_bench,
    synthetic_boxes,
    synthetic_frame,
)


def test_synthetic_boxes_lie_in_the_frame():
    boxes = synthetic_boxes(640, 480, 4)
    assert len(boxes) == 4 and {int(b.side) for b in boxes} == {0, 1}
    for b in boxes:
        assert 0 <= b.box[0] < b.box[2] <= 640 and 0 <= b.box[1] < b.box[3] <= 480


def test_bench_quick_cli(synthetic_model_dir, tmp_path, capsys):
    from wilor_ros.tools.cli import main

    out_json = tmp_path / "bench.json"
    code = main(
        ["bench", "--quick", "--model-dir", str(synthetic_model_dir), "--threads", "2", "--device", "cpu",
         "--json", str(out_json)]
    )  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "pytorch" in printed and "onnxruntime" in printed and "baseline-eager" in printed
    report = json.loads(out_json.read_text())
    rows = report["rows"]
    quick = BenchConfig.quick()
    expected = {(b, h) for b in (*quick.backends, "baseline-eager") for h in quick.hands}
    assert {(r["backend"], r["hands"]) for r in rows} == expected
    for row in rows:
        assert set(row["stages_ms"]) == set(STAGES)
        assert row["total_ms"] > 0 and row["fps"] > 0 and row["peak_rss_mb"] > 0
        assert row["gpu_peak_mb"] is None  # CPU run
        assert row["stages_ms"]["reconstruct"] > 0 and row["speedup_vs_baseline"] > 0
    assert all(r["speedup_vs_baseline"] == 1.0 for r in rows if r["backend"] == "baseline-eager")
    # the synthetic model set of the fixture has no detector: the report says so instead of failing
    assert "detector" in report["skipped"]


def test_bench_reports_unavailable_backends(synthetic_model_dir):
    config = BenchConfig.quick(model_dir=str(synthetic_model_dir), backends=("tensorrt",), hands=(1,))
    config.baseline, config.detector, config.device = False, False, "cpu"
    report = run_bench(config)
    assert report.rows == [] and "tensorrt" in report.skipped


# ------------------------------------------------------------------ the official-demo baseline
class CountingTorchBackend(TorchBackend):
    """The real PyTorch backend, recording the batch size of every network call."""

    def __init__(self, inner: TorchBackend):
        self.__dict__.update(inner.__dict__)
        self.batches: list[int] = []

    def infer_tensor(self, crops):
        self.batches.append(int(crops.shape[0]))
        return super().infer_tensor(crops)


@pytest.fixture(scope="module")
def counting_pipeline(synthetic_model_dir):
    config = PipelineConfig(
        models=ModelPaths(model_dir=str(synthetic_model_dir)), backend="pytorch", use_detector=False
    )
    backend = CountingTorchBackend(make_backend(config))
    return HandPipeline(config, backend)


@pytest.mark.parametrize(("hands", "expected"), [(1, [1]), (4, [4]), (20, [16, 4])])
def test_baseline_batches_the_hands_of_an_image_like_the_demo(counting_pipeline, hands, expected):
    """demo.py: DataLoader(batch_size=16) over the hands of one image -> one forward per 16 hands."""
    frame = synthetic_frame(1280, 720)
    boxes = synthetic_boxes(1280, 720, hands)
    counting_pipeline.backend.batches.clear()
    stages = baseline_stages(counting_pipeline, frame, boxes, cuda=False)()
    assert counting_pipeline.backend.batches == expected
    assert set(stages) == set(STAGES) and stages["crop"] > 0 and stages["reconstruct"] > 0


def test_baseline_outputs_equal_the_pipeline(counting_pipeline):
    """Same weights, bit-identical crops: the baseline's hands are our pipeline's hands."""
    frame = synthetic_frame(640, 480)
    boxes = synthetic_boxes(640, 480, 3)
    ours = counting_pipeline.predict(frame, boxes=boxes)
    dataset = DemoHands(preprocessing.to_rgb(frame), boxes, counting_pipeline.config.rescale_factor)
    batch = next(iter(demo_batches(dataset)))
    reference = counting_pipeline.backend.infer_tensor(batch["img"])
    # the pipeline's hands back in the crop's MANO frame (left hands un-mirrored: x -> -x)
    ours_mano = np.stack([h.vertices - h.cam_t for h in ours])  # B x 778 x 3
    mirror = np.where(np.array([b.side == Side.RIGHT for b in boxes]), 1.0, -1.0)[:, None]
    ours_mano[..., 0] *= mirror
    np.testing.assert_allclose(ours_mano, reference.vertices, atol=1e-6)


# ------------------------------------------------------------------ precision rows and their error
def test_bf16_rows_report_their_mm_deviation(synthetic_model_dir):
    if not bf16_cpu_flags():
        pytest.skip("this CPU has no amx_bf16/avx512_bf16 (the refusal is tested below)")
    config = BenchConfig.quick(
        model_dir=str(synthetic_model_dir), backends=("pytorch", "pytorch:bf16"), hands=(2,), device="cpu"
    )
    config.baseline, config.detector = False, False
    report = run_bench(config)
    rows = {r.backend: r for r in report.rows}
    assert rows["pytorch"].deviation.vertex_max_mm == 0.0  # the reference itself
    bf16 = rows["pytorch:bf16"].deviation
    assert rows["pytorch:bf16"].precision == "bf16"
    assert 0.0 < bf16.vertex_mean_mm <= bf16.vertex_max_mm < 10.0
    assert 0.0 < bf16.joint_mean_mm <= bf16.joint_max_mm < 10.0
    assert report.machine["cpu_bf16"] == describe_bf16_support()
    assert report.machine["loadavg_before"] and report.machine["loadavg_after"]
    assert "vert mm mean/max" in format_bench_table(report)


def test_bf16_is_skipped_with_the_reason_on_a_cpu_without_it(synthetic_model_dir, tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nmodel name\t: Old CPU\nflags\t\t: fpu sse2 avx avx2 fma\n")
    monkeypatch.setattr(cpu_features, "CPUINFO_PATH", cpuinfo)
    config = BenchConfig.quick(model_dir=str(synthetic_model_dir), backends=("pytorch:bf16",), hands=(1,))
    config.baseline, config.detector, config.device = False, False, "cpu"
    report = run_bench(config)
    assert report.rows == [] and "avx512_bf16" in report.skipped["pytorch:bf16"]
    assert report.machine["cpu_bf16"].startswith("none")


def test_malformed_backend_specs_fail_before_any_work(synthetic_model_dir):
    for spec in ("pytorch:int4", "onnxruntime+compile", "pytorch+turbo", "caffe"):
        with pytest.raises(ValueError, match="backend"):
            run_bench(BenchConfig.quick(model_dir=str(synthetic_model_dir), backends=(spec,)))


# ------------------------------------------------------------------ memory vs mmap weights
@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="needs Linux (madvise, /proc)")
def test_weight_loading_bench(synthetic_model_dir, tmp_path):
    from wilor_ros.tools.cli import main

    report = run_weight_loading_bench(synthetic_model_dir, calls=3, hands=1, threads=2)
    rows = {r.mode: r for r in report.rows}
    assert set(rows) == {"mmap", "memory", "memory+lock"}
    for row in rows.values():
        assert len(row.steady_ms) == 3 and row.load_s > 0 and row.first_forward_s > 0
        assert row.steady_median_ms <= row.steady_max_ms
    # paged-out file pages come back through page faults (the kernel maps up to 16 pages, or one large
    # folio, per fault, so ~1/16 of the 2100 weight pages of this model); private memory is not paged out
    # without swap, and locked memory cannot be
    mmap_faults, locked_faults = rows["mmap"].after_pageout_faults, rows["memory+lock"].after_pageout_faults
    assert mmap_faults >= 20 and locked_faults < mmap_faults / 2, (mmap_faults, locked_faults)
    assert rows["memory+lock"].pageout_refused_mb > 0 and rows["mmap"].pageout_refused_mb == 0
    out_json = tmp_path / "weights.json"
    argv = ["bench", "--weight-loading-latency", "--model-dir", str(synthetic_model_dir), "--iterations", "2",
            "--threads", "2", "--json", str(out_json)]  # fmt: skip
    assert main(argv) == 0
    assert {r["mode"] for r in json.loads(out_json.read_text())["rows"]} == set(rows)
