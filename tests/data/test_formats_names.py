"""BU-3DFE and Bosphorus file-name grammars."""
from __future__ import annotations

import pytest

from afnetm_timm.data.formats import parse_bosphorus_name, parse_bu3dfe_name
from afnetm_timm.data.formats.names import parse_scan_name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("F0001_AN01WH_F3D.wrl", dict(subject="F0001", sex="F", expression="anger", intensity=1, race="WH",
                                      scan_type="F3D", stem="F0001_AN01WH_F3D")),
        ("M0044_NE00LA_RAW.wrl", dict(subject="M0044", sex="M", expression="neutral", intensity=0, race="LA",
                                      scan_type="RAW")),
        ("F0056_SU04AM_F2D.bmp", dict(expression="surprise", intensity=4, race="AM", scan_type="F2D")),
        ("M0001_HA02IN_F3D.bnd", dict(expression="happiness", race="IN")),
        ("F0010_DI03BL_F3D", dict(expression="disgust", stem="F0010_DI03BL_F3D")),
        ("F0010_FE03AE_F3D.pse", dict(expression="fear", race="AE")),
        ("/some/dir/F0002_SA01WH_F3D.wrl", dict(expression="sadness", subject_number=2)),
    ],
)
def test_bu3dfe_names(name: str, expected: dict) -> None:
    meta = parse_bu3dfe_name(name)
    assert meta is not None and meta["dataset"] == "bu3dfe"
    for k, v in expected.items():
        assert meta[k] == v, k


@pytest.mark.parametrize(
    "name",
    ["F001_AN01WH_F3D.wrl", "X0001_AN01WH_F3D.wrl", "F0001_XX01WH_F3D.wrl", "F0001_AN01ZZ_F3D.wrl",
     "F0001_AN01WH_F3D.obj", "F0001_AN1WH_F3D.wrl", "f0001_an01wh_f3d.wrl", "bs000_E_ANGER_0.bnt", ""],
)
def test_bu3dfe_bad_names(name: str) -> None:
    assert parse_bu3dfe_name(name) is None


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("bs000_E_ANGER_0.bnt", dict(subject="bs000", sample_class="E", code="ANGER", take=0, expression="anger")),
        ("bs104_E_HAPPY_0.png", dict(subject_number=104, expression="happiness")),
        ("bs010_E_SADNESS_0.lm3", dict(expression="sadness")),
        ("bs010_E_DISGUST_0.lm2", dict(expression="disgust")),
        ("bs010_E_FEAR_0", dict(expression="fear", stem="bs010_E_FEAR_0")),
        ("bs010_E_SURPRISE_0.bnt", dict(expression="surprise")),
        ("bs001_N_N_3.bnt", dict(sample_class="N", expression="neutral", take=3)),
        ("bs000_CAU_A22A25_0.bnt", dict(sample_class="CAU", code="A22A25", expression=None)),
        ("bs000_LFAU_9_0.bnt", dict(sample_class="LFAU", code="9", expression=None)),
        ("bs000_YR_R10_0.bnt", dict(sample_class="YR", code="R10")),
        ("bs000_O_EYE_0.bnt", dict(sample_class="O", code="EYE")),
    ],
)
def test_bosphorus_names(name: str, expected: dict) -> None:
    meta = parse_bosphorus_name(name)
    assert meta is not None and meta["dataset"] == "bosphorus"
    for k, v in expected.items():
        assert meta[k] == v, k


@pytest.mark.parametrize("name", ["bs00_E_ANGER_0.bnt", "BS000_E_ANGER_0.bnt", "bs000_E_ANGER.bnt",
                                  "bs000_e_ANGER_0.bnt", "bs000_E_ANGER_0.wrl", "F0001_AN01WH_F3D.wrl"])
def test_bosphorus_bad_names(name: str) -> None:
    assert parse_bosphorus_name(name) is None


def test_parse_scan_name() -> None:
    assert parse_scan_name("F0001_AN01WH_F3D.wrl")["dataset"] == "bu3dfe"
    assert parse_scan_name("bs000_N_N_0.bnt")["dataset"] == "bosphorus"
    assert parse_scan_name("face.obj") == {}
