"""Multi-hand tracking across frames: stable ids, side hysteresis, detector skipping.

``HandTracker.update`` associates this frame's reconstructed hands with the living tracks by
optimal assignment (Hungarian, ``scipy.optimize.linear_sum_assignment``) on the cost

    cost = iou_weight * (1 - IoU(predicted box, box))
         + distance_weight * |predicted wrist - wrist| / max_wrist_distance_m
         + side_weight * [side differs from the track's side]

where a track's box and 3D wrist are predicted to the frame's stamp with a constant-velocity
model. A pair whose predicted wrist is further than ``max_wrist_distance_m`` (or whose IoU is
below ``min_iou``) is never matched. The 3D wrist term is what separates two hands whose image
boxes overlap while they cross; the side term breaks the remaining ties.

Track life cycle:
* birth: a new hand opens a tentative track; it is confirmed (gets the next id, published)
  after ``min_hits`` consecutive matched frames. Ids start at 1 and are never reused.
* death: a tentative track dies at its first miss; a confirmed one after more than
  ``max_missed_frames`` missed frames or ``max_missed_s`` seconds without a match.
* side: a track's side flips only after ``side_flip_frames`` consecutive detector frames that
  all disagree with it, so one misclassified frame never flips it. The side must be decided
  BEFORE the hand is cropped, because a left hand is reconstructed from the mirrored crop: a
  hand relabelled after reconstruction would publish one side's geometry under the other side's
  label. Hence ``assign_sides`` (before cropping: matches the detections with the tracks by their
  2D boxes and gives each the side its track will have after this frame's vote, keeping the
  detector's call in ``detected_side``), ``plan`` (after reconstruction, with the 3D wrists: the
  side every estimate must carry; an estimate whose crop side differs is to be reconstructed
  again with that side, which ``TemporalHandPipeline`` does) and ``update``, which NEVER
  relabels: a published hand always carries the side its geometry was reconstructed for.

Detector skipping (MediaPipe-style): ``predict_boxes`` gives the next-frame box of each
confident track from its last 2D keypoints (their bounding box plus a margin, moved with the
keypoints' constant-velocity estimate); ``should_redetect`` says when the detector must run
again (periodically, when a track was lost, or when a track looks unreliable). New hands are
only found on detector frames.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy.optimize import linear_sum_assignment

from wilor_ros.core.temporal.tracks import (
    INFEASIBLE,
    Track,
    TrackerConfig,
    TrackPlan,
    box_iou,
    keypoint_box,
    side_vote,
)
from wilor_ros.core.types import HandDetection, HandEstimate, Side


class HandTracker:
    """Frame-to-frame association of ``HandEstimate``s with stable ids (see module docstring)."""

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config or TrackerConfig()
        self._tracks: list[Track] = []
        self._next_id = 1
        self._last_stamp: float | None = None
        self._frames_since_detection: int | None = None  # None: the detector never ran
        self._lost_since_detection = False
        self.redetect_reason = ""  # why the latest should_redetect() answered True

    # ---------------------------------------------------------------- state
    @property
    def active_track_ids(self) -> list[int]:
        """Ids of the confirmed living tracks (give them to ``HandFilter.retain``)."""
        return sorted(t.track_id for t in self._tracks if t.confirmed)

    def reset(self) -> None:
        """Drop every track (ids keep counting up: an id is never reused)."""
        self._tracks.clear()
        self._last_stamp = None
        self._frames_since_detection = None
        self._lost_since_detection = False

    # ---------------------------------------------------------------- association
    def _cost_matrix(
        self, boxes: np.ndarray, wrists: np.ndarray | None, sides: np.ndarray, stamp: float
    ) -> np.ndarray:
        """Tracks x hands association cost (``INFEASIBLE`` where gated out).

        boxes: N x 4 XYXY; wrists: N x 3 metres, or None before reconstruction, when the 3D term
        is replaced by the distance of the box centres relative to the predicted box's diagonal
        (gated at one diagonal); sides: N ints.
        """
        cfg = self.config
        cap = cfg.max_prediction_s
        cost = np.full((len(self._tracks), len(boxes)), INFEASIBLE)
        if not self._tracks or not len(boxes):
            return cost
        pred_boxes = np.stack([t.predicted_box(stamp, cap) for t in self._tracks])
        iou = box_iou(pred_boxes, boxes)
        if wrists is not None:
            pred_wrists = np.stack([t.predicted_wrist(stamp, cap) for t in self._tracks])
            distance = np.linalg.norm(pred_wrists[:, None, :] - wrists[None, :, :], axis=-1)
            relative = distance / cfg.max_wrist_distance_m
        else:
            centres = 0.5 * (boxes[:, :2] + boxes[:, 2:])  # N x 2
            pred_centres = 0.5 * (pred_boxes[:, :2] + pred_boxes[:, 2:])  # T x 2
            diagonal = np.linalg.norm(pred_boxes[:, 2:] - pred_boxes[:, :2], axis=1)  # T
            relative = np.linalg.norm(pred_centres[:, None] - centres[None], axis=-1) / diagonal[:, None]
        side_mismatch = np.array([int(t.side) for t in self._tracks])[:, None] != sides[None, :]
        value = (
            cfg.iou_weight * (1.0 - iou) + cfg.distance_weight * relative + cfg.side_weight * side_mismatch
        )
        feasible = (relative <= 1.0) & (iou >= cfg.min_iou)
        cost[feasible] = value[feasible]
        return cost

    def _match(self, cost: np.ndarray) -> dict[int, int]:
        """Optimal assignment: hand index -> track index (gated pairs never match)."""
        if not cost.size:
            return {}
        rows, cols = linear_sum_assignment(cost)
        return {int(c): int(r) for r, c in zip(rows, cols) if cost[r, c] < INFEASIBLE}

    def _side_after_vote(self, track: Track, vote: Side | None) -> Side:
        """The side ``track`` has after one more detector frame that says ``vote``."""
        if vote is None or vote == track.side:
            return track.side
        return vote if track.side_disagreements + 1 >= self.config.side_flip_frames else track.side

    def assign_sides(self, detections: list[HandDetection], stamp: float) -> list[HandDetection]:
        """Before cropping: each detection matched (by its 2D box) with a living track gets the side
        that track will have after this frame's vote; ``detected_side`` keeps the detector's call.
        Unmatched detections keep their side. Changes no tracker state."""
        if not detections:
            return []
        boxes = np.stack([np.asarray(d.box, dtype=np.float64) for d in detections])
        sides = np.array([int(d.side) for d in detections])
        matches = self._match(self._cost_matrix(boxes, None, sides, stamp))
        out = []
        for index, det in enumerate(detections):
            vote = det.side if det.detected_side is None else det.detected_side
            side = self._side_after_vote(self._tracks[matches[index]], vote) if index in matches else vote
            out.append(dataclasses.replace(det, side=side, detected_side=vote))
        return out

    def plan(self, estimates: list[HandEstimate], stamp: float, from_detector: bool = True) -> TrackPlan:
        """After reconstruction: associate the estimates with the tracks (3D wrists included) and
        say which side each must carry. Changes no tracker state; give the plan to ``update``."""
        if estimates:
            boxes = np.stack([np.asarray(e.box, dtype=np.float64) for e in estimates])
            wrists = np.stack([np.asarray(e.wrist_position, dtype=np.float64) for e in estimates])
            sides = np.array([int(e.side) for e in estimates])
            matches = self._match(self._cost_matrix(boxes, wrists, sides, stamp))
        else:
            matches = {}
        planned = []
        for index, est in enumerate(estimates):
            vote = side_vote(est, from_detector)
            if index in matches:
                planned.append(self._side_after_vote(self._tracks[matches[index]], vote))
            else:
                planned.append(Side.parse(est.side) if vote is None else vote)
        return TrackPlan(matches=matches, sides=planned, stamp=stamp, from_detector=from_detector)

    def update(
        self,
        estimates: list[HandEstimate],
        stamp: float,
        from_detector: bool = True,
        plan: TrackPlan | None = None,
    ) -> list[HandEstimate]:
        """Associate one frame's estimates (taken at ``stamp`` seconds) with the tracks.

        from_detector: False when the frame was processed from ``predict_boxes`` (the
        detector did not run): it drives ``should_redetect``, and such frames cast no side vote.
        plan: from ``plan`` on these estimates (computed here when None).
        Returns copies of the estimates of confirmed tracks, in input order, with ``track_id``
        set. Each keeps its own side: reconstruct the estimates whose side differs from
        ``plan.sides`` again before calling this, or their label follows their geometry.
        Tentative hands are not returned.
        """
        if not math.isfinite(stamp):
            raise ValueError(f"tracker stamps must be finite seconds, got {stamp}")
        if self._last_stamp is not None and stamp < self._last_stamp:
            self.reset()  # time went backwards (bag loop, sim reset): start over, new ids
            plan = None
        if plan is None or plan.stamp != stamp or plan.from_detector != from_detector:
            plan = self.plan(estimates, stamp, from_detector)
        self._last_stamp = stamp
        self._frames_since_detection = (
            0
            if from_detector
            else (None if self._frames_since_detection is None else self._frames_since_detection + 1)
        )
        if from_detector:
            self._lost_since_detection = False

        matches = plan.matches
        matched_tracks = set(matches.values())
        survivors: list[Track] = []
        for index, track in enumerate(self._tracks):
            if index in matched_tracks:
                survivors.append(track)
                continue
            track.missed += 1
            gone = (
                not track.confirmed
                or track.missed > self.config.max_missed_frames
                or stamp - track.last_stamp > self.config.max_missed_s
            )
            if track.confirmed:
                self._lost_since_detection = True
            if not gone:
                survivors.append(track)

        results: list[HandEstimate] = []
        for est_index, estimate in enumerate(estimates):
            vote = side_vote(estimate, from_detector)
            if est_index in matches:
                track = self._tracks[matches[est_index]]
                self._update_track(track, estimate, stamp, vote)
            else:
                track = self._new_track(estimate, stamp, vote)
                survivors.append(track)
            if not track.confirmed and track.hits >= self.config.min_hits:
                track.track_id = self._next_id
                self._next_id += 1
            if track.confirmed:
                results.append(dataclasses.replace(estimate, track_id=track.track_id))
        self._tracks = survivors
        return results

    def _new_track(self, estimate: HandEstimate, stamp: float, vote: Side | None) -> Track:
        kp = np.asarray(estimate.keypoints_2d, dtype=np.float64)
        return Track(
            wrist=np.asarray(estimate.wrist_position, dtype=np.float64).copy(),
            center_2d=kp.mean(axis=0),
            box=np.asarray(estimate.box, dtype=np.float64).copy(),
            last_stamp=stamp,
            side=Side.parse(estimate.side) if vote is None else vote,
            score=float(estimate.score),
            estimate=estimate,
        )

    def _update_track(self, track: Track, estimate: HandEstimate, stamp: float, vote: Side | None) -> None:
        cfg = self.config
        wrist = np.asarray(estimate.wrist_position, dtype=np.float64)
        center = np.asarray(estimate.keypoints_2d, dtype=np.float64).mean(axis=0)
        dt = stamp - track.last_stamp
        if dt > 0:
            # the first velocity sample replaces the zero prior instead of being averaged in
            weight = 1.0 if track.hits == 1 else cfg.velocity_smoothing
            track.wrist_velocity += weight * ((wrist - track.wrist) / dt - track.wrist_velocity)
            track.center_velocity += weight * ((center - track.center_2d) / dt - track.center_velocity)
        track.wrist, track.center_2d = wrist.copy(), center
        track.box = np.asarray(estimate.box, dtype=np.float64).copy()
        track.last_stamp = stamp
        track.hits += 1
        track.missed = 0
        track.score += cfg.score_smoothing * (float(estimate.score) - track.score)
        track.estimate = estimate
        if vote is None:
            return  # frames run from predicted boxes carry no side evidence
        new_side = self._side_after_vote(track, vote)
        if new_side != track.side:
            track.side, track.side_disagreements = new_side, 0
        else:
            track.side_disagreements = 0 if vote == track.side else track.side_disagreements + 1

    # ---------------------------------------------------------------- detector skipping
    def _confident(self, track: Track) -> bool:
        return track.confirmed and track.missed == 0 and track.score >= self.config.min_track_score

    @staticmethod
    def _spread(track: Track) -> float:
        kp = np.asarray(track.estimate.keypoints_2d, dtype=np.float64)
        return float(np.min(kp.max(axis=0) - kp.min(axis=0)))

    def predict_boxes(self, stamp: float) -> list[HandDetection]:
        """Boxes where the confident tracks' hands should be at ``stamp`` (for the pipeline to
        skip the detector): the 2D keypoint box of each track's last estimate, grown by
        ``box_margin`` and moved by the keypoints' velocity over the (capped) time gap. The
        detections carry the track's (hysteresis) side and smoothed confidence."""
        cfg = self.config
        out = []
        for track in self._tracks:
            if not self._confident(track):
                continue
            box = keypoint_box(track.estimate.keypoints_2d, cfg.box_margin, cfg.min_box_size_px)
            shift = track.center_velocity * track.horizon(stamp, cfg.max_prediction_s)
            out.append(HandDetection(box + np.concatenate([shift, shift]), track.side, float(track.score)))
        return out

    def should_redetect(self, stamp: float | None = None) -> bool:
        """Whether the next frame needs the detector rather than ``predict_boxes``.

        True when: the detector never ran; no confident track is left; the detector last ran
        ``redetect_every_n_frames`` frames ago; a confirmed track went unmatched since the last
        detector frame; or a confident track's confidence or 2D keypoint spread is too low.
        ``redetect_reason`` tells which. ``stamp`` is accepted for symmetry with
        ``predict_boxes``; the schedule counts frames.
        """
        del stamp  # the rules are frame based
        cfg = self.config
        confident = [t for t in self._tracks if self._confident(t)]
        reason = ""
        if self._frames_since_detection is None:
            reason = "detector never ran"
        elif not confident:
            reason = "no confident track"
        elif self._frames_since_detection + 1 >= cfg.redetect_every_n_frames:
            reason = f"periodic (every {cfg.redetect_every_n_frames} frames)"
        elif self._lost_since_detection:
            reason = "a track was lost"
        elif any(self._spread(t) < cfg.min_keypoint_spread_px for t in confident):
            reason = "keypoint spread too small"
        elif any(t.score < cfg.min_track_score for t in self._tracks if t.confirmed and t.missed == 0):
            reason = "low confidence"
        self.redetect_reason = reason
        return bool(reason)
