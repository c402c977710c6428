"""A small synthetic expression cache shared by the training tests (64×64, levels 3 and 4)."""
from __future__ import annotations

from pathlib import Path

import pytest

from afnetm_timm.data.synthetic_dataset import build_synthetic_dataset
from afnetm_timm.train.datasets import ExpressionData, load_expression_data

N_SUBJECTS = 9


@pytest.fixture(scope="session")
def synthetic_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synthetic-cache")
    report = build_synthetic_dataset(out, subjects=N_SUBJECTS, levels=(2, 3, 4), size=64, n_points=2500,
                                     texture_size=128, jobs=2, progress=False)
    assert report.ok, report.summary()
    return out


@pytest.fixture(scope="session")
def synthetic_data(synthetic_cache: Path) -> ExpressionData:
    return load_expression_data(synthetic_cache)
