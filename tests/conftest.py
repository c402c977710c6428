"""Test-wide settings: offline Hugging Face Hub, deterministic torch, small thread count, CUDA-only tests."""
import os

# huggingface_hub reads these when first imported: set them before anything imports it
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import pytest  # noqa: E402
import torch  # noqa: E402


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests (and parameters) marked ``cuda`` where no CUDA device is available."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's small models: faster at 64x64, and a busy 2-core machine punishes
    oversubscription. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")`` or as an argument."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
