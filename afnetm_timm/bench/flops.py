"""FLOPs and MACs with torch's own counter, ``torch.utils.flop_counter.FlopCounterMode``, and parameter counts.

FlopCounterMode counts matrix products and convolutions (2 FLOPs per multiply-add), not element-wise
operations: batch norm, ReLU, MA's ``γ ⊗ X + β`` and AF's weighted sum are free in this counting
(they cost memory bandwidth, not arithmetic). MACs are reported as FLOPs / 2. Models are built and
run on the meta device: shapes only, no memory, no arithmetic, well under a second per model.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..params import TABLE4_MB, count_parameters, params_to_mb
from .baselines import BASELINE, bench_model_info, create_bench_model

_MA = re.compile(r"(?:^|\.)(?:depth_)?mask_attn$")
_AF = re.compile(r"(?:^|\.)fusion$")


@dataclass(frozen=True)
class ModelCost:
    """Size and arithmetic of one model at one input size (batch 1).

    ``flops``: FLOPs of one forward pass (FlopCounterMode); ``macs`` = flops / 2.
    ``ma_flops`` / ``af_flops``: the part spent in mask attention / fusion modules.
    ``flops_vs_baseline``: flops / flops of ``dual_resnet18`` at the same input size.
    ``table4_mb`` / ``deviation_pct``: the paper's Table 4 and the per-call count's deviation from it.
    """

    name: str
    baseline: bool
    input_shape: tuple[int, ...]
    numel: int
    per_call: int
    numel_mb: float
    per_call_mb: float
    flops: int
    macs: int
    ma_flops: int
    af_flops: int
    flops_vs_baseline: float | None = None
    table4_mb: float | None = None
    deviation_pct: float | None = None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["gflops"] = round(self.flops / 1e9, 3)
        d["gmacs"] = round(self.macs / 1e9, 3)
        return d


def count_flops(model: torch.nn.Module, input_shape: tuple[int, ...]) -> tuple[int, dict[str, int]]:
    """Total FLOPs of ``model(torch.zeros(input_shape))`` and the FLOPs of every module (by dotted name).

    The input is created on the model's device with its dtype (use the meta device for speed).
    """
    param = next(model.parameters())
    counter = FlopCounterMode(display=False)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(torch.zeros(input_shape, device=param.device, dtype=param.dtype))
    finally:
        model.train(was_training)
    per_module = {name: int(sum(ops.values())) for name, ops in counter.get_flop_counts().items()}
    return int(counter.get_total_flops()), per_module


def model_cost(name: str, img_size: int = 224, num_classes: int = 6) -> ModelCost:
    """Parameters (both countings) and FLOPs of a benchmark model at batch 1, ``img_size`` × ``img_size``."""
    info = bench_model_info(name)
    model = create_bench_model(name, num_classes=num_classes, device="meta")
    input_shape = (1, info.in_chans, img_size, img_size)
    numel, per_call = count_parameters(model, input_size=input_shape[1:])
    flops, per_module = count_flops(model, input_shape)
    ma = sum(v for k, v in per_module.items() if _MA.search(k))
    af = sum(v for k, v in per_module.items() if _AF.search(k))
    paper = TABLE4_MB.get(name)
    per_call_mb = params_to_mb(per_call)
    return ModelCost(
        name=name, baseline=info.baseline, input_shape=input_shape, numel=numel, per_call=per_call,
        numel_mb=params_to_mb(numel), per_call_mb=per_call_mb, flops=flops, macs=flops // 2, ma_flops=ma,
        af_flops=af, table4_mb=paper,
        deviation_pct=None if paper is None else 100.0 * (per_call_mb - paper) / paper,
    )


def cost_table(names: list[str], img_size: int = 224, num_classes: int = 6) -> list[ModelCost]:
    """`model_cost` of every model, with FLOPs relative to ``dual_resnet18`` (always computed)."""
    rows = [model_cost(n, img_size, num_classes) for n in names]
    base = next((r for r in rows if r.name == BASELINE), None) or model_cost(BASELINE, img_size, num_classes)
    return [
        ModelCost(**{**asdict(r), "flops_vs_baseline": r.flops / base.flops if base.flops else None}) for r in rows
    ]
