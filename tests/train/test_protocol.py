"""Subject selection, subject-independent folds, aggregation, metrics."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from afnetm_timm.train.metrics import (
    confusion_matrix,
    per_class_accuracy,
    save_confusion_csv,
    save_confusion_png,
)
from afnetm_timm.train.protocol import (
    ProtocolConfig,
    load_subject_selection,
    results_markdown,
    save_subject_selection,
    select_subjects,
    subject_folds,
    summarize,
    write_reports,
)


def test_select_subjects_is_seeded_and_saved(tmp_path: Path) -> None:
    pool = [f"s{i:03d}" for i in range(100)] * 3
    a, b = select_subjects(pool, 60, seed=7), select_subjects(pool, 60, seed=7)
    assert a == b and len(set(a)) == 60 and set(a) <= set(pool)
    assert select_subjects(pool, 60, seed=8) != a
    path = save_subject_selection(tmp_path / "subjects.json", a, "bu3dfe", 7)
    record = load_subject_selection(path)
    assert record["subjects"] == a and record["seed"] == 7 and record["n"] == 60
    with pytest.raises(ValueError, match="has 100"):
        select_subjects(pool, 101)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="bad.json"):
        load_subject_selection(tmp_path / "bad.json")


def test_subject_folds_are_subject_independent() -> None:
    subjects = np.repeat([f"s{i:02d}" for i in range(23)], 12)
    folds = subject_folds(subjects, n_folds=10, seed=3)
    assert len(folds) == 10
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested.tolist()) == list(range(len(subjects)))  # every sample tested exactly once
    for train, test in folds:
        assert not set(subjects[train]) & set(subjects[test])
        assert len(train) + len(test) == len(subjects)
        assert len(set(subjects[test])) in (2, 3)  # 23 subjects over 10 folds
    # another repetition reshuffles the subjects; the same seed repeats the split
    other = subject_folds(subjects, 10, seed=4)
    assert any(set(subjects[a[1]]) != set(subjects[b[1]]) for a, b in zip(folds, other, strict=True))
    again = subject_folds(subjects, 10, seed=3)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again, strict=True))
    with pytest.raises(ValueError, match="n_folds"):
        subject_folds(subjects, 24)


def test_confusion_and_per_class() -> None:
    labels = np.array([0, 0, 1, 1, 1, 2])
    preds = np.array([0, 1, 1, 1, 0, 2])
    cm = confusion_matrix(labels, preds, 3)
    np.testing.assert_array_equal(cm, [[1, 1, 0], [1, 2, 0], [0, 0, 1]])
    np.testing.assert_allclose(per_class_accuracy(cm), [0.5, 2 / 3, 1.0])
    assert np.isnan(per_class_accuracy(np.zeros((2, 2)))).all()
    with pytest.raises(ValueError, match="predictions"):
        confusion_matrix(labels, preds + 5, 3)


def test_confusion_files(tmp_path: Path) -> None:
    cm = np.arange(36).reshape(6, 6)
    save_confusion_csv(tmp_path / "c.csv", cm)
    rows = list(csv.reader((tmp_path / "c.csv").open()))
    assert rows[0][1:] == ["AN", "DI", "FE", "HA", "SA", "SU"]
    assert [int(v) for v in rows[3][1:]] == cm[2].tolist() and rows[3][0] == "FE"
    save_confusion_png(tmp_path / "c.png", cm, title="t")
    image = cv2.imread(str(tmp_path / "c.png"))
    assert image is not None and image.shape[0] > 100
    assert not list(tmp_path.glob(".*tmp"))  # no temporary files left behind


def _fake_run(out: Path, variant: str, rep: int, fold: int, labels: list[int], predictions: list[int]) -> None:
    path = out / "runs" / variant / f"rep{rep:03d}" / f"fold{fold:02d}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    acc = float(np.mean(np.array(labels) == np.array(predictions)))
    path.write_text(json.dumps({"labels": labels, "predictions": predictions, "accuracy": acc,
                                "seconds_per_epoch": 1.0, "train_seconds": 10.0}))


def test_summarize_pools_folds_per_repetition(tmp_path: Path, synthetic_data) -> None:
    cfg = ProtocolConfig(variants=("afnet_m",), n_folds=2, repetitions=2)
    # repetition 0: 3/4 and 1/2 correct -> 4/6 pooled; repetition 1: all 6 correct
    _fake_run(tmp_path, "afnet_m", 0, 0, [0, 1, 2, 3], [0, 1, 2, 0])
    _fake_run(tmp_path, "afnet_m", 0, 1, [4, 5], [4, 0])
    _fake_run(tmp_path, "afnet_m", 1, 0, [0, 1, 2], [0, 1, 2])
    _fake_run(tmp_path, "afnet_m", 1, 1, [3, 4, 5], [3, 4, 5])
    s = summarize(tmp_path, synthetic_data, cfg)["afnet_m"]
    assert s.repetition_accuracies == pytest.approx([4 / 6, 1.0])
    assert s.mean == pytest.approx((4 / 6 + 1) / 2) and s.std == pytest.approx(np.std([4 / 6, 1.0]))
    assert s.std_over == "repetitions"
    assert s.confusion.sum() == 12 and s.confusion[3, 0] == 1 and s.confusion[5, 0] == 1
    assert s.per_class["happiness"] == pytest.approx(0.5)
    write_reports(tmp_path, synthetic_data, cfg, {"afnet_m": s})
    from afnetm_timm.hub.results import load_results

    [result] = load_results(tmp_path / "results.json", label_names=synthetic_data.label_names)
    assert result.synthetic is True and result.accuracy_mean == pytest.approx(100 * s.mean, abs=1e-3)
    table = results_markdown({"afnet_m": s}, synthetic_data, cfg, synthetic=True)
    assert "SYNTHETIC" in table and "| afnet_m | 2D+3D | yes | feature (AF) |" in table
    # a missing fold is named
    (tmp_path / "runs" / "afnet_m" / "rep001" / "fold01.json").unlink()
    with pytest.raises(ValueError, match="fold01.json"):
        summarize(tmp_path, synthetic_data, cfg)


def test_default_devices(monkeypatch) -> None:
    import torch

    from afnetm_timm.train.protocol import default_devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 3)
    assert default_devices() == ["cuda:0", "cuda:1", "cuda:2"]
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert default_devices() == [None]  # one device: the trainer's own choice ('auto')


def test_finished_fold_check(tmp_path: Path) -> None:
    """What a rerun may change and still resume (speed-only settings, settings an older record lacks), and
    what it may not (results-changing settings, the data's image size, the test samples)."""
    from afnetm_timm.train.protocol import _check_finished_fold
    from afnetm_timm.train.trainer import TrainConfig

    cfg = TrainConfig(epochs=2, pretrained_backbone=False)
    signature = {"dataset": "synthetic", "image_size": [64, 64]}
    path = tmp_path / "runs" / "afnet_m" / "rep000" / "fold00.json"
    path.parent.mkdir(parents=True)

    def write(**record) -> None:
        path.write_text(json.dumps({"test_ids": ["a", "b"], "training": cfg.as_dict(), "data": signature, **record}))

    write()
    _check_finished_fold(path, tmp_path, cfg, ["a", "b"], signature)  # same: resumes
    _check_finished_fold(path, tmp_path, TrainConfig(epochs=2, pretrained_backbone=False, compile=True,
                                                     eval_batch_size=7), ["a", "b"], signature)  # speed only
    older = cfg.as_dict()
    del older["deterministic"]  # a record written before that setting existed
    write(training=older)
    _check_finished_fold(path, tmp_path, cfg, ["a", "b"], signature)
    with pytest.raises(ValueError, match=r"epochs 2 -> 3"):
        _check_finished_fold(path, tmp_path, TrainConfig(epochs=3, pretrained_backbone=False), ["a", "b"], signature)
    with pytest.raises(ValueError, match=r"image_size \[64, 64\] -> \[112, 112\]"):
        _check_finished_fold(path, tmp_path, cfg, ["a", "b"], {**signature, "image_size": [112, 112]})
    with pytest.raises(ValueError, match="the fold's test samples"):
        _check_finished_fold(path, tmp_path, cfg, ["a", "c"], signature)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="unreadable fold result"):
        _check_finished_fold(path, tmp_path, cfg, ["a", "b"], signature)
