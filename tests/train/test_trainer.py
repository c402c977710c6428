"""The trainer: determinism, resume after an interruption, checkpoints, every variant trains."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from afnetm_timm.hub import load_checkpoint
from afnetm_timm.train.augment import AugmentConfig
from afnetm_timm.train.trainer import STATE_FILE, TrainConfig, evaluate, train_model


class Interrupted(Exception):
    pass


def _tiny(synthetic_data):
    return synthetic_data.of_subjects(synthetic_data.subject_ids[:2])  # 24 samples


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{"epochs": 2, "batch_size": 8, "lr": 1e-3, "pretrained_backbone": False, **kw})


def _states_equal(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], rtol=0, atol=0, msg=k)


def test_runs_are_deterministic(synthetic_data, one_thread) -> None:
    data = _tiny(synthetic_data)
    a = train_model(_cfg(), data, progress=False)
    b = train_model(_cfg(), data, progress=False)
    _states_equal(a.model, b.model)
    c = train_model(_cfg(seed=1), data, progress=False)
    assert any(not torch.equal(v, c.model.state_dict()[k]) for k, v in a.model.state_dict().items())
    assert [h["epoch"] for h in a.history] == [1, 2] and np.isfinite(a.history[-1]["loss"])


def test_resume_after_interruption_loses_nothing(synthetic_data, tmp_path: Path, one_thread) -> None:
    data = _tiny(synthetic_data)
    whole = train_model(_cfg(epochs=3), data, run_dir=tmp_path / "whole", progress=False)

    def stop_after_first(epoch: int, _entry: dict) -> None:
        if epoch == 1:
            raise Interrupted

    run = tmp_path / "interrupted"
    with pytest.raises(Interrupted):
        train_model(_cfg(epochs=3), data, run_dir=run, progress=False, on_epoch=stop_after_first)
    assert (run / STATE_FILE).is_file() and not (run / "model.safetensors").exists()
    resumed = train_model(_cfg(epochs=3), data, run_dir=run, progress=False)
    assert resumed.resumed_from == 1 and len(resumed.history) == 3
    _states_equal(whole.model, resumed.model)

    # the final checkpoint rebuilds the trained model
    ckpt = load_checkpoint(run / "model.safetensors")
    assert ckpt.architecture == "afnet_m" and ckpt.metadata["dataset"] == "synthetic" and ckpt.metadata["synthetic"]
    assert ckpt.metadata["training"]["epochs"] == 3
    rebuilt = ckpt.create_model().eval()
    np.testing.assert_allclose(evaluate(rebuilt, data).probabilities, evaluate(resumed.model, data).probabilities,
                               atol=1e-5)
    # other settings in the same folder are refused rather than silently mixed
    with pytest.raises(ValueError, match=r"other settings or data \(lr 0.001 -> 0.0005\)"):
        train_model(_cfg(epochs=3, lr=5e-4), data, run_dir=run, progress=False)
    # another architecture: named before any weight is loaded (no state-dict key dump)
    with pytest.raises(ValueError, match=r"\(model 'afnet_m' -> 'afnet_m_no_ma'\); use a new folder"):
        train_model(_cfg(epochs=3, model="afnet_m_no_ma"), data, run_dir=run, progress=False)


def test_bad_settings_are_named() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=1)
    with pytest.raises(ValueError, match="amp"):
        TrainConfig(amp="fp8")
    with pytest.raises(ValueError, match="weight_decay must be"):
        TrainConfig(weight_decay=-0.1)
    with pytest.raises(ValueError, match="drop_rate must lie in"):
        TrainConfig(model_kwargs={"drop_rate": 1.5})
    with pytest.raises(ValueError, match="unknown model"):
        from afnetm_timm.train.trainer import build_model

        build_model(TrainConfig(model="afnet_m_nope", pretrained_backbone=False), 6)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_requested_without_cuda_is_named() -> None:
    from afnetm_timm.train.trainer import resolve_device

    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(ValueError, match="'bogus' is not a device name"):
        resolve_device("bogus")
    from afnetm_timm.train.predict import load_model

    with pytest.raises(ValueError, match="CUDA is not available"):
        load_model("afnet_m_2d_no_ma", device="cuda")


@pytest.mark.parametrize("variant", [v for v in timm.list_models("afnet_m*") if v != "afnet_m"])
def test_every_variant_trains_through_the_same_code(variant: str, synthetic_data, one_thread) -> None:
    data = synthetic_data.of_subjects(synthetic_data.subject_ids[:1])  # 12 samples
    result = train_model(_cfg(model=variant, epochs=1, batch_size=6, augment=AugmentConfig.none()), data,
                         progress=False)
    assert np.isfinite(result.history[0]["loss"])
    probabilities = evaluate(result.model, data).probabilities
    assert probabilities.shape == (12, 6)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_determinism_is_scoped_to_the_training_run(synthetic_data, one_thread) -> None:
    """train_model switches deterministic algorithms on for its run only; the caller's settings come back."""
    data = synthetic_data.of_subjects(synthetic_data.subject_ids[:1])
    assert not torch.are_deterministic_algorithms_enabled()
    seen = []
    train_model(_cfg(epochs=1, batch_size=6), data, progress=False,
                on_epoch=lambda *_: seen.append(torch.are_deterministic_algorithms_enabled()))
    assert seen == [True] and not torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        train_model(_cfg(epochs=1, batch_size=6, deterministic=False), data, progress=False,
                    on_epoch=lambda *_: seen.append(torch.are_deterministic_algorithms_enabled()))
        assert seen == [True, False]
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
    finally:
        torch.use_deterministic_algorithms(False)
