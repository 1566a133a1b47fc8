"""``wilor-ros eval``: metrics of a checkpoint on rendered synthetic hands (3D + vertices, and 2D-only),
an oracle that must score perfectly, the report table/JSON and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_training import NUM_SAMPLES, _render, write_jsonl

from wilor_ros.core.models.wilor import ReconstructorConfig
from wilor_ros.core.types import Side
from wilor_ros.tools import cli
from wilor_ros.tools.evaluate import evaluate_records, format_table
from wilor_ros.tools.synthetic_checkpoint import make_synthetic_checkpoint
from wilor_ros.tools.synthetic_mano import make_synthetic_mano
from wilor_ros.tools.train.config import DatasetEntry
from wilor_ros.tools.train.datasets import read_dataset, record_to_example

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("evaluate")
    mano = make_synthetic_mano(root / "MANO_RIGHT.pkl")
    ckpt = make_synthetic_checkpoint(root / "small.ckpt", ReconstructorConfig.small(), mano)
    hands = [_render(mano, i, Side.LEFT if i % 2 else Side.RIGHT) for i in range(NUM_SAMPLES)]
    return {
        "mano": str(mano),
        "ckpt": str(ckpt),
        "full": write_jsonl(root / "full", hands),
        "2d": write_jsonl(root / "2d", hands, two_d_only=True),
    }


class Oracle(torch.nn.Module):
    """Returns the ground truth of a queued record in the network's output conventions."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.queue: list[dict] = []

    def forward(self, crops: torch.Tensor) -> dict:
        items = [self.queue.pop(0) for _ in range(crops.shape[0])]
        return {k: torch.as_tensor(np.stack([it[k] for it in items])) for k in items[0]}


def test_oracle_scores_perfectly_and_model_scores_worse(setup):
    from wilor_ros.core.models.reconstructor import load_reconstructor

    records = read_dataset(DatasetEntry(kind="jsonl", path=str(setup["full"])), rescale=2.5)
    oracle = Oracle()
    for record in records:
        example = record_to_example(record, None, 0)
        mirror = np.array([-1.0 if example["flipped"] else 1.0, 1.0, 1.0])
        # a rigidly moved and scaled copy of the GT must still score 0 after Procrustes alignment
        oracle.queue.append(
            {
                "pred_keypoints_3d": 1.3 * record.keypoints_3d[:, :3] * mirror + 0.1,
                "pred_vertices": 1.3 * record.vertices * mirror + 0.1,
                "pred_keypoints_2d": example["keypoints_2d"][:, :2],
            }
        )
    perfect = evaluate_records(oracle, records, "oracle", batch_size=4)
    assert perfect.num_3d == perfect.num_2d == NUM_SAMPLES
    assert perfect.pa_mpjpe_mm == pytest.approx(0.0, abs=1e-3)
    assert perfect.pa_mpvpe_mm == pytest.approx(0.0, abs=1e-3)
    assert perfect.f_score_5mm == pytest.approx(1.0)
    assert perfect.pck_2d == pytest.approx(1.0)
    assert perfect.mean_2d_error_px == pytest.approx(0.0, abs=1e-3)

    model = load_reconstructor(setup["ckpt"], setup["mano"])
    real = evaluate_records(model, records, "synthetic", batch_size=4)
    assert real.pa_mpjpe_mm > 1.0 and real.pa_mpvpe_mm > 1.0
    assert 0.0 <= real.f_score_15mm <= 1.0 and 0.0 <= real.auc_joints <= 1.0
    table = format_table([perfect, real])
    assert "PA-MPJPE mm" in table and "synthetic" in table


def test_cli_eval_writes_report(setup, tmp_path, capsys):
    out = tmp_path / "report.json"
    code = cli.main(
        [
            "eval",
            "--checkpoint", setup["ckpt"],
            "--mano", setup["mano"],
            "--data", f"jsonl:{setup['full']}",
            "--data", f"jsonl:{setup['2d']}",
            "--out", str(out),
            "--set", "device=cpu",
        ]
    )  # fmt: skip
    assert code == 0
    report = json.loads(out.read_text())
    full, two_d = report["datasets"]
    assert report["synthetic"] is True
    assert full["num_3d"] == NUM_SAMPLES and full["pa_mpvpe_mm"] is not None
    assert two_d["num_3d"] == 0 and two_d["pa_mpjpe_mm"] is None and two_d["pck_2d"] is not None
    assert "PCK-2D" in capsys.readouterr().out


def test_cli_eval_rejects_bad_data_spec(setup):
    assert cli.main(["eval", "--checkpoint", setup["ckpt"], "--mano", setup["mano"], "--data", "nopath"]) == 2
