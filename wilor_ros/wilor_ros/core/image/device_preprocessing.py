"""Hand crops computed with torch on the image's device (GPU deployments: upload once, no host trips).

:func:`crop_hands_torch` takes the frame as an H x W x 3 uint8 tensor that the caller uploaded ONCE
and returns the B x 3 x 256 x 256 normalised crops on the same device, ready for a backend's
``infer_tensor``. The geometry (centre, side, 2 x 3 affine, blur sigma, mirroring of left hands) comes
from the same functions as the exact CPU path (:mod:`wilor_ros.core.image.preprocessing`), so the crop
*placement* is identical; only the pixel arithmetic differs:

* what is read: as in the CPU crop, only the source rows and columns the crop's bilinear taps touch
  (:func:`warp.axis_support`, at most 512 of each) are gathered from the frame, so the
  working memory is a few MB per hand whatever the frame and hand size (the frame itself is never
  converted to float);
* sampling: ``torch.nn.functional.grid_sample`` (bilinear, ``align_corners=True`` on pixel-centre
  coordinates, zeros outside = the official black border) at OpenCV 4.x's own sample positions (the
  inverse affine rounded to its 1/32-px grid, computed exactly on the host as two 256-vectors and
  re-indexed into the gathered pixels), all hands in one call. grid_sample's float32
  normalise/unnormalise round trip and weights differ from OpenCV's fixed point by rounding noise
  only; unblurred crops are rounded half up to whole grey levels like OpenCV's uint8 output, so a
  pixel whose exact value is a tie can land one grey level away (measured in
  test_device_preprocessing.py: at most 1 grey level, blurred crops < 0.01);
* anti-alias blur (only when the crop down-samples by more than 1.1): scipy's Gaussian kernel
  (truncate 4) and 'nearest' border, in float32 instead of float64, evaluated at the gathered rows
  and columns only (:func:`blurred_samples_torch`, the device twin of
  :func:`warp.blurred_samples`);
* normalisation: :func:`preprocessing.normalize_patches_torch` (the same float32 constants).

Left hands: the official code mirrors the whole image and warps it. Here the mirrored image is never
built: a crop pixel whose mirrored-image position is x' reads source column ``x = W - 1 - x'``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from wilor_ros.core.hand.constants import CROP_SIZE, DEFAULT_RESCALE_FACTOR
from wilor_ros.core.image.preprocessing import (
    RGB_CHANNELS,
    CropGeometry,
    CropMetadata,
    check_rgb_image,
    crop_affine,
    crop_geometry,
    normalize_patches_torch,
)
from wilor_ros.core.image.warp import (
    BLUR_ROW_CHUNK,
    SUBPIXEL_STEPS,
    axis_aligned_positions,
    axis_support,
    gaussian_radius,
    invert_affine,
)
from wilor_ros.core.types import HandDetection, Side

# grid_sample with align_corners=True maps -1/+1 to the first/last pixel centre, which needs at
# least two pixels per axis; smaller sources get black rows/columns appended (they are "outside").
_MIN_SIDE = 2


def _check_image(image: torch.Tensor) -> None:
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"expected a torch.Tensor image, got {type(image).__name__}; use torch.from_numpy")
    check_rgb_image(image, torch.uint8, "tensor", "convert it with preprocessing.to_rgb() before uploading")


def opencv_positions(geometry: CropGeometry, affine: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV 4.x warpAffine's sample positions of the crop, in source pixels (pixel-centre convention).

    Crop affines are axis-aligned (a scale and a shift), so x depends on the crop column only and y on
    the row only. Returns x (256,) per crop column and y (256,) per crop row, float64 multiples of
    1/32 px: the inverse affine in OpenCV's fixed point rounded to its 1/32-px grid
    (warp.axis_aligned_positions). Left hands: computed in mirrored coordinates,
    then x = W - 1 - x' (the source column of mirrored column x').
    """
    positions = axis_aligned_positions(invert_affine(affine))
    assert positions is not None, "crop affines are axis-aligned"
    x, y = (p.astype(np.float64) / SUBPIXEL_STEPS for p in positions)
    if geometry.flipped:
        x = (width - 1.0) - x
    return x, y


