"""Hand crops computed with torch on the image's device (GPU deployments: upload once, no host trips).

:func:`crop_hands_torch` takes the frame as an H x W x 3 uint8 tensor that the caller uploaded ONCE
and returns the B x 3 x 256 x 256 normalised crops on the same device, ready for a backend's
``infer_tensor``. The geometry (centre, side, 2 x 3 affine, blur sigma, mirroring of left hands) comes
from the same functions as the exact CPU path (:mod:`wilor_ros.core.preprocessing`), so the crop
*placement* is identical; only the pixel arithmetic differs:

* sampling: ``torch.nn.functional.grid_sample`` (bilinear, ``align_corners=True`` on pixel-centre
  coordinates, zeros outside = the official black border) at OpenCV 4.x's own sample positions (the
  inverse affine rounded to its 1/32-px grid, computed exactly on the host as two 256-vectors).
  grid_sample's float32 normalise/unnormalise round trip and weights differ from OpenCV's fixed point
  by rounding noise only; unblurred crops are rounded half up to whole grey levels like OpenCV's uint8
  output, so a pixel whose exact value is a tie can land one grey level away (measured in
  test_device_preprocessing.py: at most 1 grey level, blurred crops < 0.01);
* anti-alias blur (only when the crop down-samples by more than 1.1): separable Gaussian with scipy's
  kernel (truncate 4) and 'nearest' border, in float32 instead of float64, on the window the hand
  reads plus the kernel support only (one window per blurred hand);
* normalisation: :func:`preprocessing.normalize_patches_torch` (the same float32 constants).

Left hands: the official code mirrors the whole image and warps it. Here the mirrored image is never
built: a crop pixel whose mirrored-image position is x' reads source column ``x = W - 1 - x'``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from wilor_ros.core.constants import CROP_SIZE, DEFAULT_RESCALE_FACTOR
from wilor_ros.core.preprocessing import (
    RGB_CHANNELS,
    SUBPIXEL_STEPS,
    CropGeometry,
    CropMetadata,
    axis_aligned_positions,
    crop_affine,
    crop_geometry,
    gaussian_radius,
    invert_affine,
    normalize_patches_torch,
)
from wilor_ros.core.types import HandDetection, Side

# grid_sample with align_corners=True maps -1/+1 to the first/last pixel centre, which needs at
# least two pixels per axis; smaller images get one black row/column appended (it is "outside").
_MIN_SIDE = 2
# bilinear lookups read the top-left tap and the one after it
_BILINEAR_EXTRA_TAP = 1


def _check_image(image: torch.Tensor) -> None:
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"expected a torch.Tensor image, got {type(image).__name__}; use torch.from_numpy")
    if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[2] != RGB_CHANNELS:
        raise ValueError(
            f"expected an H x W x 3 RGB uint8 tensor, got {image.dtype} {tuple(image.shape)}; "
            "convert it with preprocessing.to_rgb() before uploading"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"the image is empty: shape {tuple(image.shape)}")


def opencv_positions(geometry: CropGeometry, affine: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV 4.x warpAffine's sample positions of the crop, in source pixels (pixel-centre convention).

    Crop affines are axis-aligned (a scale and a shift), so x depends on the crop column only and y on
    the row only. Returns x (256,) per crop column and y (256,) per crop row, float64 multiples of
    1/32 px: the inverse affine in OpenCV's fixed point rounded to its 1/32-px grid
    (preprocessing.axis_aligned_positions). Left hands: computed in mirrored coordinates,
    then x = W - 1 - x' (the source column of mirrored column x').
    """
    positions = axis_aligned_positions(invert_affine(affine))
    assert positions is not None, "crop affines are axis-aligned"
    x, y = (p.astype(np.float64) / SUBPIXEL_STEPS for p in positions)
    if geometry.flipped:
        x = (width - 1.0) - x
    return x, y


