"""Test helpers for the ROS adapter tests: random valid HandEstimates and an isolated rclpy session."""

from __future__ import annotations

import os
import random
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
from scipy.spatial.transform import Rotation

from wilor_ros.core.constants import NUM_BETAS, NUM_HAND_JOINTS, NUM_JOINTS, NUM_VERTICES
from wilor_ros.core.types import CameraIntrinsics, HandEstimate, Side

# Fast DDS derives its ports from the domain id; ids above 232 overflow its port range.
MAX_DOMAIN_ID = 232
WAIT_TIMEOUT_S = 20.0  # generous: discovery on a loaded 2-core machine can take seconds
SPIN_PERIOD_S = 0.05


def random_hand_estimate(
    rng: np.random.Generator, side: Side = Side.RIGHT, track_id: int = 0
) -> HandEstimate:
    """A HandEstimate with every array of the right shape and distinct random values.

    Rotations are proper (scipy Rotation.random); positions lie about 0.5 m in front of the
    camera; the matrices agree with the axis-angle fields.
    """
    seed = int(rng.integers(0, 2**31 - 1))
    global_rot = Rotation.random(random_state=seed)
    hand_pose = Rotation.random(NUM_HAND_JOINTS, random_state=seed + 1)
    joint_rots = Rotation.random(NUM_JOINTS, random_state=seed + 2)
    cam_t = np.array([0.05, -0.02, 0.5], dtype=np.float32) + rng.normal(0, 0.02, 3).astype(np.float32)
    keypoints_3d = (cam_t + rng.normal(0, 0.05, (NUM_JOINTS, 3))).astype(np.float32)
    vertices = (cam_t + rng.normal(0, 0.05, (NUM_VERTICES, 3))).astype(np.float32)
    x1, y1 = rng.uniform(0, 300, 2)
    box = np.array([x1, y1, x1 + rng.uniform(50, 200), y1 + rng.uniform(50, 200)], dtype=np.float32)
    return HandEstimate(
        box=box,
        score=float(rng.uniform(0.3, 1.0)),
        side=side,
        keypoints_3d=keypoints_3d,
        keypoints_2d=rng.uniform(0, 640, (NUM_JOINTS, 2)).astype(np.float32),
        vertices=vertices,
        global_orient=global_rot.as_rotvec().astype(np.float32),
        hand_pose=hand_pose.as_rotvec().astype(np.float32),
        global_orient_matrix=global_rot.as_matrix().astype(np.float32),
        hand_pose_matrix=hand_pose.as_matrix().astype(np.float32),
        betas=rng.normal(0, 1, NUM_BETAS).astype(np.float32),
        cam_t=cam_t,
        joint_rotations=joint_rots.as_matrix().astype(np.float32),
        intrinsics=CameraIntrinsics(
            fx=float(rng.uniform(400, 900)),
            fy=float(rng.uniform(400, 900)),
            cx=float(rng.uniform(300, 340)),
            cy=float(rng.uniform(220, 260)),
            from_camera_info=bool(rng.integers(0, 2)),
        ),
        track_id=track_id,
        depth_corrected=bool(rng.integers(0, 2)),
    )


@contextmanager
def ros_context() -> Iterator[object]:
    """An rclpy Context of its own on a random DDS domain, discovery limited to this host.

    Using a private Context (not the global one) and domain keeps these tests from talking to
    other processes' ROS graphs; the context is shut down on exit.
    """
    import rclpy

    # Discovery on this host only (Iron+ variable; Humble reads ROS_LOCALHOST_ONLY instead).
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=random.randint(1, MAX_DOMAIN_ID))
    try:
        yield context
    finally:
        context.try_shutdown()


def spin_until(executor: object, condition: Callable[[], bool], timeout_s: float = WAIT_TIMEOUT_S) -> bool:
    """spin_once until ``condition()`` holds; False when ``timeout_s`` passed first."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        executor.spin_once(timeout_sec=SPIN_PERIOD_S)
    return True


def import_blocker_source(blocked: Sequence[str]) -> str:
    """Python source that makes every import of the ``blocked`` top-level packages fail, as on a
    machine without them; put it first in a ``python -c`` script. BLOCKED is defined for the script."""
    return textwrap.dedent(
        f"""
        import sys

        BLOCKED = {tuple(blocked)!r}

        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError(f"{{name}} is blocked in this test")
                return None

        sys.meta_path.insert(0, Blocker())
        """
    )