def _compact_source(
    image: torch.Tensor, geometry: CropGeometry, x: np.ndarray, y: np.ndarray
) -> tuple[torch.Tensor, np.ndarray, np.ndarray] | None:
    """The pixels one crop reads, gathered (and blurred) on the image's device.

    x (256,), y (256,): source positions of the crop's columns / rows (see :func:`opencv_positions`).
    Returns (source: K_rows x K_cols x 3 float32, x and y re-indexed into it), None when the crop reads
    nothing of the image. Positions are exact multiples of 1/32, so floor and fraction are exact.
    """
    height, width = int(image.shape[0]), int(image.shape[1])
    first_x, first_y = np.floor(x), np.floor(y)
    cols = axis_support(first_x.astype(np.int64), width)
    rows = axis_support(first_y.astype(np.int64), height)
    if cols.pixels.size == 0 or rows.pixels.size == 0:
        return None
    if geometry.blur_sigma is None:
        row_index = torch.from_numpy(rows.pixels).to(image.device)
        col_index = torch.from_numpy(cols.pixels).to(image.device)
        source = image.index_select(0, row_index).index_select(1, col_index).to(torch.float32)
    else:
        source = blurred_samples_torch(image, rows.pixels, cols.pixels, geometry.blur_sigma)
    return source, cols.taps + (x - first_x), rows.taps + (y - first_y)


def _position_grid(x: np.ndarray, y: np.ndarray, size: tuple[int, int], device: torch.device) -> torch.Tensor:
    """(256,) x and (256,) y pixel positions in a source of ``size`` (width, height) -> 256 x 256 x 2
    float32 grid_sample coordinates (align_corners=True: -1/+1 = the first/last pixel centre), rows =
    crop y. Only the two vectors are uploaded and broadcast on ``device``. Multiples of 1/32 below
    2^18 are exact in float32."""
    width, height = size
    axes = torch.from_numpy(np.stack([x, y]).astype(np.float32)).to(device)  # 2 x 256
    scale = torch.tensor([[2.0 / (width - 1)], [2.0 / (height - 1)]], device=device)
    axes = axes * scale - 1.0
    grid_x = axes[0].view(1, CROP_SIZE).expand(CROP_SIZE, CROP_SIZE)
    grid_y = axes[1].view(CROP_SIZE, 1).expand(CROP_SIZE, CROP_SIZE)
    return torch.stack([grid_x, grid_y], dim=-1)


def gaussian_kernel_torch(sigma: float, device: torch.device) -> torch.Tensor:
    """(2r + 1,) float32 normalised Gaussian weights, r = int(4 sigma + 0.5): scipy's gaussian_filter1d
    kernel (exp(-x^2 / 2 sigma^2) / sum), built on ``device``."""
    radius = gaussian_radius(sigma)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (offsets / float(sigma)) ** 2)
    return (weights / weights.sum()).to(device=device, dtype=torch.float32)


def blurred_samples_torch(
    image: torch.Tensor, rows: np.ndarray, cols: np.ndarray, sigma: float
) -> torch.Tensor:
    """scipy's Gaussian pre-blur ('nearest' border, truncate 4) of an H x W x 3 uint8 tensor, evaluated
    in float32 at ``rows`` x ``cols`` only (int pixel indices inside the image) -> R x C x 3 float32.

    Separable: the vertical pass at the wanted rows (BLUR_ROW_CHUNK at a time, over the columns the
    horizontal pass reads), then the horizontal pass at the wanted columns. Written with index_select
    because torch has no scipy-equivalent filter (torchvision's gaussian_blur uses a different radius
    rule and reflect padding) and a whole-frame convolution would touch every pixel of the frame.
    """
    device = image.device
    height, width = int(image.shape[0]), int(image.shape[1])
    kernel = gaussian_kernel_torch(sigma, device)
    radius = (kernel.numel() - 1) // 2
    col0, col1 = max(int(cols.min()) - radius, 0), min(int(cols.max()) + radius + 1, width)
    band = image[:, col0:col1]
    offsets = range(-radius, radius + 1)
    col_taps = [torch.from_numpy(np.clip(cols + k, 0, width - 1) - col0).to(device) for k in offsets]
    out = torch.empty((rows.size, cols.size, RGB_CHANNELS), dtype=torch.float32, device=device)
    for start in range(0, rows.size, BLUR_ROW_CHUNK):
        chunk = rows[start : start + BLUR_ROW_CHUNK]
        vertical = torch.zeros((chunk.size, col1 - col0, RGB_CHANNELS), dtype=torch.float32, device=device)
        for weight, k in zip(kernel, offsets):
            taps = torch.from_numpy(np.clip(chunk + k, 0, height - 1)).to(device)
            vertical += weight * band.index_select(0, taps).to(torch.float32)
        horizontal = torch.zeros((chunk.size, cols.size, RGB_CHANNELS), dtype=torch.float32, device=device)
        for weight, taps in zip(kernel, col_taps):
            horizontal += weight * vertical.index_select(1, taps)
        out[start : start + chunk.size] = horizontal
    return out


