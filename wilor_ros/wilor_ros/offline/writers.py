"""Outputs of ``wilor-ros process``: the output bag, ``hands.npz`` and the overlay video.

Everything is first written into a hidden staging folder beside its final path
(``.<name>.partial-<pid>/<name>``) and moved only when the whole run succeeded (``Outputs.commit``):
an interrupted or failed run leaves no bag folder with a metadata.yaml and no ``hands.npz``
under the final names (``Outputs.discard`` removes the temporary ones).

The bag carries what the live node publishes, built by the node's own builders
(``ros/messages.py``, ``ros/teleop.py``, ``ros/tf.py``) on the rosbags classes: ``hands``
(HandMeshArray), ``teleop_hands`` (TeleopHandArray), ``/tf`` (TFMessage, 21 frames per hand) and
``hand_mesh_topology`` (MeshTopology, once, transient-local), every message at the log time of
its image and with the image's header (stamp and frame_id).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from wilor_ros.core.types import HandEstimate
from wilor_ros.offline import bagtypes
from wilor_ros.offline.store import HandStore
from wilor_ros.ros.messages import estimates_to_array_msg, mesh_topology_msg, quaternion_xyzw
from wilor_ros.ros.teleop import teleop_array_msg
from wilor_ros.ros.tf import TF_QOS_DEPTH, TF_TOPIC, hands_transforms

HANDS_TOPIC = "hands"
TELEOP_TOPIC = "teleop_hands"
TOPOLOGY_TOPIC = "hand_mesh_topology"
BAG_VERSION = 8  # rosbag2 metadata version (Iron and later read it; rosbags writes 8 or 9)
DATASET_SCHEMA_VERSION = 1


# ------------------------------------------------------------------------------ atomic outputs
class Outputs:
    """Final paths, their temporary twins, and a work folder for spilled data.

    Each output is written as ``<parent>/.<name>.partial-<pid>/<name>`` (a hidden staging folder
    beside the final path, so the inner name, e.g. the bag's storage file, is already final)
    and moved to ``<parent>/<name>`` by ``commit``.
    """

    def __init__(self, finals: list[Path], work_parent: Path) -> None:
        self.finals = [Path(p).absolute() for p in finals]
        existing = [str(p) for p in self.finals if p.exists()]
        if existing:
            raise ValueError(
                f"output already exists: {', '.join(existing)}; remove it or choose another --out"
            )
        tag = f"partial-{os.getpid()}"
        self.staging = {p: p.parent / f".{p.name}.{tag}" for p in self.finals}
        for folder in self.staging.values():
            folder.mkdir(parents=True, exist_ok=False)
        self.work = Path(work_parent) / f".wilor-process-work.{tag}"
        self.work.mkdir(parents=True, exist_ok=False)

    def temp(self, final: Path) -> Path:
        final = Path(final).absolute()
        return self.staging[final] / final.name

    def commit(self) -> None:
        """Move every output to its final name (the bag folder last)."""
        for final in sorted(self.finals, key=lambda p: p.suffix == ""):
            os.replace(self.temp(final), final)
        self.discard()

    def discard(self) -> None:
        """Remove the staging folders (and any output still in them) and the work folder."""
        for folder in [*self.staging.values(), self.work]:
            shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------------------ bag
def _qos(depth: int, transient_local: bool) -> Any:
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    unspecified = QosTime(sec=0, nsec=0)  # RMW_DURATION_UNSPECIFIED
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=depth,
        reliability=QosReliability.RELIABLE,
        durability=QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
        deadline=unspecified,
        lifespan=unspecified,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=unspecified,
        avoid_ros_namespace_conventions=False,
    )


class BagOutput:
    """A rosbag2 writer for the node's output topics plus copied input topics."""

    def __init__(
        self, path: Path, storage: str, faces: np.ndarray | None, frame_prefix: str, teleop: bool
    ) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}.get(storage)
        if plugin is None:
            raise ValueError(f"output storage must be 'mcap' or 'sqlite3', got {storage!r}")
        self.types = bagtypes.rosbags_message_types()
        self.store = bagtypes.typestore()
        self.writer = Writer(path, version=BAG_VERSION, storage_plugin=plugin)
        self.writer.open()
        self.faces = faces
        self.frame_prefix = frame_prefix
        self.teleop = teleop
        self.topology_written = False
        volatile = [_qos(10, False)]
        self.hands = self._add(HANDS_TOPIC, bagtypes.HAND_MESH_ARRAY, volatile)
        self.teleop_conn = self._add(TELEOP_TOPIC, bagtypes.TELEOP_HAND_ARRAY, volatile) if teleop else None
        self.tf = self._add(TF_TOPIC, bagtypes.TF_MESSAGE, [_qos(TF_QOS_DEPTH, False)])
        self.topology = (
            self._add(TOPOLOGY_TOPIC, bagtypes.MESH_TOPOLOGY, [_qos(1, True)]) if faces is not None else None
        )
        self.copies: dict[int, Any] = {}
        self.teleop_skipped = 0

    def _add(self, topic: str, msgtype: str, qos: list) -> Any:
        return self.writer.add_connection(topic, msgtype, typestore=self.store, offered_qos_profiles=qos)

    def add_copy(self, connection: Any) -> None:
        """Copy the messages of an input connection unchanged (same type, definition, QoS)."""
        msgdef = connection.msgdef.data if connection.msgdef.data else None
        digest = connection.digest or None
        store = None if msgdef and digest else self.store
        qos = list(getattr(connection.ext, "offered_qos_profiles", []) or [])
        self.copies[connection.id] = self.writer.add_connection(
            connection.topic,
            connection.msgtype,
            typestore=store,
            msgdef=msgdef if store is None else None,
            rihs01=digest if store is None else None,
            offered_qos_profiles=qos,
        )

    def copy(self, connection: Any, log_time_ns: int, raw: bytes) -> None:
        self.writer.write(self.copies[connection.id], log_time_ns, raw)

    def _write(self, connection: Any, log_time_ns: int, msg: Any) -> None:
        self.writer.write(connection, log_time_ns, self.store.serialize_cdr(msg, msg.__msgtype__))

    def write_frame(self, log_time_ns: int, stamp_ns: int, frame_id: str, hands: list[HandEstimate]) -> None:
        """The node's messages for one image (``hands`` ordered by track id)."""
        header = bagtypes.header(stamp_ns, frame_id)
        if self.topology is not None and not self.topology_written:
            self._write(
                self.topology, log_time_ns, mesh_topology_msg(np.asarray(self.faces), types=self.types)
            )
            self.topology_written = True
        self._write(self.hands, log_time_ns, estimates_to_array_msg(hands, header, self.types))
        if self.teleop_conn is not None:
            teleop, skipped = teleop_array_msg(hands, header, self.types)
            self.teleop_skipped += skipped
            self._write(self.teleop_conn, log_time_ns, teleop)
        if hands:
            transforms = hands_transforms(hands, header, self.frame_prefix, self.types)
            self._write(self.tf, log_time_ns, self.types.TFMessage(transforms=transforms))

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        self.writer.abort()


