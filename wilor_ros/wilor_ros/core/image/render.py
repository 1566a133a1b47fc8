"""A small CPU renderer for mesh overlays, plus synthetic hand pictures with ground truth.

:func:`render_meshes` draws shaded triangle meshes over an RGB image with a per-pixel z-buffer
(depth tested across all meshes, so several hands occlude each other correctly). It is written
with numpy because the overlay must work without a GPU, an OpenGL context or pyrender; it loops
over triangles and rasterises each inside its bounding box (about 0.1 s for one 778-vertex hand).

Conventions: vertices in metres in the camera optical frame (x right, y down, z forward),
pinhole projection ``u = fx·x/z + cx``, ``v = fy·y/z + cy`` with integer pixel coordinates at
pixel centres (OpenCV). Triangles are counter-clockwise seen from outside (MANO's winding);
a mirrored (left-hand) mesh has the reversed winding and is drawn with ``flip_winding=True``.

:func:`render_synthetic_hand_image` poses the synthetic MANO hand with smplx and renders it over a
plain or gradient background, returning the picture with its 2D/3D keypoints and tight box.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from wilor_ros.core.hand.constants import FINGERTIP_VERTEX_IDS, MANO_TO_OPENPOSE, NUM_HAND_JOINTS
from wilor_ros.core.types import CameraIntrinsics, Side

NEAR_PLANE = 1e-3  # metres; geometry closer than this (or behind the camera) is clipped
DEFAULT_ALPHA = 0.85
DEFAULT_AMBIENT = 0.35
# Light direction (towards the light) in the camera frame: from the camera, a little from above.
DEFAULT_LIGHT = (0.0, -0.4, -1.0)
HAND_COLOR = (222, 170, 140)  # a skin tone, RGB


@dataclass
class RenderMesh:
    """One mesh to draw.

    vertices: (N, 3) metres, camera frame; faces: (F, 3) vertex ids, counter-clockwise from
    outside unless ``flip_winding``; color: RGB 0-255. Back faces (seen from inside) are skipped
    when ``cull_backfaces``, else shaded like front faces.
    """

    vertices: np.ndarray
    faces: np.ndarray
    color: tuple[int, int, int] = HAND_COLOR
    flip_winding: bool = False
    cull_backfaces: bool = True


@dataclass
class RasterResult:
    """Per-pixel output of :func:`rasterize` for an H x W image."""

    color: np.ndarray  # (H, W, 3) float32, 0-255, shaded colour where mask
    depth: np.ndarray  # (H, W) float32 metres (camera z), inf where nothing is drawn
    mask: np.ndarray  # (H, W) bool


def _as_intrinsics(intrinsics: CameraIntrinsics | Sequence[float]) -> CameraIntrinsics:
    if isinstance(intrinsics, CameraIntrinsics):
        return intrinsics
    values = [float(v) for v in intrinsics]
    if len(values) != 4:
        raise ValueError(f"intrinsics must be CameraIntrinsics or (fx, fy, cx, cy), got {intrinsics!r}")
    return CameraIntrinsics(*values)


def _as_mesh(mesh: RenderMesh | tuple) -> RenderMesh:
    if isinstance(mesh, RenderMesh):
        out = mesh
    elif isinstance(mesh, tuple) and 2 <= len(mesh) <= 4:
        out = RenderMesh(*mesh)
    else:
        raise ValueError("a mesh must be a RenderMesh or a tuple (vertices, faces[, color[, flip_winding]])")
    vertices = np.asarray(out.vertices, dtype=np.float64)
    faces = np.asarray(out.faces, dtype=np.int64)
    if vertices.ndim != 2 or vertices.shape[1] != 3 or faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"mesh vertices must be N x 3 and faces F x 3, got {vertices.shape}, {faces.shape}")
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError("mesh faces index vertices that do not exist")
    if not np.all(np.isfinite(vertices)):
        raise ValueError("mesh vertices must be finite")
    return RenderMesh(vertices, faces, tuple(int(c) for c in out.color), out.flip_winding, out.cull_backfaces)


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit face normals (F x 3) and area-weighted unit vertex normals (N x 3)."""
    tri = vertices[faces]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    vnormals = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(vnormals, faces[:, k], cross)
    face_n = cross / np.maximum(np.linalg.norm(cross, axis=1, keepdims=True), 1e-20)
    vnormals /= np.maximum(np.linalg.norm(vnormals, axis=1, keepdims=True), 1e-20)
    return face_n, vnormals


