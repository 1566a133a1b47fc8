"""A synthetic MANO-format right-hand model, generated from scratch (no licensed data).

The licensed ``MANO_RIGHT.pkl`` cannot ship with wilor_ros, yet tests, demos and tiny training runs
need a hand model with the real file's layout. :func:`make_synthetic_mano` writes a pickle with the
same keys, container types, dtypes and shapes as MANO v1.2 (parity kit SPEC.md §5.4: plain numpy
arrays and a SciPy CSC ``J_regressor``; ``shapedirs`` plain, not chumpy), plus the marker key
``wilor_ros_synthetic`` so :func:`wilor_ros.core.hand.mano.load_mano` can report that it is synthetic.

Geometry (MANO conventions, metres): a right hand in the rest pose, wrist near x = 0.1, fingers
pointing to -x, thumb towards +z, palm facing -y, about 0.185 m from wrist to middle fingertip.
The surface is one oriented triangle mesh with exactly 778 vertices and 1538 triangles: a palm
tube open at the wrist (a 16-vertex boundary loop) that branches into five tubes with rounded
tips. Branches come from splitting a palm ring with chords (dorsal-to-palmar edges), and rings of
different vertex counts are joined by "zipper" strips, so the surface stays a topological disc:
for a disc, F = 2V - 2 - B, i.e. 1538 = 2·778 - 2 - 16. The fingertip vertices are put at
MANO's ids (thumb 744, index 320, middle 443, ring 554, pinky 671) by a final permutation.
"""

from __future__ import annotations

import itertools
import os
import pickle
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.optimize import nnls

from wilor_ros.core.hand.constants import (
    FINGERTIP_VERTEX_IDS,
    MANO_PARENTS,
    NUM_BETAS,
    NUM_FACES,
    NUM_MANO_JOINTS,
    NUM_VERTICES,
)
from wilor_ros.core.hand.mano import KINTREE_ROOT_SENTINEL, NUM_PCA_POSE, NUM_POSE_BASIS, SYNTHETIC_MARKER_KEY

PICKLE_PROTOCOL = 2  # as the kit's synthetic files (the real file is a Python-2 pickle)
WRIST_RING_VERTICES = 16  # boundary loop at the wrist; fixes F = 2V - 2 - 16 = 1538
NUM_HANDS_COEFFS = 1554  # rows of hands_coeffs in the real file
FINGER_RING_VERTICES = 12
KNUCKLE_RING_VERTICES = 40
THUMB_SPLIT_RING_VERTICES = 24
SUPERELLIPSE_EXPONENT = 3.0  # palm cross-section: between an ellipse (2) and a rectangle (inf)
DOME_RINGS = 3  # rings of the hemispherical fingertip cap before the tip vertex
SKIN_SIGMA = 0.009  # metres: Gaussian width of the skinning falloff from a bone
SKIN_MIN_WEIGHT = 1e-3  # weights below this are dropped (sparser, like the real file)
REGRESSOR_NEIGHBOURS = 24  # vertices each joint is regressed from
POSEDIR_SCALE = 0.004  # metres of corrective displacement per unit of (R - I)
SHAPE_SCALE = 0.05  # relative size change per unit beta for the scale-like components

# Finger names in the order of MANO's joint chains (joint ids 1-3, 4-6, 7-9, 10-12, 13-15).
FINGERS = ("index", "middle", "pinky", "ring", "thumb")
FINGER_JOINT_IDS = {"index": (1, 2, 3), "middle": (4, 5, 6), "pinky": (7, 8, 9), "ring": (10, 11, 12),
                    "thumb": (13, 14, 15)}  # fmt: skip
TIP_VERTEX_ID = dict(zip(("thumb", "index", "middle", "ring", "pinky"), FINGERTIP_VERTEX_IDS))

