"""Hand crops for the reconstruction network, bit-exact with the official WiLoR demo.

Official sources (facts only, see SPEC.md §2): ``wilor/datasets/vitdet_dataset.py`` and
``wilor/datasets/utils.py`` at commit 819369a.

Two paths produce the same crops:

* :func:`crop_hand_reference` follows the official order of operations literally (blur the whole
  image, mirror the whole image, warp). It exists to pin the geometry and dtype rules down against
  the parity goldens; it costs one full-image copy (and blur) per hand.
* :func:`crop_hands` is the path the pipeline uses. A bilinear crop of 256 x 256 pixels whose
  warp is axis-aligned reads at most 512 source columns and 512 source rows (each crop pixel's two
  taps per axis), so only those are gathered (:func:`axis_support`), mirrored by reading columns
  ``W - 1 - x'``, and blurred: :func:`blurred_samples` evaluates the separable Gaussian at just those
  rows and columns, with scipy's kernel and scipy's order of operations. The sample positions are
  computed in full-image (mirrored) coordinates and re-indexed into the gathered pixels, so weights
  and taps are the reference's. Measured against the reference path on the demo photos and on
  random, partly-outside and tiny boxes it is **bit-identical** (max difference 0, see
  test_preprocessing.py), and its working memory no longer grows with the hand's size in the
  frame: a few MB per hand instead of float64 copies of the whole hand window (about 1 GB for two
  close-up hands in a 7680 x 4320 frame; ``python -m wilor_ros.tools.bench_memory``).

Both use OpenCV 4.x's warpAffine arithmetic (the official run used OpenCV 4.11): sample positions
on a 1/32-px grid computed here (:func:`sample_maps`) and cv2.remap's fixed-point bilinear table.
OpenCV 5's warpAffine computes differently, so it is not called.

Conventions: images are H x W x 3 RGB uint8 (the official code reads BGR with OpenCV and swaps to
RGB after warping; blur and warp act per channel, so warping RGB directly gives the same crop).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter, gaussian_filter1d

from wilor_ros.core.constants import (
    BBOX_ASPECT_H,
    BBOX_ASPECT_W,
    BLUR_DOWNSAMPLE_THRESHOLD,
    CROP_SIZE,
    DEFAULT_RESCALE_FACTOR,
    IMAGE_MEAN,
    IMAGE_STD,
)
from wilor_ros.core.types import HandDetection, Side

if TYPE_CHECKING:  # torch is optional for the numpy path
    import torch

# skimage.filters.gaussian(..., preserve_range=True) == scipy gaussian_filter with these settings.
GAUSSIAN_TRUNCATE = 4.0
GAUSSIAN_MODE = "nearest"
# rows of the blur's first pass held at once by blurred_samples: bounds its float64 working set
# (64 rows x frame width x 3 x 8 bytes, 12 MB at 8K) whatever the hand's size
BLUR_ROW_CHUNK = 64
# The official box -> "scale" convention divides by 200 and multiplies back (float32 round trip).
_SCALE_UNIT = 200.0
# Pixel values are normalised on the 0..255 range: (x - 255 mean) / (255 std), constants in float32
# (numpy 1.x rounds the float64 scalar to the float32 array's dtype).
PIXEL_MAX = 255.0
NORM_MEAN = np.array([PIXEL_MAX * m for m in IMAGE_MEAN], dtype=np.float32)  # (3,) RGB
NORM_STD = np.array([PIXEL_MAX * s for s in IMAGE_STD], dtype=np.float32)  # (3,) RGB
# 3 x 256: the normalised float32 value of every uint8 level, per channel
_NORM_LUT = np.ascontiguousarray(((np.arange(256, dtype=np.float32)[:, None] - NORM_MEAN) / NORM_STD).T)
_NORM_LUT_CV = [np.ascontiguousarray(row.reshape(1, 256)) for row in _NORM_LUT]  # cv2.LUT's layout
# OpenCV 4.x warpAffine fixed point: positions in 1/1024 px, rounded to a 1/32 px bilinear table.
_AB_BITS = 10
_AB_SCALE = 1 << _AB_BITS
_INTER_BITS = 5
_INTER_TAB_SIZE = 1 << _INTER_BITS
SUBPIXEL_STEPS = _INTER_TAB_SIZE  # OpenCV's bilinear positions lie on a 1/32-px grid
_ROUND_DELTA = _AB_SCALE // _INTER_TAB_SIZE // 2
_INT16_MIN, _INT16_MAX = -(1 << 15), (1 << 15) - 1
RGB_CHANNELS = 3
RGBA_CHANNELS = 4


# ---------------------------------------------------------------------------------------- types
@dataclass(frozen=True)
class CropGeometry:
    """Where one hand is cropped (official conventions).

    box_center: (2,) float32, unmirrored box centre in source pixels.
    box_size: crop side S in source pixels (float64, as the official numpy-1.x promotion gives).
    blur_sigma: Gaussian sigma of the anti-alias pre-blur, None when no blur runs.
    flipped: True for left hands (the crop is taken from the mirrored image).
    """

    box_center: np.ndarray
    box_size: float
    blur_sigma: float | None
    flipped: bool


@dataclass
class CropResult:
    """One crop from :func:`crop_hand_reference`.

    crop: 3 x 256 x 256 float32, normalised RGB network input.
    patch: 256 x 256 x 3 RGB warp output before normalisation; uint8 without blur, float64 with blur.
    affine: 2 x 3 float64, forward map from the (mirrored, for left hands) source image to the crop.
    box_center: (2,) float32, unmirrored. box_size: crop side S. blur_sigma: None without blur.
    """

    crop: np.ndarray
    patch: np.ndarray
    affine: np.ndarray
    box_center: np.ndarray
    box_size: float
    blur_sigma: float | None
    flipped: bool


@dataclass
class CropMetadata:
    """Where the crops of one image came from (everything but the pixels).

    box_centers: B x 2 float32, unmirrored box centres (source pixels).
    box_sizes: (B,) float64, crop sides S (source pixels).
    sides: (B,) int64, Side values (0 left, 1 right).
    affines: B x 2 x 3 float64, forward maps source (mirrored for left hands) -> crop pixels.
    image_size: (W, H) of the source image.
    """

    box_centers: np.ndarray
    box_sizes: np.ndarray
    sides: np.ndarray
    affines: np.ndarray
    image_size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.box_sizes.shape[0])

    @property
    def is_right(self) -> np.ndarray:
        """(B,) bool."""
        return self.sides == int(Side.RIGHT)


@dataclass
class CropBatch(CropMetadata):
    """All hands of one image, ready for one network call: the metadata plus
    crops: B x 3 x 256 x 256 float32, normalised RGB (host memory)."""

    crops: np.ndarray = field(default_factory=lambda: np.zeros((0, 3, CROP_SIZE, CROP_SIZE), np.float32))


# ---------------------------------------------------------------------------------------- input
def to_rgb(image: np.ndarray) -> np.ndarray:
    """Any supported uint8 image -> H x W x 3 RGB uint8 (C-contiguous).

    Accepts H x W (grayscale), H x W x 1, H x W x 3 (RGB, returned as is when contiguous) and
    H x W x 4 (RGBA, alpha dropped).
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(
            f"images must be uint8, got {image.dtype}; scale/convert it first (e.g. cv_bridge 'rgb8')"
        )
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        gray = image.reshape(image.shape[0], image.shape[1])
        return np.ascontiguousarray(np.repeat(gray[:, :, None], RGB_CHANNELS, axis=2))
    if image.ndim == 3 and image.shape[2] == RGB_CHANNELS:
        return np.ascontiguousarray(image)
    if image.ndim == 3 and image.shape[2] == RGBA_CHANNELS:
        return np.ascontiguousarray(image[:, :, :RGB_CHANNELS])
    raise ValueError(f"expected an H x W, H x W x 3 (RGB) or H x W x 4 (RGBA) image, got shape {image.shape}")


