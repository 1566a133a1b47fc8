"""MANO loading without chumpy (restricted unpickler) and the synthetic MANO generator."""

from __future__ import annotations

import os
import pickle
import shutil
import sys
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from wilor_ros.core.hand.constants import FINGERTIP_VERTEX_IDS, MANO_PARENTS, NUM_FACES, NUM_VERTICES
from wilor_ros.core.hand.mano import SYNTHETIC_MARKER_KEY, ManoModel, load_mano
from wilor_ros.tools.synthetic_mano import make_synthetic_mano, synthetic_mano_dict

torch = pytest.importorskip("torch")
smplx = pytest.importorskip("smplx")
torch.set_num_threads(2)

# keys and (container, dtype, shape) of the real MANO_RIGHT.pkl v1.2 (kit SPEC.md §5.4)
REAL_LAYOUT = {
    "hands_components": (np.ndarray, np.float64, (45, 45)),
    "f": (np.ndarray, np.uint32, (1538, 3)),
    "J_regressor": (sp.csc_matrix, np.float64, (16, 778)),
    "kintree_table": (np.ndarray, np.int64, (2, 16)),
    "J": (np.ndarray, np.float64, (16, 3)),
    "hands_coeffs": (np.ndarray, np.float64, (1554, 45)),
    "weights": (np.ndarray, np.float64, (778, 16)),
    "posedirs": (np.ndarray, np.float64, (778, 3, 135)),
    "hands_mean": (np.ndarray, np.float64, (45,)),
    "v_template": (np.ndarray, np.float64, (778, 3)),
    "shapedirs": (np.ndarray, np.float64, (778, 3, 10)),
}
THUMB, INDEX, MIDDLE, RING, PINKY = FINGERTIP_VERTEX_IDS
# MANO joint ids of each finger's base (MCP, thumb CMC) and last joint, by tip vertex
FINGER_BASE_AND_LAST = {THUMB: (13, 15), INDEX: (1, 3), MIDDLE: (4, 6), RING: (10, 12), PINKY: (7, 9)}


@pytest.fixture(scope="module")
def synthetic_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(make_synthetic_mano(tmp_path_factory.mktemp("mano") / "MANO_RIGHT.pkl"))


