"""A built-in synthetic 2D+3D face input, so the demo runs with no data to download.

The face is procedural: an ellipsoidal head with a nose, brow ridges and a mouth in the depth map,
a shaded skin-coloured texture with darker eyes, brows and lips, and the salient-region mask
(eyebrows, eyes, nose, mouth) as the union of ellipses. It exercises the model end to end; it is
not a real face and the untrained model's probabilities on it mean nothing.
"""
from __future__ import annotations

import torch

# (centre y, centre x, half height, half width) in units of the image size, for a frontal face
_REGIONS = {
    "left_brow": (0.33, 0.35, 0.025, 0.09),
    "right_brow": (0.33, 0.65, 0.025, 0.09),
    "left_eye": (0.40, 0.36, 0.03, 0.07),
    "right_eye": (0.40, 0.64, 0.03, 0.07),
    "nose": (0.52, 0.50, 0.09, 0.06),
    "mouth": (0.70, 0.50, 0.04, 0.12),
}


def _ellipse(yy: torch.Tensor, xx: torch.Tensor, cy: float, cx: float, hy: float, hx: float) -> torch.Tensor:
    return (((yy - cy) / hy) ** 2 + ((xx - cx) / hx) ** 2) <= 1.0


def synthetic_face(size: int = 224, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A procedural frontal face: texture (3, S, S) in [0, 1], depth (1, S, S) in [0, 1] (nose
    bright, background 0) and a binary salient-region mask (1, S, S). ``seed`` jitters the shape."""
    if size < 32:
        raise ValueError(f"synthetic_face: size must be at least 32, got {size}")
    gen = torch.Generator().manual_seed(seed)
    jitter = (torch.rand(4, generator=gen) - 0.5) * 0.04
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    head = 1.0 - ((yy - 0.52 - jitter[0]) / 0.42) ** 2 - ((xx - 0.5 - jitter[1]) / 0.33) ** 2
    face = head > 0
    depth = head.clamp(min=0).sqrt() * 0.6
    depth = depth + 0.35 * torch.exp(-(((yy - 0.52) / 0.10) ** 2 + ((xx - 0.5) / 0.045) ** 2))  # nose
    depth = depth + 0.06 * torch.exp(-(((yy - 0.33) / 0.03) ** 2)) * face  # brow ridge
    depth = depth - 0.05 * torch.exp(-(((yy - 0.40) / 0.04) ** 2 + ((xx.sub(0.5).abs() - 0.14) / 0.06) ** 2))
    depth = depth + 0.04 * torch.exp(-(((yy - 0.70 - jitter[2]) / 0.03) ** 2 + ((xx - 0.5) / 0.1) ** 2))  # lips
    depth = torch.where(face, depth, torch.zeros_like(depth))
    depth = depth / depth.max()

    gy, gx = torch.gradient(depth)
    shade = (1.0 - 6.0 * (0.6 * gx + 0.4 * gy)).clamp(0.4, 1.2) * face
    skin = torch.tensor([0.86, 0.67, 0.55]).view(3, 1, 1)
    texture = skin * shade
    mask = torch.zeros(size, size, dtype=torch.bool)
    for name, (cy, cx, hy, hx) in _REGIONS.items():
        region = _ellipse(yy, xx, cy + float(jitter[3]) * (name == "mouth"), cx, hy, hx)
        mask |= region
        if name != "nose":
            darker = torch.tensor([0.35, 0.25, 0.22] if "brow" in name or "eye" in name else [0.6, 0.3, 0.3])
            texture = torch.where(region, texture * darker.view(3, 1, 1) / skin, texture)
    noise = torch.rand(3, size, size, generator=gen) * 0.03
    texture = (texture + noise * face).clamp(0, 1)
    return texture, depth.unsqueeze(0), mask.unsqueeze(0).float()
