"""Parameter counts of the AFNet-M variants in two countings, against the paper's Table 4.

* ``numel``: every parameter once (``sum(p.numel() for p in model.parameters())``).
* ``per_call``: the convention of the paper's tool (torchsummary, which prints "Params size (MB)"):
  forward hooks on every module add the module's own parameters each time it is called, so a
  module called twice in one forward pass counts twice. AF's 1×1 convolution is shared by the
  average- and max-pool paths (eq. 2) and therefore counts twice. Parameters of a module that is
  used functionally and never called (MA's first conv, see `MaskAttention`) count once, as the
  paper's literal implementation calls that conv once.

Sizes in "MB" are parameters × 4 bytes / 2**20 (MiB), torchsummary's unit: resnet18 prints 44.59.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import timm
import torch
from torch import nn

#: Table 4 of the paper, "Parameters (MB)" (reported by the paper).
TABLE4_MB: dict[str, float] = {"afnet_m": 91.54, "afnet_m_no_ma": 90.51, "afnet_m_no_af": 86.53}
#: How the paper's rows are named.
TABLE4_ROWS: dict[str, str] = {"afnet_m": "AFNet-M", "afnet_m_no_ma": "Ours w/o MA", "afnet_m_no_af": "Ours w/o AF"}


def params_to_mb(count: int) -> float:
    """Parameters → torchsummary's "Params size (MB)": count × 4 bytes / 2**20."""
    return count * 4 / 2**20


@dataclass(frozen=True)
class ParameterCount:
    """Both countings of one model; ``table4_mb`` and ``deviation_pct`` only for the paper's rows."""

    name: str
    numel: int
    per_call: int
    numel_mb: float
    per_call_mb: float
    table4_mb: float | None = None
    deviation_pct: float | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def count_parameters(model: nn.Module, input_size: tuple[int, ...] = (7, 64, 64)) -> tuple[int, int]:
    """(numel, per_call) parameter counts of ``model``.

    ``per_call`` runs one forward pass on a zero input of ``(1, *input_size)`` on the model's
    device (use the meta device for speed: no memory, no arithmetic) and counts each module's own
    parameters once per call, at least once.
    """
    calls: Counter[str] = Counter()
    handles = []
    for name, module in model.named_modules():
        if any(True for _ in module.parameters(recurse=False)):
            handles.append(module.register_forward_pre_hook(lambda _m, _i, name=name: calls.update([name])))
    try:
        param = next(model.parameters())
        was_training = model.training
        model.eval()
        with torch.no_grad():
            model(torch.zeros((1, *input_size), device=param.device, dtype=param.dtype))
        model.train(was_training)
    finally:
        for handle in handles:
            handle.remove()
    numel = sum(p.numel() for p in model.parameters())
    per_call = 0
    for name, module in model.named_modules():
        own = sum(p.numel() for p in module.parameters(recurse=False))
        per_call += own * max(calls[name], 1)
    return numel, per_call


def afnet_m_variants() -> list[str]:
    """Every registered AFNet-M variant (imports the plugin first)."""
    import afnetm_timm  # noqa: F401  (registers the models)

    return timm.list_models("afnet_m*")


def parameter_table(variants: Iterable[str] | None = None, num_classes: int = 6) -> list[ParameterCount]:
    """Both countings for each variant (all registered ones by default), with Table 4 where it applies.

    Models are built on the meta device, so this takes well under a second per variant.
    """
    rows = []
    for name in variants or afnet_m_variants():
        model = timm.create_model(name, num_classes=num_classes, device="meta")
        numel, per_call = count_parameters(model)
        paper = TABLE4_MB.get(name)
        per_call_mb = params_to_mb(per_call)
        rows.append(ParameterCount(
            name=name, numel=numel, per_call=per_call, numel_mb=params_to_mb(numel), per_call_mb=per_call_mb,
            table4_mb=paper, deviation_pct=None if paper is None else 100.0 * (per_call_mb - paper) / paper,
        ))
    return rows


def format_parameter_table(rows: Iterable[ParameterCount]) -> str:
    """A markdown table of `parameter_table` rows."""
    lines = [
        "| variant | parameters (numel) | MB (numel) | parameters (per call) | MB (per call, paper's convention) "
        "| Table 4 MB (reported by the paper) | deviation |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        paper = f"{r.table4_mb:.2f} ({TABLE4_ROWS[r.name]})" if r.table4_mb is not None else ""
        dev = f"{r.deviation_pct:+.2f} %" if r.deviation_pct is not None else ""
        lines.append(
            f"| `{r.name}` | {r.numel:,} | {r.numel_mb:.2f} | {r.per_call:,} | {r.per_call_mb:.2f} | {paper} | {dev} |"
        )
    return "\n".join(lines)
