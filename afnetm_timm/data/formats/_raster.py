"""Vectorised z-buffer rasterisation of 2-D triangles onto a regular grid (not public API)."""
from __future__ import annotations

import numpy as np


def rasterize_triangles(
    tri: np.ndarray,
    shape: tuple[int, int],
    depth: np.ndarray | None = None,
    *,
    eps: float = 1e-9,
    chunk: int = 4_000_000,
) -> tuple[np.ndarray, np.ndarray]:
    """Find, for each grid node, the covering triangle (front-most by `depth`) and its barycentrics.

    Args:
        tri: (F, 3, 2) corner positions in grid units: node (r, c) sits at (x=c, y=r).
        shape: (nrows, ncols) of the grid.
        depth: (F, 3) per-corner depth; the largest interpolated depth wins. None: lowest triangle id wins.
        eps: tolerance of the inside test (grid units, relative to barycentrics).
        chunk: maximum number of candidate (triangle, node) pairs processed at once.

    Returns:
        (tri_id (nrows, ncols) int64, -1 where no triangle covers the node,
         bary (nrows, ncols, 3) float64 barycentric weights of the triangle's corners, 0 where uncovered).
    """
    nrows, ncols = shape
    tri = np.asarray(tri, dtype=np.float64)
    n_pix = nrows * ncols
    best_id = np.full(n_pix, -1, dtype=np.int64)
    best_z = np.full(n_pix, -np.inf)
    best_bary = np.zeros((n_pix, 3))
    if tri.shape[0] == 0 or n_pix == 0:
        return best_id.reshape(shape), best_bary.reshape(nrows, ncols, 3)
    gx, gy = tri[..., 0], tri[..., 1]
    c0 = np.clip(np.ceil(gx.min(1) - 1e-7), 0, ncols).astype(np.int64)
    c1 = np.clip(np.floor(gx.max(1) + 1e-7), -1, ncols - 1).astype(np.int64)
    r0 = np.clip(np.ceil(gy.min(1) - 1e-7), 0, nrows).astype(np.int64)
    r1 = np.clip(np.floor(gy.max(1) + 1e-7), -1, nrows - 1).astype(np.int64)
    ax, ay = gx[:, 0], gy[:, 0]
    ex1, ey1 = gx[:, 1] - ax, gy[:, 1] - ay
    ex2, ey2 = gx[:, 2] - ax, gy[:, 2] - ay
    den = ex1 * ey2 - ex2 * ey1
    w = np.maximum(c1 - c0 + 1, 0)
    h = np.maximum(r1 - r0 + 1, 0)
    counts = np.where(np.isfinite(den) & (np.abs(den) > 1e-12), w * h, 0)
    ends = np.cumsum(counts)
    starts_all = ends - counts
    first = 0
    while first < len(counts):
        # take triangles until the candidate count reaches `chunk` (at least one triangle)
        last = int(np.searchsorted(ends, starts_all[first] + chunk, side="right"))
        last = max(last, first + 1)
        ids = np.arange(first, last)
        cnt = counts[ids]
        total = int(cnt.sum())
        first = last
        if total == 0:
            continue
        tid = np.repeat(ids, cnt)
        k = np.arange(total) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        cc = c0[tid] + k % w[tid]
        rr = r0[tid] + k // w[tid]
        px, py = cc - ax[tid], rr - ay[tid]
        d = den[tid]
        l1 = (px * ey2[tid] - ex2[tid] * py) / d
        l2 = (ex1[tid] * py - px * ey1[tid]) / d
        l0 = 1.0 - l1 - l2
        inside = (l0 >= -eps) & (l1 >= -eps) & (l2 >= -eps)
        if not inside.any():
            continue
        tid, l0, l1, l2 = tid[inside], l0[inside], l1[inside], l2[inside]
        pix = rr[inside] * ncols + cc[inside]
        if depth is None:
            z = -tid.astype(np.float64)
        else:
            dz = depth[tid]
            z = l0 * dz[:, 0] + l1 * dz[:, 1] + l2 * dz[:, 2]
        order = np.lexsort((-z, pix))
        pix_s = pix[order]
        keep = np.ones(len(order), dtype=bool)
        keep[1:] = pix_s[1:] != pix_s[:-1]
        sel = order[keep]
        p = pix[sel]
        better = z[sel] > best_z[p]
        sel, p = sel[better], p[better]
        best_z[p] = z[sel]
        best_id[p] = tid[sel]
        best_bary[p] = np.stack([l0[sel], l1[sel], l2[sel]], axis=1)
    return best_id.reshape(shape), best_bary.reshape(nrows, ncols, 3)


def interpolate_corners(tri_id: np.ndarray, bary: np.ndarray, corner_values: np.ndarray) -> np.ndarray:
    """Interpolate per-corner values (F, 3, C) at rasterised nodes; uncovered nodes get 0. Returns (..., C)."""
    vals = np.asarray(corner_values, dtype=np.float64)
    out = np.zeros(tri_id.shape + vals.shape[2:])
    hit = tri_id >= 0
    t = tri_id[hit]
    out[hit] = np.einsum("nk,nk...->n...", bary[hit], vals[t])
    return out
