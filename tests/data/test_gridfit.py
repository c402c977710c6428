"""gridfit: D'Errico's formulation, analytic surfaces, fast == reference, errors."""
from __future__ import annotations

import numpy as np
import pytest

from afnetm_timm.data.gridfit import (
    GridfitProblem,
    ImageGrid,
    gridfit,
    interpolation_matrix,
    regularizer_matrix,
)
from afnetm_timm.data.synthetic import synthetic_face_scan

INTERPS = ("triangle", "bilinear", "nearest")
REGS = ("gradient", "laplacian", "springs")


def _sites(n: int = 1500, seed: int = 0, half: float = 50.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.uniform(-half, half, n), rng.uniform(-half, half, n)


def _nodes(n: int = 64, half: float = 50.0) -> np.ndarray:
    return np.linspace(-half, half, n)


@pytest.mark.parametrize("interp", ("triangle", "bilinear"))
@pytest.mark.parametrize("regularizer", ("gradient", "laplacian"))
def test_plane_is_reproduced_exactly(interp: str, regularizer: str) -> None:
    x, y = _sites()
    z = 3.0 + 0.2 * x - 0.7 * y
    xn = np.linspace(-50, 50, 64)
    yn = np.linspace(-50, 50, 60)
    yn = yn + 0.4 * (yn[1] - yn[0]) * np.sin(np.arange(60.0))  # non-uniform rows too
    for solver in ("reference", "fast"):
        g = gridfit(x, y, z, xn, yn, interp=interp, regularizer=regularizer, solver=solver)
        assert g.shape == (60, 64)
        gx, gy = np.meshgrid(xn, yn)
        np.testing.assert_allclose(g, 3.0 + 0.2 * gx - 0.7 * gy, atol=1e-6)


def test_springs_reproduce_a_constant() -> None:
    x, y = _sites()
    g = gridfit(x, y, np.full(x.size, 7.5), _nodes(), _nodes(), regularizer="springs")
    np.testing.assert_allclose(g, 7.5, atol=1e-8)


@pytest.mark.parametrize("interp", ("triangle", "bilinear"))
def test_smooth_quadratic_within_tolerance(interp: str) -> None:
    x, y = _sites(4000, seed=1)
    z = 0.01 * (x**2 + 0.5 * y**2) - 0.004 * x * y
    xn = yn = _nodes()
    g = gridfit(x, y, z, xn, yn, interp=interp, smoothness=0.5)
    gx, gy = np.meshgrid(xn, yn)
    truth = 0.01 * (gx**2 + 0.5 * gy**2) - 0.004 * gx * gy
    inner = (np.abs(gx) < 45) & (np.abs(gy) < 45)
    err = np.abs(g - truth)[inner]
    assert err.max() < 0.05 * np.ptp(truth)  # 5 % of the range at worst
    assert err.mean() < 0.01 * np.ptp(truth)


@pytest.mark.parametrize("interp", INTERPS)
@pytest.mark.parametrize("regularizer", REGS)
def test_all_variants_run_and_shapes(interp: str, regularizer: str) -> None:
    x, y = _sites(800, seed=2)
    v = np.column_stack([np.sin(x / 20), np.cos(y / 15), x * 0.1])
    g = gridfit(x, y, v, 40, 30, interp=interp, regularizer=regularizer)
    assert g.shape == (3, 30, 40)
    assert np.all(np.isfinite(g))
    g1 = gridfit(x, y, v[:, 0], 40, 30, interp=interp, regularizer=regularizer)
    np.testing.assert_allclose(g1, g[0], atol=1e-9)


def test_fast_equals_reference_on_a_face_two_grid_path() -> None:
    """96 x 96 grid: the fast solver uses the two-grid PCG path (above the direct-solve size)."""
    scan = synthetic_face_scan("surprise", n_points=5000, texture_size=128, vertex_colors=True)
    v = scan.vertices
    values = np.column_stack([v[:, 2], scan.vertex_colors.astype(float)])
    grid = ImageGrid(96, 75.0)
    problem = GridfitProblem(v[:, 0], v[:, 1], grid.xnodes, grid.ynodes)
    fast = problem.solve(values, "fast")
    ref = problem.solve(values, "reference")
    assert problem.iterations >= 2  # really iterated
    assert np.abs(fast[0] - ref[0]).max() <= 0.05  # mm
    assert np.abs(fast[1:] - ref[1:]).max() <= 0.5  # colour levels


@pytest.mark.parametrize("interp,regularizer", [("bilinear", "laplacian"), ("triangle", "springs")])
def test_fast_equals_reference_other_variants(interp: str, regularizer: str) -> None:
    x, y = _sites(3000, seed=3, half=70)
    keep = x**2 / 70**2 + y**2 / 60**2 < 0.8  # empty corners, like a face crop
    x, y = x[keep], y[keep]
    z = 20 * np.exp(-(x**2 + y**2) / 900.0) + 0.05 * x
    nodes = np.linspace(-75, 75, 90)
    ref = gridfit(x, y, z, nodes, nodes, interp=interp, regularizer=regularizer, solver="reference")
    fast = gridfit(x, y, z, nodes, nodes, interp=interp, regularizer=regularizer, solver="fast")
    assert np.abs(fast - ref).max() <= 0.05


def test_smoothness_controls_roughness() -> None:
    x, y = _sites(1500, seed=4)
    rng = np.random.default_rng(5)
    z = np.sin(x / 8.0) + 0.3 * rng.standard_normal(x.size)
    rough = []
    for s in (0.1, 1.0, 10.0):
        g = gridfit(x, y, z, _nodes(48), _nodes(48), smoothness=s)
        rough.append(float(np.abs(np.diff(g, 2, axis=1)).mean()))
    assert rough[0] > rough[1] > rough[2]
    # an (x, y) pair is accepted and stiffens one axis
    gx = gridfit(x, y, z, _nodes(48), _nodes(48), smoothness=(10.0, 0.1))
    gy = gridfit(x, y, z, _nodes(48), _nodes(48), smoothness=(0.1, 10.0))
    assert np.abs(np.diff(gx, 2, axis=1)).mean() < np.abs(np.diff(gy, 2, axis=1)).mean()


def test_interpolation_matrix_rows_and_indexing() -> None:
    xn, yn = np.linspace(0, 4, 5), np.linspace(0, 3, 4)
    ny = len(yn)
    x = np.array([1.0, 2.5, 3.2, 0.0, 4.0])
    y = np.array([2.0, 0.5, 2.9, 0.0, 3.0])
    for interp in INTERPS:
        a = interpolation_matrix(x, y, xn, yn, interp)
        np.testing.assert_allclose(np.asarray(a.sum(axis=1)).ravel(), 1.0)
    # a site on node (ix=1, iy=2) hits column iy + ny * ix only (y fastest)
    a = interpolation_matrix(x[:1], y[:1], xn, yn, "triangle").toarray()[0]
    assert a[2 + ny * 1] == pytest.approx(1.0) and a.sum() == pytest.approx(1.0)
    # linear functions are interpolated exactly by triangle and bilinear
    gx, gy = np.meshgrid(xn, yn, indexing="ij")  # flat index ix * ny + iy
    f = (2 * gx - gy).ravel()
    for interp in ("triangle", "bilinear"):
        np.testing.assert_allclose(interpolation_matrix(x, y, xn, yn, interp) @ f, 2 * x - y, atol=1e-12)


def test_regularizers_annihilate_planes() -> None:
    xn = np.array([0.0, 1.0, 2.5, 3.0, 5.0])
    yn = np.array([-1.0, 0.0, 0.5, 2.0])
    gx, gy = np.meshgrid(xn, yn, indexing="ij")
    plane = (1.0 + 2.0 * gx - 3.0 * gy).ravel()
    for reg in ("gradient", "laplacian"):
        assert np.abs(regularizer_matrix(xn, yn, reg) @ plane).max() < 1e-9
    assert np.abs(regularizer_matrix(xn, yn, "springs") @ np.ones(plane.size)).max() < 1e-12
    assert regularizer_matrix(xn, yn, "gradient").shape == (2 * 20, 20)


def test_node_counts_outside_points_and_extend() -> None:
    x, y = _sites(500, seed=6)
    z = 0.5 * x + y
    g = gridfit(x, y, z, 20, 25)
    assert g.shape == (25, 20)
    small = np.linspace(-25, 25, 21)
    p = GridfitProblem(x, y, small, small)  # default: points outside are dropped
    assert 0 < p.keep.sum() < x.size
    with pytest.raises(ValueError, match="outside the grid"):
        GridfitProblem(x, y, small, small, outside="error")
    ext = GridfitProblem(x, y, small, small, outside="extend")
    assert ext.keep.all() and ext.xnodes[0] <= x.min() and ext.ynodes[-1] >= y.max()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(x=np.zeros(2), y=np.zeros(2), values=np.zeros(2)), "at least 3"),
        (dict(x=np.array([0.0, 1, np.nan, 2]), y=np.zeros(4), values=np.zeros(4)), "NaN"),
        (dict(x=np.arange(4.0), y=np.arange(3.0), values=np.zeros(4)), "same number"),
        (dict(x=np.arange(4.0), y=np.arange(4.0), values=np.array([0.0, 1.0, np.inf, 2.0])), "NaN or infinite"),
        (dict(x=np.arange(4.0), y=np.arange(4.0), values=np.zeros(5)), "values must have shape"),
    ],
)
def test_bad_input_errors(kwargs: dict, match: str) -> None:
    nodes = np.linspace(-1, 4, 6)
    with pytest.raises(ValueError, match=match):
        gridfit(kwargs["x"], kwargs["y"], kwargs["values"], nodes, nodes)


