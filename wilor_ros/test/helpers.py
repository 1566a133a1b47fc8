"""Test helpers: random valid HandEstimates, an isolated rclpy session, and known-truth MANO hands
with an *oracle* network (a perfect reconstructor for hands whose truth is known)."""

from __future__ import annotations

import hashlib
import os
import random
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares
from scipy.spatial.transform import Rotation

from wilor_ros.core.backends.base import ReconstructorBackend, ReconstructorOutput
from wilor_ros.core.hand import camera
from wilor_ros.core.hand.constants import (
    CROP_SIZE,
    FOCAL_LENGTH,
    NUM_BETAS,
    NUM_HAND_JOINTS,
    NUM_JOINTS,
    NUM_VERTICES,
)
from wilor_ros.core.image import preprocessing
from wilor_ros.core.image.render import default_hand_orient, pose_mano
from wilor_ros.core.types import CameraIntrinsics, HandDetection, HandEstimate, Side

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


# ------------------------------------------------------------------------- known-truth hands
MIRROR_X = np.array([-1.0, 1.0, 1.0])


@dataclass
class TruthHand:
    """A hand in the scene: MANO model frame (right-hand geometry) plus a camera translation."""

    joints: np.ndarray  # 21 x 3, model frame (global orientation applied), right-hand geometry
    vertices: np.ndarray  # 778 x 3
    orient: np.ndarray  # 3 x 3
    pose: np.ndarray  # 15 x 3 x 3
    cam_t: np.ndarray  # (3,) metres
    side: Side = Side.RIGHT

    def mirror(self) -> np.ndarray:
        return MIRROR_X if self.side == Side.LEFT else np.ones(3)

    @property
    def joints_cam(self) -> np.ndarray:
        return self.joints * self.mirror() + self.cam_t

    @property
    def vertices_cam(self) -> np.ndarray:
        return self.vertices * self.mirror() + self.cam_t

    def box(self, intrinsics: CameraIntrinsics) -> np.ndarray:
        uv = camera.project_points(self.vertices_cam, intrinsics)
        return np.array([*uv.min(axis=0), *uv.max(axis=0)], dtype=np.float32)


def make_hand(mano_path: Path, cam_t, side: Side = Side.RIGHT, seed: int = 0) -> TruthHand:
    rng = np.random.default_rng(seed)
    orient = Rotation.from_rotvec(default_hand_orient()) * Rotation.from_euler("xyz", rng.normal(0, 0.3, 3))
    pose = rng.normal(0.0, 0.15, (15, 3))
    vertices, joints, _ = pose_mano(mano_path, orient.as_rotvec(), pose)
    return TruthHand(
        joints=joints,
        vertices=vertices,
        orient=orient.as_matrix(),
        pose=Rotation.from_rotvec(pose).as_matrix(),
        cam_t=np.asarray(cam_t, dtype=np.float64),
        side=side,
    )


def fit_crop_camera(
    hand: TruthHand, box: np.ndarray, intrinsics: CameraIntrinsics, rescale: float, crop_side: Side
) -> np.ndarray:
    """[s, tx, ty] of the 256-pixel crop camera (focal 5000) that best reprojects the hand's
    true keypoints into the (unmirrored) crop of ``box``, as a perfect network would regress.

    The geometry the pipeline will publish is the right-hand model mirrored when the crop was
    mirrored (``crop_side`` LEFT). A hand cropped with the wrong side gets the true hand's size
    (depth) and the image placement that best fits its mirror image: a network shown a mirrored
    hand still sees how big it is and where it lies, only the handedness is wrong."""
    geometry = preprocessing.crop_geometry(box, True, rescale)
    uv = camera.project_points(hand.joints_cam, intrinsics)
    crop_uv = (uv - geometry.box_center) * (CROP_SIZE / geometry.box_size)  # centred crop pixels

    def fit(model: np.ndarray, guess: np.ndarray, depth: float | None = None) -> np.ndarray:
        def residual(t: np.ndarray) -> np.ndarray:
            p = model + (t if depth is None else np.append(t, depth))
            return (FOCAL_LENGTH * p[:, :2] / p[:, 2:3] - crop_uv).ravel()

        t = least_squares(residual, guess if depth is None else guess[:2]).x
        return t if depth is None else np.append(t, depth)

    t = fit(hand.joints * hand.mirror(), np.array([0.0, 0.0, 2.0 * FOCAL_LENGTH / CROP_SIZE / 0.5]))
    if crop_side != hand.side:
        t = fit(hand.joints * (MIRROR_X if crop_side == Side.LEFT else np.ones(3)), t, depth=float(t[2]))
    return np.array([2.0 * FOCAL_LENGTH / (CROP_SIZE * t[2]), t[0], t[1]])


