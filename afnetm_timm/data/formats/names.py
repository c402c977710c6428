"""File-name grammars of BU-3DFE and Bosphorus; parsed facts go into `FaceScan.metadata`."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

#: the six basic expressions (the SFM / FER class names) plus neutral
EXPRESSIONS: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")

BU3DFE_NAME = re.compile(
    r"^([FM])(\d{4})_(AN|DI|FE|HA|NE|SA|SU)(\d{2})(WH|BL|AE|AM|IN|LA)_(F3D|RAW|F2D)(?:\.(wrl|bmp|bnd|pse))?$"
)
BU3DFE_EXPRESSIONS: dict[str, str] = {
    "AN": "anger", "DI": "disgust", "FE": "fear", "HA": "happiness", "NE": "neutral", "SA": "sadness", "SU": "surprise",
}
BU3DFE_RACES: dict[str, str] = {
    "WH": "white", "BL": "black", "AE": "east asian", "AM": "middle east asian", "IN": "indian", "LA": "hispanic latino",
}

BOSPHORUS_NAME = re.compile(r"^bs(\d{3})_([A-Z]+)_([A-Za-z0-9]+)_(\d+)(?:\.(bnt|png|lm2|lm3))?$")
BOSPHORUS_EMOTIONS: dict[str, str] = {
    "ANGER": "anger", "DISGUST": "disgust", "FEAR": "fear", "HAPPY": "happiness", "SADNESS": "sadness",
    "SURPRISE": "surprise",
}
BOSPHORUS_CLASSES: dict[str, str] = {
    "E": "emotion", "N": "neutral", "LFAU": "lower face action unit", "UFAU": "upper face action unit",
    "CAU": "combined action units", "YR": "yaw rotation", "PR": "pitch rotation", "CR": "cross rotation",
    "O": "occlusion",
}


def parse_bu3dfe_name(name: str | Path) -> dict[str, Any] | None:
    """Parse a BU-3DFE file name such as ``F0001_AN01WH_F3D.wrl`` (extension optional).

    Returns None when the name does not follow the grammar, else a dict with ``dataset``,
    ``subject`` ('F0001'), ``sex`` ('F'/'M'), ``subject_number`` (int), ``expression_code``
    ('AN'), ``expression`` ('anger', ..., 'neutral'), ``intensity`` (0 for NE, else 1..4),
    ``race`` ('WH'), ``scan_type`` ('F3D'/'RAW'/'F2D') and ``stem``.
    """
    base = Path(name).name
    m = BU3DFE_NAME.match(base)
    if m is None:
        return None
    sex, number, expr, intensity, race, kind, _ext = m.groups()
    return {
        "dataset": "bu3dfe",
        "subject": f"{sex}{number}",
        "sex": sex,
        "subject_number": int(number),
        "expression_code": expr,
        "expression": BU3DFE_EXPRESSIONS[expr],
        "intensity": int(intensity),
        "race": race,
        "scan_type": kind,
        "stem": base.rsplit(".", 1)[0] if _ext else base,
    }


def parse_bosphorus_name(name: str | Path) -> dict[str, Any] | None:
    """Parse a Bosphorus file name such as ``bs000_E_HAPPY_0.bnt`` (extension optional).

    Returns None when the name does not follow ``bsNNN_<CLASS>_<CODE>_<k>``, else a dict with
    ``dataset``, ``subject`` ('bs000'), ``subject_number``, ``sample_class`` ('E', 'N', 'LFAU',
    'UFAU', 'CAU', 'YR', 'PR', 'CR', 'O' or other capitals), ``code`` ('HAPPY'), ``take`` (k),
    ``expression`` ('happiness' for E_HAPPY, 'neutral' for N_N, None otherwise) and ``stem``.
    """
    base = Path(name).name
    m = BOSPHORUS_NAME.match(base)
    if m is None:
        return None
    number, cls, code, take, ext = m.groups()
    if cls == "E":
        expression = BOSPHORUS_EMOTIONS.get(code)
    elif cls == "N" and code == "N":
        expression = "neutral"
    else:
        expression = None
    return {
        "dataset": "bosphorus",
        "subject": f"bs{number}",
        "subject_number": int(number),
        "sample_class": cls,
        "code": code,
        "take": int(take),
        "expression": expression,
        "stem": base.rsplit(".", 1)[0] if ext else base,
    }


def parse_scan_name(name: str | Path) -> dict[str, Any]:
    """Parse a BU-3DFE or Bosphorus name; {} when it matches neither grammar."""
    return parse_bu3dfe_name(name) or parse_bosphorus_name(name) or {}
