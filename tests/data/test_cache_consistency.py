"""One cache, one set of options: mixed-option reruns are refused, empty sources and bad global options are
errors up front (no cache folder, no per-scan FAILED lines), morphable model files are checked once."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from afnetm_timm.cli import main
from afnetm_timm.data.batch import CACHE_FILE, load_cached_sample, prepare_cache, preprocess_folder
from afnetm_timm.data.formats import write_bu3dfe
from afnetm_timm.data.pipeline import check_preprocess_options
from afnetm_timm.data.synthetic import check_morphable_model, face_scan_from_morphable_model
from afnetm_timm.data.synthetic_dataset import build_synthetic_dataset, synthetic_scan
from afnetm_timm.train.datasets import load_expression_data

TINY = {"subjects": 1, "levels": (4,), "n_points": 800, "texture_size": 64, "jobs": 1, "progress": False}


@pytest.fixture(scope="module")
def bu_tree(tmp_path_factory) -> Path:
    """Two small BU-3DFE-layout scans (synthetic faces, no data files needed)."""
    src = tmp_path_factory.mktemp("bu3dfe")
    for subject, (expression, code) in enumerate((("happiness", "HA"), ("surprise", "SU"))):
        scan = synthetic_scan(subject, expression, 4, n_points=1500, texture_size=64)
        write_bu3dfe(scan, src / f"F000{subject}", f"F000{subject}_{code}04WH_F3D")
    return src


def _preprocess(src: Path, out: Path, *extra: str) -> int:
    return main(["preprocess", "bu3dfe", str(src), str(out), "--jobs", "1", "--no-progress", *extra])


# --------------------------------------------------------------------------------------- mixed caches
def test_preprocess_rerun_with_other_options_is_refused(bu_tree: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cache"
    assert _preprocess(bu_tree, out, "--size", "32") == 0
    record = json.loads((out / CACHE_FILE).read_text())
    assert record["options"]["dataset"] == "bu3dfe" and record["options"]["size"] == 32
    assert record["options"]["crop_radius"] == 90.0 and record["options"]["window"] == 75.0
    index = (out / "index.jsonl").read_text()
    capsys.readouterr()

    assert _preprocess(bu_tree, out, "--size", "64") == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # refused before any work
    assert str(out) in captured.err and "size=32" in captured.err and "size=64" in captured.err
    assert "use another output folder or the same options" in captured.err
    assert _preprocess(bu_tree, out, "--size", "32", "--crop-radius", "80") == 1
    assert "crop_radius=90.0" in capsys.readouterr().err
    assert (out / "index.jsonl").read_text() == index
    assert {load_cached_sample(out, p.stem)["texture"].shape for p in (out / "samples").glob("*.npz")} == {(32, 32, 3)}

    # the same options resume as before
    assert _preprocess(bu_tree, out, "--size", "32") == 0
    assert "2 already cached" in capsys.readouterr().out
    assert json.loads((out / CACHE_FILE).read_text()) == record


def test_synthesize_rerun_with_other_options_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "synthetic"
    assert build_synthetic_dataset(out, size=30, **TINY).ok
    with pytest.raises(ValueError, match=r"synthetic was built with size=30; this run asks for size=32"):
        build_synthetic_dataset(out, size=32, **TINY)
    with pytest.raises(ValueError, match=r"seed=0; this run asks for seed=3"):
        build_synthetic_dataset(out, size=30, seed=3, **TINY)
    with pytest.raises(ValueError, match=r"texture_size=64; this run asks for texture_size=32"):
        build_synthetic_dataset(out, size=30, **{**TINY, "texture_size": 32})
    # more subjects with the same options extend the cache; the index and the training loader are unchanged
    report = build_synthetic_dataset(out, size=30, **{**TINY, "subjects": 2})
    assert len(report.skipped) == 6 and len(report.processed) == 6
    assert len(load_expression_data(out, intensities=(4,))) == 12
    assert json.loads((out / CACHE_FILE).read_text())["options"]["dataset"] == "synthetic"


def test_cache_without_record_is_checked_against_its_samples(bu_tree: Path, tmp_path: Path, capsys) -> None:
    """A cache written before cache.json existed: resumed if its samples' metadata agree, refused if not."""
    out = tmp_path / "old"
    assert _preprocess(bu_tree, out, "--size", "32") == 0
    (out / CACHE_FILE).unlink()
    assert _preprocess(bu_tree, out, "--size", "64") == 1
    err = capsys.readouterr().err
    assert "size=32" in err and "size=64" in err and "predates cache.json" in err
    assert not (out / CACHE_FILE).exists()
    assert _preprocess(bu_tree, out, "--size", "32") == 0
    assert "2 already cached" in capsys.readouterr().out
    assert json.loads((out / CACHE_FILE).read_text())["options"]["size"] == 32

    synthetic = tmp_path / "old-synthetic"
    build_synthetic_dataset(synthetic, size=30, **TINY)
    (synthetic / CACHE_FILE).unlink()
    with pytest.raises(ValueError, match="size=30.*predates.*size=32"):
        build_synthetic_dataset(synthetic, size=32, **TINY)
    with pytest.raises(ValueError, match="dataset='synthetic'.*dataset='bu3dfe'"):
        preprocess_folder("bu3dfe", bu_tree, synthetic, size=30, jobs=1, progress=False)


