"""Batched augmentation on the device, for data held resident as uint8 tensors.

The same augmentation as `afnetm_timm.data.transforms.train_transform` (flip, small affine on texture,
depth and mask alike; brightness/contrast/saturation jitter on the texture only), computed for a
whole batch with one ``grid_sample`` instead of per sample on the CPU. Random parameters come from a
CPU ``torch.Generator``, so a run is reproducible and identical on every device.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = ["AugmentConfig", "augment_batch", "to_model_input"]


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation settings (the paper does not describe its own; these are mild, common choices).

    Attributes:
        hflip: probability of a horizontal flip.
        scale: (min, max) zoom factor.
        rotate: maximum rotation in degrees (uniform in ±rotate).
        translate: maximum shift as a fraction of the image size.
        affine_p: probability of applying the affine part.
        color_jitter: brightness, contrast and saturation jitter strength on the texture.
    """

    hflip: float = 0.5
    scale: tuple[float, float] = (0.9, 1.1)
    rotate: float = 10.0
    translate: float = 0.05
    affine_p: float = 0.8
    color_jitter: float = 0.2

    @classmethod
    def none(cls) -> AugmentConfig:
        """No augmentation at all."""
        return cls(hflip=0.0, scale=(1.0, 1.0), rotate=0.0, translate=0.0, affine_p=0.0, color_jitter=0.0)

    @property
    def enabled(self) -> bool:
        return self != AugmentConfig.none()


def to_model_input(
    batch: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """(B, 5, H, W) uint8 (texture RGB, depth, mask) → normalised packed (B, 7, H, W) model input.

    The depth channel is repeated three times (the paper feeds a 3-channel depth image).
    """
    if batch.ndim != 4 or batch.shape[1] != 5:
        raise ValueError(f"expected a (B, 5, H, W) batch (texture, depth, mask), got {tuple(batch.shape)}")
    x = batch.to(dtype) / 255.0 if batch.dtype == torch.uint8 else batch.to(dtype)
    x = torch.cat([x[:, 0:3], x[:, 3:4].expand(-1, 3, -1, -1), x[:, 4:5]], dim=1)
    m = torch.tensor(mean, dtype=dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, dtype=dtype, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def augment_batch(batch: torch.Tensor, config: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """Augment a (B, 5, H, W) uint8 or float batch (texture RGB, depth, mask); returns float32 in [0, 1].

    Geometry (flip, zoom, rotation, shift; bilinear, zero fill) moves all five channels together;
    colour jitter changes the texture channels only.
    """
    x = batch.float() / 255.0 if batch.dtype == torch.uint8 else batch.float()
    if not config.enabled:
        return x
    n = x.shape[0]
    # every random number is drawn, in a fixed order, whatever the settings: a run is reproducible
    flip = torch.rand(n, generator=generator) < config.hflip
    apply = torch.rand(n, generator=generator) < config.affine_p
    zoom = _uniform(n, *config.scale, generator)
    angle = _uniform(n, -config.rotate, config.rotate, generator) * (math.pi / 180)
    shift = _uniform(2 * n, -config.translate, config.translate, generator).view(n, 2) * 2  # grid units: [-1, 1]
    jitter = _uniform(3 * n, 1 - config.color_jitter, 1 + config.color_jitter, generator).view(n, 3)

    zoom = torch.where(apply, zoom, torch.ones_like(zoom))
    angle = torch.where(apply, angle, torch.zeros_like(angle))
    shift = torch.where(apply[:, None], shift, torch.zeros_like(shift))
    sign = torch.where(flip, -1.0, 1.0)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # output pixel -> input location: flip, then inverse rotation and zoom, then shift
    theta = torch.stack([
        torch.stack([cos * sign, -sin, shift[:, 0]], dim=1),
        torch.stack([sin * sign, cos, shift[:, 1]], dim=1),
    ], dim=1).to(device=x.device, dtype=x.dtype)
    if bool(flip.any()) or bool(apply.any()):
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    if config.color_jitter:
        brightness, contrast, saturation = (j.to(device=x.device, dtype=x.dtype).view(n, 1, 1, 1) for j in jitter.T)
        texture = x[:, 0:3] * brightness
        grey = (0.299 * texture[:, 0:1] + 0.587 * texture[:, 1:2] + 0.114 * texture[:, 2:3])
        texture = (texture - grey.mean(dim=(2, 3), keepdim=True)) * contrast + grey.mean(dim=(2, 3), keepdim=True)
        grey = (0.299 * texture[:, 0:1] + 0.587 * texture[:, 1:2] + 0.114 * texture[:, 2:3])
        texture = (texture - grey) * saturation + grey
        x = torch.cat([texture.clamp(0, 1), x[:, 3:]], dim=1)
    return x
