"""The paper's evaluation protocol (§3.1): 60 subjects selected once at random and fixed, subject-independent
10-fold cross-validation, accuracy averaged over 100 repetitions.

* `select_subjects` draws the subjects with a seed; `save_subject_selection` / `load_subject_selection`
  keep the draw in a JSON file so that every later run, and every variant, uses the same subjects.
* `subject_folds` splits *subjects* (never samples) into folds: no subject is in both the training and
  the test part of a fold (asserted). Repetition ``r`` reshuffles the subjects with seed ``(seed, r)``.
* `run_protocol` trains and tests every (variant, repetition, fold), writing each fold's predictions
  to ``OUT/runs/<variant>/rep<r>/fold<k>.json`` as it finishes; a rerun skips finished folds and resumes
  an interrupted one from its last epoch. Folds can be spread over several devices (one worker process
  per entry of ``devices``; list a GPU twice to train two folds on it at once).
* `summarize` aggregates: per repetition, the accuracy over all test predictions of its folds (each
  sample is tested once per repetition); mean ± std over repetitions (over folds when there is a
  single repetition), per-class accuracy and the summed confusion matrix.
"""
from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import write_atomic
from ..packing import EXPRESSION_CODES
from .datasets import ExpressionData
from .metrics import confusion_matrix, per_class_accuracy, save_confusion_csv, save_confusion_png
from .trainer import TrainConfig, evaluate, train_model

__all__ = [
    "PAPER_RESULTS",
    "ProtocolConfig",
    "VariantSummary",
    "describe_variant",
    "load_subject_selection",
    "results_markdown",
    "run_protocol",
    "save_subject_selection",
    "select_subjects",
    "subject_folds",
    "summarize",
]

#: Accuracies (%) reported by the paper (Tables 1-3), for reference next to our measurements.
PAPER_RESULTS: dict[str, dict[str, float]] = {
    "afnet_m": {"bu3dfe": 90.08, "bosphorus": 88.31},
    "afnet_m_no_ma": {"bu3dfe": 88.89, "bosphorus": 87.11},
    "afnet_m_2d": {"bu3dfe": 87.68, "bosphorus": 85.42},
    "afnet_m_2d_no_ma": {"bu3dfe": 85.06, "bosphorus": 82.69},
    "afnet_m_3d": {"bu3dfe": 86.97, "bosphorus": 82.06},
    "afnet_m_3d_no_ma": {"bu3dfe": 84.37, "bosphorus": 80.58},
    "afnet_m_s1": {"bu3dfe": 86.54, "bosphorus": 85.08},
    "afnet_m_s2": {"bu3dfe": 86.28, "bosphorus": 84.36},
    "afnet_m_s3": {"bu3dfe": 87.61, "bosphorus": 85.54},
    "afnet_m_s4": {"bu3dfe": 88.12, "bosphorus": 86.17},
}


# ---------------------------------------------------------------------------------------------
# subjects and folds
# ---------------------------------------------------------------------------------------------
def select_subjects(subjects: Sequence[str], n: int | None = 60, seed: int = 0) -> list[str]:
    """``n`` distinct subjects drawn at random with ``seed`` (all of them, sorted, for ``n=None``)."""
    pool = sorted(set(subjects))
    if n is None:
        return pool
    if n < 2:
        raise ValueError(f"select at least 2 subjects, got {n}")
    if n > len(pool):
        raise ValueError(f"cannot select {n} subjects: the data has {len(pool)}")
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(pool, size=n, replace=False).tolist())


def save_subject_selection(path: str | os.PathLike, subjects: Sequence[str], dataset: str, seed: int) -> Path:
    """Keep a subject draw in a JSON file (atomic)."""
    record = {"dataset": dataset, "seed": seed, "n": len(subjects), "subjects": list(subjects)}
    return write_atomic(path, json.dumps(record, indent=1) + "\n")


