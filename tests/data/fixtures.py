"""Test scans: realistic faces from the Surrey Face Model (SFM) and tiny synthetic meshes.

Importable from any test (``from tests.data.fixtures import make_sfm_scan``; the repository root
must be on ``sys.path``, which ``python -m pytest`` and ``tests/data/conftest.py`` ensure).
The SFM lives outside the project, in ``../shared/data/sfm/sfm_3448.npz``; `require_sfm` skips the
calling test with a clear reason when it is absent.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from afnetm_timm.data import FaceScan
from afnetm_timm.data.formats import interpolate_corners, landmark_name, rasterize_triangles
from afnetm_timm.data.synthetic import _inside_polygon, _polyline_distance, _vertex_normals

SFM_PATH = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sfm" / "sfm_3448.npz"
SFM_EXPRESSIONS: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")

SKIN = np.array([224.0, 172.0, 140.0])
BROW = np.array([70.0, 45.0, 30.0])
LIPS = np.array([170.0, 60.0, 70.0])
SCLERA = np.array([235.0, 235.0, 228.0])
IRIS = np.array([60.0, 40.0, 30.0])


# ----------------------------------------------------------------------------------------------- SFM
def sfm_available() -> bool:
    """True when the SFM file is present."""
    return SFM_PATH.is_file()


@lru_cache(maxsize=1)
def load_sfm() -> dict[str, np.ndarray]:
    """The SFM arrays (see its README): mean, basis, eigenvalues, triangles, texcoords, expressions, ibug68_*."""
    with np.load(SFM_PATH) as data:
        return {k: data[k] for k in data.files}


def require_sfm() -> dict[str, np.ndarray]:
    """`load_sfm`, or skip the calling test when the model is not in ../shared."""
    if not sfm_available():
        import pytest

        pytest.skip(f"Surrey Face Model not found at {SFM_PATH} (expected in ../shared/data/sfm beside the project)")
    return load_sfm()


def sfm_vertices(
    coefficients: np.ndarray | None = None,
    expression: str | None = None,
    weight: float = 1.0,
    *,
    seed: int | None = None,
    n_coefficients: int = 10,
) -> np.ndarray:
    """(3448, 3) float64 mm: mean + sum_i a_i sqrt(eig_i) basis_i + weight * expression offset.

    `coefficients` (a_i, standard normal units) default to zeros, or N(0, 1) for the first
    `n_coefficients` when `seed` is given; `expression` is one of `SFM_EXPRESSIONS` or None/'neutral'.
    """
    sfm = require_sfm()
    v = sfm["mean"].astype(np.float64).copy()
    if coefficients is None and seed is not None:
        coefficients = np.random.default_rng(seed).standard_normal(n_coefficients)
    if coefficients is not None:
        a = np.asarray(coefficients, dtype=np.float64)
        k = len(a)
        v += np.einsum("k,kvc->vc", a * np.sqrt(sfm["eigenvalues"][:k].astype(np.float64)),
                       sfm["basis"][:k].astype(np.float64))
    if expression not in (None, "neutral"):
        names = [str(n) for n in sfm["expression_names"]]
        v += weight * sfm["expressions"][names.index(expression)].astype(np.float64)
    return v


def sfm_ibug68(vertices: np.ndarray) -> dict[str, np.ndarray]:
    """The 50 iBUG-68 landmarks the SFM defines, named ``ibug68_NN`` (1-based), at their mesh vertices."""
    sfm = require_sfm()
    return {landmark_name("ibug68", int(k)): vertices[int(i)].copy()
            for k, i in zip(sfm["ibug68_index"], sfm["ibug68_vertex"], strict=True)}


def _resample(points: np.ndarray, count: int, closed: bool) -> np.ndarray:
    """`count` points equally spaced by arc length along a polyline (closed: a polygon)."""
    pts = np.concatenate([points, points[:1]]) if closed else points
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.linspace(0.0, s[-1], count, endpoint=not closed)
    return np.stack([np.interp(t, s, pts[:, d]) for d in range(pts.shape[1])], axis=1)


def sfm_bu3dfe83(vertices: np.ndarray) -> dict[str, np.ndarray]:
    """An approximate BU-3DFE 83-point set (``bu3dfe83_NN``) derived from the SFM iBUG points.

    Every point is snapped to a mesh vertex (as in a real ``.bnd``). Groups follow
    `BU3DFE83_GROUPS`; "left" is the image left (smaller x).
    """
    from scipy.spatial import cKDTree

    ib = sfm_ibug68(vertices)

    def p(k: int) -> np.ndarray:
        return ib[landmark_name("ibug68", k)]

    def poly(ks: range | list[int]) -> np.ndarray:
        return np.stack([p(k) for k in ks])

    up, side = np.array([0.0, 3.0, 0.0]), np.array([1.0, 0.0, 0.0])
    pts = [
        _resample(poly(range(37, 43)), 8, closed=True),                       # left eye 1-8
        _resample(poly(range(43, 49)), 8, closed=True),                       # right eye 9-16
        np.concatenate([poly(range(18, 23)) + up, poly(range(22, 17, -1)) - up]),   # left brow 17-26
        np.concatenate([poly(range(23, 28)) + up, poly(range(27, 22, -1)) - up]),   # right brow 27-36
        np.stack([p(28) - 8 * side, p(32) - 6 * side, p(32), p(33), p(34), p(35), p(36), p(36) + 6 * side,
                  p(28) + 8 * side, p(31), p(30), p(29)]),                    # nose 37-48
        poly(range(49, 61)),                                                  # outer mouth 49-60
        np.stack([p(49) + 2 * side, p(62), p(63), p(64), p(55) - 2 * side, p(66), p(67), p(68)]),  # inner 61-68
    ]
    tree = cKDTree(vertices)
    snapped = [vertices[tree.query(q)[1]] for q in pts]
    # contour 69-83: a half ellipse from temple to temple through the chin, snapped in x/y
    eye_y = float(np.mean([p(37)[1], p(46)[1]]))
    chin = p(9)
    band = np.abs(vertices[:, 1] - eye_y) < 5.0
    half_w = 0.92 * float(np.abs(vertices[band, 0]).max())
    theta = np.linspace(np.pi, 2.0 * np.pi, 15)
    xy = np.stack([chin[0] + half_w * np.cos(theta), eye_y + (eye_y - chin[1]) * np.sin(theta)], axis=1)
    snapped.append(vertices[cKDTree(vertices[:, :2]).query(xy)[1]])
    allp = np.concatenate(snapped)
    assert allp.shape == (83, 3)
    return {landmark_name("bu3dfe83", k + 1): allp[k].copy() for k in range(83)}


def face_colors(vertices: np.ndarray, faces: np.ndarray, landmarks: dict[str, np.ndarray]) -> np.ndarray:
    """(N, 3) float RGB per vertex: Lambert-shaded skin with painted brows, lips and eyes (iBUG names)."""
    light = np.array([0.3, 0.4, 1.0]) / np.linalg.norm([0.3, 0.4, 1.0])
    shade = 0.35 + 0.65 * np.clip(_vertex_normals(vertices, faces) @ light, 0.0, 1.0)
    col = SKIN[None] * shade[:, None]
    xy = vertices[:, :2]

    def pts(ks: range | list[int]) -> np.ndarray | None:
        names = [landmark_name("ibug68", k) for k in ks]
        if not all(n in landmarks for n in names):
            return None
        return np.stack([landmarks[n][:2] for n in names])

    for ks in (range(18, 23), range(23, 28)):
        brow = pts(ks)
        if brow is not None:
            col[_polyline_distance(xy, brow) < 3.5] = BROW * 0.9
    outer, inner = pts(range(49, 61)), pts([62, 63, 64, 66, 67, 68])
    if outer is not None:
        lips = _inside_polygon(xy, outer)
        if inner is not None:
            lips &= ~_inside_polygon(xy, inner)
        col[lips] = LIPS * shade[lips, None]
    for ks in (range(37, 43), range(43, 49)):
        eye = pts(ks)
        if eye is not None:
            inside = _inside_polygon(xy, eye)
            col[inside] = SCLERA
            centre = eye.mean(axis=0)
            col[inside & (np.linalg.norm(xy - centre, axis=1) < 3.5)] = IRIS
    return np.clip(col, 0, 255)


def bake_texture(corner_uv: np.ndarray, corner_colors: np.ndarray, size: int = 256) -> np.ndarray:
    """(size, size, 3) uint8 texture painted from per-corner colours (F, 3, 3) through top-left corner uv."""
    tri = np.asarray(corner_uv, dtype=np.float64) * size - 0.5
    tri_id, bary = rasterize_triangles(tri, (size, size))
    img = interpolate_corners(tri_id, bary, corner_colors)
    img[tri_id < 0] = SKIN * 0.8
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def make_sfm_scan(
    expression: str | None = "happiness",
    weight: float = 1.0,
    *,
    seed: int | None = 0,
    coefficients: np.ndarray | None = None,
    texture_size: int = 256,
    landmark_scheme: str = "ibug68",
    vertex_colors: bool = False,
) -> FaceScan:
    """A realistic textured face: SFM identity (`seed` or `coefficients`) + `expression` at `weight`.

    landmark_scheme: 'ibug68' (the 50 SFM points, ``ibug68_NN``), 'bu3dfe83' (`sfm_bu3dfe83`),
    'bosphorus' (mapped from iBUG) or 'none'. The texture is shading + painted regions.
    """
    sfm = require_sfm()
    v = sfm_vertices(coefficients, expression, weight, seed=seed)
    f = sfm["triangles"].astype(np.int64)
    corner_uv = sfm["texcoords"].astype(np.float64)[f]
    ib = sfm_ibug68(v)
    colors = face_colors(v, f, ib)
    texture = bake_texture(corner_uv, colors[f], texture_size)
    if landmark_scheme == "ibug68":
        lms = ib
    elif landmark_scheme == "bu3dfe83":
        lms = sfm_bu3dfe83(v)
    elif landmark_scheme == "bosphorus":
        from afnetm_timm.data.formats import ibug68_to_bosphorus

        lms = ibug68_to_bosphorus(ib)
    elif landmark_scheme == "none":
        lms = {}
    else:
        raise ValueError(f"unknown landmark scheme {landmark_scheme!r}")
    meta = {"synthetic": "sfm", "expression": expression or "neutral", "expression_weight": weight, "seed": seed}
    scan = FaceScan(
        vertices=v, faces=f, texture=texture, corner_uv=corner_uv,
        vertex_colors=np.round(colors).astype(np.uint8) if vertex_colors else None,
        landmarks=lms, landmark_scheme=landmark_scheme if lms else "custom", metadata=meta,
    )
    return scan.validate()


# ----------------------------------------------------------------------------------------------- tiny
def tiny_surface(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The analytic surface of `make_tiny_scan`: a 6 mm Gaussian bump (mm)."""
    return 6.0 * np.exp(-(x**2 + y**2) / 60.0)


