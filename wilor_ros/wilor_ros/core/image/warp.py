"""OpenCV 4.x warpAffine arithmetic, reproduced: fixed-point sample positions on a 1/32-px grid, the
bilinear lookup, and scipy's separable Gaussian evaluated only at the pixels those samples read
(the official pre-blur). Used by the crops (preprocessing.py) and the device-side crop."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter, gaussian_filter1d

from wilor_ros.core.hand.constants import CROP_SIZE, RGB_CHANNELS

# skimage.filters.gaussian(..., preserve_range=True) == scipy gaussian_filter with these settings.
GAUSSIAN_TRUNCATE = 4.0
GAUSSIAN_MODE = "nearest"
# rows of the blur's first pass held at once by blurred_samples: bounds its float64 working set
# (64 rows x frame width x 3 x 8 bytes, 12 MB at 8K) whatever the hand's size
BLUR_ROW_CHUNK = 64
# OpenCV 4.x warpAffine fixed point: positions in 1/1024 px, rounded to a 1/32 px bilinear table.
_AB_BITS = 10
_AB_SCALE = 1 << _AB_BITS
INTER_BITS = 5
INTER_TAB_SIZE = 1 << INTER_BITS
SUBPIXEL_STEPS = INTER_TAB_SIZE  # OpenCV's bilinear positions lie on a 1/32-px grid
_ROUND_DELTA = _AB_SCALE // INTER_TAB_SIZE // 2
_INT16_MIN, _INT16_MAX = -(1 << 15), (1 << 15) - 1


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """H x W x C -> H x W x C float64, the official skimage pre-blur (spatial axes only)."""
    return gaussian_filter(
        image.astype(np.float64), sigma=(sigma, sigma, 0.0), mode=GAUSSIAN_MODE, truncate=GAUSSIAN_TRUNCATE
    )


def gaussian_radius(sigma: float) -> int:
    """Kernel half-width scipy uses for ``sigma`` with truncate 4 (pixels)."""
    return int(GAUSSIAN_TRUNCATE * float(sigma) + 0.5)


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """2 x 3 forward affine -> 2 x 3 inverse, with the float64 operation order of OpenCV 4.x's
    warpAffine (imgwarp.cpp), so the sample positions below match the official run bit for bit."""
    m = [float(v) for v in np.asarray(affine, dtype=np.float64).reshape(-1)]
    det = m[0] * m[4] - m[1] * m[3]
    inv_det = 1.0 / det if det != 0 else 0.0
    a11, a22 = m[4] * inv_det, m[0] * inv_det
    a12, a21 = m[1] * -inv_det, m[3] * -inv_det
    b1 = -a11 * m[2] - a12 * m[5]
    b2 = -a21 * m[2] - a22 * m[5]
    return np.array([[a11, a12, b1], [a21, a22, b2]], dtype=np.float64)


def _fixed_axes(inverse: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The separable terms of OpenCV 4.x's fixed-point sample positions (1/1024 px, int64, 256 each).

    Returns (col_x, row_x, col_y, row_y): the source x of crop pixel (u, v) is
    ``row_x[v] + col_x[u]`` and its y is ``row_y[v] + col_y[u]`` before the shifts of
    :func:`sample_maps`. The official 4.x code rounds (row term) * 1024 and (column term) * 1024
    separately with cvRound (round half to even) and adds half a 1/32 step to the row term.
    """
    steps = np.arange(CROP_SIZE, dtype=np.float64)
    scale = float(_AB_SCALE)
    col_x = np.rint(inverse[0, 0] * steps * scale).astype(np.int64)
    col_y = np.rint(inverse[1, 0] * steps * scale).astype(np.int64)
    row_x = np.rint((inverse[0, 1] * steps + inverse[0, 2]) * scale).astype(np.int64) + _ROUND_DELTA
    row_y = np.rint((inverse[1, 1] * steps + inverse[1, 2]) * scale).astype(np.int64) + _ROUND_DELTA
    return col_x, row_x, col_y, row_y


