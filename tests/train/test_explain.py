"""Grad-CAM heat maps of the texture and depth branches (`afnetm_timm.train.explain`)."""
from __future__ import annotations

import os

import cv2
import numpy as np
import pytest
import timm
import torch
import torch.nn as nn

import afnetm_timm  # noqa: F401  (registers the models)
from afnetm_timm.data import preprocess_scan, synthetic_face_scan
from afnetm_timm.demo import demo_input
from afnetm_timm.train.explain import Explanation, branch_target_layers, grad_cam, save_explanation_png

SIZE = 64
BRANCHES = {"afnet_m": {"texture", "depth"}, "afnet_m_2d": {"texture"}, "afnet_m_3d": {"depth"}}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def sample():
    scan = synthetic_face_scan("happiness", 1.0, identity_seed=0, n_points=3000, texture_size=128)
    return preprocess_scan(scan, size=SIZE)


def _model(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(name, num_classes=6).eval()


@pytest.fixture(scope="module")
def models() -> dict[str, nn.Module]:
    """One model per variant; tests that change a model build their own."""
    return {name: _model(name) for name in BRANCHES}


def _hooks(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks)
               + len(m._backward_pre_hooks) for m in model.modules())


# --- target layers ---------------------------------------------------------------------------------


def test_branch_target_layers_are_last_blocks(models):
    m = models["afnet_m"]
    layers = branch_target_layers(m)
    assert set(layers) == {"texture", "depth"}
    assert layers["texture"] is m.stages[-1].blocks[-1]
    assert layers["depth"] is m.stages[-1].depth_blocks[-1]
    assert branch_target_layers(models["afnet_m_2d"]) == {"texture": models["afnet_m_2d"].stages[-1].blocks[-1]}
    # the 3D-only model's main path reads the depth channels
    assert branch_target_layers(models["afnet_m_3d"]) == {"depth": models["afnet_m_3d"].stages[-1].blocks[-1]}
    for m3 in (models["afnet_m_2d"], models["afnet_m_3d"]):
        assert all(stage.depth_blocks is None for stage in m3.stages)


def test_branch_target_layers_other_variants():
    s1 = timm.create_model("afnet_m_s1", num_classes=6)
    assert set(branch_target_layers(s1)) == {"fused"}
    # depth branch ending at stage 3 (fusion only there): its last block is in stage 3
    m = timm.create_model("afnet_m", num_classes=6, fusion_stages=(3,))
    assert branch_target_layers(m)["depth"] is m.stages[2].depth_blocks[-1]


@pytest.mark.parametrize("make", [lambda: nn.Linear(3, 2), lambda: timm.create_model("resnet10t", num_classes=6)],
                         ids=["linear", "resnet"])
def test_branch_target_layers_rejects_other_models(make):
    model = make()
    with pytest.raises(ValueError, match="AFNet-M"):
        branch_target_layers(model)
    with pytest.raises(ValueError, match="AFNet-M"):
        grad_cam(model, torch.zeros(7, SIZE, SIZE))


# --- heat maps -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(BRANCHES))
def test_heatmap_shapes_ranges_and_probabilities(models, sample, name):
    model = models[name]
    x = demo_input(sample, model.pretrained_cfg)
    exp = grad_cam(model, x)
    assert isinstance(exp, Explanation)
    assert set(exp.heatmaps) == set(exp) == BRANCHES[name]
    for heat in exp.heatmaps.values():
        assert heat.shape == (SIZE, SIZE) and heat.dtype == np.float32
        assert np.isfinite(heat).all() and heat.min() >= 0.0 and heat.max() <= 1.0
    with torch.no_grad():
        expected = model(x).softmax(-1)[0].numpy()
    np.testing.assert_allclose(exp.probabilities, expected, atol=1e-6)
    assert exp.probabilities.shape == (6,)
    assert exp.predicted_class == exp.target_class == int(expected.argmax())
    # unbatched input: same result
    unbatched = grad_cam(model, x[0])
    for branch, heat in exp.items():
        np.testing.assert_array_equal(unbatched[branch], heat)


def test_heatmaps_are_not_trivial(models, sample):
    """For some class each branch's map is a real min-max scaled map (max near 1), not all zeros."""
    model = models["afnet_m"]
    x = demo_input(sample, model.pretrained_cfg)
    peaks = {"texture": 0.0, "depth": 0.0}
    for target in range(6):
        exp = grad_cam(model, x, target_class=target)
        assert exp.target_class == target
        for branch in peaks:
            peaks[branch] = max(peaks[branch], float(exp[branch].max()))
    assert all(peak > 0.9 for peak in peaks.values()), peaks


