"""Errors of the Hub weights path: every one says what was wrong, where, and what to do instead.

All are ``RuntimeError`` (results problems: ``ValueError``), so ``afnetm``'s command line reports them
as one line.
"""
from __future__ import annotations

__all__ = [
    "CheckpointFormatError",
    "ExportFormatError",
    "HubWeightsError",
    "PublishRefusedError",
    "ResultsFormatError",
    "UnsafeWeightsError",
    "WeightsMismatchError",
    "WeightsNotAvailableError",
]


class HubWeightsError(RuntimeError):
    """Base class: AFNet-M weights could not be loaded, exported or published."""


class WeightsNotAvailableError(HubWeightsError):
    """No weights where they were asked for: a tag without published weights, nothing cached, no weight file."""


class UnsafeWeightsError(HubWeightsError):
    """A pickle weight file (.bin/.pt/.pth/.ckpt/...) where only safetensors are accepted."""


class WeightsMismatchError(HubWeightsError):
    """Weights that do not fit the model: missing or unexpected keys, wrong shapes, a corrupt safetensors file."""


class CheckpointFormatError(HubWeightsError):
    """A file that is not an afnetm-timm checkpoint (see `afnetm_timm.hub.checkpoint`)."""


class ExportFormatError(HubWeightsError):
    """A folder that is not a complete, consistent ``afnetm hub export`` folder."""


class PublishRefusedError(HubWeightsError):
    """``afnetm hub push`` refuses the folder: no measured results, pickle files, inconsistent export."""


class ResultsFormatError(ValueError):
    """A results JSON file that does not follow the schema of `afnetm_timm.hub.results`."""
