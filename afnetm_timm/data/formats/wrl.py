"""BU-3DFE ``_F3D.wrl`` (VRML97 IndexedFaceSet) reader and writer, with ``.bmp`` texture and ``.bnd`` landmarks.

The reader is a small VRML97 parser: comments and commas are dropped, nodes and fields are parsed
recursively, and every ``[...]`` body of plain numbers is converted by numpy in one go. Supported:
nested ``Transform`` (translation, rotation, scale, scaleOrientation, center), ``Group``-like nodes,
``Switch``/``LOD`` (the chosen/first child), ``DEF``/``USE``, several ``Shape`` nodes, n-gons
(fan-triangulated), ``texCoordIndex`` per corner (texture seams kept), ``ccw FALSE``, per-vertex
``Color``, ``ImageTexture`` urls. ``Viewpoint``, ``WorldInfo`` and other nodes are ignored.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ScanFormatError
from ..scan import FaceScan
from ._util import (
    check_texture_name,
    decode_text,
    drop_repeated_corners,
    finish_scan,
    fmt_rows,
    read_bytes,
    read_image,
    resolve_texture,
    write_image,
)
from .landmarks import bnd_landmarks, detect_scheme, read_bnd, scheme_names, write_bnd
from .names import parse_bu3dfe_name

_MAX_DEPTH = 64
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_EOL = re.compile(r"[\n\r]")
_TOKEN = re.compile(r'[\s,]*(?:("(?:[^"\\]|\\.)*")|([{}\[\]])|([^\s,{}\[\]"#]+))')
_MAX_VISITS = 100_000
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_NON_NUMERIC_BODY = re.compile(r"[^0-9eE+\-.,\s]")
_GROUPS = frozenset({"Group", "Anchor", "Billboard", "Collision", "StaticGroup", "Transform"})


@dataclass
class _Node:
    type: str
    fields: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Raw:
    """The body of a ``[...]`` made of number characters only, converted lazily to the dtype the field needs."""

    text: str

    def array(self, dtype: type, where: Path | None, what: str) -> np.ndarray:
        fast = _fast_int_list(self.text) if dtype is np.int64 else _fast_float_list(self.text)
        if fast is not None:
            return fast
        toks = self.text.replace(",", " ").split()
        try:
            return np.array(toks, dtype=dtype) if toks else np.zeros(0, dtype=dtype)
        except (ValueError, OverflowError) as exc:
            raise ScanFormatError(where, f"{what}: not a list of numbers ({exc})") from exc


_INT_CHARS = b"0123456789+-, \t\n\x0b\x0c\r"  # digits, signs and the separators numpy also skips
_INT_LIMIT = 10**18  # larger magnitudes may have overflowed: the slow path reports them


def _fast_int_list(text: str) -> np.ndarray | None:
    """Integers of a list like ``0 1 2 -1, 3 4 5 -1`` in one pass, or None unless every token is a
    plain ``[+-]?digits`` integer below 1e18 in magnitude (the slow path then reports the problem)."""
    if not text.isascii():
        return None
    raw = text.encode("ascii")
    if raw.translate(None, _INT_CHARS):  # some other character
        return None
    if not raw.strip(b", \t\n\x0b\x0c\r"):
        return np.zeros(0, dtype=np.int64)
    arr = np.frombuffer(raw, dtype=np.uint8)
    signs = np.flatnonzero((arr == 43) | (arr == 45))
    if signs.size:  # a sign must start a token and precede a digit
        before = arr[np.maximum(signs - 1, 0)]
        after = arr[np.minimum(signs + 1, arr.size - 1)]
        starts = (signs == 0) | (before == 32) | (before == 44) | ((before >= 9) & (before <= 13))
        if not np.all(starts & (signs + 1 < arr.size) & (after >= 48) & (after <= 57)):
            return None
    out = np.fromstring(raw.replace(b",", b" "), dtype=np.int64, sep=" ")  # grammar checked above
    if out.size and np.any((out >= _INT_LIMIT) | (out <= -_INT_LIMIT)):
        return None
    return out


_FLOAT_CHARS = _INT_CHARS + b".eE"
_POW10 = np.array([float(10**k) for k in range(23)])  # exact as doubles


def _fast_float_list(text: str) -> np.ndarray | None:
    """Floats of a list like ``-41.25 3.5e-05 0.125,`` or None when it holds anything unusual
    (the slow path then parses it or reports the problem).

    Plain decimals are read as integers without the dot (one pass of numpy's integer parser) and
    divided by a power of ten: below 2**53 and 10**22 both are exact doubles, so the one
    correctly rounded division gives the same bits as ``float(token)``. The rare tokens with an
    exponent go through ``float``.
    """
    if not text.isascii():
        return None
    raw = text.encode("ascii")
    if raw.translate(None, _FLOAT_CHARS):
        return None
    buf = bytearray(raw.replace(b",", b" "))
    arr = np.frombuffer(buf, dtype=np.uint8)
    sep = np.empty(arr.size + 2, dtype=bool)
    sep[0] = sep[-1] = True
    np.less_equal(arr, 32, out=sep[1:-1])  # only whitespace is below '+' here
    change = np.flatnonzero(sep[1:] != sep[:-1])
    starts, ends = change[::2], change[1::2]  # token k is buf[starts[k]:ends[k]]
    if starts.size == 0:
        return np.zeros(0)
    special = {}
    if b"e" in buf or b"E" in buf:  # a few tokens: float() them, leave a plain 0 in their place
        epos = np.flatnonzero((arr == 101) | (arr == 69))
        if 16 * epos.size > starts.size:  # not a few: the slow path is faster
            return None
        for t in np.unique(np.searchsorted(starts, epos, side="right") - 1).tolist():
            a, b = int(starts[t]), int(ends[t])
            try:
                special[t] = float(bytes(buf[a:b]))
            except ValueError:
                return None
            buf[a:b] = b"0" + b" " * (b - a - 1)
        arr = np.frombuffer(buf, dtype=np.uint8)
    padded = np.append(arr, 32)

    def digit(pos: np.ndarray) -> np.ndarray:
        c = padded[pos]
        return (c >= 48) & (c <= 57)

    signs = np.flatnonzero((arr == 43) | (arr == 45))  # only at a token start, before a digit or '.'
    if signs.size and not np.all(
        (starts[np.searchsorted(starts, signs, side="right") - 1] == signs) & (digit(signs + 1) | (padded[signs + 1] == 46))
    ):
        return None
    dots = np.flatnonzero(arr == 46)
    dot_tok = np.searchsorted(starts, dots, side="right") - 1
    if dots.size and (np.any(np.diff(dot_tok) <= 0) or not np.all(digit(dots + 1) | digit(dots - 1))):
        return None  # two dots in a token, or a dot without a digit beside it
    mant = np.fromstring(bytes(buf).translate(None, b".+-"), dtype=np.int64, sep=" ")
    frac = np.zeros(starts.size, dtype=np.int64)
    frac[dot_tok] = ends[dot_tok] - dots - 1
    # exact operands only (an overflowing integer reads as the int64 maximum, caught here too)
    if mant.size != starts.size or np.any(mant >= 2**53) or np.any(frac >= _POW10.size):
        return None
    first = arr[starts]
    out = mant.astype(np.float64) / _POW10[frac]
    np.negative(out, out=out, where=first == 45)
    for t, value in special.items():
        out[t] = value
    return out


# ASCII characters allowed in a plain number list (those not matched by _NON_NUMERIC_BODY)
_NUMERIC_ASCII = bytes(c for c in range(128) if _NON_NUMERIC_BODY.match(chr(c)) is None)


def _is_numeric_body(body: str) -> bool:
    """True when ``body`` holds number characters, commas and whitespace only."""
    if body.isascii():
        return not body.encode("ascii").translate(None, _NUMERIC_ASCII)
    return _NON_NUMERIC_BODY.search(body) is None


def _strip_comments(text: str) -> str:
    """``text`` with every ``#`` comment replaced by a space; quoted strings (which may hold ``#``) kept."""
    nq, nh = text.find('"'), text.find("#")
    if nh < 0:
        return text
    parts: list[str] = []
    pos = 0
    while nh >= 0:
        if 0 <= nq < nh:
            m = _STRING.match(text, nq)
            end = m.end() if m is not None else nq + 1  # unterminated: the lexer reports it later
            nq = text.find('"', end)
            if nh < end:
                nh = text.find("#", end)
            continue
        eol = _EOL.search(text, nh)
        end = eol.start() if eol is not None else len(text)
        parts += [text[pos:nh], " "]
        pos = end
        nh = text.find("#", end)
        if 0 <= nq < end:
            nq = text.find('"', end)
    parts.append(text[pos:])
    return "".join(parts)


class _Parser:
    def __init__(self, text: str, where: Path | None) -> None:
        self.where = where
        self.text = _strip_comments(text)
        self.pos = 0
        self.defs: dict[str, _Node | None] = {}

    # --- lexer
    def _fail(self, problem: str) -> ScanFormatError:
        line = self.text.count("\n", 0, self.pos) + 1
        return ScanFormatError(self.where, f"line {line}: {problem}")

    def _lex(self) -> tuple[tuple[str, str] | None, int]:
        """(next token as (kind, text) with kind 'str', 'punct' or 'word', or None at the end; its end offset)."""
        m = _TOKEN.match(self.text, self.pos)
        if m is None:
            rest = self.text[self.pos:].lstrip(" \t\r\n,")
            if not rest:
                return None, len(self.text)
            self.pos = len(self.text) - len(rest)
            raise self._fail(f"cannot read {rest[:20]!r} (unterminated string?)")
        if m.group(1) is not None:
            return ("str", m.group(1)), m.end()
        if m.group(2) is not None:
            return ("punct", m.group(2)), m.end()
        return ("word", m.group(3)), m.end()

    def _peek(self) -> tuple[str, str] | None:
        return self._lex()[0]

    def _next(self) -> tuple[str, str] | None:
        tok, self.pos = self._lex()
        return tok

    def _expect_word(self, what: str) -> str:
        tok = self._next()
        if tok is None:
            raise self._fail(f"unexpected end of file, expected {what}")
        if tok[0] != "word":
            raise self._fail(f"expected {what}, got {tok[1][:20]!r}")
        return tok[1]

    # --- grammar
    def parse(self) -> list[_Node | None]:
        nodes = []
        while self._peek() is not None:
            tok = self._peek()
            if tok is not None and tok[0] == "word" and tok[1] == "ROUTE":
                self._skip_route()
                continue
            nodes.append(self._node(0))
        return nodes

    def _skip_route(self) -> None:
        self._next()
        for what in ("ROUTE source", "TO", "ROUTE target"):
            self._expect_word(what)

    def _node(self, depth: int) -> _Node | None:
        if depth > _MAX_DEPTH:
            raise self._fail("nodes nested too deeply")
        word = self._expect_word("a node")
        if word == "DEF":
            name = self._expect_word("a DEF name")
            node = self._node(depth + 1)
            self.defs[name] = node
            return node
        if word == "USE":
            name = self._expect_word("a USE name")
            if name not in self.defs:
                raise self._fail(f"USE of undefined node {name!r}")
            return self.defs[name]
        if word == "NULL":
            return None
        if word in ("PROTO", "EXTERNPROTO", "Script"):
            raise self._fail(f"{word} is not supported")
        if not (word[0].isalpha() or word[0] == "_"):
            raise self._fail(f"expected a node type, got {word[:20]!r}")
        tok = self._next()
        if tok != ("punct", "{"):
            raise self._fail(f"expected '{{' after {word!r}")
        node = _Node(word)
        while True:
            tok = self._peek()
            if tok is None:
                raise self._fail(f"unexpected end of file inside {word} {{ }} (missing '}}')")
            if tok == ("punct", "}"):
                self._next()
                return node
            if tok[0] == "word" and tok[1] == "ROUTE":
                self._skip_route()
                continue
            name = self._expect_word(f"a field name in {word}")
            node.fields[name] = self._value(depth + 1)

    def _value(self, depth: int) -> Any:
        tok = self._peek()
        if tok is None:
            raise self._fail("unexpected end of file, expected a field value")
        kind, text = tok
        if kind == "str":
            self._next()
            return _unquote(text)
        if kind == "punct":
            if text != "[":
                raise self._fail(f"unexpected {text!r}, expected a field value")
            return self._multi(depth)
        if _as_number(text) is not None:
            nums = []
            while (t := self._peek()) is not None and t[0] == "word" and (x := _as_number(t[1])) is not None:
                self._next()
                nums.append(x)
            return tuple(nums)
        if text in ("TRUE", "FALSE"):
            self._next()
            return text == "TRUE"
        return self._node(depth)

    def _multi(self, depth: int) -> Any:
        start = self.pos
        _, body_start = self._lex()  # the '['
        close = self.text.find("]", body_start)
        if close < 0:
            raise self._fail("'[' without a matching ']'")
        body = self.text[body_start:close]
        if _is_numeric_body(body):
            self.pos = close + 1
            return _Raw(body)
        self.pos = body_start
        items: list[Any] = []
        while True:
            tok = self._peek()
            if tok is None:
                self.pos = start
                raise self._fail("'[' without a matching ']'")
            if tok == ("punct", "]"):
                self._next()
                return items
            if tok[0] == "str":
                self._next()
                items.append(_unquote(tok[1]))
            elif tok[0] == "word" and (x := _as_number(tok[1])) is not None:
                self._next()
                items.append(x)
            elif tok[0] == "word":
                if tok[1] not in ("DEF", "USE", "NULL"):
                    saved = self.pos
                    self._next()
                    after = self._peek()
                    self.pos = saved
                    if after != ("punct", "{"):
                        raise self._fail(f"inside [ ]: {tok[1][:20]!r} is not a number (not a list of numbers)")
                items.append(self._node(depth + 1))
            else:
                raise self._fail(f"unexpected {tok[1]!r} inside [ ]")


def _as_number(word: str) -> float | None:
    """The value of a numeric word (including nan/inf, caught later as non-finite), else None."""
    if _NUMBER.match(word):
        return float(word)
    if word.lower().lstrip("+-") in ("nan", "inf", "infinity"):
        try:
            return float(word)
        except ValueError:  # e.g. '+-nan'
            return None
    return None


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


# ----------------------------------------------------------------------------------------------- geometry
def _numbers(value: Any, dtype: type, where: Path | None, what: str) -> np.ndarray:
    if isinstance(value, _Raw):
        return value.array(dtype, where, what)
    if isinstance(value, tuple) or (isinstance(value, list) and all(isinstance(v, float) for v in value)):
        arr = np.asarray(value, dtype=np.float64)
        if dtype is not np.float64:
            if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)) or np.any(np.abs(arr) > 2**62):
                raise ScanFormatError(where, f"{what}: expected integers")
            arr = arr.astype(dtype)
        return arr
    raise ScanFormatError(where, f"{what}: expected a list of numbers, got {type(value).__name__}")


