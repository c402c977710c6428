"""Measured results for a model card: the JSON schema ``afnetm hub export --results`` reads.

A results file holds one object, a list of objects, or ``{"results": [...]}``. Each object::

    {
      "dataset": "BU-3DFE",                     # required: what was measured on
      "protocol": "subject-independent 10-fold cross-validation, 60 subjects",   # required
      "accuracy": {"mean": 88.4, "std": 1.7},   # required, percent (0-100) unless "unit": "fraction"
      "per_class": {"anger": 85.0, ...},        # optional, same unit, keys = the model's label names
      "n_folds": 10,                            # required, >= 1
      "repetitions": 10,                        # required, >= 1 (the paper: 100)
      "synthetic": false,                       # required: true when the data measured on is synthetic
      "unit": "percent",                        # optional: "percent" (default) or "fraction"
      "subjects": 60,                           # optional
      "notes": "...",                           # optional
      "preprocessing": {...}                    # optional: settings used, shown on the card
    }

Values are normalised to percent. ``synthetic`` is required (no default) so that a result is never
presented as a benchmark number by omission.
"""
from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ResultsFormatError

__all__ = ["MeasuredResult", "dataset_tag", "load_results", "parse_results"]

_REQUIRED = ("dataset", "protocol", "accuracy", "n_folds", "repetitions", "synthetic")
_OPTIONAL = ("per_class", "unit", "subjects", "notes", "preprocessing", "model")
#: Known datasets: normalised tag → display name.
KNOWN_DATASETS: dict[str, str] = {"bu3dfe": "BU-3DFE", "bosphorus": "Bosphorus"}


def dataset_tag(name: str) -> str:
    """A dataset name as a lowercase alphanumeric tag: ``"BU-3DFE"`` → ``"bu3dfe"``."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


@dataclass(frozen=True)
class MeasuredResult:
    """One measured evaluation, accuracies in percent."""

    dataset: str
    protocol: str
    accuracy_mean: float
    accuracy_std: float
    n_folds: int
    repetitions: int
    synthetic: bool
    per_class: dict[str, float] = field(default_factory=dict)
    subjects: int | None = None
    notes: str | None = None
    preprocessing: dict[str, Any] | None = None
    model: str | None = None

    @property
    def dataset_tag(self) -> str:
        return dataset_tag(self.dataset)

    def as_dict(self) -> dict[str, Any]:
        """The JSON form (schema above, percent)."""
        d = asdict(self)
        d["accuracy"] = {"mean": d.pop("accuracy_mean"), "std": d.pop("accuracy_std")}
        d["unit"] = "percent"
        return {k: v for k, v in d.items() if v is not None}


def _number(value: Any, what: str, scale: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ResultsFormatError(f"results: {what} must be a finite number, got {value!r}")
    value = float(value) * scale
    if not 0.0 <= value <= 100.0:
        raise ResultsFormatError(f"results: {what} must lie in [0, 100] percent, got {value}")
    return value


def _count(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ResultsFormatError(f"results: {what} must be an integer >= 1, got {value!r}")
    return value


def _parse_one(entry: Any, index: int, label_names: Sequence[str] | None) -> MeasuredResult:
    where = f"result #{index}"
    if not isinstance(entry, Mapping):
        raise ResultsFormatError(f"results: {where} must be a JSON object, got {type(entry).__name__}")
    missing = [k for k in _REQUIRED if k not in entry]
    if missing:
        raise ResultsFormatError(f"results: {where} lacks required field(s) {missing} (schema: {list(_REQUIRED)})")
    unknown = sorted(set(entry) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise ResultsFormatError(f"results: {where} has unknown field(s) {unknown}")
    for key in ("dataset", "protocol"):
        if not isinstance(entry[key], str) or not entry[key].strip():
            raise ResultsFormatError(f"results: {where}: {key} must be a non-empty string")
    if not isinstance(entry["synthetic"], bool):
        raise ResultsFormatError(f"results: {where}: synthetic must be true or false, got {entry['synthetic']!r}")
    unit = entry.get("unit", "percent")
    if unit not in ("percent", "fraction"):
        raise ResultsFormatError(f"results: {where}: unit must be 'percent' or 'fraction', got {unit!r}")
    scale = 100.0 if unit == "fraction" else 1.0
    acc = entry["accuracy"]
    if not isinstance(acc, Mapping) or "mean" not in acc or "std" not in acc:
        raise ResultsFormatError(f"results: {where}: accuracy must be an object {{'mean': ..., 'std': ...}}")
    mean = _number(acc["mean"], f"{where} accuracy.mean", scale)
    std = _number(acc["std"], f"{where} accuracy.std", scale)
    if unit == "percent" and 0.0 < mean < 1.0:
        raise ResultsFormatError(
            f"results: {where}: accuracy.mean={acc['mean']} looks like a fraction; give percent or set "
            "\"unit\": \"fraction\""
        )
    per_class_raw = entry.get("per_class") or {}
    if not isinstance(per_class_raw, Mapping):
        raise ResultsFormatError(f"results: {where}: per_class must be an object {{label: accuracy}}")
    if label_names is not None and per_class_raw:
        extra = sorted(set(per_class_raw) - set(label_names))
        if extra:
            raise ResultsFormatError(
                f"results: {where}: per_class names {extra} are not the model's classes {list(label_names)}"
            )
    per_class = {str(k): _number(v, f"{where} per_class[{k!r}]", scale) for k, v in per_class_raw.items()}
    subjects = entry.get("subjects")
    if subjects is not None:
        subjects = _count(subjects, f"{where} subjects")
    preprocessing = entry.get("preprocessing")
    if preprocessing is not None and not isinstance(preprocessing, Mapping):
        raise ResultsFormatError(f"results: {where}: preprocessing must be an object")
    notes = entry.get("notes")
    if notes is not None and not isinstance(notes, str):
        raise ResultsFormatError(f"results: {where}: notes must be a string")
    model = entry.get("model")
    if model is not None and not isinstance(model, str):
        raise ResultsFormatError(f"results: {where}: model must be a string (the architecture measured)")
    return MeasuredResult(
        dataset=entry["dataset"].strip(), protocol=entry["protocol"].strip(), accuracy_mean=mean, accuracy_std=std,
        n_folds=_count(entry["n_folds"], f"{where} n_folds"),
        repetitions=_count(entry["repetitions"], f"{where} repetitions"),
        synthetic=entry["synthetic"], per_class=per_class, subjects=subjects, notes=notes,
        preprocessing=dict(preprocessing) if preprocessing is not None else None, model=model,
    )


def parse_results(data: Any, label_names: Sequence[str] | None = None) -> list[MeasuredResult]:
    """Validate parsed JSON (one object, a list, or ``{"results": [...]}``) into `MeasuredResult` s.

    Raises:
        ResultsFormatError: naming the entry and field that is wrong.
    """
    if isinstance(data, Mapping) and "results" in data and set(data) == {"results"}:
        data = data["results"]
    entries = [data] if isinstance(data, Mapping) else data
    if not isinstance(entries, list) or not entries:
        raise ResultsFormatError("results: expected a JSON object or a non-empty list of objects")
    return [_parse_one(entry, i, label_names) for i, entry in enumerate(entries)]


def load_results(path: str | os.PathLike, label_names: Sequence[str] | None = None) -> list[MeasuredResult]:
    """Read and validate a results JSON file (schema in the module docstring)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ResultsFormatError(f"results: {path} is not valid JSON: {err}") from err
    return parse_results(data, label_names)
