"""Head pose normalisation: rigid landmark fit to a frontal template, a landmark-free fallback,
nose-tip detection and the nose-centred crop sphere.

Frames and units: millimetres; the canonical frame has the nose tip at the origin, the face
looking towards +z, y up and x to the right of the image (a viewer on the +z axis sees +x on
their right). Semantic landmark names end in ``_l`` / ``_r`` for the IMAGE left / right, i.e.
``eye_outer_l`` is the subject's right outer eye corner (smaller x), as Bosphorus labels do.

Landmark names in `FaceScan.landmarks` follow the file readers (`afnetm_timm.data.formats.
landmark_name`, the single source of truth), per scheme:

* ``ibug68``: ``ibug68_NN``, NN the 1-based iBUG number (``ibug68_31`` = nose tip, 0-based 30);
  `ibug68_name` converts the usual 0-based index.
* ``bu3dfe83``: ``bu3dfe83_NN`` with NN the 1-based BU-3DFE number, two digits.
* ``bosphorus``: the Bosphorus labels, matched case-insensitively (``Nose tip``, ``nose tip``).

The BU-3DFE 83-point layout does not name individual eye or mouth corners reliably, so for it the
fit uses the centroids of the eye, eyebrow and outer-mouth groups, and each left/right pair is
assigned by its x coordinate rather than by index.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from itertools import chain

import numpy as np
from scipy.spatial import cKDTree

from .errors import ScanFormatError
from .formats import landmark_name
from .scan import FaceScan

__all__ = [
    "CANONICAL_TEMPLATE",
    "PoseResult",
    "RigidTransform",
    "bu3dfe83_name",
    "crop_mask",
    "crop_scan",
    "estimate_pose",
    "find_nose_tip",
    "ibug68_name",
    "kabsch",
    "landmark_array",
    "semantic_landmarks",
    "transform_scan",
]

#: Frontal template (mm, nose tip at the origin): the symmetrised mean face of the Surrey Face
#: Model (University of Surrey, Apache-2.0) at its iBUG landmarks. ``_l`` = image left (-x).
CANONICAL_TEMPLATE: dict[str, np.ndarray] = {
    name: np.array(xyz, dtype=np.float64)
    for name, xyz in {
        "nose_tip": (0.0, 0.0, 0.0),
        "eye_outer_l": (-46.2, 36.6, -39.4),
        "eye_outer_r": (46.2, 36.6, -39.4),
        "eye_inner_l": (-19.1, 33.6, -33.4),
        "eye_inner_r": (19.1, 33.6, -33.4),
        "eye_center_l": (-32.1, 35.7, -33.9),
        "eye_center_r": (32.1, 35.7, -33.9),
        "brow_center_l": (-36.3, 54.2, -29.5),
        "brow_center_r": (36.3, 54.2, -29.5),
        "mouth_corner_l": (-23.7, -33.7, -31.8),
        "mouth_corner_r": (23.7, -33.7, -31.8),
        "mouth_center": (0.0, -33.8, -23.5),
        "nose_bridge": (0.0, 42.7, -20.7),
    }.items()
}

# Points used for the rigid fit, in order of preference (eye corners, nose tip, mouth corners).
_FIT_POINTS = (
    "eye_outer_l",
    "eye_inner_l",
    "eye_inner_r",
    "eye_outer_r",
    "nose_tip",
    "mouth_corner_l",
    "mouth_corner_r",
)
_FIT_POINTS_CENTROIDS = ("eye_center_l", "eye_center_r", "brow_center_l", "brow_center_r", "mouth_center", "nose_tip")

_BOSPHORUS = {
    "eye_outer_l": ["outer left eye corner"],
    "eye_inner_l": ["inner left eye corner"],
    "eye_inner_r": ["inner right eye corner"],
    "eye_outer_r": ["outer right eye corner"],
    "nose_tip": ["nose tip"],
    "mouth_corner_l": ["left mouth corner"],
    "mouth_corner_r": ["right mouth corner"],
    "brow_center_l": ["outer left eyebrow", "middle left eyebrow", "inner left eyebrow"],
    "brow_center_r": ["inner right eyebrow", "middle right eyebrow", "outer right eyebrow"],
    "nose_bridge": ["nose saddle left", "nose saddle right"],
}


def ibug68_name(index0: int) -> str:
    """`FaceScan` landmark name of the iBUG-68 point with 0-based index ``index0`` (0..67)."""
    return landmark_name("ibug68", int(index0) + 1)


def bu3dfe83_name(number: int) -> str:
    """`FaceScan` landmark name of the BU-3DFE point with 1-based number ``number`` (1..83)."""
    return landmark_name("bu3dfe83", int(number))


_ibug = ibug68_name
_bu = bu3dfe83_name


_IBUG = {
    "eye_outer_l": [_ibug(36)],
    "eye_inner_l": [_ibug(39)],
    "eye_inner_r": [_ibug(42)],
    "eye_outer_r": [_ibug(45)],
    "nose_tip": [_ibug(30)],
    "mouth_corner_l": [_ibug(48)],
    "mouth_corner_r": [_ibug(54)],
    "eye_center_l": [_ibug(i) for i in range(36, 42)],
    "eye_center_r": [_ibug(i) for i in range(42, 48)],
    "brow_center_l": [_ibug(i) for i in range(17, 22)],
    "brow_center_r": [_ibug(i) for i in range(22, 27)],
    "mouth_center": [_ibug(i) for i in range(48, 60)],
    "nose_bridge": [_ibug(27)],
}

# (name of the pair member assigned to the smaller x, the other, its landmark names)
_BU3DFE_PAIRS = (
    ("eye_center_l", "eye_center_r", [_bu(i) for i in range(1, 9)], [_bu(i) for i in range(9, 17)]),
    ("brow_center_l", "brow_center_r", [_bu(i) for i in range(17, 27)], [_bu(i) for i in range(27, 37)]),
)
_BU3DFE_SINGLE = {"mouth_center": [_bu(i) for i in range(49, 61)]}


def _norm_label(name: str) -> str:
    return " ".join(name.lower().replace("_", " ").split())


def landmark_array(landmarks: Mapping[str, np.ndarray], names: list[str]) -> np.ndarray | None:
    """Mean of the named landmarks (case-insensitive for free-text labels), or None if any is missing."""
    table = {_norm_label(k): np.asarray(v, dtype=np.float64) for k, v in landmarks.items()}
    pts = []
    for n in names:
        p = table.get(_norm_label(n))
        if p is None:
            return None
        pts.append(p)
    return np.mean(pts, axis=0)


def semantic_landmarks(landmarks: Mapping[str, np.ndarray], scheme: str) -> dict[str, np.ndarray]:
    """Map a scan's raw landmarks to the template's semantic names (those that can be formed).

    Args:
        landmarks: name -> (3,) position (any frame).
        scheme: 'ibug68', 'bu3dfe83', 'bosphorus' or 'custom' (names already semantic).
    """
    out: dict[str, np.ndarray] = {}
    if scheme == "custom":
        for k, v in landmarks.items():
            if k in CANONICAL_TEMPLATE:
                out[k] = np.asarray(v, dtype=np.float64)
        return out
    if scheme == "bu3dfe83":
        for left, right, a_names, b_names in _BU3DFE_PAIRS:
            a, b = landmark_array(landmarks, a_names), landmark_array(landmarks, b_names)
            if a is not None and b is not None:
                out[left], out[right] = (a, b) if a[0] <= b[0] else (b, a)
        for key, names in _BU3DFE_SINGLE.items():
            p = landmark_array(landmarks, names)
            if p is not None:
                out[key] = p
        return out
    table = {"ibug68": _IBUG, "bosphorus": _BOSPHORUS}.get(scheme)
    if table is None:
        raise ValueError(f"unknown landmark scheme {scheme!r}; expected ibug68, bu3dfe83, bosphorus or custom")
    for key, names in table.items():
        p = landmark_array(landmarks, names)
        if p is not None:
            out[key] = p
    return out


# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RigidTransform:
    """``p' = rotation @ p + translation`` (rotation (3, 3) proper, translation (3,) mm)."""

    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    translation: np.ndarray = field(default_factory=lambda: np.zeros(3))

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Transform (..., 3) points."""
        return np.asarray(points, dtype=np.float64) @ self.rotation.T + self.translation

    def then(self, other: RigidTransform) -> RigidTransform:
        """The transform that applies ``self`` first and ``other`` second."""
        return RigidTransform(other.rotation @ self.rotation, other.rotation @ self.translation + other.translation)

    def inverse(self) -> RigidTransform:
        return RigidTransform(self.rotation.T, -self.rotation.T @ self.translation)

    @property
    def angle_deg(self) -> float:
        """Rotation angle in degrees."""
        c = np.clip((np.trace(self.rotation) - 1.0) / 2.0, -1.0, 1.0)
        return float(np.degrees(np.arccos(c)))


def kabsch(source: np.ndarray, target: np.ndarray, weights: np.ndarray | None = None) -> RigidTransform:
    """Least-squares rigid transform (no scale, no reflection) mapping ``source`` onto ``target``.

    Args:
        source, target: (K, 3) corresponding points, K >= 3 and not collinear.
        weights: optional (K,) non-negative weights.
    """
    p = np.asarray(source, dtype=np.float64)
    q = np.asarray(target, dtype=np.float64)
    if p.shape != q.shape or p.ndim != 2 or p.shape[1] != 3 or p.shape[0] < 3:
        raise ValueError(f"kabsch needs two (K, 3) arrays with K >= 3, got {p.shape} and {q.shape}")
    w = np.ones(len(p)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    pc, qc = w @ p, w @ q
    h = (p - pc).T @ ((q - qc) * w[:, None])
    u, s, vt = np.linalg.svd(h)
    if s[1] < 1e-9 * max(s[0], 1e-300):
        raise ValueError("kabsch: the points are (nearly) collinear; the rotation is undetermined")
    d = np.sign(np.linalg.det(vt.T @ u.T)) or 1.0
    rot = vt.T @ np.diag([1.0, 1.0, d]) @ u.T
    return RigidTransform(rot, qc - rot @ pc)


# --------------------------------------------------------------------------------------------
def find_nose_tip(
    points: np.ndarray,
    guess: np.ndarray | None = None,
    radius: float = 15.0,
    smoothing_radius: float = 4.0,
) -> np.ndarray:
    """Nose tip of a frontal face (canonical orientation): the highest point near ``guess``.

    ``z`` is first replaced by the median z of the points within ``smoothing_radius`` mm (x-y
    distance), so that a lone spike cannot win. Without a guess, the search is limited to the
    central part of the face (x-y distance to the centroid below 35 % of the face extent).

    Returns:
        (3,) position of the chosen point (original, not smoothed, z).
    """
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 3 or len(pts) == 0:
        raise ValueError(f"points must be a non-empty (N, 3) array, got {pts.shape}")
    xy = pts[:, :2]
    x, y = pts[:, 0], pts[:, 1]
    if guess is None:
        cx, cy = np.median(x), np.median(y)
        extent = max(float(x.max() - x.min()), float(y.max() - y.min()))
        limit = 0.35 * extent
    else:
        cx, cy = np.asarray(guess, dtype=np.float64)[:2]
        limit = radius
    dx, dy = x - cx, y - cy
    cand = np.flatnonzero(np.sqrt(dx * dx + dy * dy) <= limit)  # (= np.linalg.norm(..., axis=1))
    if cand.size == 0:
        cand = np.arange(len(pts))
    zs = pts[:, 2]
    tree = cKDTree(xy, balanced_tree=False, compact_nodes=False)  # quick to build; few queries follow
    # Only candidates that can reach a known smoothed height L need their median: a median >= L
    # needs at least half of the neighbours at z >= L, so the others are skipped (same answer).
    top = cand[np.argpartition(-zs[cand], 7)[:8]] if cand.size > 8 else cand
    level = float(_neighbourhood_medians(tree, xy, zs, top, smoothing_radius).max())
    sel = cand
    if np.isfinite(level):
        high_tree = cKDTree(xy[zs >= level])
        wide = smoothing_radius * (1.0 + 1e-9) + 1e-12  # never undercounts the high neighbours
        sel = cand[_near_any(tree, high_tree.data, wide, len(pts))[cand]]  # keeps the order of cand (ties)
        n_all = tree.query_ball_point(xy[sel], r=smoothing_radius, return_length=True)
        n_high = high_tree.query_ball_point(xy[sel], r=wide, return_length=True)
        sel = sel[2 * n_high >= n_all]
    smooth = _neighbourhood_medians(tree, xy, zs, sel, smoothing_radius)
    return pts[sel[int(np.argmax(smooth))]].copy()


def _near_any(tree: cKDTree, centres: np.ndarray, radius: float, n: int) -> np.ndarray:
    """(n,) bool: the points of ``tree`` within ``radius`` of any of ``centres``."""
    out = np.zeros(n, dtype=bool)
    out[np.fromiter(chain.from_iterable(tree.query_ball_point(centres, r=radius)), dtype=np.int64)] = True
    return out


def _neighbourhood_medians(tree: cKDTree, xy: np.ndarray, zs: np.ndarray, idx: np.ndarray, radius: float) -> np.ndarray:
    """Median of ``zs`` over the points within ``radius`` (x-y) of each point ``idx`` (as np.median)."""
    lists = tree.query_ball_point(xy[idx], r=radius)
    counts = np.fromiter(map(len, lists), dtype=np.int64, count=len(idx))
    out = zs[idx].astype(np.float64)
    if not counts.any():
        return out
    flat = np.fromiter(chain.from_iterable(lists), dtype=np.int64, count=int(counts.sum()))
    group = np.repeat(np.arange(len(idx), dtype=np.int64), counts)
    values = zs[flat]
    values = values[np.lexsort((values, group))]  # by group (in order), then by z
    starts = np.cumsum(counts) - counts
    mid = starts + (counts - 1) // 2
    ok = counts > 0
    odd = ok & (counts % 2 == 1)
    even = ok & ~odd
    out[odd] = values[mid[odd]]
    out[even] = (values[mid[even]] + values[mid[even] + 1]) / 2
    return out


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotation taking unit vector ``a`` to unit vector ``b``."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    v = np.cross(a, b)
    c = float(a @ b)
    if np.linalg.norm(v) < 1e-12:
        if c > 0:
            return np.eye(3)
        axis = np.cross(a, [1.0, 0.0, 0.0])
        if np.linalg.norm(axis) < 1e-6:
            axis = np.cross(a, [0.0, 1.0, 0.0])
        axis /= np.linalg.norm(axis)
        return 2.0 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx * (1.0 / (1.0 + c))


def _facing_direction(points: np.ndarray, faces: np.ndarray | None) -> np.ndarray:
    """Unit viewing direction of a face surface: the mesh's vector area, else the PCA normal."""
    if faces is not None and len(faces):
        tri = points[faces]
        area_vec = 0.5 * np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).sum(axis=0)
        n = np.linalg.norm(area_vec)
        if n > 0:
            d = area_vec / n
            return d if d[2] >= 0 else -d
    centred = points - points.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    d = vt[2]
    return d if d[2] >= 0 else -d


