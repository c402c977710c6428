"""``afnetm hub export``: an afnetm-timm checkpoint → a timm-compatible Hugging Face Hub folder.

The folder holds exactly

* ``config.json``: timm's format (``architecture``, ``model_args``, ``pretrained_cfg`` with the 7-channel
  mean/std and label names, top-level ``label_names``), written by ``timm.models.save_for_hf``, plus an
  ``afnetm`` record: the measured results, the preprocessing settings, the training metadata, the
  SHA-256 of the weights and the repo id the card names;
* ``model.safetensors``: the weights (no pickle file is ever written);
* ``README.md``: the model card, from ``afnetm_timm/templates/model_card.md``.

``timm.create_model("local-dir:<folder>", pretrained=True)`` loads it; uploaded to the Hub,
``timm.create_model("hf-hub:<org>/<name>", pretrained=True)`` does (after ``import afnetm_timm``).
The folder is built under a temporary name next to the target and renamed into place: an
interrupted export never leaves a partial folder.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from timm.models import save_for_hf

from .._atomic import set_default_mode
from .card import CardContext, render_model_card, weights_license
from .checkpoint import Checkpoint, load_checkpoint
from .errors import ExportFormatError, ResultsFormatError, UnsafeWeightsError
from .results import KNOWN_DATASETS, MeasuredResult, load_results, parse_results
from .weights import (
    CONFIG_NAME,
    README_NAME,
    SAFE_WEIGHTS_NAME,
    check_state_dict,
    find_pickle_files,
    read_safetensors,
    sha256_file,
)

__all__ = ["EXPORT_FILES", "ExportedFolder", "check_repo_id", "export_checkpoint", "read_export"]

RECORD_KEY = "afnetm"
EXPORT_VERSION = 1
#: The files of an export folder, all uploaded by ``afnetm hub push``.
EXPORT_FILES: tuple[str, ...] = (CONFIG_NAME, SAFE_WEIGHTS_NAME, README_NAME)


@dataclass
class ExportedFolder:
    """A verified export folder (see `read_export`)."""

    path: Path
    config: dict[str, Any]
    architecture: str
    model_args: dict[str, Any]
    results: list[MeasuredResult] = field(default_factory=list)
    record: dict[str, Any] = field(default_factory=dict)

    @property
    def measured(self) -> bool:
        """Whether measured results were exported with the weights."""
        return bool(self.results)

    @property
    def synthetic_only(self) -> bool:
        """Whether every measured result is on synthetic data."""
        return bool(self.results) and all(r.synthetic for r in self.results)

    @property
    def repo_id(self) -> str | None:
        """The Hub repo id the model card names (None: the card shows a local-dir: example)."""
        return self.record.get("repo_id")


def _meta_model(architecture: str, model_args: Mapping[str, Any]) -> Any:
    import afnetm_timm  # noqa: F401  (registers the models)

    if not architecture.startswith("afnet_m") or not timm.is_model(architecture):
        raise ExportFormatError(f"config.json: architecture {architecture!r} is not a registered AFNet-M model")
    args = {k: v for k, v in model_args.items() if k not in ("pretrained_backbone", "in_chans")}
    try:
        return timm.create_model(architecture, device="meta", pretrained_backbone=False, **args)
    except (TypeError, ValueError) as err:
        raise ExportFormatError(f"config.json: model_args {dict(model_args)} do not build {architecture}: {err}") from err


def read_export(folder: str | os.PathLike, check_hash: bool = True) -> ExportedFolder:
    """Verify an export folder without loading its weights into memory.

    Checks: no pickle files; ``config.json`` names a registered AFNet-M architecture whose
    ``model_args`` build a model with exactly the keys and shapes of ``model.safetensors`` (a valid,
    complete safetensors file, matching the SHA-256 recorded at export); ``README.md`` is present;
    the recorded results follow the results schema.

    Raises:
        ExportFormatError, UnsafeWeightsError, WeightsMismatchError: naming the file and the problem.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ExportFormatError(f"{folder} is not a folder")
    pickles = find_pickle_files(folder)
    if pickles:
        names = ", ".join(str(p.relative_to(folder)) for p in pickles)
        raise UnsafeWeightsError(f"{folder} holds pickle weight file(s) ({names}): only {SAFE_WEIGHTS_NAME} is allowed")
    for name in EXPORT_FILES:
        if not (folder / name).is_file():
            raise ExportFormatError(f"{folder} lacks {name}: not an `afnetm hub export` folder")
    try:
        config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ExportFormatError(f"{folder / CONFIG_NAME} is not valid JSON: {err}") from err
    architecture, model_args = config.get("architecture"), config.get("model_args", {})
    if not isinstance(architecture, str) or not isinstance(model_args, dict):
        raise ExportFormatError(f"{folder / CONFIG_NAME} lacks 'architecture' or a 'model_args' object")
    record = config.get(RECORD_KEY)
    if not isinstance(record, dict) or record.get("version") != EXPORT_VERSION:
        raise ExportFormatError(f"{folder / CONFIG_NAME} has no '{RECORD_KEY}' record of version {EXPORT_VERSION}: "
                                "export the folder with `afnetm hub export`")
    shapes, _ = read_safetensors(folder / SAFE_WEIGHTS_NAME)
    model = _meta_model(architecture, model_args)
    check_state_dict(model.state_dict(), shapes, str(folder / SAFE_WEIGHTS_NAME), f"{architecture}({model_args})")
    if check_hash and sha256_file(folder / SAFE_WEIGHTS_NAME) != record.get("weights_sha256"):
        raise ExportFormatError(f"{folder / SAFE_WEIGHTS_NAME} does not match the SHA-256 recorded in config.json "
                                "at export: the weights were changed or damaged after export")
    results = parse_results(record["results"], config.get("label_names")) if record.get("results") else []
    return ExportedFolder(path=folder, config=config, architecture=architecture, model_args=model_args,
                          results=results, record=record)


