"""Landmark schemes and files: BU-3DFE ``.bnd``, Bosphorus ``.lm3``/``.lm2`` and generic arrays/files.

Landmark names used in `FaceScan.landmarks`:

- ``bu3dfe83``: ``'bu3dfe83_01'`` .. ``'bu3dfe83_83'`` (1-based, the numbering of the BU-3DFE papers);
- ``ibug68``: ``'ibug68_01'`` .. ``'ibug68_68'`` (1-based; the usual 0-based index is number - 1);
- ``bosphorus``: the canonical labels of `BOSPHORUS_LABELS` (e.g. ``'Nose tip'``);
- ``custom``: any other names.

"Left"/"right" keep each dataset's own naming: in Bosphorus "left" is the left of the image
(smaller x); in iBUG-68 "right" is the subject's right, which is also the image left.
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ScanFormatError
from ._util import read_text

# ----------------------------------------------------------------------------------------------- schemes
BU3DFE83_GROUPS: dict[str, tuple[int, ...]] = {
    "left_eye": tuple(range(1, 9)),
    "right_eye": tuple(range(9, 17)),
    "left_brow": tuple(range(17, 27)),
    "right_brow": tuple(range(27, 37)),
    "nose": tuple(range(37, 49)),
    "mouth": tuple(range(49, 69)),
    "mouth_outer": tuple(range(49, 61)),
    "mouth_inner": tuple(range(61, 69)),
    "contour": tuple(range(69, 84)),
}
"""BU-3DFE 83-point groups, 1-based point numbers (left eye 1-8, ..., contour 69-83)."""

IBUG68_GROUPS: dict[str, tuple[int, ...]] = {
    "jaw": tuple(range(1, 18)),
    "right_brow": tuple(range(18, 23)),
    "left_brow": tuple(range(23, 28)),
    "nose": tuple(range(28, 37)),
    "right_eye": tuple(range(37, 43)),
    "left_eye": tuple(range(43, 49)),
    "mouth_outer": tuple(range(49, 61)),
    "mouth_inner": tuple(range(61, 69)),
}
"""iBUG-68 groups, 1-based point numbers (0-based jaw 0-16 is 1-17 here)."""

BOSPHORUS_LABELS: tuple[str, ...] = (
    "Outer left eyebrow", "Middle left eyebrow", "Inner left eyebrow",
    "Inner right eyebrow", "Middle right eyebrow", "Outer right eyebrow",
    "Outer left eye corner", "Inner left eye corner", "Inner right eye corner", "Outer right eye corner",
    "Nose saddle left", "Nose saddle right", "Left nose peak", "Nose tip", "Right nose peak",
    "Left mouth corner", "Upper lip outer middle", "Right mouth corner",
    "Upper lip inner middle", "Lower lip inner middle", "Lower lip outer middle", "Chin middle",
    "Left ear lobe", "Right ear lobe",
)
"""The 24 Bosphorus landmark labels, canonical spelling (files match them case-insensitively)."""

BOSPHORUS_GROUPS: dict[str, tuple[str, ...]] = {
    "left_brow": BOSPHORUS_LABELS[0:3],
    "right_brow": BOSPHORUS_LABELS[3:6],
    "left_eye": BOSPHORUS_LABELS[6:8],
    "right_eye": BOSPHORUS_LABELS[8:10],
    "nose": BOSPHORUS_LABELS[10:15],
    "mouth": BOSPHORUS_LABELS[15:21],
    "chin": BOSPHORUS_LABELS[21:22],
    "ears": BOSPHORUS_LABELS[22:24],
}

IBUG68_TO_BOSPHORUS: dict[int, str] = {
    18: "Outer left eyebrow", 20: "Middle left eyebrow", 22: "Inner left eyebrow",
    23: "Inner right eyebrow", 25: "Middle right eyebrow", 27: "Outer right eyebrow",
    37: "Outer left eye corner", 40: "Inner left eye corner", 43: "Inner right eye corner", 46: "Outer right eye corner",
    32: "Left nose peak", 31: "Nose tip", 36: "Right nose peak",
    49: "Left mouth corner", 52: "Upper lip outer middle", 55: "Right mouth corner",
    63: "Upper lip inner middle", 67: "Lower lip inner middle", 58: "Lower lip outer middle", 9: "Chin middle",
}
"""1-based iBUG-68 number -> Bosphorus label of (about) the same point; Bosphorus "left" = image left."""

SCHEMES: dict[str, int] = {"bu3dfe83": 83, "ibug68": 68}
_NUMBERED = re.compile(r"^(bu3dfe83|ibug68)_(\d{2})$")
_CANON = {" ".join(lab.lower().split()): lab for lab in BOSPHORUS_LABELS}


def landmark_name(scheme: str, number: int) -> str:
    """Name of the 1-based point `number` of a numbered scheme ('bu3dfe83' or 'ibug68')."""
    if scheme not in SCHEMES or not 1 <= number <= SCHEMES[scheme]:
        raise ValueError(f"no point {number} in scheme {scheme!r}")
    return f"{scheme}_{number:02d}"


def scheme_names(scheme: str) -> tuple[str, ...]:
    """All names of a numbered scheme, or the Bosphorus labels."""
    if scheme == "bosphorus":
        return BOSPHORUS_LABELS
    return tuple(landmark_name(scheme, k) for k in range(1, SCHEMES[scheme] + 1))


def group_names(scheme: str, group: str) -> tuple[str, ...]:
    """Landmark names of one group (e.g. ``group_names('bu3dfe83', 'nose')``)."""
    if scheme == "bu3dfe83":
        return tuple(landmark_name(scheme, k) for k in BU3DFE83_GROUPS[group])
    if scheme == "ibug68":
        return tuple(landmark_name(scheme, k) for k in IBUG68_GROUPS[group])
    if scheme == "bosphorus":
        return BOSPHORUS_GROUPS[group]
    raise ValueError(f"scheme {scheme!r} has no groups")


def canonical_bosphorus_label(label: str) -> str | None:
    """Canonical spelling of a Bosphorus label (case and spacing ignored), or None if unknown."""
    return _CANON.get(" ".join(label.lower().split()))


def detect_scheme(names: Sequence[str]) -> str:
    """'bu3dfe83', 'ibug68' or 'bosphorus' when every name belongs to that scheme, else 'custom'."""
    if not names:
        return "custom"
    for scheme in SCHEMES:
        if all((m := _NUMBERED.match(n)) and m.group(1) == scheme and 1 <= int(m.group(2)) <= SCHEMES[scheme]
               for n in names):
            return scheme
    if all(canonical_bosphorus_label(n) is not None for n in names):
        return "bosphorus"
    return "custom"


def ibug68_to_bosphorus(landmarks: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Bosphorus-labelled subset of iBUG-68 landmarks (names ``ibug68_NN``); missing points are skipped."""
    out = {}
    for number, label in IBUG68_TO_BOSPHORUS.items():
        name = landmark_name("ibug68", number)
        if name in landmarks:
            out[label] = np.asarray(landmarks[name], dtype=np.float64).copy()
    return out


