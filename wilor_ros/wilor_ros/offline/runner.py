"""``process``: a recording in; the output bag, ``hands.npz`` and an overlay video out.

The passes over the input (the store keeps memory bounded between them):

1. every frame, decoded in a background thread (``sources.Prefetcher``), is detected (one
   detector call for ``batch_frames`` frames when the detector's batch axis is dynamic) or takes
   its given boxes; the hands of ``batch_frames`` frames are reconstructed in ONE reconstructor
   call (``HandPipeline.postprocess`` places each frame's hands), depth-corrected when a depth
   image is paired, and associated frame by frame by the node's ``HandTracker`` (no frame is
   dropped, no detector skipping); each hand becomes a ``HandStore`` row;
2. each track's side is decided by majority over its frames (``sequence.majority_sides``); the
   frames whose hands were reconstructed for the other side are re-read and those hands
   re-cropped and re-reconstructed for the track's side (never a mirror-wrong hand);
3. short gaps are filled, then each track is smoothed: ``offline`` (zero-lag RTS smoother over
   the whole track), ``causal`` (the node's One Euro filter) or ``none``;
4. the outputs are written (``writers.py``) under temporary names and renamed at the end.

Input problems never stop the run unless nothing can be read: skipped frames are counted by
reason (printed at the end and stored in ``hands.npz``).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wilor_ros.core.backends.base import ReconstructorOutput
from wilor_ros.core.config import check_bounds
from wilor_ros.core.hand import camera
from wilor_ros.core.image import preprocessing
from wilor_ros.core.pipeline import HandPipeline
from wilor_ros.core.temporal.depth import DepthCorrectionConfig, correct_hand_depth
from wilor_ros.core.temporal.filtering import FilterConfig
from wilor_ros.core.temporal.tracking import HandTracker
from wilor_ros.core.temporal.tracks import TrackerConfig
from wilor_ros.core.types import CameraIntrinsics, HandDetection, HandEstimate, Side
from wilor_ros.offline import sequence
from wilor_ros.offline.calibration import load_camera_yaml
from wilor_ros.offline.sources import (
    BagSource,
    FolderSource,
    Frame,
    FrameSource,
    Prefetcher,
    SourceStats,
    VideoSource,
    is_bag,
)
from wilor_ros.offline.store import FrameTable, HandStore, geometry_rows, hand_from_row
from wilor_ros.offline.writers import BagOutput, DatasetOutput, Outputs, VideoOutput

LOG = logging.getLogger("wilor_ros.process")
SMOOTHING_CHOICES = ("none", "causal", "offline")
STORAGE_CHOICES = ("mcap", "sqlite3")
NS_PER_S = 1e9
# A hand reconstructed for the wrong side is a mirror image: its 3D wrist can land far from the
# track's (mirrored across the MANO model origin, which lies about 9.5 cm from MANO's wrist, it is
# up to ~19 cm off). The first-pass association therefore widens the tracker's 3D gate to this and
# also requires box overlap: the track must survive its wrong-side frames for the majority vote to
# correct them.
MIRROR_TOLERANT_GATE_M = 0.4
MIN_ASSOCIATION_IOU = 0.05
BAG_NAME = "bag"
DATASET_NAME = "hands.npz"
SCHEMA_VERSION = 1


@dataclass
class ProcessConfig:
    """Options of ``wilor-ros process`` (the pipeline itself is a ``PipelineConfig``)."""

    # ---- input
    image_topic: str | None = None  # bags: raw or compressed image topic (None: the only one)
    camera_info_topic: str | None = None  # bags (None: the one beside the image topic, if any)
    depth_topic: str | None = None  # bags: aligned depth (16UC1 mm / 32FC1 m), optional
    boxes_topic: str | None = None  # bags: wilor_msgs/HandDetectionArray instead of the detector
    camera_info_file: str | None = None  # videos/folders: camera-calibrator YAML
    frame_id: str = "camera"  # videos/folders: header.frame_id of the outputs
    fps: float = 30.0  # image folders: frame rate for the stamps
    depth_max_age: float = 0.05  # s between an image and its depth image
    # ---- speed
    batch_frames: int = 8  # frames whose hands share one reconstructor (and detector) call
    queue_frames: int = 16  # decoded frames buffered by the background reader (memory: 16 images)
    # ---- sequence
    max_gap: int = 5  # fill gaps of up to this many frames inside a track (0: never)
    min_track_frames: int = 1  # drop tracks observed in fewer frames (false detections)
    smoothing: str = "offline"  # none | causal (the node's One Euro) | offline (zero-lag RTS)
    # offline smoothing cutoff: motion below passes, jitter above is removed (see smoothing.py)
    smoothing_cutoff_hz: float = 3.0
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)  # smoothing=causal
    depth: DepthCorrectionConfig = field(default_factory=DepthCorrectionConfig)
    # ---- outputs
    storage: str | None = None  # mcap | sqlite3 (None: the input bag's, mcap for videos/folders)
    copy_topics: list[str] = field(default_factory=list)  # input topics copied into the output bag
    frame_prefix: str = ""  # TF frame name prefix, as the node's parameter
    teleop: bool = True  # write teleop_hands
    video: str | None = None  # overlay MP4 path

    def validate(self) -> None:
        if self.smoothing not in SMOOTHING_CHOICES:
            raise ValueError(f"smoothing must be one of {SMOOTHING_CHOICES}, got {self.smoothing!r}")
        if self.storage is not None and self.storage not in STORAGE_CHOICES:
            raise ValueError(f"storage must be one of {STORAGE_CHOICES}, got {self.storage!r}")
        check_bounds(self, ("batch_frames", "queue_frames", "min_track_frames"), 1)
        check_bounds(self, ("max_gap",), 0)
        check_bounds(self, ("smoothing_cutoff_hz",), 0.0, open_minimum=True)
        check_bounds(self, ("depth_max_age",), 0.0, 1.0)


@dataclass
class ProcessSummary:
    """What one run did (printed at the end; the counts are stored in hands.npz too)."""

    source: str
    frames_in: int = 0  # image messages / video frames / files read
    frames_processed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # frames skipped, by reason
    notes: Counter[str] = field(default_factory=Counter)  # problems that did not skip a frame
    hands: int = 0  # rows written (observed + interpolated)
    tracks: int = 0
    interpolated: int = 0
    side_corrected: int = 0
    heuristic_intrinsics: int = 0  # processed frames without real intrinsics
    pass1_seconds: float = 0.0
    total_seconds: float = 0.0
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def pass1_fps(self) -> float:
        return self.frames_processed / self.pass1_seconds if self.pass1_seconds > 0 else 0.0

    def format(self) -> str:
        lines = [
            f"{self.source}",
            f"frames: {self.frames_in} read, {self.frames_processed} processed, "
            f"{sum(self.skipped.values())} skipped; first pass {self.pass1_fps:.1f} frames/s, "
            f"total {self.total_seconds:.1f} s",
            f"hands: {self.hands} rows in {self.tracks} tracks ({self.interpolated} interpolated, "
            f"{self.side_corrected} re-reconstructed for their track's side)",
        ]
        if self.heuristic_intrinsics:
            lines.append(
                f"intrinsics: the official focal heuristic for {self.heuristic_intrinsics} frames "
                "(flagged intrinsics_from_camera_info=false): 3D positions are approximate"
            )
        for title, counts in (("skipped frames", self.skipped), ("notes", self.notes)):
            if counts:
                lines.append(f"{title}:")
                lines.extend(f"  {count:>7}  {reason}" for reason, count in counts.most_common())
        lines.extend(f"{name}: {path}" for name, path in self.outputs.items())
        return "\n".join(lines)


# ------------------------------------------------------------------------------ inputs
def open_source(path: Path, config: ProcessConfig, stats: SourceStats) -> FrameSource:
    """The frame source for ``path`` (bag folder/file, video file or image folder)."""
    path = Path(path)
    if not path.exists():
        raise ValueError(f"input not found: {path}")
    calibration = load_camera_yaml(config.camera_info_file) if config.camera_info_file else None
    if is_bag(path):
        if calibration is not None:
            raise ValueError("--camera-info is for videos and image folders; a bag has its camera_info topic")
        return BagSource(
            path,
            config.image_topic,
            config.camera_info_topic,
            config.depth_topic,
            config.boxes_topic,
            config.depth_max_age,
            stats,
        )
    bag_only = [
        n for n in ("image_topic", "camera_info_topic", "depth_topic", "boxes_topic") if getattr(config, n)
    ]
    if bag_only or config.copy_topics:
        raise ValueError(
            f"{path} is not a rosbag2 bag: topic options ({', '.join(bag_only) or 'copy_topics'}) need one"
        )
    if path.is_dir():
        return FolderSource(path, calibration, config.frame_id, config.fps)
    return VideoSource(path, calibration, config.frame_id)


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _progress(total: int | None, desc: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="frame", disable=not enabled, dynamic_ncols=True, leave=False)


# ------------------------------------------------------------------------------ reconstruction
@dataclass
class _Job:
    """One frame to reconstruct: its image, boxes (with the sides to crop for) and camera."""

    frame: Frame
    detections: list[HandDetection]
    intrinsics: CameraIntrinsics


class BatchReconstructor:
    """The pipeline's stages over several frames at once: detector batches, one reconstructor
    call for all hands of a batch of frames, per-frame placement (``HandPipeline.postprocess``),
    non-finite hands dropped, depth correction."""

    def __init__(self, pipeline: HandPipeline, depth: DepthCorrectionConfig, summary: ProcessSummary) -> None:
        self.pipeline = pipeline
        self.depth = depth
        self.summary = summary

    def detect(self, frames: list[Frame]) -> list[list[HandDetection]]:
        """Boxes of each frame: its given boxes, else the detector's above the threshold (one
        ``detect_batch`` call for all such frames); at most ``max_hands``, highest scores first.
        The selection is ``HandPipeline.detect``'s, applied per frame of the batch."""
        config = self.pipeline.config
        found: list[list[HandDetection] | None] = [None if f.boxes is None else list(f.boxes) for f in frames]
        missing = [i for i, boxes in enumerate(found) if boxes is None]
        if missing:
            detector = self.pipeline.detector
            if detector is None:
                raise RuntimeError(
                    "no hand detector and no boxes for a frame: give boxes or a detector model"
                )
            batches = detector.detect_batch([frames[i].rgb for i in missing])
            for i, detections in zip(missing, batches):
                found[i] = [d for d in detections if d.score >= config.detection_threshold]
        return [self.pipeline.select(boxes or []) for boxes in found]

    def reconstruct(self, jobs: list[_Job]) -> list[list[HandEstimate]]:
        """Hands of every job, in the order of its detections (non-finite ones dropped)."""
        rescale = self.pipeline.config.rescale_factor
        batches = [preprocessing.crop_hands(job.frame.rgb, job.detections, rescale) for job in jobs]
        crops = [b.crops for b in batches if len(b)]
        output = self.pipeline.backend.infer(np.concatenate(crops)) if crops else ReconstructorOutput.empty()
        results = []
        start = 0
        for job, batch in zip(jobs, batches):
            part = ReconstructorOutput(
                **{k: v[start : start + len(batch)] for k, v in output.as_dict().items()}
            )
            start += len(batch)
            hands = self.pipeline.postprocess(part, batch, job.detections, job.intrinsics)
            finite = [
                h for h in hands if np.all(np.isfinite(h.keypoints_3d)) and np.all(np.isfinite(h.vertices))
            ]
            if len(finite) < len(hands):
                self.summary.notes["hands with non-finite output dropped"] += len(hands) - len(finite)
            if job.frame.depth_m is not None:
                finite = [correct_hand_depth(h, job.frame.depth_m, self.depth) or h for h in finite]
            results.append(finite)
        return results


