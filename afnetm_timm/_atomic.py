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

__all__ = ["atomic_path", "write_atomic"]


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder; rename it over ``path`` when the block succeeds.

    The temporary name is unique per process and call (safe for parallel workers) and ends in
    ``path``'s own suffix, so writers that pick a format from the extension (matplotlib) still do.
    On an exception the temporary file is removed and ``path`` is left as it was. Missing parent
    folders are created. The file gets the permissions its writer creates it with.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (``str`` as UTF-8) to ``path`` through `atomic_path`; returns ``path``."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
    return Path(path)
