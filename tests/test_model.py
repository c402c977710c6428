"""AFNetM: packing, the variants' structure and behaviour, intermediates, bad inputs, device/dtype, pretrained."""
import copy

import pytest
import timm
import torch

import afnetm_timm
from afnetm_timm import AFNetM, pack, unpack
from afnetm_timm.layers import AdaptiveFusion, MaskAttention, SumFusion

SIZE = 64


def _input(batch: int = 2, size: int = SIZE) -> torch.Tensor:
    return pack(torch.rand(batch, 3, size, size), torch.rand(batch, 1, size, size),
                (torch.rand(batch, 1, size, size) > 0.5).float())


def _randomize_attention(model: torch.nn.Module) -> None:
    """Move MA/AF away from their near-identity initialisation so every input visibly matters."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (MaskAttention, AdaptiveFusion)):
                for p in m.parameters():
                    p.normal_(0, 0.2)


# --- packing ---------------------------------------------------------------------------------------

def test_pack_and_unpack_round_trip() -> None:
    texture, depth, mask = torch.rand(2, 3, 8, 8), torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 8)
    x = pack(texture, depth, mask)
    assert x.shape == (2, 7, 8, 8)
    parts = unpack(x)
    torch.testing.assert_close(parts.texture, texture)
    torch.testing.assert_close(parts.depth, depth.expand(-1, 3, -1, -1))  # 1-channel depth replicated
    torch.testing.assert_close(parts.mask, mask)


def test_pack_unbatched_numpy_and_integer_inputs() -> None:
    import numpy as np

    x = pack(np.full((3, 4, 4), 255, np.uint8), torch.zeros(3, 4, 4), torch.ones(1, 4, 4, dtype=torch.bool))
    assert x.shape == (7, 4, 4) and x.dtype == torch.float32
    assert x[:3].eq(255).all() and x[6].eq(1).all()


@pytest.mark.parametrize(
    ("texture", "depth", "mask", "message"),
    [
        ((2, 4, 8, 8), (2, 3, 8, 8), (2, 1, 8, 8), "texture must have 3"),
        ((2, 3, 8, 8), (2, 2, 8, 8), (2, 1, 8, 8), "depth must have 1 or 3"),
        ((2, 3, 8, 8), (2, 3, 8, 8), (2, 3, 8, 8), "mask must have 1"),
        ((2, 3, 8, 8), (3, 3, 8, 8), (2, 1, 8, 8), "batch size and H×W must agree"),
        ((2, 3, 8, 8), (2, 3, 8, 8), (2, 1, 8, 9), "batch size and H×W must agree"),
        ((2, 3, 8, 8), (3, 8, 8), (2, 1, 8, 8), "all be batched"),
    ],
)
def test_pack_rejects_bad_shapes(texture, depth, mask, message) -> None:
    with pytest.raises(ValueError, match=message):
        pack(torch.rand(texture), torch.rand(depth), torch.rand(mask))


def test_unpack_rejects_wrong_channels() -> None:
    with pytest.raises(ValueError, match=r"\(B, 7, H, W\)"):
        unpack(torch.rand(2, 6, 8, 8))


# --- structure of the variants -----------------------------------------------------------------------

def test_afnet_m_structure_follows_the_paper() -> None:
    model = timm.create_model("afnet_m")
    assert model.in_chans == 7 and model.num_classes == 6
    assert model.pretrained_cfg["label_names"] == ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
    assert model.pretrained_cfg["input_size"] == (7, 224, 224) and len(model.pretrained_cfg["mean"]) == 7
    for idx, stage in enumerate(model.stages, start=1):
        width = (64, 128, 256, 512)[idx - 1]
        assert stage.depth_blocks is not None  # the depth branch runs up to the last fusion (Layer4)
        if idx in (1, 2):  # MA after Layer1 and Layer2, in both branches
            assert isinstance(stage.mask_attn, MaskAttention) and isinstance(stage.depth_mask_attn, MaskAttention)
            assert stage.mask_attn.channels == width and stage.fusion is None
        else:  # AF after Layer3 and Layer4
            assert stage.mask_attn is None and isinstance(stage.fusion, AdaptiveFusion)
            assert stage.fusion.channels == width
    # both branches are timm ResNet18 trunks: same parameter count as timm's resnet18 without its fc
    resnet18 = timm.create_model("resnet18", num_classes=0)
    trunk = sum(p.numel() for n, p in model.named_parameters()
                if n.startswith("stem.") or (n.startswith("stages.") and ".blocks." in n))
    assert trunk == sum(p.numel() for p in resnet18.parameters())


@pytest.mark.parametrize(
    ("variant", "mask", "fusion", "has_depth"),
    [
        ("afnet_m_no_ma", False, AdaptiveFusion, True),
        ("afnet_m_no_af", True, SumFusion, True),
        ("afnet_m_s4", False, SumFusion, True),
        ("afnet_m_s3", False, None, True),
        ("afnet_m_s2", False, None, True),
        ("afnet_m_s1", False, None, False),
        ("afnet_m_2d", True, None, False),
        ("afnet_m_3d", True, None, False),
        ("afnet_m_2d_no_ma", False, None, False),
    ],
)
def test_variant_structure(variant, mask, fusion, has_depth) -> None:
    model = timm.create_model(variant)
    assert any(s.mask_attn is not None for s in model.stages) == mask
    fusions = [type(s.fusion) for s in model.stages if s.fusion is not None]
    assert fusions == ([fusion, fusion] if fusion else [])
    assert (model.depth_stem is not None) == has_depth
    assert model(_input()).shape == (2, 6)


def test_data_fusion_stem_takes_six_channels() -> None:
    assert timm.create_model("afnet_m_s1").stem.conv1.in_channels == 6


def test_fc_and_decision_fusion_widths() -> None:
    s3, s2 = timm.create_model("afnet_m_s3"), timm.create_model("afnet_m_s2")
    assert s3.num_features == 1024 and s2.num_features == 1024
    assert s2.head_hidden_size == 256  # two 512 → 128 heads


def test_decision_fusion_averages_branch_logits() -> None:
    model = timm.create_model("afnet_m_s2").eval()
    x = _input()
    with torch.no_grad():
        features = model.forward_features(x)
        t = model.head.texture(features[:, :512])
        d = model.head.depth(features[:, 512:])
        torch.testing.assert_close(model(x), (t + d) / 2)


@pytest.mark.parametrize(
    ("variant", "ignored"),
    [("afnet_m_2d", "depth"), ("afnet_m_3d", "texture"), ("afnet_m_no_ma", "mask"), ("afnet_m_2d_no_ma", "mask")],
)
def test_variants_ignore_what_they_do_not_use(variant, ignored) -> None:
    model = timm.create_model(variant).eval()
    _randomize_attention(model)
    x = _input()
    y = x.clone()
    channels = {"texture": slice(0, 3), "depth": slice(3, 6), "mask": slice(6, 7)}[ignored]
    y[:, channels] = torch.rand_like(y[:, channels])
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(y))


@pytest.mark.parametrize("part", ["texture", "depth", "mask"])
def test_afnet_m_uses_every_input(part) -> None:
    model = timm.create_model("afnet_m").eval()
    _randomize_attention(model)
    x = _input()
    y = x.clone()
    channels = {"texture": slice(0, 3), "depth": slice(3, 6), "mask": slice(6, 7)}[part]
    y[:, channels] = 1 - y[:, channels]
    with torch.no_grad():
        assert not torch.allclose(model(x), model(y))


def test_fused_map_continues_in_the_texture_branch() -> None:
    """After AF at Layer3, texture Layer4 reads the fused map; depth Layer4 reads the depth Layer3 map."""
    model = timm.create_model("afnet_m").eval()
    seen = {}
    model.stages[3].blocks.register_forward_pre_hook(lambda m, a: seen.__setitem__("texture4", a[0]))
    model.stages[3].depth_blocks.register_forward_pre_hook(lambda m, a: seen.__setitem__("depth4", a[0]))
    model.stages[2].fusion.register_forward_hook(lambda m, a, out: seen.update(fused3=out, depth3=a[1]))
    with torch.no_grad():
        model(_input())
    torch.testing.assert_close(seen["texture4"], seen["fused3"])
    torch.testing.assert_close(seen["depth4"], seen["depth3"])


def test_deeper_backbones_adapt_widths() -> None:
    r50 = timm.create_model("afnet_m_resnet50")
    assert [s.mask_attn.channels for s in r50.stages[:2]] == [256, 512]
    assert [s.fusion.channels for s in r50.stages[2:]] == [1024, 2048]
    assert r50.num_features == 2048
    r34 = timm.create_model("afnet_m_resnet34")
    assert [len(s.blocks) for s in r34.stages] == [3, 4, 6, 3]


def test_custom_fusion_positions_end_the_depth_branch() -> None:
    model = AFNetM(fusion_stages=(2,), mask_stages=(1,))
    assert [s.fusion is not None for s in model.stages] == [False, True, False, False]
    assert [s.depth_blocks is not None for s in model.stages] == [True, True, False, False]
    assert model(_input()).shape == (2, 6)


def test_head_options() -> None:
    linear = AFNetM(head_hidden_dim=0)
    assert isinstance(linear.head.fc, torch.nn.Linear) and linear.head.fc.in_features == 512
    assert linear(_input()).shape == (2, 6)
    mlp = AFNetM()
    assert mlp.head.pre_logits.fc.out_features == 128 and mlp.head_hidden_size == 128


# --- intermediates -----------------------------------------------------------------------------------

def test_intermediates_concatenate_separate_branches_then_follow_the_fused_map() -> None:
    model = timm.create_model("afnet_m").eval()
    assert [f["num_chs"] for f in model.feature_info] == [128, 128, 256, 256, 512]
    assert [f["reduction"] for f in model.feature_info] == [2, 4, 8, 16, 32]
    x = _input()
    with torch.no_grad():
        final, feats = model.forward_intermediates(x)
        torch.testing.assert_close(final, model.forward_features(x))
    assert [tuple(f.shape[1:]) for f in feats] == [(128, 32, 32), (128, 16, 16), (256, 8, 8), (256, 4, 4),
                                                   (512, 2, 2)]


def test_features_only() -> None:
    model = timm.create_model("afnet_m", features_only=True, out_indices=(1, 2, 3, 4))
    outs = model(_input())
    assert [o.shape[1] for o in outs] == model.feature_info.channels() == [128, 256, 256, 512]


# --- contract details and bad inputs ---------------------------------------------------------------

@pytest.mark.parametrize(
    ("shape", "message"),
    [
        ((2, 6, 64, 64), "expected 7 input channels"),
        ((2, 3, 64, 64), "expected 7 input channels"),
        ((2, 7, 100, 64), "multiples of 32"),
        ((2, 7, 64, 48), "multiples of 32"),
        ((7, 64, 64), "dimensions"),
    ],
)
def test_bad_inputs_get_clear_errors(shape, message) -> None:
    with pytest.raises(ValueError, match=message):
        timm.create_model("afnet_m")(torch.rand(shape))


def test_any_multiple_of_32() -> None:
    model = timm.create_model("afnet_m").eval()
    with torch.no_grad():
        assert model(_input(1, 96)).shape == (1, 6)
        assert model(torch.rand(1, 7, 64, 160)).shape == (1, 6)


def test_constructor_errors() -> None:
    with pytest.raises(TypeError):
        timm.create_model("afnet_m", not_an_argument=1)
    with pytest.raises(ValueError, match="in_chans must be 7"):
        AFNetM(in_chans=3)
    with pytest.raises(ValueError, match="fusion must be one of"):
        AFNetM(fusion="concat")
    with pytest.raises(ValueError, match="does not fit"):
        AFNetM(modalities="texture", fusion="adaptive")
    with pytest.raises(ValueError, match="subset of"):
        AFNetM(mask_stages=(0, 5))
    with pytest.raises(ValueError, match="ResNet-family"):
        AFNetM(backbone="vit_tiny_patch16_224")


def test_timm_benchmark_in_chans_is_ignored() -> None:
    """timm's benchmark.py passes in_chans=3; the registered factories drop it and keep 7."""
    assert timm.create_model("afnet_m", in_chans=3).in_chans == 7


