"""Surface processing: outliers, spikes, small components, holes, depth denoising, rasterisation."""
from __future__ import annotations

import numpy as np
import pytest

from afnetm_timm.data.formats import coverage_mask, interpolate_corners, rasterize_triangles
from afnetm_timm.data.surface import (
    clean_scan,
    denoise_depth,
    fill_holes,
    knn_outlier_mask,
    small_component_mask,
    spike_mask,
    subset_scan,
    support_mask,
)
from afnetm_timm.data.synthetic import synthetic_face_scan


@pytest.fixture(scope="module")
def face():
    return synthetic_face_scan("happiness", n_points=5000, texture_size=128)


def _central(points: np.ndarray, radius: float = 60.0) -> np.ndarray:
    return np.nonzero(np.linalg.norm(points[:, :2], axis=1) < radius)[0]


def test_clean_face_loses_nothing(face) -> None:
    assert knn_outlier_mask(face.vertices).all()
    assert spike_mask(face.vertices)[_central(face.vertices)].all()
    cleaned, report = clean_scan(face)
    assert report.outliers_removed == 0 and report.spikes_removed <= 5
    assert len(cleaned.vertices) == len(face.vertices) - report.total_removed


def test_knn_outliers_drop_injected_points(face) -> None:
    rng = np.random.default_rng(0)
    stray = rng.uniform(-80, 80, (25, 3)) * [1, 1, 0.5] + [0, 0, 80.0]  # floating well in front of the face
    pts = np.concatenate([face.vertices, stray])
    keep = knn_outlier_mask(pts)
    assert not keep[-25:].any()
    assert keep[:-25].all()


def test_spikes_are_removed(face) -> None:
    v = face.vertices.copy()
    idx = _central(v, 50.0)[::97][:20]
    v[idx, 2] += np.where(np.arange(len(idx)) % 2, 8.0, -6.0)  # up and down spikes
    keep = spike_mask(v)
    assert not keep[idx].any()
    others = np.setdiff1d(_central(v, 60.0), idx)
    assert keep[others].mean() > 0.995


def test_small_components_with_and_without_faces(face) -> None:
    # a detached little patch of 30 points (a separate mesh piece) 100 mm away
    rng = np.random.default_rng(1)
    patch = rng.uniform(-3, 3, (30, 3)) + [100.0, 100.0, 0.0]
    pts = np.concatenate([face.vertices, patch])
    n = len(face.vertices)
    tri = np.array([[n + i, n + i + 1, n + i + 2] for i in range(27)])
    faces = np.concatenate([face.faces, tri])
    keep = small_component_mask(pts, faces)
    assert not keep[n:].any() and keep[:n].mean() > 0.99
    keep_pc = small_component_mask(pts)  # radius graph
    assert not keep_pc[n:].any() and keep_pc[:n].mean() > 0.99


def test_clean_scan_reports_counts(face) -> None:
    v = face.vertices.copy()
    idx = _central(v, 40.0)[::150][:10]
    v[idx, 2] += 10.0
    far = np.array([[0.0, 0.0, 200.0], [150.0, 0.0, 0.0]])
    from dataclasses import replace

    noisy = replace(face, vertices=np.concatenate([v, far]), corner_uv=face.corner_uv)
    cleaned, report = clean_scan(noisy)
    assert report.outliers_removed >= 2  # the two far points (big spikes may go here too)
    assert report.spikes_removed >= 1
    assert report.outliers_removed + report.spikes_removed >= len(idx) + 2
    assert not np.isin(np.round(v[idx], 9), np.round(cleaned.vertices, 9)).all(axis=1).any()
    assert report.as_dict()["total_removed"] == report.total_removed
    cleaned.validate()


