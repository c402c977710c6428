"""The trainer's accelerated paths: bf16 autocast, channels_last and torch.compile.

They are the defaults on CUDA; here they run on the CPU (where each works too) and, marked ``cuda``,
on a GPU when there is one (``python -m pytest -m cuda``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from afnetm_timm.hub import load_checkpoint
from afnetm_timm.train.trainer import TrainConfig, _amp_dtype, evaluate, train_model

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "batch_size": 8, "lr": 1e-3, "pretrained_backbone": False, **kw})


def _conv_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [m.weight for m in model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)]


def test_cuda_defaults_are_bf16_and_channels_last() -> None:
    """What 'auto' means (a torch.device('cuda') object needs no GPU)."""
    assert _amp_dtype(TrainConfig(), torch.device("cuda")) is torch.bfloat16
    assert _amp_dtype(TrainConfig(), torch.device("cpu")) is None
    assert _amp_dtype(TrainConfig(amp="bf16"), torch.device("cpu")) is torch.bfloat16
    assert _amp_dtype(TrainConfig(amp="none"), torch.device("cuda")) is None


@pytest.mark.parametrize("device", DEVICES)
def test_bf16_channels_last_training(device: str, synthetic_data, tmp_path: Path) -> None:
    data = synthetic_data.of_subjects(synthetic_data.subject_ids[:2])  # 24 samples
    result = train_model(_cfg(amp="bf16", channels_last=True), data, run_dir=tmp_path, device=device,
                         progress=False)
    model = result.model
    assert all(np.isfinite(h["loss"]) for h in result.history) and len(result.history) == 2
    # autocast leaves the weights in fp32; the model was moved to channels_last
    assert all(p.dtype == torch.float32 and p.device.type == device for p in model.parameters())
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in _conv_weights(model))
    # bf16 inference agrees with fp32 inference of the same weights
    fp32 = evaluate(model, data, device=device, amp="none").probabilities
    bf16 = evaluate(model, data, device=device, amp="bf16").probabilities
    np.testing.assert_allclose(bf16, fp32, atol=0.05)
    # the checkpoint is plain fp32 and rebuilds the model on the CPU
    ckpt = load_checkpoint(tmp_path / "model.safetensors")
    assert ckpt.metadata["training"]["amp"] == "bf16" and ckpt.metadata["training"]["channels_last"] is True
    rebuilt = ckpt.create_model().eval()
    # on CUDA the "fp32" reference runs with cuDNN's TF32 convolutions (torch's default): looser tolerance
    np.testing.assert_allclose(evaluate(rebuilt, data, device="cpu", amp="none").probabilities, fp32,
                               atol=1e-5 if device == "cpu" else 1e-2)


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_compiled_training_matches_eager(device: str, synthetic_data, tmp_path: Path) -> None:
    """torch.compile (inductor) trains the same model as eager, and saves plain (uncompiled) weights.

    One epoch of three full batches (one compilation, no recompiling for a short last batch); about a
    minute of compilation on a 2-core CPU.
    """
    data = synthetic_data.of_subjects(synthetic_data.subject_ids[:2])  # 24 samples = 3 batches of 8
    settings = {"epochs": 1, "amp": "none", "channels_last": False}
    eager = train_model(_cfg(**settings), data, device=device, progress=False)
    compiled = train_model(_cfg(compile=True, **settings), data, run_dir=tmp_path, device=device, progress=False)
    assert compiled.history[0]["loss"] == pytest.approx(eager.history[0]["loss"], rel=1e-2)
    assert not any("_orig_mod" in k for k in compiled.model.state_dict())
    np.testing.assert_allclose(evaluate(compiled.model, data, amp="none").probabilities,
                               evaluate(eager.model, data, amp="none").probabilities, atol=2e-2)
    ckpt = load_checkpoint(tmp_path / "model.safetensors")
    assert ckpt.metadata["training"]["compile"] is True
    rebuilt = ckpt.create_model().eval()
    np.testing.assert_allclose(evaluate(rebuilt, data, device="cpu", amp="none").probabilities,
                               evaluate(compiled.model, data, device="cpu", amp="none").probabilities, atol=1e-4)
