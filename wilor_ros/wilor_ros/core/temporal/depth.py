"""Metric distance from an aligned depth image.

A monocular reconstruction knows the hand's shape well but its distance only through the
crop scale and the focal length. With a depth image aligned to the colour image, each hand is
moved along the viewing ray through its wrist so that its joints agree with the measured
depth: the offset is the median over the projected joints of (measured depth - joint depth),
a statistic robust to joints hidden behind other objects or falling off the hand.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from wilor_ros.core.types import HandEstimate

# Depth is measured on the skin while joints lie inside the finger: a joint sits about half a
# finger thickness behind the visible surface.
SKIN_TO_JOINT_M = 0.008


@dataclass(frozen=True)
class DepthCorrectionConfig:
    min_valid_joints: int = 6  # fewer valid depth samples -> leave the hand unchanged
    window: int = 2  # half size of the square sampled around each projected joint (pixels)
    max_depth_m: float = 5.0  # larger readings are treated as invalid
    # reject corrections whose spread (median absolute deviation) says the samples disagree
    max_mad_m: float = 0.05


def sample_depth(depth_m: np.ndarray, points_px: np.ndarray, window: int, max_depth: float) -> np.ndarray:
    """Median valid depth in a (2 window + 1)^2 patch around each point.

    depth_m: H x W float32 metres (NaN or 0 = no measurement); points_px: N x 2 (u, v)
    -> N float64 metres (NaN where nothing valid was seen).
    """
    height, width = depth_m.shape
    out = np.full(len(points_px), np.nan)
    for i, (u, v) in enumerate(np.round(points_px).astype(int)):
        if not (0 <= u < width and 0 <= v < height):
            continue
        patch = depth_m[max(0, v - window) : v + window + 1, max(0, u - window) : u + window + 1]
        valid = patch[np.isfinite(patch) & (patch > 0) & (patch < max_depth)]
        if valid.size:
            out[i] = float(np.median(valid))
    return out


def correct_hand_depth(
    hand: HandEstimate, depth_m: np.ndarray, config: DepthCorrectionConfig | None = None
) -> HandEstimate | None:
    """The hand moved along its wrist ray to agree with ``depth_m``, flagged depth_corrected;
    None when the depth image does not support a correction (too few or inconsistent samples).

    depth_m must be aligned with the image the hand was estimated on (same size, same camera).
    """
    config = config or DepthCorrectionConfig()
    measured = sample_depth(depth_m, hand.keypoints_2d, config.window, config.max_depth_m)
    valid = np.isfinite(measured)
    if int(valid.sum()) < config.min_valid_joints:
        return None
    offsets = measured[valid] + SKIN_TO_JOINT_M - hand.keypoints_3d[valid, 2]
    offset = float(np.median(offsets))
    if float(np.median(np.abs(offsets - offset))) > config.max_mad_m:
        return None
    wrist = hand.keypoints_3d[0].astype(np.float64)
    if wrist[2] <= 0:
        return None
    # Scale the wrist's position along its ray so its depth changes by `offset`; translating
    # the whole hand by that vector keeps its metric shape and the wrist's projection.
    shift = (wrist * (offset / wrist[2])).astype(np.float32)
    return dataclasses.replace(
        hand,
        keypoints_3d=hand.keypoints_3d + shift,
        vertices=hand.vertices + shift,
        cam_t=hand.cam_t + shift,
        depth_corrected=True,
    )
