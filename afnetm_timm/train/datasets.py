"""Expression datasets over the preprocessing cache (``afnetm preprocess`` / ``afnetm synthesize``).

A cache folder holds ``index.jsonl`` (one JSON object per sample: ``id``, ``file``, ``dataset``,
``subject``, ``expression``, ``intensity``, ``source``) and ``samples/<id>.npz`` (``texture`` (H, W, 3)
uint8, ``depth`` (H, W) uint8, ``mask`` (H, W) float16 in [0, 1]). `load_expression_data` selects
the samples of the paper's setting and holds them in memory as compact arrays (uint8 images, a
uint8 mask): 720 BU-3DFE samples at 224×224 take about 180 MB, small enough to keep resident on a
GPU for the whole protocol.
"""
from __future__ import annotations

import json
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..packing import EXPRESSION_NAMES

__all__ = [
    "DATASETS",
    "ExpressionData",
    "ExpressionDataset",
    "load_expression_data",
    "read_index",
]

#: Datasets the loader knows, with their default intensity levels (None: the dataset has no levels).
DATASETS: dict[str, tuple[int, ...] | None] = {
    "bu3dfe": (3, 4),  # the two highest of four levels: 60 subjects x 6 x 2 = 720 samples, the common setting
    "bosphorus": None,
    "synthetic": (3, 4),
}


