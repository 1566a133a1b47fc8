"""Training crops with augmentation, applied consistently to the image and every label.

Geometry (our implementation of the official training crop, facts from WiLoR/HaMeR
``datasets/utils.py``: ``do_augmentation``, ``get_example``, ``keypoint_3d_processing``, ``rot_aa``):

* the box centre c and square side S come from core/preprocessing.crop_geometry (3:4 aspect widening);
* augmentation draws a scale s, an in-plane rotation r (degrees), a translation (tx, ty) in units of S,
  a per-channel colour gain and, optionally, a horizontal flip and an "extreme" (partial-hand) crop;
* left hands are always mirrored, so the network sees a right-looking hand (SPEC 2.3); a random flip
  (off by default) toggles that;
* one 2 x 3 affine maps ORIGINAL image pixels to crop pixels:
  ``A = T(out/2) . (out / (s S)) . R(-r) . T(-c') . F`` with F the mirror x -> W - 1 - x when flipped and
  c' the (mirrored) centre; the image is warped with it (cv2.warpAffine, bilinear, black border) and the
  2D keypoints are mapped with the very same matrix, then normalised as ``p / out - 0.5``
  (crop-normalised units, as ``pred_keypoints_2d``);
* 3D keypoints and the MANO global orientation get the same in-plane rotation about the optical axis,
  ``R3 = [[R(-r), 0], [0, 1]]`` (after the mirror x -> -x for flipped hands; MANO axis-angles of a mirrored
  hand have their y and z components negated). The finger pose is local and only mirrored.

No anti-alias pre-blur is applied, as in the official training path (``use_skimage_antialias`` off).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from wilor_ros.core.hand.constants import CROP_SIZE, FINGERTIP_JOINTS, NUM_JOINTS
from wilor_ros.core.hand.geometry import axis_angle_to_rotmat_np, rotmat_to_axis_angle_np
from wilor_ros.core.image.preprocessing import normalize_patches
from wilor_ros.tools.train.config import AugmentConfig

ROT_CLIP_SIGMA = 2.0  # official: rotation = clip(N, -2, 2) * ROT_FACTOR
SCALE_CLIP_SIGMA = 1.0
TRANS_CLIP_SIGMA = 1.0
EXTREME_CROP_MARGIN = 1.2  # keypoint box enlargement of the partial crop (HaMeR get_bbox rescale)
EXTREME_CROP_MIN_SIDE = 4.0  # pixels; smaller partial crops are skipped (official THRESH)
MIN_VISIBLE_FOR_EXTREME = 2
PIXEL_MAX = 255.0
# Keypoint groups of the OpenPose hand order used by the partial crop: wrist, then the four joints of
# each finger (thumb, index, middle, ring, pinky).
FINGER_JOINTS = tuple(tuple(range(tip - 3, tip + 1)) for tip in FINGERTIP_JOINTS)


@dataclass(frozen=True)
class AugmentParams:
    """One draw of augmentation parameters (identity: scale 1, rotation 0, no flip, gain 1)."""

    scale: float = 1.0
    rotation_deg: float = 0.0
    tx: float = 0.0
    ty: float = 0.0
    flip: bool = False
    extreme_crop: bool = False
    colour_gain: tuple[float, float, float] = (1.0, 1.0, 1.0)


def sample_augment(cfg: AugmentConfig, rng: np.random.Generator) -> AugmentParams:
    """Draw parameters with the official distributions (see AugmentConfig)."""
    if not cfg.enabled:
        return AugmentParams()
    tx = float(np.clip(rng.standard_normal(), -TRANS_CLIP_SIGMA, TRANS_CLIP_SIGMA) * cfg.trans_factor)
    ty = float(np.clip(rng.standard_normal(), -TRANS_CLIP_SIGMA, TRANS_CLIP_SIGMA) * cfg.trans_factor)
    jitter = np.clip(rng.standard_normal(), -SCALE_CLIP_SIGMA, SCALE_CLIP_SIGMA)
    scale = float(jitter * cfg.scale_factor + 1.0)
    rot = 0.0
    if rng.random() <= cfg.rot_rate:
        rot = float(np.clip(rng.standard_normal(), -ROT_CLIP_SIGMA, ROT_CLIP_SIGMA) * cfg.rot_factor)
    flip = bool(cfg.flip and rng.random() <= cfg.flip_rate)
    extreme = bool(rng.random() < cfg.extreme_crop_rate)
    low, high = 1.0 - cfg.colour_scale, 1.0 + cfg.colour_scale
    gain = tuple(float(g) for g in rng.uniform(low, high, size=3))
    return AugmentParams(scale, rot, tx, ty, flip, extreme, gain)  # type: ignore[arg-type]


def extreme_crop_box(keypoints_2d: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float] | None:
    """Partial-hand crop: centre (2,) and side of 1.2 x the box of the wrist plus a random non-empty
    subset of the fingers' visible keypoints (21 x 3 pixels + confidence). None when too few are visible.

    Our hand version of HaMeR's body "extreme cropping" (which crops to body-part subsets).
    """
    keep = [0]
    fingers = rng.permutation(len(FINGER_JOINTS))[: int(rng.integers(1, len(FINGER_JOINTS)))]
    for finger in fingers:
        keep.extend(FINGER_JOINTS[int(finger)])
    points = keypoints_2d[keep]
    points = points[points[:, 2] > 0, :2]
    if len(points) < MIN_VISIBLE_FOR_EXTREME:
        return None
    low, high = points.min(axis=0), points.max(axis=0)
    side = float(np.max(high - low) * EXTREME_CROP_MARGIN)
    if side < EXTREME_CROP_MIN_SIDE:
        return None
    return ((low + high) / 2.0).astype(np.float64), side


def crop_affine_augmented(
    center: np.ndarray,
    side: float,
    image_width: int,
    rotation_deg: float,
    flip: bool,
    out_size: int = CROP_SIZE,
) -> np.ndarray:
    """2 x 3 float64 affine from ORIGINAL image pixels to crop pixels (module docstring formula).

    center: (2,) crop centre in original pixels (unmirrored); side: source square side in pixels.
    """
    if not side > 0:
        raise ValueError(f"crop side must be positive, got {side}")
    cx, cy = float(center[0]), float(center[1])
    mirror = np.eye(3)
    if flip:
        mirror = np.array([[-1.0, 0.0, image_width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        cx = image_width - 1.0 - cx
    theta = np.deg2rad(-rotation_deg)
    cos, sin = np.cos(theta), np.sin(theta)
    k = out_size / side
    linear = k * np.array([[cos, -sin], [sin, cos]])
    affine = np.eye(3)
    affine[:2, :2] = linear
    affine[:2, 2] = np.array([out_size / 2.0, out_size / 2.0]) - linear @ np.array([cx, cy])
    return (affine @ mirror)[:2]


def in_plane_rotation(rotation_deg: float) -> np.ndarray:
    """3 x 3 rotation about the optical axis matching the crop's image rotation (R(-r) on x, y)."""
    theta = np.deg2rad(-rotation_deg)
    cos, sin = np.cos(theta), np.sin(theta)
    return np.array([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])