def _clip_near(points: np.ndarray, shades: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Clip one triangle (3 x 3 points, 3 shades) against z >= NEAR_PLANE; returns 0-2 triangles."""
    inside = points[:, 2] >= NEAR_PLANE
    if inside.all():
        return [(points, shades)]
    if not inside.any():
        return []
    poly_p, poly_s = [], []
    for k in range(3):  # Sutherland-Hodgman against one plane
        a, b = k, (k + 1) % 3
        if inside[a]:
            poly_p.append(points[a])
            poly_s.append(shades[a])
        if inside[a] != inside[b]:
            t = (NEAR_PLANE - points[a, 2]) / (points[b, 2] - points[a, 2])
            poly_p.append(points[a] + t * (points[b] - points[a]))
            poly_s.append(shades[a] + t * (shades[b] - shades[a]))
    poly_p, poly_s = np.asarray(poly_p), np.asarray(poly_s)
    return [(poly_p[[0, k, k + 1]], poly_s[[0, k, k + 1]]) for k in range(1, len(poly_p) - 1)]


def rasterize(
    size_hw: tuple[int, int],
    meshes: Sequence[RenderMesh | tuple],
    intrinsics: CameraIntrinsics | Sequence[float],
    ambient: float = DEFAULT_AMBIENT,
    light_dir: Sequence[float] = DEFAULT_LIGHT,
) -> RasterResult:
    """Z-buffer rasterisation with Gouraud-interpolated Lambert + ambient shading.

    Vertex shades come from area-weighted vertex normals (themselves from face normals);
    depth is interpolated as 1/z (perspective-correct), as is the shade.
    """
    height, width = int(size_hw[0]), int(size_hw[1])
    cam = _as_intrinsics(intrinsics)
    light = np.asarray(light_dir, dtype=np.float64)
    light = light / np.linalg.norm(light)
    inv_depth = np.zeros((height, width), dtype=np.float64)  # 0 = empty (1/z of infinity)
    color = np.zeros((height, width, 3), dtype=np.float32)
    for raw in meshes:
        mesh = _as_mesh(raw)
        verts, faces = mesh.vertices, mesh.faces
        if mesh.flip_winding:
            faces = faces[:, [0, 2, 1]]
        if not len(faces):
            continue
        face_n, vert_n = _vertex_normals(verts, faces)
        # a face is front-facing when its outward normal points towards the camera (origin)
        front = np.einsum("ij,ij->i", face_n, verts[faces[:, 0]]) < 0.0
        lambert = np.clip(vert_n @ light, 0.0, 1.0)
        back_lambert = np.clip(-vert_n @ light, 0.0, 1.0)
        base = np.asarray(mesh.color, dtype=np.float32)
        for f_id in np.flatnonzero(front | (not mesh.cull_backfaces)):
            tri = faces[f_id]
            diffuse = lambert[tri] if front[f_id] else back_lambert[tri]
            shades = ambient + (1.0 - ambient) * diffuse
            for points, tri_shades in _clip_near(verts[tri], shades):
                _raster_triangle(points, tri_shades, cam, base, inv_depth, color)
    mask = inv_depth > 0.0
    depth = np.full((height, width), np.inf, dtype=np.float32)
    depth[mask] = 1.0 / inv_depth[mask]
    return RasterResult(color=color, depth=depth, mask=mask)


def _raster_triangle(
    points: np.ndarray,
    shades: np.ndarray,
    cam: CameraIntrinsics,
    base: np.ndarray,
    inv_depth: np.ndarray,
    color: np.ndarray,
) -> None:
    """Fill one triangle (3 x 3 camera points, z >= NEAR_PLANE) into the buffers in place."""
    iz = 1.0 / points[:, 2]
    u = cam.fx * points[:, 0] * iz + cam.cx
    v = cam.fy * points[:, 1] * iz + cam.cy
    height, width = inv_depth.shape
    x0, x1 = max(int(np.ceil(u.min())), 0), min(int(np.floor(u.max())), width - 1)
    y0, y1 = max(int(np.ceil(v.min())), 0), min(int(np.floor(v.max())), height - 1)
    if x0 > x1 or y0 > y1:
        return
    area = (u[1] - u[0]) * (v[2] - v[0]) - (u[2] - u[0]) * (v[1] - v[0])
    if abs(area) < 1e-12:
        return
    px, py = np.meshgrid(np.arange(x0, x1 + 1, dtype=np.float64), np.arange(y0, y1 + 1, dtype=np.float64))
    w0 = ((u[1] - px) * (v[2] - py) - (u[2] - px) * (v[1] - py)) / area
    w1 = ((u[2] - px) * (v[0] - py) - (u[0] - px) * (v[2] - py)) / area
    w2 = 1.0 - w0 - w1
    inside = (w0 >= 0.0) & (w1 >= 0.0) & (w2 >= 0.0)
    if not inside.any():
        return
    pix_iz = w0 * iz[0] + w1 * iz[1] + w2 * iz[2]
    region = inv_depth[y0 : y1 + 1, x0 : x1 + 1]
    win = inside & (pix_iz > region)
    if not win.any():
        return
    shade = (w0 * shades[0] * iz[0] + w1 * shades[1] * iz[1] + w2 * shades[2] * iz[2]) / pix_iz
    region[win] = pix_iz[win]
    color[y0 : y1 + 1, x0 : x1 + 1][win] = shade[win, None] * base[None, :]


def render_meshes(
    image: np.ndarray,
    meshes: Sequence[RenderMesh | tuple],
    intrinsics: CameraIntrinsics | Sequence[float],
    alpha: float = DEFAULT_ALPHA,
    ambient: float = DEFAULT_AMBIENT,
    light_dir: Sequence[float] = DEFAULT_LIGHT,
) -> np.ndarray:
    """Draw shaded meshes over ``image`` (H x W x 3 RGB uint8); returns a new H x W x 3 uint8.

    ``meshes``: RenderMesh objects or tuples (vertices N x 3, faces F x 3[, color RGB
    [, flip_winding]]), all in the camera frame of ``intrinsics`` (CameraIntrinsics or fx, fy,
    cx, cy). ``alpha`` is the opacity of the meshes over the image (0 to 1).
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"image must be H x W x 3 uint8 RGB, got {img.shape} {img.dtype}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    raster = rasterize(img.shape[:2], meshes, intrinsics, ambient=ambient, light_dir=light_dir)
    out = img.astype(np.float32)
    m = raster.mask
    out[m] = (1.0 - alpha) * out[m] + alpha * raster.color[m]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------ synthetic hand pictures
@dataclass
class SyntheticHandImage:
    """A rendered hand with its ground truth (camera frame, metres; pixels)."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    keypoints_2d: np.ndarray  # (21, 2) float32 pixels, OpenPose order
    keypoints_3d: np.ndarray  # (21, 3) float32 metres, camera frame, OpenPose order
    vertices: np.ndarray  # (778, 3) float32 metres, camera frame
    faces: np.ndarray  # (1538, 3) int64, counter-clockwise from outside for this side
    box: np.ndarray  # (4,) float32 XYXY: tight box of the projected vertices
    side: Side
    intrinsics: CameraIntrinsics


@functools.lru_cache(maxsize=4)
def _smplx_mano(model_path: str) -> Any:  # smplx.MANO (smplx is imported lazily: torch is heavy)
    import smplx

    from wilor_ros.core.hand.mano import load_mano

    model = load_mano(model_path)
    layer = smplx.MANO(
        model_path=model_path,
        data_struct=model.smplx_data_struct(),
        use_pca=False,
        flat_hand_mean=True,
        is_rhand=True,
    )
    return layer.eval(), model.faces


def pose_mano(
    model_path: str | os.PathLike[str],
    global_orient: np.ndarray,
    hand_pose: np.ndarray,
    betas: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pose a MANO right hand with smplx (axis-angle, flat-hand zero pose as WiLoR's MANOLayer).

    global_orient (3,), hand_pose (15, 3) parent-relative in MANO joint order, betas (10,).
    Returns vertices (778, 3), the 21 joints in OpenPose order (21, 3), both float64 metres in
    the MANO frame, and faces (1538, 3).
    """
    import torch

    layer, faces = _smplx_mano(os.fspath(model_path))
    orient = np.asarray(global_orient, dtype=np.float32).reshape(1, 3)
    pose = np.asarray(hand_pose, dtype=np.float32).reshape(1, NUM_HAND_JOINTS * 3)
    shape = np.zeros((1, 10), np.float32) if betas is None else np.asarray(betas, np.float32).reshape(1, -1)
    with torch.no_grad():
        out = layer(
            global_orient=torch.from_numpy(orient),
            hand_pose=torch.from_numpy(pose),
            betas=torch.from_numpy(shape),
        )
    vertices = out.vertices[0].double().numpy()
    joints = np.concatenate([out.joints[0].double().numpy(), vertices[list(FINGERTIP_VERTEX_IDS)]])
    return vertices, joints[list(MANO_TO_OPENPOSE)], faces


def default_hand_orient() -> np.ndarray:
    """(3,) axis-angle that shows a right MANO hand palm-on, fingers up, in the camera frame.

    MANO's rest hand has fingers along -x and the palm facing -y; rotating 90 degrees about x
    turns the palm to -z (towards the camera), then 90 degrees about z turns the fingers to -y
    (up in the image).
    """
    from scipy.spatial.transform import Rotation

    return (
        Rotation.from_euler("z", 90, degrees=True) * Rotation.from_euler("x", 90, degrees=True)
    ).as_rotvec()


def _background(height: int, width: int, background: str | tuple[int, int, int]) -> np.ndarray:
    if isinstance(background, str):
        if background != "gradient":
            raise ValueError(f"background must be 'gradient' or an RGB tuple, got {background!r}")
        t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
        top, bottom = np.array([70, 90, 120], np.float32), np.array([200, 205, 210], np.float32)
        img = np.broadcast_to((1.0 - t) * top + t * bottom, (height, width, 3))
        return np.rint(img).astype(np.uint8)
    return np.broadcast_to(np.asarray(background, np.uint8), (height, width, 3)).copy()


def render_synthetic_hand_image(
    model_path: str | os.PathLike[str],
    image_size: tuple[int, int] = (640, 480),
    intrinsics: CameraIntrinsics | Sequence[float] | None = None,
    global_orient: np.ndarray | None = None,
    hand_pose: np.ndarray | None = None,
    betas: np.ndarray | None = None,
    side: Side | str | int = Side.RIGHT,
    depth: float = 0.45,
    transl: np.ndarray | None = None,
    background: str | tuple[int, int, int] = "gradient",
    color: tuple[int, int, int] = HAND_COLOR,
) -> SyntheticHandImage:
    """Render a posed MANO hand (normally the synthetic one) with its ground truth.

    image_size is (W, H). Default intrinsics: focal max(W, H), principal point at the centre.
    The hand is posed in the MANO frame (``global_orient`` defaults to :func:`default_hand_orient`,
    ``hand_pose`` (15, 3) to flat), mirrored in x for a left hand (as WiLoR un-mirrors left
    hands, with reversed winding), then moved by ``transl`` or, if None, so that its vertex
    centroid lies on the optical axis at ``depth`` metres.
    """
    width, height = int(image_size[0]), int(image_size[1])
    cam = (
        CameraIntrinsics(float(max(width, height)), float(max(width, height)), width / 2.0, height / 2.0)
        if intrinsics is None
        else _as_intrinsics(intrinsics)
    )
    side = Side.parse(side)
    orient = default_hand_orient() if global_orient is None else np.asarray(global_orient, np.float64)
    pose = np.zeros((NUM_HAND_JOINTS, 3)) if hand_pose is None else np.asarray(hand_pose, np.float64)
    vertices, joints, faces = pose_mano(model_path, orient, pose, betas)
    if side == Side.LEFT:
        vertices = vertices * np.array([-1.0, 1.0, 1.0])
        joints = joints * np.array([-1.0, 1.0, 1.0])
    shift = np.array([0.0, 0.0, depth]) - vertices.mean(axis=0) if transl is None else np.asarray(transl)
    vertices, joints = vertices + shift, joints + shift
    if np.any(vertices[:, 2] <= NEAR_PLANE):
        raise ValueError("the hand reaches behind the camera; increase depth or change transl")
    image = render_meshes(
        _background(height, width, background),
        [RenderMesh(vertices, faces, color, flip_winding=side == Side.LEFT)],
        cam,
        alpha=1.0,
    )
    uv = np.stack(
        [
            cam.fx * vertices[:, 0] / vertices[:, 2] + cam.cx,
            cam.fy * vertices[:, 1] / vertices[:, 2] + cam.cy,
        ],
        1,
    )
    kp2d = np.stack(
        [cam.fx * joints[:, 0] / joints[:, 2] + cam.cx, cam.fy * joints[:, 1] / joints[:, 2] + cam.cy], 1
    )
    box = np.array([*uv.min(axis=0), *uv.max(axis=0)], dtype=np.float32)
    return SyntheticHandImage(
        image=image,
        keypoints_2d=kp2d.astype(np.float32),
        keypoints_3d=joints.astype(np.float32),
        vertices=vertices.astype(np.float32),
        faces=faces[:, [0, 2, 1]] if side == Side.LEFT else faces,
        box=box,
        side=side,
        intrinsics=cam,
    )