def test_record_without_samples_is_rewritten_and_bad_records_are_named(tmp_path: Path) -> None:
    out = tmp_path / "cache"
    prepare_cache(out, {"dataset": "bu3dfe", "size": 32})  # e.g. every scan of the first run failed
    prepare_cache(out, {"dataset": "bu3dfe", "size": 64})
    assert json.loads((out / CACHE_FILE).read_text())["options"]["size"] == 64
    (out / CACHE_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=r"cache\.json: unreadable cache record"):
        prepare_cache(out, {"dataset": "bu3dfe", "size": 64})
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        prepare_cache(tmp_path / "file", {"size": 64})


# ------------------------------------------------------------------------------------- no scans found
def test_no_scans_is_an_error_naming_folder_kind_and_layout(bu_tree: Path, tmp_path: Path, capsys) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "cache"
    assert _preprocess(empty, out) == 1
    err = capsys.readouterr().err
    assert f"no bu3dfe scans found in {empty}" in err and "_F3D.wrl" in err
    assert not out.exists()

    assert main(["preprocess", "bosphorus", str(bu_tree), str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"no bosphorus scans found in {bu_tree}" in err and ".bnt" in err
    assert "afnetm preprocess bu3dfe" in err  # the files there fit another kind
    assert not out.exists()
    with pytest.raises(ValueError, match="no scans given"):
        preprocess_folder("bu3dfe", bu_tree, out, paths=[])
    assert not out.exists()


# ------------------------------------------------------------------------------- bad global options
@pytest.mark.parametrize(("args", "message"), [
    (["--size", "0"], "size must be an integer from 8 to 2048, got 0"),
    (["--crop-radius", "0"], "crop_radius must be a finite number > 0 (mm), got 0.0"),
    (["--crop-radius", "-5"], "crop_radius must be a finite number > 0 (mm), got -5.0"),
    (["--crop-radius", "nan"], "crop_radius must be a finite number > 0 (mm), got nan"),
])
def test_preprocess_options_are_checked_once_up_front(bu_tree: Path, tmp_path: Path, capsys, args, message) -> None:
    out = tmp_path / "cache"
    assert _preprocess(bu_tree, out, *args) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and "FAILED" not in captured.err
    assert captured.err.strip() == f"afnetm preprocess: {message}"
    assert not out.exists()


def test_preprocess_option_names_and_choices_are_checked() -> None:
    with pytest.raises(ValueError, match=r"unknown preprocessing option\(s\) \['crop_raduis'\]"):
        check_preprocess_options(64, {"crop_raduis": 50})
    with pytest.raises(ValueError, match="interp must be one of"):
        check_preprocess_options(64, {"interp": "cubic"})
    with pytest.raises(ValueError, match="size must be an integer"):
        check_preprocess_options(64.5)
    assert check_preprocess_options(64, {"crop_radius": 80})["crop_radius"] == 80.0


@pytest.mark.parametrize(("option", "value", "message"), [
    ("size", 0, "size must be an integer from 8 to 2048"),
    ("n_points", 0, "n_points must be an integer from 200 to"),
    ("texture_size", 0, "texture_size must be an integer from 8 to"),
    ("seed", -1, "seed must be an integer >= 0"),
    ("pose_degrees", float("nan"), "pose_degrees must be a number from 0 to 90"),
    ("subjects", 0, "subjects must be an integer >= 1"),
])
def test_synthesize_options_are_checked_once_up_front(tmp_path: Path, option, value, message) -> None:
    out = tmp_path / "synthetic"
    with pytest.raises(ValueError, match=message):
        build_synthetic_dataset(out, **{**TINY, "size": 32, option: value})
    assert not out.exists()


# ------------------------------------------------------------------------------------ morphable model
def _npz(path: Path, **arrays) -> Path:
    with path.open("wb") as handle:
        np.savez(handle, **arrays)
    return path


def test_morphable_model_is_checked_once_with_a_clear_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.npz"
    garbage.write_text("garbage\n")
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    with zipfile.ZipFile(tmp_path / "no_arrays.npz", "w"):
        pass
    mean = np.zeros((4, 3))
    no_expressions = _npz(tmp_path / "neutral_only.npz", mean=mean, triangles=np.array([[0, 1, 2], [1, 2, 3]]),
                          texcoords=np.zeros((4, 2)), basis=np.zeros((20, 4, 3)), eigenvalues=np.ones(20))
    cases = {
        garbage: "garbage.npz: morphable model: not a .npz archive",
        empty: "empty.npz: morphable model: the file is empty",
        tmp_path / "no_arrays.npz": "no_arrays.npz: morphable model lacks the 'mean' array",
        no_expressions: r"neutral_only.npz: morphable model has no blendshape for \['anger'",
        tmp_path / "missing.npz": "missing.npz: cannot read morphable model: no such file",
    }
    for path, message in cases.items():
        out = tmp_path / f"out-{path.stem}"
        with pytest.raises(ValueError, match=message):
            build_synthetic_dataset(out, morphable_model=path, **TINY)
        assert not out.exists()
    with pytest.raises(ValueError, match="identity components"):
        check_morphable_model(no_expressions, identity_dims=30)
    # the per-scan loader says the same, not numpy's "pickled (object) data" or a bare EOFError
    with pytest.raises(ValueError, match="not a .npz archive") as err:
        face_scan_from_morphable_model(garbage)
    assert "pickled" not in str(err.value)
    with pytest.raises(ValueError, match="empty.npz: morphable model: the file is empty"):
        face_scan_from_morphable_model(empty)
