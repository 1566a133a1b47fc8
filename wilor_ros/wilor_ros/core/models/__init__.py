"""Our PyTorch implementation of the WiLoR reconstruction network (imports torch and smplx)."""

from __future__ import annotations

from wilor_ros.core.models.discriminator import Discriminator
from wilor_ros.core.models.estimate import ManoEstimate
from wilor_ros.core.models.mano_layer import ManoLayer, placeholder_data_struct
from wilor_ros.core.models.refine_net import DeConvNet, RefineNet
from wilor_ros.core.models.vit import ViTBackbone
from wilor_ros.core.models.wilor import ReconstructorConfig, WiLoR

__all__ = [
    "DeConvNet",
    "Discriminator",
    "ManoEstimate",
    "ManoLayer",
    "ReconstructorConfig",
    "RefineNet",
    "ViTBackbone",
    "WiLoR",
    "placeholder_data_struct",
]