# ----------------------------------------------------------------------------------------------- helpers
def _floats(tokens: Sequence[str], where: Path | None, what: str) -> np.ndarray:
    try:
        vals = np.array([float(t) for t in tokens], dtype=np.float64)
    except ValueError as exc:
        raise ScanFormatError(where, f"{what}: not a number ({exc})") from exc
    if not np.all(np.isfinite(vals)):
        raise ScanFormatError(where, f"{what}: NaN or infinite coordinate {' '.join(tokens)!r}")
    return vals


def _norm_header(line: str) -> str:
    return "".join(line.lower().split())


def _canonical_or_fail(label: str, where: Path | None, seen: dict[str, Any]) -> str:
    canon = canonical_bosphorus_label(label)
    if canon is None:
        raise ScanFormatError(where, f"unknown landmark label {label.strip()!r}")
    if canon in seen:
        raise ScanFormatError(where, f"landmark label {canon!r} appears twice")
    return canon


# ----------------------------------------------------------------------------------------------- BU-3DFE .bnd
def parse_bnd(text: str, path: Path | None = None, *, n_vertices: int | None = None,
              expected: int | None = 83) -> tuple[np.ndarray, np.ndarray]:
    """Parse a BU-3DFE ``.bnd`` text: lines ``idx x y z``.

    Returns (indices (K,) int64 0-based vertex indices, positions (K, 3) float64 mm).
    `expected` is the required number of lines (83; None for any); `n_vertices` bounds the indices.
    """
    rows = [ln.split() for ln in text.splitlines() if ln.strip()]
    if expected is not None and len(rows) != expected:
        raise ScanFormatError(path, f"expected {expected} landmark lines 'idx x y z', found {len(rows)} (missing points?)")
    idx = np.empty(len(rows), dtype=np.int64)
    pos = np.empty((len(rows), 3), dtype=np.float64)
    for i, row in enumerate(rows):
        if len(row) != 4:
            raise ScanFormatError(path, f"landmark line {i + 1}: expected 'idx x y z', got {' '.join(row)!r}")
        try:
            idx[i] = int(row[0])
        except (ValueError, OverflowError) as exc:
            raise ScanFormatError(path, f"landmark line {i + 1}: vertex index {row[0]!r} is not an integer") from exc
        pos[i] = _floats(row[1:], path, f"landmark line {i + 1}")
    if idx.size and idx.min() < 0:
        raise ScanFormatError(path, f"negative vertex index {int(idx.min())}")
    if n_vertices is not None and idx.size and idx.max() >= n_vertices:
        raise ScanFormatError(path, f"vertex index {int(idx.max())} out of range for a mesh of {n_vertices} vertices")
    return idx, pos


