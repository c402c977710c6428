"""Shared helpers of the scan readers and writers (not public)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import ScanFormatError
from ..scan import FaceScan

#: characters that may never appear in a texture name read from a scan file
_FORBIDDEN_IN_NAME = ("/", "\\", "..", "\x00", ":")


def read_bytes(path: Path) -> bytes:
    """Read a whole file, turning OS errors into `ScanFormatError`."""
    try:
        return path.read_bytes()
    except FileNotFoundError as exc:
        raise ScanFormatError(path, "file does not exist") from exc
    except IsADirectoryError as exc:
        raise ScanFormatError(path, "is a directory, not a file") from exc
    except OSError as exc:
        raise ScanFormatError(path, f"cannot read file: {exc}") from exc


def decode_text(data: bytes) -> str:
    """Decode text as UTF-8 (BOM allowed), falling back to Latin-1 which never fails."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def read_text(path: Path) -> str:
    """Read a text file (UTF-8 or Latin-1, any line endings)."""
    return decode_text(read_bytes(path))


def read_image(path: Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; any decoder failure becomes `ScanFormatError`."""
    from PIL import Image

    if not path.is_file():
        raise ScanFormatError(path, "texture image does not exist")
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                top = max(float(arr.max()), 1.0)
                rgb = np.repeat((arr / top * 255.0).round().astype(np.uint8)[..., None], 3, axis=2)
            else:
                rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Exception as exc:  # third-party decoders raise many types (OSError, ValueError, SyntaxError, ...)
        raise ScanFormatError(path, f"cannot decode texture image: {exc}") from exc
    if rgb.ndim != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ScanFormatError(path, f"texture image is empty ({rgb.shape})")
    return np.ascontiguousarray(rgb)


def write_image(path: Path, image: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB image; the format follows the suffix (.bmp, .png, ...)."""
    from PIL import Image

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {img.shape} {img.dtype}")
    Image.fromarray(np.ascontiguousarray(img), mode="RGB").save(path)


def check_texture_name(owner: Path, name: str) -> str:
    """Check that a texture name taken from a scan file is a bare file name.

    The name is data, not a trusted path: anything with '/', '\\', '..', ':' or NUL is refused.
    """
    name = name.strip()
    if not name:
        raise ScanFormatError(owner, "the texture file name inside the scan is empty")
    if any(bad in name for bad in _FORBIDDEN_IN_NAME) or any(ord(ch) < 32 for ch in name):
        raise ScanFormatError(
            owner, f"texture name {name!r} is not a plain file name in the scan's folder (no '/', '\\', '..' allowed)"
        )
    return name


def resolve_texture(owner: Path, name: str) -> Path:
    """Find the texture file `name` in the folder of `owner` (exact name first, then case-insensitive).

    Raises `ScanFormatError` naming `owner` when the name is unsafe or the file is missing.
    """
    name = check_texture_name(owner, name)
    folder = owner.parent
    candidate = folder / name
    if candidate.is_file():
        return candidate
    try:
        matches = [e for e in os.listdir(folder) if e.lower() == name.lower() and (folder / e).is_file()]
    except OSError:
        matches = []
    if len(matches) == 1:
        return folder / matches[0]
    raise ScanFormatError(owner, f"texture file {name!r} named in the scan is missing from {folder}")


def finish_scan(scan: FaceScan) -> FaceScan:
    """Final checks shared by every reader: non-empty, finite, some non-degenerate triangle."""
    where = scan.source
    v = np.asarray(scan.vertices)
    if v.ndim == 2 and v.shape[0] == 0:
        raise ScanFormatError(where, "the scan has no vertices (empty mesh)")
    scan.validate()
    f = np.asarray(scan.faces)
    if f.size == 0:
        raise ScanFormatError(where, "the scan has no triangles (empty or degenerate mesh)")
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    with np.errstate(all="ignore"):  # huge but finite coordinates may overflow; that is not degenerate
        cross = np.cross(b - a, c - a)
    # some triangle with a non-zero (or non-finite) cross product component
    if not np.any(cross != 0):
        raise ScanFormatError(where, f"all {f.shape[0]} triangles have zero area (degenerate mesh)")
    return scan


def drop_repeated_corners(faces: np.ndarray, corner_uv: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None, int]:
    """Drop triangles that use one vertex twice; returns (faces, corner_uv, number dropped)."""
    ok = (faces[:, 0] != faces[:, 1]) & (faces[:, 1] != faces[:, 2]) & (faces[:, 0] != faces[:, 2])
    dropped = int((~ok).sum())
    if dropped == 0:
        return faces, corner_uv, 0
    return faces[ok], None if corner_uv is None else corner_uv[ok], dropped


def fmt_rows(values: np.ndarray, fmt: str, sep: str = "\n") -> str:
    """Format a 2-D array row by row with a %-format per row (fast enough for 100k rows)."""
    arr = np.asarray(values)
    if arr.size == 0:
        return ""
    return sep.join(fmt % tuple(row) for row in arr.tolist())
