"""Synthetic reconstructor checkpoints: the official layout with made-up, deterministic weights.

They let the whole pipeline run (tests, demos, benchmarks) where the licensed WiLoR weights are not
available. Outputs are finite and hand-like (MANO near its mean pose, camera near the mean camera) but
carry no knowledge of real hands; every such file is marked ``synthetic`` and the loader says so.
(The synthetic MANO model generator lives in tools/synthetic_mano.py.)
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import torch
from torch import nn

from wilor_ros.core.hand.mano import load_mano
from wilor_ros.core.hand.mean_params import MEAN_BETAS, MEAN_CAM, MEAN_POSE_6D
from wilor_ros.core.models.checkpoint import write_checkpoint
from wilor_ros.core.models.mano_layer import ManoLayer, placeholder_data_struct
from wilor_ros.core.models.wilor import ReconstructorConfig, WiLoR

LOG = logging.getLogger(__name__)

POS_EMBED_STD = 0.02  # ViT convention
# Read-out layers (ViT decoders and refinement residual decoders) get this fraction of unit gain so that
# predictions stay near the mean pose / shape / camera: a small input-dependent deviation, no wild hands.
READOUT_GAIN = 0.05
READOUT_LAYERS = frozenset(
    {
        "backbone.decpose",
        "backbone.decshape",
        "backbone.deccam",
        "refine_net.dec_pose",
        "refine_net.dec_shape",
        "refine_net.dec_cam",
    }
)


def _fan_in(module: nn.Module, weight: torch.Tensor) -> int:
    """Inputs feeding one output unit (transposed convs: in_channels x (kernel / stride)^2)."""
    if isinstance(module, nn.ConvTranspose2d):
        kernel = weight.shape[2] * weight.shape[3]
        stride = module.stride[0] * module.stride[1]
        return max(1, weight.shape[0] * kernel // stride)
    return int(math.prod(weight.shape[1:]))


def _synthetic_value(
    module_name: str, module: nn.Module, name: str, template: torch.Tensor, gen: torch.Generator
) -> torch.Tensor:
    """Deterministic value for one parameter/buffer of the (meta-device) model, by module type."""
    shape, dtype = template.shape, template.dtype
    if module_name.startswith("discriminator"):
        # official initialisation: Xavier-uniform weights, zero biases
        if name == "weight":
            fan_in, fan_out = int(math.prod(shape[1:])), shape[0] * int(math.prod(shape[2:]))
            bound = math.sqrt(6.0 / (fan_in + fan_out))
            return torch.empty(shape, dtype=dtype).uniform_(-bound, bound, generator=gen)
        return torch.zeros(shape, dtype=dtype)
    if isinstance(module, (nn.LayerNorm, nn.BatchNorm2d)):
        if name in ("weight", "running_var"):
            return torch.ones(shape, dtype=dtype)
        return torch.zeros(shape, dtype=dtype)  # bias, running_mean, num_batches_tracked
    if isinstance(module, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
        if name == "bias":
            return torch.zeros(shape, dtype=dtype)
        gain = READOUT_GAIN if module_name in READOUT_LAYERS else 1.0
        std = gain / math.sqrt(_fan_in(module, template))
        return torch.empty(shape, dtype=dtype).normal_(0.0, std, generator=gen)
    if module_name == "backbone" and name == "pos_embed":
        return torch.empty(shape, dtype=dtype).normal_(0.0, POS_EMBED_STD, generator=gen)
    raise AssertionError(f"no synthetic rule for {module_name}.{name}")  # internal: new layer types


def synthetic_state_dict(
    config: ReconstructorConfig, mano_layer: ManoLayer, seed: int = 0
) -> dict[str, torch.Tensor]:
    """All state_dict entries of the model of ``config`` (official key set, discriminator included).

    init_* = the mean parameters, mano.* = ``mano_layer``'s buffers, initialized = True, the rest drawn
    from a generator seeded with ``seed`` in state_dict order (same seed -> identical tensors).
    """
    with torch.device("meta"):
        model = WiLoR(config, ManoLayer(placeholder_data_struct()))
    gen = torch.Generator().manual_seed(seed)
    mano_state = mano_layer.state_dict()
    owners = {}
    for module_name, module in model.named_modules():
        for name, tensor in (*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)):
            owners[f"{module_name}.{name}" if module_name else name] = (module_name, module, name, tensor)
    # mean parameters, as the official constructor sets them from mano_mean_params.npz
    means = {
        "init_cam": torch.tensor([MEAN_CAM], dtype=torch.float32),
        "init_hand_pose": torch.tensor([MEAN_POSE_6D], dtype=torch.float32),
        "init_betas": torch.tensor([MEAN_BETAS], dtype=torch.float32),
    }
    state: dict[str, torch.Tensor] = {}
    for key in model.state_dict():
        module_name, module, name, template = owners[key]
        if key.startswith("mano."):
            state[key] = mano_state[key[len("mano.") :]].clone()
        elif key == "initialized":
            state[key] = torch.tensor(True)
        elif module_name == "backbone" and name in means:
            state[key] = means[name]
        else:
            state[key] = _synthetic_value(module_name, module, name, template, gen)
    return state


def make_synthetic_checkpoint(
    path: str | os.PathLike[str],
    config: ReconstructorConfig,
    mano_path: str | os.PathLike[str],
    seed: int = 0,
) -> Path:
    """Write a synthetic Lightning-layout checkpoint for ``config`` and return its path.

    The file has ``state_dict`` with every official key (see ``synthetic_state_dict``) and
    ``wilor_ros`` = {config, synthetic: True, seed, ...}; ``load_reconstructor`` rebuilds the right
    size from it. The full-size file is about 2.6 GB.
    """
    mano_layer = ManoLayer(load_mano(mano_path).smplx_data_struct())
    state = synthetic_state_dict(config, mano_layer, seed=seed)
    out = write_checkpoint(path, state, config, synthetic=True, seed=seed, mano_source=Path(mano_path).name)
    LOG.warning("wrote SYNTHETIC reconstructor checkpoint %s (made-up weights, seed %d)", out, seed)
    return out