def check_rgb_image(
    image: np.ndarray | torch.Tensor,
    uint8: object = np.uint8,
    kind: str = "image",
    advice: str = "convert it with to_rgb() first",
) -> None:
    """ValueError unless ``image`` is a non-empty H x W x 3 uint8 image: a numpy array, or a torch
    tensor with ``uint8=torch.uint8``; ``kind`` and ``advice`` complete the message."""
    shape = tuple(image.shape)
    if image.dtype != uint8 or len(shape) != 3 or shape[2] != RGB_CHANNELS:
        raise ValueError(f"expected an H x W x 3 RGB uint8 {kind}, got {image.dtype} {shape}; {advice}")
    if shape[0] == 0 or shape[1] == 0:
        raise ValueError(f"the image is empty: shape {shape}")


def _check_rescale(rescale: float) -> float:
    rescale = float(rescale)
    if not (math.isfinite(rescale) and rescale > 0):
        raise ValueError(f"rescale factor must be a positive number, got {rescale}")
    return rescale


# ---------------------------------------------------------------------------------------- geometry
def crop_geometry(box: np.ndarray, is_right: bool, rescale: float = DEFAULT_RESCALE_FACTOR) -> CropGeometry:
    """Official centre, square side and blur sigma of one XYXY box (SPEC §2.1-2.2).

    Dtype rules reproduce numpy 1.x as the official code ran it: the box is float32, the centre
    and the per-box "scale" (rescale * size / 200, then * 200) are float32 arrays; the aspect
    expansion multiplies float32 *scalars* by Python ints, which numpy 1.x promoted to float64.
    """
    box = np.asarray(box, dtype=np.float32).reshape(-1)
    if box.shape != (4,) or not np.all(np.isfinite(box)):
        raise ValueError(f"a box needs 4 finite values x1, y1, x2, y2, got {box!r}")
    rescale = _check_rescale(rescale)
    center = ((box[2:4] + box[0:2]) / np.float32(2.0)).astype(np.float32)
    scale = (np.float32(rescale) * (box[2:4] - box[0:2]) / np.float32(_SCALE_UNIT)).astype(np.float32)
    size_wh = (scale * np.float32(_SCALE_UNIT)).astype(np.float32)
    w32, h32 = size_wh[0], size_wh[1]
    w, h = float(w32), float(h32)
    # Branch test in float32 (h / w of two float32 scalars) against the Python float 256/192.
    if float(h32 / w32) < BBOX_ASPECT_H / BBOX_ASPECT_W:
        box_size = max(w * BBOX_ASPECT_H / BBOX_ASPECT_W, h)
    else:
        box_size = max(h * BBOX_ASPECT_W / BBOX_ASPECT_H, w, h)
    downsampling = box_size * 1.0 / CROP_SIZE / 2.0
    sigma = (downsampling - 1.0) / 2.0 if downsampling > BLUR_DOWNSAMPLE_THRESHOLD else None
    return CropGeometry(center, float(box_size), sigma, not bool(is_right))


