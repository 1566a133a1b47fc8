"""Safe loading of MANO hand-model pickles (``MANO_RIGHT.pkl``) without chumpy.

The licensed MANO v1.2 file is a Python-2 pickle (a ``dict`` with ``str`` keys) whose ``shapedirs``
is a chumpy ``reordering.Select`` over a ``ch.Ch`` and whose ``J_regressor`` is a SciPy CSC matrix
pickled under the old module path ``scipy.sparse.csc`` (layout: the parity kit's SPEC.md §5.4).
Plain ``pickle.load`` would need chumpy installed and would run any code a tampered file names.

:func:`load_mano` reads it with the restricted unpickler of ``core/files/safe_pickle.py`` and the MANO
allowlist: only what numpy arrays and dtypes need, plus inert stand-ins for the SciPy sparse and
chumpy classes that are evaluated to numpy arrays after loading. Every other global is refused
with a ``ValueError`` that names it, so nothing outside that list is ever imported or called.

Conventions of the returned :class:`ManoModel` (those of MANO and of smplx 0.1.28):
metres; a right hand in its rest pose with the fingers pointing to -x, the thumb to +z and the
palm facing -y; MANO joint order 0 wrist, 1-3 index, 4-6 middle, 7-9 pinky, 10-12 ring,
13-15 thumb.
"""

from __future__ import annotations

import io
import os
import pickle
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import scipy.sparse as sp

from wilor_ros.core.files.safe_pickle import (
    NUMPY_GLOBALS,
    Allowlist,
    GlobalName,
    RestrictedUnpickler,
    StandIn,
    empty_bytes,
    latin1_encode,
    reconstruct_plain_object,
)
from wilor_ros.core.hand.constants import MANO_PARENTS, NUM_BETAS, NUM_FACES, NUM_MANO_JOINTS, NUM_VERTICES

# Key that our own synthetic MANO files carry (see tools/synthetic_mano.py); the real file lacks it.
SYNTHETIC_MARKER_KEY = "wilor_ros_synthetic"
NUM_POSE_BASIS = (NUM_MANO_JOINTS - 1) * 9  # 135: one 3x3 (R - I) per non-root joint
NUM_PCA_POSE = (NUM_MANO_JOINTS - 1) * 3  # 45: axis-angle of the 15 finger joints
SMPL_NUM_VERTICES = 6890  # SMPL / SMPL-H body models share this topology
# The root's parent in kintree_table row 0 is stored as uint32 -1.
KINTREE_ROOT_SENTINEL = 2**32 - 1
# Handedness: in a right MANO hand the finger bases lie on the -x side of the wrist. The fraction
# of the wrist-to-knuckles distance that must be along -x (cos of the angle to -x); a left model
# (MANO_LEFT is the x-mirror of MANO_RIGHT) gives about -0.99 here, a right one about +0.99.
RIGHT_HAND_MIN_COS = 0.5
# Keys a body model (SMPL, SMPL-H, SMPL-X) has and a MANO hand model does not.
_BODY_MODEL_KEYS = ("hands_componentsl", "hands_componentsr", "J_regressor_prior", "weights_prior")
# What smplx reads from a data_struct besides the faces ``f`` (smplx/body_models.py, SMPL and MANO
# __init__); ``J_regressor`` may be sparse or dense there (it densifies).
SMPLX_DATA_STRUCT_ARRAYS = (
    "v_template",
    "shapedirs",
    "posedirs",
    "J_regressor",
    "kintree_table",
    "weights",
    "hands_components",
    "hands_mean",
)
_REQUIRED_KEYS = (*SMPLX_DATA_STRUCT_ARRAYS, "f")  # the file's entries are what smplx reads


# ------------------------------------------------------------------ restricted unpickling
class _SparseStandIn(StandIn):
    """Inert stand-in for a pickled ``scipy.sparse`` CSC/CSR matrix: only records its state.

    Rebuilt by :meth:`evaluate` through the public constructor (which validates the index
    arrays), so the loader does not depend on SciPy's private attribute layout or module paths
    (``scipy.sparse.csc`` is removed in SciPy 2).
    """

    state_type = dict
    what = "sparse matrix"
    sparse_format = ""

    def evaluate(self) -> np.ndarray:
        """Dense float64 array (rows x cols)."""
        state = self.state
        if state is None:
            raise ValueError("a pickled sparse matrix carries no state")
        shape = state.get("_shape", state.get("shape"))
        try:
            parts = (np.asarray(state["data"]), np.asarray(state["indices"]), np.asarray(state["indptr"]))
        except KeyError as exc:
            raise ValueError(f"a pickled sparse matrix lacks its {exc.args[0]!r} array") from exc
        builder = sp.csc_matrix if self.sparse_format == "csc" else sp.csr_matrix
        return np.asarray(builder(parts, shape=tuple(int(s) for s in shape)).toarray(), dtype=np.float64)


