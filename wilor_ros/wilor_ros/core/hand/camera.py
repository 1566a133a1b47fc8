"""Camera conversions: crop camera -> full-image camera, left-hand un-mirroring, projection.

Conventions (SPEC.md §6-7): camera optical frame (x right, y down, z forward), pixels (u, v) with
u along x. The network predicts a weak-perspective *crop camera* ``[s, tx, ty]`` for a virtual
256-pixel crop with focal ``constants.FOCAL_LENGTH``. The derivation of the conversion to a real
pinhole camera is in docs/camera.md.

Official sources (facts only): ``wilor/utils/renderer.py:cam_crop_to_full`` and ``demo.py``
(focal heuristic, left-hand sign flips, ``project_full_img``) at commit 819369a.
"""

from __future__ import annotations

import numpy as np

from wilor_ros.core.hand.constants import CROP_SIZE, FOCAL_LENGTH
from wilor_ros.core.types import CameraIntrinsics

# Official cam_crop_to_full adds this to b * s to avoid a division by zero.
CAM_SCALE_EPS = 1e-9
# Points at or behind this depth (metres) do not project (NaN pixels).
MIN_PROJECTION_DEPTH = 1e-9
# Left-hand mirror: x -> -x.
MIRROR = np.diag([-1.0, 1.0, 1.0])