def test_heatmaps_deterministic(sample):
    model = _model("afnet_m", seed=3)
    x = demo_input(sample, model.pretrained_cfg)
    first, second = grad_cam(model, x, target_class=1), grad_cam(model, x, target_class=1)
    again = grad_cam(_model("afnet_m", seed=3), x, target_class=1)
    for branch in first:
        np.testing.assert_array_equal(first[branch], second[branch])
        np.testing.assert_array_equal(first[branch], again[branch])
    np.testing.assert_array_equal(first.probabilities, again.probabilities)


def test_model_left_unchanged(sample):
    """Mode of every module, requires_grad flags, .grad tensors, hooks and weights are as before."""
    model = _model("afnet_m")
    model.train()
    model.stem.eval()  # mixed modes must survive, not become all-train or all-eval
    for p in model.stem.parameters():
        p.requires_grad_(False)
    some = model.head.fc.weight
    some.grad = torch.full_like(some, 0.5)
    modes = {name: m.training for name, m in model.named_modules()}
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    grads = {name: p.grad for name, p in model.named_parameters()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert _hooks(model) == 0

    exp = grad_cam(model, demo_input(sample, model.pretrained_cfg))

    assert set(exp) == {"texture", "depth"}
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    for name, p in model.named_parameters():
        assert p.grad is grads[name], name
    assert torch.equal(some.grad, torch.full_like(some, 0.5))
    for layer in branch_target_layers(model).values():
        assert not layer._forward_hooks and not layer._forward_pre_hooks
        assert not layer._backward_hooks and not layer._backward_pre_hooks
    assert _hooks(model) == 0
    after = model.state_dict()  # eval mode during the call: BatchNorm statistics untouched
    assert all(torch.equal(state[k], after[k]) for k in state)


def test_errors_leave_model_unchanged(models, sample):
    model = _model("afnet_m_2d")
    model.train()
    with pytest.raises(ValueError, match="target_class"):
        grad_cam(model, demo_input(sample, model.pretrained_cfg), target_class=6)
    with pytest.raises(ValueError, match="multiple of 32|divisible|32"):
        grad_cam(model, torch.zeros(7, 60, 60))
    with pytest.raises(ValueError, match=r"\(7, H, W\)"):
        grad_cam(model, torch.zeros(2, 7, SIZE, SIZE))
    assert model.training and all(m.training for m in model.modules())
    assert all(p.requires_grad for p in model.parameters())
    assert _hooks(model) == 0


def test_frozen_model_and_no_grad_context(sample):
    model = _model("afnet_m_3d").requires_grad_(False)
    x = demo_input(sample, model.pretrained_cfg)
    with torch.no_grad():
        exp = grad_cam(model, x, target_class=2)
    reference = grad_cam(_model("afnet_m_3d"), x, target_class=2)
    np.testing.assert_array_equal(exp["depth"], reference["depth"])
    assert not any(p.requires_grad for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())


# --- PNG panel -------------------------------------------------------------------------------------


def test_save_explanation_png(models, sample, tmp_path):
    model = models["afnet_m"]
    exp = grad_cam(model, demo_input(sample, model.pretrained_cfg))
    out = save_explanation_png(tmp_path / "sub" / "explain.png", sample.texture, sample.depth, exp, title="test")
    assert out == tmp_path / "sub" / "explain.png"
    image = cv2.imread(str(out))
    assert image is not None and image.shape[0] > 100 and image.shape[1] > 4 * 100
    assert os.listdir(out.parent) == ["explain.png"]  # no temporary file left

    # single-branch model, grey float depth, heat map of another size, overwrite
    small = Explanation(heatmaps={"depth": np.linspace(0, 1, 16 * 16, dtype=np.float32).reshape(16, 16)},
                        probabilities=np.full(6, 1 / 6, dtype=np.float32), target_class=0, predicted_class=0)
    save_explanation_png(out, sample.texture, sample.depth[..., 0].astype(np.float32) / 255, small)
    assert cv2.imread(str(out)) is not None
    with pytest.raises(ValueError, match="labels"):
        save_explanation_png(tmp_path / "x.png", sample.texture, sample.depth, exp, labels=["a", "b"])


def test_save_explanation_png_is_atomic(models, sample, tmp_path, monkeypatch):
    """A failing write leaves the previous PNG intact and no partial or temporary file."""
    from matplotlib.figure import Figure

    model = models["afnet_m_2d"]
    exp = grad_cam(model, demo_input(sample, model.pretrained_cfg))
    out = save_explanation_png(tmp_path / "explain.png", sample.texture, sample.depth, exp)
    before = out.read_bytes()

    def broken_savefig(self, fname, *args, **kwargs):
        with open(fname, "wb") as handle:
            handle.write(before[:100])  # a partial PNG
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        save_explanation_png(out, sample.texture, sample.depth, exp)
    assert out.read_bytes() == before
    assert os.listdir(tmp_path) == ["explain.png"]