# ------------------------------------------------------------------------------ the run
class _Run:
    def __init__(
        self,
        source: FrameSource,
        pipeline: HandPipeline,
        config: ProcessConfig,
        outputs: Outputs,
        summary: ProcessSummary,
        boxes: Mapping[str, list[HandDetection]] | None,
        show_progress: bool,
    ) -> None:
        self.source = source
        self.pipeline = pipeline
        self.config = config
        self.outputs = outputs
        self.summary = summary
        self.boxes = boxes
        self.show_progress = show_progress
        self.frames = FrameTable()
        self.store = HandStore(outputs.work / "hands")
        self.reconstructor = BatchReconstructor(pipeline, config.depth, summary)
        tracker = config.tracker
        self.tracker = HandTracker(
            dataclasses.replace(
                tracker,
                min_hits=1,  # every hand gets a row; short tracks are dropped after the pass
                max_missed_frames=max(tracker.max_missed_frames, config.max_gap),
                max_missed_s=1e9,  # the frame count decides (a slow camera is not a gap)
                max_wrist_distance_m=max(tracker.max_wrist_distance_m, MIRROR_TOLERANT_GATE_M),
                min_iou=max(tracker.min_iou, MIN_ASSOCIATION_IOU),
            )
        )

    # ---------------------------------------------------------------- pass 1
    def _accept(self, frame: Frame, last_stamp: int | None) -> str:
        """Why ``frame`` must be skipped ("" to process it); fills in boxes and intrinsics."""
        if frame.skip:
            return frame.skip
        if last_stamp is not None and frame.stamp_ns <= last_stamp:
            return "stamp not after the previous frame's (out of order or repeated)"
        if self.boxes is not None:
            frame.boxes = self.boxes.get(frame.name)
            if frame.boxes is None:
                return "no entry in the boxes file"
        assert frame.rgb is not None
        if frame.intrinsics is None:
            height, width = frame.rgb.shape[:2]
            frame.intrinsics = camera.heuristic_intrinsics(width, height)
            if not self.summary.heuristic_intrinsics:
                LOG.warning(
                    "no camera intrinsics (no camera_info / --camera-info): using the official focal "
                    "heuristic 5000/256 * max(W, H); 3D positions are approximate and flagged"
                )
            self.summary.heuristic_intrinsics += 1
        for note in frame.notes:
            self.summary.notes[note] += 1
        return ""

    def first_pass(self) -> None:
        start = time.perf_counter()
        last_stamp: int | None = None
        bar = _progress(getattr(self.source, "count", None), "reconstruct", self.show_progress)
        with bar, Prefetcher(self.source.frames, self.config.queue_frames) as frames:
            for chunk in _chunks(frames, self.config.batch_frames):
                accepted = []
                for frame in chunk:
                    self.summary.frames_in += 1
                    reason = self._accept(frame, last_stamp)
                    if reason:
                        self.summary.skipped[reason] += 1
                        continue
                    last_stamp = frame.stamp_ns
                    accepted.append(frame)
                self._reconstruct_new(accepted)
                bar.update(len(chunk))
        self.summary.pass1_seconds = time.perf_counter() - start
        self.summary.frames_processed = self.frames.size

    def _reconstruct_new(self, frames: list[Frame]) -> None:
        if not frames:
            return
        detections = self.reconstructor.detect(frames)
        jobs = [_Job(f, d, f.intrinsics) for f, d in zip(frames, detections)]  # type: ignore[arg-type]
        for job, hands in zip(jobs, self.reconstructor.reconstruct(jobs)):
            frame = job.frame
            assert frame.rgb is not None and frame.intrinsics is not None
            height, width = frame.rgb.shape[:2]
            row = self.frames.add(
                index=frame.index,
                stamp_ns=frame.stamp_ns,
                log_time_ns=frame.log_time_ns,
                frame_id=frame.frame_id,
                intrinsics=[
                    frame.intrinsics.fx,
                    frame.intrinsics.fy,
                    frame.intrinsics.cx,
                    frame.intrinsics.cy,
                ],
                from_camera_info=frame.intrinsics.from_camera_info,
                width=width,
                height=height,
            )
            tracked = self.tracker.update(hands, frame.stamp_ns / NS_PER_S, from_detector=True)
            if len(tracked) != len(hands):
                raise RuntimeError("the tracker must return every hand (min_hits=1); report this as a bug")
            if hands:
                count = len(hands)
                self.store.append(
                    {
                        **geometry_rows(hands),
                        "frame": np.full(count, row),
                        "track": np.array([h.track_id for h in tracked]),
                        "side": np.array([int(h.side) for h in hands]),
                        "detected_side": np.array([int(h.side) for h in hands]),
                        "interpolated": np.zeros(count, bool),
                        "side_corrected": np.zeros(count, bool),
                        "keep": np.ones(count, bool),
                    }
                )

    # ---------------------------------------------------------------- pass 2
    def drop_short_tracks(self, tracks: dict[int, np.ndarray]) -> None:
        for rows in tracks.values():
            if len(rows) < self.config.min_track_frames:
                self.store.write(rows, {"keep": np.zeros(len(rows), bool)})

    def correct_sides(self, tracks: dict[int, np.ndarray]) -> None:
        """Re-reconstruct the hands whose side disagrees with their track's majority side."""
        sides = sequence.majority_sides(self.store, tracks)
        side_of = np.asarray(self.store.array("side"))
        redo: dict[int, list[tuple[int, Side]]] = {}  # frame row -> [(store row, side)]
        frame_of = np.asarray(self.store.array("frame"))
        for track, rows in tracks.items():
            for r in rows[side_of[rows] != int(sides[track])]:
                redo.setdefault(int(frame_of[r]), []).append((int(r), sides[track]))
        if not redo:
            return
        data = self.frames.data
        wanted = {int(data[row]["index"]): row for row in redo}
        done: set[int] = set()
        bar = _progress(len(wanted), "side fixes", self.show_progress)
        with bar, Prefetcher(lambda: self.source.frames(wanted), self.config.queue_frames) as frames:
            for chunk in _chunks(frames, self.config.batch_frames):
                jobs, targets = [], []
                for frame in chunk:
                    frame_row = wanted.get(frame.index)
                    if frame_row is None or frame.rgb is None:
                        continue
                    items = redo[frame_row]
                    rows = self.store.rows(np.array([r for r, _ in items]))
                    detections = [
                        HandDetection(rows["box"][i], side, float(rows["score"][i]))
                        for i, (_, side) in enumerate(items)
                    ]
                    jobs.append(_Job(frame, detections, sequence.intrinsics_of(self.frames, frame_row)))
                    targets.append(items)
                for items, hands in zip(targets, self.reconstructor.reconstruct(jobs) if jobs else []):
                    self._store_redone(items, hands)
                    done.update(r for r, _ in items)
                bar.update(len(chunk))
        lost = [r for items in redo.values() for r, _ in items if r not in done]
        if lost:  # frames that could not be re-read: never keep a mirror-wrong hand
            self.store.write(np.array(lost), {"keep": np.zeros(len(lost), bool)})
            self.summary.notes["hands dropped: their frame could not be re-read for the side fix"] += len(
                lost
            )

    def _store_redone(self, items: list[tuple[int, Side]], hands: list[HandEstimate]) -> None:
        # reconstruct() keeps the detection order but drops non-finite hands: match by box
        for row, side in items:
            box = np.asarray(self.store.array("box")[row])
            match = next((h for h in hands if np.array_equal(h.box, box)), None)
            if match is None:
                self.store.write(np.array([row]), {"keep": np.zeros(1, bool)})
                continue
            values = {k: v for k, v in geometry_rows([match]).items() if k != "score"}
            values.update(side=np.array([int(side)]), side_corrected=np.ones(1, bool))
            self.store.write(np.array([row]), values)
            self.summary.side_corrected += 1

    # ---------------------------------------------------------------- outputs
    def write_outputs(
        self, bag_path: Path, dataset_path: Path, video_path: Path | None, storage: str
    ) -> None:
        faces = self.pipeline.backend.faces
        bag = BagOutput(bag_path, storage, faces, self.config.frame_prefix, self.config.teleop)
        dataset = DatasetOutput(self.outputs.work)
        label = "SYNTHETIC MODELS" if self.pipeline.synthetic else None
        video = None if video_path is None else VideoOutput(video_path, self._fps(), faces, label)
        try:
            self._write_frames(bag, dataset, video)
            bag.close()
        except BaseException:
            bag.abort()
            raise
        finally:
            if video is not None:
                video.close()
        if bag.teleop_skipped:
            self.summary.notes["hands left out of teleop_hands (no palm frame)"] += bag.teleop_skipped
        dataset.save(dataset_path, self._dataset_extra())

    def _fps(self) -> float:
        stamps = self.frames.data["stamp_ns"]
        if len(stamps) < 2:
            return 30.0
        return float(NS_PER_S / np.median(np.diff(stamps)))

    def _rows_by_frame(self) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
        rows = sequence.rows_in_frame_order(self.store)
        frame_of = np.asarray(self.store.array("frame"))[rows]
        bounds = np.searchsorted(frame_of, np.arange(self.frames.size + 1))
        for frame_row in range(self.frames.size):
            yield frame_row, self.store.rows(rows[bounds[frame_row] : bounds[frame_row + 1]])

    def _copies(self, bag: BagOutput) -> Iterator[tuple[int, Any, bytes]]:
        if not self.config.copy_topics:
            return
        from wilor_ros.offline.sources import _open_reader

        assert isinstance(self.source, BagSource)
        reader = _open_reader(self.source.path)
        try:
            names = {c.topic for c in reader.connections}
            missing = sorted(set(self.config.copy_topics) - names)
            if missing:
                raise ValueError(
                    f"--copy-topics {', '.join(missing)}: not in the bag; topics: {', '.join(sorted(names))}"
                )
            connections = [c for c in reader.connections if c.topic in self.config.copy_topics]
            for connection in connections:
                bag.add_copy(connection)
            for connection, log_time, raw in reader.messages(connections=connections):
                yield int(log_time), connection, raw
        finally:
            reader.close()

    def _write_frames(self, bag: BagOutput, dataset: DatasetOutput, video: VideoOutput | None) -> None:
        filtered = self.config.smoothing != "none"
        copies = self._copies(bag)
        pending = next(copies, None)
        images: Iterator[Frame] = iter(())
        prefetch = None
        if video is not None:
            wanted = set(int(i) for i in self.frames.data["index"])
            prefetch = Prefetcher(lambda: self.source.frames(wanted), self.config.queue_frames)
            images = prefetch.__enter__()
        bar = _progress(self.frames.size, "write", self.show_progress)
        try:
            for frame_row, rows in self._rows_by_frame():
                record = self.frames.data[frame_row]
                while pending is not None and pending[0] <= int(record["log_time_ns"]):
                    bag.copy(pending[1], pending[0], pending[2])
                    pending = next(copies, None)
                intrinsics = sequence.intrinsics_of(self.frames, frame_row)
                count = len(rows["track"])
                hands = [
                    hand_from_row(
                        {k: v[i] for k, v in rows.items()}, intrinsics, tracked=True, filtered=filtered
                    )
                    for i in range(count)
                ]
                bag.write_frame(
                    int(record["log_time_ns"]),
                    int(record["stamp_ns"]),
                    self.frames.frame_id(frame_row),
                    hands,
                )
                dataset.add(
                    frame_row,
                    record,
                    hands,
                    {
                        "valid": ~rows["interpolated"],
                        "interpolated": rows["interpolated"],
                        "depth_corrected": rows["depth_corrected"],
                        "side_corrected": rows["side_corrected"],
                    },
                )
                self.summary.hands += count
                if video is not None:
                    image = next(images)
                    if image.index != int(record["index"]) or image.rgb is None:
                        raise RuntimeError(
                            f"frame {int(record['index'])} could not be read again for the video"
                        )
                    video.write(image.rgb, hands)
                bar.update(1)
            while pending is not None:
                bag.copy(pending[1], pending[0], pending[2])
                pending = next(copies, None)
        finally:
            bar.close()
            if prefetch is not None:
                prefetch.__exit__(None, None, None)

    def _dataset_extra(self) -> dict[str, np.ndarray]:
        data = self.frames.data
        skipped = self.summary.skipped.most_common()
        notes = self.summary.notes.most_common()
        return {
            "frames_index": data["index"],
            "frames_stamp_ns": data["stamp_ns"],
            "frames_frame_id": np.array(
                [self.frames.frame_id(i) for i in range(self.frames.size)], dtype=str
            ),
            "frames_intrinsics": data["intrinsics"],
            "frames_intrinsics_from_camera_info": data["from_camera_info"],
            "frames_image_size": np.stack([data["width"], data["height"]], axis=1).astype(np.int32),
            "skip_reasons": np.array([r for r, _ in skipped], dtype=str),
            "skip_counts": np.array([c for _, c in skipped], dtype=np.int64),
            "note_reasons": np.array([r for r, _ in notes], dtype=str),
            "note_counts": np.array([c for _, c in notes], dtype=np.int64),
            "frames_in": np.array(self.summary.frames_in),
            "smoothing": np.array(self.config.smoothing),
            "max_gap": np.array(self.config.max_gap),
            "source": np.array(self.summary.source),
            "synthetic_models": np.array(bool(self.pipeline.synthetic)),
            "schema_version": np.array(SCHEMA_VERSION),
        }


