"""The benchmark suite (afnetm_timm.bench) runs end to end at tiny sizes on CPU and writes the documented fields.

Timings are never asserted: only that the numbers exist, have the right shape and land in the files.
"""
import argparse
import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import timm
import torch

import afnetm_timm  # noqa: F401  (registers the models)
from afnetm_timm.bench import (
    RATIO_FIELDS,
    RESULTS_FIELDS,
    THROUGHPUT_FIELDS,
    BenchConfig,
    DualResNet18,
    PreprocessOptions,
    Setting,
    TimingOptions,
    build_grid,
    cost_table,
    measure_setting,
    ratio_rows,
    render_markdown,
    run_suite,
    write_results,
)
from afnetm_timm.bench import preprocess as pre
from afnetm_timm.bench.cli import add_bench_command, cmd_bench, config_from_args
from afnetm_timm.bench.cli import main as bench_main
from afnetm_timm.bench.suite import _clean, models_for, settings_for
from afnetm_timm.bench.timm_script import find_timm_benchmark, run_timm_benchmark, timm_benchmark_command, tiny_args
from afnetm_timm.params import parameter_table

TINY_TIMING = TimingOptions(warmup=0, repeats=1, min_time=0.0, max_iters=1, memory=True)


def tiny_config(**overrides) -> BenchConfig:
    base = dict(
        devices=("cpu",), models=("dual_resnet18", "afnet_m", "afnet_m_no_ma"),
        cost_models=("dual_resnet18", "afnet_m", "afnet_m_no_ma"), img_size=64, batch_sizes=(1,),
        dtypes=("fp32",), channels_last=(False,), compile=(False,), modes=("inference", "train"),
        timing=TINY_TIMING, preprocess=None, timm_benchmark=False, extra_models=(), threads=1,
    )
    return BenchConfig(**{**base, **overrides})


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tiny_results() -> dict:
    return run_suite(tiny_config(), command="pytest tiny", progress=False)


# --- grid, models, FLOPs ------------------------------------------------------------------------


def test_standard_grid_cpu() -> None:
    labels = [s.label for s in build_grid("cpu")]
    assert labels[:3] == ["cpu infer b1 224 fp32 NCHW eager", "cpu infer b8 224 fp32 NCHW eager",
                          "cpu infer b32 224 fp32 NCHW eager"]
    assert "cpu infer b8 224 bf16 NHWC compiled" in labels and "cpu infer b8 224 fp32 NCHW compiled" in labels
    assert {s.mode for s in build_grid("cpu")} == {"inference", "train"}
    assert not any(s.compile for s in build_grid("cpu") if s.mode == "train")  # compiled training: CUDA only
    assert len(labels) == len(set(labels)) == 10


def test_standard_grid_cuda_has_the_headline_setting() -> None:
    """The issue's GPU figures: batch 256, bf16, channels_last, compiled, inference and training."""
    grid = build_grid("cuda")  # building the grid needs no GPU
    labels = [s.label for s in grid]
    assert "cuda infer b256 224 bf16 NHWC compiled" in labels and "cuda train b256 224 bf16 NHWC compiled" in labels
    assert labels[:3] == ["cuda infer b1 224 fp32 NCHW eager", "cuda infer b32 224 fp32 NCHW eager",
                          "cuda infer b256 224 fp32 NCHW eager"]
    assert "cuda train b32 224 bf16 NHWC compiled" in labels  # compiled training at the focus batch too
    assert len(labels) == len(set(labels)) == 16
    # a requested grid keeps its own largest batch and last options
    small = [s.label for s in build_grid("cuda", 64, (2, 4), ("fp32", "bf16"), (False, True), (False,))]
    assert "cuda infer b4 64 bf16 NHWC eager" in small and "cuda train b4 64 bf16 NHWC eager" in small


def test_extra_models_only_in_the_base_condition() -> None:
    config = BenchConfig(devices=("cpu",))
    by_label = {s.label: models_for(config, s) for s in settings_for(config, ["cpu"])}
    assert by_label["cpu infer b32 224 fp32 NCHW eager"] == [
        "resnet18", "dual_resnet18", "afnet_m", "afnet_m_no_ma", "afnet_m_no_af"]
    assert by_label["cpu train b8 224 fp32 NCHW eager"][-2:] == ["afnet_m_no_ma", "afnet_m_no_af"]
    assert by_label["cpu infer b8 224 bf16 NHWC compiled"] == ["resnet18", "dual_resnet18", "afnet_m"]


