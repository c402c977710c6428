"""Surface processing of 3D face scans: outlier and spike removal, small-component removal,
hole detection on the resampled grid and depth-image noise removal.

All distances are millimetres in the scan's frame, image sizes are pixels. Point-removal
functions return a boolean *keep* mask over the vertices; `subset_scan` applies one to a
`FaceScan` (faces with a removed corner are dropped, indices remapped, texture kept).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import cv2
import numpy as np
import scipy.sparse as sp
from scipy import ndimage
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .formats._raster import coverage_mask
from .scan import FaceScan

__all__ = [
    "SurfaceReport",
    "clean_scan",
    "denoise_depth",
    "fill_holes",
    "knn_outlier_mask",
    "small_component_mask",
    "spike_mask",
    "subset_scan",
    "support_mask",
]


def subset_scan(scan: FaceScan, keep: np.ndarray) -> FaceScan:
    """A copy of ``scan`` with only the vertices where ``keep`` is True.

    Faces with any removed corner are dropped (``corner_uv`` follows the faces); vertex colours
    follow the vertices; landmarks, texture and metadata are kept as they are.
    """
    keep = np.asarray(keep, dtype=bool)
    v = np.asarray(scan.vertices)
    if keep.shape != (len(v),):
        raise ValueError(f"keep must have shape ({len(v)},), got {keep.shape}")
    new_index = np.full(len(v), -1, dtype=np.int64)
    new_index[keep] = np.arange(int(keep.sum()))
    faces = np.asarray(scan.faces, dtype=np.int64).reshape(-1, 3)
    fkeep = keep[faces[:, 0]] & keep[faces[:, 1]] & keep[faces[:, 2]]
    corner_uv = None if scan.corner_uv is None else np.asarray(scan.corner_uv)[fkeep]
    return replace(
        scan,
        vertices=v[keep],
        faces=new_index[faces[fkeep]] if len(faces) else faces,
        vertex_colors=None if scan.vertex_colors is None else np.asarray(scan.vertex_colors)[keep],
        corner_uv=corner_uv,
        metadata=dict(scan.metadata),
    )


def knn_outlier_mask(points: np.ndarray, k: int = 12, n_sigma: float = 3.0, min_ratio: float = 3.0) -> np.ndarray:
    """Statistical outlier removal on the mean distance to the ``k`` nearest neighbours (3-D).

    A point is an outlier when that distance exceeds BOTH median + ``n_sigma`` robust standard
    deviations (1.4826 x MAD) and ``min_ratio`` x the median: on clean face scans the largest
    ratio is about 2-2.6 (steep sides, borders), while stray points sit far from everything.

    Args:
        points: (N, 3) mm.
    Returns:
        (N,) bool keep mask.
    """
    pts = np.asarray(points, dtype=np.float64)
    n = len(pts)
    if n <= k + 1:
        return np.ones(n, dtype=bool)
    dist, _ = cKDTree(pts).query(pts, k=k + 1)
    mean_d = dist[:, 1:].mean(axis=1)
    med = float(np.median(mean_d))
    mad = 1.4826 * float(np.median(np.abs(mean_d - med)))
    limit = max(med + n_sigma * mad, min_ratio * med)
    return mean_d <= limit


def spike_mask(
    points: np.ndarray, k: int = 12, max_dz: float = 2.0, n_mad: float = 4.0
) -> np.ndarray:
    """Spike removal: drop points far (in z) from the plane through their ``k`` nearest
    neighbours in x-y (the scan looks along z).

    For each point a least-squares plane z = a + b dx + c dy is fitted to its neighbours (the
    point itself excluded); it is a spike when ``|z - a| > max(max_dz, n_mad * s)``, with s the
    robust spread (1.4826 x median absolute residual) of the neighbours about that plane. The
    plane follows slopes (nose sides, cheeks); the spread lets rough or edge-on regions keep
    their points.

    Args:
        points: (N, 3) mm, face towards +z.
    Returns:
        (N,) bool keep mask.
    """
    pts = np.asarray(points, dtype=np.float64)
    n = len(pts)
    if n <= k + 1:
        return np.ones(n, dtype=bool)
    _, idx = cKDTree(pts[:, :2]).query(pts[:, :2], k=k + 1)
    nb = np.ascontiguousarray(idx[:, 1:].T)  # (k, N): reductions over the neighbours are fast
    u = pts[nb, 0] - pts[:, 0]
    v = pts[nb, 1] - pts[:, 1]
    z = pts[nb, 2]
    inv = 1.0 / np.maximum(np.maximum(np.abs(u).max(axis=0), np.abs(v).max(axis=0)), 1e-9)
    u *= inv  # local coordinates scaled to [-1, 1]: well conditioned
    v *= inv
    # normal equations of the plane fit [1, u, v] @ coef ~ z, one 3x3 system per point
    xtx = np.empty((n, 3, 3))
    xtx[:, 0, 0] = k + 1e-9
    xtx[:, 0, 1] = xtx[:, 1, 0] = u.sum(axis=0)
    xtx[:, 0, 2] = xtx[:, 2, 0] = v.sum(axis=0)
    xtx[:, 1, 1] = (u * u).sum(axis=0) + 1e-9
    xtx[:, 1, 2] = xtx[:, 2, 1] = (u * v).sum(axis=0)
    xtx[:, 2, 2] = (v * v).sum(axis=0) + 1e-9
    xtz = np.stack([z.sum(axis=0), (u * z).sum(axis=0), (v * z).sum(axis=0)], axis=1)
    coef = np.linalg.solve(xtx, xtz[..., None])[..., 0]  # (N, 3)
    resid = np.abs(z - coef[:, 0] - coef[:, 1] * u - coef[:, 2] * v)
    resid.sort(axis=0)
    mid = resid[k // 2] if k % 2 else 0.5 * (resid[k // 2 - 1] + resid[k // 2])  # the median, as np.median
    spread = 1.4826 * mid
    return np.abs(pts[:, 2] - coef[:, 0]) <= np.maximum(max_dz, n_mad * spread)


def small_component_mask(
    points: np.ndarray,
    faces: np.ndarray | None = None,
    min_fraction: float = 0.05,
    link_radius: float | None = None,
) -> np.ndarray:
    """Keep the connected components holding at least ``min_fraction`` of the points (the
    largest component is always kept).

    Connectivity comes from the triangles when ``faces`` is given, else from a radius graph
    (``link_radius`` mm, default 3 x the median nearest-neighbour distance).

    Returns:
        (N,) bool keep mask.
    """
    pts = np.asarray(points, dtype=np.float64)
    n = len(pts)
    if n == 0:
        return np.zeros(0, dtype=bool)
    if faces is not None and np.asarray(faces).size:
        f = np.asarray(faces, dtype=np.int64)
        rows = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
        cols = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    else:
        tree = cKDTree(pts)
        if link_radius is None:
            d, _ = tree.query(pts, k=2)
            link_radius = 3.0 * float(np.median(d[:, 1])) if n > 1 else 1.0
        pairs = tree.query_pairs(r=link_radius, output_type="ndarray")
        rows, cols = (pairs[:, 0], pairs[:, 1]) if len(pairs) else (np.zeros(0, int), np.zeros(0, int))
    graph = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels)
    big = (sizes >= min_fraction * n) | (sizes == sizes.max())
    return big[labels]


@dataclass
class SurfaceReport:
    """Counts of what `clean_scan` removed (vertices)."""

    outliers_removed: int = 0
    spikes_removed: int = 0
    small_components_removed: int = 0

    @property
    def total_removed(self) -> int:
        return self.outliers_removed + self.spikes_removed + self.small_components_removed

    def as_dict(self) -> dict:
        return {**asdict(self), "total_removed": self.total_removed}


def clean_scan(
    scan: FaceScan,
    *,
    outliers: bool = True,
    outlier_k: int = 12,
    outlier_sigma: float = 3.0,
    outlier_min_ratio: float = 3.0,
    spikes: bool = True,
    spike_k: int = 12,
    spike_max_dz: float = 2.0,
    spike_n_mad: float = 4.0,
    components: bool = True,
    component_min_fraction: float = 0.05,
) -> tuple[FaceScan, SurfaceReport]:
    """Remove outliers (k-NN distance statistics), z spikes and small disconnected pieces.

    Spike detection assumes the face looks along +z (true for `FaceScan`s; run it before or after
    pose normalisation, not on a scan seen from the side). Returns the cleaned copy and counts.
    """
    report = SurfaceReport()
    # Each step sees the vertices (and faces) the previous ones kept; the scan itself (texture
    # coordinates, colours) is subset once at the end, which gives the same result.
    vertices = np.asarray(scan.vertices)
    faces = np.asarray(scan.faces, dtype=np.int64).reshape(-1, 3)
    alive = np.arange(len(vertices))  # original index of each remaining vertex

    def drop(keep: np.ndarray) -> int:
        nonlocal vertices, faces, alive
        removed = int(keep.size - np.count_nonzero(keep))
        if removed:
            new_index = np.cumsum(keep) - 1
            faces = new_index[faces[keep[faces[:, 0]] & keep[faces[:, 1]] & keep[faces[:, 2]]]]
            vertices, alive = vertices[keep], alive[keep]
        return removed

    if outliers:
        report.outliers_removed = drop(knn_outlier_mask(vertices, outlier_k, outlier_sigma, outlier_min_ratio))
    if spikes:
        report.spikes_removed = drop(spike_mask(vertices, spike_k, spike_max_dz, spike_n_mad))
    if components:
        keep = small_component_mask(vertices, faces if faces.size else None, component_min_fraction)
        report.small_components_removed = drop(keep)
    keep = np.zeros(len(scan.vertices), dtype=bool)
    keep[alive] = True
    return subset_scan(scan, keep), report


# --------------------------------------------------------------------------------------------
# On the image grid
# --------------------------------------------------------------------------------------------
def support_mask(
    pixels: np.ndarray,
    shape: tuple[int, int],
    faces: np.ndarray | None = None,
    radius_px: float | None = None,
) -> np.ndarray:
    """Pixels covered by the scan surface.

    Args:
        pixels: (N, 2) point positions in pixel units (column, row; pixel centres at integers).
        shape: (H, W) of the image.
        faces: (F, 3) triangles; when given, each projected triangle is filled (pixel centres
            inside or on an edge, see `afnetm_timm.data.formats.rasterize_triangles`; the faithful
            choice for meshes). Triangles much larger than the typical one (> 8 x the median
            edge, e.g. bridging a hole) are skipped.
        radius_px: for point clouds (no faces): pixels within this distance of a point
            (default: 0.75 x the median nearest-neighbour spacing, at least 1 pixel).
    Returns:
        (H, W) bool.
    """
    h, w = shape
    px = np.asarray(pixels, dtype=np.float64)
    if faces is not None and np.asarray(faces).size:
        tri = px[np.asarray(faces, dtype=np.int64)]  # (F, 3, 2)
        x, y = tri[..., 0], tri[..., 1]

        def edge(i: int, j: int) -> np.ndarray:
            dx, dy = x[:, i] - x[:, j], y[:, i] - y[:, j]
            return np.sqrt(dx * dx + dy * dy)

        edges = np.maximum(np.maximum(edge(0, 2), edge(1, 0)), edge(2, 1))
        limit = 8.0 * max(float(np.median(edges)), 1.0)
        return coverage_mask(tri[edges <= limit], shape, max_bbox_px=4096)
    mask = np.zeros((h, w), dtype=bool)
    if len(px) == 0:
        return mask
    tree = cKDTree(px)
    if radius_px is None:
        d, _ = tree.query(px, k=2) if len(px) > 1 else (np.ones((1, 2)), None)
        radius_px = max(1.0, 0.75 * float(np.median(d[:, 1])))
    rr, cc = np.mgrid[0:h, 0:w]
    dist, _ = tree.query(np.column_stack([cc.ravel(), rr.ravel()]), k=1, distance_upper_bound=radius_px + 1e-9)
    return np.isfinite(dist).reshape(h, w)


def fill_holes(support: np.ndarray, max_hole_px: int | None = None) -> tuple[np.ndarray, int, int]:
    """Holes = connected regions outside ``support`` that do not touch the image border.

    gridfit already gives every pixel a value; this decides which of the unsupported pixels
    belong to the face (enclosed holes, filled) and which to the background.

    Args:
        support: (H, W) bool, pixels covered by the scan.
        max_hole_px: larger enclosed regions stay background (default: no limit).
    Returns:
        (foreground mask, number of holes filled, number of pixels filled).
    """
    support = np.asarray(support, dtype=bool)
    labels, n = ndimage.label(~support)
    if n == 0:
        return support.copy(), 0, 0
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    is_hole = np.ones(n + 1, dtype=bool)
    is_hole[0] = False
    is_hole[border] = False
    if max_hole_px is not None:
        is_hole &= sizes <= max_hole_px
    filled = is_hole[labels]
    return support | filled, int(is_hole.sum()), int(filled.sum())


def denoise_depth(
    depth: np.ndarray,
    median_size: int = 3,
    gaussian_sigma: float = 0.0,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """Median filter (``median_size`` 0/1 = off, 3 or 5) then optional Gaussian (sigma, pixels).

    Args:
        depth: (H, W) float depth in mm; it should be defined everywhere (gridfit output is), so
            the filters see no artificial edge at the face border.
        mask: optional (H, W) bool; pixels outside it are returned unchanged.
    Returns:
        (H, W) float32.
    """
    d = np.asarray(depth, dtype=np.float32)
    if d.ndim != 2:
        raise ValueError(f"depth must be (H, W), got {d.shape}")
    if not np.all(np.isfinite(d)):
        raise ValueError("depth contains NaN or infinite values; pass the full gridfit surface")
    out = d.copy()
    if median_size not in (0, 1):
        if median_size not in (3, 5):
            raise ValueError(f"median_size must be 0, 3 or 5 (OpenCV float median), got {median_size}")
        out = cv2.medianBlur(out, median_size)
    if gaussian_sigma > 0:
        out = cv2.GaussianBlur(out, (0, 0), sigmaX=gaussian_sigma, borderType=cv2.BORDER_REPLICATE)
    if mask is not None:
        m = np.asarray(mask, dtype=bool)
        out = np.where(m, out, d)
    return out