def crop_affine(geometry: CropGeometry, image_width: int) -> np.ndarray:
    """2 x 3 float64 forward affine (source, mirrored for left hands -> crop), SPEC §2.3-2.4.

    The three source points are the centre and the centre plus half a side down / right; the half
    side is rounded to float32 first, added to the float64 centre, and the sums rounded to float32.
    """
    cx = float(geometry.box_center[0])
    cy = float(geometry.box_center[1])
    if geometry.flipped:
        cx = image_width - cx - 1.0  # the mirrored image's column of the same pixel
    half = float(np.float32(geometry.box_size * 0.5))
    src = np.array([[cx, cy], [cx, cy + half], [cx + half, cy]], dtype=np.float64).astype(np.float32)
    mid = CROP_SIZE * 0.5
    dst = np.array([[mid, mid], [mid, CROP_SIZE], [CROP_SIZE, mid]], dtype=np.float32)
    return cv2.getAffineTransform(src, dst)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """H x W x C -> H x W x C float64, the official skimage pre-blur (spatial axes only)."""
    return gaussian_filter(
        image.astype(np.float64), sigma=(sigma, sigma, 0.0), mode=GAUSSIAN_MODE, truncate=GAUSSIAN_TRUNCATE
    )


def gaussian_radius(sigma: float) -> int:
    """Kernel half-width scipy uses for ``sigma`` with truncate 4 (pixels)."""
    return int(GAUSSIAN_TRUNCATE * float(sigma) + 0.5)


def normalize_patches(patches: np.ndarray) -> np.ndarray:
    """... x 256 x 256 x 3 RGB patches (uint8 or float64) -> ... x 3 x 256 x 256 float32.

    Cast to float32 first (blurred float64 patches round here, as in the official code), then
    (x - 255 mean) / (255 std) in float32.
    """
    patches = np.asarray(patches)
    if patches.dtype == np.uint8:
        out = np.empty((*patches.shape[:-3], RGB_CHANNELS, *patches.shape[-3:-1]), dtype=np.float32)
        flat_in = patches.reshape(-1, *patches.shape[-3:])
        for patch, dst in zip(flat_in, out.reshape(-1, *out.shape[-3:])):
            normalize_patch_into(patch, dst)
        return out
    x = patches.astype(np.float32)
    x = (x - NORM_MEAN) / NORM_STD
    return np.ascontiguousarray(np.moveaxis(x, -1, -3))


