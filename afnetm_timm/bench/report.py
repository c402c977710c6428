"""Results files of the benchmark: JSON, a markdown report and a PNG plot, each written atomically."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .._atomic import atomic_path, write_atomic


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all."""
    return write_atomic(path, text)


def _num(value: float | None, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:,.{digits}f}"


def _join(values: list[float] | None) -> str:
    return "/".join(f"{v:.2f}" for v in values) if values else "n/a"


def header_lines(results: dict[str, Any]) -> list[str]:
    """Date, machine, devices, versions, load and method: the stamp every report starts with."""
    m, v = results["machine"], results["versions"]
    devices = "; ".join(
        f"{d['type'].upper()}: {d['name']}" + (f" ({d['cores']} cores, {d['torch_threads']} torch threads)"
                                                 if d["type"] == "cpu" else f" ({d.get('memory_gib')} GiB)")
        for d in results["devices"]
    )
    opts = results["config"]["timing"]
    return [
        f"- date: {results['date']}",
        f"- command: `{results['command']}`",
        f"- machine: {m['platform']}; CPU: {m['cpu']}, {m['cores']} usable cores",
        f"- devices: {devices}",
        f"- versions: afnetm_timm {v['afnetm_timm']}, torch {v['torch']}, timm {v['timm']}, numpy {v['numpy']}, "
        f"python {v['python']}",
        f"- load average (1/5/15 min) at start: {_join(results.get('load_average_start'))}, "
        f"at end: {_join(results.get('load_average_end'))}",
        f"- method: first call (compilation) and {opts['warmup']} warm-up step(s) excluded, {opts['repeats']} repeats "
        f"interleaved across models (order rotating), >= {opts['min_time']} s per measurement, medians; random "
        "weights; autocast for bf16/fp16 (weights fp32); training = SGD step on cross-entropy",
    ]


