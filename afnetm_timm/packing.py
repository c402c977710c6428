"""The packed input of AFNet-M: one ``(B, 7, H, W)`` tensor = texture RGB (3) + depth (3) + mask (1).

Every timm tool (tests, ``benchmark.py``, feature wrappers, ONNX export, Grad-CAM) feeds a model
one tensor, so AFNet-M takes its three inputs packed along the channel axis and splits them inside.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

TEXTURE_CHANNELS = slice(0, 3)
DEPTH_CHANNELS = slice(3, 6)
MASK_CHANNELS = slice(6, 7)
PACKED_CHANNELS = 7

#: The six prototypical expressions, in the order of the paper's confusion matrices (Fig. 4).
EXPRESSION_NAMES: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
#: Short codes used in the paper's figures (AN DI FE HA SA SU).
EXPRESSION_CODES: tuple[str, ...] = ("AN", "DI", "FE", "HA", "SA", "SU")

#: Per-channel normalisation of the packed input. Texture and the 3-channel depth image both feed
#: ImageNet-initialised ResNets, so both use ImageNet statistics; the mask passes unchanged
#: (mean 0, std 1) and stays in [0, 1].
PACKED_MEAN: tuple[float, ...] = tuple(IMAGENET_DEFAULT_MEAN) * 2 + (0.0,)
PACKED_STD: tuple[float, ...] = tuple(IMAGENET_DEFAULT_STD) * 2 + (1.0,)


class PackedInput(NamedTuple):
    """The three parts of a packed input: texture (…, 3, H, W), depth (…, 3, H, W), mask (…, 1, H, W)."""

    texture: torch.Tensor
    depth: torch.Tensor
    mask: torch.Tensor


def _as_tensor(name: str, value: torch.Tensor | np.ndarray) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"pack: {name} must be a torch.Tensor or numpy array, got {type(value).__name__}")
    return value


def pack(
    texture: torch.Tensor | np.ndarray,
    depth: torch.Tensor | np.ndarray,
    mask: torch.Tensor | np.ndarray,
) -> torch.Tensor:
    """Pack texture, depth and mask into AFNet-M's input tensor.

    Args:
        texture: (B, 3, H, W) or unbatched (3, H, W) RGB image.
        depth: (B, 3, H, W) or (B, 1, H, W) depth image (unbatched: (3|1, H, W)); one channel is
            replicated to three, as the paper feeds depth as a 3×224×224 image.
        mask: (B, 1, H, W) or (1, H, W) salient-region mask in [0, 1], soft or binary.

    Returns:
        (B, 7, H, W) (or (7, H, W) for unbatched inputs) in the floating dtype the inputs promote
        to (float32 for integer or boolean inputs).

    Raises:
        ValueError: naming the argument whose rank, channel count, batch size or spatial size is wrong.
    """
    parts = {"texture": _as_tensor("texture", texture), "depth": _as_tensor("depth", depth),
             "mask": _as_tensor("mask", mask)}
    ranks = {name: t.dim() for name, t in parts.items()}
    if len(set(ranks.values())) != 1 or ranks["texture"] not in (3, 4):
        raise ValueError(
            "pack: texture, depth and mask must all be batched (B, C, H, W) or all unbatched (C, H, W); "
            f"got ranks {ranks}"
        )
    unbatched = ranks["texture"] == 3
    if unbatched:
        parts = {name: t.unsqueeze(0) for name, t in parts.items()}
    texture_t, depth_t, mask_t = parts["texture"], parts["depth"], parts["mask"]
    if texture_t.shape[1] != 3:
        raise ValueError(f"pack: texture must have 3 (RGB) channels, got {texture_t.shape[1]}")
    if depth_t.shape[1] not in (1, 3):
        raise ValueError(f"pack: depth must have 1 or 3 channels, got {depth_t.shape[1]}")
    if mask_t.shape[1] != 1:
        raise ValueError(f"pack: mask must have 1 channel, got {mask_t.shape[1]}")
    shapes = {name: (t.shape[0], *t.shape[2:]) for name, t in parts.items()}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"pack: batch size and H×W must agree, got (B, H, W) = {shapes}")
    devices = {t.device for t in parts.values()}
    if len(devices) != 1:
        raise ValueError(f"pack: inputs are on different devices: {sorted(map(str, devices))}")
    dtype = torch.promote_types(torch.promote_types(texture_t.dtype, depth_t.dtype), mask_t.dtype)
    if not dtype.is_floating_point:
        dtype = torch.float32
    if depth_t.shape[1] == 1:
        depth_t = depth_t.expand(-1, 3, -1, -1)
    packed = torch.cat([texture_t.to(dtype), depth_t.to(dtype), mask_t.to(dtype)], dim=1)
    return packed[0] if unbatched else packed


def unpack(x: torch.Tensor) -> PackedInput:
    """Split a packed (B, 7, H, W) or (7, H, W) tensor into `PackedInput` views (no copy)."""
    if not isinstance(x, torch.Tensor) or x.dim() not in (3, 4) or x.shape[-3] != PACKED_CHANNELS:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"unpack: expected a (B, 7, H, W) or (7, H, W) tensor, got {shape}")
    return PackedInput(x[..., TEXTURE_CHANNELS, :, :], x[..., DEPTH_CHANNELS, :, :], x[..., MASK_CHANNELS, :, :])
