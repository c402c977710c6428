"""Pose normalisation: Kabsch, landmark schemes, landmark-free fallback, nose tip, crop sphere."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from afnetm_timm.data.errors import ScanFormatError
from afnetm_timm.data.pose import (
    CANONICAL_TEMPLATE,
    RigidTransform,
    bu3dfe83_name,
    crop_mask,
    crop_scan,
    estimate_pose,
    find_nose_tip,
    ibug68_name,
    kabsch,
    semantic_landmarks,
    transform_scan,
)
from afnetm_timm.data.synthetic import synthetic_face_scan


def _rotation(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    a, b, c = np.radians([yaw_deg, pitch_deg, roll_deg])
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ rx @ ry


def _angle_between(r1: np.ndarray, r2: np.ndarray) -> float:
    return RigidTransform(r1 @ r2.T, np.zeros(3)).angle_deg


@pytest.fixture(scope="module")
def face():
    return synthetic_face_scan("neutral", n_points=4000, texture_size=128)


def test_kabsch_recovers_a_known_rigid_transform() -> None:
    rng = np.random.default_rng(0)
    src = rng.normal(size=(12, 3)) * 30
    rot = _rotation(25, -10, 7)
    t = np.array([5.0, -3.0, 12.0])
    fit = kabsch(src, src @ rot.T + t)
    np.testing.assert_allclose(fit.rotation, rot, atol=1e-10)
    np.testing.assert_allclose(fit.translation, t, atol=1e-9)
    assert np.linalg.det(fit.rotation) == pytest.approx(1.0)
    # weights: a zero-weight corrupted point does not disturb the fit
    dst = src @ rot.T + t
    dst[0] += 100.0
    w = np.ones(12)
    w[0] = 0.0
    np.testing.assert_allclose(kabsch(src, dst, w).rotation, rot, atol=1e-9)
    # inverse / composition
    p = rng.normal(size=(5, 3))
    np.testing.assert_allclose(fit.inverse().apply(fit.apply(p)), p, atol=1e-9)
    np.testing.assert_allclose(fit.then(fit.inverse()).apply(p), p, atol=1e-9)


def test_kabsch_never_reflects_and_rejects_bad_input() -> None:
    rng = np.random.default_rng(1)
    src = rng.normal(size=(6, 3))
    mirrored = src * [-1, 1, 1]
    assert np.linalg.det(kabsch(src, mirrored).rotation) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="collinear"):
        kabsch(np.outer(np.arange(4.0), [1, 2, 3]), np.outer(np.arange(4.0), [3, 2, 1]))
    with pytest.raises(ValueError, match="K >= 3"):
        kabsch(src[:2], src[:2])


def test_landmark_names_follow_the_readers() -> None:
    from afnetm_timm.data.formats import landmark_name

    assert ibug68_name(30) == landmark_name("ibug68", 31)  # 0-based index -> reader name
    assert bu3dfe83_name(1) == landmark_name("bu3dfe83", 1)


def test_semantic_landmarks_per_scheme() -> None:
    ib = {ibug68_name(i): np.array([float(i), 0.0, 0.0]) for i in range(68)}
    sem = semantic_landmarks(ib, "ibug68")
    assert sem["nose_tip"][0] == 30 and sem["eye_outer_l"][0] == 36 and sem["mouth_corner_r"][0] == 54
    assert sem["eye_center_l"][0] == pytest.approx(np.mean(range(36, 42)))
    bos = {"Nose tip": np.zeros(3), "OUTER left eye corner": np.ones(3), "inner  right eye corner": 2 * np.ones(3)}
    sem = semantic_landmarks(bos, "bosphorus")
    assert set(sem) == {"nose_tip", "eye_outer_l", "eye_inner_r"}
    # BU-3DFE: left/right pairs are assigned by x (smaller x -> image left)
    bu = {bu3dfe83_name(k): np.array([40.0 if k <= 8 else -40.0, 35.0, 0.0]) for k in range(1, 17)}
    bu.update({bu3dfe83_name(k): np.array([0.0, -30.0, 0.0]) for k in range(49, 61)})
    sem = semantic_landmarks(bu, "bu3dfe83")
    assert sem["eye_center_l"][0] == -40 and sem["eye_center_r"][0] == 40 and "mouth_center" in sem
    with pytest.raises(ValueError, match="unknown landmark scheme"):
        semantic_landmarks(ib, "dlib5")


@pytest.mark.parametrize("angles", [(20.0, 0.0, 0.0), (-15.0, 12.0, 5.0), (0.0, -20.0, -8.0)])
def test_landmark_pose_undoes_a_known_rotation(face, angles) -> None:
    base = estimate_pose(face)
    assert base.method == "landmarks"
    rot = _rotation(*angles)
    moved = transform_scan(face, RigidTransform(rot, np.array([10.0, -5.0, 30.0])))
    est = estimate_pose(moved)
    # the estimate must cancel the applied rotation: R_est(moved) @ rot == R_est(face)
    assert _angle_between(est.transform.rotation @ rot, base.transform.rotation) < 0.5
    # the nose tip lands at the origin and matches the original nose tip
    aligned = est.transform.apply(moved.vertices)
    tip_after = find_nose_tip(aligned, guess=np.zeros(3))
    assert np.linalg.norm(tip_after) < 1.5
    np.testing.assert_allclose(est.nose_tip, RigidTransform(rot, np.array([10.0, -5.0, 30.0])).apply(base.nose_tip), atol=1.5)


def test_template_is_frontal_and_fit_residual_small(face) -> None:
    est = estimate_pose(face)
    assert est.transform.angle_deg < 5.0  # the synthetic face is built frontal
    assert est.rms_mm < 3.0
    assert np.allclose(CANONICAL_TEMPLATE["nose_tip"], 0.0)
    assert CANONICAL_TEMPLATE["eye_outer_l"][0] < 0 < CANONICAL_TEMPLATE["eye_outer_r"][0]


def test_bosphorus_and_bu3dfe_landmarks_give_the_same_pose(face) -> None:
    ib = semantic_landmarks(face.landmarks, "ibug68")
    bos_names = {
        "eye_outer_l": "Outer left eye corner", "eye_inner_l": "Inner left eye corner",
        "eye_inner_r": "Inner right eye corner", "eye_outer_r": "Outer right eye corner",
        "nose_tip": "Nose tip", "mouth_corner_l": "Left mouth corner", "mouth_corner_r": "Right mouth corner",
    }
    bos = replace(face, landmarks={v: ib[k] for k, v in bos_names.items()}, landmark_scheme="bosphorus")
    r_ib = estimate_pose(face).transform.rotation
    r_bos = estimate_pose(bos).transform.rotation
    assert _angle_between(r_ib, r_bos) < 1e-6
    # BU-3DFE: eye / brow / mouth groups (centroids) of the iBUG points
    lm = face.landmarks
    bu = {}
    groups = [(range(1, 9), range(36, 42)), (range(9, 17), range(42, 48)), (range(17, 27), range(17, 22)),
              (range(27, 37), range(22, 27)), (range(49, 61), range(48, 60))]
    for bu_range, ib_range in groups:
        pts = np.array([lm[ibug68_name(i)] for i in ib_range])
        for k, p in zip(bu_range, np.resize(pts, (len(bu_range), 3)), strict=True):
            bu[bu3dfe83_name(k)] = p
    bu_scan = replace(face, landmarks=bu, landmark_scheme="bu3dfe83")
    est = estimate_pose(bu_scan)
    assert est.method == "landmarks" and "eye_center_l" in est.landmarks_used
    assert _angle_between(est.transform.rotation, r_ib) < 8.0


def test_fallback_without_landmarks_faces_plus_z(face) -> None:
    rot = _rotation(18.0, -12.0, 0.0)
    bare = replace(transform_scan(face, RigidTransform(rot, np.zeros(3))), landmarks={}, landmark_scheme="custom")
    est = estimate_pose(bare)
    assert est.method == "pca" and est.landmarks_used == []
    # the face normal is turned back to +z: compare with the unrotated face's own normal
    base = estimate_pose(replace(face, landmarks={}, landmark_scheme="custom"))
    z_axis = np.array([0.0, 0.0, 1.0])
    n_est = est.transform.rotation.T @ z_axis  # +z of the canonical frame, seen in the scan frame
    n_true = rot @ (base.transform.rotation.T @ z_axis)
    assert np.degrees(np.arccos(np.clip(n_est @ n_true, -1, 1))) < 3.0
    # nose tip close to the true one
    true_tip = rot @ np.array(face.landmarks[ibug68_name(30)])
    assert np.linalg.norm(est.nose_tip - true_tip) < 6.0


def test_require_landmarks_raises(face) -> None:
    bare = replace(face, landmarks={}, landmark_scheme="custom", metadata={"source_path": "/x/F0001_NE00WH_F3D.wrl"})
    with pytest.raises(ScanFormatError, match="F0001_NE00WH_F3D.wrl.*at least 3 usable"):
        estimate_pose(bare, require_landmarks=True)
    two = replace(face, landmarks={ibug68_name(30): face.landmarks[ibug68_name(30)],
                                   ibug68_name(36): face.landmarks[ibug68_name(36)]})
    with pytest.raises(ScanFormatError):
        estimate_pose(two, require_landmarks=True)


def test_nose_tip_ignores_a_spike(face) -> None:
    v = face.vertices.copy()
    tip = find_nose_tip(v)
    i = int(np.argmin(np.linalg.norm(v[:, :2] - tip[:2] - [3.0, 8.0], axis=1)))
    v[i, 2] += 25.0  # a lone spike near the nose
    assert np.linalg.norm(find_nose_tip(v) - tip) < 1e-9
    assert np.linalg.norm(find_nose_tip(v, guess=tip, radius=15.0) - tip) < 1e-9


def _nose_tip_reference(points: np.ndarray, guess: np.ndarray | None = None, radius: float = 15.0) -> np.ndarray:
    """find_nose_tip by its definition: every candidate's 4 mm median height, the first maximum."""
    xy, z = points[:, :2], points[:, 2]
    centre = np.median(xy, axis=0) if guess is None else guess[:2]
    limit = 0.35 * float(np.max(np.ptp(xy, axis=0))) if guess is None else radius
    cand = np.nonzero(np.linalg.norm(xy - centre, axis=1) <= limit)[0]
    smooth = [np.median(z[np.linalg.norm(xy - xy[c], axis=1) <= 4.0]) for c in cand]
    return points[cand[int(np.argmax(smooth))]]


