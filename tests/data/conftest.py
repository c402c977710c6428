"""Shared pytest fixtures of the data tests (scans built in `tests/data/fixtures.py`)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # so that `tests.data.fixtures` and `afnetm_timm` import without installing
    sys.path.insert(0, str(_ROOT))

from afnetm_timm.data import FaceScan  # noqa: E402
from tests.data.fixtures import make_sfm_scan, make_tiny_scan, require_sfm  # noqa: E402


@pytest.fixture(scope="session")
def sfm() -> dict:
    """The Surrey Face Model arrays; skips when ../shared/data/sfm/sfm_3448.npz is absent."""
    return require_sfm()


@pytest.fixture(scope="session")
def sfm_scan(sfm: dict) -> FaceScan:
    """A textured SFM face (happiness, weight 1, seed 0) with the 50 iBUG-68 landmarks (do not modify)."""
    return make_sfm_scan("happiness", 1.0, seed=0)


@pytest.fixture
def tiny_scan() -> FaceScan:
    """A 6 x 6 textured grid with three custom landmarks (fresh per test)."""
    return make_tiny_scan()
