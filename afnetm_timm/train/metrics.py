"""Accuracy, per-class accuracy and confusion matrices (CSV and PNG, as in the paper's Fig. 4)."""
from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .._atomic import write_atomic
from ..packing import EXPRESSION_CODES

__all__ = [
    "accuracy",
    "confusion_matrix",
    "per_class_accuracy",
    "save_confusion_csv",
    "save_confusion_png",
]


def _check(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    labels, predictions = np.asarray(labels, dtype=np.int64), np.asarray(predictions, dtype=np.int64)
    if labels.shape != predictions.shape or labels.ndim != 1:
        raise ValueError(f"labels and predictions must be 1-D of one length, got {labels.shape} and {predictions.shape}")
    for name, v in (("labels", labels), ("predictions", predictions)):
        if v.size and (v.min() < 0 or v.max() >= num_classes):
            raise ValueError(f"{name} must lie in [0, {num_classes}), got [{v.min()}, {v.max()}]")
    return labels, predictions


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, num_classes) counts: rows are true classes, columns predicted."""
    labels, predictions = _check(labels, predictions, num_classes)
    return np.bincount(labels * num_classes + predictions, minlength=num_classes**2).reshape(num_classes, num_classes)


def accuracy(labels: np.ndarray, predictions: np.ndarray) -> float:
    """Fraction of correct predictions (NaN for no samples)."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    return float((labels == predictions).mean()) if labels.size else float("nan")


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Recall of each class from a confusion matrix (NaN for a class without samples)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    totals = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(confusion) / totals, np.nan)


def save_confusion_csv(path: str | os.PathLike, confusion: np.ndarray, labels: Sequence[str] = EXPRESSION_CODES) -> Path:
    """Counts with a header row and column of class names (rows true, columns predicted)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["true\\predicted", *labels])
    for name, row in zip(labels, np.asarray(confusion), strict=True):
        writer.writerow([name, *(int(v) for v in row)])
    return write_atomic(path, buffer.getvalue())


def save_confusion_png(
    path: str | os.PathLike,
    confusion: np.ndarray,
    labels: Sequence[str] = EXPRESSION_CODES,
    title: str | None = None,
) -> Path:
    """Row-normalised confusion matrix in percent, like the paper's Fig. 4."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    confusion = np.asarray(confusion, dtype=np.float64)
    totals = confusion.sum(axis=1, keepdims=True)
    percent = np.divide(confusion, totals, out=np.zeros_like(confusion), where=totals > 0) * 100
    fig, ax = plt.subplots(figsize=(4.6, 4.0), dpi=120)
    image = ax.imshow(percent, cmap="Blues", vmin=0, vmax=100)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, f"{percent[i, j]:.1f}", ha="center", va="center", fontsize=7,
                    color="white" if percent[i, j] > 60 else "black")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="% of true class")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return write_atomic(path, buffer.getvalue())
