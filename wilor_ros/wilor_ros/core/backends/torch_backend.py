"""PyTorch runtime of the reconstructor (our own WiLoR implementation, eager mode)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from wilor_ros.core.backends.base import ReconstructorBackend, ReconstructorOutput, check_crops

LOG = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def official_outputs(out: dict) -> tuple[torch.Tensor, ...]:
    """The official forward dictionary -> tensors in ReconstructorOutput field order."""
    mano = out["pred_mano_params"]
    batch = out["pred_cam"].shape[0]
    return (
        out["pred_cam"],
        mano["global_orient"].reshape(batch, 3, 3),  # B x 1 x 3 x 3 -> B x 3 x 3
        mano["hand_pose"],
        mano["betas"],
        out["pred_keypoints_3d"],
        out["pred_vertices"],
        out["pred_keypoints_2d"],
        out["pred_cam_t"],
    )


class TorchBackend(ReconstructorBackend):
    """Runs a reconstructor nn.Module (from ``load_reconstructor``) on CPU or CUDA."""

    name = "pytorch"

    def __init__(self, model: torch.nn.Module, device: str = "cpu", synthetic: bool = False):
        self.model = model.eval()
        self.device = torch.device(device)
        self.synthetic = synthetic
        faces = getattr(getattr(model, "mano", None), "faces", None)
        self.faces = None if faces is None else np.asarray(faces, dtype=np.int64)

    @classmethod
    def from_files(
        cls, checkpoint: str | Path, mano: str | Path, device: str = "cpu", precision: str = "fp32"
    ) -> TorchBackend:
        from wilor_ros.core.reconstructor import load_reconstructor

        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {sorted(PRECISIONS)}, got {precision!r}")
        if precision != "fp32" and not str(device).startswith("cuda"):
            raise ValueError(f"precision {precision} needs a CUDA device (got device={device!r}); use fp32")
        model = load_reconstructor(checkpoint, mano, device=device, dtype=PRECISIONS[precision])
        return cls(model, device=device, synthetic=bool(getattr(model, "synthetic", False)))

    @torch.inference_mode()
    def infer(self, crops: np.ndarray) -> ReconstructorOutput:
        crops = check_crops(crops)
        if crops.shape[0] == 0:
            return ReconstructorOutput.empty()
        x = torch.from_numpy(crops).to(self.device, non_blocking=True)
        return self.infer_tensor(x)

    @torch.inference_mode()
    def infer_tensor(self, crops: torch.Tensor) -> ReconstructorOutput:
        """crops: B x 3 x 256 x 256 float32 tensor already on the model's device."""
        tensors = official_outputs(self.model(crops))
        return ReconstructorOutput(*(t.float().cpu().numpy() for t in tensors))
