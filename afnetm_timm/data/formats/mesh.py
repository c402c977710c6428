"""Generic textured or coloured meshes (OBJ, PLY, GLB/glTF, OFF, STL) through trimesh."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ScanFormatError
from ..scan import FaceScan
from ._util import _FORBIDDEN_IN_NAME, finish_scan, write_image

MESH_SUFFIXES: tuple[str, ...] = (".obj", ".ply", ".glb", ".gltf", ".off", ".stl")


def _safe_resolver(path: Path) -> Any:
    """A trimesh resolver that only serves plain file names from the mesh's folder and records problems."""
    import trimesh

    class _Resolver(trimesh.resolvers.Resolver):
        def __init__(self) -> None:
            self.folder = path.parent
            self.problems: list[str] = []
            self.served: list[str] = []

        def get(self, name: str) -> bytes:
            name = str(name).strip()
            if not name or any(b in name for b in _FORBIDDEN_IN_NAME):
                self.problems.append(f"file name {name!r} is not a plain file name in the mesh's folder")
                raise ValueError(self.problems[-1])
            target = self.folder / name
            if not target.is_file():
                self.problems.append(f"file {name!r} named in the mesh is missing from {self.folder}")
                raise FileNotFoundError(self.problems[-1])
            self.served.append(name)
            return target.read_bytes()

        def keys(self) -> list[str]:  # pragma: no cover - trimesh rarely asks
            return [p.name for p in self.folder.iterdir() if p.is_file()]

        def write(self, name: str, data: Any) -> None:  # pragma: no cover - read-only
            raise OSError("read-only resolver")

        def namespaced(self, namespace: str) -> Any:  # pragma: no cover - glTF sub-folders are refused
            self.problems.append(f"sub-folder {namespace!r} referenced by the mesh")
            raise ValueError(self.problems[-1])

    return _Resolver()


def _image_of(material: Any) -> np.ndarray | None:
    image = getattr(material, "image", None)
    if image is None:
        image = getattr(material, "baseColorTexture", None)
    if image is None:
        return None
    arr = np.asarray(image.convert("RGB"), dtype=np.uint8)
    if arr.shape[0] <= 2 and arr.shape[1] <= 2 and np.all(arr == arr[0, 0]):
        return None  # trimesh's placeholder for a material without an image
    return np.ascontiguousarray(arr)


def read_mesh(path: str | Path, *, load_texture: bool = True) -> FaceScan:
    """Read an OBJ/PLY/GLB/glTF/OFF/STL mesh via trimesh (units as stored, assumed mm).

    A texture (OBJ ``map_Kd``, PLY ``TextureFile`` comment, glTF base colour) must be a plain file
    name in the mesh's folder (with ``load_texture=False`` missing or refused side files are ignored); trimesh's bottom-left uv become top-left `corner_uv`. Vertex colours
    become `vertex_colors`. Vertices are not merged or reordered.
    """
    import trimesh

    path = Path(path)
    if not path.is_file():
        raise ScanFormatError(path, "file does not exist")
    resolver = _safe_resolver(path)
    try:
        loaded = trimesh.load(path, force="mesh", process=False, resolver=resolver)
    except Exception as exc:  # trimesh raises many types on bad input
        raise ScanFormatError(path, f"cannot read mesh: {type(exc).__name__}: {exc}") from exc
    if resolver.problems and load_texture:
        raise ScanFormatError(path, resolver.problems[0])
    if not isinstance(loaded, trimesh.Trimesh):
        raise ScanFormatError(path, f"no triangle mesh in the file (got {type(loaded).__name__}; empty mesh?)")
    if len(loaded.faces) == 0:
        raise ScanFormatError(path, "no triangles in the file (a point cloud, or an empty mesh?): the preprocessing "
                                    "needs a triangle mesh")
    vertices = np.asarray(loaded.vertices, dtype=np.float64)
    faces = np.asarray(loaded.faces, dtype=np.int64).reshape(-1, 3)
    texture = corner_uv = colors = None
    visual = loaded.visual
    kind = getattr(visual, "kind", None)
    if kind == "texture" and load_texture:
        uv = getattr(visual, "uv", None)
        image = _image_of(getattr(visual, "material", None))
        if uv is not None and image is not None and len(uv) == len(vertices):
            uv = np.asarray(uv, dtype=np.float64)
            corner_uv = np.stack([uv[faces][..., 0], 1.0 - uv[faces][..., 1]], axis=-1)
            texture = image
    elif kind == "vertex":
        vc = np.asarray(visual.vertex_colors)
        if vc.shape[0] == len(vertices):
            colors = vc[:, :3].astype(np.uint8)
    meta = {"source_path": str(path), "format": path.suffix.lower().lstrip("."), "texture_files": resolver.served}
    scan = FaceScan(vertices=vertices, faces=faces, vertex_colors=colors, texture=texture, corner_uv=corner_uv,
                    metadata=meta)
    return finish_scan(scan)


