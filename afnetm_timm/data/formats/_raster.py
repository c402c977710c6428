"""Vectorised scan conversion of 2-D triangles onto a regular grid, with an optional z-buffer.

The one triangle rasteriser of the package (scan readers and writers, preprocessing, synthetic
textures). Conventions: corners are given in grid units, node (row r, column c) sits at
(x=c, y=r), i.e. pixel centres at integer coordinates; a node is covered when its barycentric
coordinates are all >= -``eps`` (nodes on an edge belong to both triangles); degenerate
triangles (zero area, non-finite corners) cover nothing. The module is private; use the
functions through `afnetm_timm.data.formats`.
"""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["coverage_mask", "interpolate_corners", "rasterize_triangles"]


# Triangles whose bounding box spans at most this many nodes per side (almost all of a scan
# mesh) are scanned offset by offset over all of them at once; larger ones node by node.
_SMALL = 4


def _fragments(
    tri: np.ndarray, shape: tuple[int, int], eps: float, chunk: int, max_bbox_px: int | None
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """Covered (triangle id, flat node index, l1, l2) in batches of about ``chunk`` candidates at most.

    ``l0 = 1 - l1 - l2``. Within a batch, fragments are in no particular order.
    """
    nrows, ncols = shape
    tri = np.asarray(tri, dtype=np.float64).reshape(-1, 3, 2)
    if tri.shape[0] == 0 or nrows * ncols == 0:
        return
    ax, bx, cx = (np.ascontiguousarray(tri[:, k, 0]) for k in range(3))
    ay, by, cy = (np.ascontiguousarray(tri[:, k, 1]) for k in range(3))
    with np.errstate(invalid="ignore"):  # (a reduction over an axis of length 3 is slow)
        c0 = np.clip(np.ceil(np.minimum(np.minimum(ax, bx), cx) - 1e-7), 0, ncols)
        c1 = np.clip(np.floor(np.maximum(np.maximum(ax, bx), cx) + 1e-7), -1, ncols - 1)
        r0 = np.clip(np.ceil(np.minimum(np.minimum(ay, by), cy) - 1e-7), 0, nrows)
        r1 = np.clip(np.floor(np.maximum(np.maximum(ay, by), cy) + 1e-7), -1, nrows - 1)
    ex1, ey1 = bx - ax, by - ay
    ex2, ey2 = cx - ax, cy - ay
    den = ex1 * ey2 - ex2 * ey1
    good = np.isfinite(den) & (np.abs(den) > 1e-12) & np.isfinite(c0 + c1 + r0 + r1)
    w = np.where(good, np.maximum(c1 - c0 + 1, 0), 0).astype(np.int64)
    h = np.where(good, np.maximum(r1 - r0 + 1, 0), 0).astype(np.int64)
    counts = w * h
    if max_bbox_px is not None:
        counts[counts > max_bbox_px] = 0
    ids = np.flatnonzero(counts)
    if ids.size == 0:
        return
    counts, w, h = counts[ids], w[ids], h[ids]
    c0, r0 = c0[ids].astype(np.int64), r0[ids].astype(np.int64)
    # barycentrics as linear functions of the node position: l = a * col + b * row + k
    inv = 1.0 / den[ids]
    ax, ay, ex1, ey1, ex2, ey2 = ax[ids], ay[ids], ex1[ids], ey1[ids], ex2[ids], ey2[ids]
    a1, b1 = ey2 * inv, -ex2 * inv
    a2, b2 = -ey1 * inv, ex1 * inv
    k1 = -(a1 * ax + b1 * ay)
    k2 = -(a2 * ax + b2 * ay)

    small = (w <= _SMALL) & (h <= _SMALL)
    if small.any():
        order = np.flatnonzero(small)
        order = order[np.argsort(-w[order], kind="stable")]  # widest first: "w > i" is a prefix
        step = max(1, chunk // (_SMALL * _SMALL))
        for start in range(0, order.size, step):
            s = order[start : start + step]
            batch = _small_fragments(
                ids[s], w[s], h[s], a1[s], b1[s], a2[s], b2[s],
                a1[s] * c0[s] + b1[s] * r0[s] + k1[s],  # l1 and l2 at the bounding box corner
                a2[s] * c0[s] + b2[s] * r0[s] + k2[s],
                r0[s] * ncols + c0[s], ncols, eps,
            )
            if batch is not None:
                yield batch
        keep = ~small
        ids, counts, w, c0, r0 = ids[keep], counts[keep], w[keep], c0[keep], r0[keep]
        a1, b1, a2, b2, k1, k2 = a1[keep], b1[keep], a2[keep], b2[keep], k1[keep], k2[keep]
    ends = np.cumsum(counts)
    first = 0
    while first < len(ids):
        # take triangles until the candidate count reaches `chunk` (at least one triangle)
        last = max(int(np.searchsorted(ends, ends[first] - counts[first] + chunk, side="right")), first + 1)
        sl = slice(first, last)
        cnt = counts[sl]
        total = int(cnt.sum())
        local = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        wk = np.repeat(w[sl], cnt)
        rows = local // wk
        cols = local - rows * wk
        cols += np.repeat(c0[sl], cnt)
        rows += np.repeat(r0[sl], cnt)
        fc, fr = cols.astype(np.float64), rows.astype(np.float64)
        l1 = np.repeat(a1[sl], cnt) * fc
        l1 += np.repeat(b1[sl], cnt) * fr
        l1 += np.repeat(k1[sl], cnt)
        l2 = np.repeat(a2[sl], cnt) * fc
        l2 += np.repeat(b2[sl], cnt) * fr
        l2 += np.repeat(k2[sl], cnt)
        inside = (l1 >= -eps) & (l2 >= -eps) & (l1 + l2 <= 1.0 + eps)
        tid = np.repeat(ids[sl], cnt)[inside]
        first = last
        if tid.size:
            yield tid, rows[inside] * ncols + cols[inside], l1[inside], l2[inside]


def _small_fragments(
    tid: np.ndarray, w: np.ndarray, h: np.ndarray, a1: np.ndarray, b1: np.ndarray, a2: np.ndarray,
    b2: np.ndarray, base1: np.ndarray, base2: np.ndarray, base_pix: np.ndarray, ncols: int, eps: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """`_fragments` of triangles with small bounding boxes, sorted widest first: node offset
    (i, j) of every box is tested for all the triangles at once."""
    parts: list[tuple[np.ndarray, ...]] = []
    for i in range(_SMALL):
        n = int(np.count_nonzero(w > i))  # a prefix, since the widest come first
        if n == 0:
            break
        l1 = base1[:n] + i * a1[:n]
        l2 = base2[:n] + i * a2[:n]
        for j in range(_SMALL):
            if j:
                l1 += b1[:n]
                l2 += b2[:n]
            hit = np.flatnonzero((l1 >= -eps) & (l2 >= -eps) & (l1 + l2 <= 1.0 + eps) & (h[:n] > j))
            if hit.size:
                parts.append((tid[hit], base_pix[hit] + (j * ncols + i), l1[hit], l2[hit]))
    if not parts:
        return None
    out = tuple(np.concatenate(c) for c in zip(*parts, strict=True))
    return out  # type: ignore[return-value]


def rasterize_triangles(
    tri: np.ndarray,
    shape: tuple[int, int],
    depth: np.ndarray | None = None,
    *,
    eps: float = 1e-9,
    chunk: int = 4_000_000,
    max_bbox_px: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Find, for each grid node, the covering triangle (front-most by `depth`) and its barycentrics.

    Args:
        tri: (F, 3, 2) corner positions in grid units: node (r, c) sits at (x=c, y=r).
        shape: (nrows, ncols) of the grid.
        depth: (F, 3) per-corner depth; the largest interpolated depth wins (ties: the lowest
            triangle id). None: lowest triangle id wins.
        eps: tolerance of the inside test (grid units, relative to barycentrics).
        chunk: maximum number of candidate (triangle, node) pairs processed at once.
        max_bbox_px: triangles whose bounding box holds more nodes are skipped (None: no limit).

    Returns:
        (tri_id (nrows, ncols) int64, -1 where no triangle covers the node,
         bary (nrows, ncols, 3) float64 barycentric weights of the triangle's corners, 0 where uncovered).
    """
    nrows, ncols = shape
    n_pix = nrows * ncols
    best_id = np.full(n_pix, -1, dtype=np.int64)
    best_z = np.full(n_pix, -np.inf)
    best_bary = np.zeros((n_pix, 3))
    dz = None if depth is None else np.asarray(depth, dtype=np.float64).reshape(-1, 3)
    for tid, pix, l1, l2 in _fragments(tri, shape, eps, chunk, max_bbox_px):
        l0 = 1.0 - l1 - l2
        if dz is None:
            z = -tid.astype(np.float64)
        else:
            d = dz[tid]
            z = l0 * d[:, 0] + l1 * d[:, 1] + l2 * d[:, 2]
        order = np.lexsort((tid, -z, pix))  # by node, front-most first, then lowest id
        pix_s = pix[order]
        keep = np.ones(len(order), dtype=bool)
        keep[1:] = pix_s[1:] != pix_s[:-1]
        sel = order[keep]
        p = pix[sel]
        zs, old = z[sel], best_z[p]
        better = (zs > old) | ((zs == old) & (tid[sel] < best_id[p]))
        sel, p = sel[better], p[better]
        best_z[p] = z[sel]
        best_id[p] = tid[sel]
        best_bary[p] = np.stack([l0[sel], l1[sel], l2[sel]], axis=1)
    return best_id.reshape(shape), best_bary.reshape(nrows, ncols, 3)


def coverage_mask(
    tri: np.ndarray,
    shape: tuple[int, int],
    *,
    eps: float = 1e-9,
    chunk: int = 4_000_000,
    max_bbox_px: int | None = None,
) -> np.ndarray:
    """(nrows, ncols) bool: nodes covered by any triangle (`rasterize_triangles` ``tri_id >= 0``, faster)."""
    covered = np.zeros(shape[0] * shape[1], dtype=bool)
    for _, pix, _, _ in _fragments(tri, shape, eps, chunk, max_bbox_px):
        covered[pix] = True
    return covered.reshape(shape)


def interpolate_corners(
    tri_id: np.ndarray, bary: np.ndarray, corner_values: np.ndarray, fill: float = 0.0
) -> np.ndarray:
    """Interpolate per-corner values (F, 3) or (F, 3, C) at rasterised nodes; uncovered nodes get
    ``fill``. Returns (...) or (..., C)."""
    vals = np.asarray(corner_values, dtype=np.float64)
    out = np.full(tri_id.shape + vals.shape[2:], fill, dtype=np.float64)
    hit = tri_id >= 0
    t = tri_id[hit]
    out[hit] = np.einsum("nk,nk...->n...", bary[hit], vals[t])
    return out
