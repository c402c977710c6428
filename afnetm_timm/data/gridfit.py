"""Regularised least-squares surface fitting on a regular grid ("gridfit").

A Python port of John D'Errico's *gridfit* (MATLAB File Exchange 8998, BSD licence), the
resampling step AFNet-M applies to every 3D scan. Given scattered samples ``values`` at sites
``(x, y)``, it finds the node values ``z`` of a regular ``ny x nx`` grid that minimise::

    || A z - values ||^2  +  (smoothness * NA / NR)^2 * || Areg z ||^2

``A`` interpolates the grid at the sites (``interp``), ``Areg`` penalises roughness
(``regularizer``), ``NA = ||A||_1`` and ``NR = ||Areg||_1`` (maximum absolute column sums), so
``smoothness`` is dimension free (1 is D'Errico's default; larger is smoother). Unknowns are
numbered y fastest, ``ind = iy + ny * ix`` (0-based), and results are returned as ``(ny, nx)``
arrays with row ``iy`` at ``ynodes[iy]`` (row 0 = smallest y).

The system matrix depends only on the sites and the grid, so several value sets (depth and
R, G, B) are fitted together with one assembly: pass ``values`` of shape ``(N, k)``.

Two solvers produce the same solution:

* ``solver="reference"``: the plain port, ``scipy.sparse.linalg.spsolve`` on the normal equations
  ``(A'A + lambda^2 Areg'Areg) z = A' values`` (about 1 s for a 224 x 224 grid).
* ``solver="fast"`` (default): preconditioned conjugate gradients on the same normal equations.
  The preconditioner is a two-grid cycle: an exact Cholesky solve of the Galerkin coarse-grid
  operator (every other node) with LAPACK's banded Cholesky, then three Chebyshev-accelerated
  Jacobi steps on the fine grid (in float32; the outer CG is float64, with the flexible
  Polak-Ribiere beta since this preconditioner is not symmetric). Without a pre-smoothing step it
  needs one matrix product less per iteration than the symmetric cycle and converges at least as
  fast (more accurately per iteration, on every regulariser and smoothness tried). The coarse
  factorisation is shared by all value columns. CG stops when the estimated remaining error --
  the last node update times rho / (1 - rho), rho its observed contraction per iteration -- is
  below ``tol`` times the value range of every column (2e-4: 0.012 mm for a 60 mm deep face
  crop; measured errors are smaller), typically after 5-6 iterations. Small grids (<= 6000
  nodes) are solved directly.

Measured with ``benchmarks/bench_gridfit.py`` (224 x 224, depth + RGB, one thread, SFM face
with 8k and 40k points, idle 2-core machine): 92 / 117 ms median for the fast solver against
0.82 / 0.90 s for the reference, largest difference 0.002 mm (depth) and 0.05 levels (RGB).
The default gradient regulariser with smoothness 1 is the tuned case; smoothness 0.1 needs
about 9 iterations, 'laplacian' about 20 (0.3 s), still exact to 0.01 mm. Direct sparse
factorisations (SuperLU with nested-dissection ordering, LAPACK band Cholesky) cost 0.5-1 s at
this size, and deeper multigrid hierarchies converge slowly on the smooth extrapolation into
the empty corners of the window, which is why the coarse grid is solved exactly (its banded
Cholesky, about 25 ms, is the largest single cost of a fit).
"""
from __future__ import annotations

import contextlib
import ctypes
import glob
import os
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np
import scipy.sparse as sp
from scipy.linalg import LinAlgError, cho_solve_banded, cholesky_banded
from scipy.sparse.linalg import splu, spsolve

__all__ = [
    "GridfitProblem",
    "ImageGrid",
    "blas_threads",
    "gridfit",
    "interpolation_matrix",
    "regularizer_matrix",
]

Interp = Literal["triangle", "bilinear", "nearest"]
Regularizer = Literal["gradient", "laplacian", "springs"]
Solver = Literal["fast", "reference"]
Outside = Literal["drop", "extend", "error"]

_INTERPS = ("triangle", "bilinear", "nearest")
_REGULARIZERS = ("gradient", "laplacian", "springs")
# Grids with at most this many nodes are solved directly by the fast solver as well.
_DIRECT_MAX_NODES = 6000


