"""The afnetm-timm checkpoint: one safetensors file holding the state_dict and the config that rebuilds the model.

Format (version 1): a safetensors file whose tensors are ``model.state_dict()`` and whose metadata (a
``str -> str`` map, stored in the file header) has

* ``format``: ``"pt"`` (what safetensors tools expect of PyTorch weights);
* ``afnetm``: a JSON object ``{"format": "afnetm-checkpoint", "version": 1, "architecture": "afnet_m",
  "model_args": {...}, "label_names": [...] | null, "metadata": {...}, "software": {...}}``.

``architecture`` is a registered timm name (``afnet_m*``) and ``model_args`` the keyword arguments of
``timm.create_model`` that rebuild the model (``num_classes``, ``backbone``, ...), so
``timm.create_model(architecture, **model_args)`` gives a model the state_dict fits exactly; this is
checked when saving. ``metadata`` is free JSON for the training run (dataset, fold, epochs,
``preprocessing`` settings, ...); `afnetm_timm.hub.export` shows it on the model card.

No pickle anywhere: the file can be inspected and loaded without running code.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import load_file, save_file

from .._atomic import atomic_path
from .errors import CheckpointFormatError
from .weights import check_state_dict, read_safetensors

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "Checkpoint", "load_checkpoint", "model_args_of",
           "save_checkpoint"]

CHECKPOINT_FORMAT = "afnetm-checkpoint"
CHECKPOINT_VERSION = 1
_METADATA_KEY = "afnetm"

#: create_model arguments that do not describe the architecture of the saved weights: runtime
#: placement, training-only regularisation, and the ImageNet initialisation that the saved weights replace.
_NON_ARCH_ARGS = frozenset({
    "device", "dtype", "drop_rate", "drop_path_rate", "drop_block_rate", "pretrained", "pretrained_cfg",
    "pretrained_cfg_overlay", "pretrained_model_args", "cache_dir", "checkpoint_path", "features_only",
    "out_indices", "feature_cls", "scriptable", "exportable", "no_jit", "pretrained_backbone",
    "backbone_pretrained_tag",
})


def _json_safe(value: Any, what: str) -> Any:
    """``value`` after a JSON round trip (tuples become lists), or a clear error."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be JSON-serialisable: {err}") from err


def model_args_of(model: torch.nn.Module) -> dict[str, Any]:
    """The ``timm.create_model`` keyword arguments that rebuild ``model``'s architecture.

    Read from what timm's factory records (``model._model_args``), without runtime and training-only
    arguments, with the current ``num_classes`` and ``global_pool`` (after ``reset_classifier``).
    """
    args = {k: v for k, v in dict(getattr(model, "_model_args", {}) or {}).items() if k not in _NON_ARCH_ARGS}
    args.pop("in_chans", None)  # always the packed 7 channels; the factories drop it
    if hasattr(model, "num_classes"):
        args["num_classes"] = int(model.num_classes)
    if isinstance(getattr(model, "global_pool", None), str):
        args["global_pool"] = model.global_pool
    return _json_safe(args, "model arguments")


def _architecture_of(model: torch.nn.Module) -> str | None:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return cfg.get("architecture")


def _check_architecture(architecture: str) -> None:
    import afnetm_timm  # noqa: F401  (registers the AFNet-M models)

    if not architecture.startswith("afnet_m") or not timm.is_model(architecture):
        raise CheckpointFormatError(
            f"architecture {architecture!r} is not a registered AFNet-M model (one of {timm.list_models('afnet_m*')})"
        )