def _position_grid(x: np.ndarray, y: np.ndarray, device: torch.device) -> torch.Tensor:
    """(256,) x and (256,) y -> 256 x 256 x 2 float32 (x, y) positions on ``device``, rows = crop y.

    Only the two vectors are uploaded (2 KiB; a host-built grid would be 512 KiB per hand) and
    broadcast there. Multiples of 1/32 below 2^18 are exact in float32.
    """
    axes = torch.from_numpy(np.stack([x, y]).astype(np.float32)).to(device)  # 2 x 256
    grid_x = axes[0].view(1, CROP_SIZE).expand(CROP_SIZE, CROP_SIZE)
    grid_y = axes[1].view(CROP_SIZE, 1).expand(CROP_SIZE, CROP_SIZE)
    return torch.stack([grid_x, grid_y], dim=-1)


def _read_window(x: np.ndarray, y: np.ndarray, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Source pixels [x0, x1) x [y0, y1) a bilinear lookup at positions x, y reads (each position also
    reads the next pixel), clamped to the image; None when no read touches the image."""
    x0, y0 = max(math.floor(x.min()), 0), max(math.floor(y.min()), 0)
    x1 = min(math.floor(x.max()) + _BILINEAR_EXTRA_TAP + 1, width)
    y1 = min(math.floor(y.max()) + _BILINEAR_EXTRA_TAP + 1, height)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, y0, x1, y1


def gaussian_kernel_torch(sigma: float, device: torch.device) -> torch.Tensor:
    """(2r + 1,) float32 normalised Gaussian weights, r = int(4 sigma + 0.5): scipy's gaussian_filter1d
    kernel (exp(-x^2 / 2 sigma^2) / sum), built on ``device``."""
    radius = gaussian_radius(sigma)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    weights = torch.exp(-0.5 * (offsets / float(sigma)) ** 2)
    return (weights / weights.sum()).to(device=device, dtype=torch.float32)


def gaussian_blur_torch(planes: torch.Tensor, sigma: float) -> torch.Tensor:
    """N x C x H x W float32 -> same shape: separable Gaussian per channel with replicate borders
    (= scipy mode='nearest', truncate 4). Written with conv2d because torch has no scipy-equivalent
    filter: torchvision's gaussian_blur uses a different radius rule and reflect padding."""
    kernel = gaussian_kernel_torch(sigma, planes.device)
    radius = (kernel.numel() - 1) // 2
    channels = planes.shape[1]
    horizontal = kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1)
    vertical = kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1)
    out = F.conv2d(F.pad(planes, (radius, radius, 0, 0), mode="replicate"), horizontal, groups=channels)
    return F.conv2d(F.pad(out, (0, 0, radius, radius), mode="replicate"), vertical, groups=channels)


