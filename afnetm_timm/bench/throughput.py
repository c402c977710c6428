"""Throughput, latency and peak memory of several models at one setting, measured interleaved.

A *setting* fixes device, mode (inference or a training step), batch size, image size, autocast
dtype, memory format and torch.compile. Within a setting every model is built, warmed up (excluded
from the numbers; a compiled model's first call is reported as ``compile_s``), and calibrated so one
measurement lasts at least ``min_time`` seconds. Then, for each repeat, every model is measured in
turn, the order rotating by one model per repeat, so slow drifts of the machine (other jobs, clock
changes) fall on all models alike. The reported throughput is the median over repeats; the ratio of
two models is the ratio of their medians, with the range of the per-repeat (paired) ratios.

Peak memory is measured in one extra step: on CUDA ``torch.cuda.max_memory_allocated`` minus what
was allocated before the step; on CPU the same quantity from the profiler's allocation events. Both
exclude weights, the input and optimizer state (allocated before), and include activations,
workspaces and gradients (set to None between training steps, so allocated anew in each).
"""
from __future__ import annotations

import contextlib
import gc
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from itertools import product
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .baselines import BASELINE, BASELINES, bench_model_info, create_bench_model

DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
MODES = ("inference", "train")


@dataclass(frozen=True)
class Setting:
    """One benchmark condition. ``dtype`` is the autocast dtype ('fp32': no autocast); weights stay fp32."""

    device: str
    mode: str
    batch_size: int
    img_size: int
    dtype: str = "fp32"
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        if self.device not in ("cpu", "cuda"):
            raise ValueError(f"device must be 'cpu' or 'cuda', got {self.device!r}")
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {tuple(DTYPES)}, got {self.dtype!r}")
        if self.batch_size < 1 or self.img_size < 32 or self.img_size % 32:
            raise ValueError(
                f"batch size must be >= 1 and image size a multiple of 32, got "
                f"{self.batch_size} and {self.img_size}"
            )

    @property
    def label(self) -> str:
        """Short human-readable name, e.g. ``cpu infer b8 224 bf16 NHWC compiled``."""
        mode = "infer" if self.mode == "inference" else "train"
        layout = "NHWC" if self.channels_last else "NCHW"
        comp = "compiled" if self.compile else "eager"
        return f"{self.device} {mode} b{self.batch_size} {self.img_size} {self.dtype} {layout} {comp}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TimingOptions:
    """How long and how often to measure.

    ``warmup``: steps after the first (compile) call, excluded from the numbers; the fastest of them
    calibrates the steps per measurement. ``repeats``: interleaved measurements per model.
    ``min_time``: seconds one measurement lasts at least (more steps per measurement for fast models). ``max_iters``: cap on steps per measurement. ``memory``: measure
    peak memory in one extra step.
    """

    warmup: int = 1
    repeats: int = 5
    min_time: float = 0.3
    max_iters: int = 50
    memory: bool = True


@dataclass
class Measurement:
    """The numbers of one model at one setting (``status`` 'ok', or 'error' with ``error``)."""

    setting: Setting
    model: str
    status: str = "ok"
    samples_per_s: float | None = None
    latency_ms: float | None = None
    peak_mem_mb: float | None = None
    compile_s: float | None = None
    iters: int = 0
    step_s_repeats: list[float] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d = {**self.setting.as_dict(), "setting": self.setting.label, "model": self.model}
        d.update({k: v for k, v in asdict(self).items() if k not in ("setting", "model")})
        d["samples_per_s_repeats"] = [self.setting.batch_size / s for s in self.step_s_repeats]
        return d


# --- grids ----------------------------------------------------------------------------------------


def default_batch_sizes(device: str) -> tuple[int, ...]:
    return (1, 8, 32) if device == "cpu" else (1, 32, 256)


def default_dtypes(device: str) -> tuple[str, ...]:
    return ("fp32", "bf16") if device == "cpu" else ("fp32", "fp16", "bf16")


