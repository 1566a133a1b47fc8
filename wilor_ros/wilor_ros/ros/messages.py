"""HandEstimate <-> wilor_msgs (HandMesh, HandMeshArray, MeshTopology).

How arrays are handed to the rosidl-generated Python classes (checked on Kilted and the
Humble generator; both take these types without per-element Python checks):
* fixed-size arrays (``float32[63]`` ...) are stored as numpy arrays; a float32 ndarray of the
  right *size* is kept as is, so we pass a flat, C-contiguous float32 copy (never a view of the
  estimate, so later changes to the estimate do not leak into a queued message);
* unbounded arrays (``float32[] vertices``, ``uint32[] faces``) go through
  ``MessageTypes.float_sequence`` / ``uint32_sequence`` (``array.array`` for rclpy, see
  ``ros/message_types.py``).

Every builder takes ``types`` (default: the rclpy classes), so the same field mapping fills the
rosbags classes of ``wilor_ros.offline``; messages are built with keyword arguments only.
Headers are passed in already built, of the same family as ``types``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from wilor_ros.core.hand.constants import NUM_BETAS, NUM_HAND_JOINTS, NUM_JOINTS, NUM_VERTICES
from wilor_ros.core.types import HandEstimate, Side
from wilor_ros.ros.message_types import MessageTypes, rclpy_message_types

UINT32_MAX = 2**32 - 1


def _flat_f32(values: np.ndarray, size: int, name: str) -> np.ndarray:
    """(size,) float32 C-contiguous copy of ``values`` (any shape with ``size`` elements)."""
    flat = np.array(values, dtype=np.float32, copy=True).reshape(-1)
    if flat.size != size:
        raise ValueError(f"HandEstimate.{name} needs {size} values, got shape {np.shape(values)}")
    return flat


def quaternion_xyzw(rotation: np.ndarray) -> np.ndarray:
    """3 x 3 (or N x 3 x 3) rotation matrix -> (4,) (or N x 4) unit quaternion, x y z w order
    (geometry_msgs/Quaternion and scipy order). scipy projects slightly non-orthonormal input
    onto the nearest rotation, so float32 matrices are fine."""
    return Rotation.from_matrix(np.asarray(rotation, dtype=np.float64)).as_quat()


def pose_msg(position: np.ndarray, rotation: np.ndarray, types: MessageTypes | None = None) -> Any:
    """geometry_msgs/Pose from a (3,) position (metres) and a 3 x 3 rotation matrix."""
    t = types or rclpy_message_types()
    x, y, z = (float(v) for v in np.asarray(position, dtype=np.float64).reshape(3))
    qx, qy, qz, qw = (float(v) for v in quaternion_xyzw(np.reshape(rotation, (3, 3))))
    return t.Pose(position=t.Point(x=x, y=y, z=z), orientation=t.Quaternion(x=qx, y=qy, z=qz, w=qw))


def wrist_pose(est: HandEstimate, types: MessageTypes | None = None) -> Any:
    """geometry_msgs/Pose: position = keypoints_3d[0] (metres), orientation = global_orient_matrix."""
    wrist = np.asarray(est.keypoints_3d, dtype=np.float64).reshape(-1, 3)[0]
    return pose_msg(wrist, est.global_orient_matrix, types)


def hand_estimate_to_msg(est: HandEstimate, header: Any, types: MessageTypes | None = None) -> Any:
    """Fill every HandMesh field from one HandEstimate.

    ``header`` (stamp and frame_id of the source image) is referenced, not copied: messages are
    serialised on publish, so sharing one Header between the hands of an array is safe.
    Raises ValueError when an array has the wrong number of values or the track id does not fit
    the message's uint32.
    """
    track_id = int(est.track_id)
    if not 0 <= track_id <= UINT32_MAX:
        raise ValueError(f"HandMesh.id is a uint32, got track_id={est.track_id}")
    vertices = np.asarray(est.vertices)
    if vertices.shape != (NUM_VERTICES, 3):
        raise ValueError(f"HandEstimate.vertices must be {NUM_VERTICES} x 3, got shape {vertices.shape}")
    t = types or rclpy_message_types()
    return t.HandMesh(
        header=header,
        id=track_id,
        side=int(Side.parse(est.side)),
        score=float(est.score),
        box=_flat_f32(est.box, 4, "box"),
        keypoints_3d=_flat_f32(est.keypoints_3d, NUM_JOINTS * 3, "keypoints_3d"),
        keypoints_2d=_flat_f32(est.keypoints_2d, NUM_JOINTS * 2, "keypoints_2d"),
        wrist_pose=wrist_pose(est, t),
        global_orient=_flat_f32(est.global_orient, 3, "global_orient"),
        hand_pose=_flat_f32(est.hand_pose, NUM_HAND_JOINTS * 3, "hand_pose"),
        betas=_flat_f32(est.betas, NUM_BETAS, "betas"),
        cam_t=_flat_f32(est.cam_t, 3, "cam_t"),
        vertices=t.float_sequence(vertices),
        intrinsics=est.intrinsics.as_array(),
        intrinsics_from_camera_info=bool(est.intrinsics.from_camera_info),
        depth_corrected=bool(est.depth_corrected),
    )


def estimates_to_array_msg(
    estimates: Sequence[HandEstimate], header: Any, types: MessageTypes | None = None
) -> Any:
    """HandMeshArray with one HandMesh per estimate (an empty ``hands`` list when none), every
    hand carrying the same ``header`` as the array."""
    t = types or rclpy_message_types()
    return t.HandMeshArray(header=header, hands=[hand_estimate_to_msg(est, header, t) for est in estimates])


@dataclass(frozen=True)
class HandMeshData:
    """One HandMesh message decoded into numpy arrays (all float32 copies, shapes as below)."""

    frame_id: str
    stamp_ns: int  # header stamp in nanoseconds
    id: int
    side: Side
    score: float
    box: np.ndarray  # (4,) XYXY pixels
    keypoints_3d: np.ndarray  # (21, 3) metres, camera optical frame
    keypoints_2d: np.ndarray  # (21, 2) pixels
    wrist_position: np.ndarray  # (3,) float64 metres
    wrist_quaternion_xyzw: np.ndarray  # (4,) float64
    global_orient: np.ndarray  # (3,) axis-angle
    hand_pose: np.ndarray  # (15, 3) axis-angle, MANO joint order
    betas: np.ndarray  # (10,)
    cam_t: np.ndarray  # (3,) metres
    vertices: np.ndarray  # (778, 3) metres, camera optical frame
    intrinsics: np.ndarray  # (4,) fx, fy, cx, cy
    intrinsics_from_camera_info: bool
    depth_corrected: bool


def _msg_f32(values: object, shape: tuple[int, ...], name: str) -> np.ndarray:
    """Copy of a message array field (numpy array or array.array) as float32 of ``shape``."""
    flat = np.array(values, dtype=np.float32, copy=True).reshape(-1)
    expected = int(np.prod(shape))
    if flat.size != expected:
        raise ValueError(f"HandMesh.{name} has {flat.size} values, expected {expected}")
    return flat.reshape(shape)


def hand_mesh_from_msg(msg: Any) -> HandMeshData:
    """Decode a HandMesh, rclpy's or rosbags' (inverse of ``hand_estimate_to_msg`` for every
    message field).

    Raises ValueError when ``vertices`` does not hold 778 x 3 values.
    """
    vertices = np.frombuffer(memoryview(msg.vertices).cast("B"), dtype=np.float32)
    if vertices.size != NUM_VERTICES * 3:
        raise ValueError(f"HandMesh.vertices has {vertices.size} values, expected {NUM_VERTICES * 3}")
    position = msg.wrist_pose.position
    orientation = msg.wrist_pose.orientation
    return HandMeshData(
        frame_id=msg.header.frame_id,
        stamp_ns=int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec),
        id=int(msg.id),
        side=Side.parse(int(msg.side)),
        score=float(msg.score),
        box=_msg_f32(msg.box, (4,), "box"),
        keypoints_3d=_msg_f32(msg.keypoints_3d, (NUM_JOINTS, 3), "keypoints_3d"),
        keypoints_2d=_msg_f32(msg.keypoints_2d, (NUM_JOINTS, 2), "keypoints_2d"),
        wrist_position=np.array([position.x, position.y, position.z]),
        wrist_quaternion_xyzw=np.array([orientation.x, orientation.y, orientation.z, orientation.w]),
        global_orient=_msg_f32(msg.global_orient, (3,), "global_orient"),
        hand_pose=_msg_f32(msg.hand_pose, (NUM_HAND_JOINTS, 3), "hand_pose"),
        betas=_msg_f32(msg.betas, (NUM_BETAS,), "betas"),
        cam_t=_msg_f32(msg.cam_t, (3,), "cam_t"),
        vertices=vertices.reshape(NUM_VERTICES, 3).copy(),
        intrinsics=_msg_f32(msg.intrinsics, (4,), "intrinsics"),
        intrinsics_from_camera_info=bool(msg.intrinsics_from_camera_info),
        depth_corrected=bool(msg.depth_corrected),
    )


def mesh_topology_msg(
    faces: np.ndarray, num_vertices: int = NUM_VERTICES, types: MessageTypes | None = None
) -> Any:
    """MeshTopology from F x 3 zero-based vertex indices (RIGHT-hand winding, as MANO stores it).

    Raises ValueError when ``faces`` is not F x 3 or an index is outside [0, num_vertices).
    """
    faces_arr = np.asarray(faces)
    if faces_arr.ndim != 2 or faces_arr.shape[1] != 3 or faces_arr.shape[0] == 0:
        raise ValueError(f"faces must be a non-empty F x 3 index array, got shape {faces_arr.shape}")
    if not np.issubdtype(faces_arr.dtype, np.integer):
        raise ValueError(f"faces must hold integer vertex indices, got dtype {faces_arr.dtype}")
    if faces_arr.min() < 0 or faces_arr.max() >= num_vertices:
        raise ValueError(
            f"face indices must lie in [0, {num_vertices}), got [{faces_arr.min()}, {faces_arr.max()}]"
        )
    t = types or rclpy_message_types()
    return t.MeshTopology(num_vertices=int(num_vertices), faces=t.uint32_sequence(faces_arr))


def faces_from_topology_msg(msg: Any) -> np.ndarray:
    """F x 3 int64 vertex indices from a MeshTopology (inverse of ``mesh_topology_msg``)."""
    flat = np.frombuffer(memoryview(msg.faces).cast("B"), dtype=np.uint32)
    if flat.size % 3 != 0:
        raise ValueError(f"MeshTopology.faces has {flat.size} indices, not a multiple of 3")
    faces = flat.reshape(-1, 3).astype(np.int64)
    if faces.size and faces.max() >= msg.num_vertices:
        raise ValueError(f"MeshTopology.faces index {faces.max()} >= num_vertices {msg.num_vertices}")
    return faces
