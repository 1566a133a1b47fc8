"""Input synchronisation of the node: images paired by stamp with their boxes and depth, and the
newest-frame slot the worker takes from.

Nothing here imports rclpy: the classes take stamps (integer nanoseconds) and opaque payloads,
so they are tested without a ROS graph and with an injected clock.

Why waiting is needed: a detector or tracker that runs on the image publishes its boxes AFTER the
image (tens to hundreds of milliseconds later), and a depth camera's aligned depth may come
before or after the colour image. ``StampPairer`` therefore holds an image for a bounded time
(``boxes_timeout_s`` / ``depth_timeout_s``, measured on the node's monotonic clock from the
image's arrival) and holds early boxes and recent depth images likewise:

* boxes are REQUIRED when enabled: they pair by exact stamp; an image whose boxes have not come
  within ``boxes_timeout_s`` is dropped and counted (``images_without_boxes``); boxes whose image
  never comes expire after the same time (``boxes_without_image``);
* depth is OPTIONAL: an image takes the depth image nearest in stamp (within
  ``depth_max_age_s``) once the choice is settled — a depth image with the same or a later stamp
  has arrived — or once ``depth_timeout_s`` has passed, with or without depth then.

Frames leave the pairer in stamp order: when a frame is ready, any OLDER frame still waiting is
dropped (``superseded``), since the worker only ever processes frames newer than the last one
(the newest-frame policy of ``LatestFrameSlot``). Memory is bounded by ``max_pending`` images,
``max_pending`` early box messages and ``max_depth`` depth images.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

NS_PER_S = 1_000_000_000


def stamp_ns(sec: int, nanosec: int) -> int:
    """A builtin_interfaces/Time as integer nanoseconds (exact: no float rounding in the keys)."""
    return int(sec) * NS_PER_S + int(nanosec)


@dataclass(frozen=True)
class PairingConfig:
    """What an image waits for, and for how long (seconds of the node's monotonic clock)."""

    boxes: bool = False  # external boxes required (pair by exact stamp)
    boxes_timeout_s: float = 0.2
    depth: bool = False  # aligned depth wanted (nearest stamp, optional)
    depth_timeout_s: float = 0.1
    depth_max_age_s: float = 0.05  # largest |stamp difference| of a usable depth image
    max_pending: int = 64  # images (and early box messages) held at once
    max_depth: int = 16  # depth images kept for pairing

    def __post_init__(self) -> None:
        for name in ("boxes_timeout_s", "depth_timeout_s", "depth_max_age_s"):
            if not getattr(self, name) >= 0.0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_pending < 1 or self.max_depth < 1:
            raise ValueError("max_pending and max_depth must be >= 1")

    @property
    def waits(self) -> bool:
        return self.boxes or self.depth


@dataclass
class PairedFrame:
    """An image with what was paired to it."""

    stamp: int  # nanoseconds
    image: Any
    received: float  # clock() at the image's arrival
    boxes: Any | None = None  # the boxes message with the same stamp (when boxes are enabled)
    depth: Any | None = None  # the nearest depth message within depth_max_age_s, or None
    depth_note: str = ""  # why no depth was paired ("" when depth is off or paired)


@dataclass
class PairingCounters:
    images: int = 0
    paired: int = 0  # frames handed on (with boxes when required)
    images_without_boxes: int = 0  # dropped: the boxes did not come in time
    boxes_without_image: int = 0  # box messages that expired unused
    superseded: int = 0  # older waiting frames dropped because a newer one was ready
    evicted: int = 0  # waiting frames dropped because max_pending were waiting
    depth_missing: int = 0  # frames handed on without depth although depth was wanted

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass
class _Waiting:
    frame: PairedFrame
    boxes_done: bool
    depth_done: bool


def _drop_oldest(pending: OrderedDict[int, Any], limit: int) -> int:
    """Drop the oldest entries of ``pending`` beyond ``limit``; returns how many were dropped."""
    dropped = 0
    while len(pending) > limit:
        pending.popitem(last=False)
        dropped += 1
    return dropped


@dataclass
class StampPairer:
    """See the module docstring. Thread-safe: callbacks and a timer may call it concurrently."""

    config: PairingConfig
    clock: Callable[[], float] = time.monotonic
    counters: PairingCounters = field(default_factory=PairingCounters)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: OrderedDict[int, _Waiting] = OrderedDict()  # by stamp, oldest first
        self._early_boxes: OrderedDict[int, tuple[float, Any]] = OrderedDict()  # stamp -> (arrival, msg)
        self._depth: deque[tuple[int, float, Any]] = deque(maxlen=self.config.max_depth)

    # ------------------------------------------------------------------ inputs
    def add_image(self, stamp: int, image: Any) -> list[PairedFrame]:
        """An image arrived; returns the frames that are now ready (oldest first)."""
        return self._update(True, lambda now: self._store_image(stamp, image, now))

    def add_boxes(self, stamp: int, boxes: Any) -> list[PairedFrame]:
        """A boxes message arrived (ignored unless boxes are enabled)."""
        return self._update(self.config.boxes, lambda now: self._store_boxes(stamp, boxes, now))

    def add_depth(self, stamp: int, depth: Any) -> list[PairedFrame]:
        """A depth image arrived (ignored unless depth is enabled)."""
        return self._update(self.config.depth, lambda now: self._store_depth(stamp, depth, now))

    def expire(self) -> list[PairedFrame]:
        """Apply the timeouts (call it periodically); returns the frames now ready."""
        return self._update(True, lambda now: None)

    def _update(self, enabled: bool, store: Callable[[float], None]) -> list[PairedFrame]:
        """Under the lock: store one arrival (when its kind is enabled), then hand on what is ready."""
        now = self.clock()
        with self._lock:
            if not enabled:
                return []
            store(now)
            return self._collect(now)

    def _store_image(self, stamp: int, image: Any, now: float) -> None:
        self.counters.images += 1
        frame = PairedFrame(stamp=stamp, image=image, received=now)
        waiting = _Waiting(frame, boxes_done=not self.config.boxes, depth_done=not self.config.depth)
        if self.config.boxes:
            early = self._early_boxes.pop(stamp, None)
            if early is not None:
                frame.boxes, waiting.boxes_done = early[1], True
        if self.config.depth:
            self._try_depth(waiting, final=False)
        if self._waiting.pop(stamp, None) is not None:  # the same stamp twice: the newer one wins
            self.counters.superseded += 1
        self._waiting[stamp] = waiting
        self._waiting = OrderedDict(sorted(self._waiting.items()))
        self.counters.evicted += _drop_oldest(self._waiting, self.config.max_pending)

    def _store_boxes(self, stamp: int, boxes: Any, now: float) -> None:
        waiting = self._waiting.get(stamp)
        if waiting is not None and not waiting.boxes_done:
            waiting.frame.boxes, waiting.boxes_done = boxes, True
        else:
            self._early_boxes[stamp] = (now, boxes)
            self.counters.boxes_without_image += _drop_oldest(self._early_boxes, self.config.max_pending)

    def _store_depth(self, stamp: int, depth: Any, now: float) -> None:
        self._depth.append((stamp, now, depth))
        for waiting in self._waiting.values():
            if not waiting.depth_done:
                self._try_depth(waiting, final=False)

    def reconfigure(self, config: PairingConfig) -> None:
        """New timeouts and age limits (what is paired, boxes and depth, cannot change)."""
        if (config.boxes, config.depth) != (self.config.boxes, self.config.depth):
            raise ValueError("StampPairer.reconfigure cannot switch boxes or depth pairing on or off")
        with self._lock:
            self.config = config

    def pending(self) -> int:
        with self._lock:
            return len(self._waiting)

    # ------------------------------------------------------------------ internals
    def _try_depth(self, waiting: _Waiting, final: bool) -> None:
        """Settle the depth choice when a depth image at or after the stamp exists (nothing
        better can come), or when ``final``."""
        stamp = waiting.frame.stamp
        if not final and not any(s >= stamp for s, _, _ in self._depth):
            return
        max_age_ns = self.config.depth_max_age_s * NS_PER_S
        candidates = [(abs(s - stamp), msg) for s, _, msg in self._depth]
        best = min(candidates, key=lambda c: c[0]) if candidates else None
        if best is not None and best[0] <= max_age_ns:
            waiting.frame.depth = best[1]
        elif best is None:
            waiting.frame.depth_note = "no depth image has arrived"
        else:
            waiting.frame.depth_note = f"nearest depth image is {best[0] / 1e6:.0f} ms from the image"
        waiting.depth_done = True

    def _collect(self, now: float) -> list[PairedFrame]:
        cfg = self.config
        # boxes for images that never came
        while self._early_boxes:
            stamp, (arrival, _) = next(iter(self._early_boxes.items()))
            if now - arrival <= cfg.boxes_timeout_s:
                break
            self._early_boxes.popitem(last=False)
            self.counters.boxes_without_image += 1
        ready: list[PairedFrame] = []
        for stamp in list(self._waiting):
            waiting = self._waiting[stamp]
            age = now - waiting.frame.received
            if not waiting.boxes_done and age > cfg.boxes_timeout_s:
                del self._waiting[stamp]
                self.counters.images_without_boxes += 1
                continue
            if not waiting.depth_done and age > cfg.depth_timeout_s:
                self._try_depth(waiting, final=True)
            if waiting.boxes_done and waiting.depth_done:
                ready.append(waiting.frame)
        if not ready:
            return []
        newest = ready[-1].stamp
        for stamp in [s for s in self._waiting if s <= newest]:
            waiting = self._waiting.pop(stamp)
            if waiting.frame is not ready[-1] and not (waiting.boxes_done and waiting.depth_done):
                self.counters.superseded += 1
        # ready frames older than the newest ready one are handed on too (oldest first): the
        # slot keeps the newest, and counts the others as dropped unless the worker was idle
        for frame in ready:
            if cfg.depth and frame.depth is None:
                self.counters.depth_missing += 1
        self.counters.paired += len(ready)
        return ready


@dataclass
class LatestFrameSlot:
    """Holds only the newest unprocessed frame; replacing one counts a drop."""

    dropped: int = 0
    received: int = 0

    def __post_init__(self) -> None:
        self._condition = threading.Condition()
        self._frame: PairedFrame | None = None
        self._closed = False

    def put(self, frame: PairedFrame) -> None:
        with self._condition:
            self.received += 1
            if self._frame is not None:
                self.dropped += 1
            self._frame = frame
            self._condition.notify()

    def take(self, timeout: float) -> PairedFrame | None:
        with self._condition:
            if self._frame is None and not self._closed:
                self._condition.wait(timeout)
            frame, self._frame = self._frame, None
            return frame

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()
