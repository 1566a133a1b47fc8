"""CPU overlay renderer and synthetic hand pictures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from wilor_ros.core.image.render import (
    RenderMesh,
    default_hand_orient,
    pose_mano,
    rasterize,
    render_meshes,
    render_synthetic_hand_image,
)
from wilor_ros.core.types import CameraIntrinsics, Side
from wilor_ros.tools.synthetic_mano import make_synthetic_mano

CAM = CameraIntrinsics(200.0, 200.0, 50.0, 40.0)
SIZE_HW = (80, 100)


def _square(half: float, z: float, center=(0.0, 0.0)) -> tuple[np.ndarray, np.ndarray]:
    """A square facing the camera (counter-clockwise seen from the camera, i.e. from outside)."""
    cx, cy = center
    verts = np.array([[cx - half, cy - half, z], [cx - half, cy + half, z], [cx + half, cy + half, z],
                      [cx + half, cy - half, z]])  # fmt: skip
    return verts, np.array([[0, 1, 2], [0, 2, 3]])


def test_square_covers_its_projection_and_nothing_else() -> None:
    verts, faces = _square(0.05, 1.0)  # projects to u in [40, 60], v in [30, 50]
    image = np.full((*SIZE_HW, 3), 10, np.uint8)
    out = render_meshes(image, [(verts, faces, (250, 0, 0))], CAM, alpha=1.0)
    changed = np.any(out != image, axis=2)
    assert changed[32:49, 42:59].all()
    assert not changed[:28].any() and not changed[52:].any()
    assert not changed[:, :38].any() and not changed[:, 62:].any()
    assert out[40, 50, 0] > 150 and out[40, 50, 1] == 0  # lit red, facing the light
    raster = rasterize(SIZE_HW, [(verts, faces)], CAM)
    np.testing.assert_allclose(raster.depth[40, 50], 1.0, rtol=1e-6)
    assert np.isinf(raster.depth[0, 0])
    half_blend = render_meshes(image, [(verts, faces, (250, 0, 0))], CAM, alpha=0.5)
    assert 10 < half_blend[40, 50, 0] < out[40, 50, 0]


def test_nearer_mesh_occludes_farther_in_any_order() -> None:
    near = RenderMesh(*_square(0.05, 1.0, center=(0.0, 0.0)), color=(255, 0, 0))
    far = RenderMesh(*_square(0.10, 2.0, center=(0.05, 0.0)), color=(0, 0, 255))  # u in [45, 65]
    image = np.zeros((*SIZE_HW, 3), np.uint8)
    for order in ([near, far], [far, near]):
        out = render_meshes(image, order, CAM, alpha=1.0)
        assert out[40, 55, 0] > 0 and out[40, 55, 2] == 0  # overlap: the near red square wins
        assert out[40, 63, 2] > 0 and out[40, 63, 0] == 0  # only the far square there


def test_back_faces_are_culled_unless_winding_is_flipped() -> None:
    verts, faces = _square(0.05, 1.0)
    reversed_faces = faces[:, [0, 2, 1]]  # as a mirrored (left) hand's faces
    assert not rasterize(SIZE_HW, [(verts, reversed_faces)], CAM).mask.any()
    assert rasterize(SIZE_HW, [RenderMesh(verts, reversed_faces, flip_winding=True)], CAM).mask.sum() > 300
    two_sided = RenderMesh(verts, reversed_faces, cull_backfaces=False)
    assert rasterize(SIZE_HW, [two_sided], CAM).mask.sum() > 300


def test_triangles_behind_the_camera_are_clipped() -> None:
    behind = (np.array([[-0.1, -0.1, -1.0], [-0.1, 0.1, -1.0], [0.1, 0.1, -1.0]]), np.array([[0, 1, 2]]))
    assert not rasterize(SIZE_HW, [behind], CAM).mask.any()
    # a long floor strip crossing z = 0: only the part in front of the camera is drawn, no crash
    # (wound so that its normal points up, -y, towards the camera above it)
    crossing = (np.array([[-0.2, 0.1, -1.0], [-0.2, 0.1, 3.0], [0.2, 0.1, 3.0]]), np.array([[0, 2, 1]]))
    raster = rasterize(SIZE_HW, [crossing], CAM)
    assert raster.mask.any()
    assert np.all(raster.depth[raster.mask] > 0.0)
    assert not raster.mask[:40].any()  # y = +0.1 m below the camera: lower half of the image only


def test_bad_inputs_raise_value_error() -> None:
    verts, faces = _square(0.05, 1.0)
    with pytest.raises(ValueError, match="uint8"):
        render_meshes(np.zeros((*SIZE_HW, 3), np.float32), [(verts, faces)], CAM)
    with pytest.raises(ValueError, match="faces index"):
        render_meshes(np.zeros((*SIZE_HW, 3), np.uint8), [(verts, faces + 10)], CAM)
    with pytest.raises(ValueError, match="intrinsics"):
        render_meshes(np.zeros((*SIZE_HW, 3), np.uint8), [(verts, faces)], (1.0, 2.0))


@pytest.fixture(scope="module")
def mano_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("smplx")
    import torch

    torch.set_num_threads(2)
    return Path(make_synthetic_mano(tmp_path_factory.mktemp("mano") / "MANO_RIGHT.pkl"))


def test_synthetic_hand_image_and_ground_truth(mano_path: Path) -> None:
    result = render_synthetic_hand_image(mano_path, image_size=(160, 120), depth=0.5, background=(0, 0, 0))
    assert result.image.shape == (120, 160, 3) and result.image.dtype == np.uint8
    x1, y1, x2, y2 = result.box
    inside = result.image[int(y1) + 1 : int(y2), int(x1) + 1 : int(x2)].any(axis=2)
    assert inside.mean() > 0.3  # the hand fills a good part of its tight box
    drawn = result.image.any(axis=2)
    assert drawn.sum() == drawn[int(y1) : int(np.ceil(y2)) + 1, int(x1) : int(np.ceil(x2)) + 1].sum()
    # 2D keypoints are the projections of the 3D ones and lie within the box (tips are vertices)
    cam = result.intrinsics
    kp = result.keypoints_3d
    np.testing.assert_allclose(result.keypoints_2d[:, 0], cam.fx * kp[:, 0] / kp[:, 2] + cam.cx, atol=1e-3)
    assert np.all((result.keypoints_2d >= result.box[:2] - 1) & (result.keypoints_2d <= result.box[2:] + 1))
    # default view: fingers up (tips above the wrist), palm towards the camera, thumb on the right
    assert np.all(result.keypoints_2d[[4, 8, 12, 16, 20], 1] < result.keypoints_2d[0, 1])
    assert result.keypoints_2d[4, 0] > result.keypoints_2d[20, 0]
    left = render_synthetic_hand_image(mano_path, image_size=(160, 120), depth=0.5, side=Side.LEFT)
    assert left.keypoints_2d[4, 0] < left.keypoints_2d[20, 0]  # mirrored: thumb on the left
    assert left.image.any(axis=2).sum() > 0.3 * inside.size  # reversed winding still drawn


def test_two_hands_occlude_by_depth(mano_path: Path) -> None:
    verts, _, faces = pose_mano(mano_path, default_hand_orient(), np.zeros((15, 3)))
    centre = verts.mean(axis=0)
    cam = CameraIntrinsics(300.0, 300.0, 80.0, 60.0)
    hand_a = RenderMesh(verts - centre + [0.0, 0.0, 0.4], faces, (255, 0, 0))
    hand_b = RenderMesh(verts - centre + [0.03, 0.0, 0.6], faces, (0, 0, 255))
    image = np.zeros((120, 160, 3), np.uint8)
    out = render_meshes(image, [hand_b, hand_a], cam, alpha=1.0)
    raster_a = rasterize((120, 160), [hand_a], cam)
    assert (out[..., 2] > 0).sum() > 100  # the far hand shows beside the near one
    assert raster_a.mask.sum() > 100
    assert np.all(out[raster_a.mask][:, 2] == 0)  # wherever the near hand is, the far one is hidden