def _sf(node: _Node, name: str, n: int, default: tuple[float, ...], where: Path | None) -> np.ndarray:
    if name not in node.fields:
        return np.asarray(default, dtype=np.float64)
    arr = _numbers(node.fields[name], np.float64, where, f"{node.type}.{name}")
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise ScanFormatError(where, f"{node.type}.{name} must be {n} finite numbers, got {arr.tolist()}")
    return arr


def _rotation(r: np.ndarray) -> np.ndarray:
    axis, angle = r[:3], r[3]
    norm = np.linalg.norm(axis)
    m = np.eye(4)
    if norm == 0 or angle == 0:
        return m
    x, y, z = axis / norm
    c, s, t = np.cos(angle), np.sin(angle), 1 - np.cos(angle)
    m[:3, :3] = [[t * x * x + c, t * x * y - s * z, t * x * z + s * y],
                 [t * x * y + s * z, t * y * y + c, t * y * z - s * x],
                 [t * x * z - s * y, t * y * z + s * x, t * z * z + c]]
    return m


def _transform(node: _Node, where: Path | None) -> np.ndarray:
    """4x4 matrix of a VRML Transform: T C R SR S -SR -C."""
    def trans(v: np.ndarray) -> np.ndarray:
        m = np.eye(4)
        m[:3, 3] = v
        return m
    t = _sf(node, "translation", 3, (0, 0, 0), where)
    c = _sf(node, "center", 3, (0, 0, 0), where)
    r = _rotation(_sf(node, "rotation", 4, (0, 0, 1, 0), where))
    s = np.diag([*_sf(node, "scale", 3, (1, 1, 1), where), 1.0])
    so = _rotation(_sf(node, "scaleOrientation", 4, (0, 0, 1, 0), where))
    return trans(t) @ trans(c) @ r @ so @ s @ so.T @ trans(-c)


