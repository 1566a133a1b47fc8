"""The WiLoR reconstruction network (our own implementation): crop -> MANO hand, camera and keypoints.

Data flow (SPEC sections 3-5), B crops of 256 x 256:
  backbone    ViT over the 256 x 192 centre -> coarse 6D pose (B x 96), betas (B x 10),
              camera [s, tx, ty] (B x 3) and a feature map img_feat (B x C x 16 x 12)
  mano        coarse mesh (B x 778 x 3)
  refine_net  residuals from features sampled at the projected coarse mesh -> refined pose/betas/cam
  mano        final mesh and 21 joints; camera translation; 2D joints in crop-normalised units

Submodule names and registration order reproduce the official state_dict (checkpoint_manifest.json):
``initialized``, ``backbone.*``, ``refine_net.*``, ``discriminator.*``, ``mano.*``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from wilor_ros.core.hand.constants import (
    CROP_SIZE,
    CROP_WIDTH_TRIM,
    FOCAL_LENGTH,
    NUM_BETAS,
    NUM_JOINTS,
    NUM_MANO_JOINTS,
    NUM_VERTICES,
)
from wilor_ros.core.hand.geometry import perspective_projection, weak_perspective_to_translation
from wilor_ros.core.models.discriminator import Discriminator
from wilor_ros.core.models.estimate import mano_params
from wilor_ros.core.models.mano_layer import ManoLayer
from wilor_ros.core.models.refine_net import RefineNet
from wilor_ros.core.models.vit import PATCH_PADDING, ViTBackbone

HALF_DTYPES = (torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class ReconstructorConfig:
    """Construction arguments of the network. ``full()`` is the released model, ``small()`` the reduced
    instance of the parity kit's golden_small (same architecture, narrower and shallower)."""

    embed_dim: int = 1280
    depth: int = 32
    num_heads: int = 16
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    patch_size: int = 16
    refine_feat_dim: int = 1280  # fixed to the ViT width in the official wilor.py
    refine_upscale: int = 3
    focal_length: float = FOCAL_LENGTH
    image_size: int = CROP_SIZE  # MODEL.IMAGE_SIZE: the crop side the camera refers to

    @classmethod
    def full(cls) -> ReconstructorConfig:
        return cls()

    @classmethod
    def small(cls) -> ReconstructorConfig:
        return cls(embed_dim=128, depth=2, num_heads=4, refine_feat_dim=128)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ReconstructorConfig:
        """Inverse of ``dataclasses.asdict``; unknown keys raise ValueError."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown reconstructor config keys {unknown}; known: {sorted(names)}")
        return cls(**values)

    @property
    def grid_size(self) -> tuple[int, int]:
        """Patch grid (rows, cols) of the width-trimmed crop with the conv's 2-pixel padding: 16 x 12."""
        padding_total = 2 * PATCH_PADDING  # both sides; a last partial window is dropped by the conv
        height = (self.image_size + padding_total - self.patch_size) // self.patch_size + 1
        width = (
            self.image_size - 2 * CROP_WIDTH_TRIM + padding_total - self.patch_size
        ) // self.patch_size + 1
        return height, width


