"""Crops: official parity (golden_prepost crop0..8) and the window-only batched path.

The batched path (crop_hands) is required to be bit-identical to the reference path
(crop_hand_reference); measured max difference: 0 on every case below.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from wilor_ros.core.hand.constants import CROP_SIZE
from wilor_ros.core.image import preprocessing as pp
from wilor_ros.core.image import warp
from wilor_ros.core.types import HandDetection, Side

NUM_GOLDEN_CROPS = 9
# golden crop7's float64 raw patch (blurred, sigma 1.48) differs from ours by a few float64 ulps
# on ~8 % of pixels (most likely scipy's Gaussian kernel rounding in the official environment);
# the float32 network input is still exact. All other raw patches match exactly.
FLOAT_PATCH_ATOL = 1e-12


@pytest.fixture(scope="module")
def golden(reference_dir: Path) -> tuple[list[dict], dict[str, np.ndarray]]:
    meta = json.loads((reference_dir / "golden_prepost.json").read_text())
    with np.load(reference_dir / "golden_prepost.npz") as data:
        arrays = {k: data[k] for k in data.files if k.startswith("crop")}
    return meta["crops"], arrays


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert bgr is not None, path
    return np.ascontiguousarray(bgr[:, :, ::-1])


@pytest.mark.parametrize("index", range(NUM_GOLDEN_CROPS))
def test_reference_path_reproduces_golden_crop(golden, demo_images_dir: Path, index: int) -> None:
    crops, arrays = golden
    meta = crops[index]
    rgb = read_rgb(demo_images_dir / meta["image"])
    result = pp.crop_hand_reference(rgb, meta["box_xyxy"], bool(meta["is_right"]), meta["rescale_factor"])

    assert result.box_size == meta["bbox_size"]  # float64 value of the numpy-1.x promotion
    assert result.blur_sigma == meta["blur_sigma"]
    assert result.flipped == meta["flip"]
    assert result.box_center.dtype == np.float32
    np.testing.assert_array_equal(result.box_center, np.float32(meta["box_center"]))
    np.testing.assert_array_equal(result.affine, arrays[f"crop{index}/trans"])

    golden_patch = arrays[f"crop{index}/patch_bgr"][:, :, ::-1]  # BGR -> RGB
    assert result.patch.dtype == golden_patch.dtype == np.dtype(meta["patch_dtype"])
    if result.patch.dtype == np.uint8:
        np.testing.assert_array_equal(result.patch, golden_patch)
    else:
        np.testing.assert_allclose(result.patch, golden_patch, rtol=0, atol=FLOAT_PATCH_ATOL)

    assert result.crop.dtype == np.float32 and result.crop.shape == (3, CROP_SIZE, CROP_SIZE)
    np.testing.assert_array_equal(result.crop, arrays[f"crop{index}/img"])


def test_batched_path_reproduces_all_golden_crops(golden, demo_images_dir: Path) -> None:
    crops, arrays = golden
    by_key: dict[tuple[str, float], list[dict]] = {}
    for meta in crops:
        by_key.setdefault((meta["image"], meta["rescale_factor"]), []).append(meta)
    for (image, rescale), metas in by_key.items():
        rgb = read_rgb(demo_images_dir / image)
        detections = [HandDetection(np.array(m["box_xyxy"]), int(m["is_right"])) for m in metas]
        batch = pp.crop_hands(rgb, detections, rescale)
        assert len(batch) == len(metas) and batch.image_size == (rgb.shape[1], rgb.shape[0])
        for i, meta in enumerate(metas):
            index = meta["index"]
            np.testing.assert_array_equal(batch.crops[i], arrays[f"crop{index}/img"])
            np.testing.assert_array_equal(batch.affines[i], arrays[f"crop{index}/trans"])
            np.testing.assert_array_equal(batch.box_centers[i], np.float32(meta["box_center"]))
            assert batch.box_sizes[i] == meta["bbox_size"]
            assert batch.sides[i] == int(meta["is_right"])


def random_detections(rng: np.random.Generator, width: int, height: int, count: int) -> list[HandDetection]:
    """Boxes of all kinds: inside, partly/fully outside, tiny, larger than the image."""
    out = []
    for _ in range(count):
        size_w = float(np.exp(rng.uniform(np.log(2.0), np.log(1.2 * max(width, height)))))
        size_h = size_w * float(rng.uniform(0.5, 2.0))
        x1 = float(rng.uniform(-0.6 * width, 1.2 * width))
        y1 = float(rng.uniform(-0.6 * height, 1.2 * height))
        box = np.round(np.array([x1, y1, x1 + size_w, y1 + size_h]) * 4) / 4  # some exact quarters
        side = Side.RIGHT if rng.random() < 0.5 else Side.LEFT
        out.append(HandDetection(box, side))
    return out


@pytest.mark.parametrize("rescale", [2.0, 2.5])
def test_batched_path_equals_reference_on_random_boxes(demo_images_dir: Path, rescale: float) -> None:
    rgb = read_rgb(demo_images_dir / "test5.jpeg")
    rgb = np.ascontiguousarray(rgb[:317, :405])  # odd size, still real content
    height, width = rgb.shape[:2]
    rng = np.random.default_rng(7 if rescale == 2.0 else 8)
    detections = random_detections(rng, width, height, 12)
    detections.append(HandDetection(np.array([-900.0, -900.0, -800.0, -850.0]), Side.LEFT))  # far outside
    detections.append(HandDetection(np.array([10.0, 20.0, 10.5, 20.25]), Side.RIGHT))  # tiny
    batch = pp.crop_hands(rgb, detections, rescale)
    blurred = 0
    for i, det in enumerate(detections):
        ref = pp.crop_hand_reference(rgb, det.box, det.side == Side.RIGHT, rescale)
        blurred += ref.blur_sigma is not None
        np.testing.assert_array_equal(batch.crops[i], ref.crop, err_msg=f"box {det.box} {det.side}")
        np.testing.assert_array_equal(batch.affines[i], ref.affine)
        assert batch.box_sizes[i] == ref.box_size
    assert blurred > 0  # the blurred (float64) path was exercised too


def test_close_up_hands_in_a_large_frame_equal_reference(demo_images_dir: Path) -> None:
    """Hands filling most of a large frame: strong blur (radius >= 10 px), windows clamped at the
    borders, left and right; the gathered-pixel crop still equals the whole-image reference exactly."""
    rgb = cv2.resize(read_rgb(demo_images_dir / "test1.jpg"), (2400, 1800), interpolation=cv2.INTER_LINEAR)
    detections = [
        HandDetection(np.array([150.0, 200.0, 1350.0, 1500.0]), Side.RIGHT),
        HandDetection(np.array([1500.0, 700.0, 2650.0, 1950.0]), Side.LEFT),  # partly outside
        HandDetection(np.array([-300.0, -200.0, 500.0, 400.0]), Side.LEFT),  # corner
    ]
    batch = pp.crop_hands(rgb, detections)
    for i, det in enumerate(detections):
        ref = pp.crop_hand_reference(rgb, det.box, det.side == Side.RIGHT)
        assert ref.blur_sigma is not None
        if i < 2:
            assert warp.gaussian_radius(ref.blur_sigma) >= 10
        np.testing.assert_array_equal(batch.crops[i], ref.crop, err_msg=f"hand {i}")


def test_box_fully_outside_gives_black_crop() -> None:
    rgb = np.full((40, 60, 3), 200, dtype=np.uint8)
    det = HandDetection(np.array([500.0, 500.0, 520.0, 530.0]), Side.RIGHT)
    batch = pp.crop_hands(rgb, [det])
    black = pp.normalize_patches(np.zeros((CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8))
    np.testing.assert_array_equal(batch.crops[0], black)
    np.testing.assert_array_equal(pp.crop_hand_reference(rgb, det.box, True).crop, black)


def test_empty_batch() -> None:
    rgb = np.zeros((10, 20, 3), dtype=np.uint8)
    batch = pp.crop_hands(rgb, [])
    assert len(batch) == 0
    assert batch.crops.shape == (0, 3, CROP_SIZE, CROP_SIZE) and batch.crops.dtype == np.float32
    assert batch.box_centers.shape == (0, 2) and batch.affines.shape == (0, 2, 3)
    assert batch.image_size == (20, 10)


def test_grayscale_and_rgba_inputs(demo_images_dir: Path) -> None:
    rgb = read_rgb(demo_images_dir / "test1.jpg")
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    gray3 = np.repeat(gray[:, :, None], 3, axis=2)
    rgba = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 17, np.uint8)], axis=2)

    np.testing.assert_array_equal(pp.to_rgb(gray), gray3)
    np.testing.assert_array_equal(pp.to_rgb(gray[:, :, None]), gray3)
    np.testing.assert_array_equal(pp.to_rgb(rgba), rgb)
    assert pp.to_rgb(rgb) is rgb  # already RGB and contiguous: no copy

    dets = [
        HandDetection(np.array([273.0, 165.0, 402.0, 272.0]), Side.RIGHT),
        HandDetection(np.array([55.0, 215.0, 135.0, 360.0]), Side.LEFT),
    ]
    from_gray = pp.crop_hands(pp.to_rgb(gray), dets)
    np.testing.assert_array_equal(from_gray.crops, pp.crop_hands(gray3, dets).crops)
    # all three channels of a grey crop carry the same pixel values
    raw = from_gray.crops * pp.NORM_STD[None, :, None, None] + pp.NORM_MEAN[None, :, None, None]
    np.testing.assert_allclose(raw[:, 0], raw[:, 1], atol=1e-3)
    np.testing.assert_array_equal(pp.crop_hands(pp.to_rgb(rgba), dets).crops, pp.crop_hands(rgb, dets).crops)


def test_bad_inputs_raise_value_error() -> None:
    with pytest.raises(ValueError, match="uint8"):
        pp.to_rgb(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="RGBA"):
        pp.to_rgb(np.zeros((4, 4, 2), dtype=np.uint8))
    with pytest.raises(ValueError, match="to_rgb"):
        pp.crop_hands(np.zeros((4, 4), dtype=np.uint8), [])
    with pytest.raises(ValueError, match="rescale"):
        pp.crop_hands(np.zeros((4, 4, 3), dtype=np.uint8), [], rescale=0.0)
    with pytest.raises(ValueError, match="4 finite"):
        pp.crop_geometry(np.array([0.0, 1.0, np.nan, 3.0]), True)


def test_crop_geometry_rules() -> None:
    # Wide box: S = 4/3 w, as a float64 product of the float32 width. The official "scale"
    # convention (rescale * w / 200, later * 200) round-trips through float32: 60 -> 60.0000038.
    wide = pp.crop_geometry(np.array([0.0, 0.0, 30.0, 10.0]), True, rescale=2.0)
    width32 = np.float32(np.float32(60.0) / np.float32(200.0)) * np.float32(200.0)
    assert width32 != 60.0
    assert wide.box_size == float(width32) * 256 / 192 and wide.blur_sigma is None and not wide.flipped
    # Tall box: S = h.
    tall = pp.crop_geometry(np.array([0.0, 0.0, 10.0, 300.0]), False, rescale=2.5)
    assert tall.box_size == 750.0 and tall.flipped
    assert tall.blur_sigma == (750.0 / 256 / 2 - 1) / 2  # 750 / 512 > 1.1: blurred
    # Blur threshold: S / 512 must exceed 1.1 (S = 563.2); these sides round-trip exactly.
    below = pp.crop_geometry(np.array([0.0, 0.0, 10.0, 281.25]), True, rescale=2.0)
    above = pp.crop_geometry(np.array([0.0, 0.0, 10.0, 287.5]), True, rescale=2.0)
    assert below.box_size == 562.5 and below.blur_sigma is None
    assert above.box_size == 575.0 and above.blur_sigma == (575.0 / 512 - 1) / 2


def test_blur_at_chosen_pixels_equals_full_blur_near_borders() -> None:
    """The premise of the crop path: the Gaussian evaluated at chosen rows x columns only (any order,
    near every border, more rows than one chunk) equals the full-image blur there, bit for bit."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, size=(161, 47, 3), dtype=np.uint8)
    for sigma in (0.3, 1.7, 4.2):
        full = warp.gaussian_blur(image, sigma)
        rows = np.concatenate([np.arange(0, 161, 2), [160, 159, 3]])  # > BLUR_ROW_CHUNK rows
        assert rows.size > warp.BLUR_ROW_CHUNK
        for cols in (np.array([0, 1, 46]), np.arange(46, -1, -3), np.array([20])):
            got = warp.blurred_samples(image, rows, cols, sigma)
            np.testing.assert_array_equal(got, full[np.ix_(rows, cols)], err_msg=f"sigma {sigma} cols {cols}")


def test_axis_support_indexes_both_taps_and_the_border() -> None:
    first = np.array([-5, -2, -1, 0, 3, 3, 4, 8, 9, 12])
    support = warp.axis_support(first, size=10)
    np.testing.assert_array_equal(support.pixels, [0, 1, 3, 4, 5, 8, 9])
    for tap, index in zip(first, support.taps):
        for step in (0, 1):  # both bilinear taps: the same pixel, or outside on both sides
            pixel = tap + step
            inside = 0 <= index + step < support.pixels.size
            assert inside == (0 <= pixel < 10), (tap, index)
            if inside:
                assert support.pixels[index + step] == pixel


def test_normalize_patches_torch_matches_numpy() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    patches = rng.integers(0, 256, size=(2, CROP_SIZE, CROP_SIZE, 3), dtype=np.uint8)
    expected = pp.normalize_patches(patches)
    got = pp.normalize_patches_torch(torch.from_numpy(patches)).numpy()
    np.testing.assert_array_equal(got, expected)