WRIST_JOINT = np.array([0.095, 0.004, 0.004])
# Rest-pose joints of each finger (3 joints then the tip point), metres; modelled on the
# proportions of an adult hand: middle finger about 0.09 m from knuckle to tip.
FINGER_POINTS = {
    "index": np.array([[0.000, 0.004, 0.025], [-0.036, 0.004, 0.029], [-0.059, 0.003, 0.031],
                       [-0.081, 0.002, 0.033]]),
    "middle": np.array([[-0.003, 0.005, 0.004], [-0.042, 0.005, 0.004], [-0.067, 0.004, 0.004],
                        [-0.091, 0.003, 0.004]]),
    "ring": np.array([[0.004, 0.004, -0.015], [-0.032, 0.004, -0.019], [-0.056, 0.003, -0.022],
                      [-0.078, 0.002, -0.025]]),
    "pinky": np.array([[0.015, 0.002, -0.031], [-0.012, 0.002, -0.037], [-0.030, 0.002, -0.041],
                       [-0.048, 0.001, -0.045]]),
    "thumb": np.array([[0.070, -0.008, 0.030], [0.046, -0.013, 0.049], [0.027, -0.015, 0.063],
                       [0.007, -0.016, 0.077]]),
}  # fmt: skip
# Finger radius at its base and at its tip (metres).
FINGER_RADII = {"index": (0.0092, 0.0076), "middle": (0.0096, 0.0079), "ring": (0.0090, 0.0074),
                "pinky": (0.0080, 0.0066), "thumb": (0.0115, 0.0090)}  # fmt: skip
# Number of rings along each finger between its base loop and the fingertip dome.
FINGER_RINGS = {"index": 7, "middle": 8, "ring": 7, "pinky": 5, "thumb": 7}
# z of the chords that split the knuckle ring between index|middle, middle|ring, ring|pinky.
KNUCKLE_CHORD_Z = (0.0145, -0.0055, -0.0230)
THUMB_CHORD_Z = 0.014  # chord on the thumb-split ring; the thumb branch takes z above it


@dataclass
class _MeshBuilder:
    """Accumulates vertices (with a part label) and outward-wound triangles."""

    vertices: list[np.ndarray] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    faces: list[tuple[int, int, int]] = field(default_factory=list)

    def add_points(self, points: np.ndarray, part: str) -> list[int]:
        start = len(self.vertices)
        self.vertices.extend(np.asarray(points, dtype=np.float64))
        self.parts.extend([part] * len(points))
        return list(range(start, start + len(points)))

    def loft(self, loop_a: list[int], loop_b: list[int], ref: np.ndarray) -> None:
        """Join loop A to loop B (distal) with a zipper strip of len(A) + len(B) triangles.

        Both loops must run counter-clockwise about the A->B axis (right-hand rule) and be
        star-shaped about their centroids in the plane normal to that axis; vertices are matched
        by their angle about their own centroid, measured from ``ref`` (a direction both share).
        """
        pts = np.asarray(self.vertices)
        a, b = pts[loop_a], pts[loop_b]
        axis = b.mean(axis=0) - a.mean(axis=0)
        axis /= np.linalg.norm(axis)
        e2 = ref - axis * float(ref @ axis)
        e2 /= np.linalg.norm(e2)
        e1 = np.cross(e2, axis)  # (e1, e2, axis) right-handed

        def ordered(loop: list[int], p: np.ndarray) -> tuple[list[int], np.ndarray]:
            q = p - p.mean(axis=0)
            ang = np.mod(np.arctan2(q @ e2, q @ e1), 2.0 * np.pi)
            start = int(np.argmin(ang))
            order = [loop[(start + k) % len(loop)] for k in range(len(loop))]
            ang = np.roll(ang, -start)
            assert np.all(np.diff(ang) > 0.0), "loft loop is not star-shaped about its centroid"
            return order, np.append(ang, 2.0 * np.pi + ang[0])

        la, aa = ordered(loop_a, a)
        lb, ab = ordered(loop_b, b)
        i = j = 0
        na, nb = len(la), len(lb)
        while i < na or j < nb:
            advance_a = j >= nb or (i < na and aa[i + 1] <= ab[j + 1])
            if advance_a:
                self.faces.append((la[i], la[(i + 1) % na], lb[j % nb]))
                i += 1
            else:
                self.faces.append((la[i % na], lb[(j + 1) % nb], lb[j]))
                j += 1

    def fan(self, loop: list[int], apex: int) -> None:
        """Close a loop (counter-clockwise about the direction towards ``apex``) with a cone."""
        for k in range(len(loop)):
            self.faces.append((loop[k], loop[(k + 1) % len(loop)], apex))


