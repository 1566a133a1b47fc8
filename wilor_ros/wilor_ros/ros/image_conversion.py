"""sensor_msgs/Image and CompressedImage <-> numpy, without cv_bridge.

cv_bridge is not available everywhere this package runs (no PyPI wheel), and the network needs
only a few conversions, so they are written here on numpy views plus ``cv2.cvtColor``.

Conventions (matching cv_bridge's ``imgmsg_to_cv2(msg, "rgb8")`` where cv_bridge converts):
* colour output is H x W x 3 RGB uint8, C-contiguous, owning its memory (never a view of the
  message buffer, so the message can be released or reused);
* ``mono16`` is scaled to 8 bits as cv_bridge does for a 16 -> 8 bit conversion
  (``convertTo(..., 255/65535)``, i.e. value * 255 / 65535 rounded to nearest), then grey is
  repeated into the three channels (``COLOR_GRAY2RGB``);
* ``yuv422`` is the ROS name of UYVY (bytes U0 Y0 V0 Y1) and ``yuv422_yuy2`` is YUYV
  (Y0 U0 Y1 V0), converted with OpenCV's ``COLOR_YUV2RGB_UYVY`` / ``COLOR_YUV2RGB_YUY2`` as in
  cv_bridge; both need an even width (two pixels share one U/V pair);
* alpha channels of ``rgba8``/``bgra8`` are dropped;
* depth output is H x W float32 metres: ``16UC1`` is millimetres
  (REP 118) with 0 meaning "no measurement" -> NaN; ``32FC1`` is already metres and is
  returned unchanged (NaN/inf keep their REP 118 meaning).

Message layout rules honoured: ``step`` is the row length in bytes (rows may be padded), the
buffer holds exactly ``step * height`` bytes, and multi-byte samples are big-endian when
``is_bigendian`` is set (they are byte-swapped to the host order here).
"""

from __future__ import annotations

import array
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:
    # The readers take any object with these messages' fields (rclpy's, or rosbags' in
    # wilor_ros.offline), so the ROS packages are imported only by the two writers below.
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import Header

MM_PER_METRE = 1000.0
# cv_bridge's 16 -> 8 bit scale (cv_bridge.cpp, toCvCopyImpl: convertTo(..., 255. / 65535.))
MONO16_TO_MONO8_SCALE = 255.0 / 65535.0
HOST_IS_BIGENDIAN = sys.byteorder == "big"


@dataclass(frozen=True)
class _Layout:
    """How one ROS encoding is stored: sample type and channels per pixel."""

    dtype: str  # numpy sample type without byte order: "u1", "u2", "f4"
    channels: int  # samples per pixel in the buffer (yuv422: 2 bytes per pixel)


# Encodings accepted by image_to_rgb (names as in sensor_msgs/image_encodings.hpp).
_COLOUR_LAYOUTS: dict[str, _Layout] = {
    "rgb8": _Layout("u1", 3),
    "bgr8": _Layout("u1", 3),
    "rgba8": _Layout("u1", 4),
    "bgra8": _Layout("u1", 4),
    "mono8": _Layout("u1", 1),
    "mono16": _Layout("u2", 1),
    "yuv422": _Layout("u1", 2),
    "yuv422_yuy2": _Layout("u1", 2),
}
_DEPTH_LAYOUTS: dict[str, _Layout] = {
    "16UC1": _Layout("u2", 1),
    "32FC1": _Layout("f4", 1),
}
# OpenCV colour conversions to RGB (None: already RGB).
_TO_RGB_CODE: dict[str, int | None] = {
    "rgb8": None,
    "bgr8": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
    "mono16": cv2.COLOR_GRAY2RGB,
    "yuv422": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUY2,
}

SUPPORTED_COLOUR_ENCODINGS: tuple[str, ...] = tuple(_COLOUR_LAYOUTS)
SUPPORTED_DEPTH_ENCODINGS: tuple[str, ...] = tuple(_DEPTH_LAYOUTS)