class _CscStandIn(_SparseStandIn):
    sparse_format = "csc"


class _CsrStandIn(_SparseStandIn):
    sparse_format = "csr"


class _ChumpyStandIn(StandIn):
    """Inert stand-in for a pickled chumpy object: records the state dict that ``BUILD`` sets."""

    state_type = dict
    what = "chumpy object"

    def _get(self, key: str) -> Any:
        state = self.state or {}
        if key not in state:
            raise ValueError(f"a pickled chumpy {type(self).__name__[:-7]} lacks its {key!r} attribute")
        return state[key]

    def evaluate(self) -> np.ndarray:
        raise NotImplementedError


class _ChStandIn(_ChumpyStandIn):
    """``chumpy.ch.Ch``: a leaf variable whose value is its ``x`` array."""

    def evaluate(self) -> np.ndarray:
        return np.asarray(_evaluate(self._get("x")))


class _SelectStandIn(_ChumpyStandIn):
    """``chumpy.reordering.Select``: ``a.ravel()[idxs]``, reshaped to ``preferred_shape`` if set."""

    def evaluate(self) -> np.ndarray:
        source = np.asarray(_evaluate(self._get("a")))
        idxs = np.asarray(_evaluate(self._get("idxs"))).astype(np.int64).ravel()
        out = source.ravel()[idxs]
        shape = (self.state or {}).get("preferred_shape")
        return out.reshape(tuple(int(s) for s in shape)) if shape is not None else out


def _mano_refusal(module: str, name: str) -> str:
    if module.startswith("chumpy"):
        return (
            f"MANO pickle uses chumpy class {module}.{name}, which this loader cannot evaluate "
            "(supported: chumpy.ch.Ch, chumpy.reordering.Select); re-save the model as plain numpy"
        )
    return (
        f"refused to load global {module}.{name} from the MANO pickle: only numpy arrays, SciPy "
        "sparse matrices and chumpy Ch/Select are allowed (the file is not a MANO model or was "
        "tampered with)"
    )


# Python 3 names only: the unpickler maps the file's Python 2 names (__builtin__, copy_reg) first.
_MANO_GLOBALS: dict[GlobalName, Any] = {
    **NUMPY_GLOBALS,
    ("_codecs", "encode"): latin1_encode,
    ("builtins", "set"): set,
    ("builtins", "bytes"): empty_bytes,
    ("builtins", "object"): object,
    ("copyreg", "_reconstructor"): reconstruct_plain_object,
    ("chumpy.ch", "Ch"): _ChStandIn,
    ("chumpy.reordering", "Select"): _SelectStandIn,
}
for _module in ("scipy.sparse", "scipy.sparse.csc", "scipy.sparse._csc"):
    _MANO_GLOBALS[(_module, "csc_matrix")] = _CscStandIn
for _module in ("scipy.sparse", "scipy.sparse.csr", "scipy.sparse._csr"):
    _MANO_GLOBALS[(_module, "csr_matrix")] = _CsrStandIn


class _ManoUnpickler(RestrictedUnpickler):
    """Numpy arrays, SciPy sparse matrices and chumpy Ch/Select only; anything else is refused."""

    allowlist = Allowlist(globals=_MANO_GLOBALS, refusal=_mano_refusal)


def _evaluate(value: Any) -> Any:
    """Replace stand-ins by numpy arrays (recursively through chumpy references)."""
    if isinstance(value, (_ChumpyStandIn, _SparseStandIn)):
        return value.evaluate()
    return value


