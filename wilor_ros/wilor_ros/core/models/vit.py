"""ViT backbone with MANO query tokens (WiLoR's ViTPose-H variant), our own implementation.

Behaviour follows SPEC sections 3.1-3.6 (official: wilor/models/backbones/vit.py). Parameter and buffer
names match the official state_dict (``backbone.*`` in checkpoint_manifest.json).

Shapes use C = embed dim (1280 released), J = 16 MANO joints (root + 15), P = 16 x 12 = 192 patches,
T = J + 2 + P = 210 tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from wilor_ros.core.hand.constants import CROP_WIDTH_TRIM, NUM_BETAS, NUM_MANO_JOINTS
from wilor_ros.core.hand.geometry import ROT6D_DIM
from wilor_ros.core.hand.mean_params import MEAN_BETAS, MEAN_CAM, MEAN_POSE_6D
from wilor_ros.core.models.estimate import ManoEstimate

CAM_DIM = 3  # weak-perspective camera [s, tx, ty]
# The patch conv pads 2 pixels on every side (ViTPose PatchEmbed with ratio 1: 4 + 2*(1//2 - 1) = 2).
PATCH_PADDING = 2
LAYER_NORM_EPS = 1e-6
NUM_EXTRA_TOKENS = 2  # shape token and camera token, after the J pose tokens


@dataclass
class BackboneOutput:
    """Coarse estimate of the backbone and what it read it from.

    estimate: the coarse ManoEstimate; its pose_6d, betas and cam are the decoder outputs plus the mean
    parameters (init_hand_pose, init_betas, init_cam), float32.
    img_feat: B x C x 16 x 12 patch tokens after the final LayerNorm (float32).
    tokens: B x T x C after the final LayerNorm; patch_tokens: B x P x C patch embedding before the
    positional embedding; block_outputs: one B x T x C per block (only filled on request).
    """

    estimate: ManoEstimate
    img_feat: torch.Tensor
    tokens: torch.Tensor
    patch_tokens: torch.Tensor
    block_outputs: list[torch.Tensor]


class PatchEmbed(nn.Module):
    """Conv patchifier: B x 3 x H x W -> B x (H'W') x C tokens (row-major, row index slowest)."""

    def __init__(self, embed_dim: int, patch_size: int, in_chans: int = 3) -> None:
        super().__init__()
        self.proj = nn.Conv2d(
            in_chans, embed_dim, kernel_size=patch_size, stride=patch_size, padding=PATCH_PADDING
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        """Returns tokens B x (H'W') x C and the grid size (H', W')."""
        feat = self.proj(x)
        grid_h, grid_w = feat.shape[2], feat.shape[3]
        return feat.flatten(2).transpose(1, 2), grid_h, grid_w


class Attention(nn.Module):
    """Multi-head self-attention with one fused qkv projection ([q | k | v], head-major inside each)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed dim {dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: B x T x C -> B x T x C."""
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, dim // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each B x heads x T x head_dim
        if q.dtype == torch.float32:
            # Explicit softmax((q * d^-0.5) k^T) v, the official order of operations: bit-exact against
            # the goldens. torch's fused kernel rounds differently (~5e-7 on the tokens), and the nearly
            # degenerate mean root rotation amplifies that to ~1e-6 (SPEC 3.7). At 210 tokens the
            # explicit form costs little.
            scores = (q * self.scale) @ k.transpose(-2, -1)
            out = scores.softmax(dim=-1) @ v
        else:
            # half precision: the fused kernel (same scale d^-0.5, no mask, no dropout in eval). Its CPU and
            # CUDA kernels keep the scores and the softmax in float32 internally (the mixed recipe's
            # float32 softmax), which the explicit form would round to half before the softmax.
            out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))


class Mlp(nn.Module):
    """Linear C -> hidden, exact (erf) GELU, Linear hidden -> C."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + Attn(LN(x)), then x + MLP(LN(x)). Drop-path is a no-op here."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool = True) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: B x T x C float32 residual stream -> the same.

        Mixed precision (``WiLoR.set_compute_dtype``): only the attention and MLP layers hold half weights;
        the LayerNorms and the residual sum stay float32, so 32 blocks of residual additions do not
        accumulate half-precision rounding. In float32 every ``.to`` below is a no-op.
        """
        dtype = self.attn.qkv.weight.dtype
        x = x + self.attn(self.norm1(x).to(dtype)).to(x.dtype)
        return x + self.mlp(self.norm2(x).to(dtype)).to(x.dtype)


class ViTBackbone(nn.Module):
    """ViT over the width-trimmed crop with 16 pose + 1 shape + 1 camera query tokens.

    Registration order of parameters, buffers and children reproduces the official state_dict order.
    """

    def __init__(
        self,
        embed_dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float,
        patch_size: int,
        grid_size: tuple[int, int],
        qkv_bias: bool = True,
    ) -> None:
        super().__init__()
        self.grid_size = grid_size
        num_patches = grid_size[0] * grid_size[1]
        # slot 0 is ViTPose's class-token slot: no class token is used, the slot is added to every patch
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.register_buffer("init_cam", torch.tensor([MEAN_CAM], dtype=torch.float32))
        self.register_buffer("init_hand_pose", torch.tensor([MEAN_POSE_6D], dtype=torch.float32))
        self.register_buffer("init_betas", torch.tensor([MEAN_BETAS], dtype=torch.float32))
        self.patch_embed = PatchEmbed(embed_dim, patch_size)
        self.pose_emb = nn.Linear(ROT6D_DIM, embed_dim)
        self.shape_emb = nn.Linear(NUM_BETAS, embed_dim)
        self.cam_emb = nn.Linear(CAM_DIM, embed_dim)
        self.decpose = nn.Linear(embed_dim, ROT6D_DIM)
        self.decshape = nn.Linear(embed_dim, NUM_BETAS)
        self.deccam = nn.Linear(embed_dim, CAM_DIM)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, qkv_bias) for _ in range(depth))
        self.last_norm = nn.LayerNorm(embed_dim, eps=LAYER_NORM_EPS)

    def forward(self, crop: torch.Tensor, keep_blocks: bool = False) -> BackboneOutput:
        """crop: B x 3 x 256 x 256 normalised RGB (the full crop; the width trim happens here).

        The patch embedding and the blocks' attention/MLP layers run in the dtype of their weights
        (float32, or half after ``WiLoR.set_compute_dtype``); the token sequence between them, the
        LayerNorms, the query-token embeddings and the read-outs are float32.
        """
        batch = crop.shape[0]
        dtype = self.patch_embed.proj.weight.dtype
        # SPEC 3.1: the ViT sees columns 32..223 only (B x 3 x 256 x 192)
        image = crop[:, :, :, CROP_WIDTH_TRIM:-CROP_WIDTH_TRIM].to(dtype)
        patch_tokens, grid_h, grid_w = self.patch_embed(image)
        patch_tokens = patch_tokens.float()  # B x P x C
        if (grid_h, grid_w) != self.grid_size:
            raise ValueError(
                f"crop gives a {grid_h}x{grid_w} patch grid, the positional table expects {self.grid_size}; "
                "feed B x 3 x 256 x 256 crops"
            )
        # SPEC 3.3: own entry plus the class slot, added in this order (x + pos[1:]) + pos[0]
        x = patch_tokens + self.pos_embed[:, 1:] + self.pos_embed[:, :1]

        # SPEC 3.4: query tokens from the mean parameters, identical for every sample, no positional term
        pose_tokens = self.pose_emb(self.init_hand_pose.reshape(1, NUM_MANO_JOINTS, ROT6D_DIM))
        shape_tokens = self.shape_emb(self.init_betas).unsqueeze(1)
        cam_tokens = self.cam_emb(self.init_cam).unsqueeze(1)
        queries = torch.cat((pose_tokens, shape_tokens, cam_tokens), dim=1).expand(batch, -1, -1)
        x = torch.cat((queries, x), dim=1)

        block_outputs: list[torch.Tensor] = []
        for block in self.blocks:
            x = block(x)
            if keep_blocks:
                block_outputs.append(x)
        x = self.last_norm(x)

        # SPEC 3.6: read-outs, float32 in every precision so the mean parameters keep full precision
        num_queries = NUM_MANO_JOINTS + NUM_EXTRA_TOKENS
        pose_6d = self.decpose(x[:, :NUM_MANO_JOINTS]).reshape(batch, -1) + self.init_hand_pose
        betas = self.decshape(x[:, NUM_MANO_JOINTS]) + self.init_betas
        cam = self.deccam(x[:, NUM_MANO_JOINTS + 1]) + self.init_cam
        img_feat = x[:, num_queries:].reshape(batch, grid_h, grid_w, -1).permute(0, 3, 1, 2)
        return BackboneOutput(
            estimate=ManoEstimate.from_pose_6d(pose_6d, betas, cam),
            img_feat=img_feat,
            tokens=x,
            patch_tokens=patch_tokens,
            block_outputs=block_outputs,
        )