def _palm_ring(x: float, zc: float, half_w: float, half_h: float, n: int, tilt: float = 0.0) -> np.ndarray:
    """(n, 3) rounded-rectangle ring in a plane across the palm, counter-clockwise about -x.

    Angle 0 is the +z (thumb) side, pi/2 dorsal (+y), pi the pinky side, 3pi/2 palmar (-y).
    ``tilt`` moves points along x in proportion to their z (an oblique knuckle line).
    """
    theta = 2.0 * np.pi * np.arange(n) / n
    c, s = np.cos(theta), np.sin(theta)
    power = 2.0 / SUPERELLIPSE_EXPONENT
    z = zc + half_w * np.sign(c) * np.abs(c) ** power
    y = half_h * np.sign(s) * np.abs(s) ** power
    return np.stack([x + tilt * (z - zc), y, z], axis=1)


def _finger_ring(center: np.ndarray, direction: np.ndarray, radius: float, n: int) -> np.ndarray:
    """(n, 3) slightly flattened circle about ``direction``, counter-clockwise, angle 0 lateral."""
    t = direction / np.linalg.norm(direction)
    up = np.array([0.0, 1.0, 0.0])  # dorsal
    e2 = up - t * float(up @ t)
    e2 /= np.linalg.norm(e2)
    e1 = np.cross(e2, t)
    theta = 2.0 * np.pi * np.arange(n) / n
    # fingers are a little wider than thick
    return center + radius * (1.05 * np.cos(theta)[:, None] * e1 + 0.9 * np.sin(theta)[:, None] * e2)


