"""What the node reports about itself: frame statistics, /diagnostics and rate-limited warnings."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

LATENCY_WINDOW = 100  # frames in the rolling latency/rate statistics


class ThrottledWarnings:
    """One warning per kind per ``period()`` seconds; ``once`` warns a kind only the first time."""

    def __init__(self, log: Callable[[str], None], period: Callable[[], float]) -> None:
        self._log = log
        self._period = period
        self._last: dict[str, float] = {}
        self._once: set[str] = set()

    def warn(self, kind: str, message: str) -> None:
        now = time.monotonic()
        if now - self._last.get(kind, -math.inf) >= self._period():
            self._last[kind] = now
            self._log(message)

    def once(self, kind: str, message: str) -> None:
        if kind not in self._once:
            self._once.add(kind)
            self._log(message)


class FrameStatistics:
    """Counts of what happened to the frames, and rolling latency/rate of the processed ones."""

    def __init__(self) -> None:
        self.processed = 0
        self.skipped = 0  # bad input (unreadable image, out-of-order stamp, processing error)
        self.boxes_rejected = 0  # single external boxes dropped (NaN, inverted, outside the image)
        self.camera_info_received = 0
        self.camera_info_rejected = 0  # NaN, zero or negative focal lengths
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._done_times: deque[float] = deque(maxlen=LATENCY_WINDOW)

    def record_processed(self, latency_s: float) -> None:
        self.processed += 1
        self._latencies.append(latency_s)
        self._done_times.append(time.monotonic())

    def snapshot(self, counters: dict[str, float]) -> dict[str, float]:
        """``counters`` (from the frame slot, pairer, pipeline) plus this object's figures."""
        latencies = list(self._latencies)
        done = list(self._done_times)
        span = done[-1] - done[0] if len(done) > 1 else 0.0
        return {
            **{k: float(v) for k, v in counters.items()},
            "frames_processed": float(self.processed),
            "frames_skipped": float(self.skipped),
            "boxes_rejected": float(self.boxes_rejected),
            "camera_info_received": float(self.camera_info_received),
            "camera_info_rejected": float(self.camera_info_rejected),
            "processing_rate_hz": (len(done) - 1) / span if span > 0 else 0.0,
            "latency_mean_ms": 1e3 * float(np.mean(latencies)) if latencies else 0.0,
            "latency_max_ms": 1e3 * float(np.max(latencies)) if latencies else 0.0,
        }


def diagnostic_array(
    name: str, hardware_id: str, synthetic: bool, stats: dict[str, float], stamp: object
) -> DiagnosticArray:
    """One DiagnosticStatus with every statistic as a key/value pair."""
    status = DiagnosticStatus(
        name=name,
        hardware_id=hardware_id,
        level=DiagnosticStatus.WARN if synthetic else DiagnosticStatus.OK,
        message="synthetic models" if synthetic else "running",
        values=[KeyValue(key=k, value=f"{v:.3f}") for k, v in stats.items()],
    )
    array = DiagnosticArray(status=[status])
    array.header.stamp = stamp
    return array


def status_line(stats: dict[str, float]) -> str:
    return (
        f"{stats['processing_rate_hz']:.1f} Hz, latency {stats['latency_mean_ms']:.0f} ms "
        f"(max {stats['latency_max_ms']:.0f}), received {stats['frames_received']:.0f}, "
        f"dropped {stats['frames_dropped']:.0f}, skipped {stats['frames_skipped']:.0f}"
    )
