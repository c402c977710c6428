"""torch.hub entrypoints, ONNX export parity in onnxruntime, torch.export."""
import importlib.util
from pathlib import Path

import pytest
import timm
import torch

import afnetm_timm  # noqa: F401
from afnetm_timm import pack

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_torch_hub_load_local() -> None:
    model = torch.hub.load(str(REPO_ROOT), "afnet_m", source="local", num_classes=6)
    assert model.num_classes == 6 and model.pretrained_cfg["architecture"] == "afnet_m"
    assert model(torch.rand(1, 7, 64, 64)).shape == (1, 6)
    s2 = torch.hub.load(str(REPO_ROOT), "afnet_m_s2", source="local", num_classes=3, device="meta")
    assert s2.num_classes == 3 and s2.fusion_mode == "decision"


def test_hubconf_has_one_documented_entrypoint_per_variant() -> None:
    spec = importlib.util.spec_from_file_location("hubconf", REPO_ROOT / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    # what torch.hub.list reports: the public callables
    entrypoints = {name for name in dir(hubconf) if callable(getattr(hubconf, name)) and not name.startswith("_")}
    assert entrypoints == set(timm.list_models("afnet_m*"))
    assert all(getattr(hubconf, name).__doc__ for name in entrypoints)
    assert set(hubconf.dependencies) <= {"torch", "timm", "huggingface_hub", "safetensors"}


def _packed(size: int) -> torch.Tensor:
    return pack(torch.rand(2, 3, size, size), torch.rand(2, 1, size, size), (torch.rand(2, 1, size, size) > 0.5).float())


@pytest.mark.slow
def test_onnx_export_matches_pytorch(tmp_path) -> None:
    """The realistic end-to-end export: afnet_m at 224×224 through onnxruntime, fp32."""
    ort = pytest.importorskip("onnxruntime")
    model = timm.create_model("afnet_m").eval()
    x = _packed(224)
    path = tmp_path / "afnet_m.onnx"
    torch.onnx.export(model, (x,), str(path), input_names=["input"], output_names=["logits"], dynamo=True)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"input": x.numpy()})
    with torch.no_grad():
        ref = model(x).numpy()
    assert logits.shape == (2, 6)
    assert abs(logits - ref).max() <= 1e-4


def test_torch_export_matches_eager() -> None:
    model = timm.create_model("afnet_m").eval()
    x = _packed(64)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x))
