"""Bosphorus ``.bnt`` + ``.png`` + ``.lm3``/``.lm2``: round trips, grid rules, bad input."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from afnetm_timm.data import FaceScan, ScanFormatError
from afnetm_timm.data.formats import (
    BOSPHORUS_LABELS,
    BntGrid,
    bnt_mesh,
    encode_bnt,
    parse_bnt,
    rasterize_scan,
    read_bnt,
    read_bosphorus,
    read_lm3,
    read_scan,
    write_bnt,
    write_bosphorus,
)
from tests.data.fixtures import make_tiny_scan, tiny_surface


def _grid(nrows: int = 4, ncols: int = 5, *, name: str = "t.png", holes: tuple = ()) -> BntGrid:
    c, r = np.meshgrid(np.arange(ncols, dtype=float), np.arange(nrows, dtype=float))
    x, y = c * 0.76, r * 0.76
    z = np.sin(x) + y * 0.1
    u, v = (c + 0.5) / ncols, (nrows - r - 0.5) / nrows
    g = BntGrid(x=x, y=y, z=z, u=u, v=v, zmin=-1e9, texture_name=name)
    for rr, cc in holes:
        g.x[rr, cc] = g.y[rr, cc] = g.z[rr, cc] = g.zmin
        g.u[rr, cc] = g.v[rr, cc] = 0.5  # u, v are not set to zmin: detection must use z only
    return g


def _write_grid(folder: Path, grid: BntGrid, stem: str = "bs001_E_ANGER_0") -> Path:
    grid.texture_name = f"{stem}.png"
    Image.fromarray(np.full((6, 5, 3), 90, dtype=np.uint8)).save(folder / grid.texture_name)
    return write_bnt(folder / f"{stem}.bnt", grid)


# ----------------------------------------------------------------------------------------------- layout
def test_layout_matches_reference() -> None:
    g = _grid(2, 3, name="bs000_CAU_A22A25_0.png")
    data = encode_bnt(g)
    L = len("bs000_CAU_A22A25_0.png")
    assert len(data) == 18 + L + 8 * 5 * 6
    assert struct.unpack_from("<HHdH", data, 0) == (2, 3, -1e9, L)
    assert data[14:14 + L] == b"bs000_CAU_A22A25_0.png"
    assert struct.unpack_from("<I", data, 14 + L) == (30,)
    body = np.frombuffer(data, "<f8", offset=18 + L).reshape(5, 6)  # column-major N x 5: x[N], y[N], ...
    np.testing.assert_array_equal(body[2], g.z.ravel())
    np.testing.assert_array_equal(body[4], g.v.ravel())


def test_grid_round_trip_exact(tmp_path: Path) -> None:
    g = _grid(7, 9, holes=((0, 0), (3, 4)))
    back = read_bnt(write_bnt(tmp_path / "g.bnt", g))
    assert back.shape == (7, 9) and back.texture_name == "t.png" and back.zmin == -1e9
    for k in "xyzuv":
        np.testing.assert_array_equal(getattr(back, k), getattr(g, k))


def test_triangulation_rule_and_orientation() -> None:
    g = _grid(3, 3, holes=((1, 1),))
    vertices, faces, uv, flat = bnt_mesh(g)
    assert len(vertices) == 8 and flat.tolist() == [0, 1, 2, 3, 5, 6, 7, 8]
    assert len(faces) == 2  # only the two triangles not touching the centre hole survive
    tri = vertices[faces]
    cross_z = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])[:, 2]
    assert np.all(cross_z > 0), "normals must face +z"
    full = bnt_mesh(_grid(3, 3))[1]
    assert len(full) == 8
    expected = {frozenset(t) for t in [(0, 3, 1), (3, 4, 1), (1, 4, 2), (4, 5, 2), (3, 6, 4), (6, 7, 4), (4, 7, 5),
                                       (7, 8, 5)]}
    assert {frozenset(t) for t in full.tolist()} == expected


def test_read_grid_scan(tmp_path: Path) -> None:
    g = _grid(5, 6, holes=((2, 2),))
    path = _write_grid(tmp_path, g)
    scan = read_scan(path)
    assert scan.metadata["grid_shape"] == (5, 6)
    np.testing.assert_array_equal(scan.metadata["grid_index"], np.flatnonzero(g.valid.ravel()))
    np.testing.assert_allclose(scan.vertices[:, 2], g.z[g.valid])
    np.testing.assert_allclose(scan.corner_uv, np.stack([g.u[g.valid], g.v[g.valid]], 1)[scan.faces])
    assert scan.texture.shape == (6, 5, 3)
    assert scan.metadata["expression"] == "anger" and scan.metadata["subject"] == "bs001"
    assert scan.landmarks == {}


# ----------------------------------------------------------------------------------------------- mesh -> bnt -> mesh
def test_tiny_surface_round_trip(tmp_path: Path) -> None:
    scan = make_tiny_scan(41, extent=15.0, landmark_scheme="bosphorus")
    paths = write_bosphorus(scan, tmp_path, "bs010_N_N_1", step=0.5)
    assert set(paths) == {"bnt", "png", "lm3", "lm2"}
    back = read_scan(paths["bnt"])
    x, y, z = back.vertices.T
    assert np.abs(z - tiny_surface(x, y)).max() < 0.05  # linear interpolation of a smooth bump
    assert np.abs(x).max() <= 15.0 + 1e-9 and np.abs(y).max() <= 15.0 + 1e-9
    assert back.landmark_scheme == "bosphorus"
    for k, p in scan.landmarks.items():
        np.testing.assert_allclose(back.landmarks[k], p, atol=1e-6)
    # texture is kept and u, v interpolated from the original corner_uv
    np.testing.assert_array_equal(back.texture, scan.texture)
    expected_uv = np.stack([(x + 15) / 30, (15 - y) / 30], axis=1) * 0.98 + 0.01
    np.testing.assert_allclose(back.corner_uv, expected_uv[back.faces], atol=1e-9)
    assert back.metadata["expression"] == "neutral"


def test_sfm_round_trip(tmp_path: Path, sfm_scan: FaceScan) -> None:
    paths = write_bosphorus(sfm_scan, tmp_path, "bs042_E_HAPPY_0")
    back = read_scan(paths["bnt"])
    grid = read_bnt(paths["bnt"])
    assert 0.0 < 1 - grid.valid.mean() < 0.6  # some background, mostly face
    assert np.all(grid.x[~grid.valid] == grid.zmin)
    row_y = [grid.y[r][grid.valid[r]].mean() for r in range(grid.shape[0]) if grid.valid[r].any()]
    assert np.all(np.diff(row_y) > 0)  # row 0 is the chin (lowest y)
    # the grid samples the front surface: nose tip height and x/y extent are kept
    assert abs(back.vertices[:, 2].max() - sfm_scan.vertices[:, 2].max()) < 0.5
    np.testing.assert_allclose(back.vertices[:, :2].min(0), sfm_scan.vertices[:, :2].min(0), atol=0.8)
    np.testing.assert_allclose(back.vertices[:, :2].max(0), sfm_scan.vertices[:, :2].max(0), atol=0.8)
    steps = np.diff(np.unique(back.vertices[:, 0]))
    np.testing.assert_allclose(steps[steps > 1e-6], 0.76, rtol=1e-6)
    # iBUG landmarks were converted to the 20 Bosphorus labels they cover, unchanged in position
    assert len(back.landmarks) == 20 and back.landmark_scheme == "bosphorus"
    np.testing.assert_allclose(back.landmarks["Nose tip"], sfm_scan.landmarks["ibug68_31"])
    assert back.landmarks["Outer left eye corner"][0] < back.landmarks["Outer right eye corner"][0]
    assert back.metadata["expression"] == "happiness"
    # lm2 pixels address the texture where the landmark's surface point is painted
    lm2 = back.metadata["landmarks_2d"]
    h, w = back.texture.shape[:2]
    assert all(0 <= p[0] <= w and 0 <= p[1] <= h for p in lm2.values())


def test_lm2_lifted_when_lm3_missing(tmp_path: Path, sfm_scan: FaceScan) -> None:
    paths = write_bosphorus(sfm_scan, tmp_path, "bs001_E_FEAR_0")
    truth = read_lm3(paths["lm3"])
    paths["lm3"].unlink()
    back = read_bosphorus(paths["bnt"])
    assert back.metadata["landmarks_from_2d"] is True
    assert set(back.landmarks) == set(truth)
    err = [np.linalg.norm(back.landmarks[k] - truth[k]) for k in truth]
    assert max(err) < 3.0, err


def test_raster_texture_with_vertex_colors(tmp_path: Path) -> None:
    scan = make_tiny_scan(11, textured=False, colors=True, landmark_scheme="none")
    paths = write_bosphorus(scan, tmp_path, "c", step=1.0)
    assert "lm3" not in paths
    back = read_bosphorus(paths["bnt"])
    h, w = back.texture.shape[:2]
    assert (h, w) == back.metadata["grid_shape"]
    # each vertex's uv hits its own pixel: image row 0 is the top (largest y)
    top = back.vertices[:, 1].argmax()
    assert back.corner_uv[np.nonzero(back.faces == top)][0][1] < 0.1


def test_rasterize_triangles_coverage_and_depth() -> None:
    from afnetm_timm.data.formats import interpolate_corners, rasterize_triangles

    tri = np.array([[[0, 0], [4, 0], [0, 4]], [[0, 0], [4, 0], [0, 4]], [[10, 10], [11, 10], [10, 11]]], float)
    depth = np.array([[0, 0, 0], [1, 1, 1], [0, 0, 0]], float)
    tri_id, bary = rasterize_triangles(tri, (5, 6), depth)
    covered = {(r, c) for r in range(5) for c in range(6) if c + r <= 4}
    assert {tuple(x) for x in np.argwhere(tri_id >= 0)} == covered
    assert set(np.unique(tri_id[tri_id >= 0])) == {1}  # the nearer copy wins
    vals = interpolate_corners(tri_id, bary, np.array([[[0.0], [4.0], [0.0]]] * 3))
    np.testing.assert_allclose(vals[2, 1, 0], 1.0)  # value = x along the edge 0 -> 4
    tri_id, _ = rasterize_triangles(tri, (5, 6), depth, chunk=3)  # tiny chunks give the same answer
    assert set(np.unique(tri_id[tri_id >= 0])) == {1}


def test_rasterize_keep_requires_texture() -> None:
    with pytest.raises(ValueError, match="keep"):
        rasterize_scan(make_tiny_scan(textured=False), texture="keep")


# ----------------------------------------------------------------------------------------------- bad input
def _good_bytes() -> bytes:
    return encode_bnt(_grid(3, 4))


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "truncated header"),
        (_good_bytes()[:13], "truncated header"),
        (struct.pack("<HHdH", 3, 4, -1e9, 200) + b"t.png", "do not fit"),
        (_good_bytes()[:-8], "truncated"),
        (_good_bytes()[:-1], "truncated"),
        (_good_bytes() + b"\0" * 8, "trailing bytes"),
        (struct.pack("<HHdH", 3, 4, -1e9, 0) + struct.pack("<I", 59) + b"\0" * (59 * 8), "n5 = 59"),
        (struct.pack("<HHdH", 3, 4, float("nan"), 0) + struct.pack("<I", 60) + b"\0" * 480, "NaN"),
        (struct.pack("<HHdH", 1, 1, -1e9, 2) + b"\xff\xfe" + struct.pack("<I", 5) + b"\0" * 40, "not ASCII"),
    ],
)
def test_bad_bnt_bytes(tmp_path: Path, data: bytes, problem: str) -> None:
    path = tmp_path / "bad.bnt"
    path.write_bytes(data)
    with pytest.raises(ScanFormatError, match=problem) as info:
        read_bosphorus(path)
    assert info.value.path == path and str(path) in str(info.value)


@pytest.mark.parametrize("name", ["../t.png", "sub/t.png", "sub\\t.png", "..", "/tmp/t.png"])
def test_bnt_texture_name_outside_folder(tmp_path: Path, name: str) -> None:
    g = _grid()
    g.texture_name = name
    path = write_bnt(tmp_path / "x.bnt", g)
    with pytest.raises(ScanFormatError, match="plain file name") as info:
        read_bosphorus(path)
    assert info.value.path == path


def test_bnt_missing_or_corrupt_texture(tmp_path: Path) -> None:
    path = _write_grid(tmp_path, _grid())
    png = tmp_path / read_bnt(path).texture_name
    png.write_bytes(b"\x89PNG garbage")
    with pytest.raises(ScanFormatError, match="cannot decode") as info:
        read_bosphorus(path)
    assert info.value.path == png
    png.unlink()
    with pytest.raises(ScanFormatError, match="missing"):
        read_bosphorus(path)
    assert read_bosphorus(path, load_texture=False).texture is None


def test_bnt_non_finite_and_empty(tmp_path: Path) -> None:
    g = _grid()
    g.z[1, 1] = np.nan
    with pytest.raises(ScanFormatError, match="NaN or infinite"):
        read_bosphorus(_write_grid(tmp_path, g))
    g = _grid()
    g.x[2, 2] = np.inf
    with pytest.raises(ScanFormatError, match="NaN or infinite"):
        read_bosphorus(_write_grid(tmp_path, g))
    g = _grid()
    g.z[:] = g.zmin
    with pytest.raises(ScanFormatError, match="no valid points"):
        read_bosphorus(_write_grid(tmp_path, g))
    g = _grid(1, 5)
    with pytest.raises(ScanFormatError, match="no triangles"):
        read_bosphorus(_write_grid(tmp_path, g))
    g = _grid(0, 0)
    with pytest.raises(ScanFormatError, match="no valid points"):
        read_bosphorus(_write_grid(tmp_path, g))


def test_bnt_bad_landmark_files(tmp_path: Path) -> None:
    scan = make_tiny_scan(21, landmark_scheme="bosphorus")
    paths = write_bosphorus(scan, tmp_path, "bs003_N_N_0", step=1.0)
    text = paths["lm3"].read_text()
    paths["lm3"].write_text(text.replace(BOSPHORUS_LABELS[0], "Third eye"))
    with pytest.raises(ScanFormatError, match="unknown landmark label 'Third eye'") as info:
        read_scan(paths["bnt"])
    assert info.value.path == paths["lm3"]
    # without landmark loading the scan still reads
    assert read_scan(paths["bnt"], landmarks={}).landmarks == {}


def test_parse_bnt_without_path() -> None:
    with pytest.raises(ScanFormatError, match="truncated") as info:
        parse_bnt(b"\0" * 5)
    assert info.value.path is None
