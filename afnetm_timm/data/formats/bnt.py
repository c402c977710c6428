"""Bosphorus ``.bnt`` range grids (reader, writer, mesh rasteriser) with ``.png`` texture and ``.lm3``/``.lm2``.

Layout (little-endian): uint16 nrows, uint16 ncols, float64 zmin, uint16 L, L bytes texture name,
uint32 n5 = 5*nrows*ncols, then n5 float64: x[N], y[N], z[N], u[N], v[N] (column-major N x 5).
Point i is at row i // ncols, column i % ncols; row 0 is the chin (lowest y). Background points
have z == zmin. u, v address the ``.png`` from its top-left corner.
"""
from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import ScanFormatError
from ..scan import FaceScan
from ._raster import interpolate_corners, rasterize_triangles
from ._util import check_texture_name, finish_scan, read_bytes, read_image, resolve_texture, write_image
from .landmarks import (
    canonical_bosphorus_label,
    detect_scheme,
    ibug68_to_bosphorus,
    read_lm2,
    read_lm3,
    write_lm2,
    write_lm3,
)
from .names import parse_bosphorus_name

BNT_STEP_MM = 0.76
BNT_ZMIN = -1e9


@dataclass
class BntGrid:
    """A Bosphorus range grid; x, y, z, u, v are (nrows, ncols) float64 (mm; u, v in [0, 1] top-left).

    Row 0 is the chin (lowest y). Background nodes have z == zmin (and x == y == zmin).
    """

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    u: np.ndarray
    v: np.ndarray
    zmin: float = BNT_ZMIN
    texture_name: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        """(nrows, ncols)."""
        return tuple(self.z.shape)  # type: ignore[return-value]

    @property
    def valid(self) -> np.ndarray:
        """(nrows, ncols) bool, True where the node holds a measured point (z != zmin)."""
        return self.z != self.zmin


def parse_bnt(data: bytes, path: Path | None = None) -> BntGrid:
    """Decode the bytes of a ``.bnt`` file, checking n5 == 5*nrows*ncols and the exact size."""
    size = len(data)
    if size < 14:
        raise ScanFormatError(path, f"truncated header: {size} bytes, need at least 14")
    nrows, ncols = struct.unpack_from("<HH", data, 0)
    (zmin,) = struct.unpack_from("<d", data, 4)
    (name_len,) = struct.unpack_from("<H", data, 12)
    if size < 18 + name_len:
        raise ScanFormatError(path, f"truncated header: texture name of {name_len} bytes and n5 do not fit in {size} bytes")
    raw_name = data[14:14 + name_len]
    try:
        name = raw_name.decode("ascii")
    except UnicodeDecodeError as exc:
        raise ScanFormatError(path, f"texture name {raw_name[:40]!r} is not ASCII") from exc
    (n5,) = struct.unpack_from("<I", data, 14 + name_len)
    if n5 != 5 * nrows * ncols:
        raise ScanFormatError(path, f"header says {nrows}x{ncols} points but n5 = {n5} (expected {5 * nrows * ncols})")
    expected = 18 + name_len + 8 * n5
    if size != expected:
        what = "truncated" if size < expected else "trailing bytes"
        raise ScanFormatError(path, f"file size {size} bytes does not match the header ({expected} bytes): {what}")
    if math.isnan(zmin):
        raise ScanFormatError(path, "zmin (background value) is NaN")
    n = nrows * ncols
    arr = np.frombuffer(data, dtype="<f8", count=n5, offset=18 + name_len).astype(np.float64).reshape(5, n)
    x, y, z, u, v = (a.reshape(nrows, ncols) for a in arr)
    return BntGrid(x=x, y=y, z=z, u=u, v=v, zmin=float(zmin), texture_name=name.rstrip("\x00"))


def read_bnt(path: str | Path) -> BntGrid:
    """Read a ``.bnt`` file into a `BntGrid`."""
    path = Path(path)
    return parse_bnt(read_bytes(path), path)


