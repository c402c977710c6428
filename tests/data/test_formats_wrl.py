"""BU-3DFE ``.wrl`` + ``.bmp`` + ``.bnd``: round trips, VRML97 details, bad input."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from afnetm_timm.data import FaceScan, ScanFormatError
from afnetm_timm.data.formats import (
    BU3DFE83_GROUPS,
    format_wrl,
    read_bu3dfe,
    read_scan,
    read_wrl,
    write_bu3dfe,
)
from tests.data.fixtures import SFM_EXPRESSIONS, make_sfm_scan, make_tiny_scan


def _same_scan(a: FaceScan, b: FaceScan, *, atol: float = 1e-5) -> None:
    np.testing.assert_allclose(a.vertices, b.vertices, atol=atol)
    np.testing.assert_array_equal(a.faces, b.faces)
    if b.texture is not None:
        np.testing.assert_array_equal(a.texture, b.texture)
        np.testing.assert_allclose(a.corner_uv, b.corner_uv, atol=1e-7)


def _write_png_texture(folder: Path, name: str, size: tuple[int, int] = (4, 8)) -> np.ndarray:
    h, w = size
    img = np.arange(h * w * 3, dtype=np.uint8).reshape(h, w, 3)
    Image.fromarray(img).save(folder / name)
    return img


# ----------------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("seam", [False, True])
def test_tiny_round_trip(tmp_path: Path, seam: bool) -> None:
    scan = make_tiny_scan(seam=seam, landmark_scheme="bu3dfe83")
    paths = write_bu3dfe(scan, tmp_path, "M0007_SA02AE_F3D")
    assert set(paths) == {"wrl", "bmp", "bnd"}
    back = read_scan(paths["wrl"])
    _same_scan(back, scan)
    assert back.landmark_scheme == "bu3dfe83"
    assert set(back.landmarks) == set(scan.landmarks)
    for k, p in scan.landmarks.items():
        np.testing.assert_allclose(back.landmarks[k], p, atol=1e-6)
    assert back.metadata["bnd_max_offset_mm"] < 1e-6
    assert back.metadata["subject"] == "M0007" and back.metadata["expression"] == "sadness"
    assert back.metadata["intensity"] == 2 and back.metadata["race"] == "AE"
    assert back.source == paths["wrl"]


@pytest.mark.parametrize("expression", SFM_EXPRESSIONS)
def test_sfm_round_trip_every_expression(tmp_path: Path, sfm: dict, expression: str) -> None:
    scan = make_sfm_scan(expression, 1.0, seed=1, texture_size=64, landmark_scheme="bu3dfe83")
    code = {"anger": "AN", "disgust": "DI", "fear": "FE", "happiness": "HA", "sadness": "SA", "surprise": "SU"}
    name = f"F0012_{code[expression]}04WH_F3D"
    back = read_scan(write_bu3dfe(scan, tmp_path, name)["wrl"])
    _same_scan(back, scan)
    assert back.metadata["expression"] == expression
    assert len(back.landmarks) == 83
    # .bnd indices point at mesh vertices whose coordinates equal the written xyz
    idx = back.metadata["bnd_vertex_index"]
    np.testing.assert_allclose(back.vertices[idx], np.stack(list(back.landmarks.values())), atol=1e-5)
    nose = np.stack([back.landmarks[f"bu3dfe83_{k:02d}"] for k in BU3DFE83_GROUPS["nose"]])
    assert nose[:, 2].max() > np.median(back.vertices[:, 2])  # nose sits in front


def test_sfm_ibug_scan_writes_no_bnd(tmp_path: Path, sfm_scan: FaceScan) -> None:
    paths = write_bu3dfe(sfm_scan, tmp_path, "F0001_HA01WH_F3D")
    assert "bnd" not in paths
    back = read_scan(paths["wrl"])
    assert back.landmarks == {}
    _same_scan(back, sfm_scan)


def test_vertex_colors_round_trip(tmp_path: Path) -> None:
    scan = make_tiny_scan(textured=False, colors=True)
    paths = write_bu3dfe(scan, tmp_path, "x")
    assert "bmp" not in paths
    back = read_wrl(paths["wrl"])
    assert back.texture is None and back.corner_uv is None
    np.testing.assert_array_equal(back.vertex_colors, scan.vertex_colors)


def test_texture_orientation_bottom_left(tmp_path: Path) -> None:
    """t = 0 is the bottom row of the .bmp; corner_uv v = 1 - t addresses it from the top."""
    img = np.zeros((4, 2, 3), dtype=np.uint8)
    img[-1] = 255  # bottom row white
    Image.fromarray(img).save(tmp_path / "t.bmp")
    text = """#VRML V2.0 utf8
