"""Build the reconstructor network from a checkpoint and a MANO file, ready for inference."""

from __future__ import annotations

import logging
import os

import torch

from wilor_ros.core.checkpoint import load_into_meta_model, read_checkpoint, refuse_non_finite
from wilor_ros.core.mano import load_mano
from wilor_ros.core.models.mano_layer import ManoLayer
from wilor_ros.core.models.wilor import HALF_DTYPES, ReconstructorConfig, WiLoR

LOG = logging.getLogger(__name__)

SUPPORTED_DTYPES = (torch.float32, *HALF_DTYPES)


def load_reconstructor(
    checkpoint_path: str | os.PathLike[str],
    mano_path: str | os.PathLike[str],
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> WiLoR:
    """Load the WiLoR reconstructor in eval mode.

    Args:
        checkpoint_path: the official ``wilor_final.ckpt`` (full size) or a checkpoint written by this
            project (its stored config decides the size). Read without executing its pickle.
        mano_path: ``MANO_RIGHT.pkl`` (real or synthetic). Used for every ``mano.*`` entry the checkpoint
            lacks; entries the checkpoint has win, as in the official loader.
        device: "cpu", "cuda", "cuda:1", ...
        dtype: float32, or float16/bfloat16 on CUDA. In half precision the ViT and refinement head run in
            ``dtype``; the mean parameters, the 6D -> matrix conversion and MANO stay float32.

    Returns:
        The ``WiLoR`` module; call it with B x 3 x 256 x 256 float32 crops. ``model.synthetic`` tells
        whether the checkpoint or the MANO model is a synthetic stand-in.

    Raises:
        FileNotFoundError for missing files, ValueError (CheckpointError) for a wrong or unsafe
        checkpoint or one holding a NaN/infinite tensor (named), ValueError for an unsupported
        dtype/device combination.
    """
    device = torch.device(device)
    if dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"dtype must be one of {SUPPORTED_DTYPES}, got {dtype}")
    if dtype in HALF_DTYPES and device.type != "cuda":
        raise ValueError(f"{dtype} is supported on CUDA devices only (got device {device}); use float32")

    contents = read_checkpoint(checkpoint_path)
    refuse_non_finite(contents.state_dict, f"{checkpoint_path} cannot be loaded")
    config = contents.config or ReconstructorConfig.full()
    mano_model = load_mano(mano_path)
    mano_layer = ManoLayer(mano_model.smplx_data_struct())
    file_template = mano_layer.v_template.clone()  # before checkpoint buffers replace it

    # Build the big parts on the meta device: no memory or time spent on weights that the checkpoint
    # replaces anyway (the full model has 640 M parameters).
    with torch.device("meta"):
        model = WiLoR(config, mano_layer)
    mano_from_file = load_into_meta_model(model, contents.state_dict, str(checkpoint_path))
    _report_mano_source(mano_from_file, contents.state_dict, file_template, mano_path)

    model.synthetic = contents.synthetic or mano_model.is_synthetic
    if contents.synthetic:
        LOG.warning(
            "%s is a SYNTHETIC checkpoint: outputs are not real hand reconstructions", checkpoint_path
        )
    if mano_model.is_synthetic:
        LOG.warning("%s is a SYNTHETIC MANO model: meshes are made-up hand-like geometry", mano_path)

    model = model.to(device)
    if dtype != torch.float32:
        model.set_compute_dtype(dtype)
    model.eval()
    model.requires_grad_(False)
    LOG.info(
        "reconstructor loaded from %s (embed %d, depth %d) on %s in %s",
        checkpoint_path,
        config.embed_dim,
        config.depth,
        device,
        dtype,
    )
    return model


def _report_mano_source(
    mano_from_file: list[str],
    state_dict: dict[str, torch.Tensor],
    file_template: torch.Tensor,
    mano_path: str | os.PathLike[str],
) -> None:
    """Log where the MANO buffers came from; warn when the checkpoint's template differs from the file's."""
    if mano_from_file:
        LOG.info("MANO buffers %s taken from %s (not in the checkpoint)", mano_from_file, mano_path)
        return
    template = state_dict.get("mano.v_template")
    if template is not None and not torch.allclose(template.float(), file_template.float(), atol=1e-6):
        LOG.warning(
            "the checkpoint's MANO template differs from %s; using the checkpoint's MANO "
            "(the official loader's behaviour)",
            mano_path,
        )
