"""Output files are written whole or not at all: into a temporary file beside the target, then renamed.

Every file this package writes (checkpoints, training state, cached samples, results, reports, plots)
goes through `atomic_path`, so an interrupted or failing write never leaves a partial file under the
target name and never replaces a good file with a broken one.
"""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "default_mode", "require_suffix", "set_default_mode", "write_atomic"]


def _umask() -> int:
    try:  # Linux: read it without changing it (os.umask would, process-wide, for a moment)
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """Permissions a plain ``open()`` / ``mkdir()`` would give under the process umask (0o644 / 0o755 with 022)."""
    return (0o777 if directory else 0o666) & ~_umask()


def set_default_mode(path: Path, directory: bool = False) -> None:
    """Give ``path`` `default_mode` permissions, best effort: file systems without Unix permissions (vfat,
    exFAT) refuse chmod, and a file there is written all the same."""
    mode = default_mode(directory)
    try:
        if path.stat().st_mode & 0o777 != mode:
            os.chmod(path, mode)
    except OSError:
        pass


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; rename it over ``path`` when the block succeeds.

    The temporary name is unique per process and call (safe for parallel workers) and ends in
    ``path``'s own suffix, so writers that pick a format from the extension (matplotlib) still do.
    On an exception the temporary file is removed and ``path`` is left as it was. Missing parent
    folders are created. The file gets the permissions of a plain ``open()`` (writers such as
    safetensors' ``save_file`` create 0o600 files; published weights must be readable by others).
    A folder at ``path``, or a file where a parent folder should be, is a ValueError naming it.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"cannot write {path}: it is a folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"cannot write {path}: {parent} is a file, not a folder")
            break
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        set_default_mode(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (``str`` as UTF-8) to ``path`` through `atomic_path`; returns ``path``."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return Path(path)


def require_suffix(path: str | os.PathLike, suffix: str, what: str) -> Path:
    """``path`` as a Path if it ends in ``suffix`` (any case), else a ValueError naming it: a PNG must not be
    written under a ``.jpg`` name."""
    path = Path(path)
    if path.suffix.lower() != suffix:
        raise ValueError(f"{path}: {what} is written as {suffix[1:].upper()}; give a name ending in {suffix}")
    return path