def normalize_patch_into(patch: np.ndarray, out: np.ndarray) -> None:
    """One 256 x 256 x 3 patch -> ``out`` (3 x 256 x 256 float32, written in place).

    uint8 patches use the same float32 formula evaluated once per possible value (a 256-entry
    table per channel, applied with OpenCV's LUT): bit-identical to the arithmetic on every pixel
    and about ten times faster; float64 (blurred) patches use the arithmetic.
    """
    if patch.dtype != np.uint8:
        out[...] = normalize_patches(patch)
        return
    for channel, plane in enumerate(cv2.split(patch)):
        cv2.LUT(plane, _NORM_LUT_CV[channel], dst=out[channel])


def normalize_patches_torch(patches: torch.Tensor) -> torch.Tensor:
    """torch.Tensor ... x 256 x 256 x 3 (uint8/float) -> ... x 3 x 256 x 256 float32 on its device.

    The same float32 arithmetic as :func:`normalize_patches`, for crops warped on a GPU.
    """
    import torch  # lazy: the numpy path must not need torch

    x = patches.to(torch.float32)
    mean = torch.as_tensor(NORM_MEAN, device=x.device)
    std = torch.as_tensor(NORM_STD, device=x.device)
    return ((x - mean) / std).movedim(-1, -3).contiguous()


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
    shift = _AB_BITS - _INTER_BITS
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
    tab_mask = _INTER_TAB_SIZE - 1
    aligned = axis_aligned_positions(inverse, origin)
    if aligned is not None:
        return _aligned_maps(*aligned)
    xy = np.empty((CROP_SIZE, CROP_SIZE, 2), dtype=np.int16)
    col_x, row_x, col_y, row_y = _fixed_axes(inverse)
    row_x = row_x - (int(origin[0]) << _AB_BITS)
    row_y = row_y - (int(origin[1]) << _AB_BITS)
    shift = _AB_BITS - _INTER_BITS
    fixed_x = (row_x[:, None] + col_x[None, :]) >> shift  # 1/32-px units, rows = crop y
    fixed_y = (row_y[:, None] + col_y[None, :]) >> shift
    xy[..., 0] = np.clip(fixed_x >> _INTER_BITS, _INT16_MIN, _INT16_MAX)
    xy[..., 1] = np.clip(fixed_y >> _INTER_BITS, _INT16_MIN, _INT16_MAX)
    frac = ((fixed_y & tab_mask) * _INTER_TAB_SIZE + (fixed_x & tab_mask)).astype(np.uint16)
    return xy, frac