Shape { appearance Appearance { texture ImageTexture { url "t.bmp" } }
  geometry IndexedFaceSet { coord Coordinate { point [0 0 0, 1 0 0, 0 1 0] } coordIndex [0 1 2 -1]
    texCoord TextureCoordinate { point [0.25 0.1, 0.75 0.1, 0.25 0.9] } } }
"""
    (tmp_path / "a.wrl").write_text(text)
    scan = read_wrl(tmp_path / "a.wrl")
    uv = scan.corner_uv[0]
    np.testing.assert_allclose(uv[:, 1], [0.9, 0.9, 0.1])
    row = int(uv[0, 1] * img.shape[0])
    assert scan.texture[row, 0].tolist() == [255, 255, 255]


# ----------------------------------------------------------------------------------------------- VRML details
VRML_DETAILS = """#VRML V2.0 utf8\r
# a comment { [ with brackets\r
WorldInfo { title "a # not a comment" info [ "x" ] }\r
Viewpoint { position 0 0 10 description "front" }\r
DEF Tricorder_object Transform {\r
  translation 10 0 0   # moved along x\r
  children [\r
    Shape {\r
      appearance Appearance { texture ImageTexture { url "tex#1.png" } }\r
      geometry IndexedFaceSet {\r
        coord DEF C Coordinate { point [ 0 0 0, 1e0 0 0, 1 1 0, 0 1 0, -0.5 0.5 0, 2.0E+0 0.5 0 ] }\r
        coordIndex [ 0, 1, 2, 3, 4, -1, 1 5 2 ]\r
        texCoord TextureCoordinate { point [ 0 0, 1 0, 1 1, 0 1, 0.5 0.5, 0.25 0.25 ] }\r
        texCoordIndex [ 0 1 2 3 4 -1 5 1 2 ]\r
      }\r
    }\r
    Transform { scale 2 2 2 rotation 0 0 1 1.5707963267948966 children Shape {\r
      geometry IndexedFaceSet { coord USE C coordIndex [ 0 1 2 -1 ] ccw FALSE } } }\r
  ]\r
}\r
Viewpoint { position 0 0 -10 }\r
"""


def test_vrml_details(tmp_path: Path) -> None:
    img = _write_png_texture(tmp_path, "tex#1.png")
    (tmp_path / "d.wrl").write_bytes(VRML_DETAILS.encode())
    scan = read_wrl(tmp_path / "d.wrl")
    # shape 1: a pentagon (3 fan triangles) + a triangle without trailing -1; shape 2: one triangle
    assert scan.faces.shape == (5, 3)
    np.testing.assert_array_equal(scan.faces[:4], [[0, 1, 2], [0, 2, 3], [0, 3, 4], [1, 5, 2]])
    np.testing.assert_array_equal(scan.faces[4], [8, 7, 6])  # ccw FALSE reverses the winding
    np.testing.assert_allclose(scan.vertices[:6, 0], [10, 11, 11, 10, 9.5, 12])
    # second shape: scale 2 then rotate 90 degrees about z, inside the outer translation
    np.testing.assert_allclose(scan.vertices[6:9], [[10, 0, 0], [10, 2, 0], [8, 2, 0]], atol=1e-12)
    np.testing.assert_array_equal(scan.texture[:img.shape[0], :img.shape[1]], img)  # atlas: texture + grey block
    assert scan.texture.shape[1] == img.shape[1] + 2
    # per-corner uv: vertex 1 has uv (1,0) in the pentagon and (1,0) via index 1, vertex 5 has (0.25, 0.25)
    scale_u = img.shape[1] / scan.texture.shape[1]
    np.testing.assert_allclose(scan.corner_uv[3], [[0.25 * scale_u, 0.75], [1 * scale_u, 1.0], [1 * scale_u, 0.0]])
    assert scan.metadata["texture_files"] == ["tex#1.png"]


def test_transform_center_and_scale_orientation(tmp_path: Path) -> None:
    body = ("Transform { center 1 0 0 rotation 0 0 1 3.141592653589793 scaleOrientation 0 0 1 0.7853981633974483 "
            "scale 2 2 1 children [ Shape { geometry IndexedFaceSet { coord Coordinate { point [1 0 0, 2 0 0, 1 1 0] }"
            " coordIndex [0 1 2] } } ] }")
    scan = read_wrl(_wrl(tmp_path, body))
    # uniform x/y scale is unaffected by scaleOrientation; rotation by pi about (1, 0, 0)
    np.testing.assert_allclose(scan.vertices, [[1, 0, 0], [-1, 0, 0], [1, -2, 0]], atol=1e-12)


def test_texcoordindex_absent_uses_coordindex_and_seams(tmp_path: Path) -> None:
    _write_png_texture(tmp_path, "t.png")
    text = """#VRML V2.0 utf8
