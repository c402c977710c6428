"""Preprocessing of 3D face scans into AFNet-M inputs (texture, depth, salient-region masks)."""
from .errors import ScanFormatError
from .formats import read_scan
from .scan import FaceScan

__all__ = ["FaceScan", "ScanFormatError", "read_scan"]