@dataclass
class ExpressionData:
    """Samples of one dataset held in memory.

    Attributes:
        texture: (N, H, W, 3) uint8 RGB.
        depth: (N, H, W) uint8, nose bright.
        mask: (N, H, W) uint8, salient-region mask scaled to 0..255.
        labels: (N,) int64 indices into ``label_names``.
        subjects: (N,) subject ids (str).
        ids: sample ids of the cache.
        dataset: dataset name ('bu3dfe', 'bosphorus', 'synthetic', ...).
        label_names: class names in label order (the paper's AN DI FE HA SA SU).
        meta: free-form facts about the selection (cache path, intensity levels).
    """

    texture: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    subjects: np.ndarray
    ids: list[str]
    dataset: str
    label_names: tuple[str, ...] = EXPRESSION_NAMES
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the images."""
        return tuple(self.texture.shape[1:3])  # type: ignore[return-value]

    @property
    def subject_ids(self) -> list[str]:
        """The distinct subjects, sorted."""
        return sorted(set(self.subjects.tolist()))

    def subset(self, index: Sequence[int] | np.ndarray) -> ExpressionData:
        """The samples at ``index`` (a copy)."""
        index = np.asarray(index, dtype=np.int64)
        return ExpressionData(
            self.texture[index], self.depth[index], self.mask[index], self.labels[index], self.subjects[index],
            [self.ids[i] for i in index], self.dataset, self.label_names, dict(self.meta),
        )

    def of_subjects(self, subjects: Iterable[str]) -> ExpressionData:
        """The samples of the given subjects; a ValueError names subjects the data lacks."""
        wanted = set(subjects)
        missing = wanted - set(self.subjects.tolist())
        if missing:
            raise ValueError(f"subjects not in the {self.dataset} data: {sorted(missing)[:10]}")
        return self.subset(np.flatnonzero(np.isin(self.subjects, sorted(wanted))))

    def packed_uint8(self) -> torch.Tensor:
        """All samples as one (N, 5, H, W) uint8 tensor: texture RGB, depth, mask (depth is repeated to 3
        channels, and everything normalised, on the device by `afnetm_timm.train.augment.to_model_input`)."""
        arrays = np.concatenate([self.texture, self.depth[..., None], self.mask[..., None]], axis=-1)
        return torch.from_numpy(np.ascontiguousarray(arrays)).permute(0, 3, 1, 2).contiguous()

    def class_counts(self) -> dict[str, int]:
        """Samples per class."""
        counts = np.bincount(self.labels, minlength=len(self.label_names))
        return {name: int(c) for name, c in zip(self.label_names, counts, strict=True)}


def read_index(cache_dir: str | Path) -> list[dict[str, Any]]:
    """The records of ``cache_dir/index.jsonl``; a ValueError names a missing or malformed index."""
    cache_dir = Path(cache_dir)
    index = cache_dir / "index.jsonl"
    if not index.is_file():
        raise ValueError(f"{cache_dir} is not a preprocessing cache: no index.jsonl (make one with "
                         "'afnetm preprocess' or 'afnetm synthesize')")
    records = []
    for number, line in enumerate(index.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{index}:{number}: not valid JSON ({err})") from err
        for key in ("id", "file", "subject", "expression"):
            if key not in record:
                raise ValueError(f"{index}:{number}: the record lacks {key!r}")
        records.append(record)
    return records


def _infer_dataset(records: list[dict[str, Any]], cache_dir: Path) -> str:
    names = {r.get("dataset") for r in records}
    if len(names) != 1 or None in names:
        raise ValueError(f"{cache_dir}: the cache mixes datasets {sorted(map(str, names))}; pass dataset=")
    return str(names.pop())


def load_expression_data(
    cache_dir: str | Path,
    dataset: str | None = None,
    intensities: Sequence[int] | None = None,
    subjects: Iterable[str] | None = None,
    label_names: Sequence[str] = EXPRESSION_NAMES,
) -> ExpressionData:
    """Load the six-expression samples of a preprocessing cache into memory.

    Args:
        cache_dir: folder written by ``afnetm preprocess`` or ``afnetm synthesize``.
        dataset: 'bu3dfe', 'bosphorus', 'synthetic' or another name in the index; None: the one the index holds.
        intensities: intensity levels to keep (BU-3DFE and synthetic: 1-4, default the two highest, 3 and 4);
            ignored for datasets without levels (Bosphorus: its six emotion scans ``E_*``).
        subjects: keep only these subjects (e.g. the protocol's saved 60-subject selection).
        label_names: the classes, in label order; samples of other expressions (neutral) are skipped.

    Raises:
        ValueError: no index, an unknown dataset, no sample left after the selection, images of mixed sizes.
    """
    cache_dir = Path(cache_dir)
    records = read_index(cache_dir)
    if dataset is None:
        dataset = _infer_dataset(records, cache_dir)
    records = [r for r in records if r.get("dataset") == dataset]
    if not records:
        raise ValueError(f"{cache_dir}: no {dataset!r} samples in index.jsonl")
    levels = DATASETS.get(dataset)
    if intensities is not None or levels is not None:
        keep = tuple(intensities) if intensities is not None else levels
        if any(r.get("intensity") is not None for r in records):
            records = [r for r in records if r.get("intensity") is None or int(r["intensity"]) in keep]
    else:
        keep = None
    classes = {name: i for i, name in enumerate(label_names)}
    records = [r for r in records if r["expression"] in classes]
    if subjects is not None:
        wanted = set(subjects)
        present = {r["subject"] for r in records}
        missing = wanted - present
        if missing:
            raise ValueError(f"{cache_dir}: {len(missing)} selected subjects have no samples: {sorted(missing)[:10]}")
        records = [r for r in records if r["subject"] in wanted]
    if not records:
        raise ValueError(f"{cache_dir}: no {dataset} samples of the classes {list(label_names)} "
                         f"(intensities {keep}) in index.jsonl")
    records.sort(key=lambda r: r["id"])
    textures, depths, masks = [], [], []
    for r in records:
        path = cache_dir / r["file"]
        try:
            with np.load(path, allow_pickle=False) as data:
                texture, depth, mask = data["texture"], data["depth"], data["mask"]
        except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise ValueError(f"{path}: unreadable cached sample ({err}); rerun the preprocessing") from err
        if depth.ndim == 3:
            depth = depth[..., 0]
        if texture.ndim != 3 or texture.shape[2] != 3 or depth.shape != texture.shape[:2] or mask.shape != depth.shape:
            raise ValueError(f"{path}: corrupt cached sample (texture {texture.shape}, depth {depth.shape}, mask "
                             f"{mask.shape}; expected (H, W, 3), (H, W), (H, W)); rerun the preprocessing")
        if textures and texture.shape != textures[0].shape:
            raise ValueError(f"{path}: image size {texture.shape[:2]} differs from {textures[0].shape[:2]} "
                             "of the other samples (preprocess all at one --size)")
        textures.append(texture)
        depths.append(depth if depth.dtype == np.uint8 else np.clip(depth * 255 + 0.5, 0, 255).astype(np.uint8))
        masks.append(np.clip(mask.astype(np.float32) * 255 + 0.5, 0, 255).astype(np.uint8))
    return ExpressionData(
        texture=np.stack(textures),
        depth=np.stack(depths),
        mask=np.stack(masks),
        labels=np.array([classes[r["expression"]] for r in records], dtype=np.int64),
        subjects=np.array([str(r["subject"]) for r in records]),
        ids=[r["id"] for r in records],
        dataset=dataset,
        label_names=tuple(label_names),
        meta={"cache": str(cache_dir), "intensities": list(keep) if keep else None},
    )


class ExpressionDataset(torch.utils.data.Dataset):
    """A map-style dataset of ``(packed (7, H, W) tensor, label)`` for a plain DataLoader loop.

    ``transform`` is an `afnetm_timm.data.transforms.AFNetMTransform` (albumentations on the CPU); the
    trainer's default path instead keeps the data on the device and augments there.
    """

    def __init__(self, data: ExpressionData, transform) -> None:
        self.data = data
        self.transform = transform

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        d = self.data
        x = self.transform(d.texture[i], d.depth[i], d.mask[i].astype(np.float32) / 255.0)
        return x, int(d.labels[i])