def _pixel_view(msg: Image, layout: _Layout) -> np.ndarray:
    """Zero-copy H x W x C view of the message buffer in host byte order where possible.

    Row padding is skipped through the row stride (``step``); big-endian multi-byte data on a
    little-endian host (or the reverse) is returned as a byte-swapped copy.
    """
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ValueError(
            f"image has zero size ({width} x {height}, encoding {msg.encoding!r}): "
            "the publisher sent an empty image"
        )
    byte_order = ">" if msg.is_bigendian else "<"
    dtype = np.dtype(byte_order + layout.dtype)
    pixel_bytes = dtype.itemsize * layout.channels
    row_bytes = width * pixel_bytes
    if step < row_bytes:
        raise ValueError(
            f"image step {step} is smaller than width * bytes per pixel = {width} * {pixel_bytes} "
            f"= {row_bytes} for encoding {msg.encoding!r}: the message is malformed"
        )
    buffer = memoryview(msg.data).cast("B")
    if buffer.nbytes != step * height:
        raise ValueError(
            f"image data has {buffer.nbytes} bytes but step * height = {step} * {height} = "
            f"{step * height} (encoding {msg.encoding!r}): the message is malformed"
        )
    view = np.ndarray(
        shape=(height, width, layout.channels),
        dtype=dtype,
        buffer=buffer,
        strides=(step, pixel_bytes, dtype.itemsize),
    )
    if not dtype.isnative:
        # The sender's byte order differs from the host's: one vectorised byte-swapping copy.
        view = view.astype(dtype.newbyteorder("="))
    return view


def image_to_rgb(msg: Image) -> np.ndarray:
    """sensor_msgs/Image -> H x W x 3 RGB uint8 (C-contiguous, owns its memory).

    Supported encodings: ``SUPPORTED_COLOUR_ENCODINGS`` (see the module docstring for the
    mono16 scaling and yuv422 layouts). Raises ValueError for any other encoding, a zero-size
    image, ``step`` smaller than a row, a buffer whose size is not ``step * height``, or an odd
    width for yuv422 encodings.
    """
    encoding = msg.encoding
    layout = _COLOUR_LAYOUTS.get(encoding)
    if layout is None:
        raise ValueError(
            f"unsupported image encoding {encoding!r}: expected one of "
            f"{', '.join(SUPPORTED_COLOUR_ENCODINGS)} (convert the stream, e.g. with image_proc)"
        )
    if encoding.startswith("yuv422") and int(msg.width) % 2 != 0:
        raise ValueError(
            f"{encoding} images need an even width (two pixels share one U/V pair), got {msg.width}"
        )
    view = _pixel_view(msg, layout)
    if encoding == "mono16":
        # cv_bridge convention: 16 -> 8 bit by value * 255 / 65535, rounded and saturated.
        # Contiguous first: OpenCV misreads 16-bit rows whose step is not a multiple of 2 bytes.
        view = cv2.convertScaleAbs(np.ascontiguousarray(view[:, :, 0]), alpha=MONO16_TO_MONO8_SCALE)
    elif layout.channels == 1:
        view = view[:, :, 0]
    code = _TO_RGB_CODE[encoding]
    if code is None:
        return np.array(view, dtype=np.uint8, order="C", copy=True)
    # cvtColor accepts row-strided input (padded step) and always allocates a new array.
    return cv2.cvtColor(view, code)


def depth_image_to_metres(msg: Image) -> np.ndarray:
    """Depth sensor_msgs/Image -> H x W float32 metres (C-contiguous, owns its memory).

    ``16UC1``: unsigned millimetres, 0 (no measurement) becomes NaN.
    ``32FC1``: metres, copied unchanged. Raises ValueError like ``image_to_rgb``.
    """
    layout = _DEPTH_LAYOUTS.get(msg.encoding)
    if layout is None:
        raise ValueError(
            f"unsupported depth encoding {msg.encoding!r}: expected one of "
            f"{', '.join(SUPPORTED_DEPTH_ENCODINGS)} (REP 118)"
        )
    view = _pixel_view(msg, layout)[:, :, 0]
    if layout.dtype == "f4":
        return np.array(view, dtype=np.float32, order="C", copy=True)
    metres = view.astype(np.float32) / np.float32(MM_PER_METRE)
    metres[view == 0] = np.nan
    return metres