def _children(node: _Node, name: str, where: Path | None) -> list[_Node | None]:
    value = node.fields.get(name, [])
    if isinstance(value, _Raw):
        if value.text.strip():
            raise ScanFormatError(where, f"{node.type}.{name} must hold nodes")
        return []
    if isinstance(value, _Node) or value is None:
        return [value]
    if isinstance(value, list) and all(isinstance(v, _Node) or v is None for v in value):
        return value
    raise ScanFormatError(where, f"{node.type}.{name} must hold nodes")


def _collect(node: _Node | None, matrix: np.ndarray, depth: int, out: list, where: Path | None,
             visits: list[int]) -> None:
    if node is None or depth > _MAX_DEPTH:
        return
    visits[0] += 1
    if visits[0] > _MAX_VISITS:
        raise ScanFormatError(where, f"scene graph too large (more than {_MAX_VISITS} node visits; USE loops?)")
    if node.type in _GROUPS:
        if node.type == "Transform":
            matrix = matrix @ _transform(node, where)
        for child in _children(node, "children", where):
            _collect(child, matrix, depth + 1, out, where, visits)
    elif node.type == "Switch":
        which = _sf(node, "whichChoice", 1, (-1,), where)[0]
        choice = _children(node, "choice", where)
        if 0 <= which < len(choice) and which == int(which):
            _collect(choice[int(which)], matrix, depth + 1, out, where, visits)
    elif node.type == "LOD":
        levels = _children(node, "level", where)
        if levels:
            _collect(levels[0], matrix, depth + 1, out, where, visits)
    elif node.type == "Shape":
        out.append((node, matrix))


