"""Salient-region masks: coverage of the landmark regions, emptiness elsewhere, options, scales."""
from __future__ import annotations

import numpy as np
import pytest

from afnetm_timm.data.gridfit import ImageGrid
from afnetm_timm.data.masks import (
    REGIONS,
    MaskConfig,
    downsample_mask,
    region_parts,
    salient_masks,
)
from afnetm_timm.data.pipeline import FALLBACK_LANDMARKS
from afnetm_timm.data.pose import bu3dfe83_name, ibug68_name
from afnetm_timm.data.synthetic import synthetic_face_scan

GRID = ImageGrid(224, 75.0)


@pytest.fixture(scope="module")
def ibug() -> dict[str, np.ndarray]:
    return synthetic_face_scan("neutral", n_points=2000, texture_size=64).landmarks


def _px(p: np.ndarray) -> tuple[int, int]:
    c, r = GRID.to_pixels(np.asarray(p)[:2])
    return int(round(r)), int(round(c))


def _region_indices() -> dict[str, range]:
    return {"eyebrows": range(17, 27), "eyes": range(36, 48), "nose": range(27, 36), "mouth": range(48, 68)}


def test_ibug_mask_covers_regions_and_nothing_else(ibug) -> None:
    ms = salient_masks(ibug, "ibug68", GRID)
    m = ms.mask
    assert m.shape == (224, 224) and m.dtype == np.float32
    assert set(np.unique(m)) <= {0.0, 1.0}
    for region, idx in _region_indices().items():
        for i in idx:
            assert m[_px(ibug[ibug68_name(i)])] == 1.0, (region, i)
    assert ms.parts_drawn == {"eyebrows": 2, "eyes": 2, "nose": 1, "mouth": 1}
    # empty far from the regions: forehead top, cheeks, chin, jaw contour, image corners
    for xy in [(0, 70), (-45, -5), (45, -5), (0, -65), (-70, 70), (70, -70)]:
        assert m[_px(xy)] == 0.0, xy
    for i in range(0, 17):  # the jaw contour is not a salient region
        r, c = _px(ibug[ibug68_name(i)])
        if 0 <= r < 224 and 0 <= c < 224:
            assert m[r, c] == 0.0
    assert 0.05 < m.mean() < 0.4


def test_region_subset_and_margin(ibug) -> None:
    mouth_only = salient_masks(ibug, "ibug68", GRID, MaskConfig(regions=("mouth",))).mask
    assert mouth_only[_px(ibug[ibug68_name(51)])] == 1.0
    assert mouth_only[_px(ibug[ibug68_name(36)])] == 0.0 and mouth_only[_px(ibug[ibug68_name(19)])] == 0.0
    areas = [salient_masks(ibug, "ibug68", GRID, MaskConfig(margin=mg)).mask.sum() for mg in (0.0, 0.05, 0.15)]
    assert areas[0] < areas[1] < areas[2]
    ell = salient_masks(ibug, "ibug68", GRID, MaskConfig(shape="ellipse")).mask
    for i in (39, 42, 30, 57):
        assert ell[_px(ibug[ibug68_name(i)])] == 1.0


def test_soft_mask_and_scales(ibug) -> None:
    hard = salient_masks(ibug, "ibug68", GRID)
    soft = salient_masks(ibug, "ibug68", GRID, MaskConfig(soft=True))
    assert soft.mask.max() == pytest.approx(1.0)
    assert ((soft.mask > 0.05) & (soft.mask < 0.95)).sum() > 500  # graded edges
    assert soft.mask[_px((0, 70))] < 1e-3
    for s in (56, 28):
        assert hard.scaled[s].shape == (s, s) and hard.scaled[s].dtype == np.float32
        assert hard.scaled[s].min() >= 0.0 and hard.scaled[s].max() <= 1.0
        assert hard.scaled[s].mean() == pytest.approx(hard.mask.mean(), abs=0.01)  # area resize
    # 224 -> 56 is exact 4 x 4 averaging
    np.testing.assert_allclose(downsample_mask(hard.mask, 56), hard.mask.reshape(56, 4, 56, 4).mean(axis=(1, 3)), atol=1e-6)


def test_bosphorus_corner_eyes_become_ellipses() -> None:
    lms = dict(FALLBACK_LANDMARKS)
    ms = salient_masks({k.title(): v for k, v in lms.items()}, "bosphorus", GRID)
    m = ms.mask
    assert ms.parts_drawn == {"eyebrows": 2, "eyes": 2, "nose": 1, "mouth": 1}
    out_l, in_l = lms["outer left eye corner"], lms["inner left eye corner"]
    centre = 0.5 * (out_l + in_l)
    width = np.linalg.norm(out_l - in_l)
    assert m[_px(centre)] == 1.0 and m[_px(out_l)] == 1.0 and m[_px(in_l)] == 1.0
    # ellipse height = half the width (plus the margin): well below the eye is outside
    assert m[_px(centre - [0, 0.25 * width + 0.08 * 64 + 3.0, 0])] == 0.0
    assert m[_px(centre - [0, 0.2 * width, 0])] == 1.0
    for name in ("nose tip", "left mouth corner", "middle right eyebrow"):
        assert m[_px(lms[name])] == 1.0
    assert ms.iod_px == pytest.approx(np.linalg.norm([2 * 32.65, 0]) / GRID.step, rel=0.02)


def test_bu3dfe_layout() -> None:
    # a plausible 83-point layout: circles around eyes/brows, a nose cluster and a mouth ring
    lm = {}

    def ring(numbers, cx, cy, rx, ry):
        t = np.linspace(0, 2 * np.pi, len(numbers), endpoint=False)
        for k, a in zip(numbers, t, strict=True):
            lm[bu3dfe83_name(k)] = np.array([cx + rx * np.cos(a), cy + ry * np.sin(a), -30.0])

    ring(range(1, 9), -32, 35, 12, 5)
    ring(range(9, 17), 32, 35, 12, 5)
    ring(range(17, 27), -36, 53, 18, 4)
    ring(range(27, 37), 36, 53, 18, 4)
    ring(range(37, 49), 0, 5, 12, 20)
    ring(range(49, 69), 0, -34, 24, 8)
    ring(range(69, 84), 0, -10, 70, 70)
    m = salient_masks(lm, "bu3dfe83", GRID).mask
    for xy in [(-32, 35), (32, 35), (-36, 53), (0, 5), (0, -34)]:
        assert m[_px(xy)] == 1.0
    for xy in [(0, 70), (-50, -20), (60, -60)]:
        assert m[_px(xy)] == 0.0
    assert all(v for v in region_parts(lm, "bu3dfe83").values())


def test_missing_landmarks_and_errors(ibug) -> None:
    partial = {k: v for k, v in ibug.items() if k in {ibug68_name(i) for i in range(48, 68)}}
    ms = salient_masks(partial, "ibug68", GRID)
    assert ms.parts_drawn == {"eyebrows": 0, "eyes": 0, "nose": 0, "mouth": 1}
    assert ms.mask.sum() > 0
    with pytest.raises(ValueError, match="regions"):
        MaskConfig(regions=("ears",))
    with pytest.raises(ValueError, match="shape"):
        MaskConfig(shape="circle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scheme"):
        salient_masks(ibug, "custom", GRID)
    assert set(REGIONS) == {"eyebrows", "eyes", "nose", "mouth"}