def _polyline_point(points: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    """Point and unit tangent at arc length ``s`` along a polyline (P x 3)."""
    seg = np.diff(points, axis=0)
    lengths = np.linalg.norm(seg, axis=1)
    cum = np.concatenate([[0.0], np.cumsum(lengths)])
    k = int(np.clip(np.searchsorted(cum, s, side="right") - 1, 0, len(seg) - 1))
    u = (s - cum[k]) / lengths[k]
    return points[k] + u * seg[k], seg[k] / lengths[k]


def _split_loop(ring: list[int], chord_pairs: list[tuple[int, int]]) -> list[list[int]]:
    """Split a closed ring by chords (i, n - i) into sub-loops, each keeping the ring's direction.

    ``chord_pairs`` are (dorsal index, palmar index) with dorsal indices increasing; returns the
    sub-loops from the +z side to the -z side.
    """
    n = len(ring)
    cuts = [d for d, _ in chord_pairs]
    loops = [[ring[k % n] for k in range(n - cuts[0], n + cuts[0] + 1)]]
    for lo, hi in itertools.pairwise(cuts):
        loops.append([ring[k] for k in range(lo, hi + 1)] + [ring[k] for k in range(n - hi, n - lo + 1)])
    loops.append([ring[k] for k in range(cuts[-1], n - cuts[-1] + 1)])
    return loops


def _nearest_chord(ring_points: np.ndarray, z: float) -> tuple[int, int]:
    """The mirror pair (i, n - i), 0 < i < n/2, whose z is closest to ``z``."""
    n = len(ring_points)
    candidates = np.arange(1, n // 2)
    i = int(candidates[np.argmin(np.abs(ring_points[candidates, 2] - z))])
    return i, n - i


def _build_fingers(mesh: _MeshBuilder, base_loops: dict[str, list[int]]) -> dict[str, int]:
    """Tubes from each base loop along the finger's joints, closed by a dome; returns tip ids."""
    tips = {}
    for name, base in base_loops.items():
        pts = FINGER_POINTS[name]
        r0, r1 = FINGER_RADII[name]
        base_center = np.asarray(mesh.vertices)[base].mean(axis=0)
        # The tube starts a little distal of the base loop, follows the joints, then the dome.
        path = np.vstack([base_center, pts])
        total = float(np.sum(np.linalg.norm(np.diff(path, axis=0), axis=1)))
        start = float(np.linalg.norm(pts[0] - base_center)) * 0.5 + 0.004
        dome_start = total - r1
        previous = base
        for k in range(FINGER_RINGS[name]):
            s = start + (dome_start - start) * k / (FINGER_RINGS[name] - 1)
            center, tangent = _polyline_point(path, s)
            radius = r0 + (r1 - r0) * s / total
            ring = mesh.add_points(_finger_ring(center, tangent, radius, FINGER_RING_VERTICES), name)
            mesh.loft(previous, ring, ref=np.array([0.0, 1.0, 0.0]))
            previous = ring
        for k in range(1, DOME_RINGS + 1):
            phi = 0.5 * np.pi * k / (DOME_RINGS + 1)
            center, tangent = _polyline_point(path, dome_start + r1 * np.sin(phi))
            ring = mesh.add_points(
                _finger_ring(center, tangent, r1 * np.cos(phi), FINGER_RING_VERTICES), name
            )
            mesh.loft(previous, ring, ref=np.array([0.0, 1.0, 0.0]))
            previous = ring
        tips[name] = mesh.add_points(pts[-1][None], name)[0]
        mesh.fan(previous, tips[name])
    return tips


def _build_mesh() -> tuple[np.ndarray, np.ndarray, list[str], dict[str, int]]:
    """Vertices (V x 3), faces (F x 3), per-vertex part names and tip vertex ids (build order)."""
    mesh = _MeshBuilder()
    # Slack: the vertex count of one mid-palm ring is set so the total is exactly 778.
    finger_vertices = sum((FINGER_RINGS[f] + DOME_RINGS) * FINGER_RING_VERTICES + 1 for f in FINGERS)
    fixed_palm = WRIST_RING_VERTICES * 2 + THUMB_SPLIT_RING_VERTICES + 28 + 32 + KNUCKLE_RING_VERTICES
    slack_ring = NUM_VERTICES - finger_vertices - fixed_palm
    assert 20 <= slack_ring <= 48, f"ring counts leave {slack_ring} vertices for the slack ring"

    # palm rings from the wrist (x = 0.11) to the thumb split (x = 0.082)
    wrist = mesh.add_points(_palm_ring(0.110, 0.004, 0.026, 0.014, WRIST_RING_VERTICES), "palm")
    ring1 = mesh.add_points(_palm_ring(WRIST_JOINT[0], 0.004, 0.028, 0.016, WRIST_RING_VERTICES), "palm")
    mesh.loft(wrist, ring1, ref=np.array([0.0, 1.0, 0.0]))
    split_pts = _palm_ring(0.080, 0.002, 0.032, 0.017, THUMB_SPLIT_RING_VERTICES)
    split = mesh.add_points(split_pts, "palm")
    mesh.loft(ring1, split, ref=np.array([0.0, 1.0, 0.0]))
    d, p = _nearest_chord(split_pts, THUMB_CHORD_Z)
    thumb_loop, palm_loop = _split_loop(split, [(d, p)])

    # palm continues towards the knuckles, widening on the index side over the thenar region
    previous = palm_loop
    for x, zc, half_w, half_h, n, tilt in (
        (0.064, -0.002, 0.031, 0.017, 28, 0.0),
        (0.048, -0.002, 0.035, 0.017, slack_ring, -0.08),
        (0.032, -0.003, 0.038, 0.016, 32, -0.18),
    ):
        ring = mesh.add_points(_palm_ring(x, zc, half_w, half_h, n, tilt), "palm")
        mesh.loft(previous, ring, ref=np.array([0.0, 1.0, 0.0]))
        previous = ring
    # Knuckle ring: tilted so the pinky side (-z) lies proximal (+x) like the MCP joints.
    # It lies about 8 mm proximal of the MCP joints so that the finger tubes start at them.
    knuckle_pts = _palm_ring(0.016, -0.003, 0.039, 0.014, KNUCKLE_RING_VERTICES, tilt=-0.27)
    knuckle = mesh.add_points(knuckle_pts, "palm")
    mesh.loft(previous, knuckle, ref=np.array([0.0, 1.0, 0.0]))
    chords = [_nearest_chord(knuckle_pts, z) for z in KNUCKLE_CHORD_Z]
    index_loop, middle_loop, ring_loop, pinky_loop = _split_loop(knuckle, chords)

    tips = _build_fingers(
        mesh,
        {
            "index": index_loop,
            "middle": middle_loop,
            "ring": ring_loop,
            "pinky": pinky_loop,
            "thumb": thumb_loop,
        },
    )
    vertices = np.asarray(mesh.vertices)
    faces = np.asarray(mesh.faces, dtype=np.int64)
    return vertices, faces, mesh.parts, tips


def _rest_joints() -> np.ndarray:
    """(16, 3) designed rest joints in MANO order."""
    joints = np.zeros((NUM_MANO_JOINTS, 3))
    joints[0] = WRIST_JOINT
    for name, ids in FINGER_JOINT_IDS.items():
        joints[list(ids)] = FINGER_POINTS[name][:3]
    return joints


def _bone_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) distance of each point to the segment a-b."""
    ab = b - a
    u = np.clip((points - a) @ ab / float(ab @ ab), 0.0, 1.0)
    return np.linalg.norm(points - (a + u[:, None] * ab), axis=1)


def _skinning_weights(vertices: np.ndarray, parts: list[str], joints: np.ndarray) -> np.ndarray:
    """(V, 16) smooth weights, rows summing to 1.

    A joint drives the bone from it to its child (the tip for a finger's last joint). Each vertex
    may follow only the wrist and the joints of its own part (palm: the wrist and the five finger
    bases), so bending one finger never drags its neighbour.
    """
    bones = []
    for j in range(NUM_MANO_JOINTS):
        children = [c for c, parent in enumerate(MANO_PARENTS) if parent == j]
        if j == 0:
            end = joints[0] + np.array([-0.04, 0.0, 0.0])  # the palm "bone" runs towards the knuckles
        elif children:
            end = joints[children[0]]
        else:
            end = next(FINGER_POINTS[f][3] for f, ids in FINGER_JOINT_IDS.items() if ids[2] == j)
        bones.append((joints[j], end))
    distances = np.stack([_bone_distance(vertices, a, b) for a, b in bones], axis=1)
    allowed = np.zeros_like(distances, dtype=bool)
    parts_arr = np.asarray(parts)
    for name, ids in FINGER_JOINT_IDS.items():
        mask = parts_arr == name
        allowed[np.ix_(mask, (0, *ids))] = True
    palm = parts_arr == "palm"
    allowed[np.ix_(palm, (0, 1, 4, 7, 10, 13))] = True
    weights = np.exp(-0.5 * (distances / SKIN_SIGMA) ** 2) * allowed
    # keep every vertex attached to something even far from all bones
    weights[np.arange(len(weights)), np.argmin(np.where(allowed, distances, np.inf), axis=1)] += 1e-6
    weights /= weights.sum(axis=1, keepdims=True)
    weights[weights < SKIN_MIN_WEIGHT] = 0.0
    return weights / weights.sum(axis=1, keepdims=True)


def _joint_regressor(vertices: np.ndarray, joints: np.ndarray) -> sp.csc_matrix:
    """(16, V) CSC: each joint as a convex combination of its nearest vertices (rows sum to 1).

    Non-negative least squares with the sum-to-one row appended (heavily weighted) finds the
    weights; a joint inside the surrounding rings is reproduced almost exactly.
    """
    rows, cols, vals = [], [], []
    for j, joint in enumerate(joints):
        near = np.argsort(np.linalg.norm(vertices - joint, axis=1))[:REGRESSOR_NEIGHBOURS]
        system = np.vstack([vertices[near].T, 100.0 * np.ones((1, len(near)))])
        target = np.concatenate([joint, [100.0]])
        w, _ = nnls(system, target)
        w /= w.sum()
        keep = w > 1e-6
        rows.extend([j] * int(keep.sum()))
        cols.extend(near[keep].tolist())
        vals.extend((w[keep] / w[keep].sum()).tolist())
    return sp.csc_matrix((vals, (rows, cols)), shape=(NUM_MANO_JOINTS, len(vertices)))


def _shapedirs(
    vertices: np.ndarray, parts: list[str], joints: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """(V, 3, 10): 0 overall scale about the wrist, 1 finger length, 2 palm width, 3 thickness,
    4 thumb length, 5-9 smooth low-frequency random deformations (all a few millimetres)."""
    dirs = np.zeros((len(vertices), 3, NUM_BETAS))
    dirs[:, :, 0] = SHAPE_SCALE * (vertices - joints[0])
    parts_arr = np.asarray(parts)
    for name, ids in FINGER_JOINT_IDS.items():
        mask = parts_arr == name
        base = joints[ids[0]]
        component = 4 if name == "thumb" else 1
        dirs[mask, :, component] = SHAPE_SCALE * (vertices[mask] - base)
    dirs[:, 2, 2] = SHAPE_SCALE * (vertices[:, 2] - joints[0, 2])
    dirs[:, 1, 3] = SHAPE_SCALE * (vertices[:, 1] - joints[0, 1])
    for k in range(5, NUM_BETAS):
        freq = rng.normal(scale=20.0, size=(3, 3))  # about one wave per hand length
        phase = rng.uniform(0.0, 2.0 * np.pi, size=3)
        dirs[:, :, k] = 0.002 * np.sin(vertices @ freq + phase)
    return dirs


def _posedirs(
    vertices: np.ndarray, weights: np.ndarray, joints: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """(V, 3, 135): small radial bulges near each joint, one random gain per (R - I) element."""
    dirs = np.zeros((len(vertices), 3, NUM_POSE_BASIS))
    for j in range(1, NUM_MANO_JOINTS):
        radial = vertices - joints[j]
        radial /= np.linalg.norm(radial, axis=1, keepdims=True) + 1e-9
        # strongest where the joint and its parent share the vertex: the skin around the crease
        falloff = 4.0 * weights[:, j] * weights[:, MANO_PARENTS[j]]
        gains = rng.uniform(-1.0, 1.0, size=9)
        for m in range(9):
            dirs[:, :, (j - 1) * 9 + m] = POSEDIR_SCALE * gains[m] * falloff[:, None] * radial
    return dirs


def _permutation(num_vertices: int, tips: dict[str, int]) -> np.ndarray:
    """``order[new_id] = build_id``: build order, with each tip moved to its MANO vertex id."""
    wanted = {TIP_VERTEX_ID[name]: build_id for name, build_id in tips.items()}
    others = iter([v for v in range(num_vertices) if v not in set(tips.values())])
    return np.array([wanted[new] if new in wanted else next(others) for new in range(num_vertices)])


def synthetic_mano_dict(seed: int = 0) -> dict[str, object]:
    """The synthetic model as the dict that :func:`make_synthetic_mano` pickles (SPEC §5.4 layout)."""
    rng = np.random.default_rng(seed)
    vertices, faces, parts, tips = _build_mesh()
    if len(vertices) != NUM_VERTICES or len(faces) != NUM_FACES:
        raise RuntimeError(f"synthetic mesh has {len(vertices)} vertices / {len(faces)} faces (bug)")
    order = _permutation(len(vertices), tips)
    new_id = np.empty_like(order)
    new_id[order] = np.arange(len(order))
    vertices = vertices[order]
    parts = [parts[k] for k in order]
    faces = new_id[faces]

    joints = _rest_joints()
    weights = _skinning_weights(vertices, parts, joints)
    regressor = _joint_regressor(vertices, joints)
    components, _ = np.linalg.qr(rng.normal(size=(NUM_PCA_POSE, NUM_PCA_POSE)))
    # Mean pose: every finger joint slightly flexed about +z (towards the palm, -y), like MANO's.
    hands_mean = np.zeros((NUM_MANO_JOINTS - 1, 3))
    hands_mean[:, 2] = rng.uniform(0.05, 0.25, size=NUM_MANO_JOINTS - 1)
    hands_mean[:, :2] = rng.normal(scale=0.03, size=(NUM_MANO_JOINTS - 1, 2))
    coeff_scale = 1.0 / (1.0 + np.arange(NUM_PCA_POSE))
    kintree = np.array([list(MANO_PARENTS), list(range(NUM_MANO_JOINTS))], dtype=np.int64)
    kintree[0, 0] = KINTREE_ROOT_SENTINEL
    return {
        "hands_components": np.ascontiguousarray(components.T),
        "f": faces.astype(np.uint32),
        "J_regressor": regressor,
        "kintree_table": kintree,
        "J": np.asarray(regressor @ vertices),
        "bs_style": "lbs",
        "hands_coeffs": rng.normal(size=(NUM_HANDS_COEFFS, NUM_PCA_POSE)) * coeff_scale,
        "weights": weights,
        "posedirs": _posedirs(vertices, weights, joints, rng),
        "hands_mean": hands_mean.reshape(-1),
        "v_template": vertices,
        "shapedirs": _shapedirs(vertices, parts, joints, rng),
        "bs_type": "lrotmin",
        SYNTHETIC_MARKER_KEY: True,
    }


def make_synthetic_mano(path: str | os.PathLike[str], seed: int = 0) -> str:
    """Write the synthetic right-hand MANO pickle to ``path`` (folders are created); returns the path.

    Name it ``MANO_RIGHT.pkl`` if smplx should load it by folder (smplx takes the handedness from
    that name). ``seed`` varies only the blend shapes, pose PCA and mean pose, not the mesh.
    """
    path = os.fspath(path)
    folder = os.path.dirname(path)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(synthetic_mano_dict(seed), handle, protocol=PICKLE_PROTOCOL)
    return path
