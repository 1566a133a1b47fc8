"""``wilor-ros export``: the licensed files in a model folder -> the ONNX files the runtimes use."""

from __future__ import annotations

import logging
from pathlib import Path

from wilor_ros.core.files.model_files import (
    DETECTOR_ONNX,
    DETECTOR_PT,
    MANO_RIGHT,
    RECONSTRUCTOR_CKPT,
    RECONSTRUCTOR_ONNX,
    check_model_files,
)
from wilor_ros.core.files.onnx_files import is_complete

LOG = logging.getLogger(__name__)


def _up_to_date(target: Path, sources: list[Path]) -> bool:
    """The ONNX file (with its side file, when it has one) exists and is newer than every source."""
    return is_complete(target) and all(target.stat().st_mtime >= s.stat().st_mtime for s in sources)


def export_all(
    model_dir: str | Path,
    *,
    skip_detector: bool = False,
    force: bool = False,
    external_data: bool | None = None,
) -> dict[str, Path]:
    """Export detector.pt -> detector.onnx and wilor_final.ckpt + MANO_RIGHT.pkl -> wilor.onnx.

    Every missing input is reported at once. Outputs newer than their inputs are kept unless
    ``force``. external_data: see ``export_reconstructor_onnx`` (None: a wilor.onnx.data side file
    only for models above 1 GiB of weights, i.e. the released one).
    """
    from wilor_ros.tools.export import export_checkpoint_onnx

    model_dir = Path(model_dir)
    ckpt = model_dir / RECONSTRUCTOR_CKPT.default_name
    mano = model_dir / MANO_RIGHT.default_name
    detector_pt = model_dir / DETECTOR_PT.default_name
    needed = [(ckpt, RECONSTRUCTOR_CKPT), (mano, MANO_RIGHT)]
    if not skip_detector:
        needed.append((detector_pt, DETECTOR_PT))
    check_model_files(needed)

    written: dict[str, Path] = {}
    recon_onnx = model_dir / RECONSTRUCTOR_ONNX.default_name
    if force or not _up_to_date(recon_onnx, [ckpt, mano]):
        report = export_checkpoint_onnx(ckpt, mano, recon_onnx, external_data=external_data)
        worst = max(report.max_abs_diff.values()) if report.max_abs_diff else float("nan")
        LOG.info("reconstructor exported: %s (ONNX Runtime vs PyTorch max |diff| %.2e)", recon_onnx, worst)
    else:
        LOG.info("%s is up to date", recon_onnx)
    written["reconstructor"] = recon_onnx

    if not skip_detector:
        detector_onnx = model_dir / DETECTOR_ONNX.default_name
        if force or not _up_to_date(detector_onnx, [detector_pt]):
            from wilor_ros.tools.export_detector import export_detector

            export_detector(detector_pt, detector_onnx)
        else:
            LOG.info("%s is up to date", detector_onnx)
        written["detector"] = detector_onnx
    return written
