"""RViz visualization_msgs/MarkerArray for reconstructed hands.

Per hand (namespace ``<ns_prefix>_<track id>``, so hands never overwrite each other):
    id 0  TRIANGLE_LIST  the MANO mesh (3 points per triangle; LEFT hands use the reversed
                         winding, 2nd and 3rd index swapped, because their mesh is mirrored)
    id 1  LINE_LIST      skeleton bones (joint -> parent, ``constants.OPENPOSE_PARENTS``)
    id 2  SPHERE_LIST    the 21 joints
    id 3  TEXT_VIEW_FACING  "<side> #<id> <score>" above the wrist
Left and right hands have distinct colours. ``HandMarkerBuilder`` remembers which hand ids it
published last time and adds DELETE markers for hands that disappeared, so RViz never keeps a
stale hand.

Speed: geometry_msgs/Point objects are slow to create (about 0.7 us each with plain attribute
setting, twice that with keyword arguments). The mesh needs 3 x 1538 triangle corners, but only
778 distinct positions, so one Point is made per vertex and the triangle list holds references
to them (serialisation only reads the values). Measured on the 2-core development machine
(Kilted wheels, best of 20): about 0.7 ms per hand for all four markers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from wilor_ros.core.hand.constants import NUM_JOINTS, NUM_VERTICES, OPENPOSE_PARENTS
from wilor_ros.core.types import HandEstimate, Side

MESH_ID, SKELETON_ID, JOINTS_ID, LABEL_ID = 0, 1, 2, 3
MARKER_IDS = (MESH_ID, SKELETON_ID, JOINTS_ID, LABEL_ID)
NANOSECONDS_PER_SECOND = 1_000_000_000
# Skeleton bones as (child, parent) pairs: every joint but the wrist.
BONES = tuple((j, p) for j, p in enumerate(OPENPOSE_PARENTS) if p >= 0)
# Reversed winding of a mirrored (LEFT) mesh: swap the 2nd and 3rd index (MeshTopology.msg).
LEFT_WINDING = (0, 2, 1)


@dataclass(frozen=True)
class MarkerStyle:
    """Sizes in metres, colours RGB in [0, 1]."""

    left_rgb: tuple[float, float, float] = (0.20, 0.55, 1.00)  # blue
    right_rgb: tuple[float, float, float] = (1.00, 0.45, 0.10)  # orange
    mesh_alpha: float = 0.8
    line_width: float = 0.004
    joint_diameter: float = 0.008
    text_height: float = 0.02
    # label distance above the wrist; "up" is -y in the camera optical frame (y points down)
    label_offset: float = 0.03
    # marker lifetime in seconds, 0 = until replaced or deleted (DELETE markers handle that)
    lifetime_s: float = 0.0


def points_from_array(xyz: np.ndarray) -> list[Point]:
    """N x 3 array -> list of N geometry_msgs/Point (float64 values).

    Plain attribute assignment on a default-constructed Point is the fastest public way
    (keyword arguments go through ``kwargs.get`` per field and are about twice as slow).
    """
    out: list[Point] = []
    append = out.append
    for x, y, z in np.asarray(xyz, dtype=np.float64).reshape(-1, 3).tolist():
        p = Point()
        p.x = x
        p.y = y
        p.z = z
        append(p)
    return out


def _color(rgb: tuple[float, float, float], alpha: float) -> ColorRGBA:
    return ColorRGBA(r=float(rgb[0]), g=float(rgb[1]), b=float(rgb[2]), a=float(alpha))


class HandMarkerBuilder:
    """Builds a MarkerArray per image and tracks the published hand ids (stateful).

    ``faces`` are the MANO triangles (F x 3, RIGHT-hand winding, as in MeshTopology).
    Hands are keyed by ``HandEstimate.track_id``, which must be unique within one image.
    """

    def __init__(self, faces: np.ndarray, style: MarkerStyle | None = None, ns_prefix: str = "hand") -> None:
        faces_arr = np.asarray(faces)
        if faces_arr.ndim != 2 or faces_arr.shape[1] != 3 or faces_arr.shape[0] == 0:
            raise ValueError(f"faces must be a non-empty F x 3 index array, got shape {faces_arr.shape}")
        if faces_arr.min() < 0 or faces_arr.max() >= NUM_VERTICES:
            raise ValueError(f"face indices must lie in [0, {NUM_VERTICES})")
        # Flat corner index lists, computed once: right-hand and reversed (left-hand) winding.
        self._corners = {
            Side.RIGHT: faces_arr.astype(np.int64).reshape(-1).tolist(),
            Side.LEFT: faces_arr[:, LEFT_WINDING].astype(np.int64).reshape(-1).tolist(),
        }
        self.style = style if style is not None else MarkerStyle()
        self.ns_prefix = ns_prefix
        self._published: set[int] = set()
        seconds = max(0.0, float(self.style.lifetime_s))
        whole = int(seconds)
        self._lifetime = Duration(sec=whole, nanosec=round((seconds - whole) * NANOSECONDS_PER_SECOND))

    @property
    def published_ids(self) -> frozenset[int]:
        """Hand ids whose markers are currently shown (published and not deleted)."""
        return frozenset(self._published)

    def namespace(self, hand_id: int) -> str:
        return f"{self.ns_prefix}_{int(hand_id)}"

    # ------------------------------------------------------------------ building
    def _base(self, header: Header, hand_id: int, marker_id: int, marker_type: int) -> Marker:
        m = Marker()
        m.header = header
        m.ns = self.namespace(hand_id)
        m.id = marker_id
        m.type = marker_type
        m.action = Marker.ADD
        m.pose.orientation.w = 1.0
        m.lifetime = self._lifetime
        return m

    def hand_markers(self, est: HandEstimate, header: Header) -> list[Marker]:
        """The four markers of one hand (mesh, skeleton, joints, label)."""
        side = Side.parse(est.side)
        hand_id = int(est.track_id)
        vertices = np.asarray(est.vertices)
        joints = np.asarray(est.keypoints_3d)
        if vertices.shape != (NUM_VERTICES, 3) or joints.shape != (NUM_JOINTS, 3):
            raise ValueError(
                f"need vertices {NUM_VERTICES} x 3 and keypoints_3d {NUM_JOINTS} x 3, got "
                f"{vertices.shape} and {joints.shape}"
            )
        style = self.style
        rgb = style.left_rgb if side == Side.LEFT else style.right_rgb

        mesh = self._base(header, hand_id, MESH_ID, Marker.TRIANGLE_LIST)
        mesh.scale.x = mesh.scale.y = mesh.scale.z = 1.0
        mesh.color = _color(rgb, style.mesh_alpha)
        vertex_points = points_from_array(vertices)
        # References to the 778 shared Points, one per triangle corner (see module docstring).
        mesh.points = [vertex_points[i] for i in self._corners[side]]

        joint_points = points_from_array(joints)
        skeleton = self._base(header, hand_id, SKELETON_ID, Marker.LINE_LIST)
        skeleton.scale.x = style.line_width
        skeleton.color = _color(rgb, 1.0)
        skeleton.points = [
            pt for child, parent in BONES for pt in (joint_points[parent], joint_points[child])
        ]

        spheres = self._base(header, hand_id, JOINTS_ID, Marker.SPHERE_LIST)
        spheres.scale.x = spheres.scale.y = spheres.scale.z = style.joint_diameter
        spheres.color = _color(tuple(0.5 * (1.0 + c) for c in rgb), 1.0)  # lighter shade
        spheres.points = joint_points

        label = self._base(header, hand_id, LABEL_ID, Marker.TEXT_VIEW_FACING)
        wrist = joints[0].astype(np.float64)
        label.pose.position.x = float(wrist[0])
        label.pose.position.y = float(wrist[1]) - style.label_offset
        label.pose.position.z = float(wrist[2])
        label.scale.z = style.text_height
        label.color = _color((1.0, 1.0, 1.0), 1.0)
        label.text = f"{side.label} #{hand_id} {float(est.score):.2f}"
        return [mesh, skeleton, spheres, label]

    def deletions_for(self, hand_ids: Iterable[int], header: Header) -> list[Marker]:
        """DELETE markers for every marker of the given hand ids (does not change the state)."""
        out: list[Marker] = []
        for hand_id in sorted(int(h) for h in hand_ids):
            for marker_id in MARKER_IDS:
                m = Marker()
                m.header = header
                m.ns = self.namespace(hand_id)
                m.id = marker_id
                m.action = Marker.DELETE
                out.append(m)
        return out

    def build(self, estimates: Sequence[HandEstimate], header: Header) -> MarkerArray:
        """Markers for this image's hands plus DELETEs for hands published before but gone now.

        Raises ValueError when two hands share a track id (their markers would overwrite
        each other).
        """
        ids = [int(est.track_id) for est in estimates]
        if len(set(ids)) != len(ids):
            raise ValueError(f"hands in one image need distinct track ids for markers, got {ids}")
        markers: list[Marker] = []
        for est in estimates:
            markers.extend(self.hand_markers(est, header))
        current = set(ids)
        markers.extend(self.deletions_for(self._published - current, header))
        self._published = current
        return MarkerArray(markers=markers)

    def clear(self, header: Header) -> MarkerArray:
        """DELETE markers for every published hand (e.g. on shutdown); forgets them."""
        markers = self.deletions_for(self._published, header)
        self._published = set()
        return MarkerArray(markers=markers)