# --------------------------------------------------------------------------------------------
# BLAS threads
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _openblas_controls() -> tuple:
    """(get, set) thread-count functions of the OpenBLAS libraries bundled with scipy/numpy."""
    import numpy
    import scipy

    found = []
    for pkg in (scipy, numpy):
        base = os.path.dirname(pkg.__file__)
        for folder in (base + ".libs", os.path.join(base, ".dylibs"), base):
            for path in glob.glob(os.path.join(folder, "*openblas*")):
                try:
                    lib = ctypes.CDLL(path)
                except OSError:
                    continue
                for prefix in ("scipy_", ""):
                    for suffix in ("", "64_"):
                        get = getattr(lib, f"{prefix}openblas_get_num_threads{suffix}", None)
                        put = getattr(lib, f"{prefix}openblas_set_num_threads{suffix}", None)
                        if get is not None and put is not None:
                            get.restype = ctypes.c_int
                            put.argtypes = [ctypes.c_int]
                            found.append((get, put))
    return tuple(found)


@lru_cache(maxsize=1)
def _threadpool_controller():
    """A threadpoolctl controller, created once (finding the libraries takes milliseconds), or None."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


@contextlib.contextmanager
def blas_threads(n: int | None) -> Iterator[None]:
    """Temporarily limit BLAS/LAPACK threads (``None``: leave them alone).

    The banded Cholesky solves of gridfit are too small to gain from threads, and threaded
    OpenBLAS becomes very slow when the cores are shared (e.g. data-loader workers): a 224 x 224
    fit went from 0.3 s to several seconds. Uses threadpoolctl when installed, else the
    thread-count functions of the OpenBLAS bundled with scipy/numpy; otherwise does nothing.
    The limit is process-wide while active.
    """
    if n is None:
        yield
        return
    controller = _threadpool_controller()
    if controller is not None:
        with controller.limit(limits=int(n), user_api="blas"):
            yield
        return
    controls = _openblas_controls()
    old = [get() for get, _ in controls]
    for _, put in controls:
        put(int(n))
    try:
        yield
    finally:
        for (_, put), value in zip(controls, old, strict=True):
            put(value)


# --------------------------------------------------------------------------------------------
# Input checking
# --------------------------------------------------------------------------------------------
def _as_nodes(nodes: np.ndarray | Sequence[float] | int, data: np.ndarray, name: str) -> np.ndarray:
    """Node vector from an explicit vector or a node count (equally spaced over the data range)."""
    if np.isscalar(nodes) and float(nodes) == int(nodes):  # type: ignore[arg-type]
        count = int(nodes)  # type: ignore[arg-type]
        if count < 3:
            raise ValueError(f"{name} must give at least 3 nodes, got {count}")
        lo, hi = float(np.min(data)), float(np.max(data))
        if not hi > lo:
            raise ValueError(f"cannot derive {name} from data with no extent along that axis")
        return np.linspace(lo, hi, count)
    out = np.asarray(nodes, dtype=np.float64).ravel()
    if out.size < 3:
        raise ValueError(f"{name} must have at least 3 nodes, got {out.size}")
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if np.any(np.diff(out) <= 0):
        raise ValueError(f"{name} must be strictly increasing")
    return out


def _check_sites(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same number of points, got {x.size} and {y.size}")
    if x.size < 3:
        raise ValueError(f"gridfit needs at least 3 data points, got {x.size}")
    bad = ~(np.isfinite(x) & np.isfinite(y))
    if bad.any():
        raise ValueError(f"{int(bad.sum())} data sites have NaN or infinite x or y")
    return x, y


def _smoothness_pair(smoothness: float | Sequence[float]) -> tuple[float, float, float]:
    """(overall, x-relative, y-relative) stiffness as in D'Errico's code."""
    s = np.atleast_1d(np.asarray(smoothness, dtype=np.float64)).ravel()
    if s.size not in (1, 2) or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"smoothness must be a positive scalar or an (x, y) pair, got {smoothness!r}")
    if s.size == 1:
        return float(s[0]), 1.0, 1.0
    overall = float(np.sqrt(s[0] * s[1]))
    return overall, float(s[0] / overall), float(s[1] / overall)


# --------------------------------------------------------------------------------------------
# Matrices
# --------------------------------------------------------------------------------------------
def interpolation_matrix(
    x: np.ndarray,
    y: np.ndarray,
    xnodes: np.ndarray,
    ynodes: np.ndarray,
    interp: Interp = "triangle",
) -> sp.csr_matrix:
    """Sparse matrix ``A`` (N, nx*ny) interpolating grid node values at the sites ``(x, y)``.

    All sites must lie inside ``[xnodes[0], xnodes[-1]] x [ynodes[0], ynodes[-1]]``. Column
    ``iy + ny * ix`` belongs to node ``(xnodes[ix], ynodes[iy])``.

    * ``triangle``: each cell is split along its (0,0)-(1,1) diagonal; with local coordinates
      tx, ty in [0, 1], t1 = min(tx, ty), t2 = max(tx, ty), the weights 1 - t2, t1, t2 - t1 go
      to nodes ind, ind + ny + 1 and ind + L (L = ny if tx > ty else 1).
    * ``bilinear``: (1-tx)(1-ty), (1-tx)ty, tx(1-ty), tx*ty at ind, ind+1, ind+ny, ind+ny+1.
    * ``nearest``: weight 1 at the nearest corner of the cell.
    """
    if interp not in _INTERPS:
        raise ValueError(f"interp must be one of {_INTERPS}, got {interp!r}")
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    nx, ny = len(xnodes), len(ynodes)
    n = x.size
    dx = np.diff(xnodes)
    dy = np.diff(ynodes)
    ix = np.clip(np.searchsorted(xnodes, x, side="right") - 1, 0, nx - 2)
    iy = np.clip(np.searchsorted(ynodes, y, side="right") - 1, 0, ny - 2)
    ind = iy + ny * ix
    tx = np.clip((x - xnodes[ix]) / dx[ix], 0.0, 1.0)
    ty = np.clip((y - ynodes[iy]) / dy[iy], 0.0, 1.0)
    if interp == "triangle":
        t1 = np.minimum(tx, ty)
        t2 = np.maximum(tx, ty)
        step = np.where(tx > ty, ny, 1)
        cols = np.stack([ind, ind + ny + 1, ind + step], axis=1)
        vals = np.stack([1.0 - t2, t1, t2 - t1], axis=1)
    elif interp == "bilinear":
        cols = np.stack([ind, ind + 1, ind + ny, ind + ny + 1], axis=1)
        vals = np.stack([(1 - tx) * (1 - ty), (1 - tx) * ty, tx * (1 - ty), tx * ty], axis=1)
    else:
        cols = (ind + np.rint(ty).astype(np.int64) + ny * np.rint(tx).astype(np.int64))[:, None]
        vals = np.ones((n, 1))
    k = cols.shape[1]
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    a = sp.csr_matrix((vals.ravel(), cols.ravel().astype(np.int64), indptr), shape=(n, nx * ny))
    a.sum_duplicates()
    return a


def regularizer_matrix(
    xnodes: np.ndarray,
    ynodes: np.ndarray,
    regularizer: Regularizer = "gradient",
    xy_stiffness: tuple[float, float] = (1.0, 1.0),
) -> sp.csr_matrix:
    """Sparse roughness operator ``Areg`` (rows, nx*ny), as in D'Errico's gridfit.

    Steps are divided by the mean node spacing of their axis. ``gradient`` stacks the non-uniform
    second differences along y (at interior y nodes, every column) and along x (interior x nodes,
    every row); ``laplacian`` sums the two stencils into one row per node; ``springs`` uses zero
    rest-length springs (first differences) to the y, x and both diagonal neighbours.
    ``xy_stiffness`` scales the x and y parts (from a two-element ``smoothness``).
    """
    if regularizer not in _REGULARIZERS:
        raise ValueError(f"regularizer must be one of {_REGULARIZERS}, got {regularizer!r}")
    xnodes = np.asarray(xnodes, dtype=np.float64)
    ynodes = np.asarray(ynodes, dtype=np.float64)
    nx, ny = len(xnodes), len(ynodes)
    ngrid = nx * ny
    dx = np.diff(xnodes) / np.mean(np.diff(xnodes))
    dy = np.diff(ynodes) / np.mean(np.diff(ynodes))
    sx, sy = xy_stiffness

    def second_diff(d: np.ndarray, centre: np.ndarray) -> np.ndarray:
        d1, d2 = d[centre - 1], d[centre]
        return np.stack([-2.0 / (d1 * (d1 + d2)), 2.0 / (d1 * d2), -2.0 / (d2 * (d1 + d2))], axis=1)

    def block(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, nrows: int) -> sp.csr_matrix:
        r = np.repeat(rows, cols.shape[1])
        return sp.csr_matrix((vals.ravel(), (r, cols.ravel())), shape=(nrows, ngrid))

    if regularizer in ("gradient", "laplacian"):
        ixg, iyg = np.meshgrid(np.arange(nx), np.arange(1, ny - 1), indexing="ij")
        ix, iy = ixg.ravel(), iyg.ravel()
        ind = iy + ny * ix
        ry = block(ind, np.stack([ind - 1, ind, ind + 1], 1), sy * second_diff(dy, iy), ngrid)
        ixg, iyg = np.meshgrid(np.arange(1, nx - 1), np.arange(ny), indexing="ij")
        ix, iy = ixg.ravel(), iyg.ravel()
        ind = iy + ny * ix
        rx = block(ind, np.stack([ind - ny, ind, ind + ny], 1), sx * second_diff(dx, ix), ngrid)
        if regularizer == "gradient":
            return sp.vstack([ry, rx], format="csr")
        return (ry + rx).tocsr()

    # springs
    parts = []
    ixg, iyg = np.meshgrid(np.arange(nx), np.arange(ny - 1), indexing="ij")
    ix, iy = ixg.ravel(), iyg.ravel()
    ind = iy + ny * ix
    stiff = sy / dy[iy]
    parts.append(block(np.arange(ind.size), np.stack([ind, ind + 1], 1), stiff[:, None] * [-1.0, 1.0], ind.size))
    ixg, iyg = np.meshgrid(np.arange(nx - 1), np.arange(ny), indexing="ij")
    ix, iy = ixg.ravel(), iyg.ravel()
    ind = iy + ny * ix
    stiff = sx / dx[ix]
    parts.append(block(np.arange(ind.size), np.stack([ind, ind + ny], 1), stiff[:, None] * [-1.0, 1.0], ind.size))
    ixg, iyg = np.meshgrid(np.arange(nx - 1), np.arange(ny - 1), indexing="ij")
    ix, iy = ixg.ravel(), iyg.ravel()
    ind = iy + ny * ix
    stiff = 1.0 / np.sqrt((dx[ix] / sx) ** 2 + (dy[iy] / sy) ** 2)
    rows = np.arange(ind.size)
    parts.append(block(rows, np.stack([ind, ind + ny + 1], 1), stiff[:, None] * [-1.0, 1.0], ind.size))
    parts.append(block(rows, np.stack([ind + 1, ind + ny], 1), stiff[:, None] * [-1.0, 1.0], ind.size))
    return sp.vstack(parts, format="csr")


# --------------------------------------------------------------------------------------------
# Caches of everything that depends only on the grid
# --------------------------------------------------------------------------------------------
@dataclass
class _GridCache:
    areg: sp.csr_matrix
    nr: float
    k_reg: sp.csr_matrix  # Areg' Areg
    prolong: sp.csr_matrix | None = None  # fine <- coarse, (nx*ny, nxc*nyc)
    restrict: sp.csr_matrix | None = None
    k_coarse: sp.csr_matrix | None = None  # P' (Areg'Areg) P
    prolong32: sp.csr_matrix | None = None  # float32 copies for the preconditioner
    restrict32: sp.csr_matrix | None = None
    coarse_shape: tuple[int, int] = (0, 0)


_CACHE: OrderedDict[tuple, _GridCache] = OrderedDict()
_CACHE_SIZE = 4


def _linear_prolongation_1d(n: int) -> tuple[sp.csr_matrix, int]:
    """Linear interpolation from every other node (plus the last one) to all ``n`` nodes.

    Index based (uniform in node number), which is what a Galerkin coarse space needs.
    """
    coarse = np.arange(0, n, 2)
    if coarse[-1] != n - 1:
        coarse = np.append(coarse, n - 1)
    nc = coarse.size
    fine = np.arange(n)
    j = np.clip(np.searchsorted(coarse, fine, side="right") - 1, 0, nc - 2)
    t = (fine - coarse[j]) / (coarse[j + 1] - coarse[j])
    rows = np.concatenate([fine, fine])
    cols = np.concatenate([j, j + 1])
    vals = np.concatenate([1.0 - t, t])
    keep = vals != 0
    p = sp.csr_matrix((vals[keep], (rows[keep], cols[keep])), shape=(n, nc))
    return p, nc


def _grid_cache(
    xnodes: np.ndarray, ynodes: np.ndarray, regularizer: str, xy_stiffness: tuple[float, float]
) -> _GridCache:
    key = (xnodes.tobytes(), ynodes.tobytes(), regularizer, xy_stiffness)
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    areg = regularizer_matrix(xnodes, ynodes, regularizer, xy_stiffness)  # type: ignore[arg-type]
    nr = float(abs(areg).sum(axis=0).max())
    entry = _GridCache(areg=areg, nr=nr, k_reg=(areg.T @ areg).tocsr())
    _CACHE[key] = entry
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return entry


def _two_grid_parts(entry: _GridCache, nx: int, ny: int) -> None:
    if entry.prolong is not None:
        return
    px, nxc = _linear_prolongation_1d(nx)
    py, nyc = _linear_prolongation_1d(ny)
    prolong = sp.kron(px, py, format="csr")  # y fastest on both grids
    entry.prolong = prolong
    entry.restrict = prolong.T.tocsr()
    entry.k_coarse = (entry.restrict @ entry.k_reg @ prolong).tocsr()
    entry.prolong32 = prolong.astype(np.float32)
    entry.restrict32 = entry.restrict.astype(np.float32)
    entry.coarse_shape = (nxc, nyc)


# --------------------------------------------------------------------------------------------
# Linear algebra helpers
# --------------------------------------------------------------------------------------------
class _BandedCholesky:
    """Exact SPD solve through LAPACK's banded Cholesky (``?pbtrf``).

    ``single=True`` factors in float32 (half the memory traffic; used inside the preconditioner
    only, where rounding is corrected by the outer CG); float64 and then a sparse LU are the
    fallbacks when the factorisation meets a non-positive pivot.
    """

    def __init__(self, mat: sp.spmatrix, n_fast: int, n_slow: int, single: bool = False) -> None:
        csr = sp.csr_matrix(mat, copy=True)
        csr.sum_duplicates()
        coo = csr.tocoo()
        n = mat.shape[0]
        # Renumber so that the shorter grid dimension runs fastest (narrower band).
        if n_slow < n_fast:
            old = np.arange(n).reshape(n_slow, n_fast)  # old index = fast + n_fast * slow
            perm = old.T.ravel()  # new position -> old index
            inv = np.empty(n, dtype=np.int64)
            inv[perm] = np.arange(n)
            rows, cols = inv[coo.row], inv[coo.col]
        else:
            perm = None
            rows, cols = coo.row, coo.col
        upper = cols >= rows
        rows, cols, vals = rows[upper], cols[upper], coo.data[upper]
        kd = int((cols - rows).max()) if rows.size else 0
        self.perm = perm
        self.lu = None
        self.cb = None
        for dtype in (np.float32, np.float64) if single else (np.float64,):
            ab = np.zeros((kd + 1, n), dtype=dtype)
            ab[kd + rows - cols, cols] = vals  # LAPACK upper band storage: ab[kd + i - j, j] = a[i, j]
            try:
                self.cb = cholesky_banded(ab, lower=False, overwrite_ab=True, check_finite=False)
                break
            except LinAlgError:
                continue
        if self.cb is None:  # numerically not positive definite: pivoted sparse LU
            self.lu = splu(csr.tocsc())

    def solve(self, rhs: np.ndarray) -> np.ndarray:
        if self.cb is None:
            return self.lu.solve(rhs)  # type: ignore[union-attr]
        dtype = self.cb.dtype
        if self.perm is None:
            out = cho_solve_banded((self.cb, False), rhs.astype(dtype, copy=False), check_finite=False)
            return out.astype(rhs.dtype, copy=False)
        out = np.empty(rhs.shape, dtype=rhs.dtype)
        out[self.perm] = cho_solve_banded((self.cb, False), rhs[self.perm].astype(dtype, copy=False), check_finite=False)
        return out


def _colmax_abs(a: np.ndarray) -> np.ndarray:
    """max |a| per column of an (n, k) array (a plain axis-0 reduction is slow for small k)."""
    n, k = a.shape
    rows = 16
    head = (n // rows) * rows
    out = np.abs(a[:head]).reshape(-1, rows * k).max(axis=0).reshape(rows, k).max(axis=0) if head else np.zeros(k)
    if head < n:
        out = np.maximum(out, np.abs(a[head:]).max(axis=0))
    return out


def _colwise_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Dot product of each column of two (n, k) arrays (BLAS, faster than einsum here)."""
    return np.array([a[:, j] @ b[:, j] for j in range(a.shape[1])])