def _empty_outputs(config: ReconstructorConfig, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    def z(*shape: int) -> torch.Tensor:
        return torch.zeros((0, *shape), device=device, dtype=dtype)

    def params() -> dict[str, torch.Tensor]:
        return mano_params(z(NUM_MANO_JOINTS, 3, 3), z(NUM_BETAS))

    return {
        "pred_cam": z(3),
        "pred_mano_params": params(),
        "pred_cam_t": z(3),
        "focal_length": z(2),
        "pred_keypoints_3d": z(NUM_JOINTS, 3),
        "pred_vertices": z(NUM_VERTICES, 3),
        "pred_keypoints_2d": z(NUM_JOINTS, 2),
        "coarse": {
            "pred_cam": z(3),
            "pred_pose_6d": z(NUM_MANO_JOINTS * 6),
            "pred_mano_params": params(),
            "pred_vertices": z(NUM_VERTICES, 3),
            "pred_keypoints_3d": z(NUM_JOINTS, 3),
        },
    }


class WiLoR(nn.Module):
    """The full reconstructor. Build it with a ``ManoLayer`` (from the MANO file or a placeholder)."""

    def __init__(self, config: ReconstructorConfig, mano: ManoLayer) -> None:
        super().__init__()
        self.config = config
        # ActNorm-style flag of the official LightningModule; kept only for the checkpoint layout
        self.register_buffer("initialized", torch.tensor(False))
        self.backbone = ViTBackbone(
            embed_dim=config.embed_dim,
            depth=config.depth,
            num_heads=config.num_heads,
            mlp_ratio=config.mlp_ratio,
            patch_size=config.patch_size,
            grid_size=config.grid_size,
            qkv_bias=config.qkv_bias,
        )
        self.refine_net = RefineNet(config.refine_feat_dim, config.refine_upscale)
        self.discriminator = Discriminator()
        self.mano = mano
        self.synthetic = False  # set by the loader when the checkpoint or MANO model is synthetic

    @property
    def compute_dtype(self) -> torch.dtype:
        """dtype of the ViT's patch embedding and attention/MLP layers (everything else is float32)."""
        return self.backbone.patch_embed.proj.weight.dtype

    def set_compute_dtype(self, dtype: torch.dtype) -> WiLoR:
        """The mixed-precision recipe: cast only the ViT's patch embedding and its blocks' attention and
        MLP layers (nearly all FLOPs) to ``dtype``; everything else stays float32.

        float32 islands, the same as the TensorRT fp16 recipe (backends/tensorrt/): LayerNorms,
        softmax (inside the fused attention kernel), the residual stream between blocks, the query-token
        embeddings, the read-outs, the 6D -> matrix conversion, the refinement net and MANO. The mean
        global orientation is nearly degenerate (SPEC 3.7): rounding init_hand_pose or the 6D -> matrix
        step to half precision would visibly change the root rotation. ``float32`` undoes the cast.
        """
        if dtype not in (torch.float32, *HALF_DTYPES):
            raise ValueError(f"compute dtype must be float32, float16 or bfloat16, got {dtype}")
        self.backbone.patch_embed.to(dtype)
        for block in self.backbone.blocks:
            block.attn.to(dtype)
            block.mlp.to(dtype)
        return self

    def forward(self, x: torch.Tensor, return_intermediates: bool = False) -> dict[str, Any]:
        """x: B x 3 x 256 x 256 normalised RGB crops (right-hand view; left hands mirrored beforehand).

        Returns the official ``forward_step`` dictionary (float32):
          pred_cam B x 3 [s, tx, ty]; pred_mano_params {global_orient B x 1 x 3 x 3,
          hand_pose B x 15 x 3 x 3, betas B x 10}; pred_cam_t B x 3 (tx, ty, 2f/(256 s + 1e-9));
          focal_length B x 2; pred_keypoints_3d B x 21 x 3 and pred_vertices B x 778 x 3 (metres, MANO
          frame, not root-centred); pred_keypoints_2d B x 21 x 2 (crop-normalised: pixel = 128 + 256 v);
        plus ``coarse``: the backbone's estimate before refinement {pred_cam, pred_pose_6d B x 96,
        pred_mano_params, pred_vertices, pred_keypoints_3d}. With ``return_intermediates`` also
        ``intermediates``: named tensors matching the parity kit's ``mid/*`` arrays.
        """
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != self.config.image_size:
            raise ValueError(
                f"expected B x 3 x {self.config.image_size} x {self.config.image_size} crops, "
                f"got {tuple(x.shape)}"
            )
        batch = x.shape[0]
        if batch == 0:
            # smplx's lbs cannot reshape empty batches; answer with correctly shaped empties
            return _empty_outputs(self.config, x.device, torch.float32)

        focal = self.config.focal_length
        focal_length = torch.full((batch, 2), focal, device=x.device, dtype=torch.float32)

        coarse = self.backbone(x, keep_blocks=return_intermediates)
        coarse_vertices, coarse_joints = self.mano(**coarse.estimate.mano_params())
        refined = self.refine_net(coarse.img_feat, coarse_vertices, coarse.estimate, focal_length)
        final = refined.estimate
        vertices, joints = self.mano(**final.mano_params())
        # SPEC 4.5 / pitfall 11: the crop camera refers to the 256-pixel crop, not the 192-wide ViT input
        cam_t = weak_perspective_to_translation(final.cam, focal_length[:, 0], self.config.image_size)
        keypoints_2d = perspective_projection(joints, cam_t, focal_length / self.config.image_size)

        out: dict[str, Any] = {
            "pred_cam": final.cam,
            "pred_mano_params": final.mano_params(),
            "pred_cam_t": cam_t,
            "focal_length": focal_length,
            "pred_keypoints_3d": joints,
            "pred_vertices": vertices,
            "pred_keypoints_2d": keypoints_2d,
            "coarse": {
                "pred_cam": coarse.estimate.cam,
                "pred_pose_6d": coarse.estimate.pose_6d,
                "pred_mano_params": coarse.estimate.mano_params(),
                "pred_vertices": coarse_vertices,
                "pred_keypoints_3d": coarse_joints,
            },
        }
        if return_intermediates:
            mids: dict[str, torch.Tensor] = {
                "patch_tokens": coarse.patch_tokens,
                "tokens_before_last_norm": coarse.block_outputs[-1]
                if coarse.block_outputs
                else coarse.tokens,
                "tokens_after_last_norm": coarse.tokens,
                "vit_img_feat": coarse.img_feat,
                "refine_vert_feats": refined.vert_feats,
                "refine_delta_pose": refined.delta_pose,
                "refine_delta_betas": refined.delta_betas,
                "refine_delta_cam": refined.delta_cam,
            }
            for index, block_out in enumerate(coarse.block_outputs):
                mids[f"block{index}_out"] = block_out
            for index, (fmap, pts, pooled) in enumerate(
                zip(refined.feature_maps, refined.verts_2d, refined.sampled_max)
            ):
                mids[f"refine_feat_{index}"] = fmap
                mids[f"refine_verts_2d_{index}"] = pts
                mids[f"refine_sampled_max_{index}"] = pooled
            out["intermediates"] = mids
        return out
