"""AFNet-M weights on the Hugging Face Hub: checkpoints, export, push and safe loading.

* `save_checkpoint` / `load_checkpoint`: the training checkpoint, one safetensors file with the model
  config (architecture + ``timm.create_model`` arguments) in its metadata.
* `export_checkpoint` (``afnetm hub export``): checkpoint → timm-compatible folder (``config.json``,
  ``model.safetensors``, ``README.md`` model card with measured results).
* `push_to_hub` (``afnetm hub push``): upload a verified folder; refuses unmeasured or pickle folders.
* Loading goes through timm after ``import afnetm_timm``: ``timm.create_model("hf-hub:<org>/<name>",
  pretrained=True)``, ``"local-dir:<folder>"``, or a registry tag (``"afnet_m.bu3dfe"``), safetensors only
  (see `afnetm_timm.hub.pretrained`).
"""
from .card import CardContext, render_model_card, weights_license
from .checkpoint import Checkpoint, load_checkpoint, model_args_of, save_checkpoint
from .errors import (
    CheckpointFormatError,
    ExportFormatError,
    HubWeightsError,
    PublishRefusedError,
    ResultsFormatError,
    UnsafeWeightsError,
    WeightsMismatchError,
    WeightsNotAvailableError,
)
from .export import EXPORT_FILES, ExportedFolder, export_checkpoint, read_export
from .push import check_publishable, push_to_hub
from .results import MeasuredResult, load_results, parse_results
from .weights import PICKLE_SUFFIXES, SAFE_WEIGHTS_NAME

__all__ = [
    "CardContext",
    "Checkpoint",
    "CheckpointFormatError",
    "EXPORT_FILES",
    "ExportFormatError",
    "ExportedFolder",
    "HubWeightsError",
    "MeasuredResult",
    "PICKLE_SUFFIXES",
    "PublishRefusedError",
    "ResultsFormatError",
    "SAFE_WEIGHTS_NAME",
    "UnsafeWeightsError",
    "WeightsMismatchError",
    "WeightsNotAvailableError",
    "check_publishable",
    "export_checkpoint",
    "load_checkpoint",
    "load_results",
    "model_args_of",
    "parse_results",
    "push_to_hub",
    "read_export",
    "render_model_card",
    "save_checkpoint",
    "weights_license",
]