@pytest.mark.parametrize("seed", range(3))
def test_nose_tip_matches_its_definition(face, seed: int) -> None:
    rng = np.random.default_rng(seed)
    v = face.vertices[rng.choice(len(face.vertices), 1500, replace=False)]
    grid = np.round(v * 0.5) * 2.0  # many equal heights and distances: ties must resolve alike
    for pts in (v, grid):
        np.testing.assert_array_equal(find_nose_tip(pts), _nose_tip_reference(pts))
        guess = pts[int(np.argmax(pts[:, 2]))] + [3.0, -2.0, 0.0]
        np.testing.assert_array_equal(find_nose_tip(pts, guess=guess), _nose_tip_reference(pts, guess))


def test_crop_sphere(face) -> None:
    tip = face.landmarks[ibug68_name(30)]
    for radius in (40.0, 90.0):
        keep = crop_mask(face.vertices, tip, radius)
        d = np.linalg.norm(face.vertices - tip, axis=1)
        np.testing.assert_array_equal(keep, d <= radius)
        cropped = crop_scan(face, tip, radius)
        assert len(cropped.vertices) == keep.sum()
        assert np.linalg.norm(cropped.vertices - tip, axis=1).max() <= radius
        assert cropped.faces.max() < len(cropped.vertices)
        assert cropped.corner_uv.shape == (len(cropped.faces), 3, 2)
        cropped.validate()
    assert len(crop_scan(face, tip, 40.0).vertices) < len(crop_scan(face, tip, 90.0).vertices)
    with pytest.raises(ValueError, match="positive"):
        crop_mask(face.vertices, tip, 0.0)