def test_device_and_dtype_arguments() -> None:
    meta = timm.create_model("afnet_m", device="meta")
    assert all(p.device.type == "meta" for p in meta.parameters())
    bf16 = timm.create_model("afnet_m_2d", dtype=torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in bf16.parameters())
    assert bf16(_input().bfloat16()).dtype == torch.bfloat16


def test_reset_classifier_and_grad_checkpointing() -> None:
    model = timm.create_model("afnet_m").eval()
    x = _input()
    with torch.no_grad():
        ref = model(x)
        model.set_grad_checkpointing()
        torch.testing.assert_close(model(x), ref)
    model.reset_classifier(3)
    assert model(x).shape == (2, 3) and model.get_classifier().out_features == 3
    model.reset_classifier(0, "")
    assert model(x).shape == (2, 128, 2, 2)  # unpooled, per-pixel hidden layer


def test_channels_last_and_bf16_autocast_match_fp32() -> None:
    model = timm.create_model("afnet_m").eval()
    x = _input()
    with torch.no_grad():
        ref = model(x)
        cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
        torch.testing.assert_close(cl(x.contiguous(memory_format=torch.channels_last)), ref, rtol=1e-4, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(x)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), ref, rtol=0.1, atol=0.1)


def test_pretrained_without_published_weights_fails_clearly() -> None:
    with pytest.raises(RuntimeError, match="No pretrained weights"):
        timm.create_model("afnet_m", pretrained=True)


def test_public_api() -> None:
    for name in afnetm_timm.__all__:
        assert hasattr(afnetm_timm, name)
