"""Frames of a recording: a rosbag2 bag (sqlite3 or MCAP), a video file or an image folder.

Every source yields ``Frame``s in recording order, numbered by their position in the input's
image stream (``Frame.index``, counting frames that could not be decoded). ``frames(wanted)``
decodes only the frames whose index is in ``wanted`` (a second pass re-reads a few frames).
``Prefetcher`` runs a source's iteration (reading, deserialising, decoding) in a background
thread into a bounded queue, so decoding overlaps inference and memory stays bounded.

Bags: the image topic may be raw (sensor_msgs/Image) or compressed (sensor_msgs/CompressedImage);
camera_info, an aligned depth image and hand boxes (wilor_msgs/HandDetectionArray) are paired
with each image by header stamp: boxes need the exact stamp (as in the node), depth the nearest
stamp within ``depth_max_age``, camera_info is the latest valid one. Pairing looks ahead a few
messages, because a bag stores messages in arrival order and a depth image may arrive after its
colour image.
"""

from __future__ import annotations

import queue
import threading
from collections import Counter, deque
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wilor_ros.core.types import CameraIntrinsics, HandDetection, Side
from wilor_ros.offline import bagtypes
from wilor_ros.offline.calibration import Calibration
from wilor_ros.ros import image_conversion

IMAGE_TYPES = (bagtypes.IMAGE, bagtypes.COMPRESSED_IMAGE)
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v", ".mpg", ".mpeg")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
BAG_SUFFIXES = (".db3", ".mcap")
PAIRING_LOOKAHEAD = 16  # images held back while waiting for their depth/boxes message
AUX_HISTORY = 32  # depth/boxes messages kept for pairing
NS_PER_S = 1_000_000_000


@dataclass
class Frame:
    """One image of the input, decoded (``rgb``) or skipped (``skip`` says why)."""

    index: int  # position in the input's image stream, from 0, counting skipped frames
    stamp_ns: int  # image header stamp (bags) or frame time (video, folder), nanoseconds
    log_time_ns: int  # when the bag recorded it (bags); = stamp_ns otherwise
    frame_id: str
    rgb: np.ndarray | None = None  # H x W x 3 RGB uint8
    skip: str = ""  # why the frame cannot be processed ("" when rgb is set)
    intrinsics: CameraIntrinsics | None = None  # None: the official focal heuristic
    depth_m: np.ndarray | None = None  # H x W float32 metres, aligned with rgb
    boxes: list[HandDetection] | None = None  # from the bag's boxes topic
    name: str = ""  # key in a boxes JSON: the file name (folders) or the index (others)
    notes: list[str] = field(default_factory=list)  # non-fatal problems (e.g. no depth paired)