def test_full_grid_is_the_product() -> None:
    grid = build_grid("cpu", 64, (1, 2), ("fp32", "bf16"), (False, True), (False,), ("inference",), full=True)
    assert len(grid) == 2 * 2 * 2


def test_setting_validation() -> None:
    with pytest.raises(ValueError, match="multiple of 32"):
        Setting("cpu", "inference", 1, 100)
    with pytest.raises(ValueError, match="dtype"):
        Setting("cpu", "inference", 1, 64, dtype="int8")


def test_dual_resnet18_is_two_resnet18_trunks() -> None:
    model = DualResNet18(num_classes=6).eval()
    trunk = sum(p.numel() for p in timm.create_model("resnet18", num_classes=0).parameters())
    assert sum(p.numel() for p in model.parameters()) == 2 * trunk + 1024 * 6 + 6
    x = torch.randn(2, 7, 64, 64)
    with torch.no_grad():
        assert model(x).shape == (2, 6)


def test_cost_table_reuses_the_parameter_counting() -> None:
    rows = {r.name: r for r in cost_table(["resnet18", "dual_resnet18", "afnet_m"], img_size=224)}
    (paper,) = parameter_table(["afnet_m"])
    afnet = rows["afnet_m"]
    assert (afnet.numel, afnet.per_call, afnet.table4_mb) == (paper.numel, paper.per_call, paper.table4_mb)
    assert afnet.deviation_pct == pytest.approx(paper.deviation_pct)
    base = rows["dual_resnet18"]
    assert base.flops_vs_baseline == 1.0 and base.ma_flops == base.af_flops == 0
    # two ResNet18 trunks and one 1024 -> 6 Linear = two ResNet18s with their 512 -> 6 Linears
    assert base.flops == 2 * rows["resnet18"].flops
    assert afnet.flops > base.flops and afnet.ma_flops > 0 and afnet.af_flops > 0
    assert afnet.macs == afnet.flops // 2
    assert 1.0 < afnet.flops_vs_baseline < 1.1


# --- the suite ------------------------------------------------------------------------------------


def test_suite_fields(tiny_results: dict) -> None:
    r = tiny_results
    assert set(RESULTS_FIELDS) <= set(r)
    assert r["schema"] == "afnetm-bench/1" and r["command"] == "pytest tiny"
    assert {"platform", "cpu", "cores"} <= set(r["machine"])
    assert r["devices"][0]["type"] == "cpu" and r["devices"][0]["name"]
    assert {"torch", "timm", "numpy", "afnetm_timm"} <= set(r["versions"])
    assert r["date"].endswith("+00:00")
    assert len(r["costs"]) == 3 and {"gflops", "gmacs", "numel", "per_call", "table4_mb"} <= set(r["costs"][0])
    # 2 modes x 3 models, interleaved within each setting
    assert len(r["throughput"]) == 6
    for row in r["throughput"]:
        assert set(THROUGHPUT_FIELDS) <= set(row)
        assert row["status"] == "ok", row["error"]
        assert row["samples_per_s"] > 0 and row["latency_ms"] > 0 and len(row["step_s_repeats"]) == 1
        assert row["peak_mem_mb"] is None or row["peak_mem_mb"] >= 0
    train = [row for row in r["throughput"] if row["mode"] == "train"]
    assert all(row["peak_mem_mb"] is None or row["peak_mem_mb"] > 1 for row in train)  # gradients at least
    assert len(r["ratios"]) == 4  # (afnet_m, afnet_m_no_ma) x 2 settings
    for row in r["ratios"]:
        assert set(RATIO_FIELDS) <= set(row)
        assert row["baseline"] == "dual_resnet18" and row["ratio"] > 0
        assert row["ratio_min"] <= row["ratio"] * (1 + 1e-9) and row["meets_target"] in (True, False)
    json.dumps(r, allow_nan=False)  # strictly valid JSON


