"""`FaceScan`: one 3D face scan in memory, whatever file format it came from."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ScanFormatError


@dataclass
class FaceScan:
    """A textured 3D face scan.

    Attributes:
        vertices: (N, 3) float64, millimetres, face looking towards +z (nose tip near max z).
        faces: (F, 3) int64 triangle vertex indices (0-based); may be empty for a point cloud.
        vertex_colors: (N, 3) uint8 RGB per vertex, or None.
        texture: (H, W, 3) uint8 RGB texture image, or None.
        corner_uv: (F, 3, 2) float64 texture coordinates per triangle corner, origin at the
            top-left of ``texture`` (u right, v down, both in [0, 1]); None without a texture.
            Per corner, not per vertex, so texture seams are kept.
        landmarks: name -> (3,) float64 position in the same frame as ``vertices``.
        landmark_scheme: 'bu3dfe83', 'bosphorus', 'ibug68' or 'custom'.
        metadata: free-form facts from the file name and header (subject, sex, expression,
            intensity, race, source path, ...).
    """

    vertices: np.ndarray
    faces: np.ndarray
    vertex_colors: np.ndarray | None = None
    texture: np.ndarray | None = None
    corner_uv: np.ndarray | None = None
    landmarks: dict[str, np.ndarray] = field(default_factory=dict)
    landmark_scheme: str = "custom"
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> Path | None:
        """Path of the file the scan was read from, if any."""
        src = self.metadata.get("source_path")
        return None if src is None else Path(src)

    def validate(self) -> FaceScan:
        """Check shapes, dtypes and values; raise `ScanFormatError` naming the scan on a problem."""
        where = self.source
        v = np.asarray(self.vertices)
        if v.ndim != 2 or v.shape[1] != 3:
            raise ScanFormatError(where, f"vertices must have shape (N, 3), got {v.shape}")
        if v.shape[0] == 0:
            raise ScanFormatError(where, "the scan has no vertices")
        if not np.all(np.isfinite(v)):
            bad = int((~np.isfinite(v)).any(axis=1).sum())
            raise ScanFormatError(where, f"{bad} vertices have NaN or infinite coordinates")
        f = np.asarray(self.faces)
        if f.size and (f.ndim != 2 or f.shape[1] != 3):
            raise ScanFormatError(where, f"faces must have shape (F, 3), got {f.shape}")
        if f.size and (f.min() < 0 or f.max() >= v.shape[0]):
            raise ScanFormatError(
                where, f"face indices must lie in [0, {v.shape[0] - 1}], found [{f.min()}, {f.max()}]"
            )
        if self.vertex_colors is not None and np.asarray(self.vertex_colors).shape != v.shape:
            raise ScanFormatError(where, "vertex_colors must have the same shape as vertices")
        if self.texture is not None:
            t = np.asarray(self.texture)
            if t.ndim != 3 or t.shape[2] != 3 or t.dtype != np.uint8:
                raise ScanFormatError(where, f"texture must be an (H, W, 3) uint8 image, got {t.shape} {t.dtype}")
            if self.corner_uv is None or np.asarray(self.corner_uv).shape != (f.shape[0], 3, 2):
                raise ScanFormatError(where, "a texture needs corner_uv of shape (F, 3, 2)")
        for name, p in self.landmarks.items():
            p = np.asarray(p)
            if p.shape != (3,) or not np.all(np.isfinite(p)):
                raise ScanFormatError(where, f"landmark {name!r} must be 3 finite coordinates, got {p!r}")
        return self