@pytest.fixture()
def no_chumpy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import chumpy`` fail even where chumpy happens to be installed."""
    for name in ("chumpy", "chumpy.ch", "chumpy.reordering"):
        monkeypatch.setitem(sys.modules, name, None)


def _smplx_mano(model: ManoModel):
    return smplx.MANO(
        model_path="", data_struct=model.smplx_data_struct(), use_pca=False, flat_hand_mean=True
    ).eval()


def _pose(layer, hand_pose: np.ndarray, betas: np.ndarray | None = None, orient=None) -> np.ndarray:
    kwargs = {"hand_pose": torch.tensor(hand_pose, dtype=torch.float32).reshape(1, 45)}
    kwargs["betas"] = torch.zeros(1, 10) if betas is None else torch.tensor(betas, dtype=torch.float32)[None]
    kwargs["global_orient"] = (
        torch.zeros(1, 3) if orient is None else torch.tensor(orient, dtype=torch.float32)[None]
    )
    with torch.no_grad():
        return layer(**kwargs).vertices[0].double().numpy()


def _write(path: Path, obj: object) -> Path:
    with open(path, "wb") as handle:
        pickle.dump(obj, handle, protocol=2)
    return path


# ------------------------------------------------------------------ kit files (real layout)
def test_kit_plain_and_chumpy_files_load_identically_without_chumpy(reference_dir: Path, no_chumpy) -> None:
    plain = load_mano(reference_dir / "mano_synthetic_right.pkl")
    chumpy_file = reference_dir / "mano_synthetic_right_chumpy.pkl"
    # what plain pickle does with the chumpy file (SciPy also warns about scipy.sparse.csc)
    with pytest.raises(ModuleNotFoundError), open(chumpy_file, "rb") as handle, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pickle.load(handle, encoding="latin1")
    chumpy = load_mano(chumpy_file)
    for name in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "faces"):
        assert np.array_equal(getattr(plain, name), getattr(chumpy, name)), name
    assert plain.shapedirs.shape == (NUM_VERTICES, 3, 10)
    assert plain.J_regressor.shape == (16, NUM_VERTICES) and isinstance(plain.J_regressor, np.ndarray)
    assert plain.faces.dtype == np.int64 and plain.faces.shape == (NUM_FACES, 3)
    assert plain.parents.tolist() == list(MANO_PARENTS)
    assert not plain.is_synthetic and not chumpy.is_synthetic  # the kit files carry no marker


def test_kit_files_through_smplx_match_smplx_own_loading(
    reference_dir: Path, tmp_path: Path, no_chumpy
) -> None:
    shutil.copy(reference_dir / "mano_synthetic_right.pkl", tmp_path / "MANO_RIGHT.pkl")
    reference = smplx.MANO(str(tmp_path), use_pca=False, flat_hand_mean=True).eval()  # smplx's pickle.load
    rng = np.random.default_rng(3)
    pose, betas, orient = rng.normal(scale=0.4, size=45), rng.normal(size=10), rng.normal(scale=0.5, size=3)
    expected = _pose(reference, pose, betas, orient)
    for name in ("mano_synthetic_right.pkl", "mano_synthetic_right_chumpy.pkl"):
        got = _pose(_smplx_mano(load_mano(reference_dir / name)), pose, betas, orient)
        np.testing.assert_allclose(got, expected, atol=1e-7, err_msg=name)


def test_synthetic_file_has_the_real_layout(synthetic_path: Path) -> None:
    with open(synthetic_path, "rb") as handle:
        data = pickle.load(handle, encoding="latin1")  # our own file: plain numpy/scipy only
    assert set(data) == {*REAL_LAYOUT, "bs_style", "bs_type", SYNTHETIC_MARKER_KEY}
    for key, (container, dtype, shape) in REAL_LAYOUT.items():
        assert isinstance(data[key], container), key
        assert data[key].dtype == dtype and data[key].shape == shape, key
    assert data["bs_style"] == "lbs" and data["bs_type"] == "lrotmin"
    assert data["kintree_table"][0, 0] == 4294967295
    assert data["kintree_table"][0, 1:].tolist() == list(MANO_PARENTS[1:])


def test_synthetic_layout_equals_kit_layout(synthetic_path: Path, reference_dir: Path) -> None:
    with open(synthetic_path, "rb") as handle:
        ours = pickle.load(handle)
    with open(reference_dir / "mano_synthetic_right.pkl", "rb") as handle:
        kit = pickle.load(handle, encoding="latin1")
    assert set(ours) - {SYNTHETIC_MARKER_KEY} == set(kit)
    for key, value in kit.items():
        assert type(ours[key]) is type(value), key
        if hasattr(value, "shape"):
            assert (ours[key].shape, ours[key].dtype) == (value.shape, value.dtype), key


# ------------------------------------------------------------------ synthetic model
def test_synthetic_model_loads_and_is_marked(synthetic_path: Path) -> None:
    model = load_mano(synthetic_path)
    assert model.is_synthetic
    assert model.v_template.shape == (NUM_VERTICES, 3) and model.faces.shape == (NUM_FACES, 3)
    np.testing.assert_allclose(model.weights.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(model.J_regressor.sum(axis=1), 1.0, atol=1e-12)
    assert model.weights.min() >= 0.0 and model.J_regressor.min() >= 0.0
    np.testing.assert_allclose(model.hands_components @ model.hands_components.T, np.eye(45), atol=1e-10)
    # every regressor row uses only vertices near its joint (within 3 cm)
    joints = model.rest_joints()
    for j in range(16):
        used = np.flatnonzero(model.J_regressor[j])
        assert np.linalg.norm(model.v_template[used] - joints[j], axis=1).max() < 0.03


def test_synthetic_mesh_is_a_disc_with_a_wrist_boundary(synthetic_path: Path) -> None:
    model = load_mano(synthetic_path)
    directed = Counter()
    for a, b, c in model.faces.tolist():
        directed.update([(a, b), (b, c), (c, a)])
    assert max(directed.values()) == 1, "inconsistent winding: a directed edge is used twice"
    undirected = Counter(tuple(sorted(e)) for e in directed.elements())
    boundary = [e for e, n in undirected.items() if n == 1]
    assert set(undirected.values()) <= {1, 2}
    # the boundary edges form one closed loop, all at the wrist end of the hand (largest x)
    neighbours: dict[int, list[int]] = {}
    for a, b in boundary:
        neighbours.setdefault(a, []).append(b)
        neighbours.setdefault(b, []).append(a)
    assert all(len(n) == 2 for n in neighbours.values())
    loop, previous = [boundary[0][0]], None
    while True:
        nxt = next(n for n in neighbours[loop[-1]] if n != previous)
        if nxt == loop[0]:
            break
        previous = loop[-1]
        loop.append(nxt)
    assert len(loop) == len(boundary) == len(neighbours)
    assert model.v_template[loop, 0].min() > model.rest_joints()[0, 0]  # beyond the wrist joint
    # Euler characteristic of a disc: V - E + F = 1
    assert NUM_VERTICES - len(undirected) + NUM_FACES == 1
    # outward winding: the signed volume (closing the wrist hole by its centroid) is positive
    verts = model.v_template
    centre = verts[loop].mean(axis=0)
    tri = verts[model.faces]
    volume = (
        np.einsum("ij,ij->i", tri[:, 0] - centre, np.cross(tri[:, 1] - centre, tri[:, 2] - centre)).sum() / 6
    )
    assert volume > 0.0


def test_synthetic_fingertips_lie_at_the_finger_ends(synthetic_path: Path) -> None:
    model = load_mano(synthetic_path)
    verts, joints = model.v_template, model.rest_joints()
    assert np.argmin(verts[:, 0]) == MIDDLE  # the middle fingertip reaches furthest along -x
    hand_length = np.linalg.norm(verts[MIDDLE] - joints[0])
    assert 0.16 < hand_length < 0.21
    for tip, (base, last) in FINGER_BASE_AND_LAST.items():
        direction = verts[tip] - joints[base]
        direction /= np.linalg.norm(direction)
        rel = verts - joints[base]
        along = rel @ direction
        off_axis = np.linalg.norm(rel - along[:, None] * direction, axis=1)
        finger = off_axis < 0.012  # the tube around this finger's axis
        assert along[tip] == along[finger].max(), tip
        assert along[tip] > (joints[last] - joints[base]) @ direction + 0.01


def test_synthetic_hand_poses_plausibly_through_smplx(synthetic_path: Path) -> None:
    model = load_mano(synthetic_path)
    layer = _smplx_mano(model)
    rest = _pose(layer, np.zeros(45))
    np.testing.assert_allclose(rest, model.v_template, atol=1e-6)
    pose = np.zeros((15, 3))
    pose[0:3, 2] = 0.8  # flex all three index joints about +z: the finger curls towards the palm (-y)
    bent = _pose(layer, pose)
    moved = bent[INDEX] - rest[INDEX]
    assert np.linalg.norm(moved) > 0.03
    assert moved[1] < -0.03  # towards the palm side
    assert moved[0] > 0.02  # and back towards the wrist
    for tip in (THUMB, MIDDLE, RING, PINKY):
        np.testing.assert_allclose(bent[tip], rest[tip], atol=1e-9)
    # a positive first shape coefficient makes the hand larger
    bigger = _pose(layer, np.zeros(45), betas=np.eye(10)[0])
    assert np.linalg.norm(bigger[MIDDLE] - bigger[THUMB]) > np.linalg.norm(rest[MIDDLE] - rest[THUMB])


def test_seed_changes_blend_shapes_not_the_mesh() -> None:
    a, b = synthetic_mano_dict(0), synthetic_mano_dict(1)
    assert np.array_equal(a["v_template"], b["v_template"]) and np.array_equal(a["f"], b["f"])
    assert not np.array_equal(a["shapedirs"], b["shapedirs"])


# ------------------------------------------------------------------ refused files
def _plain_dict() -> dict:
    data = synthetic_mano_dict(0)
    del data[SYNTHETIC_MARKER_KEY]
    return data


def test_left_hand_model_is_refused(tmp_path: Path) -> None:
    data = _plain_dict()
    mirror = np.array([-1.0, 1.0, 1.0])
    data["v_template"] = data["v_template"] * mirror  # MANO_LEFT is MANO_RIGHT mirrored in x
    data["J"] = data["J"] * mirror
    data["f"] = data["f"][:, [0, 2, 1]]
    with pytest.raises(ValueError, match="left-hand"):
        load_mano(_write(tmp_path / "hand.pkl", data))
    # the file name alone is a hint too (and smplx itself would treat it as left)
    with pytest.raises(ValueError, match="left-hand"):
        load_mano(_write(tmp_path / "MANO_LEFT.pkl", _plain_dict()))


def test_body_model_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    body = {
        "v_template": rng.normal(size=(6890, 3)),
        "f": rng.integers(0, 6890, size=(13776, 3)).astype(np.uint32),
        "weights": np.full((6890, 24), 1 / 24),
        "J_regressor": sp.csc_matrix(np.full((24, 6890), 1 / 6890)),
        "kintree_table": np.zeros((2, 24), np.int64),
        "shapedirs": np.zeros((6890, 3, 10)),
        "posedirs": np.zeros((6890, 3, 207)),
        "J_regressor_prior": sp.csc_matrix((24, 6890)),
        "bs_style": "lbs",
    }
    with pytest.raises(ValueError, match="body model"):
        load_mano(_write(tmp_path / "basicModel_neutral.pkl", body))


def test_truncated_random_and_non_dict_files_are_refused(synthetic_path: Path, tmp_path: Path) -> None:
    raw = synthetic_path.read_bytes()
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"truncated or corrupt|not a readable"):
        load_mano(truncated)
    noise = tmp_path / "noise.pkl"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, size=4096, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError):
        load_mano(noise)
    with pytest.raises(ValueError, match="holds a pickled list"):
        load_mano(_write(tmp_path / "list.pkl", [np.zeros(3)]))
    with pytest.raises(ValueError, match="lacks MANO entries"):
        load_mano(_write(tmp_path / "empty.pkl", {"v_template": np.zeros((778, 3))}))
    with pytest.raises(ValueError, match="does not exist"):
        load_mano(tmp_path / "missing.pkl")


class _Exploit:
    """Unpickling this would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_without_running_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    data = _plain_dict()
    data["hands_mean"] = _Exploit(marker)
    path = _write(tmp_path / "MANO_RIGHT.pkl", data)
    with pytest.raises(ValueError, match=r"refused to load global (posix|os|nt)\.system"):
        load_mano(path)
    assert not marker.exists()


