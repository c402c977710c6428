"""Generic meshes through trimesh and the `read_scan` dispatcher."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from afnetm_timm.data import FaceScan, ScanFormatError
from afnetm_timm.data.formats import read_mesh, read_scan, write_bosphorus, write_bu3dfe, write_mesh
from tests.data.fixtures import make_sfm_scan, make_tiny_scan


def _same_soup(a: FaceScan, b: FaceScan, *, atol: float = 1e-4) -> None:
    """Same triangles (as corner positions and corner uv), whatever the vertex numbering."""
    np.testing.assert_allclose(a.vertices[a.faces], b.vertices[b.faces], atol=atol)
    if b.corner_uv is not None:
        np.testing.assert_allclose(a.corner_uv, b.corner_uv, atol=1e-6)
        np.testing.assert_array_equal(a.texture, b.texture)


@pytest.mark.parametrize("suffix", [".obj", ".ply", ".glb"])
@pytest.mark.parametrize("seam", [False, True])
def test_textured_round_trip(tmp_path: Path, suffix: str, seam: bool) -> None:
    scan = make_tiny_scan(seam=seam)
    paths = write_mesh(scan, tmp_path / f"face{suffix}")
    back = read_scan(paths["mesh"])
    _same_soup(back, scan)
    assert back.metadata["format"] == suffix[1:]


@pytest.mark.parametrize("suffix", [".obj", ".ply", ".glb"])
def test_vertex_color_round_trip(tmp_path: Path, suffix: str) -> None:
    scan = make_tiny_scan(textured=False, colors=True)
    back = read_mesh(write_mesh(scan, tmp_path / f"c{suffix}")["mesh"])
    np.testing.assert_allclose(back.vertices, scan.vertices, atol=1e-5)
    np.testing.assert_array_equal(back.faces, scan.faces)
    np.testing.assert_array_equal(back.vertex_colors, scan.vertex_colors)


@pytest.mark.parametrize("suffix", [".off", ".stl"])
def test_plain_meshes(tmp_path: Path, suffix: str) -> None:
    scan = make_tiny_scan(textured=False)
    back = read_mesh(write_mesh(scan, tmp_path / f"p{suffix}")["mesh"])
    _same_soup(back, scan)


def test_sfm_obj_with_sidecar_landmarks(tmp_path: Path, sfm_scan: FaceScan) -> None:
    path = write_mesh(sfm_scan, tmp_path / "sfm.obj")["mesh"]
    side = {k: v.tolist() for k, v in sfm_scan.landmarks.items()}
    (tmp_path / "sfm.landmarks.json").write_text(json.dumps({"scheme": "ibug68", "landmarks": side}))
    back = read_scan(path)
    _same_soup(back, sfm_scan)
    assert back.landmark_scheme == "ibug68" and len(back.landmarks) == 50
    np.testing.assert_allclose(back.landmarks["ibug68_31"], sfm_scan.landmarks["ibug68_31"])
    assert back.metadata["landmark_path"].endswith("sfm.landmarks.json")


def test_landmarks_argument_overrides(tmp_path: Path) -> None:
    scan = make_tiny_scan(landmark_scheme="bu3dfe83")
    paths = write_bu3dfe(scan, tmp_path, "F0003_HA01WH_F3D")
    back = read_scan(paths["wrl"], landmarks=np.zeros((3, 3)))
    assert back.landmark_scheme == "custom" and list(back.landmarks) == ["lm_000", "lm_001", "lm_002"]
    np.save(tmp_path / "lm.npy", np.ones((68, 3)))
    back = read_scan(paths["wrl"], landmarks=tmp_path / "lm.npy")
    assert back.landmark_scheme == "ibug68"
    back = read_scan(paths["wrl"], landmarks={"nose": 7})
    np.testing.assert_array_equal(back.landmarks["nose"], back.vertices[7])


def test_read_scan_dispatch(tmp_path: Path) -> None:
    scan = make_tiny_scan(11, landmark_scheme="bosphorus")
    a = read_scan(write_bu3dfe(scan, tmp_path, "a")["wrl"])
    b = read_scan(write_bosphorus(scan, tmp_path, "b", step=1.0)["bnt"])
    c = read_scan(write_mesh(scan, tmp_path / "c.ply")["mesh"])
    assert (a.metadata["format"], b.metadata["format"], c.metadata["format"]) == ("vrml", "bosphorus-bnt", "ply")
    assert b.landmark_scheme == "bosphorus" and a.landmarks == {} and c.landmarks == {}


def test_sfm_every_format(tmp_path: Path, sfm: dict) -> None:
    scan = make_sfm_scan("disgust", 1.2, seed=5, texture_size=128, landmark_scheme="bu3dfe83")
    wrl = read_scan(write_bu3dfe(scan, tmp_path, "F0020_DI03WH_F3D")["wrl"])
    bnt = read_scan(write_bosphorus(scan, tmp_path, "bs020_E_DISGUST_0")["bnt"])
    glb = read_scan(write_mesh(scan, tmp_path / "s.glb")["mesh"])
    for s in (wrl, bnt, glb):
        assert s.texture is not None and s.corner_uv.shape == (len(s.faces), 3, 2)
    assert wrl.landmark_scheme == "bu3dfe83" and bnt.landmarks == {}  # bu3dfe83 has no Bosphorus labels
    _same_soup(glb, scan)


# ----------------------------------------------------------------------------------------------- bad input
def test_unsupported_and_missing(tmp_path: Path) -> None:
    with pytest.raises(ScanFormatError, match="unsupported scan type"):
        read_scan(tmp_path / "x.abc")
    with pytest.raises(ScanFormatError, match="does not exist"):
        read_scan(tmp_path / "x.wrl")
    with pytest.raises(ScanFormatError, match="does not exist"):
        read_mesh(tmp_path / "x.obj")


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("empty.obj", "", "no triangle mesh|no vertices|empty"),
        ("points.obj", "v 0 0 0\nv 1 0 0\n", "no triangle mesh|no triangles|empty"),
        ("nan.obj", "v 0 0 0\nv nan 0 0\nv 0 1 0\nf 1 2 3\n", "NaN or infinite"),
        ("flat.obj", "v 0 0 0\nv 1 0 0\nv 2 0 0\nf 1 2 3\n", "zero area"),
        ("garbage.ply", "ply\nthis is not a ply\n", "cannot read mesh|no triangle"),
        ("garbage.glb", "glTF nonsense", "cannot read mesh"),
    ],
)
def test_bad_meshes(tmp_path: Path, name: str, content: str, problem: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ScanFormatError, match=problem) as info:
        read_mesh(path)
    assert info.value.path == path


def test_point_cloud_is_named_as_such(tmp_path: Path) -> None:
    import trimesh

    path = tmp_path / "cloud.ply"
    trimesh.PointCloud(np.random.default_rng(0).random((500, 3)) * 50).export(path)
    with pytest.raises(ScanFormatError, match="no triangles in the file \\(a point cloud"):
        read_mesh(path)


@pytest.mark.parametrize("texname", ["../t.png", "sub/t.png", "missing.png"])
def test_obj_texture_outside_folder_or_missing(tmp_path: Path, texname: str) -> None:
    paths = write_mesh(make_tiny_scan(), tmp_path / "sub" / "m.obj")
    (tmp_path / "t.png").write_bytes(paths["png"].read_bytes())
    paths["mtl"].write_text(paths["mtl"].read_text().replace("map_Kd m.png", f"map_Kd {texname}"))
    with pytest.raises(ScanFormatError, match="plain file name|missing") as info:
        read_mesh(paths["mesh"])
    assert info.value.path == paths["mesh"]


def test_ply_texture_missing(tmp_path: Path) -> None:
    paths = write_mesh(make_tiny_scan(), tmp_path / "m.ply")
    paths["png"].unlink()
    with pytest.raises(ScanFormatError, match="missing"):
        read_mesh(paths["mesh"])
    assert read_mesh(paths["mesh"], load_texture=False).texture is None


def test_write_mesh_rejects_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unsupported mesh type"):
        write_mesh(make_tiny_scan(), tmp_path / "a.xyz")
