"""Video-rate hand estimates: pipeline + depth + tracking + filtering + detector skipping.

``TemporalHandPipeline.process(image, stamp, ...)`` runs one frame through

1. boxes: given (external boxes always win) -> the detector (on detector frames) -> or the
   tracker's predicted boxes (``HandTracker.predict_boxes``) when detector skipping is on and
   ``HandTracker.should_redetect`` says the tracks are confident (MediaPipe-style: the detector
   runs on the first frame, every ``redetect_every_n_frames`` frames, and whenever a track is
   lost or looks unreliable; new hands are only found on detector frames);
2. ``HandPipeline.predict`` with the camera intrinsics (real ``CameraInfo`` K gives metric
   positions; without it the official focal heuristic is used); with tracking, each detected
   hand's side is decided by its track BEFORE it is cropped (``HandTracker.assign_sides``: the
   side hysteresis), because a left hand is reconstructed from the mirrored crop;
3. hands with non-finite output are dropped;
4. depth correction (``core.temporal.depth.correct_hand_depth``) with an aligned depth image, when given:
   BEFORE tracking and filtering, so the tracker's 3D gate and the filter see the corrected
   metric positions (a correction switching on/off between frames would otherwise look like a
   jump the filter smooths into a slow drift);
5. tracking: ``HandTracker.plan`` associates the hands with the tracks using the 3D wrists too;
   a hand whose side there differs from the one it was cropped with (the 2D match before the
   crop was wrong, e.g. two hands crossing) is reconstructed again with its track's side; then
   ``HandTracker.update`` gives stable ``track_id``s. A published hand's geometry and side label
   therefore always agree;
6. filtering (``HandFilter``, One Euro, per track id).

Every stage is driven by the caller's timestamps (message stamps, seconds), never by the wall
clock, so a recorded bag replays identically. Each part can be switched off in
``TemporalConfig``; without tracking there are no stable ids (hands are numbered 1..N in
detection order every frame), so filtering and detector skipping need tracking and are
skipped without it.

Typed flags of the returned hands: ``HandEstimate.tracked`` (a stable track id), ``filtered``
(went through the One Euro filter), ``box_source`` (``BoxSource``: external, detector or tracker),
``depth_corrected`` (depth moved the hand) and ``detected_side`` (the detector's own call).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from wilor_ros.core.config import setting
from wilor_ros.core.pipeline import HandPipeline, StageTimings
from wilor_ros.core.temporal.depth import DepthCorrectionConfig, correct_hand_depth
from wilor_ros.core.temporal.filtering import FilterConfig, HandFilter
from wilor_ros.core.temporal.tracking import HandTracker
from wilor_ros.core.temporal.tracks import TrackerConfig, TrackPlan
from wilor_ros.core.types import BoxSource, CameraIntrinsics, HandDetection, HandEstimate

if TYPE_CHECKING:
    from wilor_ros.core.backends.base import ReconstructorBackend
    from wilor_ros.core.image.detector import HandDetector


@dataclass
class TemporalConfig:
    """Which temporal parts run, and their parameters."""

    tracking: bool = setting(
        True,
        doc="track hands across frames: stable HandMesh.id and TF names per hand (off: hands are "
        "numbered 1..N per image, and filtering and detector skipping are off too)",
        live=True,
    )
    filtering: bool = setting(
        True, doc="smooth each tracked hand with the One Euro filter (positions and rotations)", live=True
    )
    detector_skipping: bool = setting(
        True,
        doc="between detector frames, reconstruct from the tracked hands' predicted boxes "
        "(MediaPipe-style; new hands are found only on detector frames)",
        live=True,
    )
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    depth: DepthCorrectionConfig = field(default_factory=DepthCorrectionConfig)

    @property
    def filtering_active(self) -> bool:
        return self.tracking and self.filtering and self.filter.enabled

    @property
    def skipping_active(self) -> bool:
        return self.tracking and self.detector_skipping


@dataclass(frozen=True)
class FrameReport:
    """What happened in the latest ``process`` call."""

    stamp: float
    box_source: BoxSource
    detector_ran: bool  # the pipeline's detector actually ran (its cost was paid)
    redetect_reason: str  # why the detector ran ("" when it did not or boxes were given)
    num_raw: int  # hands the pipeline returned (before dropping, tracking, filtering)
    num_nonfinite: int  # of those, dropped for NaN/inf output
    num_depth_corrected: int
    num_side_reruns: int  # hands reconstructed a second time with their track's side
    timings: StageTimings  # the pipeline's stages (both passes when hands were run again)
    temporal_s: float  # depth + tracking + filtering time, seconds


class TemporalHandPipeline:
    """A ``HandPipeline`` with depth correction, tracking, filtering and detector skipping."""

    def __init__(self, pipeline: HandPipeline, config: TemporalConfig | None = None) -> None:
        self.pipeline = pipeline
        self.config = config or TemporalConfig()
        self.tracker = HandTracker(self.config.tracker)
        self.hand_filter = HandFilter(self.config.filter)
        self.frames = 0
        self.detector_calls = 0
        self.last_report: FrameReport | None = None
        self._last_stamp: float | None = None

    # ------------------------------------------------------------------ passthroughs
    @property
    def synthetic(self) -> bool:
        return self.pipeline.synthetic

    @property
    def backend(self) -> ReconstructorBackend:
        return self.pipeline.backend

    @property
    def detector(self) -> HandDetector | None:
        return self.pipeline.detector

    @property
    def last_timings(self) -> StageTimings:
        return self.pipeline.last_timings

    def reconfigure(self, config: TemporalConfig) -> None:
        """Take a new configuration at the next frame. Tracks survive; filter states restart when
        the filter's parameters changed (a state keeps the parameters it started with)."""
        if config.filter != self.config.filter:
            self.hand_filter = HandFilter(config.filter)
        self.tracker.config = config.tracker
        self.config = config

    def reset(self) -> None:
        """Forget every track and filter state (ids keep counting up)."""
        self.tracker.reset()
        self.hand_filter.reset()
        self._last_stamp = None

    def close(self) -> None:
        self.pipeline.close()

    # ------------------------------------------------------------------ one frame
    def _choose_boxes(
        self, stamp: float, boxes: list[HandDetection] | None
    ) -> tuple[list[HandDetection] | None, BoxSource, str]:
        """(boxes for predict or None = run the detector, box source, redetect reason)."""
        if boxes is not None:
            return list(boxes), BoxSource.EXTERNAL, ""
        if self.config.skipping_active:
            if not self.tracker.should_redetect(stamp):
                predicted = self.tracker.predict_boxes(stamp)
                if predicted:
                    return predicted, BoxSource.TRACKER, ""
                return None, BoxSource.DETECTOR, "no predicted box"
            return None, BoxSource.DETECTOR, self.tracker.redetect_reason
        return None, BoxSource.DETECTOR, "every frame (detector skipping off)"

    def _finish(self, hands: list[HandEstimate], depth_m: np.ndarray | None) -> list[HandEstimate]:
        """Drop hands with non-finite output, then correct the rest with depth (when given)."""
        hands = [h for h in hands if np.all(np.isfinite(h.keypoints_3d)) and np.all(np.isfinite(h.vertices))]
        if depth_m is not None and hands:
            hands = [correct_hand_depth(h, depth_m, self.config.depth) or h for h in hands]
        return hands

    def _reconstruct_again(
        self,
        image: np.ndarray,
        intrinsics: CameraIntrinsics | None,
        depth_m: np.ndarray | None,
        hands: list[HandEstimate],
        indices: list[int],
        plan: TrackPlan,
        timings: StageTimings,
    ) -> tuple[list[HandEstimate], StageTimings]:
        """``hands`` with those at ``indices`` reconstructed again with ``plan.sides`` (a hand
        whose second pass is not finite is left out)."""
        boxes = [
            HandDetection(hands[i].box, plan.sides[i], hands[i].score, detected_side=hands[i].detected_side)
            for i in indices
        ]
        order = sorted(range(len(boxes)), key=lambda k: -boxes[k].score)  # predict keeps this order
        again = self.pipeline.predict(image, intrinsics=intrinsics, boxes=[boxes[k] for k in order])
        timings = timings + self.pipeline.last_timings
        redone = {}
        for k, hand in zip(order, again):
            finished = self._finish([hand], depth_m)
            if finished:
                redone[indices[k]] = finished[0]
        out = []
        for i, hand in enumerate(hands):
            if i not in indices:
                out.append(hand)
            elif i in redone:
                out.append(redone[i])
        return out, timings

    def process(
        self,
        image: np.ndarray,
        stamp: float,
        intrinsics: CameraIntrinsics | None = None,
        boxes: list[HandDetection] | None = None,
        depth_m: np.ndarray | None = None,
    ) -> list[HandEstimate]:
        """One frame taken at ``stamp`` seconds (the image message's stamp).

        image: H x W x 3 RGB uint8 (or what ``HandPipeline.predict`` accepts).
        intrinsics: the camera's K (metric 3D); None = the official focal heuristic.
        boxes: hands supplied from outside (always used as given; the detector does not run).
        depth_m: H x W float32 metres aligned with ``image`` (NaN/0 = no reading), or None.
        Returns the hands of confirmed tracks (filtered when enabled), or, without tracking,
        every hand numbered 1..N.
        """
        if not math.isfinite(stamp):
            raise ValueError(f"frame stamps must be finite seconds, got {stamp}")
        if depth_m is not None:
            depth_m = np.asarray(depth_m)
            if depth_m.shape != np.shape(image)[:2]:
                raise ValueError(
                    f"depth image {depth_m.shape} is not aligned with the image {np.shape(image)[:2]}; "
                    "register depth to the colour camera first"
                )
        if self._last_stamp is not None and stamp < self._last_stamp:
            self.reset()  # time went backwards (bag loop): start over
        self._last_stamp = stamp

        chosen, source, reason = self._choose_boxes(stamp, boxes)
        detector_ran = chosen is None and self.pipeline.detector is not None
        from_detector = source != BoxSource.TRACKER
        # the tracker decides each detected hand's side before it is cropped (tracker boxes
        # already carry their track's side)
        decide = (
            (lambda dets: self.tracker.assign_sides(dets, stamp))
            if self.config.tracking and from_detector
            else None
        )
        hands = self.pipeline.predict(image, intrinsics=intrinsics, boxes=chosen, decide_sides=decide)
        timings = self.pipeline.last_timings
        t0 = time.perf_counter()
        self.frames += 1
        self.detector_calls += int(detector_ran)
        raw_count = len(hands)
        hands = self._finish(hands, depth_m)
        nonfinite = raw_count - len(hands)

        reruns = 0
        if self.config.tracking:
            plan = self.tracker.plan(hands, stamp, from_detector)
            wrong = [i for i, hand in enumerate(hands) if hand.side != plan.sides[i]]
            if wrong:
                # the 3D association disagrees with the 2D one made before cropping (e.g. crossing
                # hands): reconstruct those hands again with their track's side
                reruns = len(wrong)
                hands, timings = self._reconstruct_again(
                    image, intrinsics, depth_m, hands, wrong, plan, timings
                )
                plan = self.tracker.plan(hands, stamp, from_detector)
            # The detector frames (and external boxes) can find new hands; tracker frames cannot.
            hands = self.tracker.update(hands, stamp, from_detector=from_detector, plan=plan)
            if self.config.filtering_active:
                hands = self.hand_filter.filter_all(hands, stamp)
                self.hand_filter.retain(self.tracker.active_track_ids)
        else:
            hands = [dataclasses.replace(h, track_id=i + 1) for i, h in enumerate(hands)]
        corrected = sum(1 for h in hands if h.depth_corrected)

        out = [
            dataclasses.replace(
                hand, tracked=self.config.tracking, filtered=self.config.filtering_active, box_source=source
            )
            for hand in hands
        ]
        self.last_report = FrameReport(
            stamp=stamp,
            box_source=source,
            detector_ran=detector_ran,
            redetect_reason=reason if chosen is None else "",
            num_raw=raw_count,
            num_nonfinite=nonfinite,
            num_depth_corrected=corrected,
            num_side_reruns=reruns,
            timings=timings,
            temporal_s=time.perf_counter() - t0,
        )
        return out
