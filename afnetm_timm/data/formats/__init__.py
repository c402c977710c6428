"""Readers and writers of 3D face scan files: BU-3DFE ``.wrl``/``.bmp``/``.bnd``, Bosphorus
``.bnt``/``.png``/``.lm3``/``.lm2`` and generic meshes (OBJ/PLY/GLB via trimesh).

Every reader returns a validated `FaceScan`; every problem with an input raises `ScanFormatError`
naming the file and the problem.
"""
from ._raster import coverage_mask, interpolate_corners, rasterize_triangles
from .bnt import (
    BNT_STEP_MM,
    BNT_ZMIN,
    BntGrid,
    bnt_mesh,
    encode_bnt,
    parse_bnt,
    rasterize_scan,
    read_bnt,
    read_bosphorus,
    write_bnt,
    write_bosphorus,
)
from .landmarks import (
    BOSPHORUS_GROUPS,
    BOSPHORUS_LABELS,
    BU3DFE83_GROUPS,
    IBUG68_GROUPS,
    IBUG68_TO_BOSPHORUS,
    canonical_bosphorus_label,
    detect_scheme,
    group_names,
    ibug68_to_bosphorus,
    landmark_name,
    load_landmarks,
    parse_bnd,
    parse_lm2,
    parse_lm3,
    read_bnd,
    read_lm2,
    read_lm3,
    scheme_names,
    write_bnd,
    write_lm2,
    write_lm3,
)
from .mesh import MESH_SUFFIXES, read_mesh, write_mesh
from .names import parse_bosphorus_name, parse_bu3dfe_name, parse_scan_name
from .read import SCAN_SUFFIXES, find_landmark_file, read_scan
from .wrl import WrlShape, format_wrl, parse_wrl, read_bu3dfe, read_wrl, write_bu3dfe

__all__ = [
    "BNT_STEP_MM", "BNT_ZMIN", "BOSPHORUS_GROUPS", "BOSPHORUS_LABELS", "BU3DFE83_GROUPS", "IBUG68_GROUPS",
    "IBUG68_TO_BOSPHORUS", "MESH_SUFFIXES", "SCAN_SUFFIXES", "BntGrid", "bnt_mesh", "canonical_bosphorus_label",
    "coverage_mask", "detect_scheme", "encode_bnt", "find_landmark_file", "format_wrl", "group_names",
    "ibug68_to_bosphorus", "interpolate_corners", "rasterize_triangles",
    "landmark_name", "load_landmarks", "parse_bnd", "parse_bnt", "parse_bosphorus_name", "parse_bu3dfe_name",
    "parse_lm2", "parse_lm3", "parse_scan_name", "parse_wrl", "rasterize_scan", "read_bnd", "read_bnt",
    "read_bosphorus", "read_bu3dfe", "read_lm2", "read_lm3", "read_mesh", "read_scan", "read_wrl", "scheme_names",
    "WrlShape", "write_bnd", "write_bnt", "write_bosphorus", "write_bu3dfe", "write_lm2", "write_lm3", "write_mesh",
]
