"""The whole benchmark suite: parameters and FLOPs, throughput against the baselines, preprocessing,
timm's benchmark.py; one results dict (see ``RESULTS_FIELDS``) written as JSON, markdown and PNG."""
from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from .baselines import BASELINE, BASELINES, bench_model_info
from .env import cuda_available, load_average, stamp
from .flops import cost_table
from .preprocess import PreprocessOptions, benchmark_preprocessing
from .throughput import (
    MODES,
    Measurement,
    Setting,
    TimingOptions,
    build_grid,
    default_dtypes,
    measure_setting,
    ratio_rows,
)

SCHEMA = "afnetm-bench/1"
#: Models timed in every setting by default: the baselines and AFNet-M.
DEFAULT_MODELS: tuple[str, ...] = (*BASELINES, "afnet_m")
#: Models timed in the base condition only (first dtype, first layout, eager): the ablations isolating MA and AF.
DEFAULT_EXTRA_MODELS: tuple[str, ...] = ("afnet_m_no_ma", "afnet_m_no_af")
#: Top-level fields of a results dict.
RESULTS_FIELDS: tuple[str, ...] = (
    "schema", "date", "command", "machine", "devices", "versions", "load_average_start", "load_average_end",
    "config", "costs", "throughput", "ratios", "preprocessing", "timm_benchmark", "duration_s",
)
#: Fields of every ``throughput`` row.
THROUGHPUT_FIELDS: tuple[str, ...] = (
    "device", "mode", "batch_size", "img_size", "dtype", "channels_last", "compile", "setting", "model", "status",
    "samples_per_s", "latency_ms", "peak_mem_mb", "compile_s", "iters", "step_s_repeats", "samples_per_s_repeats",
    "error",
)
#: Fields of every ``ratios`` row.
RATIO_FIELDS: tuple[str, ...] = (
    "device", "mode", "batch_size", "img_size", "dtype", "channels_last", "compile", "setting", "model", "baseline",
    "ratio", "ratio_min", "ratio_max", "target", "meets_target",
)


@dataclass(frozen=True)
class BenchConfig:
    """What to run. Empty/None fields take per-device defaults (see `afnetm_timm.bench.throughput`).

    ``devices``: () = CPU, plus CUDA when available. ``models``: models timed in every setting;
    ``extra_models``: timed only in the base condition (first dtype, first layout, first compile
    option) of each batch size and mode, which keeps the run short. ``cost_models``:
    models whose parameters and FLOPs are counted (None = the baselines and every registered
    AFNet-M variant). ``full_grid``: Cartesian product of the options instead of the standard grid.
    ``preprocess`` / ``timm_benchmark``: run those parts. ``target``: the AFNet-M / baseline ratio to meet.
    """

    devices: tuple[str, ...] = ()
    models: tuple[str, ...] = DEFAULT_MODELS
    extra_models: tuple[str, ...] = DEFAULT_EXTRA_MODELS
    cost_models: tuple[str, ...] | None = None
    img_size: int = 224
    batch_sizes: tuple[int, ...] | None = None
    dtypes: tuple[str, ...] | None = None
    channels_last: tuple[bool, ...] = (False, True)
    compile: tuple[bool, ...] = (False, True)
    modes: tuple[str, ...] = MODES
    full_grid: bool = False
    timing: TimingOptions = field(default_factory=TimingOptions)
    flops: bool = True
    throughput: bool = True
    preprocess: PreprocessOptions | None = field(default_factory=PreprocessOptions)
    timm_benchmark: bool = True
    target: float = 0.9
    baseline: str = BASELINE
    threads: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def quick_config(**overrides: Any) -> BenchConfig:
    """A short run on a 2-core CPU: 3 models, batch 1 and 8, no compile, 3 repeats, small preprocessing."""
    base = BenchConfig(
        extra_models=(), batch_sizes=(1, 8), compile=(False,),
        timing=TimingOptions(warmup=1, repeats=3, min_time=0.2), preprocess=PreprocessOptions(2, 96, 1),
    )
    return replace(base, **overrides)


def resolve_devices(requested: Sequence[str]) -> tuple[list[str], list[str]]:
    """(devices to run, devices skipped because unavailable). CUDA is used when present and not excluded."""
    has_cuda = cuda_available()
    wanted = list(requested) or (["cpu", "cuda"] if has_cuda else ["cpu"])
    run = [d for d in wanted if d == "cpu" or (d == "cuda" and has_cuda)]
    skipped = [d for d in wanted if d not in run]
    for d in skipped:
        warnings.warn(f"afnetm bench: device {d!r} is not available, skipped", RuntimeWarning, stacklevel=2)
    return run, skipped