def mirror_axis_angle(axis_angle: np.ndarray) -> np.ndarray:
    """... x 3 axis-angles of a hand mirrored in x (y and z components negated)."""
    out = np.array(axis_angle, dtype=np.float64, copy=True)
    out[..., 1:] *= -1.0
    return out


@dataclass
class AugmentedSample:
    """One network input with its transformed labels.

    img: 3 x out x out float32 normalised RGB; keypoints_2d: 21 x 3 (crop-normalised x, y, confidence);
    keypoints_3d: 21 x 4 (metres, rotated/mirrored like the crop, confidence); global_orient (3,) and
    hand_pose (45,) axis-angle of the right-hand view; betas (10,); affine: 2 x 3 original px -> crop px;
    flipped: whether the crop is mirrored.
    """

    img: np.ndarray
    keypoints_2d: np.ndarray
    keypoints_3d: np.ndarray
    global_orient: np.ndarray
    hand_pose: np.ndarray
    betas: np.ndarray
    affine: np.ndarray
    flipped: bool


class HandLabels(Protocol):
    """The labels of one hand that cropping needs (``datasets.HandRecord`` is one)."""

    center: np.ndarray  # (2,) crop centre, source pixels
    side_px: float  # square crop side, source pixels (rescale applied)
    is_right: bool
    keypoints_2d: np.ndarray  # 21 x 3: pixels + confidence
    keypoints_3d: np.ndarray  # 21 x 4: metres (camera frame) + confidence
    mano_pose: np.ndarray  # (48,) axis-angle, global orient first, the hand's own side convention
    betas: np.ndarray  # (10,)


