"""`read_scan`: one entry point for every supported scan format."""
from __future__ import annotations

from pathlib import Path

from ..errors import ScanFormatError
from ..scan import FaceScan
from .bnt import read_bosphorus
from .landmarks import LandmarkSource, load_landmarks
from .mesh import MESH_SUFFIXES, read_mesh
from .wrl import read_bu3dfe

SCAN_SUFFIXES: tuple[str, ...] = (".wrl", ".bnt", *MESH_SUFFIXES)
LANDMARK_SIDECARS: tuple[str, ...] = (
    ".landmarks.json", "_landmarks.json", ".landmarks.npy", "_landmarks.npy", ".landmarks.txt", "_landmarks.txt",
    ".lm3", ".bnd",
)
"""Suffixes appended to a generic mesh's stem when looking for its landmark file."""


def find_landmark_file(path: str | Path) -> Path | None:
    """The first existing landmark side-car of a generic mesh (``<stem>.landmarks.json``, ...), or None."""
    path = Path(path)
    for suffix in LANDMARK_SIDECARS:
        candidate = path.parent / f"{path.stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def read_scan(path: str | Path, landmarks: LandmarkSource | None = None, *, load_texture: bool = True) -> FaceScan:
    """Read a face scan, choosing the reader by extension.

    - ``.wrl``: BU-3DFE VRML (+ ``.bmp`` named inside, + ``<stem>.bnd``);
    - ``.bnt``: Bosphorus range grid (+ ``.png`` named inside, + ``<stem>.lm3`` / ``.lm2``);
    - ``.obj``, ``.ply``, ``.glb``, ``.gltf``, ``.off``, ``.stl``: generic mesh via trimesh
      (+ a landmark side-car, see `LANDMARK_SIDECARS`).

    `landmarks` (a (K, 3) array, a mapping or a file, see `load_landmarks`) replaces the landmarks
    found beside the scan. Every problem with the inputs raises `ScanFormatError`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SCAN_SUFFIXES:
        raise ScanFormatError(path, f"unsupported scan type {suffix!r}; expected one of {', '.join(SCAN_SUFFIXES)}")
    if not path.is_file():
        raise ScanFormatError(path, "file does not exist")
    own = landmarks is None
    if suffix == ".wrl":
        scan = read_bu3dfe(path, load_texture=load_texture, landmarks=own)
    elif suffix == ".bnt":
        scan = read_bosphorus(path, load_texture=load_texture, landmarks=own)
    else:
        scan = read_mesh(path, load_texture=load_texture)
        if own:
            landmarks = find_landmark_file(path)
    if landmarks is not None:
        lms, scheme = load_landmarks(landmarks, vertices=scan.vertices)
        scan.landmarks, scan.landmark_scheme = lms, scheme
        if isinstance(landmarks, (str, Path)):
            scan.metadata["landmark_path"] = str(landmarks)
        scan.validate()
    return scan
