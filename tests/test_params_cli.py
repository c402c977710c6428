"""Parameter counting against the paper's Table 4, and the afnetm command line."""
import json
import subprocess
import sys

import pytest
import timm
import torch

import afnetm_timm  # noqa: F401
from afnetm_timm.cli import main
from afnetm_timm.params import TABLE4_MB, count_parameters, parameter_table, params_to_mb


def test_megabytes_follow_torchsummary() -> None:
    resnet18 = sum(p.numel() for p in timm.create_model("resnet18").parameters())
    assert round(params_to_mb(resnet18), 2) == 44.59  # torchsummary's "Params size (MB)" for resnet18


def test_per_call_counts_modules_called_twice() -> None:
    class Twice(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)
            self.unused_in_forward = torch.nn.Linear(4, 2)

        def forward(self, x):
            return self.lin(self.lin(x))

    numel, per_call = count_parameters(Twice(), input_size=(4,))
    assert numel == 20 + 10 and per_call == 2 * 20 + 10


def test_table4_rows_within_half_a_percent() -> None:
    rows = {r.name: r for r in parameter_table(TABLE4_MB)}
    for name, paper in TABLE4_MB.items():
        row = rows[name]
        assert row.table4_mb == paper
        assert abs(row.per_call_mb - paper) / paper <= 0.005, (name, row.per_call_mb, paper)


def test_per_call_difference_is_the_shared_af_conv() -> None:
    """Per call minus numel is exactly one more count of each AF conv (shared by the two pools, eq. 2)."""
    (row,) = parameter_table(["afnet_m"])
    model = timm.create_model("afnet_m", device="meta")
    af_params = sum(p.numel() for n, p in model.named_parameters() if ".fusion." in n)
    assert af_params == 2 * (256 * 256 + 256) + 2 * (512 * 512 + 512)
    assert row.per_call - row.numel == af_params
    (no_af,) = parameter_table(["afnet_m_no_af"])
    assert no_af.per_call == no_af.numel  # nothing is called twice without AF


def test_every_variant_counted() -> None:
    names = [r.name for r in parameter_table()]
    assert names == timm.list_models("afnet_m*")


def test_cli_params_json(capsys) -> None:
    assert main(["params", "afnet_m", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["name"] == "afnet_m" and row["table4_mb"] == 91.54 and abs(row["deviation_pct"]) < 0.5


def test_cli_params_markdown(capsys) -> None:
    assert main(["params"]) == 0
    out = capsys.readouterr().out
    assert "| `afnet_m_no_ma` |" in out and "reported by the paper" in out


def test_cli_demo(capsys, tmp_path) -> None:
    panel = tmp_path / "panel.png"
    assert main(["demo", "--size", "64", "--repeats", "2", "--warmup", "1", "--out", str(panel)]) == 0
    out = capsys.readouterr().out
    probs = [float(line.split()[1]) for line in out.splitlines() if line.startswith("  ")]
    assert len(probs) == 6 and abs(sum(probs) - 1) < 0.01
    assert "parameters: 23,241,734" in out and "CPU latency" in out and "synthetic 3D face" in out
    assert panel.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["panel.png"]  # no temporary file left behind


def test_demo_input_comes_from_the_preprocessed_scan() -> None:
    from afnetm_timm import unpack
    from afnetm_timm.demo import demo_input, demo_sample

    sample = demo_sample("surprise", size=64)
    x = demo_input(sample, timm.create_model("afnet_m", device="meta").pretrained_cfg)
    assert x.shape == (1, 7, 64, 64)
    torch.testing.assert_close(unpack(x[0]).mask[0], torch.from_numpy(sample.mask))


def test_cli_demo_bad_arguments(capsys, tmp_path) -> None:
    assert main(["demo", "--size", "100"]) == 2
    assert "multiple of 32" in capsys.readouterr().err
    assert main(["demo", "--size", "64", "--repeats", "0"]) == 2
    assert "--repeats must be >= 1" in capsys.readouterr().err
    assert main(["demo", "--size", "64", "--out", str(tmp_path / "d.jpg")]) == 1
    assert "give a name ending in .png" in capsys.readouterr().err and not (tmp_path / "d.jpg").exists()


@pytest.mark.slow
def test_console_script_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "afnetm_timm.cli", "params", "afnet_m"],
                            capture_output=True, text=True, check=True)
    assert "91.54" in result.stdout