def split_seams(scan: FaceScan) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-vertex uv for exporters: one vertex per distinct (vertex, corner uv) pair.

    Returns (vertex index into scan.vertices (M,), uv (M, 2) top-left, faces (F, 3) into the M vertices).
    """
    f = np.asarray(scan.faces, dtype=np.int64)
    cuv = np.asarray(scan.corner_uv, dtype=np.float64).reshape(-1, 2)
    key = np.concatenate([f.reshape(-1, 1).astype(np.float64), cuv], axis=1)
    uniq, inv = np.unique(key, axis=0, return_inverse=True)
    return uniq[:, 0].astype(np.int64), uniq[:, 1:], inv.reshape(-1, 3)


def write_mesh(scan: FaceScan, path: str | Path) -> dict[str, Path]:
    """Write `scan` as OBJ (+ .mtl + .png), PLY (+ .png via a ``TextureFile`` comment), GLB, OFF or STL.

    Textured scans get one vertex per distinct (vertex, uv) pair so seams survive. Returns the
    written paths ('mesh', and 'png'/'mtl' when written).
    """
    import trimesh
    from PIL import Image
    from trimesh.exchange import obj as obj_io
    from trimesh.exchange import ply as ply_io

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise ValueError(f"unsupported mesh type {suffix!r}; use one of {MESH_SUFFIXES}")
    path.parent.mkdir(parents=True, exist_ok=True)
    v = np.asarray(scan.vertices, dtype=np.float64)
    out = {"mesh": path}
    textured = scan.texture is not None and scan.corner_uv is not None and suffix in (".obj", ".ply", ".glb", ".gltf")
    if textured:
        vid, uv, faces = split_seams(scan)
        image = Image.fromarray(np.asarray(scan.texture, dtype=np.uint8), mode="RGB")
        material = trimesh.visual.material.SimpleMaterial(image=image, name=path.stem)
        visual = trimesh.visual.TextureVisuals(uv=np.stack([uv[:, 0], 1.0 - uv[:, 1]], axis=1), material=material)
        mesh = trimesh.Trimesh(v[vid], faces, visual=visual, process=False)
    else:
        colors = None if scan.vertex_colors is None else np.asarray(scan.vertex_colors, dtype=np.uint8)
        mesh = trimesh.Trimesh(v, np.asarray(scan.faces, dtype=np.int64), vertex_colors=colors, process=False)
    if suffix == ".obj":
        text, files = obj_io.export_obj(mesh, include_normals=False, return_texture=True, mtl_name=f"{path.stem}.mtl",
                                        digits=10)
        path.write_text(text, encoding="utf-8")
        for name, data in files.items():
            (path.parent / name).write_bytes(data)
            out["mtl" if name.endswith(".mtl") else "png"] = path.parent / name
    elif suffix == ".ply":
        data = ply_io.export_ply(mesh, encoding="binary")
        if textured:
            png = path.with_suffix(".png")
            write_image(png, np.asarray(scan.texture, dtype=np.uint8))
            out["png"] = png
            head, rest = data.split(b"\n", 2)[:2], data.split(b"\n", 2)[2]
            data = b"\n".join([*head, f"comment TextureFile {png.name}".encode("ascii"), rest])
        path.write_bytes(data)
    else:
        mesh.export(path)
    return out
