"""ros.input_sync: images paired by stamp with late or early boxes and depth, on a controlled clock."""

from __future__ import annotations

import pytest

from wilor_ros.ros.input_sync import NS_PER_S, LatestFrameSlot, PairingConfig, StampPairer

PERIOD_30HZ = 1.0 / 30.0


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def ns(seconds: float) -> int:
    return round(seconds * NS_PER_S)


def run_stream(pairer: StampPairer, clock: Clock, events: list[tuple[float, str, float]]) -> list:
    """Feed (arrival time, kind, stamp) events in time order, expiring every 5 ms in between;
    returns the frames handed on."""
    out = []
    end = max(t for t, _, _ in events) + 1.0
    pending = sorted(events)
    t = 0.0
    while t <= end:
        clock.now = t
        while pending and pending[0][0] <= t:
            _, kind, stamp = pending.pop(0)
            add = {"image": pairer.add_image, "boxes": pairer.add_boxes, "depth": pairer.add_depth}[kind]
            out += add(ns(stamp), f"{kind}@{stamp:.3f}")
        out += pairer.expire()
        t = round(t + 0.005, 6)
    return out


@pytest.mark.parametrize("delay", [0.05, 0.15, -0.02])
def test_boxes_late_or_early_are_paired(delay):
    clock = Clock()
    pairer = StampPairer(PairingConfig(boxes=True, boxes_timeout_s=0.2), clock=clock)
    frames = run_stream(pairer, clock, [(1.0, "image", 1.0), (1.0 + delay, "boxes", 1.0)])
    assert [(f.image, f.boxes) for f in frames] == [("image@1.000", "boxes@1.000")]
    assert pairer.counters.images_without_boxes == 0 and pairer.counters.boxes_without_image == 0


def test_image_waits_exactly_the_timeout():
    clock = Clock()
    pairer = StampPairer(PairingConfig(boxes=True, boxes_timeout_s=0.2), clock=clock)
    assert pairer.add_image(ns(1.0), "image") == []
    clock.now = 0.199
    assert pairer.expire() == [] and pairer.pending() == 1
    clock.now = 0.201
    assert pairer.expire() == [] and pairer.pending() == 0
    assert pairer.counters.images_without_boxes == 1
    clock.now = 0.25  # the boxes come too late: they expire unused as well
    assert pairer.add_boxes(ns(1.0), "boxes") == []
    clock.now = 0.5
    pairer.expire()
    assert pairer.counters.boxes_without_image == 1


def test_boxes_that_never_come_drop_only_their_frame():
    clock = Clock()
    pairer = StampPairer(PairingConfig(boxes=True, boxes_timeout_s=0.2), clock=clock)
    events = []
    for k in range(10):
        stamp = k * PERIOD_30HZ
        events.append((stamp, "image", stamp))
        if k != 4:
            events.append((stamp + 0.05, "boxes", stamp))
    frames = run_stream(pairer, clock, events)
    assert [round(f.stamp / NS_PER_S / PERIOD_30HZ) for f in frames] == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    # frame 4 was superseded when frame 5 paired (its boxes could still have come: the frame is
    # dropped at once rather than handed on out of order)
    assert pairer.counters.superseded + pairer.counters.images_without_boxes == 1


@pytest.mark.parametrize("delay", [0.05, 0.15])
def test_every_frame_of_a_30hz_stream_is_paired(delay):
    clock = Clock()
    pairer = StampPairer(PairingConfig(boxes=True, boxes_timeout_s=0.2), clock=clock)
    events = []
    for k in range(90):
        stamp = 100.0 + k * PERIOD_30HZ
        events += [(k * PERIOD_30HZ, "image", stamp), (k * PERIOD_30HZ + delay, "boxes", stamp)]
    frames = run_stream(pairer, clock, events)
    assert len(frames) == 90
    assert all(f.boxes == f"boxes@{f.stamp / NS_PER_S:.3f}" for f in frames)
    assert [f.stamp for f in frames] == sorted(f.stamp for f in frames)
    assert pairer.counters.paired == 90 and pairer.counters.images_without_boxes == 0


def test_depth_nearest_stamp_waits_for_a_later_depth_image():
    clock = Clock()
    config = PairingConfig(depth=True, depth_timeout_s=0.1, depth_max_age_s=0.05)
    pairer = StampPairer(config, clock=clock)
    assert pairer.add_depth(ns(0.99), "depth@0.990") == []
    # a depth image 10 ms before exists, but a closer one may still come: wait
    assert pairer.add_image(ns(1.0), "image") == []
    clock.now = 0.02
    (frame,) = pairer.add_depth(ns(1.003), "depth@1.003")
    assert frame.depth == "depth@1.003"
    # no later depth image within the timeout: the nearest within max age is taken
    clock.now = 1.0
    assert pairer.add_image(ns(1.02), "image2") == []
    clock.now = 1.2
    (frame,) = pairer.expire()
    assert frame.depth == "depth@1.003"
    # nothing near enough: handed on without depth, with the reason
    clock.now = 2.0
    pairer.add_image(ns(2.0), "image3")
    clock.now = 2.2
    (frame,) = pairer.expire()
    assert frame.depth is None and "ms from the image" in frame.depth_note
    assert pairer.counters.depth_missing == 1


def test_boxes_and_depth_together_and_bounded_memory():
    clock = Clock()
    config = PairingConfig(boxes=True, boxes_timeout_s=0.2, depth=True, depth_timeout_s=0.1, max_pending=4)
    pairer = StampPairer(config, clock=clock)
    assert pairer.add_image(ns(1.0), "image") == []
    assert pairer.add_depth(ns(1.0), "depth") == []  # still waiting for the boxes
    (frame,) = pairer.add_boxes(ns(1.0), "boxes")
    assert (frame.image, frame.boxes, frame.depth) == ("image", "boxes", "depth")
    for k in range(10):  # images whose boxes never come: at most max_pending are held
        pairer.add_image(ns(2.0 + k), f"image{k}")
    assert pairer.pending() == 4 and pairer.counters.evicted == 6
    for k in range(10):  # boxes whose images never come: bounded too
        pairer.add_boxes(ns(50.0 + k), "boxes")
    assert pairer.counters.boxes_without_image == 6


def test_latest_frame_slot_keeps_the_newest_and_counts_drops():
    slot = LatestFrameSlot()
    clock = Clock()
    pairer = StampPairer(PairingConfig(), clock=clock)
    for k in range(3):
        for frame in pairer.add_image(ns(k), f"image{k}"):
            slot.put(frame)
    frame = slot.take(timeout=0.01)
    assert frame is not None and frame.image == "image2"
    assert slot.received == 3 and slot.dropped == 2
    assert slot.take(timeout=0.01) is None
