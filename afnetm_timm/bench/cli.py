"""``afnetm bench``: the benchmark suite from the command line.

The ``afnetm`` command gains it with one call in ``afnetm_timm/cli.py``::

    from afnetm_timm.bench.cli import add_bench_command
    add_bench_command(sub)   # sub = parser.add_subparsers(...)

Until then (or without the console script) ``python -m afnetm_timm.bench [options]`` runs the same.
"""
from __future__ import annotations

import argparse
import math
import shlex
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from .preprocess import PreprocessOptions
from .throughput import DTYPES, MODES, TimingOptions

_SWITCH = {"off": (False,), "on": (True,), "both": (False, True)}


def add_bench_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Options of the bench command (shared by ``afnetm bench`` and ``python -m afnetm_timm.bench``)."""
    g = parser.add_argument_group("what to run")
    g.add_argument("--quick", action="store_true",
                   help="about a minute on a 2-core CPU: resnet18, dual_resnet18, afnet_m; batch 1 and 8; no compile; "
                        "3 repeats; small preprocessing run")
    g.add_argument("--devices", nargs="+", choices=("cpu", "cuda"), default=None,
                   help="devices (default: cpu, and cuda when available; an unavailable cuda is skipped)")
    g.add_argument("--models", nargs="+", default=None,
                   help="models timed in every setting: AFNet-M variants and the baselines resnet18, dual_resnet18 "
                        "(default: resnet18 dual_resnet18 afnet_m)")
    g.add_argument("--extra-models", nargs="*", default=None,
                   help="models timed only in the base condition (first dtype, NCHW, eager) of each batch size and "
                        "mode (default: afnet_m_no_ma afnet_m_no_af, none with --quick; no names: none)")
    g.add_argument("--cost-models", nargs="+", default=None,
                   help="models whose parameters/FLOPs are counted (default: baselines and every afnet_m variant)")
    g.add_argument("--img-size", type=int, default=224, help="input height and width, a multiple of 32 (224)")
    g.add_argument("--batch-sizes", nargs="+", type=int, default=None,
                   help="batch sizes (default: 1 8 32 on CPU, 1 32 256 on CUDA)")
    g.add_argument("--dtypes", nargs="+", choices=tuple(DTYPES), default=None,
                   help="autocast dtypes (default: fp32 bf16 on CPU, fp32 fp16 bf16 on CUDA; fp16 is skipped on CPU)")
    g.add_argument("--channels-last", choices=tuple(_SWITCH), default="both", help="memory format(s) (both)")
    g.add_argument("--compile", choices=tuple(_SWITCH), default=None,
                   help="torch.compile off/on/both (default: both; off with --quick)")
    g.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="inference and/or train")
    g.add_argument("--full-grid", action="store_true",
                   help="every combination of the options (default: the standard grid, see README)")
    g.add_argument("--no-flops", action="store_true", help="skip parameters and FLOPs")
    g.add_argument("--no-throughput", action="store_true", help="skip the timed part")
    g.add_argument("--no-preprocess", action="store_true", help="skip the preprocessing benchmark")
    g.add_argument("--no-timm-benchmark", action="store_true", help="skip the tiny run of timm's benchmark.py")
    g.add_argument("--profile", action="store_true",
                   help="also profile afnet_m vs dual_resnet18 (torch.profiler) and write <name>-profile.md")
    t = parser.add_argument_group("timing")
    t.add_argument("--repeats", type=int, default=None, help="interleaved repeats per model (5; 3 with --quick)")
    t.add_argument("--warmup", type=int, default=None, help="excluded steps after the first call (1)")
    t.add_argument("--min-time", type=float, default=None, help="seconds per measurement at least (0.3)")
    t.add_argument("--no-memory", action="store_true", help="skip the peak-memory step")
    t.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    t.add_argument("--target", type=float, default=0.9, help="AFNet-M / dual_resnet18 throughput target (0.9)")
    o = parser.add_argument_group("output")
    o.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="results folder (benchmarks/results)")
    o.add_argument("--name", default=None, help="file name stem (default: bench-<devices>[-quick])")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    o.add_argument("--fail-below-target", action="store_true",
                   help="exit with status 3 when a ratio misses the target (timings are otherwise never failures)")
    parser.set_defaults(func=cmd_bench, command_text=None)
    return parser


def add_bench_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``bench`` on the ``afnetm`` sub-command parser; its handler is ``args.func(args)``."""
    parser = subparsers.add_parser(
        "bench", help="benchmark suite: parameters, FLOPs, CPU/GPU throughput vs two ResNet18s, preprocessing",
        description="Parameters and FLOPs of every variant; throughput, latency and peak memory of AFNet-M against "
                    "one and two ResNet18 forwards; preprocessing speed; results as JSON, markdown and PNG.",
    )
    return add_bench_arguments(parser)


