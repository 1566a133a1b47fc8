"""``wilor-ros bench --quick`` on the CPU: PyTorch, ONNX Runtime and the eager baseline run, the table
prints and the JSON report holds one row per backend, image size and hand count."""

from __future__ import annotations

import json

from wilor_ros.tools.bench import STAGES, BenchConfig, run_bench, synthetic_boxes


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