class SourceStats:
    """Counts of input problems that do not skip a frame (shared by every pass; thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def add(self, reason: str) -> None:
        with self._lock:
            self.counts[reason] += 1


# ------------------------------------------------------------------------------ prefetching
_END = object()


class Prefetcher:
    """Iterate ``make_iterator()`` in a daemon thread through a queue of ``size`` items.

    Use as a context manager; leaving it (normally, by an error or Ctrl-C) stops the thread.
    An exception of the iteration is raised again in the consuming thread.
    """

    def __init__(self, make_iterator: Callable[[], Iterator[Any]], size: int) -> None:
        self._make = make_iterator
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, size))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._work, name="wilor_decode", daemon=True)

    def _put(self, item: Any) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _work(self) -> None:
        try:
            for item in self._make():
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as exc:  # re-raised in the consumer
            self._put(exc)

    def __enter__(self) -> Iterator[Any]:
        self._thread.start()
        return self._iterate()

    def _iterate(self) -> Iterator[Any]:
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        while True:  # unblock a producer waiting on a full queue
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._thread.join(timeout=5.0)


# ------------------------------------------------------------------------------ bags
def is_bag(path: Path) -> bool:
    return (path.is_dir() and (path / "metadata.yaml").is_file()) or path.suffix.lower() in BAG_SUFFIXES


def bag_storage(path: Path) -> str:
    """'mcap' or 'sqlite3': from metadata.yaml of a bag folder, else the file suffix."""
    import yaml

    if path.is_dir():
        try:
            info = yaml.safe_load((path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
            return str(info["storage_identifier"])
        except (OSError, KeyError, TypeError, yaml.YAMLError) as exc:
            raise ValueError(
                f"{path}/metadata.yaml is unreadable ({exc}): is this a rosbag2 folder?"
            ) from exc
    return "mcap" if path.suffix.lower() == ".mcap" else "sqlite3"


def _open_reader(path: Path) -> Any:
    """An open rosbags AnyReader; ValueError with advice when the bag cannot be read."""
    from rosbags.highlevel import AnyReader

    reader = AnyReader([path], default_typestore=bagtypes.typestore())
    try:
        reader.open()
    except Exception as exc:
        raise ValueError(
            f"cannot read the bag {path}: {type(exc).__name__}: {exc}. The file may be truncated or "
            "corrupt: a bag cut short by a crash can often be repaired with `ros2 bag reindex` "
            "(sqlite3) or `mcap recover` (MCAP)"
        ) from exc
    return reader


@dataclass(frozen=True)
class TopicSummary:
    name: str
    msgtype: str
    count: int


def topic_table(topics: list[TopicSummary], types: tuple[str, ...]) -> str:
    rows = [t for t in topics if t.msgtype in types]
    if not rows:
        return "  (none)"
    return "\n".join(f"  {t.name}  [{t.msgtype}]  {t.count} messages" for t in rows)


def _namespace(topic: str) -> str:
    parts = topic.rstrip("/").split("/")
    if parts and parts[-1] == "compressed":
        parts = parts[:-1]
    return "/".join(parts[:-1])


class BagSource:
    """Images (and camera_info, depth, boxes) of a rosbag2 recording (see the module docstring)."""

    def __init__(
        self,
        path: Path,
        image_topic: str | None = None,
        camera_info_topic: str | None = None,
        depth_topic: str | None = None,
        boxes_topic: str | None = None,
        depth_max_age_s: float = 0.05,
        stats: SourceStats | None = None,
    ) -> None:
        self.path = Path(path)
        self.storage = bag_storage(self.path)
        self.stats = stats or SourceStats()
        self.depth_max_age_ns = int(depth_max_age_s * NS_PER_S)
        reader = _open_reader(self.path)
        try:
            self.topics = [
                TopicSummary(name, info.msgtype or "?", int(info.msgcount))
                for name, info in reader.topics.items()
            ]
            self.start_time_ns = int(reader.start_time) if reader.message_count else 0
        finally:
            reader.close()
        by_name = {t.name: t for t in self.topics}
        exclude = {depth_topic} if depth_topic else set()
        self.image_topic = self._choose(image_topic, IMAGE_TYPES, "image", "--image-topic", exclude)
        self.image_type = by_name[self.image_topic].msgtype
        self.camera_info_topic = self._choose_camera_info(camera_info_topic)
        self.depth_topic = self._check(depth_topic, (bagtypes.IMAGE,), "depth", "--depth-topic")
        self.boxes_topic = self._check(
            boxes_topic, (bagtypes.HAND_DETECTION_ARRAY,), "boxes", "--boxes-topic"
        )
        self.count = by_name[self.image_topic].count
        self.description = (
            f"bag {self.path} ({self.storage}), images on {self.image_topic} [{self.image_type}]"
        )

    # ---------------------------------------------------------------- topic selection
    def _listing(self, types: tuple[str, ...]) -> str:
        """The bag's image and camera_info topics (and those of ``types``) with types and counts."""
        listed = [IMAGE_TYPES, (bagtypes.CAMERA_INFO,)]
        if not set(types) <= {*IMAGE_TYPES, bagtypes.CAMERA_INFO}:
            listed.append(types)
        parts = []
        for group in listed:
            names = "/".join(t.split("/")[-1] for t in group)
            parts.append(f"{names} topics in {self.path}:\n{topic_table(self.topics, group)}")
        return "\n".join(parts)

    def _check(self, name: str | None, types: tuple[str, ...], what: str, option: str) -> str | None:
        if name is None:
            return None
        topic = next((t for t in self.topics if t.name == name), None)
        if topic is None:
            raise ValueError(f"{option} {name}: no such topic in the bag; {self._listing(types)}")
        if topic.msgtype not in types:
            raise ValueError(
                f"{option} {name} carries {topic.msgtype}, not a {what} type ({', '.join(types)}); "
                f"{self._listing(types)}"
            )
        if topic.count == 0:
            raise ValueError(f"{option} {name} has no messages; {self._listing(types)}")
        return name

    def _choose(self, name: str | None, types: tuple[str, ...], what: str, option: str, exclude: set) -> str:
        if name is not None:
            checked = self._check(name, types, what, option)
            assert checked is not None
            return checked
        candidates = [t for t in self.topics if t.msgtype in types and t.name not in exclude and t.count > 0]
        if len(candidates) == 1:
            return candidates[0].name
        problem = "no non-empty" if not candidates else "more than one"
        raise ValueError(
            f"{problem} {what} topic in the bag: choose one with {option}; {self._listing(types)}"
        )

    def _choose_camera_info(self, name: str | None) -> str | None:
        types = (bagtypes.CAMERA_INFO,)
        if name is not None:
            return self._check(name, types, "camera_info", "--camera-info-topic")
        candidates = [t for t in self.topics if t.msgtype == bagtypes.CAMERA_INFO and t.count > 0]
        if len(candidates) > 1:  # prefer the one beside the image topic (/cam/color/...)
            candidates = [t for t in candidates if _namespace(t.name) == _namespace(self.image_topic)]
            if len(candidates) != 1:
                raise ValueError(
                    f"more than one camera_info topic in the bag: choose one with --camera-info-topic; "
                    f"{self._listing(types)}"
                )
        return candidates[0].name if candidates else None

    # ---------------------------------------------------------------- iteration
    def frames(self, wanted: Container[int] | None = None) -> Iterator[Frame]:
        """Frames in recording order; only those in ``wanted`` (all when None) are decoded and
        yielded."""
        reader = _open_reader(self.path)
        try:
            yield from self._frames(reader, wanted)
        finally:
            reader.close()

    def _frames(self, reader: Any, wanted: Container[int] | None) -> Iterator[Frame]:
        topics = {self.image_topic, self.camera_info_topic, self.depth_topic, self.boxes_topic} - {None}
        connections = [c for c in reader.connections if c.topic in topics]
        depth: deque[tuple[int, Any]] = deque(maxlen=AUX_HISTORY)
        boxes: deque[tuple[int, Any]] = deque(maxlen=AUX_HISTORY)
        pending: deque[tuple[Frame, Any]] = deque()
        newest = {"depth": -1, "boxes": -1}
        intrinsics: CameraIntrinsics | None = None
        index = -1

        def ready(frame: Frame) -> bool:
            return all(
                topic is None or newest[key] >= frame.stamp_ns
                for key, topic in (("depth", self.depth_topic), ("boxes", self.boxes_topic))
            )

        def release(final: bool) -> Iterator[Frame]:
            while pending and (final or len(pending) > PAIRING_LOOKAHEAD or ready(pending[0][0])):
                frame, msg = pending.popleft()
                yield self._decode(frame, msg, depth, boxes)

        try:
            messages = reader.messages(connections=connections)
            for connection, log_time, raw in messages:
                topic = connection.topic
                if topic == self.image_topic:
                    index += 1
                    if wanted is not None and index not in wanted:
                        continue
                    frame = Frame(index, 0, int(log_time), "", name=str(index))
                    try:
                        msg = reader.deserialize(raw, connection.msgtype)
                    except Exception:
                        frame.skip = "undecodable image message"
                        frame.stamp_ns = int(log_time)
                        yield frame
                        continue
                    frame.stamp_ns = bagtypes.stamp_ns(msg.header)
                    frame.frame_id = str(msg.header.frame_id)
                    frame.intrinsics = intrinsics
                    pending.append((frame, msg))
                else:
                    try:
                        msg = reader.deserialize(raw, connection.msgtype)
                    except Exception:
                        self.stats.add(f"undecodable message on {topic}")
                        continue
                    stamp = bagtypes.stamp_ns(msg.header)
                    if topic == self.camera_info_topic:
                        try:
                            intrinsics = CameraIntrinsics.from_matrix(np.asarray(msg.k, dtype=np.float64))
                        except ValueError:
                            self.stats.add("camera_info with NaN or zero intrinsics (ignored)")
                        # frames waiting for depth/boxes take the newest calibration too
                        for frame, _ in pending:
                            frame.intrinsics = intrinsics if intrinsics is not None else frame.intrinsics
                    elif topic == self.depth_topic:
                        depth.append((stamp, msg))
                        newest["depth"] = max(newest["depth"], stamp)
                    elif topic == self.boxes_topic:
                        boxes.append((stamp, msg))
                        newest["boxes"] = max(newest["boxes"], stamp)
                yield from release(final=False)
        except ValueError:
            raise
        except Exception as exc:
            raise ValueError(
                f"reading {self.path} failed after image {index + 1} of {self.count}: "
                f"{type(exc).__name__}: {exc}. The bag is truncated or has a corrupt chunk; repair it "
                "(`ros2 bag reindex` for sqlite3, `mcap recover` for MCAP) and run again"
            ) from exc
        yield from release(final=True)

    def _decode(self, frame: Frame, msg: Any, depth: deque, boxes: deque) -> Frame:
        try:
            if self.image_type == bagtypes.COMPRESSED_IMAGE:
                frame.rgb = image_conversion.compressed_image_to_rgb(msg)
            else:
                frame.rgb = image_conversion.image_to_rgb(msg)
        except ValueError as exc:
            frame.skip = _image_skip_reason(msg, exc)
            return frame
        if self.boxes_topic is not None:
            match = next((m for s, m in reversed(boxes) if s == frame.stamp_ns), None)
            if match is None:
                frame.skip = "no hand boxes with the image's stamp"
                frame.rgb = None
                return frame
            frame.boxes = [
                HandDetection(np.asarray(d.box, np.float32), Side(int(d.side)), float(d.score))
                for d in match.detections
            ]
        if self.depth_topic is not None:
            frame.depth_m = self._depth_for(frame, depth)
        return frame

    def _depth_for(self, frame: Frame, depth: deque) -> np.ndarray | None:
        assert frame.rgb is not None
        if not depth:
            frame.notes.append("no depth image")
            return None
        age, msg = min(((abs(s - frame.stamp_ns), m) for s, m in depth), key=lambda c: c[0])
        if age > self.depth_max_age_ns:
            frame.notes.append("no depth image within depth_max_age")
            return None
        try:
            metres = image_conversion.depth_image_to_metres(msg)
        except ValueError:
            frame.notes.append("unreadable depth image")
            return None
        if metres.shape != frame.rgb.shape[:2]:
            frame.notes.append("depth image not aligned with the colour image")
            return None
        return metres