def build_grid(
    device: str,
    img_size: int = 224,
    batch_sizes: Sequence[int] | None = None,
    dtypes: Sequence[str] | None = None,
    channels_last: Sequence[bool] = (False, True),
    compile: Sequence[bool] = (False, True),
    modes: Sequence[str] = MODES,
    full: bool = False,
) -> list[Setting]:
    """The settings of one device.

    ``full``: the Cartesian product of everything (per mode). Otherwise the *standard* grid, which
    keeps a CPU run within minutes: every batch size in the base condition (first dtype, first
    layout, first compile option); at the focus batch (the middle batch size) every dtype × layout
    combination eager, plus compiled in the base condition and in the "all on" condition (last
    dtype, last layout); for training only the focus batch, base and all-on, eager (compiled
    training too where compile is requested and the device is CUDA). On CUDA also the *headline*
    setting, inference and training: the largest batch, all on, last compile option (by default
    batch 256, bf16, channels_last, compiled).
    """
    batch_sizes = tuple(batch_sizes or default_batch_sizes(device))
    dtypes = tuple(dtypes or default_dtypes(device))
    channels_last, compile = tuple(channels_last), tuple(compile)
    settings: list[Setting] = []

    def add(mode: str, batch: int, dtype: str, cl: bool, comp: bool) -> None:
        s = Setting(device, mode, batch, img_size, dtype, cl, comp)
        if s not in settings:
            settings.append(s)

    for mode in modes:
        if full:
            for batch, dtype, cl, comp in product(batch_sizes, dtypes, channels_last, compile):
                add(mode, batch, dtype, cl, comp)
            continue
        focus = batch_sizes[len(batch_sizes) // 2]
        base = (dtypes[0], channels_last[0], compile[0])
        all_on = (dtypes[-1], channels_last[-1])
        if mode == "inference":
            for batch in batch_sizes:
                add(mode, batch, *base)
            for dtype, cl in product(dtypes, channels_last):
                add(mode, focus, dtype, cl, compile[0])
            for comp in compile:
                add(mode, focus, base[0], base[1], comp)
                add(mode, focus, *all_on, comp)
        else:
            train_compile = compile if device == "cuda" else compile[:1]
            for comp in train_compile:
                add(mode, focus, base[0], base[1], comp)
                add(mode, focus, *all_on, comp)
        if device == "cuda":
            add(mode, max(batch_sizes), *all_on, compile[-1])
    return settings


# --- measuring ------------------------------------------------------------------------------------


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _autocast(setting: Setting) -> contextlib.AbstractContextManager:
    dtype = DTYPES[setting.dtype]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=setting.device, dtype=dtype)


