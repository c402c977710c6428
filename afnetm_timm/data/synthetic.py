"""Face scans without any data file: a procedural textured 3D face with iBUG-68 landmarks, and
faces built from a 3D morphable model file (the Surrey Face Model ``.npz`` layout).

`synthetic_face_scan` is what ``afnetm demo`` uses when no dataset is at hand. The face is an
ellipsoidal cap with a parametric nose, eye sockets and eyeballs, brow ridges, cheeks and lips
whose shapes follow the six basic expressions (FACS-style: anger lowers and draws the brows
together and presses the lips, happiness lifts the mouth corners and cheeks, surprise raises the
brows and opens the mouth, ...). It is a test object, not a realistic face model.

Coordinates are millimetres, face looking towards +z, y up, nose tip near the origin.
"""
from __future__ import annotations

import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from .errors import ScanFormatError
from .formats._raster import interpolate_corners, rasterize_triangles
from .pose import ibug68_name
from .scan import FaceScan

__all__ = [
    "EXPRESSIONS",
    "check_morphable_model",
    "face_scan_from_morphable_model",
    "normalize_expression",
    "synthetic_face_scan",
]

#: The six basic expressions (the FER classes of BU-3DFE and Bosphorus), in the usual order.
EXPRESSIONS: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")

_ALIASES = {
    "an": "anger", "angry": "anger", "di": "disgust", "disgusted": "disgust", "fe": "fear",
    "fearful": "fear", "ha": "happiness", "happy": "happiness", "joy": "happiness", "sa": "sadness",
    "sad": "sadness", "su": "surprise", "surprised": "surprise", "ne": "neutral", "none": "neutral",
}