def make_training_example(
    image_rgb: np.ndarray,
    hand: HandLabels,
    params: AugmentParams,
    rng: np.random.Generator | None = None,
    out_size: int = CROP_SIZE,
) -> AugmentedSample:
    """Crop and augment one hand of ``image_rgb`` (H x W x 3 RGB uint8) with its labels.

    The labels of a left hand are expected in its own (left) convention; they are mirrored with the image.
    """
    center, side, is_right = hand.center, hand.side_px, hand.is_right
    keypoints_2d, keypoints_3d = np.asarray(hand.keypoints_2d), np.asarray(hand.keypoints_3d)
    mano_pose, betas = hand.mano_pose, hand.betas
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 RGB image, got {image_rgb.shape} {image_rgb.dtype}")
    if keypoints_2d.shape != (NUM_JOINTS, 3) or keypoints_3d.shape != (NUM_JOINTS, 4):
        raise ValueError(
            f"keypoints must be 21 x 3 (2D + conf) and 21 x 4 (3D + conf), got "
            f"{keypoints_2d.shape} and {keypoints_3d.shape}"
        )
    center = np.asarray(center, dtype=np.float64).reshape(2)
    if params.extreme_crop and rng is not None:
        partial = extreme_crop_box(keypoints_2d, rng)
        if partial is not None:
            center, side = partial
    center = center + side * np.array([params.tx, params.ty])
    flip = (not is_right) != params.flip
    width = image_rgb.shape[1]
    affine = crop_affine_augmented(center, side * params.scale, width, params.rotation_deg, flip, out_size)
    patch = cv2.warpAffine(
        image_rgb, affine, (out_size, out_size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
    ).astype(np.float32)
    if params.colour_gain != (1.0, 1.0, 1.0):
        patch = np.clip(patch * np.asarray(params.colour_gain, np.float32), 0.0, PIXEL_MAX)
    img = normalize_patches(patch)

    kp2d = np.array(keypoints_2d, dtype=np.float64, copy=True)
    kp2d[:, :2] = kp2d[:, :2] @ affine[:, :2].T + affine[:, 2]
    kp2d[:, :2] = kp2d[:, :2] / out_size - 0.5

    rot3 = in_plane_rotation(params.rotation_deg)
    kp3d = np.array(keypoints_3d, dtype=np.float64, copy=True)
    pose = np.asarray(mano_pose, dtype=np.float64).reshape(-1, 3)
    if flip:
        kp3d[:, 0] *= -1.0
        pose = mirror_axis_angle(pose)
    kp3d[:, :3] = kp3d[:, :3] @ rot3.T
    global_orient = rotmat_to_axis_angle_np(rot3 @ axis_angle_to_rotmat_np(pose[0]))
    return AugmentedSample(
        img=img,
        keypoints_2d=kp2d.astype(np.float32),
        keypoints_3d=kp3d.astype(np.float32),
        global_orient=global_orient.astype(np.float32),
        hand_pose=pose[1:].reshape(-1).astype(np.float32),
        betas=np.asarray(betas, dtype=np.float32).reshape(-1),
        affine=affine,
        flipped=flip,
    )
