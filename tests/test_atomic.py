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


def test_files_get_the_permissions_of_a_plain_open(tmp_path: Path) -> None:
    """safetensors' save_file creates 0o600 files; a written checkpoint must be readable like any other file."""
    import torch
    from safetensors.torch import save_file

    from afnetm_timm._atomic import default_mode

    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    target = tmp_path / "w.safetensors"
    with atomic_path(target) as tmp:
        save_file({"w": torch.zeros(1)}, str(tmp))
    assert target.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 == default_mode()
    old = os.umask(0o077)
    try:
        assert default_mode() == 0o600 and default_mode(directory=True) == 0o700
        write_atomic(tmp_path / "private.txt", "x")
        assert (tmp_path / "private.txt").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_bad_target_paths_are_named(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match=r"afile is a file, not a folder"):
        write_atomic(tmp_path / "afile" / "sub" / "x.json", "{}")
    with pytest.raises(ValueError, match="it is a folder"):
        write_atomic(tmp_path, "{}")
    assert sorted(os.listdir(tmp_path)) == ["afile"]


def test_require_suffix() -> None:
    from afnetm_timm._atomic import require_suffix

    assert require_suffix("a/b.PNG", ".png", "x") == Path("a/b.PNG")
    with pytest.raises(ValueError, match=r"e6.jpg: the panel is written as PNG; give a name ending in .png"):
        require_suffix("e6.jpg", ".png", "the panel")


def test_a_file_system_that_refuses_chmod_still_gets_the_file(tmp_path: Path, monkeypatch) -> None:
    """vfat/exFAT refuse chmod (EPERM): permissions are best effort, the write is not."""
    def refuse(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    target = tmp_path / "x.safetensors"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"data")
        os.chmod(tmp, 0o600)  # as safetensors writes it: a chmod will be attempted
        monkeypatch.setattr(os, "chmod", refuse)
    assert target.read_bytes() == b"data" and os.listdir(tmp_path) == ["x.safetensors"]
