"""Sample validation for training/evaluation data: what makes a sample bad, and the tally of bad ones.

A sample is bad when a number is not finite, an array has the wrong shape, a value is outside the range
a real hand can have (betas, axis-angles, joints in metres, boxes inside the image), its image file is
missing or does not decode. Bad samples are never trained or evaluated on: they are skipped and
recorded as :class:`BadSample` (dataset, index, file, reason) in a :class:`DataReport`, which the
trainer, ``wilor-ros eval`` and ``wilor-ros check-data`` print and store. With ``strict`` the first bad
sample raises :class:`BadSampleError` instead.

The report crosses process boundaries as plain data: a DataLoader worker returns a BadSample in place
of a training example and the collate function hands it to the main process with the batch, so no
shared state between processes is needed.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from wilor_ros.core.hand.constants import NUM_BETAS, NUM_HAND_JOINTS, NUM_JOINTS, NUM_VERTICES

if TYPE_CHECKING:
    from wilor_ros.tools.train.datasets import HandRecord

# Reasons (the keys of the per-reason counts in reports).
MISSING_IMAGE = "missing-image"
CORRUPT_IMAGE = "corrupt-image"
NON_FINITE = "non-finite"
BAD_SHAPE = "bad-shape"
OUT_OF_RANGE = "out-of-range"
INVALID = "invalid"  # an entry that cannot be read at all (missing field, unreadable pickle, ...)

# Value ranges a real hand label stays within. Generous on purpose: they catch wrong units and garbage,
# not unusual hands.
MAX_ABS_BETA = 10.0  # MANO shape coefficients are in standard deviations of the shape space
MAX_AXIS_ANGLE_RAD = 2.0 * np.pi  # a joint rotation vector longer than a full turn is no real label
# Bounding-box diagonal of the labelled 3D joints: an adult hand spans ~0.2 m; 0.5 m catches joints
# given in millimetres or centimetres, 0.02 m (checked with all 21 joints labelled) joints in km or a
# collapsed label.
MAX_HAND_SPAN_M = 0.5
MIN_HAND_SPAN_M = 0.02
MAX_LISTED = 20  # bad samples listed per dataset in printed summaries (the JSON lists all)


class SampleRef(NamedTuple):
    """Where a sample comes from: the dataset's label, its 0-based position in the dataset as read (bad
    samples included) and its image (or, when there is none, the annotation file and line)."""

    dataset: str
    index: int
    file: str

    def describe(self) -> str:
        return f"{self.dataset} #{self.index} ({self.file})"


@dataclass(frozen=True)
class BadSample:
    """One skipped sample. dataset: the dataset's label; index: the sample's position in the dataset as
    read (0-based, bad samples included); file: the image (or the index/annotation file) it came from."""

    dataset: str
    index: int
    file: str
    reason: str
    detail: str

    def describe(self) -> str:
        return f"{self.dataset} #{self.index} ({self.file}): {self.reason}: {self.detail}"


class SampleError(ValueError):
    """Raised by the checks below; the reader turns it into a BadSample naming the sample."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail


class BadSampleError(ValueError):
    """``strict`` mode: the first bad sample stops the run."""

    def __init__(self, bad: BadSample) -> None:
        super().__init__(
            f"bad sample {bad.describe()} (strict mode: fix or remove it, run without --strict to skip and "
            "count bad samples, or list them all with `wilor-ros check-data`)"
        )
        self.bad = bad


# ------------------------------------------------------------------------------------------ checks
def require_finite(name: str, values: Any) -> np.ndarray:
    """``values`` as a float64 array, or SampleError(non-finite) naming ``name``."""
    array = np.asarray(values, np.float64)
    if not np.all(np.isfinite(array)):
        hint = (
            " (an unlabelled joint needs finite coordinates and confidence 0)" if "keypoints" in name else ""
        )
        raise SampleError(
            NON_FINITE, f"{name} holds {int(np.sum(~np.isfinite(array)))} NaN/infinite value(s){hint}"
        )
    return array


