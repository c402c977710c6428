"""Transforms: one geometry for texture, depth and mask; photometry on the texture only; packing."""
import albumentations as A
import numpy as np
import pytest
import torch

from afnetm_timm import PACKED_MEAN, PACKED_STD, unpack
from afnetm_timm.data.transforms import AFNetMTransform, PackToTensor, PairedTransform, train_transform


def _sample(size: int = 64):
    rng = np.random.default_rng(0)
    base = np.zeros((size, size), np.float32)
    base[10:30, 5:25] = 1.0  # an off-centre square, so flips and shifts are visible
    texture = np.repeat((base * 200 + 20).astype(np.uint8)[..., None], 3, axis=2)
    texture = np.clip(texture.astype(int) + rng.integers(0, 5, texture.shape), 0, 255).astype(np.uint8)
    depth = base.copy()
    mask = base.copy()
    return texture, depth, mask, base


def test_geometric_transforms_move_all_three_together() -> None:
    texture, depth, mask, base = _sample()
    t = PairedTransform([A.HorizontalFlip(p=1.0), A.Affine(rotate=(20, 20), translate_percent=(0.1, 0.1), p=1.0,
                                                             mask_interpolation=1)], seed=0)
    out = t(image=texture, depth=depth, mask=mask)
    moved_texture = (out["image"][..., 0] > 110).astype(np.float32)
    moved_depth = (out["depth"] > 0.5).astype(np.float32)
    moved_mask = (out["mask"] > 0.5).astype(np.float32)
    assert (moved_depth != (base > 0.5)).any()  # the transform did move things
    assert np.mean(moved_texture != moved_depth) < 0.01
    assert np.mean(moved_mask != moved_depth) < 0.01


def test_photometric_transforms_touch_the_texture_only() -> None:
    texture, depth, mask, _ = _sample()
    t = PairedTransform(photometric=[A.ColorJitter(0.5, 0.5, 0.5, 0.1, p=1.0)], seed=0)
    out = t(image=texture, depth=depth, mask=mask)
    assert not np.array_equal(out["image"], texture)
    np.testing.assert_array_equal(out["depth"], depth)
    np.testing.assert_array_equal(out["mask"], mask)


def test_train_transform_is_seeded_and_resizes() -> None:
    texture, depth, mask, _ = _sample(80)
    a = train_transform(size=64, seed=3)(image=texture, depth=depth, mask=mask)
    b = train_transform(size=64, seed=3)(image=texture, depth=depth, mask=mask)
    assert a["image"].shape == (64, 64, 3) and a["depth"].shape == (64, 64) and a["mask"].shape == (64, 64)
    np.testing.assert_array_equal(a["image"], b["image"])


def test_pack_to_tensor_normalises_with_the_model_config() -> None:
    texture, depth, mask, _ = _sample()
    x = PackToTensor()(image=texture, depth=depth, mask=mask)
    assert x.shape == (7, 64, 64) and x.dtype == torch.float32
    parts = unpack(x * torch.tensor(PACKED_STD).view(7, 1, 1) + torch.tensor(PACKED_MEAN).view(7, 1, 1))
    torch.testing.assert_close(parts.texture, torch.from_numpy(texture).permute(2, 0, 1).float() / 255)
    torch.testing.assert_close(parts.depth, torch.from_numpy(depth).expand(3, -1, -1))
    torch.testing.assert_close(x[6], torch.from_numpy(mask))  # the mask passes unchanged


def test_afnetm_transform_feeds_the_model() -> None:
    import timm

    import afnetm_timm  # noqa: F401

    model = timm.create_model("afnet_m_2d").eval()
    texture, depth, mask, _ = _sample(96)
    x = AFNetMTransform(model.pretrained_cfg, train=True, size=64, seed=0)(texture, depth, mask)
    assert x.shape == (7, 64, 64)
    with torch.no_grad():
        assert model(x.unsqueeze(0)).shape == (1, 6)


@pytest.mark.parametrize(
    ("texture", "depth", "mask", "message"),
    [
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8)), np.zeros((8, 8)), "texture must be"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 2)), np.zeros((8, 8)), "depth must be"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8)), np.zeros((8, 9)), "share H×W"),
        (np.zeros((8, 8, 3), np.uint8), np.full((8, 8), np.nan), np.zeros((8, 8)), "NaN"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8)), np.full((8, 8), 3.0), r"\[0, 1\]"),
    ],
)
def test_bad_samples_get_clear_errors(texture, depth, mask, message) -> None:
    with pytest.raises(ValueError, match=message):
        PackToTensor()(image=texture, depth=depth, mask=mask)