def _to_grid(positions: torch.Tensor, origin: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
    """Pixel positions (..., 2) in a source whose pixel (0, 0) is image pixel ``origin`` and whose
    size is (width, height) -> grid_sample coordinates for align_corners=True (-1/+1 = the first/last
    pixel centre)."""
    width, height = size
    shift = torch.tensor([float(origin[0]), float(origin[1])], device=positions.device)
    scale = torch.tensor([2.0 / (width - 1), 2.0 / (height - 1)], device=positions.device)
    return (positions - shift) * scale - 1.0


def _sample(source: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """source 1 x 3 x h x w float32, grid 1 x Hg x 256 x 2 -> 1 x 3 x Hg x 256, black outside."""
    return F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def crop_hands_torch(
    image: torch.Tensor, detections: list[HandDetection], rescale: float = DEFAULT_RESCALE_FACTOR
) -> tuple[torch.Tensor, CropMetadata]:
    """All hands of one frame, cropped and normalised on the frame's device.

    image: H x W x 3 RGB uint8 tensor on any device (upload the frame once, e.g.
        ``torch.from_numpy(rgb).to(device)``); it is read, never copied back to the host.
    detections: hand boxes (XYXY source pixels) with sides; boxes may lie partly or fully outside.
    Returns crops (B x 3 x 256 x 256 float32 on ``image.device``, normalised RGB, left hands mirrored;
    B may be 0) and the numpy metadata the post-processing needs (:class:`CropMetadata`).

    Unblurred hands are sampled in ONE grid_sample call (their grids stacked along the output
    height); hands that need the anti-alias blur each get their own blurred window and call.
    """
    _check_image(image)
    device = image.device
    height, width = int(image.shape[0]), int(image.shape[1])
    count = len(detections)
    centers = np.empty((count, 2), dtype=np.float32)
    sizes = np.empty((count,), dtype=np.float64)
    sides = np.empty((count,), dtype=np.int64)
    affines = np.empty((count, 2, 3), dtype=np.float64)
    geometries: list[CropGeometry] = []
    axes: list[tuple[np.ndarray, np.ndarray]] = []  # per hand: OpenCV's x (256,) and y (256,)
    for i, det in enumerate(detections):
        geometry = crop_geometry(det.box, det.side == Side.RIGHT, rescale)
        geometries.append(geometry)
        affines[i] = crop_affine(geometry, width)
        axes.append(opencv_positions(geometry, affines[i], width))
        centers[i] = geometry.box_center
        sizes[i] = geometry.box_size
        sides[i] = int(det.side)
    meta = CropMetadata(
        box_centers=centers, box_sizes=sizes, sides=sides, affines=affines, image_size=(width, height)
    )
    patches = torch.zeros((count, CROP_SIZE, CROP_SIZE, RGB_CHANNELS), dtype=torch.float32, device=device)
    if count == 0:
        return normalize_patches_torch(patches), meta

    planes = image.permute(2, 0, 1).unsqueeze(0).to(torch.float32)  # 1 x 3 x H x W
    if height < _MIN_SIDE or width < _MIN_SIDE:  # zeros = the black outside, see _MIN_SIDE
        planes = F.pad(planes, (0, max(_MIN_SIDE - width, 0), 0, max(_MIN_SIDE - height, 0)))
    padded_size = (int(planes.shape[3]), int(planes.shape[2]))

    sharp = [i for i, g in enumerate(geometries) if g.blur_sigma is None]
    if sharp:
        positions = torch.cat([_position_grid(*axes[i], device) for i in sharp], dim=0)  # (k 256) x 256 x 2
        out = _sample(planes, _to_grid(positions, (0, 0), padded_size)[None])[0]  # 3 x (k 256) x 256
        out = out.view(RGB_CHANNELS, len(sharp), CROP_SIZE, CROP_SIZE).permute(1, 2, 3, 0)
        # OpenCV's uint8 warp output is whole grey levels: round like it
        patches[sharp] = torch.floor(out + 0.5).clamp_(0.0, 255.0)  # half up, as OpenCV's shift

    for i, geometry in enumerate(geometries):
        if geometry.blur_sigma is None:
            continue
        window = _read_window(*axes[i], width, height)
        if window is None:  # nothing of the image is read: the crop stays black
            continue
        # blur the read window plus the kernel support; where that is clamped to the image border,
        # replicate padding reproduces scipy's mode='nearest' of the full-image blur
        pad = gaussian_radius(geometry.blur_sigma) + 1
        x0, y0, x1, y1 = window
        px0, py0 = max(x0 - pad, 0), max(y0 - pad, 0)
        px1, py1 = min(x1 + pad, width), min(y1 + pad, height)
        source = gaussian_blur_torch(planes[:, :, py0:py1, px0:px1], geometry.blur_sigma)
        source_size = (px1 - px0, py1 - py0)
        if source_size[0] < _MIN_SIDE or source_size[1] < _MIN_SIDE:
            pad_w, pad_h = max(_MIN_SIDE - source_size[0], 0), max(_MIN_SIDE - source_size[1], 0)
            source = F.pad(source, (0, pad_w, 0, pad_h))
            source_size = (source_size[0] + pad_w, source_size[1] + pad_h)
        positions = _position_grid(*axes[i], device)
        out = _sample(source, _to_grid(positions, (px0, py0), source_size)[None])[0]  # 3 x 256 x 256
        patches[i] = out.permute(1, 2, 0)
    return normalize_patches_torch(patches), meta
