"""The rosbags typestore of ``wilor-ros process``: standard ROS 2 types plus ``wilor_msgs``.

rosbags ships the standard messages (sensor_msgs, geometry_msgs, tf2_msgs, ...); our own
``wilor_msgs`` are registered from their .msg files, looked up (first found wins):
1. ``$WILOR_MSGS_DIR`` (a folder of .msg files);
2. ``share/wilor_msgs/msg`` of every prefix on ``$AMENT_PREFIX_PATH`` (a sourced workspace) and of
   this Python's prefix (the venv of ``make setup`` installs the package there);
3. ``wilor_msgs/msg`` of the source tree this module lives in.
Registering the same text the ROS build compiled gives the same type hashes (RIHS01), so
``ros2 bag play`` of an output bag meets the node's own types.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from wilor_ros.ros.message_types import MessageTypes

WILOR_MSGS = "wilor_msgs"
SOURCE_MSG_DIR = Path(__file__).resolve().parents[3] / WILOR_MSGS / "msg"
# Humble's standard definitions: the same text (and hashes) as the later distributions for
# every type used here, and the oldest target this package supports.
STANDARD_STORE = "ROS2_HUMBLE"

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
HAND_DETECTION_ARRAY = "wilor_msgs/msg/HandDetectionArray"
HAND_MESH_ARRAY = "wilor_msgs/msg/HandMeshArray"
TELEOP_HAND_ARRAY = "wilor_msgs/msg/TeleopHandArray"
MESH_TOPOLOGY = "wilor_msgs/msg/MeshTopology"
TF_MESSAGE = "tf2_msgs/msg/TFMessage"


def msg_search_dirs() -> list[Path]:
    """Folders that may hold the wilor_msgs .msg files, in the order they are tried."""
    dirs = []
    if os.environ.get("WILOR_MSGS_DIR"):
        dirs.append(Path(os.environ["WILOR_MSGS_DIR"]))
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    prefixes.append(sys.prefix)
    dirs.extend(Path(p) / "share" / WILOR_MSGS / "msg" for p in prefixes)
    dirs.append(SOURCE_MSG_DIR)
    return dirs


def find_msg_dir() -> Path:
    """The first folder of ``msg_search_dirs`` with HandMesh.msg; RuntimeError when none."""
    for folder in msg_search_dirs():
        if (folder / "HandMesh.msg").is_file():
            return folder
    tried = "\n  ".join(str(d) for d in msg_search_dirs())
    raise RuntimeError(
        f"the wilor_msgs .msg files were not found; tried:\n  {tried}\n"
        "source the workspace that built wilor_msgs, or set WILOR_MSGS_DIR to its msg/ folder"
    )


@functools.cache
def typestore() -> Any:
    """A rosbags Typestore with the standard ROS 2 types and wilor_msgs (built once)."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(getattr(Stores, STANDARD_STORE))
    types: dict[str, Any] = {}
    for path in sorted(find_msg_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), f"{WILOR_MSGS}/msg/{path.stem}"))
    store.register(types)
    return store


def _flat(dtype: type) -> Any:
    def convert(values: np.ndarray) -> np.ndarray:
        # rosbags serialises primitive arrays from numpy arrays (lists are rejected)
        return np.ascontiguousarray(values, dtype=dtype).reshape(-1)

    return convert


@functools.cache
def rosbags_message_types() -> MessageTypes:
    """The rosbags classes for the shared message builders (``ros/messages.py`` ...)."""
    types = typestore().types
    return MessageTypes(
        Time=types["builtin_interfaces/msg/Time"],
        Header=types["std_msgs/msg/Header"],
        Point=types["geometry_msgs/msg/Point"],
        Quaternion=types["geometry_msgs/msg/Quaternion"],
        Pose=types["geometry_msgs/msg/Pose"],
        Vector3=types["geometry_msgs/msg/Vector3"],
        Transform=types["geometry_msgs/msg/Transform"],
        TransformStamped=types["geometry_msgs/msg/TransformStamped"],
        TFMessage=types[TF_MESSAGE],
        HandMesh=types["wilor_msgs/msg/HandMesh"],
        HandMeshArray=types[HAND_MESH_ARRAY],
        MeshTopology=types[MESH_TOPOLOGY],
        TeleopHand=types["wilor_msgs/msg/TeleopHand"],
        TeleopHandArray=types[TELEOP_HAND_ARRAY],
        float_sequence=_flat(np.float32),
        uint32_sequence=_flat(np.uint32),
    )


def header(stamp_ns: int, frame_id: str) -> Any:
    """A rosbags std_msgs/Header for a stamp in nanoseconds."""
    t = rosbags_message_types()
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return t.Header(stamp=t.Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def stamp_ns(msg_header: Any) -> int:
    """Nanoseconds of a Header's stamp (any message family)."""
    return int(msg_header.stamp.sec) * 1_000_000_000 + int(msg_header.stamp.nanosec)
