"""The memory benchmark (tools/bench_memory.py) and the bound it shows (issue 11, item 8): a
7680 x 4320 rgb8 frame with two close-up hands costs at most a fraction of its own size in crops,
and at most 3x its size through the whole pipeline. Each figure is measured in a fresh process
with the kernel's peak-RSS mark reset just before the call (memory, not time: deterministic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from wilor_ros.core.image import preprocessing
from wilor_ros.core.types import Side
from wilor_ros.tools import bench_memory

FRAME_8K = (7680, 4320)
CROP_BOUND_X_FRAME = 1.0  # the crops of two close-up hands: under the frame's own size
PIPELINE_BOUND_X_FRAME = 3.0  # the goal for one frame through the pipeline


pytestmark = pytest.mark.skipif(
    not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc/self/clear_refs"
)


def test_close_up_hands_are_blurred_crops() -> None:
    """The benchmark's hands really take the large-window, blurred path."""
    _, hands = bench_memory.frame_and_hands(*FRAME_8K)
    for hand in hands:
        geometry = preprocessing.crop_geometry(hand.box, hand.side == Side.RIGHT)
        assert geometry.blur_sigma is not None and geometry.box_size > FRAME_8K[1]


def test_crop_of_an_8k_frame_stays_under_the_frame_size() -> None:
    row = bench_memory.run_child("crop", *FRAME_8K, model_dir="")
    print(bench_memory.format_table([row]))
    assert row.frame_mb == pytest.approx(7680 * 4320 * 3 / bench_memory.MB)
    assert row.peak_growth_mb <= CROP_BOUND_X_FRAME * row.frame_mb


def test_pipeline_on_an_8k_frame_stays_under_three_frames(synthetic_model_dir: Path) -> None:
    row = bench_memory.run_child("pipeline", *FRAME_8K, model_dir=str(synthetic_model_dir))
    print(bench_memory.format_table([row]))
    assert row.peak_growth_mb <= PIPELINE_BOUND_X_FRAME * row.frame_mb