def test_results_files(tiny_results: dict, tmp_path: Path) -> None:
    paths = write_results(tiny_results, tmp_path / "results", "bench-test")
    assert set(paths) == {"json", "markdown", "png"}
    assert json.loads(paths["json"].read_text())["throughput"] == tiny_results["throughput"]
    md = paths["markdown"].read_text()
    for needle in ("# AFNet-M benchmark", "- machine:", "- devices: CPU:", "- versions: afnetm_timm",
                   "## Parameters and FLOPs (batch 1, 64×64)", "## Throughput (samples/s)",
                   "`afnet_m` / base", "cpu infer b1 64 fp32 NCHW eager", "cpu train b1 64 fp32 NCHW eager",
                   "### Latency", "91.54"):
        assert needle in md, needle
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "results").glob("*.tmp"))


def test_measure_setting_reports_a_failing_model_and_goes_on() -> None:
    setting = Setting("cpu", "inference", 1, 64)
    out = measure_setting(setting, ["dual_resnet18", "no_such_model_xyz"], TINY_TIMING)
    assert out[0].status == "ok" and out[1].status == "error" and "no_such_model_xyz" in out[1].error
    (row,) = ratio_rows(out)
    assert row["model"] == "no_such_model_xyz" and row["ratio"] is None and row["meets_target"] is None


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


@pytest.mark.parametrize("mode", ["inference", "train"])
@pytest.mark.parametrize("device", DEVICES)
def test_channels_last_bf16_setting_runs(device: str, mode: str) -> None:
    setting = Setting(device, mode, 2, 64, dtype="bf16", channels_last=True)
    out = measure_setting(setting, ["dual_resnet18", "afnet_m"], TimingOptions(0, 1, 0.0, 1, memory=False))
    assert [m.status for m in out] == ["ok", "ok"], [m.error for m in out]
    assert all(m.samples_per_s > 0 for m in out) and out[1].peak_mem_mb is None


@pytest.mark.cuda
def test_cuda_headline_setting_compiled_with_memory() -> None:
    """The issue's GPU condition (bf16, channels_last, compiled) at a small size, peak memory included."""
    for mode in ("inference", "train"):
        setting = Setting("cuda", mode, 8, 64, dtype="bf16", channels_last=True, compile=True)
        out = measure_setting(setting, ["dual_resnet18", "afnet_m"], TimingOptions(1, 2, 0.0, 2, memory=True))
        assert [m.status for m in out] == ["ok", "ok"], [m.error for m in out]
        assert all(m.compile_s > 0 and m.peak_mem_mb > 0 for m in out)
        (row,) = ratio_rows(out)
        assert row["ratio"] > 0


def test_unavailable_cuda_is_skipped(monkeypatch) -> None:
    monkeypatch.setattr("afnetm_timm.bench.suite.cuda_available", lambda: False)
    with pytest.warns(RuntimeWarning, match="cuda"):
        r = run_suite(tiny_config(devices=("cpu", "cuda"), throughput=False, flops=False), progress=False)
    assert r["config"]["devices"] == ["cpu"] and r["config"]["skipped_devices"] == ["cuda"]
    assert r["throughput"] == [] and "## Throughput" not in render_markdown(r)
    with pytest.warns(RuntimeWarning), pytest.raises(ValueError, match="none of the requested devices"):
        run_suite(tiny_config(devices=("cuda",), throughput=False, flops=False), progress=False)


def test_threads_apply_during_the_run_only() -> None:
    r = run_suite(tiny_config(threads=2, throughput=False, flops=False), progress=False)
    assert r["machine"]["torch_threads"] == 2 and torch.get_num_threads() == 1


def test_clean_makes_json_safe() -> None:
    assert _clean({"a": float("nan"), "b": (1, float("inf"))}) == {"a": None, "b": [1, None]}


# --- command line ---------------------------------------------------------------------------------


def test_add_bench_command() -> None:
    parser = argparse.ArgumentParser(prog="afnetm")
    sub = parser.add_subparsers(dest="command", required=True)
    add_bench_command(sub)
    args = parser.parse_args(["bench", "--quick", "--devices", "cpu", "--repeats", "2", "--compile", "both"])
    assert args.func is cmd_bench
    config = config_from_args(args)
    assert config.models == ("resnet18", "dual_resnet18", "afnet_m") and config.batch_sizes == (1, 8)
    assert config.extra_models == ()
    assert config.timing.repeats == 2 and config.compile == (False, True) and config.devices == ("cpu",)
    default = config_from_args(parser.parse_args(["bench"]))
    assert default.models == ("resnet18", "dual_resnet18", "afnet_m") and default.compile == (False, True)
    assert default.extra_models == ("afnet_m_no_ma", "afnet_m_no_af") and default.batch_sizes is None
    none = config_from_args(parser.parse_args(["bench", "--extra-models"]))
    assert none.extra_models == ()
    # nonsense options are refused before anything runs
    for bad, message in ((["--target", "nan"], "--target must be a finite number > 0"),
                         (["--target", "-1"], "--target must be"), (["--min-time", "-1"], "--min-time must be"),
                         (["--threads", "-2"], "--threads must be"), (["--name", "../escape"], "--name must be a plain")):
        with pytest.raises(ValueError, match=message):
            config_from_args(parser.parse_args(["bench", *bad]))


