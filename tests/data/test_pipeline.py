"""preprocess_scan end to end, on procedural faces and on the Surrey Face Model (all six
expressions), plus the scan builders of `afnetm_timm.data.synthetic`."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from afnetm_timm.data.errors import ScanFormatError
from afnetm_timm.data.formats import interpolate_corners, rasterize_triangles
from afnetm_timm.data.masks import MaskConfig
from afnetm_timm.data.pipeline import PreprocessedSample, preprocess_scan, sample_colors
from afnetm_timm.data.pose import RigidTransform, ibug68_name, transform_scan
from afnetm_timm.data.synthetic import (
    EXPRESSIONS,
    face_scan_from_morphable_model,
    normalize_expression,
    synthetic_face_scan,
)

SFM_PATH = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sfm" / "sfm_3448.npz"


@pytest.fixture(scope="module")
def sfm_path() -> Path:
    if not SFM_PATH.is_file():
        pytest.skip(f"Surrey Face Model not found at {SFM_PATH}")
    return SFM_PATH


@pytest.fixture(scope="module")
def small_face():
    return synthetic_face_scan("happiness", n_points=4000, texture_size=128)


def _check_sample(s: PreprocessedSample, size: int) -> None:
    assert s.texture.shape == (size, size, 3) and s.texture.dtype == np.uint8
    assert s.depth.shape == (size, size, 3) and s.depth.dtype == np.uint8
    assert np.array_equal(s.depth[..., 0], s.depth[..., 1]) and np.array_equal(s.depth[..., 0], s.depth[..., 2])
    assert s.mask.shape == (size, size) and s.mask.dtype == np.float32
    assert s.mask.min() >= 0.0 and s.mask.max() <= 1.0
    assert s.mask_56.shape == (56, 56) and s.mask_28.shape == (28, 28)
    assert s.foreground.dtype == bool and s.foreground.any()
    assert np.all(s.depth[~s.foreground] == 0) and np.all(s.texture[~s.foreground] == 0)
    assert np.isnan(s.depth_mm[~s.foreground]).all() and np.isfinite(s.depth_mm[s.foreground]).all()
    json.dumps(s.info)  # plain types only


def test_synthetic_face_small_grid(small_face) -> None:
    s = preprocess_scan(small_face, size=64)
    _check_sample(s, 64)
    info = s.info
    for key in ("surface", "pose", "crop", "gridfit", "holes", "depth", "masks", "timings_ms"):
        assert key in info
    assert info["pose"]["method"] == "landmarks" and info["masks"]["source"] == "landmarks"
    assert info["crop"]["points_kept"] + info["crop"]["points_removed"] == len(small_face.vertices)
    # nose bright: the brightest depth pixel is near the image centre (the nose tip is the origin)
    r, c = np.unravel_index(np.argmax(s.depth[..., 0]), (64, 64))
    assert abs(r - 31.5) < 4 and abs(c - 31.5) < 4
    assert s.depth[..., 0].max() == 255
    # lips are redder than the cheeks in the texture
    lip = s.landmarks_px[ibug68_name(57)]
    cheek = s.grid.to_pixels(np.array([-40.0, 0.0]))
    tl = s.texture[int(round(lip[1])), int(round(lip[0]))].astype(int)
    tc = s.texture[int(round(cheek[1])), int(round(cheek[0]))].astype(int)
    assert tl[0] - tl[1] > tc[0] - tc[1]


def test_realistic_224_synthetic_and_options() -> None:
    scan = synthetic_face_scan("surprise", n_points=10000, identity_seed=3)
    s = preprocess_scan(scan, depth_dtype="float32", mask_config=MaskConfig(soft=True), gaussian_sigma=1.0)
    assert s.depth.dtype == np.float32 and s.depth.min() >= 0.0 and s.depth.max() == pytest.approx(1.0)
    assert s.info["noise"]["gaussian_sigma"] == 1.0 and s.info["masks"]["soft"]
    assert s.info["gridfit"]["grid"] == [224, 224] and s.info["gridfit"]["solver"] == "fast"
    assert ((s.mask > 0.05) & (s.mask < 0.95)).any()
    # the open mouth of 'surprise' is a dark hole in the texture and deeper than the lips
    inner = s.landmarks_px[ibug68_name(66)] * 0.5 + s.landmarks_px[ibug68_name(62)] * 0.5
    r, c = int(round(inner[1])), int(round(inner[0]))
    assert s.texture[r, c].mean() < 90
    lip = s.landmarks_px[ibug68_name(51)]
    assert s.depth_mm[r, c] < s.depth_mm[int(round(lip[1])), int(round(lip[0]))]


def test_rotated_scan_gives_the_same_images(small_face) -> None:
    base = preprocess_scan(small_face, size=96)
    a, b = np.radians(15.0), np.radians(-10.0)
    rot = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]) @ np.array(
        [[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]]
    )
    moved = transform_scan(small_face, RigidTransform(rot, np.array([3.0, -20.0, 40.0])))
    s = preprocess_scan(moved, size=96)
    both = base.foreground & s.foreground
    assert both.sum() > 0.9 * base.foreground.sum()
    assert np.nanmean(np.abs(base.depth_mm - s.depth_mm)[both]) < 0.5
    assert np.abs(base.mask - s.mask).mean() < 0.02


def test_holes_are_filled_and_counted(small_face) -> None:
    v = small_face.vertices
    hole = np.linalg.norm(v[:, :2] - [-35.0, -5.0], axis=1) < 8.0  # a hole in the cheek
    from afnetm_timm.data.surface import subset_scan

    holed = subset_scan(small_face, ~hole)
    s = preprocess_scan(holed, size=96)
    assert s.info["holes"]["holes_filled"] >= 1 and s.info["holes"]["pixels_filled"] > 20
    c, r = s.grid.to_pixels(np.array([-35.0, -5.0]) - [0.0, 0.0])
    # the pose moved the face slightly; the hole centre is still well inside the filled region
    assert s.foreground[int(round(r)), int(round(c))]
    ref = preprocess_scan(small_face, size=96)
    assert s.info["holes"]["holes_filled"] > ref.info["holes"]["holes_filled"]


def test_spikes_and_outliers_are_reported(small_face) -> None:
    v = small_face.vertices.copy()
    idx = np.nonzero(np.linalg.norm(v[:, :2], axis=1) < 40)[0][::200][:8]
    v[idx, 2] += 12.0
    noisy = replace(small_face, vertices=np.concatenate([v, [[0.0, 0.0, 150.0]]]))
    s = preprocess_scan(noisy, size=64)
    surf = s.info["surface"]
    assert surf["outliers_removed"] + surf["spikes_removed"] >= len(idx) + 1


def test_landmark_free_scan_uses_fallbacks(small_face) -> None:
    bare = replace(small_face, landmarks={}, landmark_scheme="custom")
    s = preprocess_scan(bare, size=64)
    _check_sample(s, 64)
    assert s.info["pose"]["method"] == "pca" and s.info["masks"]["source"] == "template"
    assert 0.05 < s.mask.mean() < 0.5
    with pytest.raises(ScanFormatError, match="landmarks"):
        preprocess_scan(bare, size=64, require_landmarks=True)


def test_vertex_colours_and_untextured_scans(small_face) -> None:
    vc = synthetic_face_scan("happiness", n_points=4000, texture_size=128, vertex_colors=True)
    pts, cols = sample_colors(vc)
    assert len(pts) == len(vc.vertices) + len(vc.faces) and cols.shape == (len(pts), 3)
    s = preprocess_scan(vc, size=64)
    assert s.texture[s.foreground].mean() > 60
    plain = replace(small_face, texture=None, corner_uv=None)
    s2 = preprocess_scan(plain, size=64)
    assert np.all(s2.texture[s2.foreground] == 128)
    p3, _ = sample_colors(small_face, face_centroids=False)
    assert len(p3) == len(small_face.vertices)


def test_point_cloud_without_triangles(small_face) -> None:
    cloud = replace(small_face, faces=np.zeros((0, 3), np.int64), texture=None, corner_uv=None,
                    vertex_colors=np.full((len(small_face.vertices), 3), 200, np.uint8))
    s = preprocess_scan(cloud, size=64)
    _check_sample(s, 64)
    assert s.info["gridfit"]["samples"] == s.info["crop"]["points_kept"]
    ref = preprocess_scan(small_face, size=64)
    both = s.foreground & ref.foreground
    assert both.sum() > 0.9 * ref.foreground.sum()
    assert np.abs(s.depth_mm - ref.depth_mm)[both].mean() < 0.5


def test_bad_scans_raise_clear_errors(small_face) -> None:
    where = {"source_path": "/data/bs000_E_HAPPY_0.bnt"}
    few = replace(small_face, vertices=small_face.vertices[:50], faces=np.zeros((0, 3), np.int64),
                  texture=None, corner_uv=None, metadata=where)
    with pytest.raises(ScanFormatError, match=r"bs000_E_HAPPY_0\.bnt.*50 points"):
        preprocess_scan(few)
    v = small_face.vertices.copy()
    v[10, 1] = np.nan
    with pytest.raises(ScanFormatError, match="NaN"):
        preprocess_scan(replace(small_face, vertices=v, metadata=where))
    far = transform_scan(small_face, RigidTransform(np.eye(3), np.zeros(3)))
    with pytest.raises(ScanFormatError, match="within 1.0 mm"):
        preprocess_scan(far, crop_radius=1.0)
    with pytest.raises(ValueError, match="depth_dtype"):
        preprocess_scan(small_face, size=32, depth_dtype="float16")  # type: ignore[arg-type]


def test_synthetic_scan_builder() -> None:
    seen = []
    for expr in ("neutral",) + EXPRESSIONS:
        scan = synthetic_face_scan(expr, n_points=1500, texture_size=64)
        scan.validate()
        assert scan.landmark_scheme == "ibug68" and len(scan.landmarks) == 68
        assert scan.metadata["expression"] == expr
        seen.append(scan.vertices[:, 2].copy())
    assert all(not np.allclose(seen[0], z) for z in seen[1:])  # expressions change the shape
    a = synthetic_face_scan("HA", identity_seed=1, n_points=1500, texture_size=64)
    b = synthetic_face_scan("happy", identity_seed=2, n_points=1500, texture_size=64)
    assert a.metadata["expression"] == "happiness" and not np.allclose(a.texture.mean(), b.texture.mean())
    assert normalize_expression("SU") == "surprise"
    with pytest.raises(ValueError, match="unknown expression"):
        synthetic_face_scan("contempt")
    with pytest.raises(ValueError, match="n_points"):
        synthetic_face_scan(n_points=10)


# ------------------------------------------------------------------------------------------
# Surrey Face Model
# ------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_sfm_faces_of_all_six_expressions(sfm_path: Path, expression: str) -> None:
    scan = face_scan_from_morphable_model(sfm_path, expression, 1.0, texture="vertex")
    s = preprocess_scan(scan)
    _check_sample(s, 224)
    assert s.info["pose"]["method"] == "landmarks"
    assert s.info["pose"]["rotation_deg"] < 5.0  # blendshapes do not turn the head
    assert s.info["masks"]["parts"] == {"eyebrows": 2, "eyes": 2, "nose": 1, "mouth": 1}
    assert 0.1 < s.mask.mean() < 0.45
    assert 0.5 < s.foreground.mean() < 0.9
    r, c = np.unravel_index(np.nanargmax(s.depth_mm), s.depth_mm.shape)
    assert abs(r - 111.5) < 10 and abs(c - 111.5) < 10  # nose tip (brightest) at the centre


@pytest.mark.slow
def test_sfm_depth_matches_a_zbuffer_rendering(sfm_path: Path) -> None:
    scan = face_scan_from_morphable_model(sfm_path, "neutral", texture="vertex")
    s = preprocess_scan(scan, median_size=0)
    tf = RigidTransform(np.array(s.info["pose"]["rotation"]), np.array(s.info["pose"]["translation_mm"]))
    v = tf.apply(scan.vertices)
    px = s.grid.to_pixels(v)
    tri_id, bary = rasterize_triangles(px[scan.faces], (224, 224), v[scan.faces, 2])
    covered, zbuf = tri_id >= 0, interpolate_corners(tri_id, bary, v[scan.faces, 2], fill=np.nan)
    inner = ndimage.binary_erosion(covered & s.foreground, iterations=3)
    diff = np.abs(s.depth_mm - zbuf)[inner]
    assert inner.sum() > 20000
    assert diff.mean() < 0.2 and np.percentile(diff, 95) < 0.5  # mm


@pytest.mark.slow
def test_sfm_textured_scan_with_identity_and_subdivision(sfm_path: Path) -> None:
    scan = face_scan_from_morphable_model(
        sfm_path, "HA", 0.8, identity_coeffs=np.r_[1.0, -0.5, 0.3], subdivisions=1, texture_size=256
    )
    scan.validate()
    assert len(scan.vertices) > 13000 and scan.texture.shape == (256, 256, 3)
    assert scan.metadata["expression"] == "happiness"
    s = preprocess_scan(scan)
    _check_sample(s, 224)
    lip = s.landmarks_px[ibug68_name(57)]
    px = s.texture[int(round(lip[1])) - 2, int(round(lip[0]))].astype(int)
    assert px[0] > px[1] + 20  # red lips made it through corner_uv sampling and gridfit


def test_morphable_model_errors(tmp_path: Path, sfm_path: Path) -> None:
    with pytest.raises(ScanFormatError, match="cannot read"):
        face_scan_from_morphable_model(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    np.savez(bad, mean=np.zeros((3, 3)))
    with pytest.raises(ScanFormatError, match="triangles"):
        face_scan_from_morphable_model(bad)
    plain = tmp_path / "plain.npz"
    np.savez(plain, mean=np.eye(3), triangles=np.array([[0, 1, 2]]), texcoords=np.zeros((3, 2)))
    assert len(face_scan_from_morphable_model(plain, texture="vertex").vertices) == 3
    with pytest.raises(ScanFormatError, match="no 'anger' blendshape"):
        face_scan_from_morphable_model(plain, "anger")
    with pytest.raises(ValueError, match="identity coefficients"):
        face_scan_from_morphable_model(sfm_path, identity_coeffs=np.zeros(100), texture="vertex")
