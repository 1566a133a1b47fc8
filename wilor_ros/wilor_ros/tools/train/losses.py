"""Training losses with the official definitions and weights (SPEC 10.2; official: WiLoR.compute_loss,
training_step_discriminator and wilor/models/losses.py, our own code).

Every term is a SUM over joints, coordinates and batch (no mean), as the official code computes them.
Only the refined (final) predictions are supervised. Samples without a label contribute zero through
their confidences / has-flags, so 2D-only data trains the 2D term alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from wilor_ros.core.hand.geometry import axis_angle_to_rotmat
from wilor_ros.core.models.discriminator import Discriminator
from wilor_ros.tools.train.config import LossWeights

ROOT_JOINT = 0  # 3D keypoints are compared relative to the wrist


def keypoint_3d_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """pred B x 21 x 3, gt B x 21 x 4 (xyz + conf): sum of conf * |(pred - pred_root) - (gt - gt_root)|."""
    pred_rel = pred - pred[:, ROOT_JOINT : ROOT_JOINT + 1]
    gt_rel = gt[:, :, :3] - gt[:, ROOT_JOINT : ROOT_JOINT + 1, :3]
    return (gt[:, :, 3:] * (pred_rel - gt_rel).abs()).sum()


def keypoint_2d_loss(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """pred B x 21 x 2, gt B x 21 x 3 (crop-normalised xy + conf): sum of conf * |pred - gt|."""
    return (gt[:, :, 2:] * (pred - gt[:, :, :2]).abs()).sum()


def parameter_loss(pred: torch.Tensor, gt: torch.Tensor, has: torch.Tensor) -> torch.Tensor:
    """Squared error summed over everything but the batch, masked by ``has`` (B,), then summed."""
    per_sample = ((pred - gt) ** 2).reshape(pred.shape[0], -1).sum(dim=1)
    return (has * per_sample).sum()


def adversarial_generator_loss(scores: torch.Tensor) -> torch.Tensor:
    """scores B x 17 of D on predictions: sum((D - 1)^2) / B."""
    return ((scores - 1.0) ** 2).sum() / scores.shape[0]


def discriminator_loss(fake_scores: torch.Tensor, real_scores: torch.Tensor) -> torch.Tensor:
    """[sum(D(fake)^2) + sum((D(real) - 1)^2)] / B, unweighted (the caller applies the weight)."""
    batch = fake_scores.shape[0]
    return (fake_scores**2).sum() / batch + ((real_scores - 1.0) ** 2).sum() / batch


@dataclass
class LossTerms:
    """Weighted total (what backward sees) and the unweighted terms (for logs)."""

    total: torch.Tensor
    terms: dict[str, torch.Tensor]


def generator_losses(
    output: dict,
    batch: dict[str, torch.Tensor],
    weights: LossWeights,
    discriminator: Discriminator | None,
) -> LossTerms:
    """Model loss of one micro-batch.

    output: WiLoR.forward dict; batch: collated tensors of datasets.record_to_example on the same device.
    discriminator: when given (a mocap prior is configured), adds the adversarial generator term; its
    parameters should not require grad here (only the model is updated by this loss).
    """
    mano = output["pred_mano_params"]
    gt_orient = axis_angle_to_rotmat(batch["global_orient"].float().reshape(-1, 1, 3))
    gt_pose = axis_angle_to_rotmat(batch["hand_pose"].float().reshape(-1, 15, 3))
    terms = {
        "keypoints_3d": keypoint_3d_loss(output["pred_keypoints_3d"].float(), batch["keypoints_3d"].float()),
        "keypoints_2d": keypoint_2d_loss(output["pred_keypoints_2d"].float(), batch["keypoints_2d"].float()),
        "global_orient": parameter_loss(mano["global_orient"].float(), gt_orient, batch["has_global_orient"]),
        "hand_pose": parameter_loss(mano["hand_pose"].float(), gt_pose, batch["has_hand_pose"]),
        "betas": parameter_loss(mano["betas"].float(), batch["betas"].float(), batch["has_betas"]),
    }
    total = sum(getattr(weights, name) * value for name, value in terms.items())
    if discriminator is not None and weights.adversarial > 0:
        scores = discriminator(mano["hand_pose"].float(), mano["betas"].float())
        terms["adversarial"] = adversarial_generator_loss(scores)
        total = total + weights.adversarial * terms["adversarial"]
    return LossTerms(total=total, terms=terms)  # type: ignore[arg-type]


def discriminator_step_loss(
    discriminator: Discriminator,
    pred_hand_pose: torch.Tensor,
    pred_betas: torch.Tensor,
    real_pose_aa: torch.Tensor,
    real_betas: torch.Tensor,
    weight: float,
) -> torch.Tensor:
    """Weighted discriminator loss: fake = detached predictions (B x 15 x 3 x 3, B x 10), real = mocap
    axis-angles (B x 15 x 3) and betas (B x 10)."""
    real_rotmats = axis_angle_to_rotmat(real_pose_aa.float())
    fake = discriminator(pred_hand_pose.detach().float(), pred_betas.detach().float())
    real = discriminator(real_rotmats, real_betas.float())
    return weight * discriminator_loss(fake, real)
