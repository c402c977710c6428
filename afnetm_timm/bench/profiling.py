"""Where AFNet-M's time goes compared with two ResNet18 forwards (torch.profiler and module timers).

Two views of one setting:

* per module group: wall time inside MA modules, AF modules, and the rest (trunks, stems, the
  per-stage mask resize, head), from forward pre/post hooks (the device is synchronised in each
  hook on CUDA, so the hooked step is slower than an unhooked one; shares are what matter);
* per operator: torch.profiler self time of each aten op for AFNet-M and the baseline, and the
  difference, so the operators AFNet-M adds (or slows down) stand out.
"""
from __future__ import annotations

import re
import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from torch import nn

from .baselines import BASELINE
from .throughput import Setting, _quiet_stderr, _Runner, _sync

_GROUPS = {
    "mask attention (MA)": re.compile(r"(?:^|\.)(?:depth_)?mask_attn$"),
    "adaptive fusion (AF)": re.compile(r"(?:^|\.)fusion$"),
}


def _hooked_step(runner: _Runner) -> tuple[dict[str, float], float]:
    """Seconds in each module group and in total during one step (forward pre/post hooks)."""
    spent: dict[str, float] = defaultdict(float)
    starts: dict[int, float] = {}
    handles = []
    device = runner.setting.device

    def pre(module: nn.Module, _args: Any) -> None:
        _sync(device)
        starts[id(module)] = time.perf_counter()

    def post_for(group: str):
        def post(module: nn.Module, _args: Any, _out: Any) -> None:
            _sync(device)
            spent[group] += time.perf_counter() - starts.pop(id(module))

        return post

    for name, module in runner.model.named_modules():
        for group, pattern in _GROUPS.items():
            if pattern.search(name):
                handles.append(module.register_forward_pre_hook(pre))
                handles.append(module.register_forward_hook(post_for(group)))
    try:
        _sync(device)
        start = time.perf_counter()
        runner.step()
        _sync(device)
        total = time.perf_counter() - start
    finally:
        for h in handles:
            h.remove()
    return dict(spent), total


def _op_times(runner: _Runner) -> dict[str, float]:
    """Self time (ms) of every operator in one profiled step (CPU self time on CPU, device time on CUDA)."""
    from torch.profiler import ProfilerActivity, profile

    cuda = runner.setting.device == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with _quiet_stderr(), profile(activities=activities) as prof:
        runner.step()
        _sync(runner.setting.device)
    table: dict[str, float] = {}
    for event in prof.key_averages():
        if cuda:
            us = getattr(event, "self_device_time_total", 0.0) or getattr(event, "self_cuda_time_total", 0.0)
        else:
            us = event.self_cpu_time_total
        if us > 0:
            table[event.key] = table.get(event.key, 0.0) + us / 1000
    return table


def _median_tables(tables: Sequence[dict[str, float]]) -> dict[str, float]:
    keys = set().union(*tables) if tables else set()
    return {k: statistics.median(t.get(k, 0.0) for t in tables) for k in keys}


def profile_setting(setting: Setting, model: str = "afnet_m", baseline: str = BASELINE, rounds: int = 5,
                    top: int = 15) -> dict[str, Any]:
    """Module shares of ``model`` and its operator table against ``baseline`` at ``setting``.

    Both are measured in ``rounds`` alternating rounds (model, baseline, model, ...) and reduced to
    per-round medians, so a change in machine load affects both alike.
    """
    runner, base = _Runner(model, setting), _Runner(baseline, setting)
    for r in (runner, base):
        r.step()
        r.step()
    shares: list[dict[str, float]] = []
    totals: dict[str, list[float]] = {model: [], baseline: []}
    ops: list[dict[str, float]] = []
    base_ops: list[dict[str, float]] = []
    for _ in range(rounds):
        spent, total = _hooked_step(runner)
        shares.append({g: 1000 * spent.get(g, 0.0) for g in _GROUPS} | {"total": 1000 * total})
        totals[baseline].append(1000 * base.timed(1))
        totals[model].append(1000 * runner.timed(1))
        ops.append(_op_times(runner))
        base_ops.append(_op_times(base))
    module_ms = _median_tables(shares)
    module_ms = {g: module_ms[g] for g in _GROUPS} | {
        "rest (trunks, stems, mask resize, head)": module_ms["total"] - sum(module_ms[g] for g in _GROUPS),
        "total": module_ms["total"],
    }
    op_med, base_med = _median_tables(ops), _median_tables(base_ops)
    names = sorted(set(op_med) | set(base_med), key=lambda k: -abs(op_med.get(k, 0.0) - base_med.get(k, 0.0)))
    rows = [{"op": k, "model_ms": op_med.get(k, 0.0), "baseline_ms": base_med.get(k, 0.0),
             "diff_ms": op_med.get(k, 0.0) - base_med.get(k, 0.0)} for k in names[:top]]
    return {"setting": setting.as_dict(), "label": setting.label, "model": model, "baseline": baseline,
            "rounds": rounds, "module_ms": module_ms,
            "step_ms": {k: statistics.median(v) for k, v in totals.items()},
            "model_total_ms": sum(op_med.values()), "baseline_total_ms": sum(base_med.values()), "ops": rows}


def render_profile(profiles: Sequence[dict[str, Any]]) -> str:
    """Markdown of `profile_setting` results."""
    lines = ["# Where AFNet-M's time goes (torch.profiler)", ""]
    for p in profiles:
        steps = p["step_ms"]
        lines += [f"## {p['label']}: `{p['model']}` vs `{p['baseline']}`", "",
                  f"Unhooked step, median of {p['rounds']} alternating rounds: `{p['model']}` "
                  f"{steps[p['model']]:.1f} ms, `{p['baseline']}` {steps[p['baseline']]:.1f} ms "
                  f"(ratio of throughputs {steps[p['baseline']] / steps[p['model']]:.3f}).", "",
                  "Module groups (forward hooks, ms per step, medians):", "", "| group | ms | share |", "|---|---:|---:|"]
        total = p["module_ms"]["total"] or 1.0
        for group, ms in p["module_ms"].items():
            lines.append(f"| {group} | {ms:.2f} | {100 * ms / total:.1f} % |")
        lines += ["", f"Operators, self time in ms per step, medians (profiled totals: `{p['model']}` "
                      f"{p['model_total_ms']:.1f}, `{p['baseline']}` {p['baseline_total_ms']:.1f}); the "
                      f"{len(p['ops'])} largest differences:", "",
                  f"| op | `{p['model']}` | `{p['baseline']}` | difference |", "|---|---:|---:|---:|"]
        for row in p["ops"]:
            lines.append(f"| `{row['op']}` | {row['model_ms']:.2f} | {row['baseline_ms']:.2f} | {row['diff_ms']:+.2f} |")
        lines.append("")
    return "\n".join(lines)