def _field_node(node: _Node | None, name: str, kind: str, where: Path | None) -> _Node | None:
    if node is None:
        return None
    value = node.fields.get(name)
    if value is None:
        return None
    if not isinstance(value, _Node) or value.type != kind:
        got = value.type if isinstance(value, _Node) else type(value).__name__
        raise ScanFormatError(where, f"{node.type}.{name} must be a {kind} node, got {got}")
    return value


def _index_list(node: _Node, name: str, where: Path | None) -> np.ndarray | None:
    if name not in node.fields:
        return None
    return _numbers(node.fields[name], np.int64, where, f"IndexedFaceSet.{name}").reshape(-1)


@dataclass
class WrlShape:
    """One IndexedFaceSet of a VRML file, in the world frame.

    points (N, 3) mm; faces (F, 3) into points; corner_uv (F, 3, 2) in VRML convention (origin
    bottom-left) or None; colors (N, 3) uint8 or None; urls: the ImageTexture url list.
    """

    points: np.ndarray
    faces: np.ndarray
    corner_uv: np.ndarray | None
    colors: np.ndarray | None
    urls: list[str]


def _polygons(index: np.ndarray) -> tuple[np.ndarray, int]:
    """Fan triangles of an index list split on -1, as positions into `index`: (T, 3) int64, and polygon count."""
    if index.size == 0:
        return np.zeros((0, 3), dtype=np.int64), 0
    seps = np.flatnonzero(index == -1)
    if index[-1] != -1:
        seps = np.append(seps, index.size)
    starts = np.concatenate([[0], seps[:-1] + 1])
    lengths = seps - starts
    n_tri = np.maximum(lengths - 2, 0)
    total = int(n_tri.sum())
    poly = np.repeat(np.arange(len(starts)), n_tri)
    k = np.arange(total) - np.repeat(np.cumsum(n_tri) - n_tri, n_tri)
    a = starts[poly]
    return np.stack([a, a + 1 + k, a + 2 + k], axis=1), int((lengths > 0).sum())