def oracle_output(
    hand: TruthHand,
    detection: HandDetection,
    intrinsics: CameraIntrinsics,
    rescale: float,
    noise: np.ndarray | None = None,
    depth_scale: float = 1.0,
    fail: bool = False,
) -> dict[str, np.ndarray]:
    """What a perfect network returns for the crop of ``detection`` around ``hand``: the true
    right-hand geometry (model frame) and the crop camera that best explains the hand in the
    crop. A crop taken for the wrong side gets the un-mirrored truth, which the pipeline then
    mirrors: a mirror-wrong hand, placed where its mirror image fits best (``fit_crop_camera``),
    as a real network would produce.

    noise: (3,) metres added to every joint and vertex; depth_scale > 1: the hand looks further
    away; fail: NaN joints (a lost hand).
    """
    cam = fit_crop_camera(hand, detection.box, intrinsics, rescale, detection.side)
    cam[0] /= depth_scale
    # the network sees left hands mirrored: right-hand geometry and a mirrored tx
    cam[1] *= 1.0 if detection.side == Side.RIGHT else -1.0
    shift = np.zeros(3) if noise is None else np.asarray(noise, np.float64)
    joints = hand.joints + shift
    return {
        "pred_cam": cam,
        "global_orient": hand.orient,
        "hand_pose": hand.pose,
        "betas": np.zeros(NUM_BETAS),
        "keypoints_3d": joints * np.nan if fail else joints,
        "vertices": hand.vertices + shift,
        "keypoints_2d": np.zeros((NUM_JOINTS, 2)),
        "cam_t": camera.crop_camera_translation(cam[None])[0],
    }


def stack_outputs(outputs: list[dict[str, np.ndarray]]) -> ReconstructorOutput:
    """One ReconstructorOutput (float32) of per-crop ``oracle_output`` dicts (may be empty)."""
    if not outputs:
        return ReconstructorOutput.empty()
    return ReconstructorOutput(
        **{name: np.asarray([o[name] for o in outputs], np.float32) for name in ReconstructorOutput.names()}
    )


class CropOracleBackend(ReconstructorBackend):
    """An oracle network that recognises its crops: ``register`` the crop of each (image, box,
    side) the pipeline will see with the hand's truth; ``infer`` answers each crop from that
    table (keyed by the crop's bytes) with ``oracle_output``, plus noise of ``noise_m`` metres
    (per-axis standard deviation) drawn from the crop's key, so a crop always gets the same
    answer. An unknown crop is an error."""

    name = "crop-oracle"

    def __init__(self, rescale: float, noise_m: float = 0.0) -> None:
        self.rescale = rescale
        self.noise_m = noise_m
        self.table: dict[bytes, tuple[TruthHand, HandDetection, CameraIntrinsics]] = {}
        self.calls: list[int] = []  # crops per infer call

    def register(
        self, rgb: np.ndarray, detection: HandDetection, hand: TruthHand, intrinsics: CameraIntrinsics
    ) -> None:
        crop = preprocessing.crop_hands(rgb, [detection], self.rescale).crops[0]
        self.table[crop.tobytes()] = (hand, detection, intrinsics)

    def infer(self, crops: np.ndarray) -> ReconstructorOutput:
        self.calls.append(len(crops))
        outputs = []
        for crop in np.asarray(crops, np.float32):
            key = crop.tobytes()
            if key not in self.table:
                raise AssertionError("the oracle was asked about a crop it does not know")
            hand, detection, intrinsics = self.table[key]
            seed = int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "little")  # per crop
            noise = np.random.default_rng(seed).normal(0.0, self.noise_m, 3)
            outputs.append(oracle_output(hand, detection, intrinsics, self.rescale, noise))
        return stack_outputs(outputs)