def _unpickle_mano_dict(path: str) -> dict[str, Any]:
    """Read ``path`` with the restricted unpickler; ValueError for anything that is not a dict."""
    if not os.path.isfile(path):
        raise ValueError(
            f"MANO model file {path!r} does not exist; download MANO_RIGHT.pkl from "
            "https://mano.is.tue.mpg.de (or make a synthetic one with `wilor-ros make-synthetic-models`)"
        )
    with open(path, "rb") as handle:
        raw = handle.read()
    try:
        data = _ManoUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from exc
    except (pickle.UnpicklingError, EOFError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise ValueError(
            f"{path} is not a readable MANO pickle ({type(exc).__name__}: {exc}); the file may be "
            "truncated or corrupt, download MANO_RIGHT.pkl again"
        ) from exc
    except Exception as exc:  # any other failure of a malformed stream: report it uniformly
        raise ValueError(f"{path} is not a readable MANO pickle ({type(exc).__name__}: {exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} holds a pickled {type(data).__name__}, expected the MANO dict of arrays")
    try:
        return {str(key): _evaluate(value) for key, value in data.items()}
    except (ValueError, TypeError, IndexError) as exc:
        raise ValueError(f"{path}: cannot evaluate a stored array ({exc})") from exc


# ------------------------------------------------------------------ model
@dataclass
class ManoModel:
    """Arrays of a MANO right-hand model (float64 unless noted; V = 778 vertices, K >= 10 betas).

    ``kintree_table`` is kept as stored (root parent 4294967295); :attr:`parents` gives -1.
    """

    v_template: np.ndarray  # (V, 3) rest-pose vertices, metres
    shapedirs: np.ndarray  # (V, 3, K) shape blend shapes
    posedirs: np.ndarray  # (V, 3, 135) pose-corrective blend shapes
    J_regressor: np.ndarray  # (16, V) dense joint regressor
    weights: np.ndarray  # (V, 16) skinning weights
    kintree_table: np.ndarray  # (2, 16) int64
    faces: np.ndarray  # (1538, 3) int64, counter-clockwise seen from outside
    hands_components: np.ndarray  # (45, 45) PCA basis of the finger pose
    hands_mean: np.ndarray  # (45,) mean finger pose (axis-angle)
    is_synthetic: bool = False
    source_path: str = ""

    @property
    def parents(self) -> np.ndarray:
        """(16,) int64 parent of each joint, -1 for the wrist."""
        parents = self.kintree_table[0].astype(np.int64)
        parents[0] = -1
        return parents

    def rest_joints(self) -> np.ndarray:
        """(16, 3) rest-pose joints regressed from the template."""
        return self.J_regressor @ self.v_template

    def smplx_data_struct(self) -> SimpleNamespace:
        """An object to pass as ``smplx.MANO(..., data_struct=...)`` (smplx 0.1.28): the arrays of
        ``SMPLX_DATA_STRUCT_ARRAYS`` under their own names, and ``faces`` as ``f``."""
        arrays = {name: getattr(self, name) for name in SMPLX_DATA_STRUCT_ARRAYS}
        return SimpleNamespace(f=self.faces, **arrays)


def _array(data: dict[str, Any], key: str, shape: tuple[int | None, ...], path: str) -> np.ndarray:
    """``data[key]`` as a numeric array of the given shape (None = any size)."""
    try:
        value = np.asarray(data[key])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: entry {key!r} is not an array ({exc})") from exc
    if value.dtype.kind not in "fiub":
        raise ValueError(f"{path}: entry {key!r} has dtype {value.dtype}, expected numbers")
    if value.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(value.shape, shape)
    ):
        wanted = tuple("*" if s is None else s for s in shape)
        raise ValueError(f"{path}: entry {key!r} has shape {value.shape}, expected {wanted}")
    return value


def _check_right_hand(v_template: np.ndarray, joints: np.ndarray, path: str) -> None:
    """Refuse a left-hand model.

    Rule: MANO_LEFT is MANO_RIGHT mirrored in x, so in a right model the finger bases (joints
    1, 4, 7, 10: index, middle, pinky, ring) lie on the -x side of the wrist (joint 0), and in a
    left model on the +x side. The cosine between wrist->mean finger base and -x must exceed
    RIGHT_HAND_MIN_COS. A file name that says LEFT (and not RIGHT) is refused as well.
    """
    name = os.path.basename(path).upper()
    if "LEFT" in name and "RIGHT" not in name:
        raise ValueError(
            f"{path} is named as a left-hand model; wilor_ros needs MANO_RIGHT.pkl (left hands are "
            "predicted as mirrored right hands)"
        )
    finger_bases = joints[[1, 4, 7, 10]].mean(axis=0)
    direction = finger_bases - joints[0]
    length = float(np.linalg.norm(direction))
    if not np.isfinite(length) or length <= 0.0:
        raise ValueError(f"{path}: the regressed wrist and finger joints coincide; the model is degenerate")
    cos_minus_x = -float(direction[0]) / length
    if cos_minus_x < RIGHT_HAND_MIN_COS:
        side = "a left-hand (x-mirrored)" if cos_minus_x < -RIGHT_HAND_MIN_COS else "not a MANO-oriented"
        raise ValueError(
            f"{path} looks like {side} model: its fingers point along {np.round(direction / length, 3)} "
            "from the wrist, a right MANO hand's point along -x; use MANO_RIGHT.pkl"
        )


