"""HMR-style pose/shape discriminator (training only), our own code.

SPEC 10.1 (official: wilor/models/discriminator.py); parameter names match ``discriminator.*`` in the
official state_dict. Inference never runs it; it exists so that checkpoints keep the official layout and
so that training can use it.
"""

from __future__ import annotations

import torch
from torch import nn

from wilor_ros.core.hand.constants import NUM_BETAS, NUM_HAND_JOINTS

JOINT_CHANNELS = 32  # per-joint 1x1 conv width
ALL_JOINTS_HIDDEN = 1024
BETAS_HIDDEN = (10, 5)


class Discriminator(nn.Module):
    """Scores a hand pose (15 finger rotation matrices) and shape (10 betas).

    forward(poses B x 15 x 3 x 3, betas B x 10) -> B x 17 scores: 15 per-joint, 1 shape, 1 all-joints.
    """

    def __init__(self) -> None:
        super().__init__()
        self.num_joints = NUM_HAND_JOINTS
        self.D_conv1 = nn.Conv2d(9, JOINT_CHANNELS, kernel_size=1)
        self.D_conv2 = nn.Conv2d(JOINT_CHANNELS, JOINT_CHANNELS, kernel_size=1)
        self.pose_out = nn.ModuleList(nn.Linear(JOINT_CHANNELS, 1) for _ in range(NUM_HAND_JOINTS))
        self.betas_fc1 = nn.Linear(NUM_BETAS, BETAS_HIDDEN[0])
        self.betas_fc2 = nn.Linear(BETAS_HIDDEN[0], BETAS_HIDDEN[1])
        self.betas_out = nn.Linear(BETAS_HIDDEN[1], 1)
        self.D_alljoints_fc1 = nn.Linear(JOINT_CHANNELS * NUM_HAND_JOINTS, ALL_JOINTS_HIDDEN)
        self.D_alljoints_fc2 = nn.Linear(ALL_JOINTS_HIDDEN, ALL_JOINTS_HIDDEN)
        self.D_alljoints_out = nn.Linear(ALL_JOINTS_HIDDEN, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Xavier-uniform weights and zero biases (the official initialisation)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, poses: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
        batch = poses.shape[0]
        # the 9 matrix entries of each joint are the channels of a 15 x 1 "image": B x 9 x 15 x 1
        x = poses.reshape(batch, self.num_joints, 1, 9).permute(0, 3, 1, 2)
        x = torch.relu(self.D_conv2(torch.relu(self.D_conv1(x))))  # B x 32 x 15 x 1
        per_joint = torch.cat([head(x[:, :, j, 0]) for j, head in enumerate(self.pose_out)], dim=1)
        shape = torch.relu(self.betas_fc2(torch.relu(self.betas_fc1(betas))))
        shape_score = self.betas_out(shape)
        flat = x.reshape(batch, -1)  # channel-major: 32 x 15
        all_joints = torch.relu(self.D_alljoints_fc2(torch.relu(self.D_alljoints_fc1(flat))))
        return torch.cat((per_joint, shape_score, self.D_alljoints_out(all_joints)), dim=1)