def load_subject_selection(path: str | os.PathLike) -> dict[str, Any]:
    """A saved draw: ``{"dataset", "seed", "n", "subjects"}``; a ValueError names a malformed file."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable subject selection ({err})") from err
    if not isinstance(record, dict) or not isinstance(record.get("subjects"), list) or not record["subjects"]:
        raise ValueError(f"{path}: a subject selection needs a non-empty 'subjects' list")
    return record


def subject_folds(subjects: np.ndarray, n_folds: int = 10, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Subject-independent folds over samples whose subject ids are ``subjects`` (N,).

    Returns ``n_folds`` pairs (train indices, test indices); every sample is in exactly one test part
    and no subject appears in both parts of a fold.
    """
    subjects = np.asarray(subjects)
    unique = np.array(sorted(set(subjects.tolist())))
    if not 2 <= n_folds <= len(unique):
        raise ValueError(f"n_folds must lie in [2, {len(unique)} subjects], got {n_folds}")
    order = np.random.default_rng(seed).permutation(len(unique))
    folds = []
    for part in np.array_split(unique[order], n_folds):
        test = np.flatnonzero(np.isin(subjects, part))
        train = np.flatnonzero(~np.isin(subjects, part))
        overlap = set(subjects[test].tolist()) & set(subjects[train].tolist())
        assert not overlap, f"subjects in both train and test: {sorted(overlap)}"
        folds.append((train, test))
    assert sum(len(t) for _, t in folds) == len(subjects)
    return folds


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------
@dataclass
class ProtocolConfig:
    """What `run_protocol` runs.

    Attributes:
        variants: registered AFNet-M variants, one table row each.
        n_folds: folds per repetition (paper: 10).
        repetitions: repetitions of the cross-validation (paper: 100).
        seed: seeds the fold assignment of each repetition (and each fold's training).
        train: training settings (its ``model`` is replaced by each variant).
        devices: one worker per entry ('cpu', 'cuda:0', 'cuda:0', 'cuda:1', ...); None: one worker per CUDA
            device when there are several, else one on the best device. Several entries train folds concurrently.
        keep_models: keep each fold's trained ``model.safetensors`` (about 90 MB each).
    """

    variants: Sequence[str] = ("afnet_m",)
    n_folds: int = 10
    repetitions: int = 100
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)
    devices: Sequence[str] | None = None
    keep_models: bool = False


def _fold_path(out_dir: Path, variant: str, rep: int, fold: int) -> Path:
    return out_dir / "runs" / variant / f"rep{rep:03d}" / f"fold{fold:02d}.json"


def default_devices() -> list[str | None]:
    """Every CUDA device when there are several (one fold each at a time), else one worker on the best device."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [f"cuda:{i}" for i in range(count)] if count > 1 else [None]


def _run_fold(job: dict[str, Any]) -> dict[str, Any]:
    """Train and test one fold; writes its result JSON. Runs in the main process or a worker."""
    import torch

    data: ExpressionData = job["data"]
    train_cfg: TrainConfig = job["train"]
    result_path: Path = job["result_path"]
    if job.get("threads"):
        torch.set_num_threads(job["threads"])
    run_dir = result_path.with_suffix("")
    train = data.subset(job["train_index"])
    test = data.subset(job["test_index"])
    result = train_model(train_cfg, train, run_dir=run_dir, device=job["device"], progress=job["progress"],
                         description=job["name"], metadata={"fold": job["fold"], "repetition": job["rep"],
                                                            "test_subjects": test.subject_ids})
    t0 = time.perf_counter()
    ev = evaluate(result.model, test, batch_size=train_cfg.eval_batch_size, amp=train_cfg.amp)
    record = {
        "variant": train_cfg.model,
        "repetition": job["rep"],
        "fold": job["fold"],
        "accuracy": ev.accuracy,
        "test_ids": test.ids,
        "test_subjects": test.subject_ids,
        "train_subjects": train.subject_ids,
        "labels": ev.labels.tolist(),
        "predictions": ev.predictions.tolist(),
        "probabilities": np.round(ev.probabilities, 5).tolist(),
        "epochs": train_cfg.epochs,
        "train_seconds": result.seconds,
        "seconds_per_epoch": _finite_or_none(result.seconds_per_epoch),  # None: resumed with no epoch left
        "eval_seconds": time.perf_counter() - t0,
        "history": result.history,
        "device": str(next(result.model.parameters()).device),
        "training": train_cfg.as_dict(),
        "data": job["data_signature"],
    }
    write_atomic(result_path, json.dumps(record) + "\n")
    (run_dir / "train_state.safetensors").unlink(missing_ok=True)
    if not job["keep_models"]:
        shutil.rmtree(run_dir, ignore_errors=True)
    return record


#: Settings that change how fast a fold trains, not its result: a rerun may change them and resume.
_SPEED_ONLY = frozenset({"compile", "eval_batch_size"})


def _data_signature(data: ExpressionData) -> dict[str, Any]:
    """What identifies the data beyond its sample ids: dataset, image size and the cache's recorded options."""
    signature: dict[str, Any] = {"dataset": data.dataset, "image_size": list(data.image_size)}
    cache = data.meta.get("cache")
    record_path = Path(cache) / "cache.json" if cache else None
    if record_path is not None and record_path.is_file():
        # the cache loaded; a broken record of it is the preprocessing's business, not the protocol's
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            signature["cache_options"] = json.loads(record_path.read_text())["options"]
    return signature