def encode_bnt(grid: BntGrid) -> bytes:
    """The bytes of a ``.bnt`` file for `grid`."""
    nrows, ncols = grid.shape
    if not (0 <= nrows < 65536 and 0 <= ncols < 65536):
        raise ValueError(f"grid {nrows}x{ncols} does not fit the uint16 header")
    name = grid.texture_name.encode("ascii")
    if len(name) >= 65536:
        raise ValueError("texture name too long")
    n5 = 5 * nrows * ncols
    body = np.stack([np.asarray(a, dtype="<f8").reshape(-1) for a in (grid.x, grid.y, grid.z, grid.u, grid.v)])
    return b"".join([struct.pack("<HHdH", nrows, ncols, grid.zmin, len(name)), name, struct.pack("<I", n5),
                     body.tobytes()])


def write_bnt(path: str | Path, grid: BntGrid) -> Path:
    """Write `grid` as a ``.bnt`` file."""
    path = Path(path)
    path.write_bytes(encode_bnt(grid))
    return path


def bnt_mesh(grid: BntGrid, path: Path | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Triangulate the valid nodes of a grid.

    Per cell, triangles (r,c)-(r+1,c)-(r,c+1) and (r+1,c)-(r+1,c+1)-(r,c+1) are kept when all three
    corners are valid, and wound so that their normals face +z. Returns (vertices (N, 3) mm,
    faces (F, 3), uv (N, 2) top-left, flat grid index (N,) of each vertex).
    """
    nrows, ncols = grid.shape
    valid = grid.valid.reshape(-1)
    flat = np.flatnonzero(valid)
    vertices = np.stack([grid.x.reshape(-1)[flat], grid.y.reshape(-1)[flat], grid.z.reshape(-1)[flat]], axis=1)
    if not np.all(np.isfinite(vertices)):
        bad = int((~np.isfinite(vertices)).any(axis=1).sum())
        raise ScanFormatError(path, f"{bad} grid points have NaN or infinite coordinates")
    uv = np.stack([grid.u.reshape(-1)[flat], grid.v.reshape(-1)[flat]], axis=1)
    remap = np.full(nrows * ncols, -1, dtype=np.int64)
    remap[flat] = np.arange(len(flat))
    if nrows < 2 or ncols < 2:
        return vertices, np.zeros((0, 3), dtype=np.int64), uv, flat
    ids = np.arange(nrows * ncols).reshape(nrows, ncols)
    a, b, c, d = ids[:-1, :-1].ravel(), ids[1:, :-1].ravel(), ids[:-1, 1:].ravel(), ids[1:, 1:].ravel()
    tris = np.concatenate([np.stack([a, b, c], 1), np.stack([b, d, c], 1)])
    tris = tris[valid[tris].all(axis=1)]
    faces = remap[tris]
    p = vertices[faces]
    with np.errstate(all="ignore"):
        cz = (p[:, 1, 0] - p[:, 0, 0]) * (p[:, 2, 1] - p[:, 0, 1]) - (p[:, 2, 0] - p[:, 0, 0]) * (p[:, 1, 1] - p[:, 0, 1])
    flip = cz < 0
    faces[flip] = faces[flip][:, ::-1]
    return vertices, faces, uv, flat


def _lift_2d(lm2: Mapping[str, np.ndarray], vertices: np.ndarray, uv: np.ndarray,
             size: tuple[int, int]) -> dict[str, np.ndarray]:
    """3-D positions of 2-D texture landmarks: the vertex whose texture pixel is nearest."""
    from scipy.spatial import cKDTree

    if not lm2 or len(vertices) == 0:
        return {}
    h, w = size
    tree = cKDTree(uv * np.array([w, h], dtype=np.float64))
    _, idx = tree.query(np.stack(list(lm2.values())))
    return {k: vertices[i].copy() for k, i in zip(lm2, np.atleast_1d(idx), strict=True)}


def read_bosphorus(path: str | Path, *, load_texture: bool = True, landmarks: bool = True) -> FaceScan:
    """Read a Bosphorus scan: ``.bnt`` grid + ``.png`` texture (named in the header) + ``.lm3``/``.lm2``.

    Vertices are the valid grid points (mm), triangulated per grid cell; `corner_uv` comes from the
    per-point u, v. Landmarks (scheme 'bosphorus', canonical labels) come from the ``.lm3`` beside
    the scan; without it, ``.lm2`` points are lifted to the vertex of nearest texture position.
    The ``.lm2`` pixels are kept in ``metadata['landmarks_2d']``. ``metadata['grid_index']`` holds
    each vertex's flat grid index (row * ncols + col) and ``metadata['grid_shape']`` (nrows, ncols).
    """
    path = Path(path)
    grid = read_bnt(path)
    vertices, faces, uv, flat = bnt_mesh(grid, path)
    if len(vertices) == 0:
        raise ScanFormatError(path, "no valid points: every z equals zmin (empty scan)")
    texture = corner_uv = None
    tex_path: Path | None = None
    if grid.texture_name:
        if load_texture:
            tex_path = resolve_texture(path, grid.texture_name)
            texture = read_image(tex_path)
            if not np.all(np.isfinite(uv)):
                raise ScanFormatError(path, "texture coordinates u, v of valid points are NaN or infinite")
            corner_uv = uv[faces]
        else:
            check_texture_name(path, grid.texture_name)
    meta: dict[str, Any] = dict(parse_bosphorus_name(path.name) or {})
    meta.update(source_path=str(path), format="bosphorus-bnt", grid_shape=grid.shape, grid_index=flat,
                zmin=grid.zmin, texture_name=grid.texture_name,
                texture_path=None if tex_path is None else str(tex_path))
    scan = FaceScan(vertices=vertices, faces=faces, texture=texture, corner_uv=corner_uv, metadata=meta)
    if landmarks:
        lm3, lm2 = path.with_suffix(".lm3"), path.with_suffix(".lm2")
        if lm2.is_file():
            meta["landmarks_2d"] = read_lm2(lm2)
        if lm3.is_file():
            scan.landmarks = read_lm3(lm3)
            meta["landmark_path"] = str(lm3)
        elif "landmarks_2d" in meta and texture is not None:
            scan.landmarks = _lift_2d(meta["landmarks_2d"], vertices, uv, texture.shape[:2])
            meta["landmark_path"] = str(lm2)
            meta["landmarks_from_2d"] = True
        if scan.landmarks:
            scan.landmark_scheme = "bosphorus"
    return finish_scan(scan)


# ----------------------------------------------------------------------------------------------- writing
def rasterize_scan(
    scan: FaceScan,
    *,
    step: float = BNT_STEP_MM,
    zmin: float = BNT_ZMIN,
    texture: Literal["auto", "keep", "raster"] = "auto",
    margin: int = 1,
) -> tuple[BntGrid, np.ndarray]:
    """Sample the front-most surface of `scan` on a regular x/y grid (the ``.bnt`` model).

    Node (r, c) sits at x = x0 + c*step, y = y0 + r*step (row 0 lowest y); z is interpolated on the
    covering triangle (largest z wins), background nodes get x = y = z = zmin and u = v = 0.
    texture='keep' interpolates `corner_uv` into the scan's own texture; 'raster' paints a new
    (nrows, ncols, 3) upright image from the texture / vertex colours (grey without either) with
    one pixel per node; 'auto' keeps a texture when there is one.
    Returns (grid, texture image (H, W, 3) uint8).
    """
    if step <= 0:
        raise ValueError("step must be positive")
    v = np.asarray(scan.vertices, dtype=np.float64)
    f = np.asarray(scan.faces, dtype=np.int64)
    if len(v) == 0 or len(f) == 0:
        raise ValueError("cannot rasterise a scan without triangles")
    lo, hi = v[:, :2].min(0) - margin * step, v[:, :2].max(0) + margin * step
    ncols, nrows = (np.ceil((hi - lo) / step).astype(int) + 1).tolist()
    if nrows >= 65536 or ncols >= 65536:
        raise ValueError(f"grid {nrows}x{ncols} too large for a .bnt; use a larger step")
    tri = (v[f][:, :, :2] - lo) / step
    tri_id, bary = rasterize_triangles(tri, (nrows, ncols), depth=v[f][:, :, 2])
    hit = tri_id >= 0
    xs = lo[0] + step * np.arange(ncols)
    ys = lo[1] + step * np.arange(nrows)
    gx, gy = np.meshgrid(xs, ys)
    z = interpolate_corners(tri_id, bary, v[f][:, :, 2:3])[..., 0]
    mode = texture
    if mode == "auto":
        mode = "keep" if scan.texture is not None and scan.corner_uv is not None else "raster"
    if mode == "keep":
        if scan.texture is None or scan.corner_uv is None:
            raise ValueError("texture='keep' needs a textured scan")
        uvs = interpolate_corners(tri_id, bary, np.asarray(scan.corner_uv, dtype=np.float64))
        image = np.asarray(scan.texture, dtype=np.uint8)
    elif mode == "raster":
        if scan.texture is not None and scan.corner_uv is not None:
            tex = np.asarray(scan.texture)
            uvs = interpolate_corners(tri_id, bary, np.asarray(scan.corner_uv, dtype=np.float64))
            h, w = tex.shape[:2]
            cols = np.clip((uvs[..., 0] * w).astype(int), 0, w - 1)
            rows = np.clip((uvs[..., 1] * h).astype(int), 0, h - 1)
            rgb = tex[rows, cols].astype(np.float64)
        elif scan.vertex_colors is not None:
            rgb = interpolate_corners(tri_id, bary, np.asarray(scan.vertex_colors, dtype=np.float64)[f])
        else:
            rgb = np.full((nrows, ncols, 3), 160.0)
        rgb[~hit] = 0
        image = np.clip(np.round(rgb[::-1]), 0, 255).astype(np.uint8)
        cc, rr = np.meshgrid(np.arange(ncols), np.arange(nrows))
        uvs = np.stack([(cc + 0.5) / ncols, (nrows - 1 - rr + 0.5) / nrows], axis=-1)
    else:
        raise ValueError(f"texture must be 'auto', 'keep' or 'raster', got {texture!r}")
    grid = BntGrid(
        x=np.where(hit, gx, zmin), y=np.where(hit, gy, zmin), z=np.where(hit, z, zmin),
        u=np.where(hit, uvs[..., 0], 0.0), v=np.where(hit, uvs[..., 1], 0.0), zmin=zmin,
    )
    return grid, image


def bosphorus_landmarks(scan: FaceScan) -> dict[str, np.ndarray]:
    """The scan's landmarks as Bosphorus labels: unchanged for 'bosphorus', mapped from 'ibug68', else {}."""
    if not scan.landmarks:
        return {}
    scheme = detect_scheme(list(scan.landmarks))
    if scheme == "bosphorus":
        return {canonical_bosphorus_label(k): np.asarray(p, dtype=np.float64) for k, p in scan.landmarks.items()}
    if scheme == "ibug68":
        return ibug68_to_bosphorus(scan.landmarks)
    return {}


def write_bosphorus(
    scan: FaceScan,
    directory: str | Path,
    name: str,
    *,
    step: float = BNT_STEP_MM,
    zmin: float = BNT_ZMIN,
    texture: Literal["auto", "keep", "raster"] = "auto",
    landmarks: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write `scan` as a Bosphorus scan: ``<name>.bnt``, ``<name>.png``, ``<name>.lm3``, ``<name>.lm2``.

    The mesh is rasterised to an x/y grid of `step` mm (see `rasterize_scan`). Landmarks (given,
    or the scan's own when Bosphorus-labelled or iBUG-68) go to ``.lm3`` unchanged and to ``.lm2``
    as the texture pixel of the nearest valid grid node; without landmarks no ``.lm*`` is written.
    Returns the written paths keyed by 'bnt', 'png', 'lm3', 'lm2'.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = name[:-4] if name.lower().endswith(".bnt") else name
    grid, image = rasterize_scan(scan, step=step, zmin=zmin, texture=texture)
    grid.texture_name = f"{stem}.png"
    out = {"bnt": write_bnt(directory / f"{stem}.bnt", grid), "png": directory / grid.texture_name}
    write_image(out["png"], image)
    lms = dict(landmarks) if landmarks is not None else bosphorus_landmarks(scan)
    if lms:
        out["lm3"] = write_lm3(directory / f"{stem}.lm3", lms, comment="written by afnetm_timm")
        from scipy.spatial import cKDTree

        valid = grid.valid
        pts = np.stack([grid.x[valid], grid.y[valid], grid.z[valid]], axis=1)
        uv = np.stack([grid.u[valid], grid.v[valid]], axis=1)
        _, idx = cKDTree(pts).query(np.stack([np.asarray(p, dtype=np.float64) for p in lms.values()]))
        h, w = image.shape[:2]
        px = uv[np.atleast_1d(idx)] * np.array([w, h])
        out["lm2"] = write_lm2(directory / f"{stem}.lm2", dict(zip(lms, px, strict=True)))
    return out
