"""Landmark files and tables: ``.lm3``, ``.lm2``, ``.bnd``, generic arrays/files, scheme tables."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from afnetm_timm.data import ScanFormatError
from afnetm_timm.data.formats import (
    BOSPHORUS_LABELS,
    BU3DFE83_GROUPS,
    IBUG68_GROUPS,
    canonical_bosphorus_label,
    detect_scheme,
    group_names,
    ibug68_to_bosphorus,
    landmark_name,
    load_landmarks,
    parse_lm2,
    parse_lm3,
    read_bnd,
    read_lm2,
    read_lm3,
    scheme_names,
    write_bnd,
    write_lm2,
    write_lm3,
)
from tests.data.fixtures import sfm_ibug68, sfm_vertices

LM3_REAL_STYLE = """# 3D Landmark File
*
# some free text, as in the real files
author: someone

3 landmarks:
outer LEFT eyebrow
-50.1 40.25 -30
Nose   tip
0.5 1e1 20.125
Right ear lobe
70 -10 -80
"""

LM2_REAL_STYLE = """# 2D Landmark File

2 landmarks

Labels:
Nose tip
chin middle

2D Image coordinates:
100.5 200
101 350.25
"""


# ----------------------------------------------------------------------------------------------- tables
def test_group_tables_cover_schemes() -> None:
    main = ["left_eye", "right_eye", "left_brow", "right_brow", "nose", "mouth", "contour"]
    numbers = sorted(k for g in main for k in BU3DFE83_GROUPS[g])
    assert numbers == list(range(1, 84))
    assert BU3DFE83_GROUPS["left_eye"] == tuple(range(1, 9)) and BU3DFE83_GROUPS["contour"][-1] == 83
    assert sorted(BU3DFE83_GROUPS["mouth_outer"] + BU3DFE83_GROUPS["mouth_inner"]) == list(BU3DFE83_GROUPS["mouth"])
    assert sorted(k for g in IBUG68_GROUPS.values() for k in g) == list(range(1, 69))
    assert group_names("bu3dfe83", "right_eye")[0] == "bu3dfe83_09"
    assert group_names("ibug68", "jaw")[0] == "ibug68_01"
    assert len(scheme_names("bu3dfe83")) == 83 and len(scheme_names("bosphorus")) == 24
    assert landmark_name("ibug68", 68) == "ibug68_68"
    with pytest.raises(ValueError):
        landmark_name("ibug68", 69)


def test_detect_scheme_and_labels() -> None:
    assert detect_scheme(["bu3dfe83_01", "bu3dfe83_83"]) == "bu3dfe83"
    assert detect_scheme(["ibug68_01", "ibug68_31"]) == "ibug68"
    assert detect_scheme(["ibug68_01", "bu3dfe83_02"]) == "custom"
    assert detect_scheme(["ibug68_69"]) == "custom"
    assert detect_scheme(["NOSE TIP", "chin  middle"]) == "bosphorus"
    assert detect_scheme([]) == "custom"
    assert canonical_bosphorus_label("  inner RIGHT eye   corner ") == "Inner right eye corner"
    assert canonical_bosphorus_label("third eye") is None


def test_ibug_to_bosphorus_on_sfm(sfm: dict) -> None:
    ib = sfm_ibug68(sfm_vertices())
    bos = ibug68_to_bosphorus(ib)
    assert len(bos) == 20 and set(bos) <= set(BOSPHORUS_LABELS)
    assert bos["Outer left eyebrow"][0] < bos["Outer right eyebrow"][0]  # left = image left = smaller x
    assert bos["Left mouth corner"][0] < bos["Right mouth corner"][0]
    assert bos["Nose tip"][2] == max(p[2] for p in bos.values())


# ----------------------------------------------------------------------------------------------- lm3 / lm2
def test_lm3_real_style() -> None:
    lms = parse_lm3(LM3_REAL_STYLE.replace("\n", "\r\n"))
    assert list(lms) == ["Outer left eyebrow", "Nose tip", "Right ear lobe"]
    np.testing.assert_allclose(lms["Nose tip"], [0.5, 10.0, 20.125])


def test_lm3_lm2_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = [lab for k, lab in enumerate(BOSPHORUS_LABELS) if k not in (10, 11)]  # 22 points, as is common
    lm3 = {lab: rng.normal(size=3) * 50 for lab in labels}
    lm2 = {lab: rng.uniform(0, 500, size=2) for lab in labels}
    back3 = read_lm3(write_lm3(tmp_path / "a.lm3", lm3, comment="free text\nmore"))
    back2 = read_lm2(write_lm2(tmp_path / "a.lm2", lm2))
    assert list(back3) == labels and list(back2) == labels
    for lab in labels:
        np.testing.assert_allclose(back3[lab], lm3[lab], rtol=1e-8)
        np.testing.assert_allclose(back2[lab], lm2[lab], atol=1e-6)


def test_lm2_real_style() -> None:
    lms = parse_lm2(LM2_REAL_STYLE)
    assert list(lms) == ["Nose tip", "Chin middle"]
    np.testing.assert_allclose(lms["Chin middle"], [101, 350.25])


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "first line"),
        ("# 2D Landmark File\n1 landmarks:\nNose tip\n1 2 3\n", "first line"),
        ("# 3D Landmark File\n", "missing '<N> landmarks:'"),
        ("# 3D Landmark File\nmany landmarks:\n", "expected '<N> landmarks'"),
        ("# 3D Landmark File\n2 landmarks:\nNose tip\n1 2 3\n", "missing points"),
        ("# 3D Landmark File\n1 landmarks:\nNose tip\n1 2 3\nChin middle\n", "unexpected content"),
        ("# 3D Landmark File\n1 landmarks:\nThird eye\n1 2 3\n", "unknown landmark label 'Third eye'"),
        ("# 3D Landmark File\n2 landmarks:\nNose tip\n1 2 3\nnose TIP\n1 2 3\n", "appears twice"),
        ("# 3D Landmark File\n1 landmarks:\nNose tip\n1 2\n", "expected 'x y z'"),
        ("# 3D Landmark File\n1 landmarks:\nNose tip\n1 nan 3\n", "NaN or infinite"),
        ("# 3D Landmark File\n1 landmarks:\nNose tip\n1 two 3\n", "not a number"),
    ],
)
def test_bad_lm3(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "bad.lm3"
    path.write_text(text)
    with pytest.raises(ScanFormatError, match=problem) as info:
        read_lm3(path)
    assert info.value.path == path


@pytest.mark.parametrize(
    ("mutate", "problem"),
    [
        (lambda t: t.replace("# 2D", "# 3D"), "first line"),
        (lambda t: t.replace("2 landmarks", "3 landmarks"), "missing points"),
        (lambda t: t.replace("Labels:", "Names:"), "expected 'Labels:'"),
        (lambda t: t.replace("chin middle", "left knee"), "unknown landmark label 'left knee'"),
        (lambda t: t.replace("101 350.25", "101"), "expected 'x y'"),
        (lambda t: t.replace("101 350.25", "101 inf"), "NaN or infinite"),
        (lambda t: t.replace("\n101 350.25", ""), "missing points"),
        (lambda t: t.split("Labels:")[0], "truncated|Labels"),
    ],
)
def test_bad_lm2(tmp_path: Path, mutate, problem: str) -> None:
    path = tmp_path / "bad.lm2"
    path.write_text(mutate(LM2_REAL_STYLE))
    with pytest.raises(ScanFormatError, match=problem) as info:
        read_lm2(path)
    assert info.value.path == path


def test_missing_landmark_file(tmp_path: Path) -> None:
    with pytest.raises(ScanFormatError, match="does not exist"):
        read_lm3(tmp_path / "nope.lm3")


# ----------------------------------------------------------------------------------------------- bnd
def test_bnd_round_trip(tmp_path: Path) -> None:
    idx = np.arange(83) * 3
    pos = np.random.default_rng(2).normal(size=(83, 3)) * 40
    i2, p2 = read_bnd(write_bnd(tmp_path / "a.bnd", idx, pos), n_vertices=300)
    np.testing.assert_array_equal(i2, idx)
    np.testing.assert_allclose(p2, pos, rtol=1e-8)
    text = (tmp_path / "a.bnd").read_text()
    (tmp_path / "b.bnd").write_text(text.replace("\t\t", " \t").replace("\n", "\r\n"))
    np.testing.assert_allclose(read_bnd(tmp_path / "b.bnd")[1], pos, rtol=1e-8)


# ----------------------------------------------------------------------------------------------- generic
def test_load_landmarks_arrays_and_mappings() -> None:
    verts = np.arange(300, dtype=float).reshape(100, 3)
    lms, scheme = load_landmarks(np.zeros((68, 3)))
    assert scheme == "ibug68" and "ibug68_68" in lms
    lms, scheme = load_landmarks(np.ones((83, 3)))
    assert scheme == "bu3dfe83" and len(lms) == 83
    lms, scheme = load_landmarks([[1, 2, 3], [4, 5, 6]])
    assert scheme == "custom" and list(lms) == ["lm_000", "lm_001"]
    lms, scheme = load_landmarks(np.zeros((2, 3)), scheme="bosphorus")
    assert list(lms) == list(BOSPHORUS_LABELS[:2])
    lms, scheme = load_landmarks(np.array([5, 7]), vertices=verts)
    np.testing.assert_array_equal(lms["lm_001"], verts[7])
    lms, scheme = load_landmarks({"nose TIP": [0, 0, 1], "Chin middle": 3}, vertices=verts)
    assert scheme == "bosphorus" and list(lms) == ["Nose tip", "Chin middle"]
    np.testing.assert_array_equal(lms["Chin middle"], verts[3])
    lms, scheme = load_landmarks({"a": (1, 2, 3)})
    assert scheme == "custom"


def test_load_landmarks_files(tmp_path: Path) -> None:
    arr = np.random.default_rng(3).normal(size=(5, 3))
    np.save(tmp_path / "a.npy", arr)
    np.savetxt(tmp_path / "a.txt", arr, header="x y z")
    (tmp_path / "b.txt").write_text("nose 1 2 3\nchin 4 5 6\n")
    (tmp_path / "a.json").write_text(json.dumps({"scheme": "custom", "landmarks": {"p": [1, 2, 3]}}))
    (tmp_path / "b.json").write_text(json.dumps(arr.tolist()))
    for name in ("a.npy", "a.txt", "b.json"):
        lms, _ = load_landmarks(tmp_path / name)
        np.testing.assert_allclose(np.stack(list(lms.values())), arr)
    assert list(load_landmarks(tmp_path / "b.txt")[0]) == ["nose", "chin"]
    assert load_landmarks(str(tmp_path / "a.json"))[0]["p"].tolist() == [1, 2, 3]


@pytest.mark.parametrize(
    ("name", "content", "problem"),
    [
        ("a.json", "{not json", "invalid JSON"),
        ("b.json", '{"p": [1, 2]}', "3 finite"),
        ("c.json", '[[1, 2, "x"]]', "mapping or a list"),
        ("d.json", '{"scheme": 3, "landmarks": {}}', "'scheme' must be a string"),
        ("a.txt", "1 2\n", "'x y z' or 'name x y z'"),
        ("b.txt", "1 2 nan\n", "NaN or infinite"),
        ("c.txt", "# only a comment\n", "no landmark rows"),
        ("a.csv", "1,2,3", "unsupported landmark file"),
        ("a.npy", "not numpy", "cannot read .npy"),
    ],
)
def test_bad_landmark_files(tmp_path: Path, name: str, content: str, problem: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ScanFormatError, match=problem) as info:
        load_landmarks(path)
    assert info.value.path == path


@pytest.mark.parametrize(
    ("source", "kwargs", "problem"),
    [
        (np.zeros((4, 2)), {}, "\\(K, 3\\)"),
        (np.array([[0, np.nan, 0]]), {}, "NaN"),
        (np.array([1, 2]), {}, "need the scan's vertices"),
        (np.array([1, 200]), {"vertices": np.zeros((10, 3))}, "out of range"),
        ({"a": [1, 2, np.inf]}, {}, "3 finite"),
        ({"Nose tip": [0, 0, 0], "nose tip": [1, 1, 1]}, {}, "appears twice"),
        ({"a": [0, 0, 0]}, {"scheme": "ibug68"}, "do not belong"),
        (np.zeros((5, 3)), {"scheme": "ibug68"}, "68 points"),
    ],
)
def test_bad_landmark_values(source, kwargs, problem: str) -> None:
    with pytest.raises(ScanFormatError, match=problem):
        load_landmarks(source, **kwargs)
