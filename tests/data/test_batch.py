"""afnetm preprocess: parallel, resumable, atomic, reports bad scans and goes on."""
import json

import numpy as np
import pytest

from afnetm_timm.cli import main
from afnetm_timm.data.batch import load_cached_sample, preprocess_folder
from afnetm_timm.data.formats import write_bosphorus, write_bu3dfe
from tests.data.fixtures import make_sfm_scan, require_sfm


@pytest.fixture(scope="module")
def bu3dfe_tree(tmp_path_factory):
    require_sfm()
    src = tmp_path_factory.mktemp("bu3dfe")
    for subject, code, expression in (("F0001", "HA", "happiness"), ("M0002", "SU", "surprise")):
        folder = src / subject
        folder.mkdir()
        scan = make_sfm_scan(expression, 1.0, seed=int(subject[1:]), landmark_scheme="bu3dfe83")
        write_bu3dfe(scan, folder, f"{subject}_{code}04WH_F3D")
    broken = src / "F0003"
    broken.mkdir()
    (broken / "F0003_AN04WH_F3D.wrl").write_text("#VRML V2.0 utf8\nShape { geometry IndexedFaceSet { coord [ ")
    return src


def test_preprocess_cli_caches_good_scans_and_names_bad_ones(bu3dfe_tree, tmp_path, capsys) -> None:
    out = tmp_path / "cache"
    code = main(["preprocess", "bu3dfe", str(bu3dfe_tree), str(out), "--size", "64", "--jobs", "2",
                 "--previews", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 1  # one scan failed
    assert "2 preprocessed" in printed and "1 failed" in printed
    assert "FAILED" in printed and "F0003_AN04WH_F3D.wrl" in printed
    index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert sorted((r["subject"], r["expression"], r["intensity"]) for r in index) == [
        ("F0001", "happiness", 4), ("M0002", "surprise", 4)]
    sample = load_cached_sample(out, index[0]["id"])
    assert sample["texture"].shape == (64, 64, 3) and sample["texture"].dtype == np.uint8
    assert sample["depth"].shape == (64, 64) and sample["mask"].shape == (64, 64)
    assert sample["mask_56"].shape == (56, 56) and sample["mask_28"].shape == (28, 28)
    assert len(list((out / "previews").glob("*.png"))) == 2
    assert not [p for p in out.rglob("*") if ".tmp" in p.name]  # atomic writes leave nothing behind

    # resumable: the second run skips what is cached and still reports the bad scan
    code = main(["preprocess", "bu3dfe", str(bu3dfe_tree), str(out), "--size", "64", "--jobs", "1", "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 1 and "0 preprocessed" in printed and "2 already cached" in printed


def test_bosphorus_folder_and_clean_exit(tmp_path) -> None:
    require_sfm()
    src = tmp_path / "bs"
    src.mkdir()
    scan = make_sfm_scan("anger", 1.0, seed=5, landmark_scheme="ibug68")
    write_bosphorus(scan, src, "bs005_E_ANGER_0")
    report = preprocess_folder("bosphorus", src, tmp_path / "cache", size=64, jobs=1, progress=False)
    assert report.ok and len(report.processed) == 1
    (row,) = [json.loads(line) for line in (tmp_path / "cache" / "index.jsonl").read_text().splitlines()]
    assert row["expression"] == "anger" and row["dataset"] == "bosphorus"


def test_missing_source_folder_is_a_clear_error(tmp_path, capsys) -> None:
    assert main(["preprocess", "meshes", str(tmp_path / "nope"), str(tmp_path / "out")]) == 1
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.timeout(120, method="thread")  # a regression hangs: end the run with stacks
def test_workers_start_after_opencv_threads_ran_here(bu3dfe_tree, tmp_path) -> None:
    """A child forked while OpenCV's thread pool runs hangs in cv2.setNumThreads: the pool is stopped first."""
    import cv2

    threads = cv2.getNumThreads()
    image = np.random.default_rng(0).random((1500, 1500)).astype(np.float32)
    for _ in range(3):
        cv2.GaussianBlur(image, (31, 31), 5)  # OpenCV's pool now runs in this process
    report = preprocess_folder("bu3dfe", bu3dfe_tree, tmp_path / "cache", size=64, jobs=2, progress=False)
    assert len(report.processed) == 2 and len(report.failed) == 1
    assert cv2.getNumThreads() == threads  # restored