def _shape_mesh(shape: _Node, matrix: np.ndarray, where: Path | None) -> WrlShape | None:
    geom = shape.fields.get("geometry")
    if not isinstance(geom, _Node) or geom.type != "IndexedFaceSet":
        return None
    coord = _field_node(geom, "coord", "Coordinate", where)
    if coord is None or "point" not in coord.fields:
        raise ScanFormatError(where, "IndexedFaceSet without coord Coordinate { point [...] }")
    pts = _numbers(coord.fields["point"], np.float64, where, "Coordinate.point")
    if pts.size % 3:
        raise ScanFormatError(where, f"Coordinate.point holds {pts.size} numbers, not a multiple of 3")
    pts = pts.reshape(-1, 3)
    if not np.all(np.isfinite(pts)):
        bad = int((~np.isfinite(pts)).any(axis=1).sum())
        raise ScanFormatError(where, f"{bad} points have NaN or infinite coordinates")
    n = len(pts)
    ci = _index_list(geom, "coordIndex", where)
    if ci is None:
        ci = np.zeros(0, dtype=np.int64)
    if ci.size and (ci.min() < -1 or ci.max() >= n):
        bad = int(ci.max()) if ci.max() >= n else int(ci.min())
        raise ScanFormatError(where, f"coordIndex value {bad} out of range [-1, {n - 1}]")
    corners, _ = _polygons(ci)
    ccw = geom.fields.get("ccw", True)
    if ccw is False:
        corners = corners[:, ::-1]
    faces = ci[corners] if corners.size else np.zeros((0, 3), dtype=np.int64)

    # texture
    appearance = _field_node(shape, "appearance", "Appearance", where)
    tex_node = appearance.fields.get("texture") if appearance is not None else None
    urls: list[str] = []
    if isinstance(tex_node, _Node) and tex_node.type == "ImageTexture":
        url = tex_node.fields.get("url", [])
        if isinstance(url, str):
            urls = [url]
        elif isinstance(url, list) and all(isinstance(u, str) for u in url):
            urls = list(url)
        elif not (isinstance(url, _Raw) and not url.text.strip()):
            raise ScanFormatError(where, "ImageTexture.url must be strings")
    corner_uv = None
    if urls:
        tc = _field_node(geom, "texCoord", "TextureCoordinate", where)
        if tc is not None and "point" in tc.fields:
            uv = _numbers(tc.fields["point"], np.float64, where, "TextureCoordinate.point")
            if uv.size % 2:
                raise ScanFormatError(where, f"TextureCoordinate.point holds {uv.size} numbers, not pairs")
            uv = uv.reshape(-1, 2)
            if not np.all(np.isfinite(uv)):
                raise ScanFormatError(where, "TextureCoordinate.point has NaN or infinite values")
            ti = _index_list(geom, "texCoordIndex", where)
            if ti is None or ti.size == 0:
                ti = ci
            else:
                if ti.size and ti[-1] != -1 and ci.size and ci[-1] == -1:
                    ti = np.append(ti, -1)
                if ci.size and ci[-1] != -1 and ti.size == ci.size + 1 and ti[-1] == -1:
                    ti = ti[:-1]
                if ti.size != ci.size or np.any((ti == -1) != (ci == -1)):
                    raise ScanFormatError(where, "texCoordIndex does not run parallel to coordIndex")
            if ti.size and (ti.min() < -1 or ti.max() >= len(uv)):
                bad = int(ti.max()) if ti.max() >= len(uv) else int(ti.min())
                raise ScanFormatError(where, f"texCoordIndex value {bad} out of range [-1, {len(uv) - 1}]")
            corner_uv = uv[ti[corners]] if corners.size else np.zeros((0, 3, 2))
        elif n == 0:
            corner_uv = np.zeros((0, 3, 2))
        else:  # VRML default mapping: the two largest bounding-box extents
            lo, ext = pts.min(0), np.ptp(pts, axis=0)
            order = np.argsort(-ext, kind="stable")
            s_ax, t_ax = order[0], order[1]
            size = ext[s_ax] if ext[s_ax] > 0 else 1.0
            uv = np.stack([(pts[:, s_ax] - lo[s_ax]) / size, (pts[:, t_ax] - lo[t_ax]) / size], axis=1)
            corner_uv = uv[faces]

    colors = None
    col = _field_node(geom, "color", "Color", where)
    if col is not None and "color" in col.fields and geom.fields.get("colorPerVertex", True) is not False \
            and "colorIndex" not in geom.fields:
        c = _numbers(col.fields["color"], np.float64, where, "Color.color")
        if c.size == 3 * n and np.all(np.isfinite(c)):
            colors = np.clip(np.round(c.reshape(-1, 3) * 255), 0, 255).astype(np.uint8)

    with np.errstate(all="ignore"):
        homog = np.concatenate([pts, np.ones((n, 1))], axis=1) @ matrix.T
    pts = homog[:, :3]
    if not np.all(np.isfinite(pts)):
        raise ScanFormatError(where, "transformed points are not finite (bad Transform?)")
    if np.linalg.det(matrix[:3, :3]) < 0:
        faces = faces[:, ::-1]
        if corner_uv is not None:
            corner_uv = corner_uv[:, ::-1]
    return WrlShape(pts, faces, corner_uv, colors, urls)


