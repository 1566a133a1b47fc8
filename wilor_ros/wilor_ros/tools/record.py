"""Record hand sequences for temporal evaluation (``wilor-ros eval-temporal``).

* ``HandRecorder`` collects the hands of each processed frame (from ``TemporalHandPipeline``,
  the node's output, or anything giving ``HandEstimate``s with track ids) and writes the
  ``.npz`` layout ``tools.eval_temporal.load_npz`` reads: ``stamps`` (T,), ``keypoints_3d``
  T x 21 x 3 and ``vertices`` T x 778 x 3 of ONE track (the longest unless one is named).
* ``record_video`` runs a video file through a ``TemporalHandPipeline`` (stamps from the
  video's frame times) and returns the recorder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wilor_ros.core.types import CameraIntrinsics, HandEstimate
from wilor_ros.tools.eval_temporal import MIN_FRAMES, TemporalSequence

if TYPE_CHECKING:
    from wilor_ros.core.temporal.temporal_pipeline import TemporalHandPipeline
    from wilor_ros.tools.eval_temporal import TemporalReport


@dataclass
class HandRecorder:
    """Per track id: the stamps, joints and vertices of every frame the track was seen in."""

    stamps: dict[int, list[float]] = field(default_factory=dict)
    joints: dict[int, list[np.ndarray]] = field(default_factory=dict)
    vertices: dict[int, list[np.ndarray]] = field(default_factory=dict)
    frames: int = 0

    def add(self, stamp: float, hands: list[HandEstimate]) -> None:
        """Record one frame's hands (seconds; hands with track ids)."""
        self.frames += 1
        for hand in hands:
            tid = int(hand.track_id)
            if self.stamps.get(tid) and stamp <= self.stamps[tid][-1]:
                continue  # duplicated or out-of-order frame: a sequence needs increasing stamps
            self.stamps.setdefault(tid, []).append(float(stamp))
            self.joints.setdefault(tid, []).append(np.asarray(hand.keypoints_3d, np.float64))
            self.vertices.setdefault(tid, []).append(np.asarray(hand.vertices, np.float64))

    @property
    def track_ids(self) -> list[int]:
        """Recorded ids, the longest track first."""
        return sorted(self.stamps, key=lambda t: (-len(self.stamps[t]), t))

    def sequence(self, track_id: int | None = None) -> TemporalSequence:
        """The sequence of ``track_id`` (default: the longest track)."""
        if not self.stamps:
            raise ValueError("no hand was recorded: nothing to evaluate (is a hand in view?)")
        tid = self.track_ids[0] if track_id is None else int(track_id)
        if tid not in self.stamps:
            raise ValueError(f"track {tid} was not recorded; recorded ids: {self.track_ids}")
        if len(self.stamps[tid]) < MIN_FRAMES:
            raise ValueError(
                f"track {tid} has only {len(self.stamps[tid])} frames; temporal metrics need {MIN_FRAMES}"
            )
        return TemporalSequence(
            stamps=np.asarray(self.stamps[tid]),
            keypoints_3d=np.stack(self.joints[tid]),
            vertices=np.stack(self.vertices[tid]),
        )

    def save_npz(self, path: str | Path, track_id: int | None = None) -> Path:
        """Write one track in the ``eval_temporal.load_npz`` layout; returns the path."""
        seq = self.sequence(track_id)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path,
            stamps=seq.stamps,
            keypoints_3d=seq.keypoints_3d.astype(np.float32),
            vertices=np.asarray(seq.vertices, np.float32),
        )
        return path


def record_video(
    temporal: TemporalHandPipeline,
    video: str | Path,
    max_frames: int | None = None,
    intrinsics: CameraIntrinsics | None = None,
) -> HandRecorder:
    """Run ``video`` through ``temporal`` (a ``TemporalHandPipeline``); stamps are the video's
    frame times (``CAP_PROP_POS_MSEC``, or frame index / fps when the container has none)."""
    import cv2

    path = Path(video)
    if not path.is_file():
        raise ValueError(f"video not found: {path}")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"OpenCV cannot open {path} as a video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    recorder = HandRecorder()
    index = 0
    previous = -np.inf
    try:
        while max_frames is None or index < max_frames:
            ok, bgr = capture.read()
            if not ok:
                break
            stamp = capture.get(cv2.CAP_PROP_POS_MSEC) / 1e3
            if not np.isfinite(stamp) or stamp <= previous:
                stamp = index / fps  # containers without usable timestamps
            previous = stamp
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            recorder.add(stamp, temporal.process(rgb, stamp, intrinsics=intrinsics))
            index += 1
    finally:
        capture.release()
    if index == 0:
        raise ValueError(f"{path} has no readable frame")
    return recorder


# ------------------------------------------------------------------------ report output
def temporal_report_dict(report: TemporalReport) -> dict:
    """A ``tools.eval_temporal.TemporalReport`` as plain JSON-able values."""
    import dataclasses

    return dataclasses.asdict(report)


def format_temporal_report(report: TemporalReport) -> str:
    """A ``TemporalReport`` as a table: raw vs filtered jitter, MPFJE/MPFVE and lag."""

    def cell(value: float | None, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    rows = [("raw", report.raw)] + ([("filtered", report.filtered)] if report.filtered else [])
    header = (
        f"{'output':<9} {'jitter mm/s^2':>14} {'jitter mm/fr^2':>15} {'MPFJE mm':>9} {'MPFVE mm':>9} "
        f"{'lag ms':>8} {'lag frames':>10}"
    )
    lines = [
        f"{report.num_frames} frames over {report.duration_s:.2f} s",
        header,
        "-" * len(header),
    ]
    for name, m in rows:
        lines.append(
            f"{name:<9} {m.jitter_mm_s2:>14.1f} {m.jitter_mm_frame2:>15.3f} {cell(m.mpfje_mm, '.2f'):>9} "
            f"{cell(m.mpfve_mm, '.2f'):>9} {cell(None if m.lag_s is None else 1e3 * m.lag_s, '.1f'):>8} "
            f"{cell(m.lag_frames, '.2f'):>10}"
        )
    if report.gt_jitter_mm_s2 is not None:
        lines.append(f"ground truth's own jitter (its motion): {report.gt_jitter_mm_s2:.1f} mm/s^2")
    lines.append(
        "jitter = mean frame-to-frame acceleration; lag of the raw output is against the ground "
        "truth, of the filtered output against the ground truth or else the raw output"
    )
    return "\n".join(lines)