def test_cli_writes_results(tmp_path: Path, capsys) -> None:
    argv = ["--devices", "cpu", "--models", "dual_resnet18", "afnet_m", "--extra-models", "--cost-models", "afnet_m",
            "--img-size", "64", "--batch-sizes", "1", "--dtypes", "fp32", "--channels-last", "off", "--compile", "off",
            "--modes", "inference", "--repeats", "1", "--warmup", "0", "--min-time", "0", "--no-memory",
            "--no-preprocess", "--no-timm-benchmark", "--no-progress", "--out", str(tmp_path), "--name", "cli"]
    assert bench_main(argv) == 0
    out = capsys.readouterr().out
    assert "`afnet_m` / base" in out and f"wrote {tmp_path / 'cli.json'}" in out
    results = json.loads((tmp_path / "cli.json").read_text())
    assert results["command"].startswith("python -m afnetm_timm.bench --devices cpu")
    assert [r["model"] for r in results["throughput"]] == ["dual_resnet18", "afnet_m"]
    assert (tmp_path / "cli.md").is_file() and (tmp_path / "cli.png").is_file()


# --- preprocessing (optional modules) -------------------------------------------------------------


def test_preprocessing_unavailable(monkeypatch) -> None:
    for attr in ("GRIDFIT_MODULE", "PIPELINE_MODULE", "SYNTHETIC_MODULE"):
        monkeypatch.setattr(pre, attr, f"afnetm_timm.data.not_written_yet_{attr.lower()}")
    r = pre.benchmark_preprocessing(PreprocessOptions(scans=1, grid_size=8, repeats=1))
    assert r["status"] == "unavailable"
    assert r["gridfit"]["status"] == r["pipeline"]["status"] == "unavailable"
    assert r["gridfit"]["points"] == "procedural" and "not found" in r["gridfit"]["reason"]


def _fake_modules(monkeypatch, gridfit=None, preprocess_scan=None) -> None:
    def default_gridfit(x, y, values, xnodes, ynodes, solver="fast"):
        assert solver in ("fast", "reference")
        v = np.asarray(values)
        grid = np.full((len(ynodes), len(xnodes)), float(np.mean(v if v.ndim == 1 else v[:, 0])))
        return grid if v.ndim == 1 else np.stack([grid] * v.shape[1])

    def synthetic_face_scan(expression="happiness", identity_seed=0):
        rng = np.random.default_rng(identity_seed)
        return types.SimpleNamespace(vertices=rng.normal(size=(200, 3)), expression=expression)

    modules = {
        "fake_bench_gridfit": types.SimpleNamespace(gridfit=gridfit or default_gridfit),
        "fake_bench_pipeline": types.SimpleNamespace(preprocess_scan=preprocess_scan or (lambda scan: scan)),
        "fake_bench_synthetic": types.SimpleNamespace(synthetic_face_scan=synthetic_face_scan),
    }
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(pre, "GRIDFIT_MODULE", "fake_bench_gridfit")
    monkeypatch.setattr(pre, "PIPELINE_MODULE", "fake_bench_pipeline")
    monkeypatch.setattr(pre, "SYNTHETIC_MODULE", "fake_bench_synthetic")


def test_preprocessing_with_modules(monkeypatch) -> None:
    _fake_modules(monkeypatch)
    r = pre.benchmark_preprocessing(PreprocessOptions(scans=2, grid_size=8, repeats=1))
    assert r["status"] == "ok" and r["synthetic"]["status"] == "ok"
    g = r["gridfit"]
    assert g["points"] == "synthetic_face_scan" and g["grid"] == [8, 8] and g["clouds"] == 2
    assert [c["columns"] for c in g["cases"]] == [1, 4]
    for case in g["cases"]:
        assert case["fast_ms"] >= 0 and case["reference_ms"] >= 0 and case["max_abs_diff"] == 0.0
    assert r["pipeline"]["scans"] == 2 and r["pipeline"]["scans_per_s"] > 0