# ----------------------------------------------------------------------------------------------- reading
def parse_wrl(text: str, path: Path | None = None) -> list[WrlShape]:
    """Parse VRML97 text into its IndexedFaceSet shapes (points already transformed to world frame)."""
    first = text.lstrip("\ufeff").split("\n", 1)[0].strip()
    if not first.startswith("#VRML V2.0"):
        raise ScanFormatError(path, f"not a VRML 2.0 file (first line {first[:40]!r})")
    parser = _Parser(text, path)
    shapes: list[tuple[_Node, np.ndarray]] = []
    visits = [0]
    for node in parser.parse():
        _collect(node, np.eye(4), 0, shapes, path, visits)
    meshes = [m for s, mat in shapes if (m := _shape_mesh(s, mat, path)) is not None]
    return meshes


def _merge(meshes: list[WrlShape], path: Path, load_texture: bool) -> dict[str, Any]:
    if not meshes:
        raise ScanFormatError(path, "no IndexedFaceSet geometry (empty mesh)")
    offsets = np.cumsum([0] + [len(m.points) for m in meshes])
    vertices = np.concatenate([m.points for m in meshes]).astype(np.float64)
    faces = np.concatenate([m.faces + off for m, off in zip(meshes, offsets[:-1], strict=True)]).astype(np.int64)
    out: dict[str, Any] = {"vertices": vertices, "faces": faces, "texture": None, "corner_uv": None,
                           "vertex_colors": None, "texture_files": []}
    if all(m.colors is not None for m in meshes):
        out["vertex_colors"] = np.concatenate([m.colors for m in meshes])
    textured = [m for m in meshes if m.urls and m.corner_uv is not None]
    if not textured:
        return out
    if not load_texture:
        for m in textured:
            check_texture_name(path, m.urls[0])
        out["texture_files"] = [m.urls[0] for m in textured]
        return out
    files: list[Path] = []
    for m in textured:
        err: ScanFormatError | None = None
        for url in m.urls:
            try:
                files.append(resolve_texture(path, url))
                err = None
                break
            except ScanFormatError as exc:
                err = err or exc
        if err is not None:
            raise err
    unique = list(dict.fromkeys(files))
    images = {f: read_image(f) for f in unique}
    # single texture: use it; several: place them side by side in one atlas (untextured parts -> grey block)
    blocks: list[np.ndarray] = [images[f] for f in unique]
    grey_needed = len(textured) < len(meshes)
    if grey_needed:
        blocks.append(np.full((2, 2, 3), 128, dtype=np.uint8))
    height = max(b.shape[0] for b in blocks)
    width = sum(b.shape[1] for b in blocks)
    x_off = np.cumsum([0] + [b.shape[1] for b in blocks])
    if len(blocks) == 1:
        atlas = blocks[0]
    else:
        atlas = np.zeros((height, width, 3), dtype=np.uint8)
        for b, x0 in zip(blocks, x_off[:-1], strict=True):
            atlas[: b.shape[0], x0: x0 + b.shape[1]] = b
    uv_parts = []
    it = iter(files)
    for m in meshes:
        if m.urls and m.corner_uv is not None:
            k = unique.index(next(it))
            b = blocks[k]
            u = (x_off[k] + m.corner_uv[..., 0] * b.shape[1]) / width
            v = (1.0 - m.corner_uv[..., 1]) * b.shape[0] / height  # bottom-left (VRML) -> top-left
            uv_parts.append(np.stack([u, v], axis=-1))
        else:
            k = len(blocks) - 1
            centre = np.array([(x_off[k] + 1.0) / width, 1.0 / height])
            uv_parts.append(np.broadcast_to(centre, (len(m.faces), 3, 2)).copy())
    out["texture"] = atlas
    out["corner_uv"] = np.concatenate(uv_parts).astype(np.float64)
    out["texture_files"] = [f.name for f in unique]
    return out