def axis_aligned_positions(
    inverse: np.ndarray, origin: tuple[int, int] = (0, 0)
) -> tuple[np.ndarray, np.ndarray] | None:
    """OpenCV 4.x's fixed-point sample positions of an axis-aligned warp (no rotation).

    inverse: 2 x 3 crop -> source map; origin: (x0, y0) integer pixel subtracted from every position.
    Returns x (256,) per crop column and y (256,) per crop row, int64 in 1/SUBPIXEL_STEPS px (the
    source x of crop pixel (u, v) depends on u only and its y on v only); None when the warp
    rotates, so positions depend on both axes.
    """
    col_x, row_x, col_y, row_y = _fixed_axes(inverse)
    if not (np.all(row_x == row_x[0]) and np.all(col_y == col_y[0])):
        return None
    shift = _AB_BITS - INTER_BITS
    x = (row_x[0] - (int(origin[0]) << _AB_BITS) + col_x) >> shift
    y = (row_y - (int(origin[1]) << _AB_BITS) + col_y[0]) >> shift
    return x, y


def sample_maps(inverse: np.ndarray, origin: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-point bilinear sample positions of OpenCV 4.x warpAffine for the 256 x 256 crop.

    inverse: 2 x 3 crop -> source map (:func:`invert_affine`); origin: (x0, y0) integer pixel
    subtracted from every position (to read a window of the source instead of the whole image;
    an integer shift changes neither the fractions nor the weights).
    Returns xy: 256 x 256 x 2 int16, integer source pixel (x, y) of each crop pixel's top-left tap
    (saturated to int16 as OpenCV stores it), and frac: 256 x 256 uint16, the 1/32-px fractional
    index (fy * 32 + fx): the map pair cv2.remap takes.

    Written out here instead of calling cv2.warpAffine because OpenCV 5 changed warpAffine's
    bilinear arithmetic (it no longer matches the official 4.11 crops: up to 3 grey levels on
    uint8).
    """
    tab_mask = INTER_TAB_SIZE - 1
    aligned = axis_aligned_positions(inverse, origin)
    if aligned is not None:
        return aligned_maps(*aligned)
    xy = np.empty((CROP_SIZE, CROP_SIZE, 2), dtype=np.int16)
    col_x, row_x, col_y, row_y = _fixed_axes(inverse)
    row_x = row_x - (int(origin[0]) << _AB_BITS)
    row_y = row_y - (int(origin[1]) << _AB_BITS)
    shift = _AB_BITS - INTER_BITS
    fixed_x = (row_x[:, None] + col_x[None, :]) >> shift  # 1/32-px units, rows = crop y
    fixed_y = (row_y[:, None] + col_y[None, :]) >> shift
    xy[..., 0] = np.clip(fixed_x >> INTER_BITS, _INT16_MIN, _INT16_MAX)
    xy[..., 1] = np.clip(fixed_y >> INTER_BITS, _INT16_MIN, _INT16_MAX)
    frac = ((fixed_y & tab_mask) * INTER_TAB_SIZE + (fixed_x & tab_mask)).astype(np.uint16)
    return xy, frac


def aligned_maps(fixed_x: np.ndarray, fixed_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sample_maps of an axis-aligned warp from its per-column x (256,) and per-row y (256,) positions
    (int64, 1/32 px): the two 256-vectors are broadcast instead of forming 256 x 256 sums."""
    tab_mask = INTER_TAB_SIZE - 1
    xy = np.empty((CROP_SIZE, CROP_SIZE, 2), dtype=np.int16)
    xy[..., 0] = first_taps(fixed_x)[None, :]
    xy[..., 1] = first_taps(fixed_y)[:, None]
    frac_y = ((fixed_y & tab_mask) * INTER_TAB_SIZE).astype(np.uint16)
    frac = frac_y[:, None] + (fixed_x & tab_mask).astype(np.uint16)[None, :]
    return xy, frac


def first_taps(fixed: np.ndarray) -> np.ndarray:
    """1/32-px positions -> the integer pixel of the first bilinear tap, saturated to int16 as
    OpenCV stores it (the second tap is the next pixel)."""
    return np.clip(fixed >> INTER_BITS, _INT16_MIN, _INT16_MAX)


def remap_bilinear(source: np.ndarray, xy: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """Bilinear lookup with OpenCV's fixed-point table (uint8: integer weights; float64: float
    weights), black outside ``source``. The result has the dtype of ``source``."""
    return cv2.remap(
        source,
        xy,
        frac,
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


# ---------------------------------------------------------------------------------------- fast path
@dataclass(frozen=True)
class AxisSupport:
    """The source pixels one axis of a crop reads, and where each crop pixel's taps lie among them.

    pixels: (K,) int64, ascending, the pixels inside [0, size) that some bilinear tap reads (K <= 512).
    taps: (256,) int64, index into ``pixels`` of each crop pixel's first tap (the second tap is the
        next index); -2 / -1 (before the image) and >= K (after it) index nothing: the black border.
    """

    pixels: np.ndarray
    taps: np.ndarray


def axis_support(first_taps: np.ndarray, size: int) -> AxisSupport:
    """first_taps: (256,) integer pixel of each crop pixel's first bilinear tap on one axis (the second
    is the next pixel); size: the image's extent on that axis."""
    first_taps = np.asarray(first_taps, dtype=np.int64)
    reads = np.concatenate([first_taps, first_taps + 1])
    pixels = np.unique(reads[(reads >= 0) & (reads < size)])
    # a first tap at -1 reads pixel 0 second: it keeps index -1, so its second tap is index 0
    taps = np.where(first_taps < 0, np.maximum(first_taps, -2), np.searchsorted(pixels, first_taps))
    return AxisSupport(pixels, taps)


def gaussian_weights(sigma: float) -> np.ndarray:
    """(2r + 1,) float64, r = :func:`gaussian_radius`: scipy's own kernel for ``sigma``, read off its
    impulse response (exact: each output is one weight times 1 plus products with 0)."""
    radius = gaussian_radius(sigma)
    impulse = np.zeros(2 * radius + 1)
    impulse[radius] = 1.0
    return gaussian_filter1d(impulse, sigma, mode="constant", truncate=GAUSSIAN_TRUNCATE)


def blurred_samples(image_rgb: np.ndarray, rows: np.ndarray, cols: np.ndarray, sigma: float) -> np.ndarray:
    """The official pre-blur :func:`gaussian_blur` of ``image_rgb``, evaluated at ``rows`` x ``cols`` only.

    image_rgb: H x W x 3 uint8; rows (R,), cols (C,): int pixel indices inside the image, any order.
    Returns R x C x 3 float64, bit-identical to ``gaussian_blur(image_rgb, sigma)[np.ix_(rows, cols)]``.

    Written here because scipy filters whole arrays, while a crop reads at most 512 x 512 values of a
    window that can be the whole frame. It repeats scipy's arithmetic (ndimage correlate1d with a
    symmetric kernel): separable, axis 0 then axis 1; each output is ``centre * w[r]`` plus, for
    j = r down to 1, ``(left_j + right_j) * w[r + j]``; 'nearest' borders by clamping indices. The
    first pass runs at the wanted rows only (BLUR_ROW_CHUNK at a time, over the columns the second
    pass reads), the second at the wanted columns only. Sums of two uint8 values are exact in
    uint16, so pairing them before the float64 multiply changes nothing.
    """
    height, width = image_rgb.shape[:2]
    weights = gaussian_weights(sigma)
    radius = (weights.size - 1) // 2
    rows, cols = np.asarray(rows, np.int64), np.asarray(cols, np.int64)
    col0, col1 = max(int(cols.min()) - radius, 0), min(int(cols.max()) + radius + 1, width)
    band = image_rgb[:, col0:col1]  # the columns the second pass reads (a view)
    offsets = range(radius, 0, -1)  # scipy's order: farthest pair first

    def col_index(offset: int) -> np.ndarray:
        return np.clip(cols + offset, 0, width - 1) - col0

    col_pairs = [(col_index(-j), col_index(j)) for j in offsets]
    out = np.empty((rows.size, cols.size, RGB_CHANNELS), dtype=np.float64)
    for start in range(0, rows.size, BLUR_ROW_CHUNK):
        chunk = rows[start : start + BLUR_ROW_CHUNK]
        vertical = band[chunk].astype(np.float64) * weights[radius]  # n x (col1 - col0) x 3
        for j in offsets:
            pair = (
                band[np.clip(chunk - j, 0, height - 1)].astype(np.uint16)
                + band[np.clip(chunk + j, 0, height - 1)]
            )
            vertical += pair * weights[radius + j]
        horizontal = vertical[:, cols - col0] * weights[radius]  # n x C x 3
        for j, (left, right) in zip(offsets, col_pairs):
            horizontal += (vertical[:, left] + vertical[:, right]) * weights[radius + j]
        out[start : start + chunk.size] = horizontal
    return out