# ------------------------------------------------------------------------------ dataset
DATASET_ROW_FIELDS: dict[str, tuple[Any, tuple[int, ...]]] = {
    "frame": (np.int64, ()),  # row of the frames_* arrays
    "frame_index": (np.int64, ()),  # position in the input image stream
    "stamp_ns": (np.int64, ()),
    "track_id": (np.int64, ()),
    "side": (np.uint8, ()),  # 0 left, 1 right
    "score": (np.float32, ()),
    "box": (np.float32, (4,)),
    "global_orient": (np.float32, (3,)),
    "hand_pose": (np.float32, (15, 3)),
    "betas": (np.float32, (10,)),
    "cam_t": (np.float32, (3,)),
    "wrist_position": (np.float64, (3,)),
    "wrist_quaternion_xyzw": (np.float64, (4,)),
    "keypoints_3d": (np.float32, (21, 3)),
    "keypoints_2d": (np.float32, (21, 2)),
    "intrinsics": (np.float32, (4,)),
    "intrinsics_from_camera_info": (np.bool_, ()),
    "image_size": (np.int32, (2,)),
    "valid": (np.bool_, ()),
    "interpolated": (np.bool_, ()),
    "depth_corrected": (np.bool_, ()),
    "side_corrected": (np.bool_, ()),
}