def cost_section(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    size = rows[0]["input_shape"][-1]
    lines = [
        f"## Parameters and FLOPs (batch 1, {size}×{size})",
        "",
        "FLOPs from `torch.utils.flop_counter.FlopCounterMode` (convolutions and matrix products; element-wise "
        "ops are not counted), MACs = FLOPs / 2. Per-call parameters: each module counted once per call "
        "(torchsummary, the paper's Table 4 convention; MB = parameters × 4 / 2²⁰).",
        "",
        "| model | params (numel) | params (per call) | MB (per call) | Table 4 MB | deviation | GFLOPs | GMACs "
        "| MA GFLOPs | AF GFLOPs | FLOPs / dual_resnet18 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        dev = f"{r['deviation_pct']:+.2f} %" if r.get("deviation_pct") is not None else ""
        paper = _num(r.get("table4_mb"), 2) if r.get("table4_mb") is not None else ""
        lines.append(
            f"| `{r['name']}` | {r['numel']:,} | {r['per_call']:,} | {r['per_call_mb']:.2f} | {paper} | {dev} "
            f"| {r['gflops']:.3f} | {r['gmacs']:.3f} | {r['ma_flops'] / 1e9:.3f} | {r['af_flops'] / 1e9:.4f} "
            f"| {_num(r.get('flops_vs_baseline'), 3)} |"
        )
    return lines + [""]


def throughput_section(results: dict[str, Any]) -> list[str]:
    rows = results.get("throughput") or []
    if not rows:
        return []
    models = list(dict.fromkeys(r["model"] for r in rows))
    ratios = {(r["setting"], r["model"]): r for r in results.get("ratios", [])}
    variants = list(dict.fromkeys(r["model"] for r in results.get("ratios", [])))
    target = results["config"]["target"]
    baseline = results["config"]["baseline"]
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    by_key = {(r["setting"], r["model"]): r for r in rows}
    lines = [
        f"## Throughput (samples/s) and AFNet-M / `{baseline}` (target >= {target})",
        "",
        f"`{baseline}`: two timm ResNet18 trunks on the texture and depth channels + one Linear, the cost floor "
        "of any dual-branch ResNet18 model. Ratio = median throughput / median throughput of the baseline; in "
        "brackets the range of the per-repeat ratios (measured back to back).",
        "",
        "| setting | " + " | ".join(f"`{m}`" for m in models) + " | " + " | ".join(f"`{v}` / base" for v in variants)
        + " |",
        "|---|" + "---:|" * (len(models) + len(variants)),
    ]
    for s in settings:
        cells = []
        for m in models:
            r = by_key.get((s, m))
            cells.append("–" if r is None else _num(r["samples_per_s"], 1) if r["status"] == "ok" else "error")
        for v in variants:
            q = ratios.get((s, v))
            if q is None or q["ratio"] is None:
                cells.append("–")
            else:
                mark = "✓" if q["meets_target"] else "✗"
                cells.append(f"{q['ratio']:.3f} {mark} ({q['ratio_min']:.2f}–{q['ratio_max']:.2f})")
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    lines += ["", "### Latency (ms per batch), peak memory (MiB beyond weights and input), compile time (s)", "",
              "Compile time is the first call of the compiled model; it includes hits in torch's compile caches "
              "from earlier runs on the same machine.", "",
              "| setting | model | latency ms | peak MiB | compile s | steps per measurement |",
              "|---|---|---:|---:|---:|---:|"]
    for s in settings:
        for m in models:
            r = by_key.get((s, m))
            if r is None:
                continue
            if r["status"] != "ok":
                lines.append(f"| {s} | `{m}` | error: {r.get('error', '')} | | | |")
                continue
            lines.append(f"| {s} | `{m}` | {_num(r['latency_ms'], 1)} | {_num(r['peak_mem_mb'], 0)} "
                         f"| {_num(r['compile_s'], 1)} | {r['iters']} |")
    return lines + [""]


def preprocessing_section(pre: dict[str, Any] | None) -> list[str]:
    if not pre:
        return []
    lines = ["## Preprocessing", ""]
    g, p = pre["gridfit"], pre["pipeline"]
    if g["status"] == "ok":
        lines.append(f"- gridfit, {g['grid'][0]}×{g['grid'][1]} nodes, {g['clouds']} clouds of ~{g['points_per_cloud']:,} "
                     f"points from `{g['points']}` (depth range {g['depth_range']:.3g}):")
        for c in g["cases"]:
            lines.append(
                f"  - {c['columns']} value column(s): fast {c['fast_ms']:.1f} ms, reference {c['reference_ms']:.1f} ms, "
                f"speed-up {_num(c['speedup'], 2)}×; depth max |fast − reference| {c['max_abs_diff']:.3g} "
                f"(RMS {c['rms_diff']:.3g})"
            )
    else:
        lines.append(f"- gridfit: {g['status']} ({g.get('reason', '')})")
    if p["status"] == "ok":
        lines.append(f"- whole pipeline (`preprocess_scan`): {p['scans_per_s']:.2f} scans/s "
                     f"({p['ms_per_scan']:.1f} ms per scan, {p['scans']} synthetic scans)")
    else:
        lines.append(f"- whole pipeline (`preprocess_scan`): {p['status']} ({p.get('reason', '')})")
    return lines + [""]


def timm_section(tb: dict[str, Any] | None) -> list[str]:
    if not tb:
        return []
    lines = ["## timm's benchmark.py on afnet_m", ""]
    args = " ".join(tb.get("args", []))
    if tb["status"] == "ok":
        lines.append(f"- `benchmark.py {args}`: `{json.dumps(tb['result'])}`")
    else:
        lines.append(f"- `benchmark.py {args}`: {tb['status']} ({tb.get('reason', '')})")
    return lines + [""]


def render_markdown(results: dict[str, Any]) -> str:
    """The markdown report of a results dict (as `afnetm_timm.bench.suite.run_suite` returns it)."""
    lines = [f"# AFNet-M benchmark ({results['date'][:10]})", "", *header_lines(results), ""]
    lines += cost_section(results.get("costs") or [])
    lines += throughput_section(results)
    lines += preprocessing_section(results.get("preprocessing"))
    lines += timm_section(results.get("timm_benchmark"))
    return "\n".join(lines).rstrip() + "\n"


def render_plot(results: dict[str, Any], path: Path) -> Path | None:
    """A PNG: AFNet-M / baseline ratio per setting (left) and throughput of every model (right). None if no data."""
    rows = [r for r in results.get("throughput") or [] if r["status"] == "ok"]
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    settings = list(dict.fromkeys(r["setting"] for r in results["throughput"]))
    models = list(dict.fromkeys(r["model"] for r in results["throughput"]))
    ratio_rows = [q for q in results.get("ratios", []) if q["ratio"] is not None]
    variants = list(dict.fromkeys(q["model"] for q in ratio_rows))
    height = max(3.5, 0.5 * len(settings) + 2.0)
    fig, (ax_ratio, ax_tp) = plt.subplots(1, 2, figsize=(15, height), sharey=True)
    ys = list(range(len(settings)))
    bar = 0.8 / max(1, len(variants))
    all_ratios = [q["ratio"] for q in ratio_rows]
    low = min(0.7, min(all_ratios, default=1.0) - 0.05)
    for i, v in enumerate(variants):
        vals = {q["setting"]: q["ratio"] for q in ratio_rows if q["model"] == v}
        pos = [y + i * bar for y, s in zip(ys, settings, strict=True) if s in vals]
        widths = [vals[s] - low for s in settings if s in vals]
        ax_ratio.barh(pos, widths, left=low, height=bar, label=v)
        for y, w in zip(pos, widths, strict=True):
            ax_ratio.text(low + w + 0.005, y, f"{low + w:.3f}", va="center", fontsize=6)
    target = results["config"]["target"]
    ax_ratio.axvline(target, color="red", linestyle="--", label=f"target {target}")
    ax_ratio.axvline(1.0, color="grey", linewidth=0.8)
    ax_ratio.set_xlim(low, max(1.1, max(all_ratios, default=1.0) + 0.05))
    ax_ratio.set_xlabel(f"throughput / {results['config']['baseline']} (higher is better)")
    ax_ratio.set_yticks([y + 0.4 - bar / 2 for y in ys], settings, fontsize=8)
    ax_ratio.invert_yaxis()
    ax_ratio.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=4, frameon=False)
    bar_tp = 0.8 / max(1, len(models))
    by_key = {(r["setting"], r["model"]): r["samples_per_s"] for r in rows}
    for i, m in enumerate(models):
        pos = [y + i * bar_tp for y, s in zip(ys, settings, strict=True) if (s, m) in by_key]
        ax_tp.barh(pos, [by_key[(s, m)] for s in settings if (s, m) in by_key], height=bar_tp, label=m)
    ax_tp.set_xscale("log")
    ax_tp.set_xlabel("samples/s (log scale)")
    ax_tp.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=5, frameon=False)
    devices = ", ".join(d["name"] for d in results["devices"])
    fig.suptitle(f"AFNet-M benchmark {results['date'][:10]} — {devices} — torch {results['versions']['torch']}, "
                 f"timm {results['versions']['timm']}", fontsize=9)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=110)
        return path
    finally:
        plt.close(fig)


def write_results(results: dict[str, Any], out_dir: Path, name: str) -> dict[str, Path]:
    """Write ``<name>.json``, ``<name>.md`` and ``<name>.png`` under ``out_dir``, atomically; their paths."""
    out_dir = Path(out_dir)
    paths = {
        "json": write_text(out_dir / f"{name}.json", json.dumps(results, indent=2, default=str) + "\n"),
        "markdown": write_text(out_dir / f"{name}.md", render_markdown(results)),
    }
    png = render_plot(results, out_dir / f"{name}.png")
    if png is not None:
        paths["png"] = png
    return paths