def test_preprocessing_errors_are_recorded(monkeypatch) -> None:
    def broken(scan):
        raise RuntimeError("landmarks missing")

    _fake_modules(monkeypatch, preprocess_scan=broken)
    r = pre.benchmark_preprocessing(PreprocessOptions(scans=1, grid_size=8, repeats=1))
    assert r["status"] == "partial" and r["gridfit"]["status"] == "ok"
    assert r["pipeline"]["status"] == "error" and "landmarks missing" in r["pipeline"]["reason"]


# --- timm's benchmark.py --------------------------------------------------------------------------

# What timm's benchmark.py does with a model, reduced to the steps that matter for AFNet-M: create_model
# with in_chans=3 and its other fixed kwargs, the input size from resolve_data_config(vars(args), model),
# a random batch, and the '--result' JSON on stdout.
STAND_IN = '''
import argparse, json
import torch
from timm.data import resolve_data_config
from timm.models import create_model
parser = argparse.ArgumentParser()
parser.add_argument("--model"); parser.add_argument("--bench"); parser.add_argument("-b", "--batch-size", type=int)
parser.add_argument("--img-size", type=int); parser.add_argument("--input-size", nargs=3, type=int)
parser.add_argument("--num-warm-iter", type=int); parser.add_argument("--num-bench-iter", type=int)
parser.add_argument("--device")
args = parser.parse_args()
model = create_model(args.model, num_classes=None, in_chans=3, global_pool="fast", scriptable=False, drop_rate=0.0,
                     drop_path_rate=None, drop_block_rate=None).eval()
input_size = resolve_data_config(vars(args), model=model, use_test_size=True)["input_size"]
with torch.no_grad():
    out = model(torch.randn((args.batch_size,) + tuple(input_size), device=args.device))
print("--result")
print(json.dumps({"model": args.model, "infer_input_size": list(input_size), "out": list(out.shape)}))
'''


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("timm_script") / "benchmark.py"
    path.write_text(STAND_IN)
    return path


def test_timm_benchmark_command_imports_the_plugin_first(stand_in: Path) -> None:
    cmd = timm_benchmark_command(stand_in, ["--model", "afnet_m"])
    assert cmd[0] == sys.executable and cmd[1] == "-c"
    assert cmd[2].startswith("import afnetm_timm, runpy, sys; sys.argv = ['benchmark.py', '--model', 'afnet_m'];")
    assert "run_name='__main__'" in cmd[2]


def test_timm_benchmark_contract_with_packed_input_size(stand_in: Path) -> None:
    ok = run_timm_benchmark(tiny_args(device="cpu"), script=stand_in, timeout=120)
    assert ok["status"] == "ok", ok
    assert ok["result"]["infer_input_size"] == [7, 64, 64] and ok["result"]["out"] == [2, 6]


def test_img_size_gives_timm_a_three_channel_input() -> None:
    """Why the docs say ``--input-size 7 H W``: with ``--img-size`` timm's data config has 3 channels."""
    model = timm.create_model("afnet_m", in_chans=3, global_pool="fast", drop_block_rate=None, drop_path_rate=None)
    args = {"img_size": 64, "input_size": None}
    assert timm.data.resolve_data_config(args, model=model)["input_size"] == (3, 64, 64)
    assert timm.data.resolve_data_config({"input_size": [7, 64, 64]}, model=model)["input_size"] == (7, 64, 64)
    assert timm.data.resolve_data_config({}, model=model)["input_size"] == (7, 224, 224)
    with pytest.raises(ValueError, match="7 input channels"):
        model(torch.randn(1, 3, 64, 64))


def test_timm_benchmark_upstream_script() -> None:
    """timm's real benchmark.py, when it can be found (not in the PyPI sdist; see timm_script's docstring)."""
    path = find_timm_benchmark()
    if path is None:
        pytest.skip(f"timm {timm.__version__}'s benchmark.py is unavailable offline (set AFNETM_TIMM_BENCHMARK)")
    out = run_timm_benchmark(tiny_args(device="cpu"), script=path, timeout=300)
    assert out["status"] == "ok", out
    assert out["result"]["infer_samples_per_sec"] > 0 and out["result"]["infer_img_size"] == 64