def heuristic_focal(width: int, height: int) -> float:
    """Official demo focal for a W x H image: 5000 / 256 * max(W, H) pixels."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got width={width}, height={height}")
    return FOCAL_LENGTH / CROP_SIZE * float(max(width, height))


def heuristic_intrinsics(width: int, height: int) -> CameraIntrinsics:
    """The official demo's camera for a W x H image: focal :func:`heuristic_focal` in both axes,
    principal point at (W/2, H/2) (``demo.py``/``cam_crop_to_full`` use W/2, not (W-1)/2)."""
    focal = heuristic_focal(width, height)
    return CameraIntrinsics(focal, focal, width / 2.0, height / 2.0, from_camera_info=False)


def crop_camera_translation(pred_cam: np.ndarray) -> np.ndarray:
    """B x 3 crop cameras [s, tx, ty] -> B x 3 translations (tx, ty, 2 f / (256 s)) in the virtual
    crop camera (focal 5000, principal point (128, 128)); official ``pred_cam_t``."""
    cam = _as_cams(pred_cam)
    depth = 2.0 * FOCAL_LENGTH / (CROP_SIZE * cam[:, 0] + CAM_SCALE_EPS)
    return np.stack([cam[:, 1], cam[:, 2], depth], axis=-1)


def cam_crop_to_full(
    pred_cam: np.ndarray,
    box_center: np.ndarray,
    box_size: np.ndarray,
    image_size: tuple[int, int] | np.ndarray,
    intrinsics: CameraIntrinsics | None = None,
) -> np.ndarray:
    """Crop cameras -> translations in the full-image camera (metres), B x 3 float64.

    pred_cam: B x 3 [s, tx, ty], already sign-corrected for left hands (:func:`unmirror_cam`).
    box_center: B x 2 unmirrored crop centres (pixels). box_size: (B,) crop sides S (pixels).
    image_size: (W, H); used only when ``intrinsics`` is None (then the official heuristic).

    With d = S s + 1e-9, f_m = sqrt(fx fy) (= fx when fx == fy):
        t_z = 2 f_m / d
        t_x = (f_m / fx) (tx + 2 (c_x - p_x) / d)
        t_y = (f_m / fy) (ty + 2 (c_y - p_y) / d)
    where (c_x, c_y) is the box centre and (p_x, p_y) the principal point. With the heuristic
    intrinsics this is exactly the official formula (F = fx = fy, p = (W/2, H/2)). The model
    origin reprojects exactly to where the crop camera puts it, and the hand's projected size
    matches in the geometric-mean sense when fx != fy (docs/camera.md).
    """
    cam = _as_cams(pred_cam)
    count = cam.shape[0]
    center = np.asarray(box_center, dtype=np.float64).reshape(-1, 2)
    size = np.asarray(box_size, dtype=np.float64).reshape(-1)
    if center.shape[0] != count or size.shape[0] != count:
        raise ValueError(
            f"pred_cam ({count}), box_center ({center.shape[0]}) and box_size ({size.shape[0]}) "
            "need the same number of hands"
        )
    if intrinsics is None:
        width, height = (int(v) for v in np.asarray(image_size).reshape(-1)[:2])
        intrinsics = heuristic_intrinsics(width, height)
    fx, fy = float(intrinsics.fx), float(intrinsics.fy)
    f_mean = fx if fx == fy else float(np.sqrt(fx * fy))
    denom = size * cam[:, 0] + CAM_SCALE_EPS
    t_z = 2.0 * f_mean / denom
    t_x = (cam[:, 1] + 2.0 * (center[:, 0] - intrinsics.cx) / denom) * (f_mean / fx)
    t_y = (cam[:, 2] + 2.0 * (center[:, 1] - intrinsics.cy) / denom) * (f_mean / fy)
    return np.stack([t_x, t_y, t_z], axis=-1)


def full_to_crop_cam(
    cam_t: np.ndarray, box_center: np.ndarray, box_size: np.ndarray, intrinsics: CameraIntrinsics
) -> np.ndarray:
    """Inverse of :func:`cam_crop_to_full` (ignoring its 1e-9): B x 3 translations -> B x 3
    crop cameras [s, tx, ty] for the given crops. Useful to re-crop a tracked hand."""
    t = np.asarray(cam_t, dtype=np.float64).reshape(-1, 3)
    center = np.asarray(box_center, dtype=np.float64).reshape(-1, 2)
    size = np.asarray(box_size, dtype=np.float64).reshape(-1)
    fx, fy = float(intrinsics.fx), float(intrinsics.fy)
    f_mean = fx if fx == fy else float(np.sqrt(fx * fy))
    denom = 2.0 * f_mean / t[:, 2]
    scale = denom / size
    tx = t[:, 0] * fx / f_mean - 2.0 * (center[:, 0] - intrinsics.cx) / denom
    ty = t[:, 1] * fy / f_mean - 2.0 * (center[:, 1] - intrinsics.cy) / denom
    return np.stack([scale, tx, ty], axis=-1)


# ---------------------------------------------------------------------------------------- left hands
def side_signs(is_right: np.ndarray) -> np.ndarray:
    """(B,) bool/0-1 -> (B,) float: +1 for right hands, -1 for left (official ``2 right - 1``)."""
    return 2.0 * np.asarray(is_right, dtype=np.float64).reshape(-1) - 1.0


def unmirror_cam(pred_cam: np.ndarray, is_right: np.ndarray) -> np.ndarray:
    """B x 3 crop cameras: flip tx of left hands (their crops were mirrored). Returns a copy."""
    cam = np.array(pred_cam, copy=True)
    cam[:, 1] = cam[:, 1] * side_signs(is_right).astype(cam.dtype)
    return cam


def unmirror_points(points: np.ndarray, is_right: np.ndarray) -> np.ndarray:
    """B x N x 3 model-frame points (vertices/joints): x -> -x for left hands. Returns a copy."""
    out = np.array(points, copy=True)
    out[..., 0] = out[..., 0] * side_signs(is_right).astype(out.dtype)[:, None]
    return out


def mirror_rotations(rotations: np.ndarray) -> np.ndarray:
    """... x 3 x 3 rotations R -> M R M with M = diag(-1, 1, 1) (a new array).

    A mesh posed by R in the mirrored crop becomes, after x -> -x, the mirror-image hand posed by
    M R M (applied to the mirrored template M p: M R p = (M R M)(M p)). The official demo leaves
    rotations mirrored; our HandEstimate rotations must agree with the un-mirrored mesh. Mirroring
    is its own inverse, and it keeps det = +1 (a proper rotation).
    """
    rot = np.asarray(rotations)
    if rot.shape[-2:] != (3, 3):
        raise ValueError(f"expected ... x 3 x 3 rotation matrices, got shape {rot.shape}")
    out = rot.copy()
    # M R M negates exactly the entries with one index 0: (0,1), (0,2), (1,0), (2,0).
    out[..., 0, 1:] *= -1
    out[..., 1:, 0] *= -1
    return out


def mirror_axis_angle(axis_angle: np.ndarray) -> np.ndarray:
    """... x 3 axis-angle vectors: (x, y, z) -> (x, -y, -z), the axis-angle form of M R M."""
    aa = np.array(axis_angle, copy=True)
    if aa.shape[-1] != 3:
        raise ValueError(f"expected ... x 3 axis-angle vectors, got shape {aa.shape}")
    aa[..., 1:] *= -1
    return aa


# ---------------------------------------------------------------------------------------- projection
def project_points(points: np.ndarray, intrinsics: CameraIntrinsics) -> np.ndarray:
    """... x 3 camera-frame points (metres) -> ... x 2 pixels (u, v), float64.

    u = fx X / Z + cx, v = fy Y / Z + cy; points with Z <= 1e-9 give NaN (not visible).
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.shape[-1] != 3:
        raise ValueError(f"expected ... x 3 points, got shape {pts.shape}")
    depth = pts[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_depth = np.where(depth > MIN_PROJECTION_DEPTH, 1.0 / depth, np.nan)
    u = intrinsics.fx * pts[..., 0] * inv_depth + intrinsics.cx
    v = intrinsics.fy * pts[..., 1] * inv_depth + intrinsics.cy
    return np.stack([u, v], axis=-1)


def _as_cams(pred_cam: np.ndarray) -> np.ndarray:
    cam = np.asarray(pred_cam, dtype=np.float64)
    if cam.ndim != 2 or cam.shape[1] != 3:
        raise ValueError(f"expected B x 3 crop cameras [s, tx, ty], got shape {cam.shape}")
    return cam