def load_mano(path: str | os.PathLike[str]) -> ManoModel:
    """Load and validate a MANO right-hand pickle (real or synthetic) without chumpy.

    Raises ValueError (naming the file and the problem) for a missing, truncated or non-pickle
    file, a pickle naming any global outside numpy/SciPy-sparse/chumpy Ch/Select, a non-dict
    pickle, a body model (SMPL/SMPL-H/SMPL-X), wrong shapes, or a left-hand model.
    """
    path = os.fspath(path)
    data = _unpickle_mano_dict(path)
    if any(key in data for key in _BODY_MODEL_KEYS) or (
        "v_template" in data and np.shape(data["v_template"])[:1] == (SMPL_NUM_VERTICES,)
    ):
        raise ValueError(
            f"{path} is a body model (SMPL/SMPL-H/SMPL-X: {np.shape(data.get('v_template'))} template "
            "vertices), not the MANO hand; use MANO_RIGHT.pkl from the MANO download"
        )
    missing = [key for key in _REQUIRED_KEYS if key not in data]
    if missing:
        raise ValueError(f"{path} lacks MANO entries {missing}; it is not a MANO model file")

    v_template = _array(data, "v_template", (NUM_VERTICES, 3), path).astype(np.float64)
    shapedirs = _array(data, "shapedirs", (NUM_VERTICES, 3, None), path).astype(np.float64)
    if shapedirs.shape[2] < NUM_BETAS:
        raise ValueError(f"{path}: shapedirs has {shapedirs.shape[2]} shape components, need >= {NUM_BETAS}")
    posedirs = _array(data, "posedirs", (NUM_VERTICES, 3, NUM_POSE_BASIS), path).astype(np.float64)
    j_regressor = _array(data, "J_regressor", (NUM_MANO_JOINTS, NUM_VERTICES), path).astype(np.float64)
    weights = _array(data, "weights", (NUM_VERTICES, NUM_MANO_JOINTS), path).astype(np.float64)
    kintree = _array(data, "kintree_table", (2, NUM_MANO_JOINTS), path).astype(np.int64)
    faces = _array(data, "f", (NUM_FACES, 3), path).astype(np.int64)
    components = _array(data, "hands_components", (None, NUM_PCA_POSE), path).astype(np.float64)
    hands_mean = _array(data, "hands_mean", (NUM_PCA_POSE,), path).astype(np.float64)

    for key, value in (
        ("v_template", v_template),
        ("shapedirs", shapedirs),
        ("posedirs", posedirs),
        ("J_regressor", j_regressor),
        ("weights", weights),
    ):
        if not np.all(np.isfinite(value)):
            raise ValueError(f"{path}: entry {key!r} contains NaN or infinite values")
    if faces.min() < 0 or faces.max() >= NUM_VERTICES:
        raise ValueError(f"{path}: face indices outside [0, {NUM_VERTICES})")
    parents = kintree[0].copy()
    parents[0] = -1
    if tuple(int(p) for p in parents) != MANO_PARENTS or int(kintree[0, 0]) not in (
        -1,
        KINTREE_ROOT_SENTINEL,
    ):
        raise ValueError(
            f"{path}: kintree_table parents {kintree[0].tolist()} differ from MANO's {MANO_PARENTS}"
        )

    model = ManoModel(
        v_template=v_template,
        shapedirs=shapedirs,
        posedirs=posedirs,
        J_regressor=j_regressor,
        weights=weights,
        kintree_table=kintree,
        faces=faces,
        hands_components=components,
        hands_mean=hands_mean,
        is_synthetic=bool(data.get(SYNTHETIC_MARKER_KEY, False)),
        source_path=path,
    )
    _check_right_hand(v_template, model.rest_joints(), path)
    return model
