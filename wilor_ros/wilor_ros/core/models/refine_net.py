"""Multi-scale refinement head (DeConvNet feature pyramid + RefineNet residual decoders), our own code.

Behaviour follows SPEC section 4 (official: wilor/models/heads/refinement_net.py); names match the
official state_dict (``refine_net.*``). C = feat_dim (1280 released).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from wilor_ros.core.hand.constants import NUM_BETAS, NUM_MANO_JOINTS
from wilor_ros.core.hand.geometry import (
    ROT6D_DIM,
    perspective_projection,
    weak_perspective_to_translation,
)
from wilor_ros.core.models.estimate import ManoEstimate

CAM_DIM = 3
DECONV_KERNEL, DECONV_STRIDE, DECONV_PADDING = 4, 2, 1  # each transposed conv doubles the map size
BATCH_NORM_EPS = 1e-5


def _deconv_branch(channels: list[int]) -> nn.Sequential:
    """[ConvT(k4, s2, p1, no bias), BatchNorm, ReLU] per step: keys 0/1/(2), 3/4/(5), ..."""
    layers: list[nn.Module] = []
    for c_in, c_out in itertools.pairwise(channels):
        layers += [
            nn.ConvTranspose2d(c_in, c_out, DECONV_KERNEL, DECONV_STRIDE, DECONV_PADDING, bias=False),
            nn.BatchNorm2d(c_out, eps=BATCH_NORM_EPS),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


class DeConvNet(nn.Module):
    """1x1 conv C -> C/2, then parallel upsampling branches that all read the 1x1-conv output.

    Branch i has i+1 transposed convs (C/2 -> C/4 -> C/8 -> ...). With upscale 3 there are two branches.
    forward returns the maps from high to low resolution: [f0 (C/8, 4h x 4w), f1 (C/4, 2h x 2w),
    f2 (C/2, h x w)] for an input of B x C x h x w.
    """

    def __init__(self, feat_dim: int, upscale: int) -> None:
        super().__init__()
        if upscale < 2:
            raise ValueError(f"refinement upscale must be >= 2, got {upscale}")
        half = feat_dim // 2
        # a Sequential with one conv: the official key is first_conv.0.*; no BN/ReLU after it
        self.first_conv = nn.Sequential(nn.Conv2d(feat_dim, half, kernel_size=1))
        num_branches = int(math.log2(upscale)) + 1
        self.deconv = nn.ModuleList(
            _deconv_branch([half // (2**k) for k in range(branch + 2)]) for branch in range(num_branches)
        )

    def forward(self, img_feat: torch.Tensor) -> list[torch.Tensor]:
        base = self.first_conv(img_feat)
        maps = [base] + [branch(base) for branch in self.deconv]
        return maps[::-1]


@dataclass
class RefineOutput:
    """Refined estimate (float32) and intermediates.

    estimate: the refined ManoEstimate (pose_6d, betas, cam = coarse + residual).
    feature_maps: [f0, f1, f2]; verts_2d: per scale B x 778 x 2 sampling coordinates before grid
    normalisation; sampled_max: per scale B x C_i; vert_feats: B x (C/8 + C/4 + C/2);
    delta_pose / delta_betas / delta_cam: the residuals.
    """

    estimate: ManoEstimate
    feature_maps: list[torch.Tensor]
    verts_2d: list[torch.Tensor]
    sampled_max: list[torch.Tensor]
    vert_feats: torch.Tensor
    delta_pose: torch.Tensor
    delta_betas: torch.Tensor
    delta_cam: torch.Tensor


def sample_vertex_features(feature_map: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear features at ``points`` treated as pixel coordinates of ``feature_map``.

    feature_map: B x C x H x W; points: B x N x 2 (x, y). Returns B x N x C.

    OFFICIAL SAMPLING QUIRK (SPEC 4.3), reproduced on purpose: the points come from a projection with
    principal point 0 and are in crop-normalised units (about -0.5..0.5), yet they are normalised here as
    if they were pixels (x / (W-1) * 2 - 1, align_corners=True). So every vertex samples within about half
    a pixel of map pixel (0, 0), partly in the zero padding. The released weights were trained with this;
    "fixing" it would break them.
    """
    height, width = feature_map.shape[2], feature_map.shape[3]
    grid_x = points[:, :, 0] / (width - 1) * 2 - 1
    grid_y = points[:, :, 1] / (height - 1) * 2 - 1
    grid = torch.stack((grid_x, grid_y), dim=2).unsqueeze(2).to(feature_map.dtype)  # B x N x 1 x 2
    sampled = F.grid_sample(feature_map, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return sampled[:, :, :, 0].permute(0, 2, 1)


class RefineNet(nn.Module):
    """Projects the coarse mesh onto each pyramid map, max-pools the sampled features over vertices and
    decodes residuals for the coarse 6D pose, betas and camera (SPEC 4.2-4.4)."""

    def __init__(self, feat_dim: int, upscale: int) -> None:
        super().__init__()
        self.deconv = DeConvNet(feat_dim, upscale)
        num_branches = len(self.deconv.deconv)
        # channels of [f0, ..., f_last] = C/2^(branches+1), ..., C/2
        out_dim = sum(feat_dim // (2 ** (k + 1)) for k in range(num_branches + 1))
        self.dec_pose = nn.Linear(out_dim, NUM_MANO_JOINTS * ROT6D_DIM)
        self.dec_cam = nn.Linear(out_dim, CAM_DIM)
        self.dec_shape = nn.Linear(out_dim, NUM_BETAS)

    def forward(
        self,
        img_feat: torch.Tensor,
        coarse_vertices: torch.Tensor,
        coarse: ManoEstimate,
        focal_length: torch.Tensor,
    ) -> RefineOutput:
        """img_feat: B x C x 16 x 12; coarse_vertices: B x 778 x 3 (float32); coarse: the backbone's
        estimate (pose_6d B x 96, betas B x 10, cam B x 3 [s, tx, ty]); focal_length: B x 2 (5000)."""
        coarse_cam = coarse.cam
        feature_maps = self.deconv(img_feat)
        verts_2d: list[torch.Tensor] = []
        sampled_max: list[torch.Tensor] = []
        for feature_map in feature_maps:
            map_height = feature_map.shape[2]
            # SPEC 4.2: a camera for a virtual image of map_height pixels, principal point 0
            translation = weak_perspective_to_translation(coarse_cam, focal_length[:, 0], map_height)
            points = perspective_projection(coarse_vertices, translation, focal_length / map_height)
            verts_2d.append(points)
            sampled_max.append(sample_vertex_features(feature_map, points).max(dim=1).values)
        vert_feats = torch.cat(sampled_max, dim=-1)
        delta_pose = self.dec_pose(vert_feats)
        delta_betas = self.dec_shape(vert_feats)
        delta_cam = self.dec_cam(vert_feats)
        # SPEC 4.4: residuals are added before any rotation conversion
        estimate = ManoEstimate.from_pose_6d(
            coarse.pose_6d + delta_pose, coarse.betas + delta_betas, coarse_cam + delta_cam
        )
        return RefineOutput(
            estimate=estimate,
            feature_maps=feature_maps,
            verts_2d=verts_2d,
            sampled_max=sampled_max,
            vert_feats=vert_feats,
            delta_pose=delta_pose,
            delta_betas=delta_betas,
            delta_cam=delta_cam,
        )