def test_clean_scan_equals_step_by_step_subsets(face) -> None:
    rng = np.random.default_rng(3)
    v = face.vertices.copy()
    v[rng.choice(len(v), 25, replace=False), 2] += rng.normal(0.0, 8.0, 25)
    from dataclasses import replace

    noisy = replace(face, vertices=np.concatenate([v, [[0.0, 0.0, 250.0]]]))
    cleaned, report = clean_scan(noisy)
    ref = subset_scan(noisy, knn_outlier_mask(noisy.vertices))  # one subset per step, as defined
    ref = subset_scan(ref, spike_mask(ref.vertices))
    ref = subset_scan(ref, small_component_mask(ref.vertices, ref.faces))
    np.testing.assert_array_equal(cleaned.vertices, ref.vertices)
    np.testing.assert_array_equal(cleaned.faces, ref.faces)
    np.testing.assert_array_equal(cleaned.corner_uv, ref.corner_uv)
    assert report.total_removed == len(noisy.vertices) - len(ref.vertices) > 1


def test_subset_scan_remaps_faces(face) -> None:
    keep = face.vertices[:, 0] < 0
    sub = subset_scan(face, keep)
    sub.validate()
    assert len(sub.vertices) == keep.sum()
    # every kept face maps back to the same 3-D triangle
    old_index = np.nonzero(keep)[0]
    fkeep = keep[face.faces].all(axis=1)
    np.testing.assert_array_equal(old_index[sub.faces], face.faces[fkeep])
    np.testing.assert_array_equal(sub.corner_uv, face.corner_uv[fkeep])
    with pytest.raises(ValueError):
        subset_scan(face, keep[:-1])


def test_fill_holes_counts_enclosed_regions() -> None:
    s = np.zeros((40, 40), dtype=bool)
    s[5:35, 5:35] = True
    s[10:14, 10:14] = False  # hole 1 (16 px)
    s[20:30, 20:30] = False  # hole 2 (100 px)
    s[5:35, 5] = False  # notch touching the background: not a hole
    fg, n, px = fill_holes(s)
    assert n == 2 and px == 116
    assert fg[12, 12] and fg[25, 25] and not fg[0, 0]
    fg2, n2, px2 = fill_holes(s, max_hole_px=50)
    assert n2 == 1 and px2 == 16 and not fg2[25, 25]


def test_denoise_depth() -> None:
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:64, 0:64]
    depth = (-(xx - 32.0) ** 2 - (yy - 32.0) ** 2) / 50.0
    noisy = depth.copy()
    salt = rng.choice(64 * 64, 60, replace=False)
    noisy.ravel()[salt] += 20.0
    med = denoise_depth(noisy, median_size=3)
    assert med.dtype == np.float32
    inner = np.zeros_like(depth, dtype=bool)
    inner[2:-2, 2:-2] = True
    assert np.abs(med - depth)[inner].max() < 3.0 < np.abs(noisy - depth).max()
    smooth = denoise_depth(depth + rng.normal(0, 0.2, depth.shape), median_size=0, gaussian_sigma=1.0)
    assert np.abs(smooth - depth)[inner].std() < 0.15
    mask = np.zeros_like(inner)
    mask[:, :32] = True
    part = denoise_depth(noisy, median_size=5, mask=mask)
    np.testing.assert_array_equal(part[:, 32:], noisy[:, 32:].astype(np.float32))
    with pytest.raises(ValueError, match="median_size"):
        denoise_depth(depth, median_size=7)
    with pytest.raises(ValueError, match="NaN"):
        denoise_depth(np.where(inner, depth, np.nan))


def test_rasterize_triangles_area_and_zbuffer() -> None:
    tri = np.array([[[2.0, 2.0], [30.0, 2.0], [2.0, 30.0]]])
    cov = coverage_mask(tri, (40, 40))
    assert int(cov.sum()) == 29 * 30 // 2  # pixel centres inside or on the edges
    assert cov[5, 5] and not cov[25, 25]
    # two overlapping squares (two triangles each) at z = 1 and z = 5: the larger z wins
    sq = np.array([[[0, 0], [20, 0], [20, 20]], [[0, 0], [20, 20], [0, 20]]], dtype=float)
    tris = np.concatenate([sq, sq + 10])
    vals = np.array([[1.0] * 3, [1.0] * 3, [5.0] * 3, [5.0] * 3])
    tri_id, bary = rasterize_triangles(tris, (40, 40), vals)
    img = interpolate_corners(tri_id, bary, vals, fill=np.nan)
    assert img[15, 15] == pytest.approx(5.0) and img[5, 5] == pytest.approx(1.0) and np.isnan(img[35, 2])
    np.testing.assert_array_equal(coverage_mask(tris, (40, 40)), tri_id >= 0)
    # linear interpolation of a plane is exact; several channels at once
    plane = lambda p: 0.5 * p[..., 0] - 0.25 * p[..., 1]  # noqa: E731
    v3 = np.stack([plane(tris), 2 * plane(tris)], axis=-1)
    img = interpolate_corners(tri_id, bary, v3)
    rr, cc = np.nonzero(tri_id >= 0)
    np.testing.assert_allclose(img[rr, cc, 0], 0.5 * cc - 0.25 * rr, atol=1e-9)
    np.testing.assert_allclose(img[rr, cc, 1], 2 * img[rr, cc, 0], atol=1e-9)