@dataclass
class PoseResult:
    """Outcome of `estimate_pose`.

    Attributes:
        transform: scan frame -> canonical frame (nose tip at the origin).
        method: 'landmarks' (Kabsch to `CANONICAL_TEMPLATE`) or 'pca' (landmark-free).
        landmarks_used: semantic names used by the fit.
        rms_mm: weighted RMS landmark residual after the fit (NaN for 'pca').
        nose_tip: (3,) nose tip in the scan frame.
    """

    transform: RigidTransform
    method: str
    landmarks_used: list[str]
    rms_mm: float
    nose_tip: np.ndarray


def estimate_pose(
    scan: FaceScan,
    *,
    use_landmarks: bool = True,
    require_landmarks: bool = False,
    nose_radius: float = 15.0,
    pca_iterations: int = 3,
    pca_radius: float = 80.0,
    mouth_weight: float = 0.0,
) -> PoseResult:
    """Rigid transform bringing ``scan`` to the canonical frontal frame, nose tip at the origin.

    With at least three usable landmarks (not collinear), the scan's semantic landmarks (see
    `semantic_landmarks`) are fitted to `CANONICAL_TEMPLATE` with `kabsch`: eye corners, nose tip
    and mouth corners when present, else eye/brow/mouth centroids. Mouth points move a lot with
    the expression (15 mm for a smile), so they get weight ``mouth_weight`` (default 0: unused)
    whenever the other points alone fix the rotation. The nose tip is then refined
    as the highest point within ``nose_radius`` mm of the landmark (or template) nose tip.

    Without landmarks (or ``use_landmarks=False``): the face normal (mesh vector area, or the
    smallest principal axis of a point cloud) is rotated onto +z by the smallest rotation (the
    scan's up direction is kept), the nose tip is the highest central point, and the normal is
    re-estimated ``pca_iterations`` times from the points within ``pca_radius`` of the nose tip.

    Raises:
        ScanFormatError: ``require_landmarks`` and fewer than three usable landmarks.
    """
    pts = np.asarray(scan.vertices, dtype=np.float64)
    faces = np.asarray(scan.faces, dtype=np.int64) if np.asarray(scan.faces).size else None
    sem = semantic_landmarks(scan.landmarks, scan.landmark_scheme) if use_landmarks else {}
    names = [n for n in _FIT_POINTS if n in sem]
    if len(names) < 3 or not _well_spread(np.array([sem[n] for n in names])):
        names = [n for n in _FIT_POINTS_CENTROIDS if n in sem]
    if len(names) >= 3 and _well_spread(np.array([sem[n] for n in names])):
        src = np.array([sem[n] for n in names])
        dst = np.array([CANONICAL_TEMPLATE[n] for n in names])
        stable = [n for n in names if not n.startswith("mouth")]
        w_mouth = mouth_weight if _well_spread(np.array([sem[n] for n in stable]).reshape(-1, 3)) else 1.0
        weights = np.array([w_mouth if n.startswith("mouth") else 1.0 for n in names])
        fit = kabsch(src, dst, weights)
        rms = float(np.sqrt(np.average(np.sum((fit.apply(src) - dst) ** 2, axis=1), weights=weights)))
        moved = fit.apply(pts)
        guess = fit.apply(sem["nose_tip"]) if "nose_tip" in sem else np.zeros(3)
        tip = find_nose_tip(moved, guess=guess, radius=nose_radius)
        to_origin = RigidTransform(np.eye(3), -tip)
        tf = fit.then(to_origin)
        return PoseResult(tf, "landmarks", names, rms, tf.inverse().apply(np.zeros(3)))
    if require_landmarks:
        have = sorted(scan.landmarks)[:8]
        raise ScanFormatError(
            scan.source,
            f"pose normalisation needs at least 3 usable {scan.landmark_scheme!r} landmarks "
            f"(eye corners, nose tip, mouth corners); the scan has {len(scan.landmarks)} ({have})",
        )
    # Landmark-free: iterative normal estimate around the nose.
    tf = RigidTransform()
    subset = np.arange(len(pts))
    moved = pts
    for _ in range(max(1, pca_iterations)):
        sub_faces = _faces_within(faces, subset, len(pts)) if faces is not None else None
        direction = _facing_direction(moved if sub_faces is not None else moved[subset], sub_faces)
        rot = RigidTransform(_rotation_between(direction, np.array([0.0, 0.0, 1.0])), np.zeros(3))
        tf = tf.then(rot)
        moved = tf.apply(pts)
        tip = find_nose_tip(moved)
        d = moved - tip
        subset = np.flatnonzero(np.sqrt(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + d[:, 2] * d[:, 2]) <= pca_radius)
        if subset.size < 10:
            subset = np.arange(len(pts))
    # the final nose tip is the last iteration's: same transform, same points
    tf = tf.then(RigidTransform(np.eye(3), -tip))
    return PoseResult(tf, "pca", [], float("nan"), tf.inverse().apply(np.zeros(3)))