Shape { appearance Appearance { texture ImageTexture { url ["missing.png" "t.png"] } }
 geometry IndexedFaceSet { coord Coordinate { point [0 0 0 1 0 0 1 1 0 0 1 0] }
  coordIndex [0 1 2 -1 0 2 3 -1] texCoord TextureCoordinate { point [0 0 1 0 1 1 0 1] } } }"""
    (tmp_path / "s.wrl").write_text(text)
    scan = read_wrl(tmp_path / "s.wrl")
    np.testing.assert_allclose(scan.corner_uv[1], [[0, 1], [1, 0], [0, 0]])


def test_single_shape_same_texture_twice_shares_image(tmp_path: Path) -> None:
    img = _write_png_texture(tmp_path, "t.png")
    shape = ('Shape { appearance Appearance { texture ImageTexture { url "t.png" } } geometry IndexedFaceSet { '
             'coord Coordinate { point [0 0 0 1 0 0 0 1 0] } coordIndex [0 1 2] '
             'texCoord TextureCoordinate { point [0 0 1 0 0 1] } } }')
    (tmp_path / "s.wrl").write_text("#VRML V2.0 utf8\n" + shape + "\n" + shape)
    scan = read_wrl(tmp_path / "s.wrl")
    np.testing.assert_array_equal(scan.texture, img)
    np.testing.assert_allclose(scan.corner_uv[0], scan.corner_uv[1])


def test_def_use_in_children_lists(tmp_path: Path) -> None:
    text = ("#VRML V2.0 utf8\nDEF g0 Shape { geometry IndexedFaceSet { coord Coordinate { point [0 0 0 1 0 0 0 1 0] }"
            " coordIndex [0 1 2] } }\nGroup { children [ USE g0 Transform { translation 5 0 0 children [ USE g0 ] } ] }")
    scan = read_wrl(_wrl(tmp_path, text, header=""))
    assert scan.faces.shape == (3, 3)  # the DEF itself, then two uses
    np.testing.assert_allclose(scan.vertices[6:], [[5, 0, 0], [6, 0, 0], [5, 1, 0]])


def test_use_explosion_is_refused(tmp_path: Path) -> None:
    text = ("#VRML V2.0 utf8\nDEF g0 Shape { geometry IndexedFaceSet { coord Coordinate { point [0 0 0 1 0 0 0 1 0] }"
            " coordIndex [0 1 2] } }\n")
    text += "".join(f"DEF g{k} Group {{ children [ USE g{k - 1} USE g{k - 1} ] }}\n" for k in range(1, 40))
    with pytest.raises(ScanFormatError, match="scene graph too large"):
        read_wrl(_wrl(tmp_path, text, header=""))


def test_load_texture_false_skips_image(tmp_path: Path) -> None:
    scan = make_tiny_scan()
    paths = write_bu3dfe(scan, tmp_path, "a")
    paths["bmp"].unlink()
    back = read_wrl(paths["wrl"], load_texture=False)
    assert back.texture is None and back.corner_uv is None
    with pytest.raises(ScanFormatError, match="missing"):
        read_wrl(paths["wrl"])


def test_repeated_corner_triangles_dropped(tmp_path: Path) -> None:
    text = "#VRML V2.0 utf8\nShape { geometry IndexedFaceSet { coord Coordinate { point [0 0 0 1 0 0 0 1 0] } " \
           "coordIndex [0 1 2 -1 0 0 1 -1 2 -1] } }"
    (tmp_path / "r.wrl").write_text(text)
    scan = read_wrl(tmp_path / "r.wrl")
    assert scan.faces.tolist() == [[0, 1, 2]] and scan.metadata["dropped_degenerate_faces"] == 1


def test_large_mesh_is_fast(tmp_path: Path) -> None:
    n = 225  # ~50k vertices, ~100k triangles
    scan = make_tiny_scan(n, extent=100.0, textured=True, landmark_scheme="none")
    paths = write_bu3dfe(scan, tmp_path, "big")
    t0 = time.perf_counter()
    back = read_wrl(paths["wrl"])
    elapsed = time.perf_counter() - t0
    assert back.vertices.shape == (n * n, 3)
    assert elapsed < 5.0, f"reading a 50k-vertex .wrl took {elapsed:.2f} s"


def test_format_wrl_is_bu3dfe_like(tiny_scan: FaceScan) -> None:
    text = format_wrl(tiny_scan, "x.bmp")
    assert text.startswith("#VRML V2.0 utf8")
    assert "DEF Tricorder_object Transform" in text and "Viewpoint" in text and 'url "x.bmp"' in text


# ----------------------------------------------------------------------------------------------- bad input
GOOD_GEOMETRY = "coord Coordinate { point [0 0 0, 1 0 0, 0 1 0] } coordIndex [0 1 2 -1]"


def _wrl(tmp_path: Path, body: str, name: str = "bad.wrl", header: str = "#VRML V2.0 utf8\n") -> Path:
    path = tmp_path / name
    path.write_text(header + body)
    return path


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("Shape { geometry IndexedFaceSet { coord Coordinate { point [0 0 0, 1 0 0, 0 1 0 } coordIndex [0 1 2] } }",
         "unexpected|\\]"),
        (f"Shape {{ geometry IndexedFaceSet {{ {GOOD_GEOMETRY} }}", "missing '}'"),
        (f"Shape {{ geometry IndexedFaceSet {{ {GOOD_GEOMETRY} }} }} }}", "expected a node"),
        ("Shape { geometry IndexedFaceSet { coord Coordinate { point [0 0 0, 1 0 0, 0 1 0 ", "'\\[' without"),
        ("Shape { geometry IndexedFaceSet { coord Coordinate { point [0 0 0, 1 0 0, 0 1 0] } coordIndex [0 1 3] } }",
         "coordIndex value 3 out of range"),
        ("Shape { geometry IndexedFaceSet { coord Coordinate { point [0 0 0, 1 0 0, 0 1 0] } coordIndex [0 1 -2] } }",
         "coordIndex value -2"),
        ("Shape { geometry IndexedFaceSet { coord Coordinate { point [0 0 0, 1 0 0, 0 1] } coordIndex [0 1 2] } }",
         "multiple of 3"),
        ("Shape { geometry IndexedFaceSet { coord Coordinate { point [0 0 0, 1 nan 0, 0 1 0] } coordIndex [0 1 2] } }",
         "NaN or infinite"),
        ("Shape { geometry IndexedFaceSet { coord Coordinate { point [0 0 0, 1 inf 0, 0 1 0] } coordIndex [0 1 2] } }",
         "NaN or infinite"),
        ("Shape { geometry IndexedFaceSet { coord Coordinate { point [0 0 0, 1 0 0, 0 1 1e400] } coordIndex [0 1 2] } }",
         "NaN or infinite"),
        ("Shape { geometry IndexedFaceSet { coord Coordinate { point 0 0 0 1 NaN 0 0 1 0 } coordIndex [0 1 2] } }",
         "NaN or infinite"),
        ("Shape { geometry IndexedFaceSet { coord Coordinate { point [0 0 0, 1 0 0, 0 1 0] } coordIndex [0 1.5 2] } }",
         "not a list of numbers"),
        ("Shape { geometry IndexedFaceSet { coord Coordinate { point [0 0 x, 1 0 0, 0 1 0] } coordIndex [0 1 2] } }",
         "not a list of numbers"),
        ("Shape { geometry IndexedFaceSet { coord Coordinate { point [] } coordIndex [] } }", "no vertices|empty"),
        ("Shape { geometry IndexedFaceSet { coord Coordinate { point [0 0 0, 1 0 0, 0 1 0] } coordIndex [0 1 -1] } }",
         "no triangles"),
        ("Shape { geometry IndexedFaceSet { coord Coordinate { point [0 0 0, 1 0 0, 2 0 0] } coordIndex [0 1 2] } }",
         "zero area"),
        ("Viewpoint { position 0 0 10 }", "no IndexedFaceSet"),
        ("Shape { geometry IndexedFaceSet { coordIndex [0 1 2] } }", "without coord"),
        ("Shape { geometry IndexedFaceSet { coord USE nothing } }", "undefined node"),
        ('Shape { appearance Appearance { texture ImageTexture { url "t.png } } }', "unterminated"),
        (f"Transform {{ translation 1 2 children [ Shape {{ geometry IndexedFaceSet {{ {GOOD_GEOMETRY} }} }} ] }}",
         "translation must be 3"),
        (f"Shape {{ geometry IndexedFaceSet {{ {GOOD_GEOMETRY} texCoord TextureCoordinate {{ point [0 0] }} }} "
         "appearance Appearance { texture ImageTexture { url \"t.png\" } } }", "texCoordIndex value|out of range"),
        (f"Shape {{ geometry IndexedFaceSet {{ {GOOD_GEOMETRY} texCoord TextureCoordinate {{ point [0 0 1 1 0 1] }} "
         "texCoordIndex [0 1 -1 2] } appearance Appearance { texture ImageTexture { url \"t.png\" } } }",
         "parallel"),
        ("[" * 200, "expected a node"),
        ("Group { children [ " * 100 + "] }" * 100, "too deeply"),
        ("PROTO Foo [] { }", "not supported"),
    ],
)
def test_bad_wrl(tmp_path: Path, body: str, problem: str) -> None:
    _write_png_texture(tmp_path, "t.png")
    path = _wrl(tmp_path, body)
    with pytest.raises(ScanFormatError, match=problem) as info:
        read_wrl(path)
    assert info.value.path == path
    assert str(path) in str(info.value)


@pytest.mark.parametrize("fmt", ["%.9g", "%.6f", "%.1f", "%g", "%.3e", "%.15g", "%.17g", "%+.4f"])
def test_number_lists_parse_like_plain_conversion(fmt: str) -> None:
    from afnetm_timm.data.formats.wrl import _Raw

    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0, 100, 3000), rng.uniform(0, 1, 1000), rng.normal(0, 1e-5, 20), [0.0, -0.0]])
    text = " ".join(fmt % x + ("," if i % 3 == 2 else "") + ("\n" if i % 7 == 0 else "") for i, x in enumerate(values))
    got = _Raw(text).array(np.float64, None, "x")
    want = np.array(text.replace(",", " ").split(), dtype=np.float64)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(want))  # -0.0 stays -0.0
    ints = " ".join(f"{i} {i + 1} {i + 2} -1," for i in range(0, 3000, 3))
    np.testing.assert_array_equal(_Raw(ints).array(np.int64, None, "x"), np.array(ints.replace(",", " ").split(), dtype=np.int64))


@pytest.mark.parametrize(
    ("text", "dtype"),
    [("1 2 +", np.int64), ("1 2-3", np.int64), ("1.5 2", np.int64), ("1 99999999999999999999", np.int64),
     ("1.2.3 4", np.float64), ("1 - 2", np.float64), ("1e 2", np.float64), (". 1", np.float64), ("1 2e5e5", np.float64)],
)
def test_malformed_number_lists_still_fail(text: str, dtype: type) -> None:
    from afnetm_timm.data.formats.wrl import _Raw

    with pytest.raises(ScanFormatError, match="not a list of numbers"):
        _Raw(text).array(dtype, None, "x")


def test_not_vrml2(tmp_path: Path) -> None:
    path = _wrl(tmp_path, "Separator { }", header="#VRML V1.0 ascii\n")
    with pytest.raises(ScanFormatError, match="not a VRML 2.0"):
        read_wrl(path)


@pytest.mark.parametrize("url", ["../t.png", "sub/t.png", "..\\t.png", "/etc/passwd", "C:t.png", "", "a..b.png"])
def test_texture_url_outside_folder(tmp_path: Path, url: str) -> None:
    (tmp_path / "sub").mkdir()
    _write_png_texture(tmp_path / "sub", "t.png")
    _write_png_texture(tmp_path, "t.png")
    body = (f'Shape {{ appearance Appearance {{ texture ImageTexture {{ url "{url}" }} }} geometry IndexedFaceSet {{ '
            f"{GOOD_GEOMETRY} texCoord TextureCoordinate {{ point [0 0 1 0 0 1] }} }} }}")
    path = _wrl(tmp_path / "sub", body)
    with pytest.raises(ScanFormatError, match="plain file name|empty") as info:
        read_wrl(path)
    assert info.value.path == path


def test_missing_and_corrupt_texture(tmp_path: Path) -> None:
    scan = make_tiny_scan()
    paths = write_bu3dfe(scan, tmp_path, "F0001_NE00WH_F3D")
    paths["bmp"].write_bytes(b"BM not really a bitmap")
    with pytest.raises(ScanFormatError, match="cannot decode texture") as info:
        read_scan(paths["wrl"])
    assert info.value.path == paths["bmp"]
    paths["bmp"].unlink()
    with pytest.raises(ScanFormatError, match="F0001_NE00WH_F3D.bmp.*missing") as info:
        read_scan(paths["wrl"])
    assert info.value.path == paths["wrl"]


def test_texture_name_case_insensitive(tmp_path: Path) -> None:
    scan = make_tiny_scan()
    paths = write_bu3dfe(scan, tmp_path, "a")
    paths["bmp"].rename(tmp_path / "A.BMP")
    back = read_wrl(paths["wrl"])
    np.testing.assert_array_equal(back.texture, scan.texture)


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda lines: lines[:-1], "expected 83 landmark lines"),
        (lambda lines: lines + ["1 2 3 4"], "expected 83 landmark lines"),
        (lambda lines: ["9999 0 0 0"] + lines[1:], "out of range"),
        (lambda lines: ["-1 0 0 0"] + lines[1:], "negative"),
        (lambda lines: ["1.5 0 0 0"] + lines[1:], "not an integer"),
        (lambda lines: ["1 0 0"] + lines[1:], "expected 'idx x y z'"),
        (lambda lines: ["1 0 nan 0"] + lines[1:], "NaN or infinite"),
        (lambda lines: ["1 0 zero 0"] + lines[1:], "not a number"),
    ],
)
def test_bad_bnd(tmp_path: Path, mutate, problem: str) -> None:
    paths = write_bu3dfe(make_tiny_scan(landmark_scheme="bu3dfe83"), tmp_path, "F0001_AN01WH_F3D")
    lines = paths["bnd"].read_text().splitlines()
    paths["bnd"].write_text("\n".join(mutate(lines)) + "\n")
    with pytest.raises(ScanFormatError, match=problem) as info:
        read_bu3dfe(paths["wrl"])
    assert info.value.path == paths["bnd"]