def read_bnd(path: str | Path, *, n_vertices: int | None = None,
             expected: int | None = 83) -> tuple[np.ndarray, np.ndarray]:
    """Read a BU-3DFE ``.bnd`` file; see `parse_bnd`."""
    path = Path(path)
    return parse_bnd(read_text(path), path, n_vertices=n_vertices, expected=expected)


def bnd_landmarks(indices: np.ndarray, positions: np.ndarray) -> dict[str, np.ndarray]:
    """``{'bu3dfe83_01': (3,), ...}`` from `parse_bnd` output (line k is point k)."""
    return {f"bu3dfe83_{k + 1:02d}": positions[k].copy() for k in range(len(indices))}


def write_bnd(path: str | Path, indices: np.ndarray, positions: np.ndarray) -> Path:
    """Write a ``.bnd`` file: one line ``idx\\t\\tx\\t\\ty\\t\\tz`` per landmark (indices 0-based)."""
    path = Path(path)
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    pos = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    lines = [f"{i}\t\t{x:.9g}\t\t{y:.9g}\t\t{z:.9g}" for i, (x, y, z) in zip(idx.tolist(), pos.tolist(), strict=True)]
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


# ----------------------------------------------------------------------------------------------- Bosphorus
_COUNT = re.compile(r"^(\d+)\s*landmarks?\s*:?$", re.IGNORECASE)


def _count(line: str, path: Path | None) -> int:
    m = _COUNT.match(line.strip())
    if m is None:
        raise ScanFormatError(path, f"expected '<N> landmarks', got {line.strip()!r}")
    return int(m.group(1))


def parse_lm3(text: str, path: Path | None = None) -> dict[str, np.ndarray]:
    """Parse a Bosphorus ``.lm3`` text. Returns {canonical label: (3,) float64 mm}."""
    lines = text.splitlines()
    if not lines or _norm_header(lines[0]) != "#3dlandmarkfile":
        raise ScanFormatError(path, "first line must be '# 3D Landmark File'")
    i = 1
    if i < len(lines) and lines[i].strip() == "*":
        i += 1
        while i < len(lines) and lines[i].strip():
            i += 1
    body = [ln.strip() for ln in lines[i:] if ln.strip()]
    if not body:
        raise ScanFormatError(path, "missing '<N> landmarks:' line")
    n = _count(body[0], path)
    body = body[1:]
    if len(body) < 2 * n:
        raise ScanFormatError(path, f"declares {n} landmarks but holds only {len(body) // 2} (missing points)")
    if len(body) > 2 * n:
        raise ScanFormatError(path, f"unexpected content after the {n} declared landmarks: {body[2 * n]!r}")
    out: dict[str, np.ndarray] = {}
    for k in range(n):
        label, coords = body[2 * k], body[2 * k + 1].split()
        canon = _canonical_or_fail(label, path, out)
        if len(coords) != 3:
            raise ScanFormatError(path, f"landmark {canon!r}: expected 'x y z', got {body[2 * k + 1]!r}")
        out[canon] = _floats(coords, path, f"landmark {canon!r}")
    return out


def read_lm3(path: str | Path) -> dict[str, np.ndarray]:
    """Read a Bosphorus ``.lm3`` file; see `parse_lm3`."""
    path = Path(path)
    return parse_lm3(read_text(path), path)


def write_lm3(path: str | Path, landmarks: Mapping[str, Any], comment: str | None = None) -> Path:
    """Write a ``.lm3`` file from {Bosphorus label: (3,) mm}; `comment` adds a '*' free-text block."""
    path = Path(path)
    lines = ["# 3D Landmark File"]
    if comment is not None:
        lines += ["*", *[c for c in comment.splitlines() if c.strip()], ""]
    lines.append(f"{len(landmarks)} landmarks:")
    for label, p in landmarks.items():
        x, y, z = np.asarray(p, dtype=np.float64).reshape(3).tolist()
        lines += [label, f"{x:.9g} {y:.9g} {z:.9g}"]
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


