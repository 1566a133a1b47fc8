"""Rotation conversions in numpy/scipy (no torch), for post-processing and the ROS adapter.

Conventions as in ``geometry``: matrices act on column vectors, axis-angle = axis * angle (rad).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from wilor_ros.core.hand.constants import MANO_PARENTS


def axis_angle_to_rotmat_np(axis_angle: np.ndarray) -> np.ndarray:
    """Axis-angle ... x 3 -> rotation matrices ... x 3 x 3 (float64), via scipy."""
    axis_angle = np.asarray(axis_angle, dtype=np.float64)
    if axis_angle.shape[-1] != 3:
        raise ValueError(f"axis-angle must be ... x 3, got shape {axis_angle.shape}")
    lead = axis_angle.shape[:-1]
    mats = Rotation.from_rotvec(axis_angle.reshape(-1, 3)).as_matrix()
    return mats.reshape(*lead, 3, 3)


def rotmat_to_axis_angle_np(rotmat: np.ndarray) -> np.ndarray:
    """Rotation matrices ... x 3 x 3 -> axis-angle ... x 3 (float64, angle in [0, pi]), via scipy.

    Slightly non-orthonormal inputs (float32 network outputs) are projected to the nearest rotation by
    scipy.
    """
    rotmat = np.asarray(rotmat, dtype=np.float64)
    if rotmat.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrices must be ... x 3 x 3, got shape {rotmat.shape}")
    lead = rotmat.shape[:-2]
    vecs = Rotation.from_matrix(rotmat.reshape(-1, 3, 3)).as_rotvec()
    return vecs.reshape(*lead, 3)


def global_joint_rotations(global_orient: np.ndarray, hand_pose: np.ndarray) -> np.ndarray:
    """Compose MANO's kinematic chain into per-joint global rotations.

    global_orient: B x 3 x 3, hand_pose: B x 15 x 3 x 3 (parent-relative, MANO order)
    -> B x 16 x 3 x 3 global rotations, MANO joint order.
    """
    batch = global_orient.shape[0]
    local = np.concatenate([global_orient[:, None], hand_pose], axis=1)  # B x 16 x 3 x 3
    out = np.empty((batch, len(MANO_PARENTS), 3, 3), dtype=np.float32)
    for joint, parent in enumerate(MANO_PARENTS):
        out[:, joint] = local[:, joint] if parent < 0 else out[:, parent] @ local[:, joint]
    return out
