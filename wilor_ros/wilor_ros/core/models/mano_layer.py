"""MANO layer as WiLoR uses it: smplx's MANOLayer driven by rotation matrices, 21 OpenPose-order joints.

SPEC section 5 (official: wilor/models/mano_wrapper.py on top of smplx 0.1.28). The model data come in
through smplx's ``data_struct`` argument, so smplx never opens a pickle itself (our loader,
``wilor_ros.core.hand.mano.load_mano``, reads the licensed file without chumpy). Buffer names match the
official state_dict (``mano.*``), including the two WiLoR index buffers and smplx's own
``vertex_joint_selector.extra_joints_idxs``.
"""

from __future__ import annotations

import contextlib
import io
from types import SimpleNamespace
from typing import Any

import numpy as np
import smplx
import torch
import torch.nn.functional as F
from smplx.lbs import blend_shapes, transform_mat, vertices2joints

from wilor_ros.core.hand.constants import (
    FINGERTIP_VERTEX_IDS,
    MANO_PARENTS,
    MANO_TO_OPENPOSE,
    NUM_BETAS,
    NUM_FACES,
    NUM_HAND_JOINTS,
    NUM_MANO_JOINTS,
    NUM_VERTICES,
)

# smplx's MANO default (use_pca=True, 6 components): only sizes the unused hand_components buffer, which
# must still have the checkpoint's shape (6 x 45).
SMPLX_NUM_PCA_COMPS = 6
NUM_POSE_BASIS = NUM_HAND_JOINTS * 9  # posedirs columns: (R - I) of 15 joints, 9 entries each
# smplx MANO has 45 finger-pose PCA components (the number stored in the MANO file)
MANO_FILE_PCA_COMPS = NUM_HAND_JOINTS * 3


def placeholder_data_struct() -> SimpleNamespace:
    """A zero-filled MANO ``data_struct`` with the real shapes and the real kinematic tree.

    Used to build a model whose MANO buffers will all be overwritten (a checkpoint that carries
    ``mano.*``, or a shape check on the meta device). Its mesh is degenerate: never run it as is.
    """
    kintree = np.zeros((2, NUM_MANO_JOINTS), dtype=np.int64)
    kintree[0] = [p if p >= 0 else 0 for p in MANO_PARENTS]
    kintree[1] = np.arange(NUM_MANO_JOINTS)
    return SimpleNamespace(
        f=np.zeros((NUM_FACES, 3), dtype=np.int64),
        v_template=np.zeros((NUM_VERTICES, 3)),
        shapedirs=np.zeros((NUM_VERTICES, 3, NUM_BETAS)),
        posedirs=np.zeros((NUM_VERTICES, 3, NUM_POSE_BASIS)),
        J_regressor=np.zeros((NUM_MANO_JOINTS, NUM_VERTICES)),
        kintree_table=kintree,
        weights=np.zeros((NUM_VERTICES, NUM_MANO_JOINTS)),
        hands_components=np.zeros((MANO_FILE_PCA_COMPS, MANO_FILE_PCA_COMPS)),
        hands_mean=np.zeros(MANO_FILE_PCA_COMPS),
    )


