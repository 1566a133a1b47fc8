"""sensor_msgs/Image and CompressedImage conversion without cv_bridge, against hand-built buffers."""

from __future__ import annotations

import array

import numpy as np
import pytest

pytest.importorskip("rclpy", reason="the ROS adapter needs rclpy and the ROS message packages")

from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from wilor_ros.ros.image_conversion import (
    compressed_image_to_rgb,
    depth_image_to_metres,
    image_to_rgb,
    numpy_to_image,
    rgb_to_compressed,
)

pytestmark = pytest.mark.ros

PAD_BYTES = 7  # row padding used by the padded-step cases (odd on purpose: unaligned rows)


def make_msg(
    pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False, garbage: int = 0xAB
) -> Image:
    """Build an Image by hand: rows of ``pixels`` bytes (in the requested byte order) + padding."""
    h, w = pixels.shape[:2]
    if pixels.dtype.itemsize > 1:
        pixels = pixels.astype(pixels.dtype.newbyteorder(">" if bigendian else "<"))
    rows = np.ascontiguousarray(pixels).view(np.uint8).reshape(h, -1)
    padded = np.full((h, rows.shape[1] + pad), garbage, dtype=np.uint8)
    padded[:, : rows.shape[1]] = rows
    msg = Image()
    msg.height, msg.width, msg.encoding = h, w, encoding
    msg.is_bigendian = bigendian
    msg.step = rows.shape[1] + pad
    msg.data = array.array("B", padded.tobytes())
    return msg


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.mark.parametrize("pad", [0, PAD_BYTES])
def test_rgb8_bgr8_rgba8_bgra8(rng: np.random.Generator, pad: int) -> None:
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    alpha = rng.integers(0, 256, (5, 7, 1), dtype=np.uint8)
    bgr = rgb[:, :, ::-1]
    cases = {
        "rgb8": rgb,
        "bgr8": bgr,
        "rgba8": np.concatenate([rgb, alpha], axis=2),
        "bgra8": np.concatenate([bgr, alpha], axis=2),
    }
    for encoding, pixels in cases.items():
        msg = make_msg(pixels, encoding, pad=pad)
        out = image_to_rgb(msg)
        assert out.dtype == np.uint8 and out.shape == (5, 7, 3), encoding
        assert out.flags.c_contiguous, encoding
        assert np.array_equal(out, rgb), encoding
        assert not np.shares_memory(out, np.frombuffer(msg.data, dtype=np.uint8)), encoding