# --------------------------------------------------------------------------------------------
# The problem
# --------------------------------------------------------------------------------------------
class GridfitProblem:
    """The gridfit least-squares system for fixed sites and grid; solve it for any values.

    Args:
        x, y: (N,) site coordinates (same units as the nodes, e.g. mm).
        xnodes, ynodes: strictly increasing node coordinates (at least 3 each), or node counts
            (equally spaced over the data range, as in D'Errico's code).
        smoothness: positive scalar, or an (x, y) pair for different stiffness per axis.
        interp: 'triangle' (default), 'bilinear' or 'nearest'.
        regularizer: 'gradient' (default), 'laplacian' or 'springs'.
        outside: sites outside the grid are 'drop'ped (default; right for image windows),
            'extend' moves the first/last node to cover them (D'Errico's default), or 'error'.

    Attributes:
        xnodes, ynodes: the node vectors used (after 'extend').
        keep: (N,) bool, the sites used.
        A: (n_kept, nx*ny) interpolation matrix; areg: regulariser; lam: smoothness * NA / NR.
        normal_matrix: (nx*ny, nx*ny) CSR ``A'A + lam^2 Areg'Areg``.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        xnodes: np.ndarray | Sequence[float] | int,
        ynodes: np.ndarray | Sequence[float] | int,
        *,
        smoothness: float | Sequence[float] = 1.0,
        interp: Interp = "triangle",
        regularizer: Regularizer = "gradient",
        outside: Outside = "drop",
    ) -> None:
        x, y = _check_sites(x, y)
        if interp not in _INTERPS:
            raise ValueError(f"interp must be one of {_INTERPS}, got {interp!r}")
        if regularizer not in _REGULARIZERS:
            raise ValueError(f"regularizer must be one of {_REGULARIZERS}, got {regularizer!r}")
        if outside not in ("drop", "extend", "error"):
            raise ValueError(f"outside must be 'drop', 'extend' or 'error', got {outside!r}")
        xn = _as_nodes(xnodes, x, "xnodes").copy()
        yn = _as_nodes(ynodes, y, "ynodes").copy()
        inside = (x >= xn[0]) & (x <= xn[-1]) & (y >= yn[0]) & (y <= yn[-1])
        if not inside.all():
            if outside == "error":
                raise ValueError(f"{int((~inside).sum())} of {x.size} points lie outside the grid")
            if outside == "extend":
                xn[0], xn[-1] = min(xn[0], x.min()), max(xn[-1], x.max())
                yn[0], yn[-1] = min(yn[0], y.min()), max(yn[-1], y.max())
                if np.any(np.diff(xn) <= 0) or np.any(np.diff(yn) <= 0):
                    raise ValueError("extending the grid to the data made the nodes non-increasing")
                inside = np.ones_like(inside)
        if int(inside.sum()) < 3:
            raise ValueError(f"only {int(inside.sum())} of {x.size} points lie inside the grid; need at least 3")
        self.xnodes, self.ynodes = xn, yn
        self.keep = inside
        self.interp, self.regularizer = interp, regularizer
        overall, rx, ry = _smoothness_pair(smoothness)
        self._entry = _grid_cache(xn, yn, regularizer, (rx, ry))
        self.A = interpolation_matrix(x[inside], y[inside], xn, yn, interp)
        self.areg = self._entry.areg
        na = float(abs(self.A).sum(axis=0).max())
        self.lam = overall * na / self._entry.nr
        self._ata = (self.A.T @ self.A).tocsr()
        self.normal_matrix = (self._ata + (self.lam**2) * self._entry.k_reg).tocsr()
        self._fast: dict | None = None
        self.iterations = 0  # CG iterations of the last fast solve (0: direct)

    @property
    def shape(self) -> tuple[int, int]:
        """Grid shape (ny, nx)."""
        return len(self.ynodes), len(self.xnodes)

    # ----------------------------------------------------------------------------------------
    def _rhs(self, values: np.ndarray) -> tuple[np.ndarray, bool]:
        v = np.asarray(values, dtype=np.float64)
        single = v.ndim == 1
        if single:
            v = v[:, None]
        if v.ndim != 2 or v.shape[0] != self.keep.size:
            raise ValueError(f"values must have shape ({self.keep.size},) or ({self.keep.size}, k), got {v.shape}")
        v = v[self.keep]
        if not np.all(np.isfinite(v)):
            raise ValueError(f"{int((~np.isfinite(v)).any(axis=1).sum())} values are NaN or infinite")
        return v, single

    def _to_grid(self, z: np.ndarray, single: bool) -> np.ndarray:
        ny, nx = self.shape
        out = z.T.reshape(-1, nx, ny).transpose(0, 2, 1)
        return np.ascontiguousarray(out[0] if single else out)

    def solve(
        self,
        values: np.ndarray,
        solver: Solver = "fast",
        *,
        tol: float = 2e-4,
        maxiter: int = 60,
        threads: int | None = 1,
    ) -> np.ndarray:
        """Fit ``values`` ((N,) or (N, k), one row per site given to the constructor).

        Returns (ny, nx) for 1-D values, else (k, ny, nx), float64.
        ``tol``/``maxiter`` apply to the fast solver only (see the module docstring);
        ``threads`` limits BLAS threads while solving (see `blas_threads`; None = no limit).
        """
        if solver not in ("fast", "reference"):
            raise ValueError(f"solver must be 'fast' or 'reference', got {solver!r}")
        v, single = self._rhs(values)
        rhs = np.ascontiguousarray(self.A.T @ v)
        with blas_threads(threads):
            if solver == "reference":
                z = spsolve(self.normal_matrix.tocsc(), rhs)
                z = np.asarray(z).reshape(rhs.shape)
            else:
                cols = np.ascontiguousarray(v.T)  # (k, N): fast per-column reductions
                span = cols.max(axis=1) - cols.min(axis=1)
                scale = np.where(span > 0, span, np.maximum(np.abs(cols).max(axis=1), 1.0))
                z = self._solve_fast(rhs, tol * scale, maxiter)
        return self._to_grid(z, single)

    # ----------------------------------------------------------------------------------------
    def _setup_fast(self) -> dict:
        if self._fast is not None:
            return self._fast
        m = self.normal_matrix
        ny, nx = self.shape
        st: dict = {}
        if nx * ny <= _DIRECT_MAX_NODES or nx < 9 or ny < 9:
            st["direct"] = _BandedCholesky(m, ny, nx)
            self._fast = st
            return st
        entry = self._entry
        _two_grid_parts(entry, nx, ny)
        prolong, restrict = entry.prolong, entry.restrict
        coarse = (restrict @ (self._ata @ prolong)) + (self.lam**2) * entry.k_coarse  # type: ignore[operator]
        nxc, nyc = entry.coarse_shape
        st["coarse"] = _BandedCholesky(coarse.tocsr(), nyc, nxc, single=True)
        # The preconditioner runs in float32 (half the memory traffic); the outer CG, its
        # residuals and the solution stay float64, so the final accuracy is not affected.
        st["P"], st["R"] = entry.prolong32, entry.restrict32
        st["m32"] = m.astype(np.float32)
        diag = m.diagonal()
        if np.any(diag <= 0):  # isolated nodes cannot happen with these regularisers
            raise ValueError("the gridfit system has a non-positive diagonal")
        dinv = 1.0 / diag
        st["dinv"] = dinv[:, None].astype(np.float32)
        # Gershgorin bound on the spectrum of D^-1 M: the top of the Chebyshev interval.
        row_abs = np.add.reduceat(np.abs(m.data), m.indptr[:-1]) if m.nnz else np.zeros(m.shape[0])
        row_abs[np.diff(m.indptr) == 0] = 0.0
        st["lmax"] = float((row_abs * dinv).max())
        self._fast = st
        return st

    def _smooth(self, st: dict, b: np.ndarray, x: np.ndarray | None, degree: int = 2, low: float = 0.2) -> np.ndarray:
        """Chebyshev-accelerated Jacobi on [low * lmax, lmax] (symmetric, linear in b).

        A given start ``x`` is updated in place and returned.
        """
        m, dinv, lmax = st["m32"], st["dinv"], st["lmax"]
        a = low * lmax
        theta, delta = 0.5 * (lmax + a), 0.5 * (lmax - a)
        sigma = theta / delta
        rho = 1.0 / sigma
        if x is None:
            r = b.copy()
        else:
            r = m @ x
            np.subtract(b, r, out=r)
        d = dinv * r
        d *= np.float32(1.0 / theta)
        if x is None:
            x = d.copy()
        else:
            x += d
        for _ in range(degree - 1):
            r -= m @ d
            rho_new = 1.0 / (2.0 * sigma - rho)
            d *= np.float32(rho_new * rho)
            t = dinv * r
            t *= np.float32(2.0 * rho_new / delta)
            d += t
            x += d
            rho = rho_new
        return x

    def _precondition(self, st: dict, r: np.ndarray) -> np.ndarray:
        # exact coarse-grid correction, then Chebyshev-Jacobi smoothing of its fine-grid error
        r32 = r.astype(np.float32)
        x = st["P"] @ st["coarse"].solve(st["R"] @ r32)
        return self._smooth(st, r32, x, degree=3).astype(np.float64)

    def _solve_fast(self, rhs: np.ndarray, err_tol: np.ndarray, maxiter: int) -> np.ndarray:
        st = self._setup_fast()
        if "direct" in st:
            self.iterations = 0
            return st["direct"].solve(rhs)
        m = self.normal_matrix
        x = np.zeros_like(rhs)
        r = rhs.copy()
        z = self._precondition(st, r)
        p = z.copy()
        rz = _colwise_dot(r, z)
        self.iterations = 0
        prev = None
        for it in range(maxiter):
            q = m @ p
            pq = _colwise_dot(p, q)
            alpha = np.divide(rz, pq, out=np.zeros_like(rz), where=pq > 0)
            x += alpha * p
            self.iterations = it + 1
            # Remaining error ~ step * rho / (1 - rho), rho the observed contraction of the
            # largest node update (CG on this system converges linearly, rho ~ 0.2).
            step = np.abs(alpha) * _colmax_abs(p)
            if prev is not None:
                rho = np.clip(np.divide(step, prev, out=np.ones_like(step), where=prev > 0), 0.05, 0.9)
                if np.all(step * rho / (1.0 - rho) <= err_tol):
                    break
            prev = step
            q *= alpha
            r -= q
            z_new = self._precondition(st, r)
            rz_new = _colwise_dot(r, z_new)
            # flexible (Polak-Ribiere) beta: robust to the float32 preconditioner
            beta = np.divide(rz_new - _colwise_dot(r, z), rz, out=np.zeros_like(rz), where=rz > 0)
            z = z_new
            p *= beta
            p += z
            rz = rz_new
        return x


def gridfit(
    x: np.ndarray,
    y: np.ndarray,
    values: np.ndarray,
    xnodes: np.ndarray | Sequence[float] | int,
    ynodes: np.ndarray | Sequence[float] | int,
    *,
    smoothness: float | Sequence[float] = 1.0,
    interp: Interp = "triangle",
    regularizer: Regularizer = "gradient",
    solver: Solver = "fast",
    outside: Outside = "drop",
    tol: float = 2e-4,
    maxiter: int = 60,
    threads: int | None = 1,
) -> np.ndarray:
    """Fit a smooth surface through scattered data on a regular grid (D'Errico's gridfit).

    Args:
        x, y: (N,) site coordinates.
        values: (N,) or (N, k) values at the sites (e.g. depth in mm and R, G, B in 0..255).
        xnodes, ynodes: node vectors (strictly increasing, >= 3) or node counts.
        smoothness, interp, regularizer, outside: see `GridfitProblem`.
        solver: 'fast' (default) or 'reference' (plain ``spsolve`` of the normal equations).
        tol, maxiter: stopping rule of the fast solver.
        threads: BLAS threads while solving (default 1, see `blas_threads`; None = no limit).

    Returns:
        (ny, nx) float64 for 1-D ``values``, else (k, ny, nx); row 0 is ``ynodes[0]``.
    """
    problem = GridfitProblem(
        x, y, xnodes, ynodes, smoothness=smoothness, interp=interp, regularizer=regularizer, outside=outside
    )
    return problem.solve(values, solver, tol=tol, maxiter=maxiter, threads=threads)


@dataclass(frozen=True)
class ImageGrid:
    """A square image window in the canonical face frame, for gridfit and for projection.

    The image has ``size x size`` pixels covering ``[cx - half_width, cx + half_width]`` in x and
    the same in y (mm). Pixel centres are the gridfit nodes. Image row 0 is the TOP (largest y),
    column 0 the left (smallest x); in pixel units the centre of pixel (col, row) is at (col, row).
    """

    size: int = 224
    half_width: float = 75.0
    center: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        if int(self.size) < 3:
            raise ValueError(f"image size must be at least 3 pixels, got {self.size}")
        if not self.half_width > 0:
            raise ValueError(f"half_width must be positive, got {self.half_width}")

    @property
    def step(self) -> float:
        """Pixel size in mm."""
        return 2.0 * self.half_width / self.size

    @property
    def xnodes(self) -> np.ndarray:
        """(size,) increasing x of the pixel columns (mm)."""
        return self.center[0] - self.half_width + (np.arange(self.size) + 0.5) * self.step

    @property
    def ynodes(self) -> np.ndarray:
        """(size,) increasing y of the gridfit rows; image row r is ``ynodes[size - 1 - r]``."""
        return self.center[1] - self.half_width + (np.arange(self.size) + 0.5) * self.step

    def to_pixels(self, points: np.ndarray) -> np.ndarray:
        """(..., 2+) positions in mm -> (..., 2) (column, row) in pixel units."""
        p = np.asarray(points, dtype=np.float64)
        col = (p[..., 0] - self.xnodes[0]) / self.step
        row = (self.ynodes[-1] - p[..., 1]) / self.step
        return np.stack([col, row], axis=-1)

    def to_image(self, grid_values: np.ndarray) -> np.ndarray:
        """gridfit output (..., ny, nx) with row 0 = smallest y -> image orientation (row 0 top)."""
        return np.ascontiguousarray(np.asarray(grid_values)[..., ::-1, :])
