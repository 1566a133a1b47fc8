"""What the tracker keeps per hand and how it is configured: TrackerConfig, the per-track state
(Track: last estimate, constant-velocity wrist and box), the association plan of one frame
(TrackPlan) and the box helpers (IoU, keypoint box). The tracker itself is tracking.HandTracker."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wilor_ros.core.config import check_bounds, check_settings, setting
from wilor_ros.core.types import HandEstimate, Side

INFEASIBLE = 1e6  # cost of a gated-out pair; any real cost is a few units at most


@dataclass
class TrackerConfig:
    """Tracking parameters (see the module docstring for the cost and the life cycle)."""

    # ---- association cost and gates
    iou_weight: float = 1.0
    distance_weight: float = 1.0
    side_weight: float = 0.5
    max_wrist_distance_m: float = 0.15  # gate on the predicted 3D wrist (hands move < 5 m/s)
    min_iou: float = 0.0  # gate on the predicted box; 0 disables it (the 3D gate is stronger)
    # weight of the newest frame in the velocity estimates (exponential smoothing, in (0, 1])
    velocity_smoothing: float = 0.5
    max_prediction_s: float = 0.2  # constant-velocity extrapolation is capped to this horizon
    # ---- birth / death
    # 1, not the 3 of multi-object trackers: a teleoperation user needs the hand from its first
    # frame, and a one-frame false detection of the WiLoR detector at its 0.3 threshold is rare
    # (it is one published frame, then a dead track); raise it to hide those at a delay
    min_hits: int = setting(
        1,
        doc="frames a new hand must be seen before it is published (1: from its first frame; "
        "higher hides one-frame false detections at that many frames of delay)",
        minimum=1,
        maximum=30,
        live=True,
    )
    max_missed_frames: int = setting(
        5,
        doc="frames a tracked hand may go unseen before its track (and id) ends",
        minimum=0,
        maximum=300,
        live=True,
    )
    max_missed_s: float = 0.5  # ... or after this long without a match
    # ---- side hysteresis
    side_flip_frames: int = 3  # consecutive disagreeing frames needed to flip a track's side
    # ---- predicted boxes and re-detection
    box_margin: float = 0.2  # added on each side of the 2D keypoint box, fraction of its size
    min_box_size_px: float = 24.0  # predicted boxes are at least this wide and tall
    score_smoothing: float = 0.3  # weight of the newest score in a track's confidence
    min_track_score: float = 0.5  # below this confidence a track needs the detector
    min_keypoint_spread_px: float = 12.0  # a smaller 2D keypoint box means a dubious hand
    redetect_every_n_frames: int = setting(
        10,
        doc="with detector_skipping, run the detector at least every N frames (also when a track is "
        "lost or unsure)",
        minimum=1,
        maximum=1000,
        live=True,
    )

    def __post_init__(self) -> None:
        check_settings(self)
        check_bounds(self, ("iou_weight", "distance_weight", "side_weight", "min_iou", "box_margin"), 0.0)
        positive = ("max_wrist_distance_m", "max_prediction_s", "max_missed_s", "min_box_size_px")
        check_bounds(self, positive, 0.0, open_minimum=True)
        check_bounds(self, ("velocity_smoothing", "score_smoothing"), 0.0, 1.0, open_minimum=True)
        check_bounds(self, ("side_flip_frames",), 1)


@dataclass(frozen=True)
class TrackPlan:
    """How one frame's estimates join the tracks (``HandTracker.plan``)."""

    matches: dict[int, int]  # estimate index -> index of the living track it continues
    sides: list[Side]  # the side each estimate must be reconstructed with and published as
    stamp: float
    from_detector: bool


def side_vote(estimate: HandEstimate, from_detector: bool) -> Side | None:
    """The detector's side evidence of an estimate (None on frames run from predicted boxes)."""
    if not from_detector:
        return None
    return Side.parse(estimate.side if estimate.detected_side is None else estimate.detected_side)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of XYXY boxes: a is A x 4, b is B x 4; returns A x B."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def keypoint_box(keypoints_2d: np.ndarray, margin: float, min_size: float) -> np.ndarray:
    """(4,) XYXY box around 21 x 2 pixel keypoints, grown by ``margin`` x its size on each side
    (keypoints lie inside the hand: the skin and palm edge stick out) and at least
    ``min_size`` wide and tall."""
    kp = np.asarray(keypoints_2d, dtype=np.float64).reshape(-1, 2)
    lo, hi = kp.min(axis=0), kp.max(axis=0)
    center = 0.5 * (lo + hi)
    size = np.maximum((hi - lo) * (1.0 + 2.0 * margin), min_size)
    return np.concatenate([center - 0.5 * size, center + 0.5 * size])


@dataclass
class Track:
    wrist: np.ndarray  # (3,) metres
    center_2d: np.ndarray  # (2,) pixels, centroid of the 2D keypoints
    box: np.ndarray  # (4,) the last estimate's box
    last_stamp: float
    side: Side
    score: float
    estimate: HandEstimate
    track_id: int = 0  # 0 while tentative
    hits: int = 1
    missed: int = 0
    side_disagreements: int = 0
    wrist_velocity: np.ndarray = field(default_factory=lambda: np.zeros(3))
    center_velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))

    @property
    def confirmed(self) -> bool:
        return self.track_id > 0

    def horizon(self, stamp: float, cap: float) -> float:
        return float(np.clip(stamp - self.last_stamp, 0.0, cap))

    def predicted_wrist(self, stamp: float, cap: float) -> np.ndarray:
        return self.wrist + self.wrist_velocity * self.horizon(stamp, cap)

    def predicted_box(self, stamp: float, cap: float) -> np.ndarray:
        shift = self.center_velocity * self.horizon(stamp, cap)
        return self.box + np.concatenate([shift, shift])
