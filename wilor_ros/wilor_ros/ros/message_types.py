"""The message classes the output builders fill: rclpy's (the node) or rosbags' (offline).

``ros/messages.py``, ``ros/teleop.py`` and ``ros/tf.py`` hold the ONE mapping from
``HandEstimate`` to message fields. They build every message through a ``MessageTypes`` with
keyword arguments, which both families of classes accept: the rosidl-generated rclpy classes
(every field optional) and the rosbags classes (dataclasses that need every field). This module
imports no ROS package at import time, so the builders also run where no ROS is installed
(``wilor_ros.offline`` writes bags with rosbags there).

Unbounded primitive arrays differ between the two: rclpy stores them as ``array.array`` (and
takes one without per-element checks), rosbags serialises numpy arrays. ``float_sequence`` and
``uint32_sequence`` turn a numpy array into what the message class wants.
"""

from __future__ import annotations

import array
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class MessageTypes:
    """Message classes by their short ROS name plus the unbounded-array converters."""

    Time: Any  # builtin_interfaces/Time
    Header: Any  # std_msgs/Header
    Point: Any  # geometry_msgs/Point
    Quaternion: Any  # geometry_msgs/Quaternion
    Pose: Any  # geometry_msgs/Pose
    Vector3: Any  # geometry_msgs/Vector3
    Transform: Any  # geometry_msgs/Transform
    TransformStamped: Any  # geometry_msgs/TransformStamped
    TFMessage: Any  # tf2_msgs/TFMessage
    HandMesh: Any
    HandMeshArray: Any
    MeshTopology: Any
    TeleopHand: Any
    TeleopHandArray: Any
    float_sequence: Callable[[np.ndarray], Any]  # float32[] field value (flat, row-major)
    uint32_sequence: Callable[[np.ndarray], Any]  # uint32[] field value (flat, row-major)


def _array_of(typecode: str, dtype: type) -> Callable[[np.ndarray], array.array]:
    def convert(values: np.ndarray) -> array.array:
        # frombytes reads the numpy buffer in one copy; rosidl keeps an array.array of the right
        # typecode as is (measured 1 us vs 0.17 ms element by element for 2334 floats)
        out = array.array(typecode)
        out.frombytes(memoryview(np.ascontiguousarray(values, dtype=dtype)).cast("B"))
        return out

    return convert


@functools.cache
def rclpy_message_types() -> MessageTypes:
    """The rosidl-generated classes (needs the ROS message packages: a sourced ROS 2 or the
    wheels of ``make setup``)."""
    from builtin_interfaces.msg import Time
    from geometry_msgs.msg import Point, Pose, Quaternion, Transform, TransformStamped, Vector3
    from std_msgs.msg import Header
    from tf2_msgs.msg import TFMessage

    from wilor_msgs.msg import HandMesh, HandMeshArray, MeshTopology, TeleopHand, TeleopHandArray

    return MessageTypes(
        Time=Time,
        Header=Header,
        Point=Point,
        Quaternion=Quaternion,
        Pose=Pose,
        Vector3=Vector3,
        Transform=Transform,
        TransformStamped=TransformStamped,
        TFMessage=TFMessage,
        HandMesh=HandMesh,
        HandMeshArray=HandMeshArray,
        MeshTopology=MeshTopology,
        TeleopHand=TeleopHand,
        TeleopHandArray=TeleopHandArray,
        float_sequence=_array_of("f", np.float32),
        uint32_sequence=_array_of("I", np.uint32),
    )
