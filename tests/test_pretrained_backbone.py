"""ImageNet initialisation of the branches through timm and the Hub, tested offline with a seeded Hub cache."""
import time

import pytest
import timm
import torch
from safetensors.torch import save_file

import afnetm_timm  # noqa: F401
from afnetm_timm import BackboneWeightsError


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face Hub cache folder, used by huggingface_hub and timm for this test."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def _seed_repo(cache, repo_id: str, files: dict) -> None:
    """Write a repo into the cache layout huggingface_hub reads offline: refs/main + snapshots/<commit>/."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = cache / f"models--{repo_id.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snapshot = root / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, write in files.items():
        write(snapshot / name)


def test_branches_load_imagenet_weights_from_the_hub_cache(hub_cache) -> None:
    source = timm.create_model("resnet18")
    with torch.no_grad():
        for p in source.parameters():
            p.uniform_(-1, 1)  # distinctive values, unlike any fresh initialisation
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    _seed_repo(hub_cache, "timm/resnet18.tv_in1k", {"model.safetensors": lambda p: save_file(state, str(p))})

    model = timm.create_model("afnet_m", pretrained_backbone=True)
    for prefix in ("stem.", "depth_stem."):
        torch.testing.assert_close(model.get_parameter(prefix + "conv1.weight"), state["conv1.weight"])
        torch.testing.assert_close(model.get_buffer(prefix + "bn1.running_var"), state["bn1.running_var"])
    for idx in range(4):
        stage = model.stages[idx]
        for name, blocks in (("blocks", stage.blocks), ("depth_blocks", stage.depth_blocks)):
            for key, value in blocks.state_dict().items():
                torch.testing.assert_close(value, state[f"layer{idx + 1}.{key}"], msg=f"{name} {key}")
    # the two branches are separate copies, not shared modules
    assert model.stem.conv1.weight.data_ptr() != model.depth_stem.conv1.weight.data_ptr()

    s1 = timm.create_model("afnet_m_s1", pretrained_backbone=True)  # 6-channel stem adapted by timm
    assert s1.stem.conv1.weight.shape[1] == 6
    torch.testing.assert_close(s1.stem.conv1.weight[:, :3] * 2, state["conv1.weight"])


def test_offline_without_cached_weights_fails_fast_and_clearly(hub_cache) -> None:
    start = time.monotonic()
    with pytest.raises(BackboneWeightsError, match=r"resnet18\.tv_in1k.*pretrained_backbone=False"):
        timm.create_model("afnet_m", pretrained_backbone=True)
    assert time.monotonic() - start < 10  # no network retry loop (about 46 s without offline mode)
