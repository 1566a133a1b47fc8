"""``wilor-ros make-synthetic-models``: stand-ins for the licensed files, generated here.

Writes MANO_RIGHT.pkl (synthetic hand geometry), wilor_final.ckpt (random weights in the
official layout), detector.pt/.onnx (an untrained 2-class YOLO: it detects nothing) and the
exported wilor.onnx into one folder, so every command runs without the licensed files.
Everything written is marked synthetic in its metadata, and whatever loads it says so.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from wilor_ros.core.files.model_files import (
    DETECTOR_ONNX,
    DETECTOR_PT,
    MANO_RIGHT,
    RECONSTRUCTOR_CKPT,
    RECONSTRUCTOR_ONNX,
)
from wilor_ros.core.files.onnx_files import is_complete

if TYPE_CHECKING:
    from wilor_ros.core.models.wilor import ReconstructorConfig

LOG = logging.getLogger(__name__)

# Reduced sizes keep CPU demos and CI fast; "full" is the released architecture (~2.5 GB).
SIZES = {
    "small": dict(embed_dim=128, depth=2, num_heads=4, refine_feat_dim=128),
    "medium": dict(embed_dim=384, depth=4, num_heads=6, refine_feat_dim=384),
    "full": {},
}


def synthetic_config(size: str) -> ReconstructorConfig:
    """The ReconstructorConfig of a named synthetic size."""
    from wilor_ros.core.models.wilor import ReconstructorConfig

    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    return dataclasses.replace(ReconstructorConfig.full(), **SIZES[size])


def make_synthetic_models(
    out_dir: str | Path, *, size: str = "medium", seed: int = 0, force: bool = False, detector: bool = True
) -> dict[str, Path]:
    """Write the synthetic model set into ``out_dir``; existing files are kept unless ``force``."""
    from wilor_ros.tools.export import export_checkpoint_onnx
    from wilor_ros.tools.synthetic_checkpoint import make_synthetic_checkpoint
    from wilor_ros.tools.synthetic_mano import make_synthetic_mano

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mano = out_dir / MANO_RIGHT.default_name
    ckpt = out_dir / RECONSTRUCTOR_CKPT.default_name
    onnx_path = out_dir / RECONSTRUCTOR_ONNX.default_name
    paths = {"mano": mano, "checkpoint": ckpt, "reconstructor_onnx": onnx_path}

    if force or not mano.is_file():
        make_synthetic_mano(mano, seed=seed)
        LOG.info("wrote synthetic MANO %s", mano)
    if force or not ckpt.is_file():
        make_synthetic_checkpoint(ckpt, synthetic_config(size), mano, seed=seed)
        LOG.info("wrote synthetic %s reconstructor checkpoint %s", size, ckpt)
    if force or not is_complete(onnx_path) or onnx_path.stat().st_mtime < ckpt.stat().st_mtime:
        export_checkpoint_onnx(ckpt, mano, onnx_path, model_version=f"synthetic-{size}")
    if detector:
        from wilor_ros.tools.export_detector import make_synthetic_detector

        det_onnx = out_dir / DETECTOR_ONNX.default_name
        if force or not det_onnx.is_file():
            det_onnx = make_synthetic_detector(out_dir, seed=seed)
        paths["detector_pt"] = out_dir / DETECTOR_PT.default_name
        paths["detector_onnx"] = det_onnx
    return paths