def _check_finished_fold(path: Path, out: Path, train_cfg: TrainConfig, test_ids: list[str],
                         data_signature: dict[str, Any]) -> None:
    """A fold result found on a rerun must come from the same settings, data and test samples, or the rerun
    would silently report old numbers under new settings. Settings a record lacks (written by an older
    version) and speed-only settings (`_SPEED_ONLY`) are not compared."""
    try:
        record = json.loads(path.read_text())
        if not isinstance(record, dict) or not isinstance(record.get("training", {}), dict) \
                or not isinstance(record.get("data", {}), dict):
            raise ValueError("not a fold record (a JSON object)")
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: unreadable fold result ({err}); delete it to rerun that fold") from err
    before = dict(record.get("training") or {"model": record.get("variant"), "epochs": record.get("epochs")})
    before.update(record.get("data") or {})
    now = {**train_cfg.as_dict(), **data_signature}
    changed = [f"{k} {before[k]!r} -> {now[k]!r}" for k in sorted(before.keys() & now.keys())
               if k not in _SPEED_ONLY and before[k] != now[k]]
    if record.get("test_ids") != list(test_ids):
        changed.append("the fold's test samples (other data, subjects or --n-folds)")
    if changed:
        raise ValueError(f"{out} holds protocol results of other settings ({path.relative_to(out)}: "
                         f"{'; '.join(changed[:4])}); use another --out, or the same settings to resume")


def _finite_or_none(value: float) -> float | None:
    """JSON has no NaN: a missing number (a class without samples, no timed epoch) is null."""
    return value if np.isfinite(value) else None


