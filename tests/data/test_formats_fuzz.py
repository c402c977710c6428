"""Hypothesis fuzzing of the parsers: whatever the bytes, only `ScanFormatError` may escape.

Inputs are small mutations of valid files plus random token soups; examples are kept modest so
the module runs in a few seconds. Set AFNETM_FUZZ_EXAMPLES (default 120) for a longer hunt.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from afnetm_timm.data import FaceScan, ScanFormatError
from afnetm_timm.data.formats import (
    BntGrid,
    encode_bnt,
    format_wrl,
    parse_bnd,
    parse_bnt,
    parse_lm2,
    parse_lm3,
    read_bosphorus,
    read_wrl,
    write_bnd,
    write_lm2,
    write_lm3,
)
from tests.data.fixtures import make_tiny_scan

_EXAMPLES = int(os.environ.get("AFNETM_FUZZ_EXAMPLES", "120"))
FUZZ = settings(max_examples=_EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with the textures the seeds name (t.png, a.bmp)."""
    path = tmp_path_factory.mktemp("fuzz")
    img = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    Image.fromarray(img).save(path / "t.png")
    Image.fromarray(img).save(path / "a.bmp")
    return path


def _only_format_errors(call, *args) -> None:
    try:
        result = call(*args)
    except ScanFormatError:
        return
    if isinstance(result, FaceScan):
        result.validate()


def _mutate(text: str, edits: list[tuple[int, int, str]]) -> str:
    """Apply edits (position, kind, token): 0 insert token, 1 delete up to 4 chars, 2 replace one char."""
    for pos, kind, token in edits:
        pos = pos % (len(text) + 1)
        if kind == 0:
            text = text[:pos] + token + text[pos:]
        elif kind == 1:
            text = text[:pos] + text[pos + 1 + len(token) % 4:]
        else:
            text = text[:pos] + token[:1] + text[pos + 1:]
    return text


def _edits(tokens: list[str]) -> st.SearchStrategy:
    return st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 2), st.sampled_from(tokens)), max_size=6)


# ----------------------------------------------------------------------------------------------- .wrl
_TINY = make_tiny_scan(3, landmark_scheme="none")
WRL_SEEDS = [
    format_wrl(_TINY, "a.bmp"),
    """#VRML V2.0 utf8
DEF T Transform { translation 1 0 0 rotation 0 1 0 0.5 scale 1 2 1 children [
  Shape { appearance Appearance { texture ImageTexture { url [ "t.png" ] } }
    geometry IndexedFaceSet { coord DEF C Coordinate { point [ 0 0 0, 1 0 0, 1 1 0, 0 1 0 ] }
      coordIndex [ 0 1 2 3 -1 0 2 1 ] texCoord TextureCoordinate { point [ 0 0 1 0 1 1 0 1 ] }
      texCoordIndex [ 0 1 2 3 -1 0 2 1 ] } }
  Transform { children Shape { geometry IndexedFaceSet { coord USE C coordIndex [ 3 2 1 ] ccw FALSE } } } ] }
Viewpoint { position 0 0 10 } # comment
""",
]
WRL_TOKENS = ["[", "]", "{", "}", ",", "-1", "-2", "0", "7", "1e308", "-1e308", "nan", "inf", "1.5", "#", '"',
              '"t.png"', '"../t.png"', "DEF", "USE", "C", "T", "NULL", "TRUE", "FALSE", "Transform", "Shape", "Group",
              "children", "point", "coordIndex", "texCoordIndex", "IndexedFaceSet", "Coordinate", "\r\n", "\n", " ",
              "translation", "rotation", "scale", "Switch", "whichChoice", "ROUTE", "PROTO", "0x1F", "+.5e-3", "+-nan", "-inf",
              "Infinity"]


@FUZZ
@given(seed=st.sampled_from(WRL_SEEDS), edits=_edits(WRL_TOKENS))
def test_fuzz_wrl_mutations(folder: Path, seed: str, edits: list) -> None:
    path = folder / "m.wrl"
    path.write_text(_mutate(seed, edits), encoding="utf-8")
    _only_format_errors(read_wrl, path)


@FUZZ
@given(tokens=st.lists(st.sampled_from(WRL_TOKENS), max_size=60), noise=st.text(max_size=30))
def test_fuzz_wrl_token_soup(folder: Path, tokens: list[str], noise: str) -> None:
    path = folder / "soup.wrl"
    path.write_text("#VRML V2.0 utf8\n" + " ".join(tokens) + noise, encoding="utf-8", errors="surrogatepass")
    _only_format_errors(read_wrl, path)


@settings(FUZZ, max_examples=max(_EXAMPLES // 2, 1))
@given(data=st.binary(max_size=300))
def test_fuzz_wrl_bytes(folder: Path, data: bytes) -> None:
    path = folder / "bytes.wrl"
    path.write_bytes(b"#VRML V2.0 utf8\n" + data)
    _only_format_errors(read_wrl, path)


# ----------------------------------------------------------------------------------------------- .bnt
def _bnt_seed(nrows: int = 3, ncols: int = 4) -> bytes:
    c, r = np.meshgrid(np.arange(ncols, dtype=float), np.arange(nrows, dtype=float))
    z = np.where((r + c) % 5 == 0, -1e9, r + c)
    g = BntGrid(x=c, y=r, z=z, u=c / ncols, v=r / nrows, zmin=-1e9, texture_name="t.png")
    return encode_bnt(g)


_BNT = _bnt_seed()


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, len(_BNT) - 1), st.integers(0, 255)), max_size=8),
       cut=st.integers(0, len(_BNT) + 16), tail=st.binary(max_size=16))
