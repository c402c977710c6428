"""End to end: the protocol, train/evaluate and DDP through the ``afnetm`` command line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from afnetm_timm.cli import main
from afnetm_timm.hub import load_checkpoint

FAST = ["--no-progress", "--batch-size", "8", "--lr", "1e-3"]


@pytest.mark.slow
def test_protocol_on_synthetic_beats_chance(synthetic_cache: Path, tmp_path: Path, capsys, one_thread) -> None:
    out = tmp_path / "protocol"
    args = ["protocol", "--dataset", "synthetic", "--data", str(synthetic_cache), "--out", str(out),
            "--variants", "afnet_m", "--n-folds", "3", "--repetitions", "1", "--epochs", "10", *FAST]
    assert main(args) == 0
    printed = capsys.readouterr().out
    detail = json.loads((out / "protocol.json").read_text())
    result = detail["variants"]["afnet_m"]
    # chance is 1/6; the synthetic expressions are learnable from 6 training subjects in 10 epochs
    assert result["accuracy_mean"] > 0.5, result
    assert len(result["fold_accuracies"]) == 3 and detail["synthetic"] is True
    # subject-independent: every fold's test subjects are absent from its training subjects
    for fold in sorted((out / "runs" / "afnet_m" / "rep000").glob("fold*.json")):
        record = json.loads(fold.read_text())
        assert not set(record["test_subjects"]) & set(record["train_subjects"])
    assert json.loads((out / "subjects.json").read_text())["n"] == 9
    assert "| afnet_m | 2D+3D | yes | feature (AF) |" in (out / "table.md").read_text()
    assert cv2.imread(str(out / "confusion" / "afnet_m.png")) is not None
    assert f"afnet_m: accuracy {100 * result['accuracy_mean']:.2f}%" in printed
    # no training state or models are left behind by default
    assert not list((out / "runs").rglob("*.safetensors"))
    # a rerun resumes: every fold is found done and the numbers are the same
    assert main(args) == 0
    assert "3 already done, 0 to run" in capsys.readouterr().out
    assert json.loads((out / "protocol.json").read_text())["variants"]["afnet_m"] == result
    # a rerun with other settings is refused instead of reporting the old folds under the new settings
    changed = [a if a != "10" else "11" for a in args]
    assert main(changed) == 1
    assert "holds protocol results of other settings" in capsys.readouterr().err
    assert main([a if a != "3" else "2" for a in args]) == 1  # other --n-folds: other test samples per fold
    assert "the fold's test samples" in capsys.readouterr().err
    assert json.loads((out / "protocol.json").read_text())["variants"]["afnet_m"] == result


def test_protocol_arguments_are_checked_before_any_work(tmp_path: Path, capsys) -> None:
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as exit_info:  # 0 is a value, not "the default"
        main(["protocol", "--dataset", "synthetic", "--out", str(out), "--repetitions", "0"])
    assert exit_info.value.code == 2 and "--repetitions: must be at least 1, got 0" in capsys.readouterr().err
    assert main(["protocol", "--dataset", "synthetic", "--out", str(out), "--variants", "afnet_m_nope"]) == 1
    assert "--variants: unknown ['afnet_m_nope']" in capsys.readouterr().err
    assert not out.exists()


def test_train_fold_then_evaluate(synthetic_cache: Path, tmp_path: Path, capsys, one_thread) -> None:
    run = tmp_path / "run"
    assert main(["train", "--data", str(synthetic_cache), "--model", "afnet_m_no_ma", "--out", str(run),
                 "--fold", "0", "--n-folds", "3", "--epochs", "1", "--no-deterministic", *FAST]) == 0
    printed = capsys.readouterr().out
    assert "fold 0 test accuracy" in printed and (run / "model.safetensors").is_file()
    assert load_checkpoint(run / "model.safetensors").metadata["training"]["deterministic"] is False
    assert main(["evaluate", "--model", str(run / "model.safetensors"), "--data", str(synthetic_cache),
                 "--out", str(tmp_path / "eval")]) == 0
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["samples"] == 108 and 0 <= metrics["accuracy"] <= 1
    assert sum(map(sum, metrics["confusion"])) == 108
    assert (tmp_path / "eval" / "confusion.csv").is_file()
    # bad input: a message naming the problem and exit code 1, no traceback
    assert main(["evaluate", "--model", str(tmp_path / "nope.safetensors"), "--data", str(synthetic_cache)]) == 1
    assert main(["train", "--data", str(tmp_path), "--out", str(run)]) == 1
    assert "no index.jsonl" in capsys.readouterr().err
    # zero is a value, not "use the default"
    assert main(["train", "--data", str(synthetic_cache), "--out", str(tmp_path / "zero"), "--epochs", "0"]) == 1
    assert "epochs must be an integer >= 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda:0", marks=pytest.mark.cuda)])
def test_protocol_spreads_folds_over_devices(device: str, synthetic_cache: Path, tmp_path: Path) -> None:
    """Two folds in two worker processes on one device (``cuda:0,cuda:0``: two trainings share a GPU)."""
    out = tmp_path / "devices"
    assert main(["protocol", "--dataset", "synthetic", "--data", str(synthetic_cache), "--out", str(out),
                 "--variants", "afnet_m_2d_no_ma", "--n-folds", "2", "--repetitions", "1", "--epochs", "1",
                 "--devices", f"{device},{device}", *FAST]) == 0
    devices = [json.loads(p.read_text())["device"] for p in (out / "runs").rglob("fold*.json")]
    assert devices == [device, device]


def test_torchrun_ddp_training(synthetic_cache: Path, tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
           "-m", "afnetm_timm.cli", "train", "--data", str(synthetic_cache), "--model", "afnet_m_3d_no_ma",
           "--out", str(run), "--epochs", "1", "--device", "cpu", *FAST]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in proc.stdout and (run / "model.safetensors").is_file()


def test_protocol_on_a_bu3dfe_format_cache(tmp_path: Path, capsys, one_thread) -> None:
    """BU-3DFE-named .wrl scans -> afnetm preprocess bu3dfe -> afnetm protocol --dataset bu3dfe."""
    from afnetm_timm.data.formats import write_bu3dfe
    from afnetm_timm.data.synthetic_dataset import synthetic_scan
    from afnetm_timm.packing import EXPRESSION_CODES, EXPRESSION_NAMES

    src = tmp_path / "BU-3DFE"
    subjects = ("F0001", "M0002", "F0003", "M0004")
    for number, subject in enumerate(subjects):
        (src / subject).mkdir(parents=True)
        for name, code in zip(EXPRESSION_NAMES, EXPRESSION_CODES, strict=True):
            for level in ((2, 3, 4) if number == 0 else (3, 4)):
                scan = synthetic_scan(number, name, level, n_points=1500, texture_size=64)
                write_bu3dfe(scan, src / subject, f"{subject}_{code}{level:02d}WH_F3D")
    cache = tmp_path / "cache"
    assert main(["preprocess", "bu3dfe", str(src), str(cache), "--size", "64", "--jobs", "2", "--no-progress"]) == 0
    out = tmp_path / "protocol"
    assert main(["protocol", "--dataset", "bu3dfe", "--data", str(cache), "--out", str(out), "--subjects", "4",
                 "--variants", "afnet_m_2d_no_ma", "--n-folds", "2", "--repetitions", "1", "--epochs", "1",
                 "--no-pretrained-backbone", *FAST]) == 0
    detail = json.loads((out / "protocol.json").read_text())
    assert detail["dataset"] == "bu3dfe" and detail["synthetic"] is False
    assert detail["samples"] == 4 * 6 * 2 and detail["intensities"] == [3, 4]  # level 2 left out by default
    assert detail["subjects"] == sorted(subjects)
    [result] = json.loads((out / "results.json").read_text())["results"]
    assert result["dataset"] == "BU-3DFE" and result["subjects"] == 4 and result["synthetic"] is False
    assert "# BU-3DFE: subject-independent 2-fold" in (out / "table.md").read_text()
    assert "| afnet_m_2d_no_ma | 2D | - | - |" in capsys.readouterr().out
    # --subjects more than the data has: a clear error, exit 1
    assert main(["protocol", "--dataset", "bu3dfe", "--data", str(cache), "--out", str(tmp_path / "p2"),
                 "--subjects", "60", "--no-progress"]) == 1
    assert "cannot select 60 subjects: the data has 4" in capsys.readouterr().err
