"""MaskAttention and AdaptiveFusion: shapes, values against eq. 1–3 computed directly, dtypes, export, errors."""
import pytest
import torch
import torch.nn.functional as F

from afnetm_timm.layers import AdaptiveFusion, MaskAttention, SumFusion, resize_mask


def _eq1_reference(ma: MaskAttention, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Eq. 1 literally: area-resize, broadcast to C channels, two conv groups of C→C convs, γ⊗X + β."""
    m = F.interpolate(mask, size=x.shape[-2:], mode="area").expand(-1, x.shape[1], -1, -1)
    gamma = ma.gamma_out(ma.gamma_act(ma.gamma_in(m)))
    beta = ma.beta_out(ma.beta_act(ma.beta_in(m)))
    return gamma * x + beta


def _eq23_reference(af: AdaptiveFusion, xt: torch.Tensor, xd: torch.Tensor):
    def iw(x, conv):
        avg = x.mean(dim=(2, 3), keepdim=True)
        mx = x.amax(dim=(2, 3), keepdim=True)
        return torch.sigmoid(conv(avg) + conv(mx))

    t_iw, d_iw = iw(xt, af.texture_conv), iw(xd, af.depth_conv)
    return t_iw * xt + d_iw * xd, t_iw, d_iw


def _randomize(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.normal_(0, 0.3)


@pytest.mark.parametrize("mask_size", [56, 112, 224, 17])
@pytest.mark.parametrize("soft", [False, True])
def test_mask_attention_matches_eq1(mask_size: int, soft: bool) -> None:
    ma = MaskAttention(16)
    _randomize(ma)
    x = torch.randn(3, 16, 14, 14)
    mask = torch.rand(3, 1, mask_size, mask_size)
    if not soft:
        mask = (mask > 0.5).float()
    out = ma(x, mask)
    assert out.shape == x.shape
    ref = _eq1_reference(ma, x, mask) if mask_size % 14 == 0 else None
    if ref is None:  # non-integer ratio: compare against adaptive average pooling, which 'area' is
        m = F.adaptive_avg_pool2d(mask, (14, 14)).expand(-1, 16, -1, -1)
        ref = ma.gamma_out(ma.gamma_act(ma.gamma_in(m))) * x + ma.beta_out(ma.beta_act(ma.beta_in(m)))
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_mask_attention_is_four_convs_and_starts_as_identity() -> None:
    ma = MaskAttention(8)
    convs = [m for m in ma.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 4 and all(c.kernel_size == (1, 1) for c in convs)
    x = torch.randn(2, 8, 7, 7)
    out = ma(x, torch.ones(2, 1, 28, 28))
    torch.testing.assert_close(out, x, atol=0.05, rtol=0.05)  # γ≈1, β≈0 at init
    plain = MaskAttention(8, identity_init=False)
    assert plain(x, torch.ones(2, 1, 28, 28)).abs().max() < 0.05  # every bias 0: γ≈0, β≈0


def test_mask_attention_depends_on_mask() -> None:
    ma = MaskAttention(8)
    _randomize(ma)
    x = torch.randn(1, 8, 8, 8)
    assert not torch.allclose(ma(x, torch.zeros(1, 1, 32, 32)), ma(x, torch.ones(1, 1, 32, 32)))


def test_resize_mask_is_area_average() -> None:
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :4, :4] = 1
    mask[..., 0, 4] = 1
    small = resize_mask(mask, [2, 2])
    torch.testing.assert_close(small, torch.tensor([[[[1.0, 0.0625], [0.0, 0.0]]]]))


def test_adaptive_fusion_matches_eq2_eq3() -> None:
    af = AdaptiveFusion(12)
    _randomize(af)
    xt, xd = torch.randn(2, 12, 9, 9), torch.randn(2, 12, 9, 9)
    fused, t_iw, d_iw = af.forward_with_weights(xt, xd)
    ref, ref_t, ref_d = _eq23_reference(af, xt, xd)
    torch.testing.assert_close(fused, ref)
    torch.testing.assert_close(t_iw, ref_t)
    torch.testing.assert_close(d_iw, ref_d)
    assert t_iw.shape == (2, 12, 1, 1) and ((t_iw > 0) & (t_iw < 1)).all()
    torch.testing.assert_close(af(xt, xd), fused)


def test_adaptive_fusion_calls_its_shared_conv_twice() -> None:
    af = AdaptiveFusion(4)
    calls = []
    af.texture_conv.register_forward_hook(lambda *_: calls.append("t"))
    af.depth_conv.register_forward_hook(lambda *_: calls.append("d"))
    af(torch.randn(1, 4, 3, 3), torch.randn(1, 4, 3, 3))
    assert sorted(calls) == ["d", "d", "t", "t"]


def test_sum_fusion() -> None:
    a, b = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(SumFusion(4)(a, b), a + b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_layers_run_in_low_precision(dtype: torch.dtype) -> None:
    ma, af = MaskAttention(8).to(dtype), AdaptiveFusion(8).to(dtype)
    x = torch.randn(2, 8, 8, 8, dtype=dtype)
    out = ma(x, torch.rand(2, 1, 32, 32))  # a float32 mask is cast to the features' dtype
    assert out.dtype == dtype and torch.isfinite(out.float()).all()
    assert af(x, x).dtype == dtype


def test_low_precision_values_track_fp32() -> None:
    ma = MaskAttention(8)
    _randomize(ma)
    x, mask = torch.randn(2, 8, 8, 8), torch.rand(2, 1, 32, 32)
    ref = ma(x, mask)
    out = ma.to(torch.bfloat16)(x.bfloat16(), mask)
    torch.testing.assert_close(out.float(), ref, rtol=0.05, atol=0.1)


def test_channels_last_is_kept() -> None:
    ma, af = MaskAttention(8), AdaptiveFusion(8)
    x, mask = torch.randn(2, 8, 8, 8), torch.rand(2, 1, 16, 16)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    out = ma(x_cl, mask)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ma(x, mask))
    fused = af(x_cl, x_cl)
    assert fused.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(fused, af(x, x))


def test_torchscript_matches_eager() -> None:
    ma, af = MaskAttention(8), AdaptiveFusion(8)
    _randomize(ma)
    _randomize(af)
    x, mask = torch.randn(2, 8, 8, 8), torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(torch.jit.script(ma)(x, mask), ma(x, mask))
    torch.testing.assert_close(torch.jit.script(af)(x, x * 2), af(x, x * 2))


def test_torch_compile_matches_eager() -> None:
    """Default (inductor) backend, which needs a C compiler on CPU."""
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ma, self.af = MaskAttention(8), AdaptiveFusion(8)

        def forward(self, x, y, mask):
            return self.af(self.ma(x, mask), y)

    block = Block()
    _randomize(block)
    x, y, mask = torch.randn(2, 8, 8, 8), torch.randn(2, 8, 8, 8), torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(torch.compile(block)(x, y, mask), block(x, y, mask), rtol=1e-4, atol=1e-5)


def test_onnx_export_of_layers(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ma, self.af = MaskAttention(8), AdaptiveFusion(8)

        def forward(self, x, y, mask):
            return self.af(self.ma(x, mask), y)

    block = Block().eval()
    _randomize(block)
    x, y, mask = torch.randn(2, 8, 8, 8), torch.randn(2, 8, 8, 8), torch.rand(2, 1, 32, 32)
    path = tmp_path / "block.onnx"
    torch.onnx.export(block, (x, y, mask), str(path), input_names=["x", "y", "mask"], dynamo=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = sess.run(None, {"x": x.numpy(), "y": y.numpy(), "mask": mask.numpy()})
    assert abs(out - block(x, y, mask).detach().numpy()).max() <= 1e-4


@pytest.mark.parametrize(
    ("x_shape", "mask_shape", "message"),
    [
        ((2, 8, 4, 4), (3, 1, 16, 16), "batch size"),
        ((2, 6, 4, 4), (2, 1, 16, 16), "channels"),
        ((8, 4, 4), (2, 1, 16, 16), "dimensions"),
        ((2, 8, 4, 4), (2, 3, 16, 16), r"mask must be \(B, 1, h, w\)"),
        ((2, 8, 4, 4), (2, 16, 16), r"mask must be \(B, 1, h, w\)"),
    ],
)
def test_mask_attention_bad_inputs(x_shape, mask_shape, message) -> None:
    with pytest.raises(ValueError, match=message):
        MaskAttention(8)(torch.randn(x_shape), torch.rand(mask_shape))


@pytest.mark.parametrize(
    ("t_shape", "d_shape", "message"),
    [
        ((2, 8, 4, 4), (3, 8, 4, 4), "differ in shape"),
        ((2, 8, 4, 4), (2, 8, 5, 4), "differ in shape"),
        ((2, 6, 4, 4), (2, 6, 4, 4), "channels"),
        ((8, 4, 4), (8, 4, 4), "dimensions"),
    ],
)
def test_adaptive_fusion_bad_inputs(t_shape, d_shape, message) -> None:
    with pytest.raises(ValueError, match=message):
        AdaptiveFusion(8)(torch.randn(t_shape), torch.randn(d_shape))


def test_bad_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="channels must be positive"):
        MaskAttention(0)
    with pytest.raises(ValueError, match="channels must be positive"):
        AdaptiveFusion(-1)
