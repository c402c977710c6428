"""Proposed faster mask attention (same math), timed against the current one and two ResNet18 forwards.

Nothing in the package changes: the variants are patched in for the measurement only, and every
variant's logits are compared with the current implementation's before timing.

* ``current``: `afnetm_timm.layers.MaskAttention` as it is.
* ``p1``: small changes: the 1→C first convolution of each group as one broadcast ``addcmul``
  (instead of a ``conv2d`` with one input channel, which takes oneDNN's slow path at small batch),
  no re-resize when the stage mask already has the feature map's size, and the packed mask made
  contiguous once in ``AFNetM._split_input`` (a channel slice of a channels_last input is strided).
* ``p2``: ``p1`` plus a lookup table: γ and β depend only on the scalar mask value at a pixel, and an
  area-resized binary mask has few distinct values (at most 17 at stride 4, 65 at stride 8), so γ
  and β are computed once per distinct value and gathered (``F.embedding``), which removes the two
  C→C 1×1 convolutions per branch at stages 1–2. Falls back to ``p1`` above ``max_values`` distinct
  values (soft masks).

    python benchmarks/ma_variants.py                 # -> results/ma-variants.{json,md}
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import timm
import torch
import torch.nn.functional as F

import afnetm_timm  # noqa: F401
from afnetm_timm.bench.baselines import DualResNet18
from afnetm_timm.bench.env import load_average, stamp
from afnetm_timm.bench.report import write_text
from afnetm_timm.layers._checks import check_mask_attention_inputs
from afnetm_timm.layers.mask_attention import MaskAttention, resize_mask
from afnetm_timm.models.afnet_m import AFNetM

RESULTS = Path(__file__).resolve().parent / "results"
CURRENT = (MaskAttention.forward, AFNetM._split_input)


def _split_contiguous_mask(self: AFNetM, x: torch.Tensor):
    main, depth, mask = CURRENT[1](self, x)
    return main, depth, mask.contiguous()


def _resized(mask: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if mask.shape[-2:] != x.shape[-2:]:
        mask = resize_mask(mask, x.shape[-2:])
    return mask.to(x.dtype)


def _hidden(conv_in: torch.nn.Conv2d, act: torch.nn.Module, mask: torch.Tensor) -> torch.Tensor:
    """conv(mask broadcast to C channels) = mask ⊗ (weight summed over input channels) + bias, then act."""
    weight = conv_in.weight.sum(dim=1).view(1, -1, 1, 1).to(mask.dtype)
    return act(torch.addcmul(conv_in.bias.view(1, -1, 1, 1).to(mask.dtype), mask, weight))


def _modulation_p1(self: MaskAttention, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return (self.gamma_out(_hidden(self.gamma_in, self.gamma_act, mask)),
            self.beta_out(_hidden(self.beta_in, self.beta_act, mask)))


def forward_p1(self: MaskAttention, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    check_mask_attention_inputs(x, mask, self.channels)
    gamma, beta = _modulation_p1(self, _resized(mask, x))
    return (x * gamma).add_(beta)


def forward_p2(self: MaskAttention, x: torch.Tensor, mask: torch.Tensor, max_values: int = 1024) -> torch.Tensor:
    check_mask_attention_inputs(x, mask, self.channels)
    mask = _resized(mask, x)
    values, index = torch.unique(mask, return_inverse=True)
    if values.numel() > max_values:
        gamma, beta = _modulation_p1(self, mask)
        return (x * gamma).add_(beta)
    gamma, beta = _modulation_p1(self, values.view(-1, 1, 1, 1))  # (U, C, 1, 1): γ, β per distinct value
    table = torch.cat([gamma, beta], dim=1).flatten(1)  # (U, 2C)
    gb = F.embedding(index[:, 0], table).permute(0, 3, 1, 2)  # (B, 2C, H, W)
    return (x * gb[:, : self.channels]).add_(gb[:, self.channels:])


VARIANTS = {
    "current": CURRENT,
    "p1": (forward_p1, _split_contiguous_mask),
    "p2": (forward_p2, _split_contiguous_mask),
}


def _use(name: str) -> None:
    MaskAttention.forward, AFNetM._split_input = VARIANTS[name]


def measure(batch: int, channels_last: bool, dtype: str, repeats: int, soft: bool = False) -> dict:
    """Median seconds per forward of dual_resnet18 and afnet_m with each MA variant (interleaved, rotating)."""
    torch.manual_seed(0)
    model, base = timm.create_model("afnet_m").eval(), DualResNet18().eval()
    x = torch.randn(batch, 7, 224, 224)
    x[:, 6] = torch.rand(batch, 224, 224) if soft else (torch.rand(batch, 224, 224) > 0.5).float()
    if channels_last:
        model, base = model.to(memory_format=torch.channels_last), base.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16")
    names = ["dual_resnet18", *VARIANTS]
    times: dict[str, list[float]] = {n: [] for n in names}
    diffs = {}
    try:
        with torch.inference_mode(), autocast:
            _use("current")
            reference = model(x).float()
            for name in VARIANTS:
                _use(name)
                diffs[name] = (model(x).float() - reference).abs().max().item()
            for name in names:  # warm-up
                _use("current" if name == "dual_resnet18" else name)
                (base if name == "dual_resnet18" else model)(x)
            for rep in range(repeats):
                for name in names[rep % len(names):] + names[:rep % len(names)]:
                    _use("current" if name == "dual_resnet18" else name)
                    net = base if name == "dual_resnet18" else model
                    start = time.perf_counter()
                    net(x)
                    times[name].append(time.perf_counter() - start)
    finally:
        _use("current")
    med = {n: statistics.median(v) for n, v in times.items()}
    label = f"b{batch} 224 {dtype} {'NHWC' if channels_last else 'NCHW'}" + (" soft mask" if soft else "")
    return {"setting": label, "ms": {n: 1000 * v for n, v in med.items()},
            "ratio": {n: med["dual_resnet18"] / med[n] for n in VARIANTS}, "max_abs_logit_diff": diffs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    cases = [(1, False, "fp32", False), (8, False, "fp32", False), (32, False, "fp32", False),
             (8, True, "fp32", False), (8, False, "bf16", False), (8, True, "bf16", False), (8, False, "fp32", True)]
    results = {**stamp(["cpu"], "python benchmarks/ma_variants.py " + " ".join(sys.argv[1:])), "rows": []}
    for batch, cl, dtype, soft in cases:
        row = measure(batch, cl, dtype, args.repeats, soft)
        results["rows"].append(row)
        print(row["setting"], {k: round(v, 3) for k, v in row["ratio"].items()}, flush=True)
    results["load_average_end"] = load_average()
    lines = [f"# Mask attention variants vs two ResNet18 forwards ({results['date']})", "",
             f"CPU: {results['machine']['cpu']}, {results['machine']['cores']} cores; torch "
             f"{results['versions']['torch']}; load average start {results['load_average_start']}, end "
             f"{results['load_average_end']}; {args.repeats} interleaved repeats, medians. Ratio = throughput of "
             "afnet_m with the variant / throughput of dual_resnet18. See the docstring of benchmarks/ma_variants.py.",
             "", "| setting | dual_resnet18 ms | current | p1 | p2 | max abs logit diff (p1, p2) |",
             "|---|---:|---:|---:|---:|---|"]
    for row in results["rows"]:
        r, d = row["ratio"], row["max_abs_logit_diff"]
        lines.append(f"| {row['setting']} | {row['ms']['dual_resnet18']:.1f} | {r['current']:.3f} | {r['p1']:.3f} "
                     f"| {r['p2']:.3f} | {d['p1']:.1e}, {d['p2']:.1e} |")
    write_text(args.out / "ma-variants.json", json.dumps(results, indent=2) + "\n")
    write_text(args.out / "ma-variants.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
