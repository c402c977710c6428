"""Albumentations-compatible transforms for (texture, depth, mask) samples, and packing into AFNet-M's input.

Geometric augmentations move the texture, the depth image and the mask together (one set of random
parameters); photometric augmentations touch the texture only (a depth image has no colour, a
mask no brightness). `PackToTensor` normalises with the model's ``pretrained_cfg`` mean/std and
returns the packed ``(7, H, W)`` tensor.

Arrays: ``texture`` (H, W, 3) uint8 RGB; ``depth`` (H, W) or (H, W, 1|3), uint8 or float in [0, 1];
``mask`` (H, W) float in [0, 1] (binary or soft) or uint8 {0, 1} / {0, 255}.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch

from ..packing import PACKED_MEAN, PACKED_STD, pack


def _check_sample(texture: np.ndarray, depth: np.ndarray, mask: np.ndarray) -> None:
    if texture.ndim != 3 or texture.shape[2] != 3:
        raise ValueError(f"texture must be an (H, W, 3) RGB array, got shape {texture.shape}")
    if depth.ndim not in (2, 3) or (depth.ndim == 3 and depth.shape[2] not in (1, 3)):
        raise ValueError(f"depth must be (H, W) or (H, W, 1|3), got shape {depth.shape}")
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    sizes = {"texture": texture.shape[:2], "depth": depth.shape[:2], "mask": mask.shape}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"texture, depth and mask must share H×W, got {sizes}")


class PairedTransform:
    """Apply ``geometric`` to texture, depth and mask alike and ``photometric`` to the texture only.

    Called like an albumentations transform: ``t(image=texture, depth=depth, mask=mask)`` returns a
    dict with the same keys. ``geometric`` and ``photometric`` are albumentations transforms (or
    lists of them). Masks are interpolated linearly by geometric transforms built here, so soft
    masks stay soft.
    """

    def __init__(
        self,
        geometric: Sequence[A.BasicTransform] | A.BasicTransform | None = None,
        photometric: Sequence[A.BasicTransform] | A.BasicTransform | None = None,
        seed: int | None = None,
    ) -> None:
        def as_list(t):
            return [] if t is None else [t] if isinstance(t, A.BasicTransform) else list(t)

        self.geometric = A.Compose(as_list(geometric), additional_targets={"depth": "image"}, seed=seed)
        self.photometric = A.Compose(as_list(photometric), seed=None if seed is None else seed + 1)

    def __call__(self, *, image: np.ndarray, depth: np.ndarray, mask: np.ndarray, **_: Any) -> dict[str, np.ndarray]:
        _check_sample(image, depth, mask)
        out = self.geometric(image=image, depth=depth, mask=mask)
        out["image"] = self.photometric(image=out["image"])["image"]
        return {"image": out["image"], "depth": out["depth"], "mask": out["mask"]}

    def __repr__(self) -> str:
        return f"PairedTransform(geometric={self.geometric.transforms}, photometric={self.photometric.transforms})"


def train_transform(
    size: int = 224,
    hflip: bool = True,
    scale: tuple[float, float] = (0.9, 1.1),
    rotate: tuple[float, float] = (-10.0, 10.0),
    translate: float = 0.05,
    color_jitter: float = 0.2,
    seed: int | None = None,
) -> PairedTransform:
    """Default training augmentation: flip, small affine and resize (all three), colour jitter (texture).

    The paper does not describe its augmentation; these are common, mild choices, all optional.
    """
    geometric: list[A.BasicTransform] = []
    if hflip:
        geometric.append(A.HorizontalFlip(p=0.5))
    if scale != (1.0, 1.0) or rotate != (0.0, 0.0) or translate:
        geometric.append(A.Affine(scale=scale, rotate=rotate, translate_percent=(-translate, translate),
                                  interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_LINEAR,
                                  border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=0, p=0.8))
    geometric.append(A.Resize(size, size, interpolation=cv2.INTER_AREA, mask_interpolation=cv2.INTER_AREA))
    photometric = [A.ColorJitter(color_jitter, color_jitter, color_jitter, 0.02, p=0.8)] if color_jitter else []
    return PairedTransform(geometric, photometric, seed=seed)


def eval_transform(size: int = 224) -> PairedTransform:
    """Evaluation: resize (area) only."""
    return PairedTransform([A.Resize(size, size, interpolation=cv2.INTER_AREA, mask_interpolation=cv2.INTER_AREA)])


def _to_unit(name: str, array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if np.issubdtype(array.dtype, np.bool_):
        return array.astype(np.float32)
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name} must be uint8, bool or float, got {array.dtype}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} has NaN or infinite values")
    return array.astype(np.float32, copy=False)


class PackToTensor:
    """(texture, depth, mask) arrays → normalised packed (7, H, W) float tensor.

    uint8 inputs are scaled to [0, 1]; a mask given as {0, 255} uint8 becomes {0, 1}. ``mean`` and
    ``std`` are the 7 per-channel values of the model's ``pretrained_cfg`` (default: this package's
    `PACKED_MEAN` / `PACKED_STD`, which leave the mask unchanged).
    """

    def __init__(self, mean: Sequence[float] = PACKED_MEAN, std: Sequence[float] = PACKED_STD) -> None:
        if len(mean) != 7 or len(std) != 7:
            raise ValueError(f"mean and std need 7 values (texture 3, depth 3, mask 1), got {len(mean)} and {len(std)}")
        self.mean = torch.tensor(mean, dtype=torch.float32).view(7, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(7, 1, 1)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> PackToTensor:
        """From a timm ``pretrained_cfg`` (``model.pretrained_cfg``) or data config."""
        return cls(cfg["mean"], cfg["std"])

    def __call__(self, *, image: np.ndarray, depth: np.ndarray, mask: np.ndarray, **_: Any) -> torch.Tensor:
        _check_sample(image, depth, mask)
        texture = torch.from_numpy(np.ascontiguousarray(_to_unit("texture", image))).permute(2, 0, 1)
        depth_t = torch.from_numpy(np.ascontiguousarray(_to_unit("depth", depth)))
        depth_t = depth_t.unsqueeze(0) if depth_t.ndim == 2 else depth_t.permute(2, 0, 1)
        mask_t = torch.from_numpy(np.ascontiguousarray(_to_unit("mask", mask)))
        if mask_t.max() > 1.0:
            raise ValueError(f"mask values must lie in [0, 1] (or uint8), got max {float(mask_t.max())}")
        return (pack(texture, depth_t, mask_t.unsqueeze(0)) - self.mean) / self.std


class AFNetMTransform:
    """Augment (or resize) and pack a sample: ``AFNetMTransform(model.pretrained_cfg, train=True)``.

    ``t(texture, depth, mask)`` → normalised (7, size, size) tensor.
    """

    def __init__(self, cfg: Mapping[str, Any] | None = None, train: bool = False, size: int | None = None,
                 seed: int | None = None, **augment: Any) -> None:
        cfg = dict(cfg or {"mean": PACKED_MEAN, "std": PACKED_STD, "input_size": (7, 224, 224)})
        size = size or int(cfg.get("input_size", (7, 224, 224))[-1])
        self.augment = train_transform(size, seed=seed, **augment) if train else eval_transform(size)
        self.pack = PackToTensor.from_config(cfg)

    def __call__(self, texture: np.ndarray, depth: np.ndarray, mask: np.ndarray) -> torch.Tensor:
        return self.pack(**self.augment(image=texture, depth=depth, mask=mask))