def _as_results(
    results: str | os.PathLike | Sequence[MeasuredResult] | Any | None, label_names: Sequence[str] | None
) -> list[MeasuredResult]:
    if results is None:
        return []
    if isinstance(results, (str, os.PathLike)):
        return load_results(results, label_names)
    if isinstance(results, Sequence) and results and all(isinstance(r, MeasuredResult) for r in results):
        return parse_results([r.as_dict() for r in results], label_names)
    return parse_results(results, label_names)


def _datasets(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return []


def _default_repo_id(architecture: str, results: Sequence[MeasuredResult]) -> str | None:
    """``afnetm-timm/<architecture>.<dataset>`` when real results name one known dataset; else None."""
    from afnetm_timm.models.afnet_m import HUB_ORG

    tags = {r.dataset_tag for r in results if not r.synthetic}
    if len(tags) == 1 and (tag := tags.pop()) in KNOWN_DATASETS:
        return f"{HUB_ORG}/{architecture}.{tag}"
    return None


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` if it is a valid ``<owner>/<name>`` Hub repo id; else ValueError."""
    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise ValueError(f"invalid Hub repo id {repo_id!r}: {err}") from err
    if "/" not in repo_id:
        raise ValueError(f"Hub repo id {repo_id!r} must name its owner: <org or user>/<name>")
    return repo_id


def _place(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move the finished temporary folder to ``out`` (rename; an existing folder only with ``overwrite``).

    The folder and its files get the permissions of a plain ``mkdir``/``open`` first (``mkdtemp`` makes
    0o700 and safetensors writes 0o600: a published model folder must be readable by others).
    """
    set_default_mode(tmp, directory=True)
    for file in tmp.rglob("*"):
        set_default_mode(file, directory=file.is_dir())
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        if not overwrite:
            raise FileExistsError(f"{out} exists and is not empty; pass overwrite=True (--overwrite) to replace it")
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old / out.name)
        try:
            os.replace(tmp, out)
        except BaseException:
            os.replace(old / out.name, out)  # put the previous folder back
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)  # onto a missing or empty folder


def export_checkpoint(
    checkpoint: str | os.PathLike | Checkpoint,
    out_dir: str | os.PathLike,
    results: str | os.PathLike | Sequence[MeasuredResult] | Any | None = None,
    preprocessing: Mapping[str, Any] | None = None,
    repo_id: str | None = None,
    license: str | None = None,
    license_name: str | None = None,
    overwrite: bool = False,
) -> ExportedFolder:
    """Export an afnetm-timm checkpoint as a timm-compatible Hub folder with its model card.

    Args:
        checkpoint: a checkpoint file (`afnetm_timm.hub.save_checkpoint`) or a loaded `Checkpoint`.
        out_dir: the folder to create (missing or empty, unless ``overwrite``).
        results: measured results: a results JSON path, parsed JSON, or `MeasuredResult` s. Without
            them the card says "no measured results" and ``afnetm hub push`` refuses the folder.
        preprocessing: the preprocessing settings used for training and evaluation (default: the
            results' ``preprocessing``, else the checkpoint metadata's).
        repo_id: the Hub repo the card names (default: ``afnetm-timm/<architecture>.<dataset>`` when
            real results name one known dataset; otherwise the card shows a ``local-dir:`` example).
        license, license_name: the weights' licence on the Hub (default: derived from the training and
            evaluation datasets: BU-3DFE/Bosphorus → "other" with their terms; synthetic only → apache-2.0).
        overwrite: replace an existing non-empty ``out_dir``.

    Returns:
        The verified `ExportedFolder`.
    """
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
    out = Path(out_dir).absolute()
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; pass overwrite=True (--overwrite) to replace it")
    model = ckpt.create_model()
    model.eval()
    label_names = list(ckpt.label_names) if ckpt.label_names is not None else None
    if label_names is None:
        names = model.pretrained_cfg.get("label_names")
        label_names = list(names) if names is not None and len(names) == model.num_classes else None
    measured = _as_results(results, label_names)
    # a protocol's results.json holds one entry per variant: keep this checkpoint's (and entries naming no model)
    own = [r for r in measured if r.model is None or r.model == ckpt.architecture]
    if measured and not own:
        raise ResultsFormatError(f"results: none measured on {ckpt.architecture!r} (they cover "
                                 f"{sorted({str(r.model) for r in measured})})")
    measured = own
    meta = dict(ckpt.metadata)
    if preprocessing is None:
        recorded = [r.preprocessing for r in measured if r.preprocessing]
        preprocessing = recorded[0] if recorded else meta.get("preprocessing")
    training = {k: v for k, v in meta.items() if k != "preprocessing"}
    train_synthetic = meta.get("synthetic") is True
    training_datasets = [] if train_synthetic else _datasets(meta.get("dataset"))
    real = training_datasets + [r.dataset for r in measured if not r.synthetic]
    synthetic_only = (bool(measured) and all(r.synthetic for r in measured)) or (not measured and train_synthetic)
    derived_license, derived_name = weights_license(real, synthetic_only)
    license = license or derived_license
    license_name = license_name if license_name is not None else (derived_name if license == derived_license else None)
    repo_id = check_repo_id(repo_id) if repo_id else _default_repo_id(ckpt.architecture, measured)

    from afnetm_timm import __version__
    from afnetm_timm.params import count_parameters

    numel, per_call = count_parameters(_meta_model(ckpt.architecture, ckpt.model_args))
    record: dict[str, Any] = {
        "version": EXPORT_VERSION,
        "afnetm_timm_version": __version__,
        "repo_id": repo_id,
        "measured": bool(measured),
        "synthetic_only": synthetic_only,
        "results": [r.as_dict() for r in measured],
        "preprocessing": dict(preprocessing) if preprocessing else None,
        "training": training,
        "weights_sha256": None,
    }
    pretrained_cfg = {
        "license": license,
        "hf_hub_filename": SAFE_WEIGHTS_NAME,
        "description": f"{ckpt.architecture} weights exported by afnetm-timm"
                       + (f" for {repo_id}" if repo_id else "") + ("" if measured else " (no measured results)"),
    }
    if label_names is not None:
        pretrained_cfg["label_names"] = tuple(label_names)
    terms = (f"Weights inherit the terms of their training data ({', '.join(training_datasets)})."
             if training_datasets else f"Licence of the weights: {license}.")
    pretrained_cfg["notes"] = (
        "Input: packed (7, H, W) = texture RGB, depth x3, mask; see afnetm_timm.pack.",
        terms,
        "Expression recognition is not a reading of emotions; not for surveillance or decisions about people.",
    )
    model_config: dict[str, Any] = {"pretrained_cfg": pretrained_cfg, RECORD_KEY: record}
    if label_names is not None:
        model_config["label_names"] = list(label_names)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        save_for_hf(model, str(tmp), model_config=model_config, model_args=dict(ckpt.model_args),
                    safe_serialization=True)
        config = json.loads((tmp / CONFIG_NAME).read_text(encoding="utf-8"))
        config[RECORD_KEY]["weights_sha256"] = sha256_file(tmp / SAFE_WEIGHTS_NAME)
        (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        card = CardContext(
            architecture=ckpt.architecture, model_args=config.get("model_args", {}),
            pretrained_cfg=config["pretrained_cfg"], label_names=label_names, num_params=numel,
            num_params_per_call=per_call, weights_sha256=config[RECORD_KEY]["weights_sha256"], license=license,
            license_name=license_name, repo_id=repo_id, results=measured,
            preprocessing=record["preprocessing"], training=training, training_datasets=training_datasets,
            afnetm_version=__version__,
        )
        (tmp / README_NAME).write_text(render_model_card(card), encoding="utf-8")
        read_export(tmp)  # the folder is complete and consistent before it gets its name
        _place(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return read_export(out, check_hash=False)