def _run_jobs(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [_run_fold(job) for job in jobs]


def run_protocol(
    data: ExpressionData,
    cfg: ProtocolConfig,
    out_dir: str | os.PathLike,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, VariantSummary]:
    """Run (or resume) the cross-validation of every variant and write the results into ``out_dir``.

    Writes ``runs/`` (one JSON per fold), ``results.json`` (hub model-card schema, one entry per variant),
    ``protocol.json`` (settings, per-fold and per-repetition accuracies), ``table.md`` and
    ``confusion/<variant>.{csv,png}``. Returns the summaries.
    """
    from tqdm.auto import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    devices = list(cfg.devices) if cfg.devices else default_devices()
    threads = max(1, (os.cpu_count() or 1) // len(devices)) if len(devices) > 1 else None
    pending: list[dict[str, Any]] = []
    done = 0
    signature = _data_signature(data)
    for variant in cfg.variants:
        train_cfg = TrainConfig(**{**cfg.train.__dict__, "model": variant})
        for rep in range(cfg.repetitions):
            for fold, (tr, te) in enumerate(subject_folds(data.subjects, cfg.n_folds, seed=cfg.seed * 1000 + rep)):
                path = _fold_path(out, variant, rep, fold)
                fold_cfg = TrainConfig(**{**train_cfg.__dict__, "seed": cfg.train.seed * 1000003 + rep * 100 + fold})
                if path.is_file():
                    _check_finished_fold(path, out, fold_cfg, [data.ids[i] for i in te], signature)
                    done += 1
                    continue
                pending.append({
                    "name": f"{variant} r{rep} f{fold}", "variant": variant, "rep": rep, "fold": fold,
                    "train_index": tr, "test_index": te, "train": fold_cfg, "result_path": path,
                    "keep_models": cfg.keep_models, "progress": progress and len(devices) == 1,
                    "data_signature": signature,
                    "threads": threads,
                })
    total = done + len(pending)
    log(f"protocol: {len(cfg.variants)} variant(s) x {cfg.repetitions} repetition(s) x {cfg.n_folds} folds = "
        f"{total} trainings; {done} already done, {len(pending)} to run on {[d or 'auto' for d in devices]}")
    bar = tqdm(total=total, initial=done, desc="protocol", unit="fold", disable=not progress)
    try:
        if len(devices) == 1:
            for job in pending:
                job.update(data=data, device=devices[0])
                record = _run_fold(job)
                bar.update()
                bar.set_postfix(last=f"{record['accuracy']:.3f}")
        else:
            shares: list[list[dict[str, Any]]] = [[] for _ in devices]
            for i, job in enumerate(pending):
                job.update(data=data, device=devices[i % len(devices)])
                shares[i % len(devices)].append(job)
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=len(devices), mp_context=context) as pool:
                # one worker per device entry runs its share in order; progress = fold files written
                futures = [pool.submit(_run_jobs, share) for share in shares if share]
                paths = [job["result_path"] for job in pending]
                while not all(f.done() for f in futures):
                    time.sleep(1.0)
                    bar.n = done + sum(p.is_file() for p in paths)
                    bar.refresh()
                for future in futures:
                    future.result()
                bar.n = total
                bar.refresh()
    finally:
        bar.close()
    summaries = summarize(out, data, cfg)
    write_reports(out, data, cfg, summaries)
    return summaries


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------
@dataclass
class VariantSummary:
    """Aggregated results of one variant (accuracies as fractions)."""

    variant: str
    repetition_accuracies: list[float]
    fold_accuracies: list[float]
    confusion: np.ndarray
    per_class: dict[str, float]
    seconds_per_epoch: float
    train_seconds_per_fold: float

    @property
    def mean(self) -> float:
        values = self.repetition_accuracies if len(self.repetition_accuracies) > 1 else self.fold_accuracies
        return float(np.mean(values))

    @property
    def std(self) -> float:
        values = self.repetition_accuracies if len(self.repetition_accuracies) > 1 else self.fold_accuracies
        return float(np.std(values))

    @property
    def std_over(self) -> str:
        return "repetitions" if len(self.repetition_accuracies) > 1 else "folds"


def summarize(out_dir: str | os.PathLike, data: ExpressionData, cfg: ProtocolConfig) -> dict[str, VariantSummary]:
    """Aggregate the fold files of ``out_dir/runs`` (a ValueError names a missing fold)."""
    out = Path(out_dir)
    summaries = {}
    k = len(data.label_names)
    for variant in cfg.variants:
        rep_acc, fold_acc, spe, tsec = [], [], [], []
        confusion = np.zeros((k, k), dtype=np.int64)
        for rep in range(cfg.repetitions):
            labels, predictions = [], []
            for fold in range(cfg.n_folds):
                path = _fold_path(out, variant, rep, fold)
                if not path.is_file():
                    raise ValueError(f"{path}: fold result missing; rerun the protocol to finish it")
                record = json.loads(path.read_text())
                labels += record["labels"]
                predictions += record["predictions"]
                fold_acc.append(record["accuracy"])
                spe.append(np.nan if record.get("seconds_per_epoch") is None else record["seconds_per_epoch"])
                tsec.append(record["train_seconds"])
            labels_a, preds_a = np.array(labels), np.array(predictions)
            rep_acc.append(float((labels_a == preds_a).mean()))
            confusion += confusion_matrix(labels_a, preds_a, k)
        per_class = dict(zip(data.label_names, per_class_accuracy(confusion).tolist(), strict=True))
        summaries[variant] = VariantSummary(variant, rep_acc, fold_acc, confusion, per_class,
                                            float(np.nanmedian(spe)), float(np.median(tsec)))
    return summaries


def describe_variant(variant: str) -> dict[str, str]:
    """Data, MA and fusion of a registered variant, for the paper-shaped table."""
    import timm

    import afnetm_timm  # noqa: F401

    model = timm.create_model(variant, num_classes=6, pretrained_backbone=False)
    data = {"both": "2D+3D", "texture": "2D", "depth": "3D"}.get(getattr(model, "modalities", ""), "?")
    fusion = {"adaptive": "feature (AF)", "sum": "feature (sum, S4)", "fc": "feature (FC, S3)", "data": "data (S1)",
              "decision": "decision (S2)", "none": "-"}.get(getattr(model, "fusion_mode", ""), "?")
    return {"data": data, "ma": "yes" if getattr(model, "mask_stages", ()) else "-", "fusion": fusion,
            "backbone": getattr(model, "backbone", "?")}


def results_markdown(summaries: dict[str, VariantSummary], data: ExpressionData, cfg: ProtocolConfig,
                     synthetic: bool) -> str:
    """A table shaped like the paper's Tables 1-3: one row per variant."""
    name = {"bu3dfe": "BU-3DFE", "bosphorus": "Bosphorus"}.get(data.dataset, data.dataset)
    label = " (SYNTHETIC data: not comparable with the paper)" if synthetic else ""
    lines = [
        f"# {name}: subject-independent {cfg.n_folds}-fold cross-validation, {cfg.repetitions} repetition(s){label}",
        "",
        f"{len(data)} samples, {len(data.subject_ids)} subjects, {data.image_size[0]}x{data.image_size[1]}; "
        f"{cfg.train.epochs} epochs, batch {cfg.train.batch_size}, Adam lr {cfg.train.lr:g}, "
        f"ImageNet-initialised: {'yes' if cfg.train.pretrained_backbone else 'no'}.",
        "",
        "| Variant | Data | MA | Fusion | Accuracy (%) | " + " | ".join(EXPRESSION_CODES[:len(data.label_names)])
        + " | Paper (%) |",
        "|---|---|---|---|---|" + "---|" * len(data.label_names) + "---|",
    ]
    for variant, s in summaries.items():
        d = describe_variant(variant)
        paper = PAPER_RESULTS.get(variant, {}).get(data.dataset)
        per_class = " | ".join(f"{100 * v:.1f}" for v in s.per_class.values())
        lines.append(f"| {variant} | {d['data']} | {d['ma']} | {d['fusion']} | {100 * s.mean:.2f} ± {100 * s.std:.2f} | "
                     f"{per_class} | {f'{paper:.2f}' if paper is not None else '-'} |")
    lines += ["", f"± is the standard deviation over {next(iter(summaries.values())).std_over}; "
              "per-class columns are recalls from the summed confusion matrix. "
              "'Paper' = accuracy reported by the paper (Tables 1-3), for reference only."]
    return "\n".join(lines) + "\n"


def write_reports(out_dir: Path, data: ExpressionData, cfg: ProtocolConfig,
                  summaries: dict[str, VariantSummary]) -> None:
    """results.json (model-card schema), protocol.json, table.md, confusion matrices."""
    synthetic = data.dataset == "synthetic"
    name = {"bu3dfe": "BU-3DFE", "bosphorus": "Bosphorus", "synthetic": "synthetic"}.get(data.dataset, data.dataset)
    protocol_text = (f"subject-independent {cfg.n_folds}-fold cross-validation, {len(data.subject_ids)} subjects, "
                     f"{cfg.repetitions} repetition(s)")
    results = []
    for variant, s in summaries.items():
        save_confusion_csv(out_dir / "confusion" / f"{variant}.csv", s.confusion)
        save_confusion_png(out_dir / "confusion" / f"{variant}.png", s.confusion,
                           title=f"{variant} on {name}: {100 * s.mean:.1f}%")
        results.append({
            "dataset": name, "protocol": protocol_text, "model": variant,
            "accuracy": {"mean": round(100 * s.mean, 3), "std": round(100 * s.std, 3)},
            "per_class": {k: round(100 * v, 3) for k, v in s.per_class.items() if np.isfinite(v)},
            "n_folds": cfg.n_folds, "repetitions": cfg.repetitions, "synthetic": synthetic,
            "subjects": len(data.subject_ids),
            "notes": f"{cfg.train.epochs} epochs, batch {cfg.train.batch_size}, lr {cfg.train.lr:g}; "
                     f"std over {s.std_over}",
        })
    write_atomic(out_dir / "results.json", json.dumps({"results": results}, indent=1) + "\n")
    detail = {
        "dataset": data.dataset, "synthetic": synthetic, "cache": data.meta.get("cache"),
        "intensities": data.meta.get("intensities"), "samples": len(data), "subjects": data.subject_ids,
        "image_size": list(data.image_size), "n_folds": cfg.n_folds, "repetitions": cfg.repetitions,
        "seed": cfg.seed, "train": cfg.train.as_dict(),
        "variants": {v: {"accuracy_mean": s.mean, "accuracy_std": s.std, "std_over": s.std_over,
                         "repetition_accuracies": s.repetition_accuracies, "fold_accuracies": s.fold_accuracies,
                         "per_class": {k: _finite_or_none(v) for k, v in s.per_class.items()},
                         "confusion": s.confusion.tolist(),
                         "seconds_per_epoch": _finite_or_none(s.seconds_per_epoch),
                         "train_seconds_per_fold": _finite_or_none(s.train_seconds_per_fold)}
                     for v, s in summaries.items()},
    }
    write_atomic(out_dir / "protocol.json", json.dumps(detail, indent=1, allow_nan=False) + "\n")
    write_atomic(out_dir / "table.md", results_markdown(summaries, data, cfg, synthetic))