def _image_skip_reason(msg: Any, exc: ValueError) -> str:
    text = str(exc)
    if text.startswith("unsupported image encoding"):
        return f"unsupported image encoding {getattr(msg, 'encoding', '?')!r}"
    if "compressed depth" in text:
        return "compressedDepth on the image topic"
    if text.startswith("cannot decode CompressedImage") or text.startswith("CompressedImage has no data"):
        return "corrupt compressed image"
    return "malformed image message"


# ------------------------------------------------------------------------------ video, folders
def _check_calibration(calibration: Calibration | None, shape: tuple[int, ...], where: str) -> None:
    if calibration is not None and (calibration.width, calibration.height) != (shape[1], shape[0]):
        raise ValueError(
            f"--camera-info is for {calibration.width} x {calibration.height} images but {where} is "
            f"{shape[1]} x {shape[0]}: use the calibration of this camera and resolution"
        )


class VideoSource:
    """Frames of a video file (stamps: the container's frame times, else index / fps)."""

    def __init__(self, path: Path, calibration: Calibration | None, frame_id: str) -> None:
        import cv2

        self.path = Path(path)
        self.calibration = calibration
        self.frame_id = frame_id
        self.storage = None
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            raise ValueError(f"OpenCV cannot open {self.path} as a video")
        self.fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
        self.count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        capture.release()
        self.description = f"video {self.path} ({self.fps:.2f} fps)"

    def frames(self, wanted: Container[int] | None = None) -> Iterator[Frame]:
        import cv2

        capture = cv2.VideoCapture(str(self.path))
        intrinsics = None if self.calibration is None else self.calibration.intrinsics
        previous = -1
        try:
            index = -1
            while True:
                index += 1
                if wanted is not None and index not in wanted:
                    if not capture.grab():  # advances without converting the frame
                        return
                    continue
                ok, bgr = capture.read()
                if not ok:
                    return
                _check_calibration(self.calibration, bgr.shape, str(self.path))
                stamp = round(capture.get(cv2.CAP_PROP_POS_MSEC) * 1e6)
                if stamp <= previous:  # containers without usable frame times
                    stamp = round(index * NS_PER_S / self.fps)
                previous = stamp
                rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
                yield Frame(index, stamp, stamp, self.frame_id, rgb, intrinsics=intrinsics, name=str(index))
        finally:
            capture.release()


class FolderSource:
    """Image files of a folder, in name order, at ``fps`` frames per second."""

    def __init__(self, path: Path, calibration: Calibration | None, frame_id: str, fps: float) -> None:
        self.path = Path(path)
        self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise ValueError(f"{self.path} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        if not fps > 0:
            raise ValueError(f"--fps must be positive, got {fps}")
        self.calibration = calibration
        self.frame_id = frame_id
        self.fps = fps
        self.storage = None
        self.count = len(self.files)
        self.description = f"image folder {self.path} ({self.count} files at {fps:g} fps)"

    def frames(self, wanted: Container[int] | None = None) -> Iterator[Frame]:
        import cv2

        intrinsics = None if self.calibration is None else self.calibration.intrinsics
        for index, path in enumerate(self.files):
            if wanted is not None and index not in wanted:
                continue
            stamp = round(index * NS_PER_S / self.fps)
            frame = Frame(index, stamp, stamp, self.frame_id, intrinsics=intrinsics, name=path.name)
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                frame.skip = "unreadable image file"
            else:
                _check_calibration(self.calibration, bgr.shape, str(path))
                frame.rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            yield frame


FrameSource = BagSource | VideoSource | FolderSource
