"""Hand crops for the reconstruction network, bit-exact with the official WiLoR demo.

Official sources (facts only, see SPEC.md §2): ``wilor/datasets/vitdet_dataset.py`` and
``wilor/datasets/utils.py`` at commit 819369a.

Two paths produce the same crops:

* :func:`crop_hand_reference` follows the official order of operations literally (blur the whole
  image, mirror the whole image, warp). It exists to pin the geometry and dtype rules down against
  the parity goldens; it costs one full-image copy (and blur) per hand.
* :func:`crop_hands` is the path the pipeline uses. A bilinear crop of 256 x 256 pixels whose
  warp is axis-aligned reads at most 512 source columns and 512 source rows (each crop pixel's two
  taps per axis), so only those are gathered (:func:`warp.axis_support`), mirrored by reading columns
  ``W - 1 - x'``, and blurred: :func:`warp.blurred_samples` evaluates the separable Gaussian at just those
  rows and columns, with scipy's kernel and scipy's order of operations. The sample positions are
  computed in full-image (mirrored) coordinates and re-indexed into the gathered pixels, so weights
  and taps are the reference's. Measured against the reference path on the demo photos and on
  random, partly-outside and tiny boxes it is **bit-identical** (max difference 0, see
  test_preprocessing.py), and its working memory no longer grows with the hand's size in the
  frame: a few MB per hand instead of float64 copies of the whole hand window (about 1 GB for two
  close-up hands in a 7680 x 4320 frame; ``python -m wilor_ros.tools.bench_memory``).

Both use OpenCV 4.x's warpAffine arithmetic (the official run used OpenCV 4.11): sample positions
on a 1/32-px grid computed here (:func:`warp.sample_maps`) and cv2.remap's fixed-point bilinear table.
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

from wilor_ros.core.hand.constants import (
    BBOX_ASPECT_H,
    BBOX_ASPECT_W,
    BLUR_DOWNSAMPLE_THRESHOLD,
    CROP_SIZE,
    DEFAULT_RESCALE_FACTOR,
    IMAGE_MEAN,
    IMAGE_STD,
    RGB_CHANNELS,
    RGBA_CHANNELS,
)
from wilor_ros.core.image.warp import (
    INTER_BITS,
    INTER_TAB_SIZE,
    aligned_maps,
    axis_aligned_positions,
    axis_support,
    blurred_samples,
    first_taps,
    gaussian_blur,
    invert_affine,
    remap_bilinear,
    sample_maps,
)
from wilor_ros.core.types import HandDetection, Side

if TYPE_CHECKING:  # torch is optional for the numpy path
    import torch

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
    patch = remap_bilinear(image, xy, frac)
    return CropResult(
        crop=normalize_patches(patch),
        patch=patch,
        affine=affine,
        box_center=geometry.box_center,
        box_size=geometry.box_size,
        blur_sigma=geometry.blur_sigma,
        flipped=geometry.flipped,
    )


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
        return remap_bilinear(image_rgb, xy, frac), affine
    positions = axis_aligned_positions(inverse)
    assert positions is not None, "crop affines are axis-aligned"
    fixed_x, fixed_y = positions  # 1/32 px in the (mirrored, for left hands) image
    cols = axis_support(first_taps(fixed_x), width)
    rows = axis_support(first_taps(fixed_y), height)
    if cols.pixels.size == 0 or rows.pixels.size == 0:  # entirely outside the image: border value
        dtype = np.uint8 if geometry.blur_sigma is None else np.float64
        return np.zeros((CROP_SIZE, CROP_SIZE, RGB_CHANNELS), dtype=dtype), affine
    if geometry.blur_sigma is None:
        # an unblurred crop reads a window of at most ~565 x 565 pixels (S <= 563): a mirrored copy of
        # it (OpenCV's SIMD flip) is cheaper than gathering pixels; positions shift by its origin
        x0, x1 = int(cols.pixels[0]), int(cols.pixels[-1]) + 1  # mirrored columns
        y0, y1 = int(rows.pixels[0]), int(rows.pixels[-1]) + 1
        source = cv2.flip(image_rgb[y0:y1, width - x1 : width - x0], 1)
        xy, frac = aligned_maps(fixed_x - (x0 << INTER_BITS), fixed_y - (y0 << INTER_BITS))
        return remap_bilinear(source, xy, frac), affine
    # mirrored column x' is source column W - 1 - x': blurring at those columns mirrors the pixels
    source_cols = width - 1 - cols.pixels if geometry.flipped else cols.pixels
    source = blurred_samples(image_rgb, rows.pixels, source_cols, geometry.blur_sigma)
    tab_mask = INTER_TAB_SIZE - 1
    xy, frac = aligned_maps(
        (cols.taps << INTER_BITS) + (fixed_x & tab_mask), (rows.taps << INTER_BITS) + (fixed_y & tab_mask)
    )
    return remap_bilinear(source, xy, frac), affine


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
