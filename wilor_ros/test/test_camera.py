"""Camera conversions: official cam_crop_to_full parity, un-mirroring, real intrinsics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from wilor_ros.core.hand import camera
from wilor_ros.core.hand.constants import CROP_SIZE, DEFAULT_RESCALE_FACTOR
from wilor_ros.core.image import preprocessing as pp
from wilor_ros.core.types import CameraIntrinsics

# The official conversion runs in float32; ours in float64 (SPEC §6: ~1e-6 relative, 1e-3 px).
CAM_RTOL = 2e-6
PIXEL_ATOL = 1e-3
NUM_POST = 4
HALF_CROP = CROP_SIZE / 2


@pytest.fixture(scope="module")
def prepost(reference_dir: Path) -> dict[str, np.ndarray]:
    with np.load(reference_dir / "golden_prepost.npz") as data:
        return {k: data[k] for k in data.files if not k.startswith("crop")}


@pytest.fixture(scope="module")
def small_out(reference_dir: Path) -> dict[str, np.ndarray]:
    with np.load(reference_dir / "golden_small.npz") as data:
        return {k: data[k] for k in data.files if k.startswith(("in/", "out/"))}


def test_heuristic_intrinsics() -> None:
    k = camera.heuristic_intrinsics(1920, 1080)
    assert (k.fx, k.fy, k.cx, k.cy) == (37500.0, 37500.0, 960.0, 540.0)
    assert not k.from_camera_info
    assert camera.heuristic_intrinsics(480, 360).fx == 9375.0
    with pytest.raises(ValueError):
        camera.heuristic_intrinsics(0, 10)


def test_cam_crop_to_full_table(prepost: dict[str, np.ndarray]) -> None:
    is_right = prepost["camtable/is_right"]
    cam = camera.unmirror_cam(prepost["camtable/pred_cam_model"], is_right)
    expected = prepost["camtable/cam_t_full"]
    for row in range(expected.shape[0]):
        width, height = (int(v) for v in prepost["camtable/img_size"][row])
        assert camera.heuristic_focal(width, height) == prepost["camtable/scaled_focal_length"][row]
        got = camera.cam_crop_to_full(
            cam[row : row + 1],
            prepost["camtable/box_center"][row : row + 1],
            prepost["camtable/box_size"][row : row + 1],
            (width, height),
        )
        np.testing.assert_allclose(got[0], expected[row], rtol=CAM_RTOL, atol=1e-7, err_msg=f"row {row}")
    # The left rows really exercise the sign flip: without it they would not match.
    left = np.flatnonzero(is_right == 0)
    assert left.size > 0 and np.any(prepost["camtable/pred_cam_model"][left, 1] != 0)


@pytest.mark.parametrize("index", range(NUM_POST))
def test_post_processing_golden(prepost, small_out, index: int) -> None:
    right = small_out["in/right"][index : index + 1]
    pred_cam = small_out["out/pred_cam"][index : index + 1]
    np.testing.assert_array_equal(pred_cam[0], prepost[f"post{index}/pred_cam_model"])
    cam = camera.unmirror_cam(pred_cam, right)
    np.testing.assert_array_equal(cam[0], prepost[f"post{index}/pred_cam_after_flip"])

    # The batch carries float64 box sizes; the demo casts them to float32 before the conversion.
    box_center = small_out["in/box_center"][index : index + 1]
    box_size = small_out["in/box_size"][index : index + 1].astype(np.float32)
    width, height = (int(v) for v in small_out["in/img_size"][index])
    cam_t = camera.cam_crop_to_full(cam, box_center, box_size, (width, height))
    np.testing.assert_allclose(cam_t[0], prepost[f"post{index}/pred_cam_t_full"], rtol=CAM_RTOL)

    vertices = camera.unmirror_points(small_out["out/pred_vertices"][index : index + 1], right)[0]
    joints = camera.unmirror_points(small_out["out/pred_keypoints_3d"][index : index + 1], right)[0]
    np.testing.assert_array_equal(vertices, prepost[f"post{index}/vertices_unflipped"])
    np.testing.assert_array_equal(joints, prepost[f"post{index}/keypoints_3d_unflipped"])

    k = camera.heuristic_intrinsics(width, height)
    uv_vertices = camera.project_points(vertices + cam_t[0], k)
    uv_joints = camera.project_points(joints + cam_t[0], k)
    np.testing.assert_allclose(uv_vertices, prepost[f"post{index}/vertices_2d_full"], rtol=0, atol=PIXEL_ATOL)
    np.testing.assert_allclose(uv_joints, prepost[f"post{index}/keypoints_2d_full"], rtol=0, atol=PIXEL_ATOL)


def test_mirror_rotations_and_axis_angle() -> None:
    rots = Rotation.random(20, random_state=1)
    mats = rots.as_matrix().reshape(4, 5, 3, 3)
    mirror = camera.MIRROR
    mirrored = camera.mirror_rotations(mats)
    np.testing.assert_allclose(mirrored, mirror @ mats @ mirror, atol=0)
    np.testing.assert_allclose(np.linalg.det(mirrored), 1.0, atol=1e-12)  # still proper rotations
    np.testing.assert_array_equal(camera.mirror_rotations(mirrored), mats)  # an involution
    # Consistent with the un-mirrored mesh: mirroring R p gives (M R M)(M p).
    points = np.random.default_rng(2).normal(size=(7, 3))
    lhs = (mirror @ (mats[0, 0] @ points.T)).T
    rhs = (mirrored[0, 0] @ (mirror @ points.T)).T
    np.testing.assert_allclose(lhs, rhs, atol=1e-12)
    # Axis-angle form: (x, y, z) -> (x, -y, -z).
    aa = rots.as_rotvec()
    np.testing.assert_allclose(
        Rotation.from_rotvec(camera.mirror_axis_angle(aa)).as_matrix(), mirrored.reshape(-1, 3, 3), atol=1e-12
    )
    with pytest.raises(ValueError):
        camera.mirror_rotations(np.zeros((3, 4)))


def test_project_points_behind_camera_is_nan() -> None:
    k = CameraIntrinsics(500.0, 600.0, 320.0, 240.0)
    uv = camera.project_points(np.array([[0.1, -0.2, 2.0], [0.0, 0.0, -1.0]]), k)
    np.testing.assert_allclose(uv[0], [345.0, 180.0])
    assert np.all(np.isnan(uv[1]))


# ------------------------------------------------------------------------------ real intrinsics
REAL_K = CameraIntrinsics(fx=910.0, fy=955.0, cx=655.0, cy=338.0)  # fx != fy, off-centre
IMAGE_WH = (1280, 720)
TRUE_T = np.array([0.13, -0.06, 0.62])


def crop_pixels(points_cam: np.ndarray, affine: np.ndarray, flipped: bool) -> np.ndarray:
    """N x 3 camera-frame points -> N x 2 pixels of the crop the pipeline would feed the network."""
    uv = camera.project_points(points_cam, REAL_K)
    if flipped:  # the crop is taken from the mirrored image: column x -> W - 1 - x
        uv = np.stack([IMAGE_WH[0] - 1 - uv[:, 0], uv[:, 1]], axis=-1)
    return uv @ affine[:, :2].T + affine[:, 2]


def simulated_network_camera(affine: np.ndarray, flipped: bool) -> np.ndarray:
    """The crop camera an ideal network predicts: weak perspective at the model origin.

    Its crop pixels are 128 + 128 s (X + t) (f / t_z = 128 s), so s comes from the local scale
    d(crop px)/d(metre) at the origin (geometric mean of both axes, the crop camera being
    isotropic) and t from where the origin lands. Measured through the real projection and the
    real crop affine (central differences).
    """
    step = 1e-6
    origin = crop_pixels(TRUE_T[None], affine, flipped)[0]
    dx = crop_pixels(TRUE_T[None] + [[step, 0, 0], [-step, 0, 0]], affine, flipped)
    dy = crop_pixels(TRUE_T[None] + [[0, step, 0], [0, -step, 0]], affine, flipped)
    scale_x = abs(dx[0, 0] - dx[1, 0]) / (2 * step) / HALF_CROP
    scale_y = abs(dy[0, 1] - dy[1, 1]) / (2 * step) / HALF_CROP
    s = np.sqrt(scale_x * scale_y)
    return np.array(
        [[s, (origin[0] - HALF_CROP) / (HALF_CROP * s), (origin[1] - HALF_CROP) / (HALF_CROP * s)]]
    )


@pytest.mark.parametrize("side_right", [True, False])
def test_real_intrinsics_recover_the_hand(small_out, side_right: bool) -> None:
    """Known 3D joints seen by a real camera -> crop -> ideal crop camera -> back to 3D."""
    joints = small_out["out/pred_keypoints_3d"][0].astype(np.float64)  # model frame, metres
    joints_cam = joints + TRUE_T
    uv = camera.project_points(joints_cam, REAL_K)
    box = np.concatenate([uv.min(axis=0) - 5, uv.max(axis=0) + 5])
    geometry = pp.crop_geometry(box, side_right, DEFAULT_RESCALE_FACTOR)
    affine = pp.crop_affine(geometry, IMAGE_WH[0])

    cam = simulated_network_camera(affine, flipped=not side_right)
    cam = camera.unmirror_cam(cam, np.array([side_right]))
    cam_t = camera.cam_crop_to_full(cam, geometry.box_center[None], [geometry.box_size], IMAGE_WH, REAL_K)
    np.testing.assert_allclose(cam_t[0], TRUE_T, rtol=0, atol=1e-7)
    np.testing.assert_allclose(joints + cam_t[0], joints_cam, rtol=0, atol=1e-7)
    np.testing.assert_allclose(camera.project_points(joints + cam_t[0], REAL_K), uv, atol=1e-4)
    # Round trip through the inverse conversion.
    back = camera.full_to_crop_cam(cam_t, geometry.box_center[None], [geometry.box_size], REAL_K)
    np.testing.assert_allclose(back, cam, rtol=1e-9)


def test_real_intrinsics_heuristic_would_be_wrong(small_out) -> None:
    """Sanity check that the test above has teeth: the official heuristic misplaces the hand."""
    joints = small_out["out/pred_keypoints_3d"][0].astype(np.float64)
    uv = camera.project_points(joints + TRUE_T, REAL_K)
    box = np.concatenate([uv.min(axis=0) - 5, uv.max(axis=0) + 5])
    geometry = pp.crop_geometry(box, True)
    cam = simulated_network_camera(pp.crop_affine(geometry, IMAGE_WH[0]), flipped=False)
    wrong = camera.cam_crop_to_full(cam, geometry.box_center[None], [geometry.box_size], IMAGE_WH)
    assert np.abs(wrong[0] - TRUE_T).max() > 0.1


def test_equal_focals_reduce_to_official_formula() -> None:
    rng = np.random.default_rng(4)
    cam = np.column_stack([rng.uniform(0.5, 9, 6), rng.normal(0, 0.2, 6), rng.normal(0, 0.2, 6)])
    center = rng.uniform(0, 600, (6, 2))
    size = rng.uniform(50, 900, 6)
    focal, width, height = 1234.5, 640, 480
    got = camera.cam_crop_to_full(cam, center, size, (0, 0), CameraIntrinsics(focal, focal, 320.0, 240.0))
    d = size * cam[:, 0] + 1e-9
    expected = np.column_stack(
        [
            cam[:, 1] + 2 * (center[:, 0] - width / 2) / d,
            cam[:, 2] + 2 * (center[:, 1] - height / 2) / d,
            2 * focal / d,
        ]
    )
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="same number"):
        camera.cam_crop_to_full(cam, center[:2], size, (width, height))
