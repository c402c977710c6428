"""Safetensors-only weight files: validation, pickle detection, and clear key/shape mismatch reports."""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from .errors import UnsafeWeightsError, WeightsMismatchError

__all__ = [
    "CONFIG_NAME",
    "PICKLE_SUFFIXES",
    "README_NAME",
    "SAFE_WEIGHTS_NAME",
    "check_state_dict",
    "find_pickle_files",
    "read_safetensors",
    "sha256_file",
]

#: The only weight file AFNet-M loads from the Hub or a folder, and the one `afnetm hub export` writes.
SAFE_WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
README_NAME = "README.md"
#: Suffixes of pickle-based weight files (``torch.save``, Lightning, plain pickle): never loaded, never published.
PICKLE_SUFFIXES: tuple[str, ...] = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".pth.tar", ".tar")

_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's zip archive
_PICKLE_PROTOCOLS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")  # raw pickle, protocol 2-5


def _looks_like_safetensors(head: bytes, size: int) -> bool:
    """A safetensors file: 8-byte little-endian header length N, then a JSON header of N bytes starting with '{'."""
    return len(head) >= 9 and head[8:9] == b"{" and 8 + int.from_bytes(head[:8], "little") <= size


def _looks_like_pickle(head: bytes) -> bool:
    return head.startswith(_ZIP_MAGIC) or head[:2] in _PICKLE_PROTOCOLS


def find_pickle_files(folder: str | os.PathLike) -> list[Path]:
    """Pickle-like weight files anywhere under ``folder`` (by suffix), sorted."""
    root = Path(folder)
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name.lower().endswith(PICKLE_SUFFIXES))


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Validate a safetensors file without loading its tensors; return ``(shapes by key, metadata)``.

    Raises:
        FileNotFoundError: no such file.
        UnsafeWeightsError: the file is a pickle / ``torch.save`` archive (whatever its name).
        WeightsMismatchError: not a safetensors file, or a truncated/corrupt one.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no weight file at {path}")
    with path.open("rb") as f:
        head = f.read(9)
    # the header length's first byte may be anything (0x80 included): the safetensors layout is checked first
    if not _looks_like_safetensors(head, path.stat().st_size) and _looks_like_pickle(head):
        raise UnsafeWeightsError(
            f"{path} is a pickle / torch.save file, not safetensors: AFNet-M loads weights only from safetensors "
            "(pickle files can run code when loaded)"
        )
    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}  # noqa: SIM118 (safe_open API)
            metadata = dict(f.metadata() or {})
    except SafetensorError as err:
        raise WeightsMismatchError(f"{path} is not a valid safetensors file (corrupt or truncated?): {err}") from err
    return shapes, metadata


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _shapes(state: Mapping[str, torch.Tensor | tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) if isinstance(v, torch.Tensor) else tuple(v) for k, v in state.items()}


def _listing(keys: Iterable[str], limit: int = 5) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def check_state_dict(
    expected: Mapping[str, torch.Tensor | tuple[int, ...]],
    found: Mapping[str, torch.Tensor | tuple[int, ...]],
    source: str,
    target: str,
    ignore_prefixes: Iterable[str] = (),
) -> None:
    """Check that ``found`` (weights from ``source``) has exactly the keys and shapes of ``expected`` (``target``).

    Tensors or shapes are accepted on both sides. Keys starting with one of ``ignore_prefixes`` (e.g. a
    classifier that is replaced) are skipped.

    Raises:
        WeightsMismatchError: listing missing keys, unexpected keys and shape mismatches.
    """
    prefixes = tuple(ignore_prefixes)
    want = {k: v for k, v in _shapes(expected).items() if not k.startswith(prefixes)} if prefixes else _shapes(expected)
    have = {k: v for k, v in _shapes(found).items() if not k.startswith(prefixes)} if prefixes else _shapes(found)
    missing = want.keys() - have.keys()
    unexpected = have.keys() - want.keys()
    wrong = sorted(k for k in want.keys() & have.keys() if want[k] != have[k])
    if not (missing or unexpected or wrong):
        return
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
    if wrong:
        shown = "; ".join(f"{k}: weights {list(have[k])} vs model {list(want[k])}" for k in wrong[:5])
        more = f"; ... ({len(wrong) - 5} more)" if len(wrong) > 5 else ""
        problems.append(f"{len(wrong)} shape mismatch(es): {shown}{more}")
    raise WeightsMismatchError(
        f"weights from {source} do not fit {target}: " + "; ".join(problems)
        + ". Were they saved for another variant or other model arguments (num_classes, backbone, ...)?"
    )