class DatasetOutput:
    """Rows of ``hands.npz`` spilled to disk while the bag is written, saved at the end."""

    def __init__(self, work: Path) -> None:
        self.rows = HandStore(Path(work) / "dataset", DATASET_ROW_FIELDS)

    def add(
        self, frame_row: int, frame: np.void, hands: list[HandEstimate], flags: dict[str, np.ndarray]
    ) -> None:
        """One frame's hands (the estimates written to the bag) and their row flags."""
        if not hands:
            return
        count = len(hands)
        size = np.array([frame["width"], frame["height"]], np.int32)
        orients = np.stack([np.asarray(h.global_orient_matrix, np.float64) for h in hands])
        self.rows.append(
            {
                "frame": np.full(count, frame_row),
                "frame_index": np.full(count, frame["index"]),
                "stamp_ns": np.full(count, frame["stamp_ns"]),
                "track_id": np.array([h.track_id for h in hands]),
                "side": np.array([int(h.side) for h in hands]),
                "score": np.array([h.score for h in hands]),
                "box": np.stack([h.box for h in hands]),
                "global_orient": np.stack([h.global_orient for h in hands]),
                "hand_pose": np.stack([h.hand_pose for h in hands]),
                "betas": np.stack([h.betas for h in hands]),
                "cam_t": np.stack([h.cam_t for h in hands]),
                "wrist_position": np.stack([np.asarray(h.keypoints_3d[0], np.float64) for h in hands]),
                "wrist_quaternion_xyzw": quaternion_xyzw(orients).reshape(count, 4),
                "keypoints_3d": np.stack([h.keypoints_3d for h in hands]),
                "keypoints_2d": np.stack([h.keypoints_2d for h in hands]),
                "intrinsics": np.stack([h.intrinsics.as_array() for h in hands]),
                "intrinsics_from_camera_info": np.array([h.intrinsics.from_camera_info for h in hands]),
                "image_size": np.tile(size, (count, 1)),
                **flags,
            }
        )

    def save(self, path: Path, extra: dict[str, np.ndarray]) -> None:
        """Write the npz (arrays stream from the memmaps; nothing needs pickle to read)."""
        arrays = {name: self.rows.array(name) for name in DATASET_ROW_FIELDS}
        with open(path, "wb") as handle:  # a file object: np.savez would append ".npz" to a name
            np.savez(handle, **arrays, **extra)
        self.rows.close()


# ------------------------------------------------------------------------------ video
class VideoOutput:
    """The overlay (mesh, skeleton, side/score/id labels) of every processed frame as MP4."""

    def __init__(self, path: Path, fps: float, faces: np.ndarray | None, label: str | None) -> None:
        self.path = Path(path)
        self.fps = fps
        self.faces = faces
        self.label = label
        self._writer: Any = None

    def write(self, rgb: np.ndarray, hands: list[HandEstimate]) -> None:
        import cv2

        from wilor_ros.core.image.overlay import draw_hands

        overlay = draw_hands(rgb, hands, self.faces, label=self.label)
        if self._writer is None:
            height, width = overlay.shape[:2]
            self._writer = cv2.VideoWriter(
                str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (width, height)
            )
            if not self._writer.isOpened():
                raise RuntimeError(f"OpenCV cannot write MP4 video to {self.path} (no mp4v encoder?)")
        self._writer.write(cv2.cvtColor(overlay, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