def parse_lm2(text: str, path: Path | None = None) -> dict[str, np.ndarray]:
    """Parse a Bosphorus ``.lm2`` text. Returns {canonical label: (2,) float64 pixel (x right, y down)}."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines or _norm_header(lines[0]) != "#2dlandmarkfile":
        raise ScanFormatError(path, "first line must be '# 2D Landmark File'")
    if len(lines) < 3:
        raise ScanFormatError(path, "truncated: missing '<N> landmarks' or 'Labels:'")
    n = _count(lines[1], path)
    if _norm_header(lines[2]) != "labels:":
        raise ScanFormatError(path, f"expected 'Labels:', got {lines[2]!r}")
    labels = lines[3:3 + n]
    j = 3 + n
    if len(labels) < n or j >= len(lines) or _norm_header(lines[j]) != "2dimagecoordinates:":
        raise ScanFormatError(path, f"expected {n} labels then '2D Image coordinates:' (missing points?)")
    coords = lines[j + 1:]
    if len(coords) != n:
        raise ScanFormatError(path, f"declares {n} landmarks but has {len(coords)} coordinate lines (missing points?)")
    out: dict[str, np.ndarray] = {}
    for label, line in zip(labels, coords, strict=True):
        canon = _canonical_or_fail(label, path, out)
        toks = line.split()
        if len(toks) != 2:
            raise ScanFormatError(path, f"landmark {canon!r}: expected 'x y', got {line!r}")
        out[canon] = _floats(toks, path, f"landmark {canon!r}")
    return out


def read_lm2(path: str | Path) -> dict[str, np.ndarray]:
    """Read a Bosphorus ``.lm2`` file; see `parse_lm2`."""
    path = Path(path)
    return parse_lm2(read_text(path), path)


def write_lm2(path: str | Path, landmarks: Mapping[str, Any]) -> Path:
    """Write a ``.lm2`` file from {Bosphorus label: (2,) pixel (x right, y down)}."""
    path = Path(path)
    lines = ["# 2D Landmark File", "", f"{len(landmarks)} landmarks", "", "Labels:", *landmarks.keys(), "",
             "2D Image coordinates:"]
    for p in landmarks.values():
        x, y = np.asarray(p, dtype=np.float64).reshape(2).tolist()
        lines.append(f"{x:.6f} {y:.6f}")
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


# ----------------------------------------------------------------------------------------------- generic
LandmarkSource = Mapping[str, Any] | np.ndarray | Sequence[Sequence[float]] | str | Path


def _names_for(count: int, scheme: str | None) -> tuple[list[str], str]:
    if scheme is None:
        scheme = {83: "bu3dfe83", 68: "ibug68"}.get(count, "custom")
    if scheme in SCHEMES:
        if count != SCHEMES[scheme]:
            raise ValueError(f"scheme {scheme!r} has {SCHEMES[scheme]} points, got {count}")
        return list(scheme_names(scheme)), scheme
    if scheme == "bosphorus":
        if count > len(BOSPHORUS_LABELS):
            raise ValueError(f"at most {len(BOSPHORUS_LABELS)} Bosphorus points, got {count}")
        return list(BOSPHORUS_LABELS[:count]), scheme
    return [f"lm_{k:03d}" for k in range(count)], "custom"


def _from_array(arr: np.ndarray, vertices: np.ndarray | None, scheme: str | None,
                where: Path | None) -> tuple[dict[str, np.ndarray], str]:
    if arr.ndim == 1 and arr.size and np.issubdtype(arr.dtype, np.integer):
        if vertices is None:
            raise ScanFormatError(where, "landmarks given as vertex indices need the scan's vertices")
        if arr.min() < 0 or arr.max() >= len(vertices):
            raise ScanFormatError(where, f"landmark vertex index out of range [0, {len(vertices) - 1}]")
        arr = np.asarray(vertices, dtype=np.float64)[arr]
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ScanFormatError(where, f"landmarks must be a (K, 3) array, got shape {arr.shape}")
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ScanFormatError(where, f"landmarks are not numbers: {exc}") from exc
    if not np.all(np.isfinite(arr)):
        raise ScanFormatError(where, "landmarks contain NaN or infinite coordinates")
    try:
        names, scheme = _names_for(arr.shape[0], scheme)
    except ValueError as exc:
        raise ScanFormatError(where, str(exc)) from exc
    return {n: arr[k].copy() for k, n in enumerate(names)}, scheme


def _from_mapping(data: Mapping[str, Any], vertices: np.ndarray | None, scheme: str | None,
                  where: Path | None) -> tuple[dict[str, np.ndarray], str]:
    out: dict[str, np.ndarray] = {}
    for name, value in data.items():
        if not isinstance(name, str):
            raise ScanFormatError(where, f"landmark name {name!r} is not a string")
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            if vertices is None or not 0 <= int(value) < len(vertices):
                raise ScanFormatError(where, f"landmark {name!r}: vertex index {value} unusable without/for the mesh")
            p = np.asarray(vertices[int(value)], dtype=np.float64)
        else:
            try:
                p = np.asarray(value, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise ScanFormatError(where, f"landmark {name!r} is not 3 numbers") from exc
        if p.shape != (3,) or not np.all(np.isfinite(p)):
            raise ScanFormatError(where, f"landmark {name!r} must be 3 finite coordinates, got {value!r}")
        out[name] = p.copy()
    found = detect_scheme(list(out))
    if found == "bosphorus":
        canon: dict[str, np.ndarray] = {}
        for name, p in out.items():
            canon[_canonical_or_fail(name, where, canon)] = p
        out = canon
    if scheme is not None and scheme != found and scheme != "custom":
        raise ScanFormatError(where, f"landmark names do not belong to scheme {scheme!r}")
    return out, (scheme or found)


def _parse_txt(text: str, where: Path) -> dict[str, np.ndarray] | np.ndarray:
    rows = [ln.split() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not rows:
        raise ScanFormatError(where, "no landmark rows")
    if all(len(r) == 3 for r in rows):
        return np.stack([_floats(r, where, f"row {i + 1}") for i, r in enumerate(rows)])
    if all(len(r) == 4 for r in rows):
        return {r[0]: _floats(r[1:], where, f"landmark {r[0]!r}") for r in rows}
    raise ScanFormatError(where, "each row must be 'x y z' or 'name x y z'")


def load_landmarks(source: LandmarkSource, *, vertices: np.ndarray | None = None,
                   scheme: str | None = None) -> tuple[dict[str, np.ndarray], str]:
    """Landmarks from an array, a mapping or a file; returns ({name: (3,) float64 mm}, scheme).

    Accepted: a (K, 3) array (K = 83 -> 'bu3dfe83' names, 68 -> 'ibug68', else ``lm_000``...,
    unless `scheme` says otherwise), a (K,) integer array of vertex indices (needs `vertices`),
    a mapping name -> (3,) or vertex index, or a file: ``.npy`` (array), ``.txt`` (rows
    ``x y z`` or ``name x y z``), ``.json`` (mapping, list of triples, or
    ``{"scheme": ..., "landmarks": ...}``), ``.bnd``, ``.lm3``.
    """
    where: Path | None = None
    if isinstance(source, (str, Path)):
        where = Path(source)
        suffix = where.suffix.lower()
        if suffix == ".bnd":
            n = None if vertices is None else len(vertices)
            idx, pos = read_bnd(where, n_vertices=n, expected=None)
            return bnd_landmarks(idx, pos), "bu3dfe83" if len(idx) == 83 else "custom"
        if suffix == ".lm3":
            return read_lm3(where), "bosphorus"
        if suffix == ".npy":
            try:
                source = np.load(where, allow_pickle=False)
            except FileNotFoundError as exc:
                raise ScanFormatError(where, "file does not exist") from exc
            except (OSError, ValueError) as exc:
                raise ScanFormatError(where, f"cannot read .npy landmarks: {exc}") from exc
        elif suffix == ".json":
            try:
                data = json.loads(read_text(where))
            except json.JSONDecodeError as exc:
                raise ScanFormatError(where, f"invalid JSON: {exc}") from exc
            if isinstance(data, dict) and "landmarks" in data:
                scheme = data.get("scheme", scheme)
                if scheme is not None and not isinstance(scheme, str):
                    raise ScanFormatError(where, f"'scheme' must be a string, got {scheme!r}")
                data = data["landmarks"]
            if isinstance(data, dict):
                return _from_mapping(data, vertices, scheme, where)
            try:
                source = np.asarray(data, dtype=np.float64)
            except (TypeError, ValueError) as exc:
                raise ScanFormatError(where, "JSON landmarks must be a mapping or a list of [x, y, z]") from exc
        elif suffix == ".txt":
            parsed = _parse_txt(read_text(where), where)
            if isinstance(parsed, dict):
                return _from_mapping(parsed, vertices, scheme, where)
            source = parsed
        else:
            raise ScanFormatError(where, f"unsupported landmark file type {suffix!r} (.npy, .txt, .json, .bnd, .lm3)")
    if isinstance(source, Mapping):
        return _from_mapping(source, vertices, scheme, where)
    return _from_array(np.asarray(source), vertices, scheme, where)
