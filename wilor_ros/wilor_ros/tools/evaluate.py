"""``wilor-ros eval``: accuracy of a reconstructor checkpoint on annotated datasets.

Per dataset (any format of tools/train/datasets.py, no augmentation, crops with the training geometry):

* 3D (samples with 3D keypoints): FreiHAND-protocol metrics from tools/metrics.py: PA-MPJPE, AUC of the
  joint PCK (0-50 mm) and, when every sample has GT vertices (given, or posed from GT MANO parameters),
  PA-MPVPE, vertex AUC and F-scores at 5 and 15 mm. Left-hand predictions are un-mirrored (x -> -x)
  before comparison with the camera-frame ground truth; Procrustes alignment removes scale, rotation
  and translation, so the MANO-frame prediction needs no camera.
* 2D (samples with annotated 2D keypoints): predicted keypoints mapped back to image pixels through the
  inverse crop affine; PCK at ``pck_2d_ratio * max(box w, h)`` and the mean pixel error.

Bad samples (tools/train/validation.py) are left out, counted and summarised on stderr and under
``data`` in the JSON; ``strict`` makes the first one an error.

Results: a printed table and, optionally, a JSON file with the same numbers.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from wilor_ros.core.hand.constants import CROP_SIZE, NUM_HAND_JOINTS
from wilor_ros.core.hand.geometry import axis_angle_to_rotmat
from wilor_ros.core.hand.mano import load_mano
from wilor_ros.core.image.warp import invert_affine
from wilor_ros.tools.metrics import SampleMetrics, aggregate, evaluate_sample, pck_2d
from wilor_ros.tools.train.config import EvalConfig
from wilor_ros.tools.train.datasets import HandRecord, distinguish_labels, read_dataset, try_example
from wilor_ros.tools.train.validation import BadSample, BadSampleError, DataReport

LOG = logging.getLogger(__name__)

MIN_2D_KEYPOINTS = 1


@dataclass
class DatasetMetrics:
    """Metrics of one dataset (None where the data has no such labels). Errors in mm / pixels."""

    name: str
    num_hands: int
    num_3d: int
    num_2d: int
    pa_mpjpe_mm: float | None = None
    pa_mpvpe_mm: float | None = None
    f_score_5mm: float | None = None
    f_score_15mm: float | None = None
    auc_joints: float | None = None
    auc_vertices: float | None = None
    pck_2d: float | None = None
    mean_2d_error_px: float | None = None


def _device(setting: str) -> torch.device:
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(setting)


def _gt_vertices(model: torch.nn.Module, example: dict, record: HandRecord) -> np.ndarray | None:
    """GT vertices (778 x 3) in the original (unmirrored) frame: given, or posed from GT MANO parameters
    (the example's right-hand view, un-mirrored). Translation does not matter under Procrustes."""
    if record.vertices is not None:
        return np.asarray(record.vertices, np.float64)
    if not (record.has_pose and record.has_betas):
        return None
    orient = axis_angle_to_rotmat(torch.as_tensor(example["global_orient"]).reshape(1, 1, 3))
    pose = axis_angle_to_rotmat(torch.as_tensor(example["hand_pose"]).reshape(1, NUM_HAND_JOINTS, 3))
    device = next(model.mano.buffers()).device
    with torch.no_grad():
        vertices, _ = model.mano(
            global_orient=orient.to(device),
            hand_pose=pose.to(device),
            betas=torch.as_tensor(example["betas"]).reshape(1, -1).to(device),
        )
    out = vertices[0].double().cpu().numpy()
    if example["flipped"]:
        out[:, 0] *= -1.0
    return out


def evaluate_records(
    model: torch.nn.Module,
    records: list[HandRecord],
    name: str,
    batch_size: int = 16,
    pck_ratio: float = 0.05,
    report: DataReport | None = None,
    strict: bool = False,
) -> DatasetMetrics:
    """Run ``model`` (eval mode, float32 input) on the records and compute :class:`DatasetMetrics`.

    A record whose image is missing or corrupt (or whose box lies outside it) is left out and added to
    ``report`` (BadSampleError instead when ``strict``); ``num_hands`` counts the evaluated hands."""
    device = next(model.parameters()).device
    samples_3d: list[SampleMetrics] = []
    vertex_complete = True
    pck_values: list[float] = []
    errors_2d: list[float] = []
    evaluated = 0
    for start in range(0, len(records), batch_size):
        loaded = [(r, try_example(r, None, 0)) for r in records[start : start + batch_size]]
        for _, example in loaded:
            if isinstance(example, BadSample):
                if strict:
                    raise BadSampleError(example)
                LOG.warning("skipping bad sample %s", example.describe())
                if report is not None:
                    report.add(example)
        good = [(r, e) for r, e in loaded if not isinstance(e, BadSample)]
        if not good:
            continue
        chunk = [r for r, _ in good]
        examples = [e for _, e in good]
        evaluated += len(chunk)
        crops = torch.as_tensor(np.stack([e["img"] for e in examples])).to(device)
        with torch.no_grad():
            out = model(crops)
        joints = out["pred_keypoints_3d"].double().cpu().numpy()
        vertices = out["pred_vertices"].double().cpu().numpy()
        kp2d = out["pred_keypoints_2d"].double().cpu().numpy()
        for i, (record, example) in enumerate(zip(chunk, examples)):
            pred_j, pred_v = joints[i].copy(), vertices[i].copy()
            if example["flipped"]:
                pred_j[:, 0] *= -1.0
                pred_v[:, 0] *= -1.0
            if record.has_3d:
                visible = record.keypoints_3d[:, 3] > 0
                gt_v = _gt_vertices(model, example, record)
                vertex_complete &= gt_v is not None
                with_vertices = gt_v is not None and bool(visible.all())
                try:
                    metrics = evaluate_sample(
                        pred_j[visible],
                        record.keypoints_3d[visible, :3],
                        pred_v if with_vertices else None,
                        gt_v if with_vertices else None,
                    )
                except ValueError as exc:  # e.g. a non-finite prediction: say which sample
                    raise ValueError(f"{record.ref.describe()}: {exc}") from exc
                samples_3d.append(metrics)
            visible_2d = record.keypoints_2d[:, 2] > 0
            if visible_2d.sum() >= MIN_2D_KEYPOINTS:
                crop_px = (kp2d[i] + 0.5) * CROP_SIZE
                inverse = invert_affine(example["affine"])
                image_px = crop_px @ inverse[:, :2].T + inverse[:, 2]
                gt = record.keypoints_2d[:, :2]
                pck_values.append(pck_2d(image_px, gt, record.box, pck_ratio, visible=visible_2d))
                errors_2d.append(float(np.linalg.norm(image_px - gt, axis=1)[visible_2d].mean()))
    result = DatasetMetrics(name=name, num_hands=evaluated, num_3d=len(samples_3d), num_2d=len(pck_values))
    if samples_3d:
        agg = aggregate(samples_3d)
        result.pa_mpjpe_mm, result.auc_joints = agg.pa_mpjpe_mm, agg.auc_joints
        if vertex_complete:
            result.pa_mpvpe_mm, result.auc_vertices = agg.pa_mpvpe_mm, agg.auc_vertices
            result.f_score_5mm, result.f_score_15mm = agg.f_score_5mm, agg.f_score_15mm
    if pck_values:
        result.pck_2d = float(np.mean(pck_values))
        result.mean_2d_error_px = float(np.mean(errors_2d))
    return result


def evaluate(cfg: EvalConfig) -> list[DatasetMetrics]:
    """Load the checkpoint and evaluate every configured dataset; writes ``cfg.out_json`` if set."""
    from wilor_ros.core.models.reconstructor import load_reconstructor

    if not cfg.checkpoint or not cfg.mano_path:
        raise ValueError("eval needs a checkpoint and a MANO file (--checkpoint, --mano)")
    if not cfg.datasets:
        raise ValueError("eval needs at least one dataset (--data KIND:PATH)")
    model = load_reconstructor(cfg.checkpoint, cfg.mano_path, device=_device(cfg.device))
    hands_mean = load_mano(cfg.mano_path).hands_mean if cfg.freihand_pose_mean_relative else None
    results = []
    report = DataReport()
    distinguish_labels(cfg.datasets)
    for entry in cfg.datasets:
        records = read_dataset(entry, cfg.rescale_factor, hands_mean, report, cfg.strict)
        if cfg.max_samples > 0:
            records = records[: cfg.max_samples]
        results.append(
            evaluate_records(
                model,
                records,
                entry.label,
                cfg.batch_size,
                cfg.pck_2d_ratio,
                report=report,
                strict=cfg.strict,
            )
        )
    print(report.format(), file=sys.stderr)
    if cfg.out_json:
        path = Path(cfg.out_json)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "checkpoint": cfg.checkpoint,
            "synthetic": bool(model.synthetic),
            "datasets": [asdict(r) for r in results],
            "data": report.to_dict(),
        }
        path.write_text(json.dumps(payload, indent=2))
    return results


COLUMNS = (
    ("dataset", "name", "{}"),
    ("hands", "num_hands", "{:d}"),
    ("PA-MPJPE mm", "pa_mpjpe_mm", "{:.2f}"),
    ("PA-MPVPE mm", "pa_mpvpe_mm", "{:.2f}"),
    ("F@5", "f_score_5mm", "{:.3f}"),
    ("F@15", "f_score_15mm", "{:.3f}"),
    ("AUC-J", "auc_joints", "{:.3f}"),
    ("AUC-V", "auc_vertices", "{:.3f}"),
    ("PCK-2D", "pck_2d", "{:.3f}"),
    ("2D err px", "mean_2d_error_px", "{:.2f}"),
)


def format_table(results: list[DatasetMetrics]) -> str:
    """Plain-text table, one row per dataset ("-" where a metric does not apply)."""
    rows = [[title for title, _, _ in COLUMNS]]
    for result in results:
        row = []
        for _, attr, fmt in COLUMNS:
            value = getattr(result, attr)
            row.append("-" if value is None else fmt.format(value))
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS))]
    lines = [
        "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(r, widths)))
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)
