"""The README's Python examples run as written (the export example is covered by test_hub_export)."""
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
BLOCKS = re.findall(r"```python\n(.*?)```", (REPO_ROOT / "README.md").read_text(), flags=re.S)


def test_readme_starts_with_the_two_commands() -> None:
    text = (REPO_ROOT / "README.md").read_text()
    first = re.search(r"```bash\n(.*?)```", text, flags=re.S).group(1).strip().splitlines()
    assert first == ['pip install -e ".[dev]" && afnetm demo', "python -m pytest"]


@pytest.mark.parametrize("index", [i for i, b in enumerate(BLOCKS) if "torch.onnx.export" not in b])
def test_readme_example_runs(index: int, monkeypatch) -> None:
    monkeypatch.chdir(REPO_ROOT)  # the torch.hub example loads the checkout it runs in
    exec(compile(BLOCKS[index], f"README.md example {index}", "exec"), {"__name__": "readme_example"})