def make_tiny_scan(
    n: int = 6,
    *,
    extent: float = 10.0,
    textured: bool = True,
    colors: bool = False,
    seam: bool = False,
    landmark_scheme: str = "custom",
) -> FaceScan:
    """A small n x n grid mesh over [-extent, extent]^2 mm with z = `tiny_surface`, faces CCW from +z.

    textured: an 8x8 RGB texture with top-left uv from x/y; seam: the right column of triangles maps
    to a second copy of the texture's left half (per-corner uv differ at shared vertices);
    landmark_scheme: 'custom' (nose_tip + 2 corners), 'bu3dfe83' / 'ibug68' (all points placed on
    vertices k % N), 'bosphorus' (the first 5 labels), 'none'.
    """
    xs = np.linspace(-extent, extent, n)
    gx, gy = np.meshgrid(xs, xs)
    v = np.stack([gx.ravel(), gy.ravel(), tiny_surface(gx, gy).ravel()], axis=1)
    ids = np.arange(n * n).reshape(n, n)
    a, b, c, d = ids[:-1, :-1].ravel(), ids[:-1, 1:].ravel(), ids[1:, :-1].ravel(), ids[1:, 1:].ravel()
    f = np.concatenate([np.stack([a, b, c], 1), np.stack([b, d, c], 1)]).astype(np.int64)
    texture = corner_uv = None
    if textured:
        rng = np.random.default_rng(1)
        texture = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        uv = np.stack([(v[:, 0] + extent) / (2 * extent), (extent - v[:, 1]) / (2 * extent)], axis=1)
        corner_uv = uv[f] * 0.98 + 0.01
        if seam:
            right = v[f][:, :, 0].min(axis=1) >= xs[-2] - 1e-9
            corner_uv[right, :, 0] -= 0.5
    vc = None
    if colors:
        vc = np.stack([np.linspace(0, 255, n * n), np.full(n * n, 128.0), np.linspace(255, 0, n * n)], 1)
        vc = vc.round().astype(np.uint8)
    centre = int(np.argmax(v[:, 2]))
    if landmark_scheme == "custom":
        lms = {"nose_tip": v[centre].copy(), "corner_a": v[0].copy(), "corner_b": v[-1].copy()}
    elif landmark_scheme in ("bu3dfe83", "ibug68"):
        count = 83 if landmark_scheme == "bu3dfe83" else 68
        lms = {landmark_name(landmark_scheme, k + 1): v[k % len(v)].copy() for k in range(count)}
    elif landmark_scheme == "bosphorus":
        from afnetm_timm.data.formats import BOSPHORUS_LABELS

        lms = {lab: v[(7 * k) % len(v)].copy() for k, lab in enumerate(BOSPHORUS_LABELS[:5])}
    elif landmark_scheme == "none":
        lms = {}
    else:
        raise ValueError(f"unknown landmark scheme {landmark_scheme!r}")
    return FaceScan(vertices=v, faces=f, vertex_colors=vc, texture=texture, corner_uv=corner_uv, landmarks=lms,
                    landmark_scheme=landmark_scheme if lms else "custom", metadata={"synthetic": "tiny"}).validate()
