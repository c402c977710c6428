"""Output files appear whole or not at all (afnetm_timm._atomic)."""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import matplotlib
import pytest

from afnetm_timm._atomic import atomic_path, write_atomic

matplotlib.use("Agg")


def test_write_atomic_replaces_and_creates_folders(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "x.json"
    assert write_atomic(target, "first ü") == target and target.read_text(encoding="utf-8") == "first ü"
    write_atomic(target, b"\x00\x01")
    assert target.read_bytes() == b"\x00\x01"
    assert os.listdir(target.parent) == ["x.json"]  # no temporary files left


def test_a_failing_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "x.json"
    target.write_text("old")
    with pytest.raises(OSError, match="disk full"), atomic_path(target) as tmp:
        tmp.write_text("partial")
        raise OSError("disk full")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["x.json"]
    missing = tmp_path / "new.json"
    with pytest.raises(KeyboardInterrupt), atomic_path(missing) as tmp:
        tmp.write_text("partial")
        raise KeyboardInterrupt
    assert not missing.exists() and os.listdir(tmp_path) == ["x.json"]


def test_temporary_name_keeps_the_suffix_and_is_unique(tmp_path: Path) -> None:
    """matplotlib picks the format from the extension; parallel writers must not share a file."""
    import matplotlib.pyplot as plt

    target = tmp_path / "plot.png"
    fig = plt.figure(figsize=(1, 1))
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".png" and tmp.name.startswith(".plot.png.")
        fig.savefig(tmp)  # no format argument
    plt.close(fig)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with atomic_path(target) as a, atomic_path(target) as b:
        assert a != b
        a.write_text("a")
        b.write_text("b")
    assert target.read_text() == "a"  # the outer block finishes last


def test_parallel_writers_never_expose_a_partial_file(tmp_path: Path) -> None:
    target = tmp_path / "x.bin"
    payloads = [bytes([i]) * 200_000 for i in range(8)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda data: write_atomic(target, data), payloads))
    assert target.read_bytes() in payloads and os.listdir(tmp_path) == ["x.bin"]