def settings_for(config: BenchConfig, devices: Sequence[str]) -> list[Setting]:
    """Every setting of the run, device by device."""
    settings = []
    for device in devices:
        dtypes = config.dtypes
        if dtypes and device == "cpu":
            dtypes = tuple(d for d in dtypes if d != "fp16") or ("fp32",)  # fp16 autocast on CPU: no fast kernels
        settings += build_grid(device, config.img_size, config.batch_sizes, dtypes, config.channels_last,
                               config.compile, config.modes, config.full_grid)
    return settings


def models_for(config: BenchConfig, setting: Setting) -> list[str]:
    """The timed models of a setting: ``models``, plus ``extra_models`` in the base condition."""
    dtypes = config.dtypes or default_dtypes(setting.device)
    base = (setting.dtype == dtypes[0] and setting.channels_last == config.channels_last[0]
            and setting.compile == config.compile[0])
    extra = [m for m in config.extra_models if m not in config.models] if base else []
    return [*config.models, *extra]


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf → None, tuples → lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def run_suite(
    config: BenchConfig = BenchConfig(),
    command: str = "afnetm bench",
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the suite; returns the results dict (fields: ``RESULTS_FIELDS``).

    ``config.threads`` and cuDNN's benchmark mode apply during the run only.
    """
    for name in (*config.models, *config.extra_models, *(config.cost_models or ())):
        bench_model_info(name)  # unknown names fail here, before minutes of measuring
    if config.baseline not in config.models and config.throughput:
        raise ValueError(f"the baseline {config.baseline!r} must be among the timed models")
    threads, cudnn_benchmark = torch.get_num_threads(), torch.backends.cudnn.benchmark
    try:
        if config.threads:
            torch.set_num_threads(config.threads)
        return _run_suite(config, command, progress, log)
    finally:
        torch.set_num_threads(threads)
        torch.backends.cudnn.benchmark = cudnn_benchmark


def _run_suite(
    config: BenchConfig, command: str, progress: bool, log: Callable[[str], None] | None
) -> dict[str, Any]:
    started = time.perf_counter()
    devices, skipped = resolve_devices(config.devices)
    if not devices:
        raise ValueError(f"none of the requested devices {list(config.devices)} is available")
    if "cuda" in devices:
        torch.backends.cudnn.benchmark = True  # as timm's benchmark.py: fastest conv algorithms per shape
    results: dict[str, Any] = {"schema": SCHEMA, **stamp(devices, command)}
    results["config"] = {**_clean(config.as_dict()), "devices": devices, "skipped_devices": skipped}
    say = log or (lambda _msg: None)

    costs: list[dict[str, Any]] = []
    if config.flops:
        import afnetm_timm  # noqa: F401
        from afnetm_timm.params import afnet_m_variants

        names = list(config.cost_models) if config.cost_models is not None else [*BASELINES, *afnet_m_variants()]
        say(f"parameters and FLOPs of {len(names)} models")
        costs = [r.as_dict() for r in cost_table(names, config.img_size)]
    results["costs"] = costs

    measurements: list[Measurement] = []
    if config.throughput:
        settings = settings_for(config, devices)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(settings), desc="afnetm bench", unit="setting", leave=False)
        for setting in settings:
            if bar is not None:
                bar.set_postfix_str(setting.label)
            say(f"measuring {setting.label}")
            measurements += measure_setting(setting, models_for(config, setting), config.timing)
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
    results["throughput"] = [m.as_dict() for m in measurements]
    results["ratios"] = ratio_rows(measurements, config.baseline, config.target)

    results["preprocessing"] = None
    if config.preprocess is not None:
        say("preprocessing")
        results["preprocessing"] = benchmark_preprocessing(config.preprocess)

    results["timm_benchmark"] = None
    if config.timm_benchmark:
        from .timm_script import run_timm_benchmark, tiny_args

        say("timm's benchmark.py")
        results["timm_benchmark"] = run_timm_benchmark(tiny_args(device=devices[-1]), timeout=600)

    results["load_average_end"] = load_average()
    results["duration_s"] = round(time.perf_counter() - started, 1)
    return _clean(results)