def normalize_expression(name: str) -> str:
    """Canonical expression name ('neutral' or one of `EXPRESSIONS`); accepts codes like 'HA'."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key != "neutral" and key not in EXPRESSIONS:
        raise ValueError(f"unknown expression {name!r}; expected neutral or one of {EXPRESSIONS}")
    return key


# --------------------------------------------------------------------------------------------
# Procedural face
# --------------------------------------------------------------------------------------------
@dataclass
class _Face:
    # identity
    width: float = 1.0
    height: float = 1.0
    nose_len: float = 1.0
    nose_wid: float = 1.0
    eye_sep: float = 1.0
    mouth_wid: float = 1.0
    skin: np.ndarray = field(default_factory=lambda: np.array([224.0, 172.0, 140.0]))
    iris: np.ndarray = field(default_factory=lambda: np.array([90.0, 60.0, 35.0]))
    brow_color: np.ndarray = field(default_factory=lambda: np.array([70.0, 50.0, 35.0]))
    # expression (already multiplied by intensity)
    brow_raise: float = 0.0  # mm, whole brow
    brow_inner_raise: float = 0.0  # mm, inner end only
    brow_squeeze: float = 0.0  # mm towards the midline
    eye_open: float = 1.0  # eyelid opening factor
    smile: float = 0.0  # mm the mouth corners move up (negative: down)
    mouth_stretch: float = 0.0  # mm added to the mouth half-width
    mouth_open: float = 0.0  # mm between the lips
    lip_press: float = 0.0  # 0..1 thinner lips
    upper_lip_raise: float = 0.0  # mm
    cheek_raise: float = 0.0  # mm
    nose_wrinkle: float = 0.0  # mm
    frown: float = 0.0  # mm furrow between the brows
    nostril_flare: float = 0.0  # mm


_EXPR = {
    "neutral": {},
    "anger": dict(brow_raise=-4.0, brow_squeeze=4.0, eye_open=-0.3, lip_press=0.6, frown=2.5, nostril_flare=2.0, smile=-1.5),
    "disgust": dict(brow_raise=-2.5, brow_squeeze=2.0, eye_open=-0.25, upper_lip_raise=3.5, nose_wrinkle=2.0, smile=-2.5, cheek_raise=1.5),
    "fear": dict(brow_raise=5.0, brow_inner_raise=3.0, brow_squeeze=2.5, eye_open=0.5, mouth_stretch=4.0, mouth_open=5.0, smile=-2.0),
    "happiness": dict(smile=7.0, mouth_stretch=5.0, cheek_raise=4.0, eye_open=-0.2, mouth_open=2.0),
    "sadness": dict(brow_inner_raise=5.0, smile=-5.0, eye_open=-0.15, lip_press=0.2),
    "surprise": dict(brow_raise=8.0, eye_open=0.7, mouth_open=16.0, mouth_stretch=-4.0),
}


def _face(expression: str, intensity: float, seed: int) -> _Face:
    rng = np.random.default_rng(seed)
    f = _Face(
        width=1.0 + 0.05 * rng.standard_normal(),
        height=1.0 + 0.05 * rng.standard_normal(),
        nose_len=1.0 + 0.12 * rng.standard_normal(),
        nose_wid=1.0 + 0.12 * rng.standard_normal(),
        eye_sep=1.0 + 0.04 * rng.standard_normal(),
        mouth_wid=1.0 + 0.06 * rng.standard_normal(),
    )
    tone = rng.uniform(0.0, 1.0)
    f.skin = np.array([236.0, 190.0, 160.0]) * (1 - tone) + np.array([150.0, 100.0, 70.0]) * tone
    f.iris = rng.choice(np.array([[90.0, 60.0, 35.0], [60.0, 100.0, 150.0], [80.0, 110.0, 70.0]]))
    f.brow_color = f.skin * 0.35
    for k, v in _EXPR[expression].items():
        setattr(f, k, (1.0 + v * intensity) if k == "eye_open" else v * intensity)
    f.eye_open = max(f.eye_open, 0.15)
    return f


def _g(x: np.ndarray, y: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    return np.exp(-0.5 * (((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2))


def _mouth_y(f: _Face, x: np.ndarray) -> np.ndarray:
    """Centre line of the mouth (between the lips) at x."""
    w = _mouth_half_width(f)
    return -34.0 + f.smile * np.clip(x / w, -1.5, 1.5) ** 2 + 0.5 * f.upper_lip_raise


def _mouth_half_width(f: _Face) -> float:
    return 24.0 * f.mouth_wid + f.mouth_stretch


def _height(f: _Face, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """z (mm) of the face surface at (x, y)."""
    a, b = 95.0 * f.width, 140.0 * f.height
    cap = np.sqrt(np.clip(1.0 - (x / a) ** 2 - (y / b) ** 2, 0.0, None))
    z = -24.0 + 55.0 * (cap - 1.0)
    # nose: ridge from the bridge to the tip, wider at the tip, falling off under it
    ny = y / f.nose_len
    ridge = np.where(ny >= 1.0, 6.0 + 22.0 * np.exp(-((ny - 1.0) / 26.0) ** 2), 28.0 * np.exp(-((ny - 1.0) / 9.0) ** 2))
    ridge = np.where(ny > 44.0, 6.0 * np.exp(-((ny - 44.0) / 8.0) ** 2), ridge)
    sigma = (5.5 + 4.5 * np.exp(-((ny + 2.0) / 14.0) ** 2)) * f.nose_wid
    z = z + ridge * np.exp(-0.5 * (x / sigma) ** 2)
    ala = 13.0 * f.nose_wid + 0.5 * f.nostril_flare
    z = z + 5.0 * (_g(x, y, -ala, -9.0, 5.0, 5.0) + _g(x, y, ala, -9.0, 5.0, 5.0))
    z = z - 3.0 * (_g(x, y, -6.0, -13.5, 2.5, 1.8) + _g(x, y, 6.0, -13.5, 2.5, 1.8))
    z = z + f.nose_wrinkle * (_g(x, y, -7.0, 26.0, 3.0, 2.0) + _g(x, y, 7.0, 26.0, 3.0, 2.0))
    # eye sockets and eyeballs
    ex = 32.0 * f.eye_sep
    for s in (-1.0, 1.0):
        z = z - 7.0 * _g(x, y, s * ex, 35.0, 13.0, 8.0)
        z = z + 4.0 * _g(x, y, s * ex, 35.0, 7.0, 3.0 + 1.5 * f.eye_open)
        # brow ridge (follows the brows)
        z = z + 4.0 * _g(x, y, s * (36.0 - f.brow_squeeze), 52.0 + f.brow_raise, 15.0, 5.0)
        # cheeks
        z = z + (5.0 + 0.6 * f.cheek_raise) * _g(x, y, s * 40.0, -2.0 + f.cheek_raise, 15.0, 13.0)
    z = z - f.frown * _g(x, y, 0.0, 47.0 + 0.5 * f.brow_raise, 2.5, 6.0)
    # lips
    w = _mouth_half_width(f)
    ym = _mouth_y(f, x)
    inside = 1.0 / (1.0 + np.exp((np.abs(x) - w) / 1.5))
    thick = 1.0 - 0.5 * f.lip_press
    upper = ym + 0.5 * f.mouth_open + 3.5 * thick
    lower = ym - 0.5 * f.mouth_open - 4.5 * thick
    z = z + inside * (4.0 * np.exp(-0.5 * ((y - upper) / (2.8 * thick + 0.6)) ** 2))
    z = z + inside * (4.5 * np.exp(-0.5 * ((y - lower) / (3.2 * thick + 0.6)) ** 2))
    if f.mouth_open > 0:
        gap = inside * np.clip(f.mouth_open / 2.0, 0, 12.0) * np.exp(-0.5 * ((y - ym) / (0.35 * f.mouth_open + 0.5)) ** 2)
        z = z - gap
    # chin
    z = z + 3.0 * _g(x, y, 0.0, -66.0 - 0.4 * f.mouth_open, 14.0, 8.0)
    return z


def _landmarks_2d(f: _Face) -> np.ndarray:
    """(68, 2) iBUG-68 positions (x, y) in mm."""
    pts = np.zeros((68, 2))
    a, b = 70.0 * f.width, 80.0 * f.height
    th = np.radians(np.linspace(192.0, 348.0, 17))
    pts[0:17] = np.column_stack([a * np.cos(th), -2.0 + b * np.sin(th) - 0.4 * f.mouth_open * (np.sin(th) < -0.8)])
    # brows (17-21 image left, outer -> inner; 22-26 inner -> outer)
    t = np.linspace(0.0, 1.0, 5)
    bx = 57.0 - 45.0 * t  # outer ... inner, magnitude
    by = 49.0 + 8.0 * np.sin(np.pi * (0.25 + 0.75 * t)) ** 2 - 2.0 * t + f.brow_raise + f.brow_inner_raise * t**2
    bx = bx - f.brow_squeeze * t
    pts[17:22] = np.column_stack([-bx, by])
    pts[22:27] = np.column_stack([bx[::-1], by[::-1]])
    # nose
    nl = f.nose_len
    pts[27:31] = np.column_stack([np.zeros(4), np.array([42.0, 30.0, 16.0, 1.0]) * nl])
    nw = f.nose_wid
    pts[31:36] = np.column_stack(
        [np.array([-12.0, -6.0, 0.0, 6.0, 12.0]) * nw + np.array([-0.5, 0, 0, 0, 0.5]) * f.nostril_flare,
         np.array([-10.5, -13.5, -15.0, -13.5, -10.5])]
    )
    # eyes (36-41 image left: outer, upper x2, inner, lower x2)
    ex = 32.0 * f.eye_sep
    half_w = 13.5
    up, lo = 3.6 * f.eye_open, 2.6 * f.eye_open
    eye = np.array([[-half_w, 0.5], [-5.0, up], [5.0, up], [half_w, -1.0], [5.0, -lo], [-5.0, -lo]])
    right = eye.copy()
    right[:, 0] = -ex + right[:, 0]
    left = eye[[3, 2, 1, 0, 5, 4]].copy()
    left[:, 0] = -left[:, 0] + ex
    # inner eye corners sit slightly lower than the outer ones
    pts[36:42] = right + [0.0, 35.0]
    pts[42:48] = left * [1.0, 1.0] + [0.0, 35.0]
    pts[42:48, 0] = np.array([ex - half_w, ex - 5.0, ex + 5.0, ex + half_w, ex + 5.0, ex - 5.0])
    pts[42:48, 1] = 35.0 + np.array([-1.0, up, up, 0.5, -lo, -lo])
    # mouth
    w = _mouth_half_width(f)
    thick = 1.0 - 0.5 * f.lip_press
    o = f.mouth_open
    xs = np.array([-w, -0.62 * w, -0.28 * w, 0.0, 0.28 * w, 0.62 * w, w])
    ym = _mouth_y(f, xs)
    upper_out = ym + 0.5 * o + np.array([0.0, 5.0, 7.0, 6.5, 7.0, 5.0, 0.0]) * thick
    lower_x = np.array([0.62 * w, 0.28 * w, 0.0, -0.28 * w, -0.62 * w])
    lower_out = _mouth_y(f, lower_x) - 0.5 * o - np.array([5.5, 8.0, 8.5, 8.0, 5.5]) * thick
    pts[48:55] = np.column_stack([xs, upper_out])
    pts[55:60] = np.column_stack([lower_x, lower_out])
    ix = np.array([-0.85 * w, -0.35 * w, 0.0, 0.35 * w, 0.85 * w])
    iym = _mouth_y(f, ix)
    pts[60:65] = np.column_stack([ix, iym + 0.5 * o + np.array([0.0, 1.0, 1.2, 1.0, 0.0])])
    lx = np.array([0.35 * w, 0.0, -0.35 * w])
    pts[65:68] = np.column_stack([lx, _mouth_y(f, lx) - 0.5 * o - 1.0])
    return pts


def _shade(f: _Face, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Lambertian shading factor from the surface normal (light from the front, slightly above)."""
    h = 0.25
    zx = (_height(f, x + h, y) - _height(f, x - h, y)) / (2 * h)
    zy = (_height(f, x, y + h) - _height(f, x, y - h)) / (2 * h)
    n = np.stack([-zx, -zy, np.ones_like(zx)], axis=-1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    light = np.array([0.15, 0.35, 1.0])
    light /= np.linalg.norm(light)
    return np.clip(0.35 + 0.65 * (n @ light), 0.2, 1.0)


def _paint_texture(f: _Face, lm: np.ndarray, extent: tuple[float, float, float, float], size: int, seed: int) -> np.ndarray:
    """(size, size, 3) uint8 texture for the planar projection ``extent`` = (x0, x1, y0, y1)."""
    x0, x1, y0, y1 = extent
    cols = x0 + (np.arange(size) + 0.5) / size * (x1 - x0)
    rows = y1 - (np.arange(size) + 0.5) / size * (y1 - y0)
    xx, yy = np.meshgrid(cols, rows)
    rng = np.random.default_rng(seed + 7)
    base = np.ones((size, size, 3)) * f.skin
    base *= 1.0 + 0.04 * cv2.GaussianBlur(rng.standard_normal((size, size)), (0, 0), 2.0)[..., None]
    # rosy cheeks, lips, brows, eyes drawn in texture pixels (OpenCV wants (col, row) ints)
    def to_px(p: np.ndarray) -> np.ndarray:
        c = (p[..., 0] - x0) / (x1 - x0) * size
        r = (y1 - p[..., 1]) / (y1 - y0) * size
        return np.stack([c, r], axis=-1)

    mm = size / (x1 - x0)
    img = np.clip(base, 0, 255).astype(np.uint8)
    overlay = img.copy()
    for s in (-1.0, 1.0):
        cv2.circle(overlay, tuple(np.round(to_px(np.array([s * 40.0, -4.0 + f.cheek_raise]))).astype(int)),
                   int(12 * mm), tuple(int(v) for v in np.clip(f.skin * [1.02, 0.85, 0.85], 0, 255)), -1)
    img = cv2.addWeighted(overlay, 0.35, img, 0.65, 0)
    brow_t = max(2, int(round(4.0 * mm)))
    for seg in (lm[17:22], lm[22:27]):
        cv2.polylines(img, [np.round(to_px(seg)).astype(np.int32)], False,
                      tuple(int(v) for v in f.brow_color), brow_t, cv2.LINE_AA)
    lip = tuple(int(v) for v in np.clip(f.skin * [0.85, 0.5, 0.5] + [30, 0, 0], 0, 255))
    cv2.fillPoly(img, [np.round(to_px(lm[48:60])).astype(np.int32)], lip, cv2.LINE_AA)
    inner = np.round(to_px(lm[60:68])).astype(np.int32)
    if f.mouth_open > 1.0:
        cv2.fillPoly(img, [inner], (60, 20, 25), cv2.LINE_AA)
    else:
        cv2.polylines(img, [inner], True, (120, 50, 50), max(1, int(mm)), cv2.LINE_AA)
    for eye in (lm[36:42], lm[42:48]):
        poly = np.round(to_px(eye)).astype(np.int32)
        cv2.fillPoly(img, [poly], (245, 245, 240), cv2.LINE_AA)
        c = to_px(eye.mean(axis=0))
        r_iris = 0.42 * np.ptp(eye[:, 1]) * mm + 2
        mask = np.zeros(img.shape[:2], np.uint8)
        cv2.fillPoly(mask, [poly], 1)
        iris_img = img.copy()
        cv2.circle(iris_img, tuple(np.round(c).astype(int)), int(r_iris), tuple(int(v) for v in f.iris), -1, cv2.LINE_AA)
        cv2.circle(iris_img, tuple(np.round(c).astype(int)), max(1, int(r_iris * 0.45)), (15, 15, 15), -1, cv2.LINE_AA)
        img = np.where(mask[..., None] > 0, iris_img, img)
        cv2.polylines(img, [poly], True, tuple(int(v) for v in f.brow_color * 0.8), max(1, int(0.6 * mm)), cv2.LINE_AA)
    for s in (-1.0, 1.0):
        cv2.ellipse(img, tuple(np.round(to_px(np.array([s * 6.0, -13.5]))).astype(int)),
                    (max(1, int(2.2 * mm)), max(1, int(1.3 * mm))), 0, 0, 360, (70, 40, 35), -1, cv2.LINE_AA)
    shade = _shade(f, xx, yy)
    return np.clip(img.astype(np.float64) * shade[..., None], 0, 255).astype(np.uint8)


def synthetic_face_scan(
    expression: str = "happiness",
    intensity: float = 1.0,
    identity_seed: int = 0,
    n_points: int = 10000,
    texture_size: int = 512,
    vertex_colors: bool = False,
    jitter: float = 0.2,
) -> FaceScan:
    """A procedural textured face scan (no data file), like a cropped BU-3DFE ``F3D`` scan.

    Args:
        expression: 'neutral' or one of `EXPRESSIONS` (codes such as 'HA' accepted).
        intensity: expression strength (0 = neutral; about 0.25-1.5 spans BU-3DFE levels 1-4).
        identity_seed: seeds face proportions, skin tone and texture noise.
        n_points: approximate number of vertices (a jittered grid over the face oval).
        texture_size: side of the texture image (pixels).
        vertex_colors: give per-vertex colours instead of a texture image with ``corner_uv``.
        jitter: x-y jitter of the grid vertices as a fraction of the grid step.

    Returns:
        `FaceScan` in mm with triangles, texture (or vertex colours), the 68 iBUG landmarks
        (names from `pose.ibug68_name`, scheme 'ibug68') and metadata.
    """
    expr = normalize_expression(expression)
    if not 0.0 <= intensity <= 3.0:
        raise ValueError(f"intensity must lie in [0, 3], got {intensity}")
    if n_points < 200:
        raise ValueError(f"n_points must be at least 200, got {n_points}")
    f = _face(expr, float(intensity), int(identity_seed))
    ax, ay, yc = 72.0 * f.width, 90.0 * f.height, 2.0
    area = np.pi * ax * ay
    step = float(np.sqrt(area / n_points))
    xs = np.arange(-ax, ax + step, step)
    ys = np.arange(yc - ay, yc + ay + step, step)
    gx, gy = np.meshgrid(xs, ys)  # (rows = y, cols = x)
    rng = np.random.default_rng(int(identity_seed) + 1)
    jx = gx + jitter * step * rng.uniform(-1, 1, gx.shape)
    jy = gy + jitter * step * rng.uniform(-1, 1, gy.shape)
    inside = (gx / ax) ** 2 + ((gy - yc) / ay) ** 2 <= 1.0
    index = -np.ones(gx.shape, dtype=np.int64)
    index[inside] = np.arange(int(inside.sum()))
    a, b, c, d = index[:-1, :-1], index[:-1, 1:], index[1:, :-1], index[1:, 1:]
    t1 = np.stack([a, d, b], axis=-1).reshape(-1, 3)  # counter-clockwise seen from +z (y up)
    t2 = np.stack([a, c, d], axis=-1).reshape(-1, 3)
    faces = np.concatenate([t1[(t1 >= 0).all(axis=1)], t2[(t2 >= 0).all(axis=1)]])
    x, y = jx[inside], jy[inside]
    z = _height(f, x, y)
    vertices = np.column_stack([x, y, z])
    lm2 = _landmarks_2d(f)
    lmz = _height(f, lm2[:, 0], lm2[:, 1])
    landmarks = {ibug68_name(i): np.array([lm2[i, 0], lm2[i, 1], lmz[i]]) for i in range(68)}
    extent = (-ax - step, ax + step, yc - ay - step, yc + ay + step)
    tex = _paint_texture(f, lm2, extent, int(texture_size), int(identity_seed))
    meta = {
        "source": "synthetic",
        "expression": expr,
        "intensity": float(intensity),
        "identity_seed": int(identity_seed),
        "subject": f"synthetic{int(identity_seed):03d}",
    }
    u = (x - extent[0]) / (extent[1] - extent[0])
    v = (extent[3] - y) / (extent[3] - extent[2])
    uv = np.column_stack([u, v])
    if vertex_colors:
        col = tex[np.clip((v * texture_size).astype(int), 0, texture_size - 1), np.clip((u * texture_size).astype(int), 0, texture_size - 1)]
        return FaceScan(vertices, faces, vertex_colors=col, landmarks=landmarks, landmark_scheme="ibug68", metadata=meta)
    return FaceScan(
        vertices, faces, texture=tex, corner_uv=uv[faces], landmarks=landmarks, landmark_scheme="ibug68", metadata=meta
    )


# --------------------------------------------------------------------------------------------
# Morphable model
# --------------------------------------------------------------------------------------------
def _vertex_normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    tri = v[f]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    vn = np.zeros_like(v)
    for k in range(3):
        np.add.at(vn, f[:, k], fn)
    n = np.linalg.norm(vn, axis=1, keepdims=True)
    return vn / np.where(n > 0, n, 1.0)


def _inside_polygon(xy: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test for (M, 2) points against an (K, 2) polygon."""
    x, y = xy[:, 0:1], xy[:, 1:2]
    px, py = poly[:, 0][None, :], poly[:, 1][None, :]
    qx, qy = np.roll(px, -1, axis=1), np.roll(py, -1, axis=1)
    crosses = (py > y) != (qy > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xint = px + (y - py) * (qx - px) / (qy - py)
    return (crosses & (x < xint)).sum(axis=1) % 2 == 1


def _polyline_distance(xy: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Distance of (M, 2) points to an open (K, 2) polyline."""
    best = np.full(len(xy), np.inf)
    for p, q in zip(line[:-1], line[1:], strict=True):
        d = q - p
        t = np.clip(((xy - p) @ d) / max(float(d @ d), 1e-12), 0.0, 1.0)
        best = np.minimum(best, np.linalg.norm(xy - (p + t[:, None] * d), axis=1))
    return best


def _paint_points(points: np.ndarray, normals: np.ndarray, lm: dict[str, np.ndarray], seed: int) -> np.ndarray:
    """Procedural RGB at 3-D face points: shaded skin, brows, lips, mouth opening and eyes."""
    rng = np.random.default_rng(seed)
    tone = rng.uniform(0.0, 1.0)
    skin = np.array([236.0, 190.0, 160.0]) * (1 - tone) + np.array([150.0, 100.0, 70.0]) * tone
    col = np.tile(skin, (len(points), 1))
    xy = points[:, :2]

    def group(a: int, b: int) -> np.ndarray:
        pts = [lm[ibug68_name(i)][:2] for i in range(a, b + 1) if ibug68_name(i) in lm]
        return np.array(pts).reshape(-1, 2)

    for line in (group(17, 21), group(22, 26)):
        if len(line) >= 2:
            w = np.clip(2.0 - _polyline_distance(xy, line) / 1.5, 0.0, 1.0)[:, None]
            col = col * (1 - w) + (skin * 0.35) * w
    outer = group(48, 59)
    if len(outer) >= 3:
        lips = _inside_polygon(xy, outer)
        col[lips] = np.clip(skin * [0.85, 0.5, 0.5] + [30, 0, 0], 0, 255)
        inner = group(60, 67)
        if len(inner) >= 3:
            opening = _inside_polygon(xy, inner)
            col[opening] = [60.0, 20.0, 25.0]
    for eye in (group(36, 41), group(42, 47)):
        if len(eye) >= 3:
            inside = _inside_polygon(xy, eye)
            c = eye.mean(axis=0)
            r = 0.45 * float(np.ptp(eye[:, 1])) + 1.0
            dist = np.linalg.norm(xy - c, axis=1)
            col[inside] = [240.0, 240.0, 235.0]
            col[inside & (dist < r)] = [90.0, 60.0, 35.0]
            col[inside & (dist < 0.45 * r)] = [15.0, 15.0, 15.0]
    light = np.array([0.15, 0.35, 1.0]) / np.linalg.norm([0.15, 0.35, 1.0])
    shade = np.clip(0.35 + 0.65 * np.abs(normals @ light), 0.2, 1.0)
    return np.clip(col * shade[:, None], 0, 255).astype(np.uint8)


def _bake_texture(
    uv: np.ndarray, faces: np.ndarray, vertices: np.ndarray, normals: np.ndarray, lm: dict[str, np.ndarray], size: int, seed: int
) -> np.ndarray:
    """Paint a (size, size, 3) texture: each texel is coloured from the 3-D point it maps to."""
    tri = uv[faces] * size - 0.5  # pixel centres at integers, v down
    attrs = np.concatenate([vertices, normals], axis=1)  # (N, 6)
    corner_attrs = attrs[faces]  # (F, 3, 6); where UV triangles overlap, the largest x wins
    tri_id, bary = rasterize_triangles(tri, (size, size), corner_attrs[..., 0], max_bbox_px=4096)
    covered = tri_id >= 0
    per_texel = interpolate_corners(tri_id, bary, corner_attrs)
    tex = np.zeros((size, size, 3), dtype=np.uint8)
    pts = per_texel[covered]
    n = pts[:, 3:]
    n = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    tex[covered] = _paint_points(pts[:, :3], n, lm, seed)
    if (~covered).any():  # grow colours into unused texels so lookups near seams stay clean
        filled = cv2.inpaint(tex, (~covered).astype(np.uint8), 3, cv2.INPAINT_TELEA)
        tex = np.where(covered[..., None], tex, filled)
    return tex


_MODEL_LAYOUT = "a NumPy .npz archive with 'mean' (N, 3), 'triangles' (F, 3) and 'texcoords' (N, 2) arrays"
_ARRAY_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)


def _open_morphable_model(path: Path) -> np.lib.npyio.NpzFile:
    """``np.load`` of a morphable model file, with errors that say what is wrong with the file."""
    if not path.is_file():
        raise ScanFormatError(path, "cannot read morphable model: no such file")
    if path.stat().st_size == 0:
        raise ScanFormatError(path, f"morphable model: the file is empty (expected {_MODEL_LAYOUT})")
    if not zipfile.is_zipfile(path):
        raise ScanFormatError(path, f"morphable model: not a .npz archive (expected {_MODEL_LAYOUT})")
    try:
        data = np.load(path, allow_pickle=False)
    except (*_ARRAY_READ_ERRORS, KeyError) as exc:
        raise ScanFormatError(path, f"cannot read morphable model: {exc}") from exc
    if not isinstance(data, np.lib.npyio.NpzFile):  # pragma: no cover - np.load of a zip gives an NpzFile
        raise ScanFormatError(path, f"morphable model: not a .npz archive (expected {_MODEL_LAYOUT})")
    return data


def check_morphable_model(
    npz_path: str | Path, expressions: tuple[str, ...] | list[str] = (), identity_dims: int = 0
) -> dict[str, tuple[int, ...]]:
    """Check a morphable model file once, up front, before drawing many faces from it.

    Reads every array and checks the layout `face_scan_from_morphable_model` needs: ``mean`` (N, 3) finite,
    ``triangles`` (F, 3) integer indices into the N vertices, ``texcoords`` (N, 2); with ``identity_dims``,
    ``basis`` (K, N, 3) and ``eigenvalues`` (K,) with K >= ``identity_dims``; the blendshapes (``expression_names``
    + ``expressions`` (E, N, 3)) of every one of ``expressions``.

    Returns:
        {array name: shape} of the file.

    Raises:
        ScanFormatError: naming the file and what is wrong (missing, empty, not a .npz, an unreadable,
            missing or misshapen array, a missing expression).
    """
    path = Path(npz_path)
    with _open_morphable_model(path) as data:
        arrays: dict[str, np.ndarray] = {}
        for key in data.files:
            try:
                arrays[key] = data[key]
            except _ARRAY_READ_ERRORS as exc:
                raise ScanFormatError(path, f"morphable model: array {key!r} is unreadable ({exc})") from exc
    for key in ("mean", "triangles", "texcoords"):
        if key not in arrays:
            raise ScanFormatError(path, f"morphable model lacks the {key!r} array (expected {_MODEL_LAYOUT}; "
                                        f"it has {sorted(arrays)})")
    mean, triangles, texcoords = arrays["mean"], arrays["triangles"], arrays["texcoords"]
    if mean.ndim != 2 or mean.shape[1] != 3 or len(mean) < 3 or mean.dtype.kind not in "fiu":
        raise ScanFormatError(path, f"morphable model: 'mean' must be (N, 3) numbers, got {mean.shape} {mean.dtype}")
    if not np.isfinite(mean).all():
        raise ScanFormatError(path, "morphable model: 'mean' holds NaN or infinite values")
    n = len(mean)
    if triangles.ndim != 2 or triangles.shape[1] != 3 or len(triangles) == 0 or triangles.dtype.kind not in "iu":
        raise ScanFormatError(path, f"morphable model: 'triangles' must be (F, 3) integers, got "
                                    f"{triangles.shape} {triangles.dtype}")
    if triangles.min() < 0 or triangles.max() >= n:
        raise ScanFormatError(path, f"morphable model: 'triangles' index vertices outside 0..{n - 1}")
    if texcoords.shape != (n, 2) or texcoords.dtype.kind not in "fiu":
        raise ScanFormatError(path, f"morphable model: 'texcoords' must be ({n}, 2) numbers, got {texcoords.shape}")
    if identity_dims > 0:
        if "basis" not in arrays or "eigenvalues" not in arrays:
            raise ScanFormatError(path, "morphable model has no 'basis'/'eigenvalues' to draw identities from")
        basis, ev = arrays["basis"], arrays["eigenvalues"]
        if basis.ndim != 3 or basis.shape[1:] != (n, 3) or ev.shape != (len(basis),):
            raise ScanFormatError(path, f"morphable model: 'basis' must be (K, {n}, 3) and 'eigenvalues' (K,), got "
                                        f"{basis.shape} and {ev.shape}")
        if len(ev) < identity_dims:
            raise ScanFormatError(path, f"morphable model has {len(ev)} identity components; {identity_dims} needed")
        if not (np.isfinite(ev).all() and (ev >= 0).all()):
            raise ScanFormatError(path, "morphable model: 'eigenvalues' must be finite and >= 0")
    wanted = [normalize_expression(e) for e in expressions]
    wanted = [e for e in wanted if e != "neutral"]
    if wanted:
        names = [str(x) for x in arrays["expression_names"]] if "expression_names" in arrays else []
        missing = [e for e in wanted if e not in names]
        if missing or "expressions" not in arrays:
            raise ScanFormatError(path, f"morphable model has no blendshape for {missing or wanted} "
                                        f"(its 'expression_names': {names})")
        blend = arrays["expressions"]
        if blend.ndim != 3 or blend.shape[1:] != (n, 3) or len(blend) != len(names):
            raise ScanFormatError(path, f"morphable model: 'expressions' must be ({len(names)}, {n}, 3), got {blend.shape}")
    return {key: tuple(a.shape) for key, a in arrays.items()}


def face_scan_from_morphable_model(
    npz_path: str | Path,
    expression: str = "neutral",
    weight: float = 1.0,
    identity_coeffs: np.ndarray | None = None,
    *,
    subdivisions: int = 0,
    texture: str = "image",
    texture_size: int = 512,
    color_seed: int = 0,
) -> FaceScan:
    """Build a face scan from a morphable model file in the Surrey Face Model ``.npz`` layout.

    ``shape = mean + sum_i a_i * sqrt(eigenvalues[i]) * basis[i] + weight * expressions[k]``.

    Args:
        npz_path: file with ``mean`` (N, 3), ``triangles`` (F, 3), ``texcoords`` (N, 2); optional
            ``basis`` (K, N, 3) + ``eigenvalues`` (K,), ``expression_names`` + ``expressions``
            (E, N, 3), ``ibug68_index`` (1-based iBUG numbers) + ``ibug68_vertex``.
        expression: 'neutral' or an expression the file defines (codes such as 'HA' accepted).
        weight: blendshape weight (about 0..1.5).
        identity_coeffs: (K',) standard-normal shape coefficients (K' <= K), default all zero.
        subdivisions: midpoint subdivisions (each multiplies the triangle count by 4).
        texture: 'image' (procedural texture baked into a ``texture_size`` image + ``corner_uv``
            from the file's texcoords) or 'vertex' (per-vertex colours).
        color_seed: seeds the procedural skin tone.

    Raises:
        ScanFormatError: the file is missing, empty, not a .npz archive, unreadable or lacks a required
            array (`check_morphable_model` checks a file's whole layout once, up front).
    """
    path = Path(npz_path)
    with _open_morphable_model(path) as data:
        for key in ("mean", "triangles", "texcoords"):
            if key not in data.files:
                raise ScanFormatError(path, f"morphable model lacks the {key!r} array")
        shape = data["mean"].astype(np.float64)
        if shape.ndim != 2 or shape.shape[1] != 3:
            raise ScanFormatError(path, f"'mean' must be (N, 3), got {shape.shape}")
        if identity_coeffs is not None:
            coeffs = np.asarray(identity_coeffs, dtype=np.float64).ravel()
            if "basis" not in data.files or "eigenvalues" not in data.files:
                raise ScanFormatError(path, "identity coefficients given but the file has no 'basis'/'eigenvalues'")
            basis, ev = data["basis"], data["eigenvalues"]
            if coeffs.size > len(ev):
                raise ValueError(f"{coeffs.size} identity coefficients given, the model has {len(ev)}")
            shape = shape + np.tensordot(coeffs * np.sqrt(ev[: coeffs.size]), basis[: coeffs.size], axes=1)
        expr = normalize_expression(expression)
        if expr != "neutral":
            names = [str(n) for n in data["expression_names"]] if "expression_names" in data.files else []
            if expr not in names or "expressions" not in data.files:
                raise ScanFormatError(path, f"morphable model has no {expr!r} blendshape (has {names})")
            shape = shape + float(weight) * data["expressions"][names.index(expr)].astype(np.float64)
        faces = data["triangles"].astype(np.int64)
        uv = data["texcoords"].astype(np.float64)
        landmarks: dict[str, np.ndarray] = {}
        if "ibug68_index" in data.files and "ibug68_vertex" in data.files:
            for number, vid in zip(data["ibug68_index"], data["ibug68_vertex"], strict=True):
                landmarks[ibug68_name(int(number) - 1)] = shape[int(vid)].copy()
    if subdivisions > 0:
        import trimesh.remesh

        attrs = {"uv": uv}
        for _ in range(int(subdivisions)):
            shape, faces, attrs = trimesh.remesh.subdivide(shape, faces, vertex_attributes=attrs)
        uv = attrs["uv"]
    normals = _vertex_normals(shape, faces)
    meta = {
        "source": "morphable_model",
        "model_path": str(path),
        "expression": expr,
        "weight": float(weight),
        "subject": "sfm" if identity_coeffs is None else "sfm-identity",
    }
    if texture == "vertex":
        colors = _paint_points(shape, normals, landmarks, color_seed)
        return FaceScan(shape, faces, vertex_colors=colors, landmarks=landmarks, landmark_scheme="ibug68", metadata=meta)
    if texture != "image":
        raise ValueError(f"texture must be 'image' or 'vertex', got {texture!r}")
    tex = _bake_texture(uv, faces, shape, normals, landmarks, int(texture_size), color_seed)
    return FaceScan(
        shape, faces, texture=tex, corner_uv=uv[faces], landmarks=landmarks, landmark_scheme="ibug68", metadata=meta
    )