def _aligned_maps(fixed_x: np.ndarray, fixed_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sample_maps of an axis-aligned warp from its per-column x (256,) and per-row y (256,) positions
    (int64, 1/32 px): the two 256-vectors are broadcast instead of forming 256 x 256 sums."""
    tab_mask = _INTER_TAB_SIZE - 1
    xy = np.empty((CROP_SIZE, CROP_SIZE, 2), dtype=np.int16)
    xy[..., 0] = _first_taps(fixed_x)[None, :]
    xy[..., 1] = _first_taps(fixed_y)[:, None]
    frac_y = ((fixed_y & tab_mask) * _INTER_TAB_SIZE).astype(np.uint16)
    frac = frac_y[:, None] + (fixed_x & tab_mask).astype(np.uint16)[None, :]
    return xy, frac


def _first_taps(fixed: np.ndarray) -> np.ndarray:
    """1/32-px positions -> the integer pixel of the first bilinear tap, saturated to int16 as
    OpenCV stores it (the second tap is the next pixel)."""
    return np.clip(fixed >> _INTER_BITS, _INT16_MIN, _INT16_MAX)


def _remap(source: np.ndarray, xy: np.ndarray, frac: np.ndarray) -> np.ndarray:
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


# ---------------------------------------------------------------------------------------- reference
def crop_hand_reference(
    image_rgb: np.ndarray, box: np.ndarray, is_right: bool, rescale: float = DEFAULT_RESCALE_FACTOR
) -> CropResult:
    """One crop in the official order: blur whole image, mirror whole image, warp (SPEC §2).

    image_rgb: H x W x 3 RGB uint8. box: (4,) XYXY pixels. Slow for big images (full copies);
    kept as the parity reference for :func:`crop_hands`.
    """
    check_rgb_image(image_rgb)
    geometry = crop_geometry(box, is_right, rescale)
    image: np.ndarray = image_rgb
    if geometry.blur_sigma is not None:
        image = gaussian_blur(image, geometry.blur_sigma)
    if geometry.flipped:
        image = np.ascontiguousarray(image[:, ::-1, :])
    affine = crop_affine(geometry, image_rgb.shape[1])
    xy, frac = sample_maps(invert_affine(affine))
    patch = _remap(image, xy, frac)
    return CropResult(
        crop=normalize_patches(patch),
        patch=patch,
        affine=affine,
        box_center=geometry.box_center,
        box_size=geometry.box_size,
        blur_sigma=geometry.blur_sigma,
        flipped=geometry.flipped,
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


def crop_patch(image_rgb: np.ndarray, geometry: CropGeometry) -> tuple[np.ndarray, np.ndarray]:
    """One 256 x 256 x 3 patch (uint8, or float64 when blurred) and its 2 x 3 forward affine.

    Unblurred right hands are looked up straight from ``image_rgb``, unblurred left hands from a
    mirrored copy of the small window they read. Blurred hands: the blur is evaluated only at the
    source pixels the lookup reads (mirrored for left hands), and the sample positions are re-indexed
    into them. Taps and weights are exactly the reference's in every case.
    """
    height, width = image_rgb.shape[:2]
    affine = crop_affine(geometry, width)
    inverse = invert_affine(affine)
    if geometry.blur_sigma is None and not geometry.flipped:
        # nothing to blur or mirror: look up straight from the caller's image, no copy at all
        xy, frac = sample_maps(inverse)
        return _remap(image_rgb, xy, frac), affine
    positions = axis_aligned_positions(inverse)
    assert positions is not None, "crop affines are axis-aligned"
    fixed_x, fixed_y = positions  # 1/32 px in the (mirrored, for left hands) image
    cols = axis_support(_first_taps(fixed_x), width)
    rows = axis_support(_first_taps(fixed_y), height)
    if cols.pixels.size == 0 or rows.pixels.size == 0:  # entirely outside the image: border value
        dtype = np.uint8 if geometry.blur_sigma is None else np.float64
        return np.zeros((CROP_SIZE, CROP_SIZE, RGB_CHANNELS), dtype=dtype), affine
    if geometry.blur_sigma is None:
        # an unblurred crop reads a window of at most ~565 x 565 pixels (S <= 563): a mirrored copy of
        # it (OpenCV's SIMD flip) is cheaper than gathering pixels; positions shift by its origin
        x0, x1 = int(cols.pixels[0]), int(cols.pixels[-1]) + 1  # mirrored columns
        y0, y1 = int(rows.pixels[0]), int(rows.pixels[-1]) + 1
        source = cv2.flip(image_rgb[y0:y1, width - x1 : width - x0], 1)
        xy, frac = _aligned_maps(fixed_x - (x0 << _INTER_BITS), fixed_y - (y0 << _INTER_BITS))
        return _remap(source, xy, frac), affine
    # mirrored column x' is source column W - 1 - x': blurring at those columns mirrors the pixels
    source_cols = width - 1 - cols.pixels if geometry.flipped else cols.pixels
    source = blurred_samples(image_rgb, rows.pixels, source_cols, geometry.blur_sigma)
    tab_mask = _INTER_TAB_SIZE - 1
    xy, frac = _aligned_maps(
        (cols.taps << _INTER_BITS) + (fixed_x & tab_mask), (rows.taps << _INTER_BITS) + (fixed_y & tab_mask)
    )
    return _remap(source, xy, frac), affine


def crop_hands(
    image_rgb: np.ndarray, detections: list[HandDetection], rescale: float = DEFAULT_RESCALE_FACTOR
) -> CropBatch:
    """All hands of one image -> a :class:`CropBatch` (B may be 0).

    image_rgb: H x W x 3 RGB uint8 (see :func:`to_rgb`). Boxes may lie partly or fully outside the
    image (outside pixels are black before normalisation, as in the official crop).
    """
    check_rgb_image(image_rgb)
    rescale = _check_rescale(rescale)
    height, width = image_rgb.shape[:2]
    count = len(detections)
    crops = np.empty((count, RGB_CHANNELS, CROP_SIZE, CROP_SIZE), dtype=np.float32)
    centers = np.empty((count, 2), dtype=np.float32)
    sizes = np.empty((count,), dtype=np.float64)
    sides = np.empty((count,), dtype=np.int64)
    affines = np.empty((count, 2, 3), dtype=np.float64)
    for i, det in enumerate(detections):
        geometry = crop_geometry(det.box, det.side == Side.RIGHT, rescale)
        patch, affine = crop_patch(image_rgb, geometry)
        normalize_patch_into(patch, crops[i])
        centers[i] = geometry.box_center
        sizes[i] = geometry.box_size
        sides[i] = int(det.side)
        affines[i] = affine
    return CropBatch(
        box_centers=centers,
        box_sizes=sizes,
        sides=sides,
        affines=affines,
        image_size=(width, height),
        crops=crops,
    )