def test_unknown_chumpy_class_is_named(tmp_path: Path) -> None:
    path = tmp_path / "MANO_RIGHT.pkl"
    path.write_bytes(b"\x80\x02cchumpy.ch_ops\nadd\nq\x00.")  # a bare global, protocol 2
    with pytest.raises(ValueError, match=r"chumpy class chumpy\.ch_ops\.add"):
        load_mano(path)


def test_graph_safe_skinning_equals_smplx_lbs(synthetic_path: Path) -> None:
    """ManoLayer.skin (Python-int kinematic chain, capturable in a CUDA graph) = smplx's own lbs."""
    from wilor_ros.core.hand.geometry import axis_angle_to_rotmat
    from wilor_ros.core.models.mano_layer import ManoLayer

    layer = ManoLayer(load_mano(synthetic_path).smplx_data_struct())
    gen = torch.Generator().manual_seed(0)
    rotmats = axis_angle_to_rotmat(torch.randn(8, 16, 3, generator=gen) * 0.6)
    betas = torch.randn(8, 10, generator=gen)
    vertices, joints = layer.skin(rotmats, betas)
    reference = smplx.MANOLayer.forward(
        layer, betas=betas, global_orient=rotmats[:, :1], hand_pose=rotmats[:, 1:]
    )
    torch.testing.assert_close(vertices, reference.vertices, rtol=0, atol=1e-7)
    torch.testing.assert_close(joints, reference.joints, rtol=0, atol=1e-7)
    assert tuple(MANO_PARENTS) == tuple(int(p) if p >= 0 else -1 for p in [-1, *layer.parents[1:].tolist()])