def _meta_state_shapes(architecture: str, model_args: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    """Key → shape of the model ``timm.create_model(architecture, **model_args)`` builds, on the meta device."""
    _check_architecture(architecture)
    args = {k: v for k, v in model_args.items() if k not in _NON_ARCH_ARGS}
    try:
        model = timm.create_model(architecture, pretrained=False, device="meta", **args)
    except (TypeError, ValueError) as err:
        raise CheckpointFormatError(f"model_args {dict(model_args)} do not build {architecture}: {err}") from err
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _software() -> dict[str, str]:
    from afnetm_timm import __version__

    return {"afnetm_timm": __version__, "timm": timm.__version__, "torch": torch.__version__.split("+")[0]}


@dataclass
class Checkpoint:
    """A loaded afnetm-timm checkpoint.

    Attributes:
        state_dict: the model's tensors (on CPU unless loaded with another ``device``).
        architecture: registered timm name, e.g. ``"afnet_m"``.
        model_args: ``timm.create_model`` keyword arguments that rebuild the model.
        label_names: class names in classifier order, or None.
        metadata: the training run's free-form JSON metadata (``dataset``, ``preprocessing``, ...).
        software: versions that wrote the file.
        path: where it was loaded from.
    """

    state_dict: dict[str, torch.Tensor]
    architecture: str
    model_args: dict[str, Any]
    label_names: list[str] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    software: dict[str, str] = field(default_factory=dict)
    path: Path | None = None

    def create_model(self, **kwargs: Any) -> torch.nn.Module:
        """Build the model (``timm.create_model(architecture, **model_args, **kwargs)``) and load the weights strictly.

        ``kwargs`` may add runtime arguments (``device``, ``dtype``, ``drop_rate``); architecture
        arguments that contradict ``model_args`` make the load fail with `WeightsMismatchError`.
        """
        _check_architecture(self.architecture)
        args = {**self.model_args, **kwargs}
        args.pop("pretrained", None)
        args["pretrained_backbone"] = False  # replaced by the checkpoint's weights anyway
        model = timm.create_model(self.architecture, **args)
        where = str(self.path) if self.path else "the checkpoint"
        check_state_dict(model.state_dict(), self.state_dict, where, f"{self.architecture}({self.model_args})")
        model.load_state_dict(self.state_dict, strict=True)
        if self.label_names is not None:
            model.pretrained_cfg = dict(model.pretrained_cfg, label_names=tuple(self.label_names))
        return model


def save_checkpoint(
    model: torch.nn.Module,
    path: str | os.PathLike,
    metadata: Mapping[str, Any] | None = None,
    *,
    architecture: str | None = None,
    model_args: Mapping[str, Any] | None = None,
    label_names: list[str] | tuple[str, ...] | None = None,
) -> Path:
    """Write ``model``'s weights and config as an afnetm-timm checkpoint (atomic: a temp file, then rename).

    Args:
        model: an AFNet-M model, normally from ``timm.create_model`` (which records its architecture and
            arguments). A bare ``AFNetM(...)`` needs ``architecture`` and ``model_args``.
        path: the ``.safetensors`` file to write.
        metadata: JSON-serialisable facts about the training run, e.g. ``{"dataset": "BU-3DFE", "fold": 3,
            "epochs": 40, "preprocessing": {...}}``; shown on the model card by ``afnetm hub export``.
        architecture: registered name, overriding ``model.pretrained_cfg["architecture"]``.
        model_args: ``timm.create_model`` arguments, overriding what timm recorded (`model_args_of`).
        label_names: class names, default: the model's ``pretrained_cfg`` names when their count matches.

    Returns:
        The path written.

    Raises:
        ValueError: no architecture known, non-JSON metadata, a non-``.safetensors`` path.
        CheckpointFormatError: the recorded config does not rebuild a model of exactly these keys and shapes.
    """
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"save_checkpoint: the checkpoint is a safetensors file; name it *.safetensors, got {path}")
    architecture = architecture or _architecture_of(model)
    if not architecture:
        raise ValueError("save_checkpoint: the model has no pretrained_cfg['architecture'] (not built by "
                         "timm.create_model); pass architecture= and model_args=")
    args = _json_safe(dict(model_args), "model_args") if model_args is not None else model_args_of(model)
    num_classes = int(args.get("num_classes", getattr(model, "num_classes", 0)))
    if label_names is None:
        names = (getattr(model, "pretrained_cfg", None) or {}).get("label_names")
        label_names = list(names) if names is not None and len(names) == num_classes else None
    elif len(label_names) != num_classes:
        raise ValueError(f"save_checkpoint: {len(label_names)} label names for {num_classes} classes")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    shapes = _meta_state_shapes(architecture, args)
    try:
        check_state_dict(shapes, state, "the model", f"{architecture}({args}) as recorded in the checkpoint")
    except Exception as err:
        raise CheckpointFormatError(
            f"save_checkpoint: the recorded config would not rebuild this model ({err}); pass model_args="
        ) from err
    record = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "architecture": architecture,
        "model_args": args,
        "label_names": list(label_names) if label_names is not None else None,
        "metadata": _json_safe(dict(metadata or {}), "checkpoint metadata"),
        "software": _software(),
    }
    with atomic_path(path) as tmp:  # never a partial checkpoint at `path`
        save_file(state, str(tmp), metadata={"format": "pt", _METADATA_KEY: json.dumps(record)})
    return path


def read_checkpoint_record(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint's ``afnetm`` metadata record, validated, without loading the tensors."""
    path = Path(path)
    _shapes, metadata = read_safetensors(path)
    raw = metadata.get(_METADATA_KEY)
    if raw is None:
        raise CheckpointFormatError(
            f"{path} is a safetensors file without afnetm-timm checkpoint metadata (architecture and model "
            "arguments): write checkpoints with afnetm_timm.hub.save_checkpoint"
        )
    try:
        record = json.loads(raw)
    except json.JSONDecodeError as err:
        raise CheckpointFormatError(f"{path}: the afnetm metadata is not valid JSON: {err}") from err
    if not isinstance(record, dict) or record.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointFormatError(f"{path}: the afnetm metadata is not an {CHECKPOINT_FORMAT} record")
    version = record.get("version")
    if not isinstance(version, int) or version > CHECKPOINT_VERSION:
        raise CheckpointFormatError(
            f"{path}: checkpoint format version {version!r}; this afnetm-timm reads up to {CHECKPOINT_VERSION} "
            "(upgrade afnetm-timm)"
        )
    if not isinstance(record.get("architecture"), str) or not isinstance(record.get("model_args"), dict):
        raise CheckpointFormatError(f"{path}: the afnetm metadata lacks 'architecture' or 'model_args'")
    return record


def load_checkpoint(path: str | os.PathLike, device: str | torch.device = "cpu") -> Checkpoint:
    """Read an afnetm-timm checkpoint (never unpickles anything).

    Raises:
        FileNotFoundError: no such file.
        UnsafeWeightsError: a pickle / ``torch.save`` file.
        WeightsMismatchError: a corrupt or truncated safetensors file.
        CheckpointFormatError: safetensors without afnetm metadata, or a newer format version.
    """
    path = Path(path)
    record = read_checkpoint_record(path)
    state = load_file(str(path), device=str(device))
    return Checkpoint(
        state_dict=state,
        architecture=record["architecture"],
        model_args=record["model_args"],
        label_names=record.get("label_names"),
        metadata=record.get("metadata") or {},
        software=record.get("software") or {},
        path=path,
    )