def _reference_raster(tri: np.ndarray, shape: tuple[int, int], depth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Node by node, triangle by triangle: the definition the vectorised rasteriser implements."""
    tri_id = np.full(shape, -1)
    best = np.full(shape, -np.inf)
    for t, (p, d) in enumerate(zip(tri, depth, strict=True)):
        (x0, y0), (x1, y1), (x2, y2) = p
        den = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
        if abs(den) <= 1e-12:
            continue
        for r in range(shape[0]):
            for c in range(shape[1]):
                l1 = ((c - x0) * (y2 - y0) - (x2 - x0) * (r - y0)) / den
                l2 = ((x1 - x0) * (r - y0) - (c - x0) * (y1 - y0)) / den
                l0 = 1.0 - l1 - l2
                if min(l0, l1, l2) >= -1e-9:
                    z = l0 * d[0] + l1 * d[1] + l2 * d[2]
                    if z > best[r, c] + 1e-9:
                        best[r, c], tri_id[r, c] = z, t
    return tri_id, best


@pytest.mark.parametrize("seed", range(4))
def test_rasterizer_matches_a_direct_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (13, 17)
    tri = rng.uniform(-3.0, 19.0, (16, 3, 2))  # large: the general path
    tri[8:] = rng.uniform(0.0, 3.5, (8, 3, 2)) + rng.uniform(-1.0, 15.0, (8, 1, 2))  # small: the fast path
    tri[::3] = np.round(tri[::3])  # corners on nodes: nodes on edges count as covered
    tri[7, 2] = tri[7, 0]  # degenerate: covers nothing
    tri[10, 2] = tri[10, 1]
    depth = rng.normal(size=(16, 3))
    ref_id, ref_z = _reference_raster(tri, shape, depth)
    tri_id, bary = rasterize_triangles(tri, shape, depth)
    np.testing.assert_array_equal(tri_id >= 0, ref_id >= 0)
    np.testing.assert_array_equal(coverage_mask(tri, shape), ref_id >= 0)
    hit = ref_id >= 0
    np.testing.assert_array_equal(tri_id[hit], ref_id[hit])  # random depths: no ties
    np.testing.assert_allclose(interpolate_corners(tri_id, bary, depth)[hit], ref_z[hit], atol=1e-9)
    np.testing.assert_allclose(bary.sum(axis=2)[hit], 1.0, atol=1e-12)
    # chunking and the bounding-box limit
    np.testing.assert_array_equal(rasterize_triangles(tri, shape, depth, chunk=5)[0], tri_id)
    big = coverage_mask(tri, shape, max_bbox_px=20)
    assert not (big & ~(tri_id >= 0)).any() and big.sum() < (tri_id >= 0).sum()


def test_support_mask_mesh_and_points(face) -> None:
    px = (face.vertices[:, :2] + 75.0) / 150.0 * 64 - 0.5
    px[:, 1] = 63 - px[:, 1]
    mesh = support_mask(px, (64, 64), face.faces)
    cloud = support_mask(px, (64, 64))
    assert mesh[32, 32] and cloud[32, 32] and not mesh[0, 0] and not cloud[0, 0]
    assert abs(int(mesh.sum()) - int(cloud.sum())) < 0.1 * mesh.sum()
