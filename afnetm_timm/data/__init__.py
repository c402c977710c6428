"""Preprocessing of 3D face scans into AFNet-M inputs (texture, depth, salient-region masks).

``read_scan`` reads BU-3DFE ``.wrl``, Bosphorus ``.bnt`` and generic meshes into a `FaceScan`;
``preprocess_scan`` turns a scan into an aligned texture, depth image and masks (gridfit);
``transforms`` augments and packs samples for the model.
"""
from .errors import ScanFormatError
from .formats import read_scan
from .gridfit import GridfitProblem, ImageGrid, gridfit
from .masks import MaskConfig, salient_masks
from .pipeline import PreprocessedSample, preprocess_scan
from .pose import estimate_pose, kabsch
from .scan import FaceScan
from .surface import clean_scan
from .synthetic import EXPRESSIONS, face_scan_from_morphable_model, synthetic_face_scan

__all__ = [
    "EXPRESSIONS",
    "FaceScan",
    "GridfitProblem",
    "ImageGrid",
    "MaskConfig",
    "PreprocessedSample",
    "ScanFormatError",
    "clean_scan",
    "estimate_pose",
    "face_scan_from_morphable_model",
    "gridfit",
    "kabsch",
    "preprocess_scan",
    "read_scan",
    "salient_masks",
    "synthetic_face_scan",
]
