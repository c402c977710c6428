"""timm's own model checks (its tests/test_models.py, for the installed timm version) run on every AFNet-M variant."""
import os
import warnings

import pytest
import timm

import afnetm_timm  # noqa: F401  (registers the models)
from timm_upstream import load_test_models

VARIANTS = timm.list_models("afnet_m*")

CHECKS = {
    "forward": lambda tm, n: tm.test_model_forward(n, 1),
    "backward": lambda tm, n: tm.test_model_backward(n, 2),
    "default_cfgs": lambda tm, n: tm.test_model_default_cfgs(n, 1, "meta"),
    "torchscript": lambda tm, n: tm.test_model_forward_torchscript(n, 1),
    "features": lambda tm, n: tm.test_model_forward_features(n, 1),
    "intermediates_features": lambda tm, n: tm.test_model_forward_intermediates_features(n, 1),
    "intermediates": lambda tm, n: tm.test_model_forward_intermediates(n, 1),
    "fx_forward": lambda tm, n: tm.test_model_forward_fx(n, 1),
    "fx_backward": lambda tm, n: tm.test_model_backward_fx(n, 2),
    "prune_contract": lambda tm, n: tm.test_prune_intermediate_layers_contract(n),
}


@pytest.fixture(scope="module")
def timm_tests():
    module = load_test_models()
    if module is None:
        reason = f"timm {timm.__version__}'s tests/test_models.py is not available (run: python tests/timm_upstream.py)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return module


def test_all_paper_variants_registered() -> None:
    expected = {"afnet_m", "afnet_m_2d", "afnet_m_3d", "afnet_m_no_ma", "afnet_m_no_af", "afnet_m_s1", "afnet_m_s2",
                "afnet_m_s3", "afnet_m_s4", "afnet_m_resnet34", "afnet_m_resnet50"}
    assert expected <= set(VARIANTS)


# timm runs its slow pruning contract outside CI; here it runs once per distinct code path
# (adaptive, sum + MA, single path, data-level, decision-level, fc-level, bottleneck blocks)
PRUNE_VARIANTS = {"afnet_m", "afnet_m_no_af", "afnet_m_2d", "afnet_m_s1", "afnet_m_s2", "afnet_m_s3"}
CASES = [(v, c) for v in VARIANTS for c in CHECKS if c != "prune_contract" or v in PRUNE_VARIANTS]


@pytest.mark.parametrize(("variant", "check"), CASES)
def test_timm_model_checks(timm_tests, variant: str, check: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script deprecation
        CHECKS[check](timm_tests, variant)