def config_from_args(args: argparse.Namespace):
    """The `BenchConfig` the options describe."""
    from .suite import BenchConfig, quick_config

    base = quick_config() if args.quick else BenchConfig()
    timing = base.timing
    timing = TimingOptions(
        warmup=timing.warmup if args.warmup is None else args.warmup,
        repeats=timing.repeats if args.repeats is None else args.repeats,
        min_time=timing.min_time if args.min_time is None else args.min_time,
        max_iters=timing.max_iters,
        memory=not args.no_memory,
    )
    if timing.repeats < 1 or timing.warmup < 0:
        raise ValueError("--repeats must be >= 1 and --warmup >= 0")
    if not (timing.min_time >= 0 and math.isfinite(timing.min_time)):
        raise ValueError(f"--min-time must be a finite number >= 0, got {timing.min_time}")
    if not (args.target > 0 and math.isfinite(args.target)):
        raise ValueError(f"--target must be a finite number > 0, got {args.target}")
    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0 (0: torch's choice), got {args.threads}")
    if args.name is not None and (not args.name or Path(args.name).name != args.name or args.name in (".", "..")):
        raise ValueError(f"--name must be a plain file name stem (no folders), got {args.name!r}")
    compile_opt = base.compile if args.compile is None else _SWITCH[args.compile]
    preprocess: PreprocessOptions | None = None if args.no_preprocess else base.preprocess
    return replace(
        base,
        devices=tuple(args.devices or ()),
        models=tuple(args.models) if args.models else base.models,
        extra_models=base.extra_models if args.extra_models is None else tuple(args.extra_models),
        cost_models=tuple(args.cost_models) if args.cost_models else None,
        img_size=args.img_size,
        batch_sizes=tuple(args.batch_sizes) if args.batch_sizes else base.batch_sizes,
        dtypes=tuple(args.dtypes) if args.dtypes else None,
        channels_last=_SWITCH[args.channels_last],
        compile=compile_opt,
        modes=tuple(args.modes),
        full_grid=args.full_grid,
        timing=timing,
        flops=not args.no_flops,
        throughput=not args.no_throughput,
        preprocess=preprocess,
        timm_benchmark=not args.no_timm_benchmark,
        target=args.target,
        threads=args.threads,
    )


def _command_text(args: argparse.Namespace) -> str:
    if args.command_text:
        return args.command_text
    argv = sys.argv[1:]
    return "afnetm " + shlex.join(argv) if argv[:1] == ["bench"] else "afnetm bench " + shlex.join(argv)


def _profile(results: dict, config, out: Path, name: str) -> Path:
    from .profiling import profile_setting, render_profile
    from .report import write_text
    from .throughput import Setting, default_batch_sizes

    profiles = []
    for device in results["config"]["devices"]:
        batches = config.batch_sizes or default_batch_sizes(device)
        focus = batches[len(batches) // 2]
        for dtype, cl in (("fp32", False), ("bf16", True)):
            setting = Setting(device, "inference", focus, config.img_size, dtype, cl, False)
            profiles.append(profile_setting(setting))
    results["profile"] = profiles
    return write_text(out / f"{name}-profile.md", render_profile(profiles))


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the suite, write ``<out>/<name>.{json,md,png}``, print the throughput table."""
    from .report import render_markdown, throughput_section, write_results
    from .suite import run_suite

    config = config_from_args(args)
    log = None if args.no_progress else (lambda msg: print(f"[afnetm bench] {msg}", file=sys.stderr, flush=True))
    results = run_suite(config, command=_command_text(args), progress=not args.no_progress, log=log)
    devices = "-".join(results["config"]["devices"])
    name = args.name or f"bench-{devices}" + ("-quick" if args.quick else "")
    extra = []
    if args.profile:
        extra.append(_profile(results, config, args.out, name))
    paths = write_results(results, args.out, name)
    section = throughput_section(results)
    print("\n".join(section) if section else render_markdown(results))
    for path in [*paths.values(), *extra]:
        print(f"wrote {path}")
    missed = [r for r in results["ratios"] if r["meets_target"] is False]
    if args.fail_below_target and missed:
        print(f"afnetm bench: {len(missed)} setting(s) below the target {config.target}", file=sys.stderr)
        return 3
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "python -m afnetm_timm.bench") -> int:
    """``python -m afnetm_timm.bench [options]`` (the same options as ``afnetm bench``)."""
    parser = add_bench_arguments(argparse.ArgumentParser(prog=prog, description=__doc__))
    args = parser.parse_args(argv)
    args.command_text = f"{prog} " + shlex.join(sys.argv[1:] if argv is None else list(argv))
    try:
        return args.func(args)
    except (ValueError, RuntimeError) as err:
        print(f"afnetm bench: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