@pytest.mark.parametrize("pad", [0, PAD_BYTES])
def test_mono8(rng: np.random.Generator, pad: int) -> None:
    grey = rng.integers(0, 256, (4, 9), dtype=np.uint8)
    out = image_to_rgb(make_msg(grey, "mono8", pad=pad))
    assert np.array_equal(out, np.repeat(grey[:, :, None], 3, axis=2))


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("pad", [0, PAD_BYTES])
def test_mono16_scaled_like_cv_bridge(rng: np.random.Generator, bigendian: bool, pad: int) -> None:
    grey16 = rng.integers(0, 65536, (6, 5), dtype=np.uint16)
    grey16[0, :4] = [0, 65535, 128, 129]  # rounding edges: 128/257 < 0.5 < 129/257
    # cv_bridge: value * 255 / 65535 = value / 257, rounded to nearest (never exactly .5)
    expected8 = np.floor(grey16.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
    out = image_to_rgb(make_msg(grey16, "mono16", pad=pad, bigendian=bigendian))
    assert out[0, 0, 0] == 0 and out[0, 1, 0] == 255 and out[0, 2, 0] == 0 and out[0, 3, 0] == 1
    assert np.array_equal(out, np.repeat(expected8[:, :, None], 3, axis=2))


def _bt601_limited(y: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Independent reference: BT.601 limited-range YUV -> RGB (what OpenCV's 4:2:2 codes use)."""
    c, d, e = y - 16.0, u - 128.0, v - 128.0
    rgb = np.stack([1.164 * c + 1.596 * e, 1.164 * c - 0.391 * d - 0.813 * e, 1.164 * c + 2.018 * d], -1)
    return np.clip(np.rint(rgb), 0, 255)


@pytest.mark.parametrize("encoding", ["yuv422", "yuv422_yuy2"])
def test_yuv422_layouts(rng: np.random.Generator, encoding: str) -> None:
    h, w = 3, 8
    y = rng.integers(16, 236, (h, w)).astype(np.uint8)
    u = rng.integers(16, 241, (h, w // 2)).astype(np.uint8)
    v = rng.integers(16, 241, (h, w // 2)).astype(np.uint8)
    packed = np.empty((h, w // 2, 4), dtype=np.uint8)
    if encoding == "yuv422":  # UYVY: U Y0 V Y1
        packed[..., 0], packed[..., 1], packed[..., 2], packed[..., 3] = u, y[:, 0::2], v, y[:, 1::2]
    else:  # YUYV: Y0 U Y1 V
        packed[..., 0], packed[..., 1], packed[..., 2], packed[..., 3] = y[:, 0::2], u, y[:, 1::2], v
    msg = make_msg(packed.reshape(h, w, 2), encoding, pad=PAD_BYTES - 1)
    out = image_to_rgb(msg)
    expected = _bt601_limited(
        y.astype(float), np.repeat(u, 2, 1).astype(float), np.repeat(v, 2, 1).astype(float)
    )
    assert out.shape == (h, w, 3)
    assert np.max(np.abs(out.astype(int) - expected.astype(int))) <= 1


@pytest.mark.parametrize("encoding", ["yuv422", "yuv422_yuy2"])
def test_yuv422_odd_width_rejected(encoding: str) -> None:
    msg = make_msg(np.zeros((2, 5, 2), np.uint8), encoding)
    with pytest.raises(ValueError, match="even width"):
        image_to_rgb(msg)


@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("pad", [0, PAD_BYTES])
def test_depth_16uc1_millimetres(rng: np.random.Generator, bigendian: bool, pad: int) -> None:
    mm = rng.integers(1, 10000, (4, 6), dtype=np.uint16)
    mm[1, 2] = 0
    mm[3, 5] = 0x1234  # bytes differ, so a missed byte swap changes the value
    out = depth_image_to_metres(make_msg(mm, "16UC1", pad=pad, bigendian=bigendian))
    assert out.dtype == np.float32 and out.shape == (4, 6)
    valid = mm != 0
    assert np.all(np.isnan(out[~valid])) and np.count_nonzero(np.isnan(out)) == 1
    np.testing.assert_allclose(out[valid], mm[valid].astype(np.float64) / 1000.0, rtol=1e-6)


@pytest.mark.parametrize("bigendian", [False, True])
def test_depth_32fc1_metres_unchanged(rng: np.random.Generator, bigendian: bool) -> None:
    metres = rng.uniform(0.2, 5.0, (3, 4)).astype(np.float32)
    metres[0, 0] = np.nan
    metres[2, 3] = np.inf
    out = depth_image_to_metres(make_msg(metres, "32FC1", pad=PAD_BYTES, bigendian=bigendian))
    assert np.array_equal(out, metres, equal_nan=True)


# ------------------------------------------------------------------------------------ errors


def test_unsupported_encodings() -> None:
    with pytest.raises(ValueError, match="unsupported image encoding 'bayer_rggb8'"):
        image_to_rgb(make_msg(np.zeros((2, 2), np.uint8), "bayer_rggb8"))
    with pytest.raises(ValueError, match="unsupported depth encoding 'rgb8'"):
        depth_image_to_metres(make_msg(np.zeros((2, 2, 3), np.uint8), "rgb8"))
    with pytest.raises(ValueError, match="unsupported image encoding '16UC1'"):
        image_to_rgb(make_msg(np.zeros((2, 2), np.uint16), "16UC1"))


def test_step_smaller_than_row() -> None:
    msg = make_msg(np.zeros((3, 4, 3), np.uint8), "rgb8")
    msg.step = 11
    msg.data = array.array("B", bytes(11 * 3))
    with pytest.raises(ValueError, match="step 11 is smaller than"):
        image_to_rgb(msg)


@pytest.mark.parametrize("delta", [-1, 1])
def test_data_size_mismatch(delta: int) -> None:
    msg = make_msg(np.zeros((3, 4), np.uint16), "16UC1", pad=2)
    msg.data = array.array("B", bytes(msg.step * 3 + delta))
    with pytest.raises(ValueError, match="step \\* height"):
        depth_image_to_metres(msg)


@pytest.mark.parametrize(("height", "width"), [(0, 4), (4, 0), (0, 0)])
def test_zero_size(height: int, width: int) -> None:
    msg = Image(height=height, width=width, encoding="rgb8", step=width * 3)
    with pytest.raises(ValueError, match="zero size"):
        image_to_rgb(msg)


# ------------------------------------------------------------------------------- compressed


def test_compressed_png_exact_and_jpeg_close(rng: np.random.Generator) -> None:
    # smooth image so that JPEG stays close
    yy, xx = np.mgrid[0:32, 0:48]
    rgb = np.stack([xx * 5, yy * 7, (xx + yy) * 2], axis=-1).astype(np.uint8)
    png = rgb_to_compressed(rgb, "png")
    assert png.format == "png"
    assert np.array_equal(compressed_image_to_rgb(png), rgb)
    jpeg = rgb_to_compressed(rgb, "jpeg")
    decoded = compressed_image_to_rgb(jpeg)
    assert decoded.shape == rgb.shape
    # channel order is preserved (a BGR mix-up would move the mean colour far away)
    assert np.abs(decoded.astype(float).mean(axis=(0, 1)) - rgb.astype(float).mean(axis=(0, 1))).max() < 3.0


def test_compressed_errors() -> None:
    png = rgb_to_compressed(np.zeros((8, 8, 3), np.uint8), "png")
    corrupt = CompressedImage(format="png", data=array.array("B", b"\x89PNG not really an image"))
    with pytest.raises(ValueError, match="cannot decode"):
        compressed_image_to_rgb(corrupt)
    with pytest.raises(ValueError, match="no data"):
        compressed_image_to_rgb(CompressedImage(format="jpeg"))
    depth = CompressedImage(format="16UC1; compressedDepth png", data=png.data)
    with pytest.raises(ValueError, match="compressed depth"):
        compressed_image_to_rgb(depth)


# ------------------------------------------------------------------------------ numpy -> msg


def test_numpy_to_image_round_trips(rng: np.random.Generator) -> None:
    header = Header(frame_id="camera_optical")
    rgb = rng.integers(0, 256, (5, 3, 3), dtype=np.uint8)
    msg = numpy_to_image(rgb, "rgb8", header)
    assert (msg.height, msg.width, msg.step, msg.encoding) == (5, 3, 9, "rgb8")
    assert msg.header.frame_id == "camera_optical"
    assert np.array_equal(image_to_rgb(msg), rgb)
    assert np.array_equal(image_to_rgb(numpy_to_image(np.ascontiguousarray(rgb[:, :, ::-1]), "bgr8")), rgb)
    mm = rng.integers(1, 5000, (4, 4), dtype=np.uint16)
    depth_msg = numpy_to_image(mm, "16UC1")
    assert depth_msg.step == 8
    np.testing.assert_allclose(depth_image_to_metres(depth_msg), mm / 1000.0, rtol=1e-6)
    metres = rng.uniform(0, 3, (2, 3)).astype(np.float32)
    assert np.array_equal(depth_image_to_metres(numpy_to_image(metres, "32FC1")), metres)
    # a non-contiguous input (every other column) is written correctly too
    assert np.array_equal(image_to_rgb(numpy_to_image(rgb[:, ::2], "rgb8")), rgb[:, ::2])


def test_numpy_to_image_errors() -> None:
    with pytest.raises(ValueError, match="needs dtype uint8"):
        numpy_to_image(np.zeros((2, 2, 3), np.float32), "rgb8")
    with pytest.raises(ValueError, match="H x W x 3"):
        numpy_to_image(np.zeros((2, 2), np.uint8), "rgb8")
    with pytest.raises(ValueError, match="cannot write encoding"):
        numpy_to_image(np.zeros((2, 2), np.uint8), "yuv422")
    with pytest.raises(ValueError, match="empty"):
        numpy_to_image(np.zeros((0, 2, 3), np.uint8), "rgb8")