def test_fuzz_bnt_mutations(folder: Path, flips: list, cut: int, tail: bytes) -> None:
    data = bytearray(_BNT)
    for pos, val in flips:
        data[pos] = val
    data = bytes(data[:cut]) + tail if cut < len(data) else bytes(data) + tail[: cut - len(data)]
    path = folder / "m.bnt"
    path.write_bytes(data)
    _only_format_errors(read_bosphorus, path)


_SPECIAL = st.sampled_from([0.0, 1.0, -1e9, np.nan, np.inf, -np.inf, 1e308, 0.5, -3.0])


@FUZZ
@given(nrows=st.integers(0, 4), ncols=st.integers(0, 4), zmin=_SPECIAL,
       name=st.one_of(st.sampled_from([b"t.png", b"", b"../t.png", b"x/y.png", b"missing.png", b"\xff"]),
                      st.binary(max_size=6)),
       n5_delta=st.sampled_from([0, 0, 0, 1, -1, 5]), values=st.lists(_SPECIAL, max_size=80))
def test_fuzz_bnt_headers(folder: Path, nrows: int, ncols: int, zmin: float, name: bytes, n5_delta: int,
                          values: list[float]) -> None:
    n5 = max(5 * nrows * ncols + n5_delta, 0)
    body = np.resize(np.asarray(values or [0.0], dtype="<f8"), n5 if values else 0).tobytes()
    data = struct.pack("<HHdH", nrows, ncols, zmin, len(name)) + name + struct.pack("<I", n5) + body
    _only_format_errors(parse_bnt, data)
    path = folder / "h.bnt"
    path.write_bytes(data)
    _only_format_errors(read_bosphorus, path)


# ----------------------------------------------------------------------------------------------- landmarks
@pytest.fixture(scope="module")
def seeds(folder: Path) -> tuple[str, str, str]:
    """Valid .lm3, .lm2 and .bnd texts to mutate."""
    labels = ["Outer left eyebrow", "Nose tip", "Chin middle"]
    lm3 = write_lm3(folder / "s.lm3", {k: np.array([1.0, -2.5, 3e1]) * (i + 1) for i, k in enumerate(labels)},
                    comment="free text")
    lm2 = write_lm2(folder / "s.lm2", {k: np.array([10.0, 20.0]) * (i + 1) for i, k in enumerate(labels)})
    bnd = write_bnd(folder / "s.bnd", np.arange(83) % 9, np.arange(249, dtype=float).reshape(83, 3))
    return lm3.read_text(), lm2.read_text(), bnd.read_text()


LM_TOKENS = ["\n", "\n\n", " ", "*", "#", "3", "0", "-1", "99", "nan", "inf", "1e999", "x", "landmarks:",
             "landmarks", "Labels:", "2D Image coordinates:", "Nose tip", "nose TIP", "Third eye", "\t", "1.5",
             "# 3D Landmark File", "# 2D Landmark File", "\r\n"]


@FUZZ
@given(which=st.sampled_from(["lm3", "lm2"]), edits=_edits(LM_TOKENS))
def test_fuzz_lm_mutations(seeds: tuple[str, str, str], which: str, edits: list) -> None:
    lm3, lm2, _ = seeds
    if which == "lm3":
        _only_format_errors(parse_lm3, _mutate(lm3, edits))
    else:
        _only_format_errors(parse_lm2, _mutate(lm2, edits))


@FUZZ
@given(text=st.text(max_size=200), header=st.sampled_from(["", "# 3D Landmark File\n", "# 2D Landmark File\n"]))
def test_fuzz_lm_random(text: str, header: str) -> None:
    _only_format_errors(parse_lm3, header + text)
    _only_format_errors(parse_lm2, header + text)


@FUZZ
@given(edits=_edits(LM_TOKENS + ["83", "82", "1 2 3 4", "-0", "1e20", "99999999999999999999999"]),
       n_vertices=st.one_of(st.none(), st.integers(0, 20)))
def test_fuzz_bnd(seeds: tuple[str, str, str], edits: list, n_vertices: int | None) -> None:
    _, _, bnd = seeds
    _only_format_errors(lambda t: parse_bnd(t, n_vertices=n_vertices), _mutate(bnd, edits))


@FUZZ
@given(rows=st.lists(st.lists(st.sampled_from(["0", "5", "-1", "1.5", "nan", "x", "1e400", "7"]), max_size=5),
                     max_size=90))
def test_fuzz_bnd_rows(rows: list[list[str]]) -> None:
    text = "\n".join(" ".join(r) for r in rows)
    _only_format_errors(lambda t: parse_bnd(t, n_vertices=10), text)
    _only_format_errors(lambda t: parse_bnd(t, expected=None), text)
