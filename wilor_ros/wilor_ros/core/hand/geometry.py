"""Rotation and camera utilities shared by the network, the post-processing and the tools.

Conventions: rotation matrices act on column vectors (x' = R x); a 6D rotation is the first two *columns*
of R, stored as [c1x, c1y, c1z, c2x, c2y, c2z] (Zhou et al. 2019, as in the official
``wilor/utils/geometry.py:rot6d_to_rotmat``). Axis-angle vectors are rotation axis times angle (radians).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# numpy rotation helpers live in a torch-free module (the ONNX/TensorRT runtime needs no torch)
from wilor_ros.core.hand.rotations import axis_angle_to_rotmat_np, rotmat_to_axis_angle_np  # noqa: F401

# F.normalize's default lower bound on the norm; the official code relies on it (SPEC 3.7).
NORMALIZE_EPS = 1e-12
ROT6D_DIM = 6
WEAK_PERSPECTIVE_EPS = 1e-9  # official guard against s = 0 in the depth 2f/(size*s)
SMALL_ANGLE = 1e-6  # radians; below it Rodrigues' formula switches to its first-order expansion


def rot6d_to_rotmat(x: torch.Tensor) -> torch.Tensor:
    """6D rotation representation -> rotation matrices.

    Args:
        x: ... x 6 (any leading shape; the official code passes N x 6). The first three numbers are the
            first column candidate ``u``, the last three the second column candidate ``v``.

    Returns:
        ... x 3 x 3 matrices R = [b1 b2 b3] (columns), b1 = u/|u|, b2 = normalize(v - (b1.v) b1),
        b3 = b1 x b2. The order of the float operations follows the official code on purpose: the mean
        global orientation is nearly degenerate (v ~ -u), so a reordering changes the result visibly.
    """
    if x.shape[-1] != ROT6D_DIM:
        raise ValueError(f"rot6d_to_rotmat expects ... x 6, got shape {tuple(x.shape)}")
    lead = x.shape[:-1]
    pairs = x.reshape(-1, 2, 3)  # N x (u, v) x 3
    u = pairs[:, 0, :]
    v = pairs[:, 1, :]
    b1 = F.normalize(u, dim=-1, eps=NORMALIZE_EPS)
    # einsum for the dot product, as the reference does: a different reduction order (e.g. (b1*v).sum)
    # may round differently, and the degenerate mean pose amplifies that.
    dot = torch.einsum("bi,bi->b", b1, v).unsqueeze(-1)
    b2 = F.normalize(v - dot * b1, dim=-1, eps=NORMALIZE_EPS)
    b3 = torch.linalg.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-1).reshape(*lead, 3, 3)


def rotmat_to_rot6d(rotmat: torch.Tensor) -> torch.Tensor:
    """Rotation matrices ... x 3 x 3 -> 6D ... x 6 (first column, then second column)."""
    if rotmat.shape[-2:] != (3, 3):
        raise ValueError(f"rotmat_to_rot6d expects ... x 3 x 3, got shape {tuple(rotmat.shape)}")
    return torch.cat((rotmat[..., :, 0], rotmat[..., :, 1]), dim=-1)


def perspective_projection(
    points: torch.Tensor,
    translation: torch.Tensor,
    focal_length: torch.Tensor,
    camera_center: torch.Tensor | None = None,
) -> torch.Tensor:
    """Pinhole projection without rotation.

    Args:
        points: B x N x 3 camera-frame points before translation.
        translation: B x 3 added to every point.
        focal_length: B x 2 (fx, fy).
        camera_center: B x 2 principal point; zeros when None (the official network's convention).

    Returns:
        B x N x 2: ``f * (X + t)_xy / (X + t)_z + c``. The division happens before the multiplication by
        f, the order the official einsum-with-K formulation rounds in.
    """
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f"points must be B x N x 3, got {tuple(points.shape)}")
    shifted = points + translation.unsqueeze(1)
    normalised = shifted[..., :2] / shifted[..., 2:3]
    projected = normalised * focal_length.unsqueeze(1)
    if camera_center is not None:
        projected = projected + camera_center.unsqueeze(1)
    return projected


def weak_perspective_to_translation(
    cam: torch.Tensor, focal_length: float | torch.Tensor, image_size: float
) -> torch.Tensor:
    """Weak-perspective camera [s, tx, ty] (B x 3) -> translation (tx, ty, 2f/(image_size*s + 1e-9)).

    ``focal_length`` is a float or a B tensor; ``image_size`` is the side (pixels) the camera refers to.
    """
    depth = 2 * focal_length / (image_size * cam[:, 0] + WEAK_PERSPECTIVE_EPS)
    return torch.stack((cam[:, 1], cam[:, 2], depth), dim=-1)


def axis_angle_to_rotmat(axis_angle: torch.Tensor) -> torch.Tensor:
    """Axis-angle ... x 3 -> rotation matrices ... x 3 x 3 in torch (differentiable Rodrigues formula).

    Written by hand because torch has no rotation library; used for training-time targets only.
    The small-angle branch avoids 0/0 at the identity.
    """
    if axis_angle.shape[-1] != 3:
        raise ValueError(f"axis-angle must be ... x 3, got shape {tuple(axis_angle.shape)}")
    angle = torch.linalg.norm(axis_angle, dim=-1, keepdim=True)  # ... x 1
    small = angle < SMALL_ANGLE
    safe_angle = torch.where(small, torch.ones_like(angle), angle)
    axis = axis_angle / safe_angle
    x, y, z = axis.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack((zero, -z, y, z, zero, -x, -y, x, zero), dim=-1).reshape(*axis.shape[:-1], 3, 3)
    sin = torch.sin(angle)[..., None]
    cos = torch.cos(angle)[..., None]
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device).expand_as(skew)
    full = eye + sin * skew + (1 - cos) * (skew @ skew)
    # first-order expansion near zero: R ~ I + [w]x
    w = axis_angle
    wx, wy, wz = w.unbind(-1)
    zero_w = torch.zeros_like(wx)
    skew_w = torch.stack((zero_w, -wz, wy, wz, zero_w, -wx, -wy, wx, zero_w), dim=-1).reshape_as(skew)
    approx = eye + skew_w
    return torch.where(small[..., None], approx, full)