def _faces_within(faces: np.ndarray | None, subset: np.ndarray, n: int) -> np.ndarray | None:
    if faces is None:
        return None
    inside = np.zeros(n, dtype=bool)
    inside[subset] = True
    return faces[inside[faces[:, 0]] & inside[faces[:, 1]] & inside[faces[:, 2]]]


def _well_spread(points: np.ndarray) -> bool:
    """At least three points that span a plane (not collinear), in mm."""
    if len(points) < 3:
        return False
    s = np.linalg.svd(points - points.mean(axis=0), compute_uv=False)
    return bool(s[1] > 1e-3 * max(s[0], 1e-12) and s[1] > 1e-6)


# --------------------------------------------------------------------------------------------
def transform_scan(scan: FaceScan, transform: RigidTransform) -> FaceScan:
    """A copy of ``scan`` with vertices and landmarks moved by ``transform`` (textures unchanged)."""
    return replace(
        scan,
        vertices=transform.apply(scan.vertices),
        landmarks={k: transform.apply(v) for k, v in scan.landmarks.items()},
        metadata=dict(scan.metadata),
    )


def crop_mask(points: np.ndarray, center: np.ndarray | None = None, radius: float = 90.0) -> np.ndarray:
    """(N,) bool: points within ``radius`` mm (3-D distance) of ``center`` (default origin)."""
    if not radius > 0:
        raise ValueError(f"crop radius must be positive, got {radius}")
    c = np.zeros(3) if center is None else np.asarray(center, dtype=np.float64)
    return np.linalg.norm(np.asarray(points, dtype=np.float64) - c, axis=1) <= radius


def crop_scan(scan: FaceScan, center: np.ndarray | None = None, radius: float = 90.0) -> FaceScan:
    """Keep the part of ``scan`` inside the sphere (default centre: the origin, i.e. the nose tip
    of a pose-normalised scan). Faces with a corner outside are dropped; landmarks are kept."""
    from .surface import subset_scan  # local import: surface imports nothing from here

    return subset_scan(scan, crop_mask(scan.vertices, center, radius))
