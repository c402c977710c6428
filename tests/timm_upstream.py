"""Locate timm's own ``tests/test_models.py`` (matching the installed timm) so our tests can run its checks.

timm's wheel does not ship its tests; its source distribution on PyPI does. The file is looked up in
``$AFNETM_TIMM_TESTS`` (a folder holding ``test_models.py``), then in a cache folder
(``$AFNETM_CACHE`` or ``<repo>/.cache``), and otherwise fetched once with ``pip download`` of the
sdist of the installed version. ``python tests/timm_upstream.py`` fetches it ahead of time.
"""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

import timm

REPO_ROOT = Path(__file__).resolve().parents[1]


def _cache_dir() -> Path:
    return Path(os.environ.get("AFNETM_CACHE", REPO_ROOT / ".cache")) / f"timm-{timm.__version__}-tests"


def find_test_models(download: bool = True) -> Path | None:
    """Path of timm's test_models.py for the installed timm version, or None if unavailable."""
    env = os.environ.get("AFNETM_TIMM_TESTS")
    if env and (Path(env) / "test_models.py").is_file():
        return Path(env) / "test_models.py"
    target = _cache_dir() / "test_models.py"
    if target.is_file():
        return target
    if not download:
        return None
    work = _cache_dir().with_name(_cache_dir().name + ".download")
    work.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "-d", str(work), f"timm=={timm.__version__}"]
    result = subprocess.run(cmd, capture_output=True, text=True)
    sdists = sorted(work.glob("timm-*.tar.gz"))
    if result.returncode != 0 or not sdists:
        return None
    with tarfile.open(sdists[0]) as tar:
        member = next((m for m in tar.getmembers() if m.name.endswith("/tests/test_models.py")), None)
        if member is None:
            return None
        data = tar.extractfile(member).read()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(target)  # atomic: never a partial file
    return target


def load_test_models() -> ModuleType | None:
    """Import timm's test_models.py as a module (None if it cannot be found)."""
    path = find_test_models()
    if path is None:
        return None
    spec = importlib.util.spec_from_file_location("timm_upstream_test_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    found = find_test_models()
    if found is None:
        sys.exit(f"could not fetch timm {timm.__version__}'s tests/test_models.py from PyPI")
    print(found)
