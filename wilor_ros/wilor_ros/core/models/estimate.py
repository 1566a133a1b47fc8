"""The MANO estimate each head of the network emits: the backbone's coarse one, the refinement's final one."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from wilor_ros.core.hand.constants import NUM_MANO_JOINTS
from wilor_ros.core.hand.geometry import ROT6D_DIM, rot6d_to_rotmat


def mano_params(rotmats: torch.Tensor, betas: torch.Tensor) -> dict[str, torch.Tensor]:
    """The official ``pred_mano_params`` dict, also ManoLayer's keyword arguments.

    rotmats: B x 16 x 3 x 3 parent-relative rotations (MANO joint order, root first); betas: B x 10.
    Returns global_orient B x 1 x 3 x 3, hand_pose B x 15 x 3 x 3 (views of rotmats) and betas.
    """
    return {"global_orient": rotmats[:, :1], "hand_pose": rotmats[:, 1:], "betas": betas}


@dataclass
class ManoEstimate:
    """One estimate of hand and camera (float32).

    pose_6d: B x 96 (16 joints x 6, joint-major), before rotation conversion; betas: B x 10;
    cam: B x 3 weak-perspective camera [s, tx, ty] of the crop; rotmats: B x 16 x 3 x 3 from pose_6d
    (SPEC 3.7).
    """

    pose_6d: torch.Tensor
    betas: torch.Tensor
    cam: torch.Tensor
    rotmats: torch.Tensor

    @classmethod
    def from_pose_6d(cls, pose_6d: torch.Tensor, betas: torch.Tensor, cam: torch.Tensor) -> ManoEstimate:
        """The estimate with its rotation matrices converted from ``pose_6d`` (B x 96)."""
        batch = pose_6d.shape[0]
        rotmats = rot6d_to_rotmat(pose_6d.reshape(-1, ROT6D_DIM)).reshape(batch, NUM_MANO_JOINTS, 3, 3)
        return cls(pose_6d=pose_6d, betas=betas, cam=cam, rotmats=rotmats)

    def mano_params(self) -> dict[str, torch.Tensor]:
        """See :func:`mano_params`."""
        return mano_params(self.rotmats, self.betas)
