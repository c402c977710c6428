"""Test-wide settings: offline Hugging Face Hub, deterministic torch, small thread count."""
import os

# huggingface_hub reads these when first imported: set them before anything imports it
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
