"""The demo's data path: a built-in synthetic 3D face scan → preprocessing → packed input, and a PNG panel.

The scan is procedural (`afnetm_timm.data.synthetic_face_scan`): no data to download. It goes through
the real pipeline (pose normalisation, gridfit resampling of depth and texture, salient-region masks),
so the demo exercises the whole path a BU-3DFE or Bosphorus scan takes.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._atomic import atomic_path, require_suffix
from .data import preprocess_scan, synthetic_face_scan
from .data.pipeline import PreprocessedSample
from .data.transforms import AFNetMTransform


def demo_sample(expression: str = "happiness", size: int = 224, seed: int = 0) -> PreprocessedSample:
    """Preprocess the built-in synthetic scan of ``expression`` at ``size``×``size``."""
    scan = synthetic_face_scan(expression=expression, identity_seed=seed)
    return preprocess_scan(scan, size=size)


def demo_input(sample: PreprocessedSample, cfg: Mapping[str, Any]) -> torch.Tensor:
    """The sample as a normalised packed (1, 7, H, W) batch for a model with pretrained_cfg ``cfg``."""
    size = sample.texture.shape[0]
    return AFNetMTransform(cfg, train=False, size=size)(sample.texture, sample.depth, sample.mask).unsqueeze(0)


def save_panel(path: str | Path, sample: PreprocessedSample, probs: Sequence[float], labels: Sequence[str],
               title: str = "") -> Path:
    """Write a PNG: texture, depth, mask overlay, the 56×56 and 28×28 masks, class probabilities (atomic)."""
    path = require_suffix(path, ".png", "the demo panel")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, axes = plt.subplots(1, 6, figsize=(18, 3.4), gridspec_kw={"width_ratios": [1, 1, 1, 1, 1, 1.4]})
    overlay = sample.texture.astype(np.float32) / 255
    overlay = overlay * 0.6 + np.stack([sample.mask, np.zeros_like(sample.mask), np.zeros_like(sample.mask)], -1) * 0.4
    depth = sample.depth[..., 0].astype(np.float32)
    depth = depth / 255 if sample.depth.dtype == np.uint8 else depth
    images = [(sample.texture, "texture"), (depth, "depth"), (overlay, "mask over texture"),
              (sample.mask_56, "Mask-1 (56×56)"), (sample.mask_28, "Mask-2 (28×28)")]
    for ax, (image, name) in zip(axes[:5], images, strict=True):
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=None if image.ndim == 3 else 1)
        ax.set_title(name)
        ax.axis("off")
    ax = axes[5]
    ax.barh(list(labels)[::-1], list(probs)[::-1], color="tab:blue")
    ax.set_xlim(0, 1)
    ax.set_title("class probabilities")
    fig.suptitle(title)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:  # never a partial PNG
            fig.savefig(tmp, format="png", dpi=80)
    finally:
        plt.close(fig)
    return path