def compressed_image_to_rgb(msg: CompressedImage) -> np.ndarray:
    """sensor_msgs/CompressedImage (JPEG, PNG, anything cv2.imdecode reads) -> H x W x 3 RGB uint8.

    Grey or 16-bit PNGs are converted to 8-bit colour by OpenCV (IMREAD_COLOR). The
    ``compressedDepth`` transport format (a header in front of a PNG) is not a colour image and
    is rejected. Raises ValueError for empty or undecodable data.
    """
    if "compresseddepth" in msg.format.lower():
        raise ValueError(
            f"CompressedImage format {msg.format!r} is a compressed depth image, not a colour "
            "image: subscribe to the colour stream's /compressed topic instead"
        )
    data = np.frombuffer(memoryview(msg.data).cast("B"), dtype=np.uint8)
    if data.size == 0:
        raise ValueError("CompressedImage has no data: the publisher sent an empty image")
    try:
        bgr = cv2.imdecode(data, cv2.IMREAD_COLOR)
    except cv2.error as exc:
        raise ValueError(f"cannot decode CompressedImage (format {msg.format!r}): {exc}") from exc
    if bgr is None or bgr.size == 0:
        raise ValueError(
            f"cannot decode CompressedImage (format {msg.format!r}, {data.size} bytes): "
            "the data is corrupt or not an image format OpenCV reads"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# ----------------------------------------------------------------------------- numpy -> msg

# Encodings numpy_to_image writes: (numpy dtype, channels).
_OUTPUT_LAYOUTS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}


def numpy_to_image(array_hwc: np.ndarray, encoding: str = "rgb8", header: Header | None = None) -> Image:
    """numpy image -> sensor_msgs/Image (host byte order, unpadded rows: step = W * bytes/pixel).

    ``array_hwc`` is H x W x C (or H x W for one channel) with the dtype the encoding needs
    (uint8 for rgb8/bgr8/rgba8/bgra8/mono8, uint16 for mono16/16UC1, float32 for 32FC1). The
    channels are written as given: pass BGR data for ``bgr8``. Raises ValueError on a shape or
    dtype that does not fit the encoding, or an empty image.
    """
    if encoding not in _OUTPUT_LAYOUTS:
        raise ValueError(f"cannot write encoding {encoding!r}: expected one of {', '.join(_OUTPUT_LAYOUTS)}")
    dtype, channels = _OUTPUT_LAYOUTS[encoding]
    arr = np.asarray(array_hwc)
    if arr.ndim == 2 and channels == 1:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] != channels:
        raise ValueError(f"{encoding} needs an H x W x {channels} array, got shape {arr.shape}")
    if arr.dtype != dtype:
        raise ValueError(f"{encoding} needs dtype {dtype}, got {arr.dtype} (convert it explicitly)")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"cannot publish an empty image of shape {arr.shape}")
    arr = np.ascontiguousarray(arr)
    from sensor_msgs.msg import Image

    msg = Image()
    if header is not None:
        msg.header = header
    msg.height, msg.width = int(arr.shape[0]), int(arr.shape[1])
    msg.encoding = encoding
    msg.is_bigendian = HOST_IS_BIGENDIAN
    msg.step = int(arr.shape[1] * channels * dtype.itemsize)
    data = array.array("B")
    # frombytes reads the numpy buffer directly: one copy, no per-pixel Python objects (an
    # array.array is also what rosidl's setter accepts without per-element checks).
    data.frombytes(memoryview(arr).cast("B"))
    msg.data = data
    return msg


def rgb_to_compressed(
    image_rgb: np.ndarray, fmt: str = "jpeg", header: Header | None = None
) -> CompressedImage:
    """H x W x 3 RGB uint8 -> sensor_msgs/CompressedImage (``fmt`` "jpeg" or "png")."""
    extensions = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}
    if fmt not in extensions:
        raise ValueError(f"compressed format must be one of {sorted(extensions)}, got {fmt!r}")
    arr = np.asarray(image_rgb)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8 or arr.size == 0:
        raise ValueError(f"expected a non-empty H x W x 3 uint8 RGB image, got {arr.shape} {arr.dtype}")
    ok, encoded = cv2.imencode(extensions[fmt], cv2.cvtColor(arr, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"OpenCV could not encode the image as {fmt}")
    from sensor_msgs.msg import CompressedImage

    msg = CompressedImage()
    if header is not None:
        msg.header = header
    msg.format = "jpeg" if fmt == "jpg" else fmt
    data = array.array("B")
    data.frombytes(encoded.tobytes())
    msg.data = data
    return msg
