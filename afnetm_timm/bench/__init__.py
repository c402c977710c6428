"""Benchmark suite of AFNet-M: parameters and FLOPs, throughput against two ResNet18 forwards, preprocessing.

``afnetm bench`` (or ``python -m afnetm_timm.bench``) runs it and writes JSON, markdown and a PNG to
``benchmarks/results/``; from Python::

    from afnetm_timm.bench import quick_config, run_suite, write_results
    results = run_suite(quick_config())
    write_results(results, "benchmarks/results", "bench-cpu-quick")
"""
from .baselines import BASELINE, BASELINES, DualResNet18, create_bench_model
from .flops import ModelCost, cost_table, count_flops, model_cost
from .preprocess import PreprocessOptions, benchmark_preprocessing
from .report import render_markdown, write_results
from .suite import (
    DEFAULT_EXTRA_MODELS,
    DEFAULT_MODELS,
    RATIO_FIELDS,
    RESULTS_FIELDS,
    THROUGHPUT_FIELDS,
    BenchConfig,
    quick_config,
    run_suite,
)
from .throughput import Setting, TimingOptions, build_grid, measure_setting, ratio_rows

__all__ = [
    "BASELINE",
    "BASELINES",
    "DEFAULT_EXTRA_MODELS",
    "DEFAULT_MODELS",
    "RATIO_FIELDS",
    "RESULTS_FIELDS",
    "THROUGHPUT_FIELDS",
    "BenchConfig",
    "DualResNet18",
    "ModelCost",
    "PreprocessOptions",
    "Setting",
    "TimingOptions",
    "benchmark_preprocessing",
    "build_grid",
    "cost_table",
    "count_flops",
    "create_bench_model",
    "measure_setting",
    "model_cost",
    "quick_config",
    "ratio_rows",
    "render_markdown",
    "run_suite",
    "write_results",
]