def test_bad_options_errors() -> None:
    x, y = _sites(100)
    z = x.copy()
    n = _nodes(10)
    with pytest.raises(ValueError, match="strictly increasing"):
        gridfit(x, y, z, n[::-1], n)
    with pytest.raises(ValueError, match="at least 3 nodes"):
        gridfit(x, y, z, n[:2], n)
    with pytest.raises(ValueError, match="interp"):
        gridfit(x, y, z, n, n, interp="cubic")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="regularizer"):
        gridfit(x, y, z, n, n, regularizer="tv")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="solver"):
        gridfit(x, y, z, n, n, solver="cholmod")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="smoothness"):
        gridfit(x, y, z, n, n, smoothness=-1.0)
    with pytest.raises(ValueError, match="inside the grid"):
        gridfit(x + 1000.0, y, z, n, n)


def test_image_grid_orientation() -> None:
    grid = ImageGrid(8, 4.0)
    assert grid.step == pytest.approx(1.0)
    np.testing.assert_allclose(grid.xnodes, np.arange(8) - 3.5)
    # the top-left pixel centre maps to (0, 0); y up in mm is row up in the image
    np.testing.assert_allclose(grid.to_pixels(np.array([-3.5, 3.5])), [0.0, 0.0])
    np.testing.assert_allclose(grid.to_pixels(np.array([3.5, -3.5, 9.0])), [7.0, 7.0])
    rows = np.arange(8)[:, None] * np.ones((1, 8))  # gridfit row index = y index
    np.testing.assert_array_equal(grid.to_image(rows)[0], 7)  # top image row = largest y
    with pytest.raises(ValueError):
        ImageGrid(2, 1.0)
