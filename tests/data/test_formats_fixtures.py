"""The test-scan builders in `tests/data/fixtures.py`."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import tests.data.fixtures as fx
from afnetm_timm.data import FaceScan
from afnetm_timm.data.formats import BU3DFE83_GROUPS, group_names


def test_sfm_scan_is_realistic(sfm_scan: FaceScan) -> None:
    sfm_scan.validate()
    assert sfm_scan.vertices.shape == (3448, 3) and sfm_scan.faces.shape == (6736, 3)
    assert sfm_scan.texture.shape == (256, 256, 3) and sfm_scan.landmark_scheme == "ibug68"
    assert len(sfm_scan.landmarks) == 50
    tip = sfm_scan.landmarks["ibug68_31"]
    assert tip[2] > np.percentile(sfm_scan.vertices[:, 2], 99)  # nose tip near max z
    assert sfm_scan.landmarks["ibug68_37"][0] < sfm_scan.landmarks["ibug68_46"][0]
    # painted regions: lips are red, brows dark, skin in between
    sfm = fx.load_sfm()
    uv = sfm["texcoords"]
    px = lambda k: sfm_scan.texture[int(uv[k, 1] * 256), int(uv[k, 0] * 256)].astype(int)  # noqa: E731
    vid = dict(zip(sfm["ibug68_index"].tolist(), sfm["ibug68_vertex"].tolist(), strict=True))
    lip = px(vid[52])
    assert lip[0] > lip[1] + 40
    assert px(vid[20]).sum() < px(vid[30]).sum()


def test_expression_identity_and_weight(sfm: dict) -> None:
    neutral = fx.sfm_vertices()
    np.testing.assert_allclose(neutral, sfm["mean"], atol=1e-5)
    happy = fx.sfm_vertices(expression="happiness", weight=1.5)
    np.testing.assert_allclose(happy - neutral, 1.5 * sfm["expressions"][3], atol=1e-4)
    a, b = fx.sfm_vertices(seed=1), fx.sfm_vertices(seed=2)
    assert np.abs(a - b).max() > 1.0
    coeffs = np.zeros(3)
    coeffs[0] = 1.0
    one = fx.sfm_vertices(coeffs)
    np.testing.assert_allclose(one - neutral, np.sqrt(sfm["eigenvalues"][0]) * sfm["basis"][0], atol=1e-3)


@pytest.mark.parametrize("scheme", ["bu3dfe83", "bosphorus", "none"])
def test_sfm_scan_schemes(sfm: dict, scheme: str) -> None:
    scan = fx.make_sfm_scan("sadness", 0.8, seed=4, texture_size=64, landmark_scheme=scheme, vertex_colors=True)
    assert scan.vertex_colors.shape == (3448, 3)
    if scheme == "bu3dfe83":
        assert len(scan.landmarks) == 83
        pts = np.stack(list(scan.landmarks.values()))
        dist = np.linalg.norm(scan.vertices[None] - pts[:, None], axis=2).min(axis=1)
        assert dist.max() < 1e-9  # snapped to vertices, as in a .bnd
        centre = {g: np.mean([scan.landmarks[n] for n in group_names("bu3dfe83", g)], axis=0) for g in BU3DFE83_GROUPS}
        assert centre["left_eye"][0] < 0 < centre["right_eye"][0]
        assert centre["left_brow"][1] > centre["left_eye"][1] > centre["nose"][1] > centre["mouth"][1]
    elif scheme == "bosphorus":
        assert scan.landmark_scheme == "bosphorus" and "Nose tip" in scan.landmarks
    else:
        assert scan.landmarks == {}


def test_tiny_scan() -> None:
    s = fx.make_tiny_scan(seam=True, colors=True, landmark_scheme="ibug68")
    s.validate()
    assert s.vertices.shape == (36, 3) and s.faces.shape == (50, 3) and len(s.landmarks) == 68
    tri = s.vertices[s.faces]
    assert np.all(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])[:, 2] > 0)
    np.testing.assert_allclose(s.vertices[:, 2], fx.tiny_surface(s.vertices[:, 0], s.vertices[:, 1]))


def test_require_sfm_skips_without_model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fx, "SFM_PATH", Path("/nonexistent/sfm_3448.npz"))
    with pytest.raises(pytest.skip.Exception, match="Surrey Face Model not found"):
        fx.require_sfm()