class ManoLayer(smplx.MANOLayer):
    """Right-hand MANO on rotation matrices (pose2rot=False), no translation, nothing root-centred.

    forward(global_orient B x 1 x 3 x 3, hand_pose B x 15 x 3 x 3, betas B x 10) ->
    (vertices B x 778 x 3, joints B x 21 x 3), metres, MANO model frame; joints in OpenPose hand order
    (16 skinned joints + fingertip vertices 744/320/443/554/671, re-ordered by ``joint_map``).
    """

    def __init__(self, data_struct: Any) -> None:
        # smplx prints a warning to stdout for models with only 10 shape components (all MANO files):
        # it is expected here, so keep it out of the user's console.
        with contextlib.redirect_stdout(io.StringIO()):
            super().__init__(
                model_path="",  # unused: data_struct is given, smplx opens no file
                data_struct=data_struct,
                is_rhand=True,
                use_pca=True,
                num_pca_comps=SMPLX_NUM_PCA_COMPS,
                flat_hand_mean=False,
                num_betas=NUM_BETAS,
                # the released model_config.yaml passes CREATE_BODY_POSE: False through to smplx; with
                # the default smplx would add a body_pose parameter the checkpoint does not have
                create_body_pose=False,
            )
        self.register_buffer("extra_joints_idxs", torch.tensor(FINGERTIP_VERTEX_IDS, dtype=torch.long))
        self.register_buffer("joint_map", torch.tensor(MANO_TO_OPENPOSE, dtype=torch.long))

    def forward(  # type: ignore[override]
        self, global_orient: torch.Tensor, hand_pose: torch.Tensor, betas: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        rotmats = torch.cat((global_orient.float(), hand_pose.float()), dim=1)  # B x 16 x 3 x 3
        vertices, mano_joints = self.skin(rotmats, betas.float())
        tips = torch.index_select(vertices, 1, self.extra_joints_idxs)
        joints = torch.cat((mano_joints, tips), dim=1)[:, self.joint_map, :]
        return vertices, joints

    def skin(self, rotmats: torch.Tensor, betas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Linear blend skinning of MANO: rotmats B x 16 x 3 x 3 (parent-relative), betas B x 10 ->
        (vertices B x 778 x 3, the 16 posed MANO joints B x 16 x 3), metres, MANO frame.

        smplx's own ``lbs`` computes the same; written out here with smplx's helpers because its
        kinematic chain indexes a Python list with elements of the ``parents`` buffer (``chain[parents[i]]``):
        on a GPU that is one device->host copy per joint, which a CUDA graph cannot capture and
        torch.compile breaks its graph on. Here the chain walks MANO_PARENTS as Python ints. The results
        equal smplx's within float32 rounding (test_mano.py checks it).
        """
        batch = rotmats.shape[0]
        rest = self.v_template + blend_shapes(betas, self.shapedirs)  # B x V x 3
        rest_joints = vertices2joints(self.J_regressor, rest)  # B x J x 3
        eye = torch.eye(3, dtype=rotmats.dtype, device=rotmats.device)
        pose_feature = (rotmats[:, 1:] - eye).reshape(batch, -1)  # B x (15 * 9)
        posed = rest + (pose_feature @ self.posedirs).reshape(batch, -1, 3)  # pose blend shapes

        # bone offsets from the parent joint (the root keeps its position); the gather index is the
        # device-side parents buffer, so no host copy happens here either
        bones = rest_joints[:, 1:] - rest_joints[:, self.parents[1:]]  # B x 15 x 3
        offsets = torch.cat((rest_joints[:, :1], bones), dim=1)
        local = transform_mat(rotmats.reshape(-1, 3, 3), offsets.reshape(-1, 3, 1))
        local = local.reshape(batch, NUM_MANO_JOINTS, 4, 4)
        world = [local[:, 0]]
        for joint in range(1, NUM_MANO_JOINTS):
            world.append(world[MANO_PARENTS[joint]] @ local[:, joint])
        transforms = torch.stack(world, dim=1)  # B x J x 4 x 4, joint frame -> MANO frame
        posed_joints = transforms[:, :, :3, 3]

        # skinning transforms act on rest-pose points: subtract each transform applied to its rest joint
        moved_rest_joint = transforms[:, :, :3, :3] @ rest_joints.unsqueeze(-1)  # B x J x 3 x 1
        skinning = transforms - F.pad(moved_rest_joint, (3, 0, 0, 1))  # only the translation column
        blended = (self.lbs_weights @ skinning.reshape(batch, NUM_MANO_JOINTS, 16)).reshape(batch, -1, 4, 4)
        vertices = (blended[..., :3, :3] @ posed.unsqueeze(-1)).squeeze(-1) + blended[..., :3, 3]
        return vertices, posed_joints
