"""Datasets over the preprocessing cache and the synthetic dataset builder."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from afnetm_timm.data.synthetic_dataset import build_synthetic_dataset, synthetic_scan
from afnetm_timm.packing import EXPRESSION_NAMES
from afnetm_timm.train.datasets import load_expression_data, read_index

N_SUBJECTS = 9  # tests/train/conftest.py builds the cache with 9 subjects


def test_cache_index_and_default_levels(synthetic_cache: Path, synthetic_data) -> None:
    records = read_index(synthetic_cache)
    assert len(records) == N_SUBJECTS * 6 * 3
    assert {r["intensity"] for r in records} == {2, 3, 4}
    # default selection: the two highest levels, like the 720-sample BU-3DFE setting
    assert len(synthetic_data) == N_SUBJECTS * 6 * 2
    assert synthetic_data.meta["intensities"] == [3, 4]
    assert synthetic_data.class_counts() == {name: N_SUBJECTS * 2 for name in EXPRESSION_NAMES}
    assert synthetic_data.texture.shape == (len(synthetic_data), 64, 64, 3)
    assert synthetic_data.depth.dtype == np.uint8 and synthetic_data.mask.dtype == np.uint8
    # every sample's label matches the expression code of its id (synth003_HA04 -> happiness)
    codes = {"AN": 0, "DI": 1, "FE": 2, "HA": 3, "SA": 4, "SU": 5}
    assert [codes[i.split("_")[1][:2]] for i in synthetic_data.ids] == synthetic_data.labels.tolist()


def test_intensity_and_subject_selection(synthetic_cache: Path) -> None:
    all_levels = load_expression_data(synthetic_cache, intensities=(2, 3, 4))
    assert len(all_levels) == N_SUBJECTS * 18
    some = load_expression_data(synthetic_cache, subjects=["synth000", "synth004"])
    assert set(some.subjects.tolist()) == {"synth000", "synth004"} and len(some) == 24
    with pytest.raises(ValueError, match="synth999"):
        load_expression_data(synthetic_cache, subjects=["synth999"])
    with pytest.raises(ValueError, match="no 'bu3dfe' samples"):
        load_expression_data(synthetic_cache, dataset="bu3dfe")


def test_packed_uint8_layout(synthetic_data) -> None:
    part = synthetic_data.subset([0, 5])
    packed = part.packed_uint8()
    assert packed.shape == (2, 5, 64, 64) and packed.dtype.is_floating_point is False
    np.testing.assert_array_equal(packed[1, :3].permute(1, 2, 0).numpy(), part.texture[1])
    np.testing.assert_array_equal(packed[1, 3].numpy(), part.depth[1])
    np.testing.assert_array_equal(packed[1, 4].numpy(), part.mask[1])


def test_bad_caches(tmp_path: Path, synthetic_cache: Path) -> None:
    with pytest.raises(ValueError, match="no index.jsonl"):
        load_expression_data(tmp_path)
    (tmp_path / "index.jsonl").write_text('{"id": "a"}\n')
    with pytest.raises(ValueError, match="lacks 'file'"):
        load_expression_data(tmp_path)
    # a truncated sample file is named, not a numpy traceback
    broken = tmp_path / "broken"
    shutil.copytree(synthetic_cache, broken)
    record = json.loads((broken / "index.jsonl").read_text().splitlines()[-1])
    (broken / record["file"]).write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(ValueError, match=record["id"]):
        load_expression_data(broken, intensities=(2, 3, 4))
    # a sample whose arrays disagree in shape is named too (not numpy's "all input arrays must have the same shape")
    path = broken / record["file"]
    first = json.loads((broken / "index.jsonl").read_text().splitlines()[0])
    with np.load(broken / first["file"]) as sample:
        arrays = dict(sample)
    arrays["depth"] = arrays["depth"][:16]
    with path.open("wb") as handle:
        np.savez(handle, **arrays)
    with pytest.raises(ValueError, match=rf"{record['id']}.*corrupt cached sample"):
        load_expression_data(broken, intensities=(2, 3, 4))


def test_synthetic_scan_is_deterministic_and_posed() -> None:
    a = synthetic_scan(3, "surprise", 4, n_points=800, texture_size=64)
    b = synthetic_scan(3, "surprise", 4, n_points=800, texture_size=64)
    c = synthetic_scan(3, "surprise", 3, n_points=800, texture_size=64)
    np.testing.assert_array_equal(a.vertices, b.vertices)
    assert a.metadata["subject"] == "synth003" and a.metadata["intensity"] == 4
    assert a.metadata["strength"] > c.metadata["strength"]
    # the random head pose moves the landmarks with the vertices (rigidly)
    neutral_gap = np.linalg.norm(a.landmarks["ibug68_37"] - a.landmarks["ibug68_46"])
    assert 50 < neutral_gap < 120


def test_builder_resumes_and_rejects_bad_arguments(tmp_path: Path) -> None:
    first = build_synthetic_dataset(tmp_path, subjects=1, levels=(4,), size=64, n_points=800, texture_size=64,
                                    jobs=1, progress=False)
    assert len(first.processed) == 6 and first.ok
    again = build_synthetic_dataset(tmp_path, subjects=1, levels=(4,), size=64, n_points=800, texture_size=64,
                                    jobs=1, progress=False)
    assert len(again.skipped) == 6 and not again.processed
    with pytest.raises(ValueError, match="levels"):
        build_synthetic_dataset(tmp_path, subjects=1, levels=(5,))
    with pytest.raises(ValueError, match="no such file"):
        build_synthetic_dataset(tmp_path, subjects=1, morphable_model=tmp_path / "missing.npz")


def test_bosphorus_cache_keeps_the_six_emotion_scans(synthetic_cache: Path, tmp_path: Path) -> None:
    """A cache written by `afnetm preprocess bosphorus`: index records as batch.py writes them."""
    from afnetm_timm.data.formats.names import parse_scan_name

    (tmp_path / "samples").mkdir()
    source = sorted((synthetic_cache / "samples").glob("*.npz"))
    names = ["bs000_E_ANGER_0", "bs000_E_HAPPY_0", "bs000_LFAU_9_0", "bs001_E_SURPRISE_0", "bs001_N_N_0",
             "bs001_E_SADNESS_0"]
    lines = []
    for name, npz in zip(names, source, strict=False):
        shutil.copy(npz, tmp_path / "samples" / f"{name}.npz")
        parsed = parse_scan_name(f"{name}.bnt")
        lines.append(json.dumps({"id": name, "file": f"samples/{name}.npz", "dataset": parsed["dataset"],
                                 "subject": parsed["subject"], "expression": parsed.get("expression"),
                                 "intensity": None, "source": f"{name}.bnt"}))
    (tmp_path / "index.jsonl").write_text("\n".join(lines) + "\n")
    data = load_expression_data(tmp_path)
    assert data.dataset == "bosphorus"
    assert data.ids == ["bs000_E_ANGER_0", "bs000_E_HAPPY_0", "bs001_E_SADNESS_0", "bs001_E_SURPRISE_0"]
    assert [data.label_names[i] for i in data.labels] == ["anger", "happiness", "sadness", "surprise"]
    assert data.subject_ids == ["bs000", "bs001"]


SFM_PATH = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "sfm" / "sfm_3448.npz"


@pytest.mark.skipif(not SFM_PATH.is_file(), reason="needs ../shared/data/sfm/sfm_3448.npz")
def test_synthetic_faces_from_a_morphable_model(tmp_path: Path) -> None:
    report = build_synthetic_dataset(tmp_path, subjects=2, levels=(4,), size=64, texture_size=128,
                                     morphable_model=SFM_PATH, jobs=1, progress=False)
    assert report.ok and len(report.processed) == 12, report.summary()
    data = load_expression_data(tmp_path, intensities=(4,))
    assert data.class_counts() == {name: 2 for name in EXPRESSION_NAMES}
    assert read_index(tmp_path)[0]["source"] == "synthetic:morphable-model sfm_3448.npz"
    # anger and disgust of one identity give different depth images
    a, b = data.subset([0]).depth[0].astype(int), data.subset([1]).depth[0].astype(int)
    assert np.abs(a - b).mean() > 0.5
    assert data.mask.max() == 255 and data.texture.std() > 10