def require_shape(name: str, values: Any, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(values)
    if array.shape != shape:
        raise SampleError(BAD_SHAPE, f"{name} must have shape {shape}, got {array.shape}")
    return array


def validate_record(record: HandRecord) -> None:
    """Shapes, finiteness and value ranges of every label of ``record``; raises SampleError."""
    for name, value, shape in (
        ("keypoints_2d", record.keypoints_2d, (NUM_JOINTS, 3)),
        ("keypoints_3d", record.keypoints_3d, (NUM_JOINTS, 4)),
        ("mano pose", record.mano_pose, (3 * (NUM_HAND_JOINTS + 1),)),
        ("betas", record.betas, (NUM_BETAS,)),
        ("box", record.box, (4,)),
        ("crop centre", record.center, (2,)),
    ):
        require_finite(name, require_shape(name, value, shape))
    require_finite("crop side", record.side_px)
    require_finite("has-flags", [record.has_pose, record.has_betas])
    if record.vertices is not None:
        require_finite("vertices", require_shape("vertices", record.vertices, (NUM_VERTICES, 3)))
    box = np.asarray(record.box, np.float64)
    if not (box[2] > box[0] and box[3] > box[1] and record.side_px > 0):
        raise SampleError(OUT_OF_RANGE, f"box must have x2 > x1 and y2 > y1, got {box.tolist()}")
    for name, flags in (
        ("keypoints_2d", record.keypoints_2d[:, 2]),
        ("keypoints_3d", record.keypoints_3d[:, 3]),
    ):
        if np.any(flags < 0):
            raise SampleError(OUT_OF_RANGE, f"{name} confidences must be >= 0")
    if not all(0.0 <= flag <= 1.0 for flag in (record.has_pose, record.has_betas)):
        raise SampleError(OUT_OF_RANGE, "has_hand_pose/has_betas must be 0 or 1")
    if record.has_betas and np.max(np.abs(record.betas)) > MAX_ABS_BETA:
        raise SampleError(
            OUT_OF_RANGE, f"betas reach {np.max(np.abs(record.betas)):.3g}, beyond +-{MAX_ABS_BETA:g}"
        )
    if record.has_pose:
        angles = np.linalg.norm(np.asarray(record.mano_pose, np.float64).reshape(-1, 3), axis=1)  # 16
        if np.max(angles) > MAX_AXIS_ANGLE_RAD:
            raise SampleError(
                OUT_OF_RANGE,
                f"mano pose has a rotation of {np.max(angles):.3g} rad (> 2 pi): not axis-angle radians?",
            )
    labelled = record.keypoints_3d[record.keypoints_3d[:, 3] > 0, :3]
    if len(labelled) >= 2:
        span = hand_span(labelled)
        if span > MAX_HAND_SPAN_M or (len(labelled) == NUM_JOINTS and span < MIN_HAND_SPAN_M):
            raise SampleError(
                OUT_OF_RANGE,
                f"keypoints_3d span {span:.4g} m (a hand spans ~0.2 m; expected metres, within "
                f"{MIN_HAND_SPAN_M:g}..{MAX_HAND_SPAN_M:g})",
            )


def validate_box_in_image(box: np.ndarray, width: int, height: int) -> None:
    """The box centre must lie inside the W x H image (a box elsewhere crops nothing of the hand)."""
    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    if not (0.0 <= cx <= width and 0.0 <= cy <= height):
        raise SampleError(
            OUT_OF_RANGE,
            f"box {np.round(np.asarray(box, np.float64), 1).tolist()} lies outside the image "
            f"({width} x {height} px)",
        )


def hand_span(points: np.ndarray) -> float:
    """Diagonal (metres) of the axis-aligned box of N x 3 joints."""
    return float(np.linalg.norm(points.max(axis=0) - points.min(axis=0)))


# ------------------------------------------------------------------------------------------ report
@dataclass
class ValueRanges:
    """Min/max per quantity over the good samples (``wilor-ros check-data``)."""

    ranges: dict[str, list[float]] = field(default_factory=dict)

    def update(self, name: str, values: Any) -> None:
        array = np.asarray(values, np.float64).reshape(-1)
        if array.size == 0:
            return
        low, high = float(array.min()), float(array.max())
        if name in self.ranges:
            low, high = min(low, self.ranges[name][0]), max(high, self.ranges[name][1])
        self.ranges[name] = [low, high]

    def add_record(self, record: HandRecord) -> None:
        if record.has_betas:
            self.update("betas", record.betas)
        if record.has_pose:
            self.update("pose angle rad", np.linalg.norm(record.mano_pose.reshape(-1, 3), axis=1))
        labelled = record.keypoints_3d[record.keypoints_3d[:, 3] > 0, :3]
        if len(labelled):
            self.update("joints z m", labelled[:, 2])
        if len(labelled) >= 2:
            self.update("hand span m", hand_span(labelled))
        self.update("box side px", [max(record.box[2] - record.box[0], record.box[3] - record.box[1])])
        self.update("2D labelled joints", [int(np.sum(record.keypoints_2d[:, 2] > 0))])


@dataclass
class DatasetTally:
    """One dataset's part of a report: samples read, bad samples (unique by index) and how often each
    was drawn and skipped during training."""

    name: str
    samples: int = 0
    bad: dict[int, BadSample] = field(default_factory=dict)
    skipped_draws: Counter = field(default_factory=Counter)
    ranges: ValueRanges = field(default_factory=ValueRanges)

    def by_reason(self) -> dict[str, int]:
        return dict(sorted(Counter(b.reason for b in self.bad.values()).items()))


class DataReport:
    """Bad samples and sample counts of every dataset of a run (see the module docstring)."""

    def __init__(self) -> None:
        self.datasets: dict[str, DatasetTally] = {}

    def tally(self, name: str) -> DatasetTally:
        return self.datasets.setdefault(name, DatasetTally(name))

    def set_samples(self, name: str, count: int) -> None:
        self.tally(name).samples = int(count)

    def add(self, bad: BadSample, drawn: bool = False) -> bool:
        """Record ``bad``; True when it was not known yet. ``drawn``: it was drawn for a batch."""
        tally = self.tally(bad.dataset)
        new = bad.index not in tally.bad
        tally.bad.setdefault(bad.index, bad)
        if drawn:
            tally.skipped_draws[bad.index] += 1
        return new

    def bad_samples(self) -> list[BadSample]:
        return [b for t in self.datasets.values() for _, b in sorted(t.bad.items())]

    @property
    def total_samples(self) -> int:
        return sum(t.samples for t in self.datasets.values())

    @property
    def total_bad(self) -> int:
        return sum(len(t.bad) for t in self.datasets.values())

    # ----------------------------------------------------------------- plain data (JSON, gathering)
    def to_dict(self) -> dict[str, Any]:
        return {
            "total_samples": self.total_samples,
            "total_bad": self.total_bad,
            "datasets": [
                {
                    "name": t.name,
                    "samples": t.samples,
                    "bad": len(t.bad),
                    "by_reason": t.by_reason(),
                    "skipped_draws": int(sum(t.skipped_draws.values())),
                    "value_ranges": t.ranges.ranges,
                    "bad_samples": [
                        {**asdict(b), "skipped_draws": int(t.skipped_draws[i])}
                        for i, b in sorted(t.bad.items())
                    ],
                }
                for t in self.datasets.values()
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DataReport:
        report = cls()
        for entry in data.get("datasets", []):
            tally = report.tally(str(entry["name"]))
            tally.samples = int(entry.get("samples", 0))
            tally.ranges.ranges = {k: list(v) for k, v in entry.get("value_ranges", {}).items()}
            for item in entry.get("bad_samples", []):
                bad = BadSample(
                    str(item["dataset"]),
                    int(item["index"]),
                    str(item["file"]),
                    str(item["reason"]),
                    str(item["detail"]),
                )
                tally.bad[bad.index] = bad
                if item.get("skipped_draws"):
                    tally.skipped_draws[bad.index] += int(item["skipped_draws"])
        return report

    def merge(self, other: DataReport) -> None:
        """Add ``other``'s bad samples and skipped draws (another rank's, or an earlier run's)."""
        for name, theirs in other.datasets.items():
            mine = self.tally(name)
            mine.samples = max(mine.samples, theirs.samples)
            for index, bad in theirs.bad.items():
                mine.bad.setdefault(index, bad)
            mine.skipped_draws.update(theirs.skipped_draws)
            for key, (low, high) in theirs.ranges.ranges.items():
                mine.ranges.update(key, [low, high])

    def write_json(self, path: str | os.PathLike[str], **extra: Any) -> Path:
        """Write the report (plus ``extra`` top-level entries) through a temporary file and a rename."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps({**extra, **self.to_dict()}, indent=2))
        os.replace(tmp, path)
        return path

    # ----------------------------------------------------------------- text
    def format(self, max_listed: int = MAX_LISTED, ranges: bool = False) -> str:
        """A summary per dataset: samples, bad ones by reason, the first ``max_listed`` bad samples and,
        with ``ranges``, the value ranges of the good samples."""
        skipped = " (skipped)" if self.total_bad else ""
        lines = [f"data: {self.total_samples} sample(s), {self.total_bad} bad{skipped}"]
        for tally in self.datasets.values():
            lines.append(f"  {tally.name}: {tally.samples} sample(s), {len(tally.bad)} bad")
            for reason, count in tally.by_reason().items():
                lines.append(f"    {reason:<14} {count}")
            draws = sum(tally.skipped_draws.values())
            if draws:
                lines.append(f"    skipped when drawn for a batch: {draws} time(s)")
            listed = sorted(tally.bad.items())
            for _, bad in listed[:max_listed]:
                lines.append(f"    #{bad.index} {bad.file}: {bad.reason}: {bad.detail}")
            if len(listed) > max_listed:
                lines.append(f"    ... and {len(listed) - max_listed} more (all are in the JSON report)")
            if ranges and tally.ranges.ranges:
                lines.append("    value ranges of the good samples:")
                for key, (low, high) in tally.ranges.ranges.items():
                    lines.append(f"      {key:<20} {low:10.4g} .. {high:.4g}")
        return "\n".join(lines)