def crop_hands_torch(
    image: torch.Tensor, detections: list[HandDetection], rescale: float = DEFAULT_RESCALE_FACTOR
) -> tuple[torch.Tensor, CropMetadata]:
    """All hands of one frame, cropped and normalised on the frame's device.

    image: H x W x 3 RGB uint8 tensor on any device (upload the frame once, e.g.
        ``torch.from_numpy(rgb).to(device)``); it is read, never copied back to the host.
    detections: hand boxes (XYXY source pixels) with sides; boxes may lie partly or fully outside.
    Returns crops (B x 3 x 256 x 256 float32 on ``image.device``, normalised RGB, left hands mirrored;
    B may be 0) and the numpy metadata the post-processing needs (:class:`CropMetadata`).

    Each hand's read pixels are gathered (blurred where needed) into one zero-padded
    B x 3 x rows x cols batch, sampled by ONE grid_sample call.
    """
    _check_image(image)
    device = image.device
    height, width = int(image.shape[0]), int(image.shape[1])
    count = len(detections)
    centers = np.empty((count, 2), dtype=np.float32)
    sizes = np.empty((count,), dtype=np.float64)
    sides = np.empty((count,), dtype=np.int64)
    affines = np.empty((count, 2, 3), dtype=np.float64)
    sources: list[tuple[torch.Tensor, np.ndarray, np.ndarray] | None] = []
    sharp: list[bool] = []
    for i, det in enumerate(detections):
        geometry = crop_geometry(det.box, det.side == Side.RIGHT, rescale)
        sharp.append(geometry.blur_sigma is None)
        affines[i] = crop_affine(geometry, width)
        sources.append(_compact_source(image, geometry, *opencv_positions(geometry, affines[i], width)))
        centers[i] = geometry.box_center
        sizes[i] = geometry.box_size
        sides[i] = int(det.side)
    meta = CropMetadata(
        box_centers=centers, box_sizes=sizes, sides=sides, affines=affines, image_size=(width, height)
    )
    patches = torch.zeros((count, CROP_SIZE, CROP_SIZE, RGB_CHANNELS), dtype=torch.float32, device=device)
    read = [i for i, s in enumerate(sources) if s is not None]  # the others stay black
    if not read:
        return normalize_patches_torch(patches), meta

    # zero padding is outside the image too: grid_sample reads it as the black border. Each side is at
    # least two pixels: align_corners=True maps -1/+1 to the first/last pixel centre.
    rows = max(max(sources[i][0].shape[0] for i in read), _MIN_SIDE)  # type: ignore[index]
    cols = max(max(sources[i][0].shape[1] for i in read), _MIN_SIDE)  # type: ignore[index]
    batch = torch.zeros((len(read), RGB_CHANNELS, rows, cols), dtype=torch.float32, device=device)
    grids = []
    for k, i in enumerate(read):
        source, x, y = sources[i]  # type: ignore[misc]
        batch[k, :, : source.shape[0], : source.shape[1]] = source.permute(2, 0, 1)
        grids.append(_position_grid(x, y, (cols, rows), device))
    out = F.grid_sample(batch, torch.stack(grids), mode="bilinear", padding_mode="zeros", align_corners=True)
    out = out.permute(0, 2, 3, 1)  # k x 256 x 256 x 3
    rounded = torch.tensor([sharp[i] for i in read], device=device)
    # OpenCV's uint8 warp output is whole grey levels: round like it (half up, as OpenCV's shift)
    out[rounded] = torch.floor(out[rounded] + 0.5).clamp_(0.0, 255.0)
    patches[read] = out
    return normalize_patches_torch(patches), meta