def process(
    input_path: str | Path,
    out_dir: str | Path,
    config: ProcessConfig,
    pipeline: HandPipeline,
    boxes: Mapping[str, list[HandDetection]] | None = None,
    show_progress: bool = True,
) -> ProcessSummary:
    """Run the whole job (see the module docstring); returns the summary.

    boxes: hand boxes per frame key (the image file name for folders, the frame index as a
    string otherwise), e.g. from ``tools.demo.load_boxes_file``; frames without an entry are
    skipped. Raises ValueError for unusable input or options; on any error or Ctrl-C no output
    is left under a final name.
    """
    config.validate()
    input_path = Path(input_path).absolute()
    out_dir = Path(out_dir).absolute()
    if out_dir == input_path or input_path in out_dir.parents:
        raise ValueError(f"--out {out_dir} is inside the input {input_path}: the input is never modified")
    started = time.perf_counter()
    stats = SourceStats()
    source = open_source(input_path, config, stats)
    summary = ProcessSummary(source=source.description)
    LOG.info("input: %s", source.description)
    storage = config.storage or getattr(source, "storage", None) or "mcap"
    bag_path = out_dir / BAG_NAME
    dataset_path = out_dir / DATASET_NAME
    video_path = Path(config.video).absolute() if config.video else None
    outputs = Outputs([bag_path, dataset_path] + ([video_path] if video_path else []), out_dir)
    run: _Run | None = None
    try:
        run = _Run(source, pipeline, config, outputs, summary, boxes, show_progress)
        run.first_pass()
        summary.notes.update(stats.counts)
        if run.frames.size == 0:
            raise ValueError(
                f"no frame of {input_path} could be processed:\n"
                + "\n".join(f"  {c:>7}  {r}" for r, c in summary.skipped.most_common())
            )
        tracks = sequence.track_rows(run.store)
        run.drop_short_tracks(tracks)
        run.correct_sides(sequence.track_rows(run.store))
        summary.interpolated = sequence.fill_gaps(
            run.store, run.frames, sequence.track_rows(run.store), config.max_gap
        )
        tracks = sequence.track_rows(run.store)
        summary.tracks = len(tracks)
        if config.smoothing == "offline":
            sequence.smooth_offline(run.store, run.frames, tracks, config.smoothing_cutoff_hz, outputs.work)
        elif config.smoothing == "causal":
            sequence.smooth_causal(run.store, run.frames, config.filter)
        run.write_outputs(
            outputs.temp(bag_path),
            outputs.temp(dataset_path),
            video_path and outputs.temp(video_path),
            storage,
        )
        run.store.close()
        outputs.commit()
    except BaseException:
        if run is not None:
            run.store.close()
        outputs.discard()
        raise
    summary.outputs = {"bag": bag_path, "dataset": dataset_path} | (
        {"video": video_path} if video_path else {}
    )
    summary.total_seconds = time.perf_counter() - started
    return summary
