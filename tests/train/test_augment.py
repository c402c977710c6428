"""On-device batch augmentation and input normalisation."""
from __future__ import annotations

import numpy as np
import torch

from afnetm_timm.data.transforms import PackToTensor
from afnetm_timm.packing import PACKED_MEAN, PACKED_STD
from afnetm_timm.train.augment import AugmentConfig, augment_batch, to_model_input


def _batch(n: int = 4, size: int = 32) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 5, size, size), generator=g, dtype=torch.uint8)


def test_no_augmentation_is_identity() -> None:
    x = _batch()
    out = augment_batch(x, AugmentConfig.none(), torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, x.float() / 255)


def test_flip_only_equals_torch_flip() -> None:
    x = _batch()
    cfg = AugmentConfig(hflip=1.0, scale=(1.0, 1.0), rotate=0.0, translate=0.0, affine_p=0.0, color_jitter=0.0)
    out = augment_batch(x, cfg, torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, x.float().flip(-1) / 255, atol=1e-5, rtol=0)


def test_geometry_moves_all_channels_together_and_colour_only_texture() -> None:
    base = _batch(6)[:, :1].expand(-1, 5, -1, -1).contiguous()  # five identical channels
    geometric = AugmentConfig(color_jitter=0.0, affine_p=1.0)
    out = augment_batch(base, geometric, torch.Generator().manual_seed(2))
    for c in range(1, 5):
        torch.testing.assert_close(out[:, c], out[:, 0])
    assert not torch.allclose(out, base.float() / 255)  # something moved
    colour = AugmentConfig(hflip=0.0, affine_p=0.0, color_jitter=0.4)
    out = augment_batch(base, colour, torch.Generator().manual_seed(2))
    torch.testing.assert_close(out[:, 3:], base[:, 3:].float() / 255)  # depth and mask untouched
    assert not torch.allclose(out[:, :3], base[:, :3].float() / 255)
    assert out.min() >= 0 and out.max() <= 1


def test_augmentation_is_reproducible() -> None:
    x = _batch()
    a = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(5))
    b = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(5))
    c = augment_batch(x, AugmentConfig(), torch.Generator().manual_seed(6))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, c)


def test_to_model_input_matches_pack_to_tensor() -> None:
    x = _batch(2)
    ours = to_model_input(x, PACKED_MEAN, PACKED_STD)
    arrays = x.permute(0, 2, 3, 1).numpy()
    for i in range(2):
        ref = PackToTensor()(image=arrays[i, ..., :3], depth=arrays[i, ..., 3], mask=arrays[i, ..., 4] / 255.0)
        torch.testing.assert_close(ours[i], ref, atol=1e-5, rtol=0)
    assert ours.shape == (2, 7, 32, 32) and np.isfinite(ours.numpy()).all()