def read_wrl(path: str | Path, *, load_texture: bool = True) -> FaceScan:
    """Read a VRML97 ``.wrl`` mesh (e.g. BU-3DFE ``_F3D.wrl``) without landmarks.

    Vertices (N, 3) mm in the world frame; faces (F, 3) from fan-triangulated polygons; the
    texture named by ``ImageTexture.url`` is read from the scan's own folder and its
    bottom-left texture coordinates are turned into top-left `corner_uv` (F, 3, 2).
    """
    path = Path(path)
    text = decode_text(read_bytes(path))
    merged = _merge(parse_wrl(text, path), path, load_texture)
    faces, corner_uv, dropped = drop_repeated_corners(merged["faces"], merged["corner_uv"])
    meta: dict[str, Any] = dict(parse_bu3dfe_name(path.name) or {})
    meta.update(source_path=str(path), format="vrml", texture_files=merged["texture_files"],
                dropped_degenerate_faces=dropped)
    scan = FaceScan(vertices=merged["vertices"], faces=faces, vertex_colors=merged["vertex_colors"],
                    texture=merged["texture"], corner_uv=corner_uv, metadata=meta)
    return finish_scan(scan)


def read_bu3dfe(path: str | Path, *, load_texture: bool = True, landmarks: bool = True) -> FaceScan:
    """Read a BU-3DFE scan: ``.wrl`` mesh + ``.bmp`` texture + ``.bnd`` landmarks beside it (if present).

    Landmarks are named ``bu3dfe83_01`` .. ``bu3dfe83_83`` (positions as written in the ``.bnd``,
    mm); the 0-based vertex indices are kept in ``metadata['bnd_vertex_index']``.
    """
    path = Path(path)
    scan = read_wrl(path, load_texture=load_texture)
    bnd = path.with_suffix(".bnd")
    if landmarks and bnd.is_file():
        idx, pos = read_bnd(bnd, n_vertices=len(scan.vertices))
        scan.landmarks = bnd_landmarks(idx, pos)
        scan.landmark_scheme = "bu3dfe83"
        scan.metadata["bnd_vertex_index"] = idx
        scan.metadata["bnd_max_offset_mm"] = float(np.linalg.norm(scan.vertices[idx] - pos, axis=1).max())
        scan.metadata["landmark_path"] = str(bnd)
    return scan


