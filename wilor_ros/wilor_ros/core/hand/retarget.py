"""Retargeting-ready hand keypoints: the convention of dex-retargeting's vector retargeting.

dex-retargeting (github.com/dexsuite/dex-retargeting, ``example/vector_retargeting/
single_hand_detector.py``) feeds its optimiser 21 keypoints (OpenPose / MediaPipe joint order,
which is ours, ``constants.JOINT_NAMES``) expressed in a frame attached to the operator's wrist
and turned into MANO's axes. Facts of that convention (our own implementation below):

1. keypoints are made wrist-relative: ``kp_rel = kp - kp[wrist]``;
2. a wrist frame is estimated from the wrist (0), index MCP (5) and middle MCP (9):
   * ``normal`` = unit normal of the plane through those three points (the palm normal);
   * ``x`` = ``wrist - middle_mcp`` made orthogonal to ``normal`` and normalised (points from
     the knuckles back to the wrist, i.e. opposite to the fingers);
   * ``z`` = ``x cross normal``; when it points from the index side towards the pinky side
     (``z . (index_mcp - middle_mcp) < 0``) both ``normal`` and ``z`` are negated, so ``z``
     always points from the pinky side to the index side and the frame stays right-handed;
   * ``frame`` = 3 x 3 matrix with columns ``[x, normal, z]`` (camera coordinates);
3. ``joint_pos = kp_rel @ frame @ OPERATOR2MANO[side]`` (row vectors), with the constant
   axis permutations below.

Because the frame is computed from the hand itself, ``joint_pos`` does not change when the hand
is rotated or moved in front of the camera: it describes the hand's articulation (finger
positions relative to the palm), which is what a robot hand should copy. The wrist pose (where
the hand is, how the palm is turned) is reported separately, in the camera frame:
``rotation = frame @ OPERATOR2MANO[side]`` maps retargeting coordinates to camera coordinates,
``kp_camera = wrist + joint_pos @ rotation.T``.

Units: metres (the camera frame of ``HandEstimate.keypoints_3d``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wilor_ros.core.hand.constants import JOINT_NAMES, NUM_JOINTS
from wilor_ros.core.types import HandEstimate, Side

WRIST = JOINT_NAMES.index("wrist")
INDEX_MCP = JOINT_NAMES.index("index_mcp")
MIDDLE_MCP = JOINT_NAMES.index("middle_mcp")

# dex-retargeting's OPERATOR2MANO_RIGHT / OPERATOR2MANO_LEFT (single_hand_detector.py): rows
# are the wrist-frame axes (x, normal, z), columns the MANO axes. Both are proper rotations.
OPERATOR2MANO_RIGHT = np.array([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
OPERATOR2MANO_LEFT = np.array([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])

# Below this length (metres) a palm vector is treated as degenerate: the three palm points are
# (nearly) coincident or collinear and no frame can be estimated.
MIN_PALM_VECTOR_M = 1e-6


def operator2mano(side: Side | str | int) -> np.ndarray:
    """The 3 x 3 axis permutation of ``side`` (a copy)."""
    return (OPERATOR2MANO_RIGHT if Side.parse(side) == Side.RIGHT else OPERATOR2MANO_LEFT).copy()


def _check_keypoints(keypoints: np.ndarray) -> np.ndarray:
    kp = np.asarray(keypoints, dtype=np.float64)
    if kp.shape != (NUM_JOINTS, 3):
        raise ValueError(f"keypoints must be {NUM_JOINTS} x 3 (OpenPose order, metres), got {kp.shape}")
    if not np.all(np.isfinite(kp)):
        raise ValueError("keypoints contain NaN or inf; drop the hand before retargeting")
    return kp


def wrist_frame(keypoints: np.ndarray) -> np.ndarray:
    """3 x 3 wrist frame of 21 x 3 keypoints (any common origin), columns ``[x, normal, z]`` in
    the keypoints' coordinates (see the module docstring). A proper rotation (det = +1).

    Raises ValueError when the wrist, index MCP and middle MCP are (nearly) collinear.
    """
    kp = _check_keypoints(keypoints)
    wrist, index_mcp, middle_mcp = kp[WRIST], kp[INDEX_MCP], kp[MIDDLE_MCP]
    # Three points define their plane exactly, so the normal is a cross product (a least-squares
    # plane fit would give the same plane).
    normal = np.cross(index_mcp - wrist, middle_mcp - wrist)
    norm = float(np.linalg.norm(normal))
    if norm < MIN_PALM_VECTOR_M**2:
        raise ValueError("wrist, index MCP and middle MCP are collinear: no palm plane to build a frame on")
    normal /= norm
    x_axis = wrist - middle_mcp
    x_axis = x_axis - np.dot(x_axis, normal) * normal
    length = float(np.linalg.norm(x_axis))
    if length < MIN_PALM_VECTOR_M:
        raise ValueError("wrist and middle MCP coincide: no palm direction to build a frame on")
    x_axis /= length
    z_axis = np.cross(x_axis, normal)
    if np.dot(z_axis, index_mcp - middle_mcp) < 0.0:
        normal, z_axis = -normal, -z_axis
    return np.stack([x_axis, normal, z_axis], axis=1)


@dataclass(frozen=True)
class RetargetKeypoints:
    """One hand in the retargeting convention.

    keypoints: 21 x 3 float64 metres, wrist-relative, MANO-convention axes (``joint_pos`` of
        dex-retargeting), OpenPose joint order; keypoints[0] is the origin.
    wrist_position: (3,) metres, camera frame.
    frame: 3 x 3 wrist frame, columns ``[x, normal, z]`` in camera coordinates.
    operator2mano: 3 x 3 axis permutation used for ``side``.
    rotation: 3 x 3 = frame @ operator2mano; maps retargeting coordinates to camera
        coordinates (its columns are the retargeting axes seen from the camera).
    """

    keypoints: np.ndarray
    wrist_position: np.ndarray
    frame: np.ndarray
    operator2mano: np.ndarray
    rotation: np.ndarray
    side: Side

    def to_camera(self) -> np.ndarray:
        """21 x 3 keypoints back in the camera frame (inverse of the retargeting transform)."""
        return self.wrist_position + self.keypoints @ self.rotation.T


def retarget_keypoints(keypoints: np.ndarray, side: Side | str | int) -> RetargetKeypoints:
    """21 x 3 camera-frame keypoints (metres, OpenPose order) of a ``side`` hand -> the
    retargeting convention (see the module docstring)."""
    kp = _check_keypoints(keypoints)
    side = Side.parse(side)
    frame = wrist_frame(kp)
    permutation = operator2mano(side)
    rotation = frame @ permutation
    return RetargetKeypoints(
        keypoints=(kp - kp[WRIST]) @ rotation,
        wrist_position=kp[WRIST].copy(),
        frame=frame,
        operator2mano=permutation,
        rotation=rotation,
        side=side,
    )


def retarget_hand(hand: HandEstimate) -> RetargetKeypoints:
    """``retarget_keypoints`` of a reconstructed hand (its keypoints_3d and side)."""
    return retarget_keypoints(hand.keypoints_3d, hand.side)


def vector_reference(
    joint_pos: np.ndarray, origin_indices: np.ndarray, task_indices: np.ndarray
) -> np.ndarray:
    """dex-retargeting's vector-retargeting input: K x 3 = joint_pos[task] - joint_pos[origin]
    for the optimiser's ``target_link_human_indices`` rows (origin, task)."""
    pos = np.asarray(joint_pos, dtype=np.float64)
    return pos[np.asarray(task_indices, dtype=int)] - pos[np.asarray(origin_indices, dtype=int)]