def example_input(setting: Setting, in_chans: int, seed: int = 0) -> torch.Tensor:
    """A random batch for ``setting``; for packed 7-channel inputs the last channel is a binary mask."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(setting.batch_size, in_chans, setting.img_size, setting.img_size, generator=gen)
    if in_chans == 7:
        x[:, 6] = (torch.rand(x[:, 6].shape, generator=gen) > 0.5).float()
    x = x.to(setting.device)
    if setting.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


class _Runner:
    """One model prepared for one setting: ``step()`` runs one inference call or one training step."""

    def __init__(self, name: str, setting: Setting, num_classes: int = 6) -> None:
        self.name = name
        self.setting = setting
        info = bench_model_info(name)
        torch.manual_seed(0)
        model = create_bench_model(name, num_classes=num_classes).to(setting.device)
        if setting.channels_last:
            model = model.to(memory_format=torch.channels_last)
        model.train(setting.mode == "train")
        self.model: nn.Module = model
        self.forward: Callable[[torch.Tensor], torch.Tensor] = torch.compile(model) if setting.compile else model
        self.x = example_input(setting, info.in_chans)
        self.target = torch.randint(0, num_classes, (setting.batch_size,), device=setting.device)
        self.optimizer: torch.optim.Optimizer | None = None
        self.scaler: torch.amp.GradScaler | None = None
        if setting.mode == "train":
            self.optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
            if setting.dtype == "fp16":
                self.scaler = torch.amp.GradScaler(setting.device)

    def step(self) -> None:
        s = self.setting
        if s.mode == "inference":
            with torch.inference_mode(), _autocast(s):
                self.forward(self.x)
            return
        assert self.optimizer is not None
        self.optimizer.zero_grad(set_to_none=True)
        with _autocast(s):
            loss = F.cross_entropy(self.forward(self.x).float(), self.target)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()

    def timed(self, iters: int) -> float:
        """Seconds per step over ``iters`` steps (device synchronised before and after)."""
        _sync(self.setting.device)
        start = time.perf_counter()
        for _ in range(iters):
            self.step()
        _sync(self.setting.device)
        return (time.perf_counter() - start) / iters


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence C-level stderr (the profiler's start/stop chatter) for the duration."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def peak_memory_mb(runner: _Runner) -> float | None:
    """Peak memory allocated during one step beyond what was allocated before it (MiB), or None."""
    device = runner.setting.device
    if device == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        runner.step()
        _sync(device)
        return (torch.cuda.max_memory_allocated() - before) / 2**20
    try:
        from torch.profiler import ProfilerActivity, profile

        with _quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
            runner.step()
        events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    except Exception:  # private profiler API: report no number rather than fail the benchmark
        return None
    total = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        total += event.nbytes()
        peak = max(peak, total)
    return peak / 2**20


def _error_text(err: BaseException) -> str:
    text = f"{type(err).__name__}: {err}".strip()
    return text.splitlines()[0][:300] if text else type(err).__name__


def measure_setting(
    setting: Setting,
    models: Sequence[str],
    options: TimingOptions = TimingOptions(),
    num_classes: int = 6,
    on_progress: Callable[[str], None] | None = None,
) -> list[Measurement]:
    """Measure every model at ``setting``, interleaved (see module docstring); one `Measurement` each."""
    results = {name: Measurement(setting, name) for name in models}
    runners: dict[str, _Runner] = {}
    if setting.compile:
        torch._dynamo.reset()  # fresh caches: no recompilation limits carried over from other settings
    for name in models:
        try:
            runner = _Runner(name, setting, num_classes)
            start = time.perf_counter()
            runner.step()  # first call: compilation for compiled models, allocator warm-up otherwise
            _sync(setting.device)
            if setting.compile:
                results[name].compile_s = time.perf_counter() - start
            one = min((runner.timed(1) for _ in range(options.warmup)), default=None)  # warm-up, timed to calibrate
            if options.min_time > 0 and one is None:
                one = runner.timed(1)
            iters = 1 if one is None else math.ceil(options.min_time / max(one, 1e-9))
            results[name].iters = max(1, min(options.max_iters, iters))
            runners[name] = runner
        except Exception as err:  # one failing model (e.g. a compile error) must not end the suite
            results[name].status, results[name].error = "error", _error_text(err)
        if on_progress:
            on_progress(f"{setting.label}: {name} ready")
    order = [name for name in models if name in runners]
    for rep in range(options.repeats):
        shift = rep % max(1, len(order))
        for name in order[shift:] + order[:shift]:
            if results[name].status != "ok":
                continue
            try:
                results[name].step_s_repeats.append(runners[name].timed(results[name].iters))
            except Exception as err:
                results[name].status, results[name].error = "error", _error_text(err)
        if on_progress:
            on_progress(f"{setting.label}: repeat {rep + 1}/{options.repeats}")
    for name in order:
        m = results[name]
        if m.status == "ok" and m.step_s_repeats:
            step = statistics.median(m.step_s_repeats)
            m.samples_per_s, m.latency_ms = setting.batch_size / step, step * 1000
            if options.memory:
                try:
                    m.peak_mem_mb = peak_memory_mb(runners[name])
                except Exception:
                    m.peak_mem_mb = None
    runners.clear()
    gc.collect()
    if setting.device == "cuda":
        torch.cuda.empty_cache()
    return [results[name] for name in models]


# --- ratios ---------------------------------------------------------------------------------------


def ratio_rows(
    measurements: Sequence[Measurement], baseline: str = BASELINE, target: float = 0.9
) -> list[dict[str, Any]]:
    """Throughput of every AFNet-M variant / throughput of ``baseline``, per setting.

    ``ratio``: ratio of the medians. ``ratio_min`` / ``ratio_max``: range of the per-repeat ratios
    (repeat i of the variant against repeat i of the baseline, measured back to back).
    ``meets_target``: ratio >= target.
    """
    by_setting: dict[Setting, dict[str, Measurement]] = {}
    for m in measurements:
        by_setting.setdefault(m.setting, {})[m.model] = m
    rows = []
    for setting, models in by_setting.items():
        base = models.get(baseline)
        for name, m in models.items():
            if name in BASELINES:
                continue
            row: dict[str, Any] = {**setting.as_dict(), "setting": setting.label, "model": name,
                                   "baseline": baseline, "ratio": None, "ratio_min": None, "ratio_max": None,
                                   "target": target, "meets_target": None}
            if base is not None and base.samples_per_s and m.samples_per_s:
                paired = [b / v for v, b in zip(m.step_s_repeats, base.step_s_repeats, strict=False)]
                row.update(ratio=m.samples_per_s / base.samples_per_s, ratio_min=min(paired), ratio_max=max(paired))
                row["meets_target"] = row["ratio"] >= target
            rows.append(row)
    return rows