# ----------------------------------------------------------------------------------------------- writing
def format_wrl(scan: FaceScan, texture_name: str | None = None, *, digits: int = 9,
               def_name: str = "Tricorder_object") -> str:
    """VRML97 text of `scan` in the BU-3DFE layout (one Shape in a Transform, Viewpoints after it).

    Texture coordinates are de-duplicated and written bottom-left (t = 1 - v); vertex colours
    become a ``Color`` node when there is no texture.
    """
    v = np.asarray(scan.vertices, dtype=np.float64)
    f = np.asarray(scan.faces, dtype=np.int64)
    g = f"%.{digits}g"
    parts = ["#VRML V2.0 utf8", "", f"DEF {def_name} Transform {{", "  children [", "    Shape {"]
    if texture_name is not None and scan.texture is not None:
        parts += ["      appearance Appearance {",
                  f'        texture ImageTexture {{ url "{texture_name}" repeatS FALSE repeatT FALSE }}',
                  "      }"]
    parts += ["      geometry IndexedFaceSet {", "        creaseAngle 3.14", "        solid FALSE", "        convex TRUE",
              "        coord Coordinate {", "          point ["]
    parts.append(fmt_rows(v, f"{g} {g} {g},"))
    parts += ["          ]", "        }", "        coordIndex ["]
    parts.append(fmt_rows(f, "%d %d %d -1,"))
    parts.append("        ]")
    if texture_name is not None and scan.texture is not None and scan.corner_uv is not None:
        cuv = np.asarray(scan.corner_uv, dtype=np.float64).reshape(-1, 2).copy()
        cuv[:, 1] = 1.0 - cuv[:, 1]
        uniq, inv = np.unique(cuv, axis=0, return_inverse=True)
        parts += ["        texCoord TextureCoordinate {", "          point ["]
        parts.append(fmt_rows(uniq, f"{g} {g},"))
        parts += ["          ]", "        }", "        texCoordIndex ["]
        parts.append(fmt_rows(inv.reshape(-1, 3), "%d %d %d -1,"))
        parts.append("        ]")
    elif scan.vertex_colors is not None:
        parts += ["        color Color {", "          color ["]
        parts.append(fmt_rows(np.asarray(scan.vertex_colors, dtype=np.float64) / 255.0, "%.6g %.6g %.6g,"))
        parts += ["          ]", "        }"]
    parts += ["      }", "    }", "  ]", "}", ""]
    centre = v.mean(axis=0) if len(v) else np.zeros(3)
    dist = 4.0 * float(np.ptp(v, axis=0).max()) if len(v) else 100.0
    for k, (axis, angle) in enumerate([((0, 1, 0), 0.0), ((0, 1, 0), 1.5708), ((0, 1, 0), -1.5708)]):
        rot = _rotation(np.array([*axis, angle]))[:3, :3]
        eye = centre + rot @ np.array([0.0, 0.0, dist])
        parts.append(f"Viewpoint {{ position {eye[0]:.4f} {eye[1]:.4f} {eye[2]:.4f} "
                     f"orientation {axis[0]} {axis[1]} {axis[2]} {angle} description \"view {k}\" }}")
    return "\n".join(parts) + "\n"


def bu3dfe83_bnd(scan: FaceScan, landmarks: Mapping[str, Any] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """(indices (83,), positions (83, 3)) for a ``.bnd`` file, or None without the 83 bu3dfe83 landmarks.

    Indices are the nearest vertices (0-based); positions are the landmark positions unchanged.
    """
    lms = scan.landmarks if landmarks is None else landmarks
    names = scheme_names("bu3dfe83")
    if not lms or detect_scheme(list(lms)) != "bu3dfe83" or any(n not in lms for n in names):
        return None
    pos = np.stack([np.asarray(lms[n], dtype=np.float64) for n in names])
    from scipy.spatial import cKDTree

    _, idx = cKDTree(np.asarray(scan.vertices, dtype=np.float64)).query(pos)
    return np.asarray(idx, dtype=np.int64), pos


def write_bu3dfe(scan: FaceScan, directory: str | Path, name: str) -> dict[str, Path]:
    """Write `scan` as a BU-3DFE scan: ``<name>.wrl``, ``<name>.bmp`` (if textured), ``<name>.bnd``.

    `name` is the stem, e.g. ``'F0001_HA03WH_F3D'``. The ``.bnd`` is written only when the scan
    holds all 83 ``bu3dfe83_NN`` landmarks (index = nearest vertex, xyz = landmark). Returns the
    written paths keyed by 'wrl', 'bmp', 'bnd'.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stem = name[:-4] if name.lower().endswith(".wrl") else name
    out: dict[str, Path] = {}
    tex_name = None
    if scan.texture is not None and scan.corner_uv is not None:
        tex_name = f"{stem}.bmp"
        out["bmp"] = directory / tex_name
        write_image(out["bmp"], np.asarray(scan.texture))
    out["wrl"] = directory / f"{stem}.wrl"
    out["wrl"].write_text(format_wrl(scan, tex_name), encoding="utf-8")
    bnd = bu3dfe83_bnd(scan)
    if bnd is not None:
        out["bnd"] = write_bnd(directory / f"{stem}.bnd", *bnd)
    return out
