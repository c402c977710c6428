"""The model card (README.md) of an exported AFNet-M folder, from the package template ``templates/model_card.md``.

Every number on the card is either computed from the exported weights and config (parameters,
preprocessing), measured (the results file: ours only where measured, synthetic results labelled
synthetic), or labelled "reported by the paper".
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from string import Template
from typing import Any

from .results import KNOWN_DATASETS, MeasuredResult, dataset_tag

__all__ = ["CardContext", "load_template", "render_model_card", "weights_license"]

_CHANNELS = ("texture R", "texture G", "texture B", "depth 1", "depth 2", "depth 3", "mask")
#: The paper's protocol, as reported by the paper.
PAPER_PROTOCOL = "10-fold subject-independent cross-validation on 60 subjects, repeated 100 times"


@dataclass
class CardContext:
    """What the card says about one exported folder."""

    architecture: str
    model_args: dict[str, Any]
    pretrained_cfg: dict[str, Any]
    label_names: Sequence[str] | None
    num_params: int
    num_params_per_call: int
    weights_sha256: str
    license: str
    license_name: str | None = None
    repo_id: str | None = None
    results: list[MeasuredResult] = field(default_factory=list)
    preprocessing: dict[str, Any] | None = None
    training: dict[str, Any] = field(default_factory=dict)
    training_datasets: list[str] = field(default_factory=list)
    afnetm_version: str = ""

    @property
    def measured(self) -> bool:
        return bool(self.results)

    @property
    def synthetic_only(self) -> bool:
        return bool(self.results) and all(r.synthetic for r in self.results)


def load_template(name: str = "model_card.md") -> Template:
    """A template shipped in ``afnetm_timm/templates`` (package data)."""
    text = resources.files("afnetm_timm.templates").joinpath(name).read_text(encoding="utf-8")
    return Template(text)


def weights_license(real_datasets: Iterable[str], synthetic_only: bool) -> tuple[str, str | None]:
    """(Hub ``license``, ``license_name``) of weights trained or measured on ``real_datasets`` (not synthetic).

    Weights trained on BU-3DFE or Bosphorus inherit those datasets' terms ("other"); other real data:
    "other" (its terms); synthetic data only: the code's Apache-2.0; nothing recorded: "other" (unknown).
    """
    tags = sorted({dataset_tag(d) for d in real_datasets if d})
    known = [t for t in tags if t in KNOWN_DATASETS]
    if known:
        return "other", "-and-".join(KNOWN_DATASETS[t].lower() for t in known) + "-licence-terms"
    if tags:
        return "other", "training-data-terms"
    if synthetic_only:
        return "apache-2.0", None
    return "other", "unknown-training-data-terms"


def _yaml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid YAML scalar


def _front_matter(ctx: CardContext) -> str:
    lines = ["library_name: timm", f"license: {_yaml_str(ctx.license)}"]
    if ctx.license_name:
        lines.append(f"license_name: {_yaml_str(ctx.license_name)}")
    tags = ["timm", "afnetm-timm", "image-classification", "facial-expression-recognition", "rgb-d", "3d-face"]
    if ctx.synthetic_only:
        tags.append("synthetic-data")
    if not ctx.measured:
        tags.append("not-for-publication")
    lines.append("tags:")
    lines.extend(f"- {t}" for t in tags)
    return "\n".join(lines)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple, dict)):
        return f"`{json.dumps(value)}`"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _flatten(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows = []
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            rows.extend(_flatten(value, name + "."))
        else:
            rows.append((name, value))
    return rows


def _kv_table(d: Mapping[str, Any], header: tuple[str, str] = ("setting", "value")) -> str:
    lines = [f"| {header[0]} | {header[1]} |", "|---|---|"]
    lines += [f"| `{k}` | {_fmt(v)} |" for k, v in _flatten(d)]
    return "\n".join(lines)


def _model_table(ctx: CardContext) -> str:
    mb = ctx.num_params * 4 / 2**20
    rows = [
        ("architecture", f"`{ctx.architecture}` (registered by `import afnetm_timm`)"),
        ("model arguments", f"`{json.dumps(ctx.model_args, sort_keys=True)}`"),
        ("classes", ", ".join(ctx.label_names) if ctx.label_names else f"{ctx.model_args.get('num_classes')} "
                                                                         "(names not recorded)"),
        ("parameters", f"{ctx.num_params:,} ({mb:.2f} MB as float32)"),
        ("weights", f"`model.safetensors`, SHA-256 `{ctx.weights_sha256}`"),
        ("licence of the weights", ctx.license + (f" ({ctx.license_name})" if ctx.license_name else "")),
    ]
    return "\n".join(f"| {k} | {v} |" for k, v in rows)


def _normalisation_table(cfg: Mapping[str, Any]) -> str:
    mean, std = cfg.get("mean") or (), cfg.get("std") or ()
    head = "| | " + " | ".join(_CHANNELS[: len(mean)]) + " |"
    sep = "|---|" + "---:|" * len(mean)
    return "\n".join([head, sep, "| mean | " + " | ".join(f"{v:g}" for v in mean) + " |",
                      "| std | " + " | ".join(f"{v:g}" for v in std) + " |"])


def _preprocessing_section(ctx: CardContext) -> str:
    cfg = ctx.pretrained_cfg
    data = {k: cfg[k] for k in ("input_size", "interpolation", "crop_pct") if k in cfg}
    lines = ["### Preprocessing used for these weights", ""]
    if ctx.preprocessing:
        lines += ["Settings of the pipeline that produced the training and evaluation inputs (recorded with the "
                  "checkpoint or the results):", "", _kv_table(ctx.preprocessing), ""]
    else:
        lines += ["**Not recorded.** The scan-to-image settings of the training run (alignment, resampling grid, "
                  "depth range, mask) were not stored with these weights; match them to the training code before "
                  "use.", ""]
    lines += ["timm data config of these weights:", "", _kv_table(data)]
    return "\n".join(lines)


def _data_section(ctx: CardContext) -> str:
    datasets = sorted({*ctx.training_datasets, *(r.dataset for r in ctx.results if not r.synthetic)})
    licensed = [d for d in datasets if dataset_tag(d) in KNOWN_DATASETS]
    parts = []
    if licensed:
        names = " and ".join(KNOWN_DATASETS[dataset_tag(d)] for d in licensed)
        parts.append(
            f"These weights were trained on {names}. BU-3DFE and Bosphorus are licensed, request-only datasets "
            f"that cannot be redistributed; **weights trained on them inherit their terms**: use them only as the "
            f"{names} licence allows you to use the data itself. No images or scans are included here."
        )
    elif ctx.synthetic_only:
        parts.append("These weights were trained and measured on **synthetic data** only; they were not trained on "
                     "faces of real people and carry no information about real expressions.")
    elif ctx.training_datasets:
        parts.append(f"Training data: {', '.join(ctx.training_datasets)}. Its licence terms apply to these weights.")
    else:
        parts.append("The training data was not recorded with these weights (no `dataset` in the checkpoint "
                     "metadata); their licence terms are unknown.")
    parts.append("The code (afnetm-timm) is Apache-2.0. Where the branches were initialised from ImageNet as in the "
                 "paper (§3.1, `pretrained_backbone=True`), the initialisation is timm's `resnet18.tv_in1k` "
                 "(torchvision's weights, BSD-3-Clause).")
    if ctx.training:
        parts.append("Training record (from the checkpoint metadata):\n\n" + _kv_table(ctx.training, ("field", "value")))
    return "\n\n".join(parts)


def _protocol_section(ctx: CardContext) -> str:
    lines = [f"The paper's protocol (reported by the paper): {PAPER_PROTOCOL}; accuracy is the mean over all runs.",
             ""]
    if not ctx.results:
        lines.append("These weights were **not evaluated**: no measured results were supplied.")
        return "\n".join(lines)
    lines.append("Protocol of the measurements below:")
    lines.append("")
    seen = set()
    for r in ctx.results:
        key = (r.dataset, r.protocol, r.n_folds, r.repetitions, r.subjects, r.synthetic)
        if key in seen:
            continue
        seen.add(key)
        subjects = f", {r.subjects} subjects" if r.subjects else ""
        data = " (synthetic data)" if r.synthetic else ""
        lines.append(f"- **{r.dataset}**{data}: {r.protocol} — {r.n_folds} folds × {r.repetitions} "
                     f"repetition(s){subjects}.")
    return "\n".join(lines)


def _measured_section(ctx: CardContext) -> str:
    if not ctx.results:
        return ("**No measured results.** These weights were exported without an evaluation (`afnetm hub export` "
                "without `--results`); they are not for publication, and `afnetm hub push` refuses this folder.")
    lines = []
    if any(r.synthetic for r in ctx.results):
        lines += ["Results marked *synthetic* were measured on synthetic data: they show that the pipeline runs, "
                  "not how well real expressions are recognised.", ""]
    lines += ["| dataset | data | protocol | folds × repetitions | accuracy (mean ± std) |",
              "|---|---|---|---|---:|"]
    for r in ctx.results:
        data = "*synthetic* (not a benchmark result)" if r.synthetic else "real (measured by us)"
        lines.append(f"| {_fmt(r.dataset)} | {data} | {_fmt(r.protocol)} | {r.n_folds} × {r.repetitions} | "
                     f"{r.accuracy_mean:.2f} ± {r.accuracy_std:.2f} % |")
    for r in ctx.results:
        if r.per_class:
            names = list(ctx.label_names or r.per_class)
            order = [n for n in names if n in r.per_class] + [n for n in r.per_class if n not in names]
            label = f"{r.dataset}" + (" (*synthetic*)" if r.synthetic else "")
            lines += ["", f"Per-class accuracy, {label}:", "", "| class | accuracy |", "|---|---:|"]
            lines += [f"| {n} | {r.per_class[n]:.2f} % |" for n in order]
        if r.notes:
            lines += ["", f"Notes ({r.dataset}): {_fmt(r.notes)}"]
    return "\n".join(lines)


def _parameters_section(ctx: CardContext) -> str:
    from afnetm_timm.params import TABLE4_MB, format_parameter_table, parameter_table, params_to_mb

    lines = [
        f"These weights (`{ctx.architecture}`, arguments above): {ctx.num_params:,} parameters counted once "
        f"({params_to_mb(ctx.num_params):.2f} MB), {ctx.num_params_per_call:,} counted per call "
        f"({params_to_mb(ctx.num_params_per_call):.2f} MB, the paper's convention).",
        "",
        "The paper's Table 4 rows as implemented by afnetm-timm (default arguments, 6 classes). \"Per call\" counts "
        "a module once per call in a forward pass, as torchsummary (the paper's tool) does: AF's shared convolution "
        "counts twice. MB = parameters × 4 bytes / 2²⁰.",
        "",
        format_parameter_table(parameter_table(list(TABLE4_MB))),
    ]
    return "\n".join(lines)


def _status(ctx: CardContext) -> str:
    if not ctx.measured:
        return ("> **No measured results — not for publication.** This folder was exported without an evaluation; "
                "the weights may be untrained or partly trained.")
    if ctx.synthetic_only:
        return ("> **Synthetic data only.** These weights were measured on synthetic data, not on BU-3DFE or "
                "Bosphorus: they demonstrate the pipeline and recognise no real expressions.")
    return ("> Trained and measured by afnetm-timm. Results marked \"measured by us\" are ours, under the protocol "
            "stated; the paper's numbers are labelled \"reported by the paper\".")


def _extra_limitations(ctx: CardContext) -> str:
    lines = []
    if ctx.synthetic_only:
        lines.append("- Measured on synthetic data only: nothing here says how well real expressions are recognised.")
    if any(not r.synthetic and (r.n_folds != 10 or r.repetitions != 100) for r in ctx.results):
        lines.append("- Our protocol differs from the paper's (10 folds × 100 repetitions): compare the numbers with "
                     "the paper's with care.")
    if not ctx.measured:
        lines.append("- Not evaluated at all.")
    return "".join(line + "\n" for line in lines)


def render_model_card(ctx: CardContext) -> str:
    """The filled-in model card (README.md with YAML front matter) for ``ctx``."""
    title = f"AFNet-M: {ctx.repo_id}" if ctx.repo_id else f"AFNet-M ({ctx.architecture})"
    load_name = f"hf-hub:{ctx.repo_id}" if ctx.repo_id else "local-dir:path/to/this/folder"
    input_size = ctx.pretrained_cfg.get("input_size")
    label_list = ", ".join(ctx.label_names) if ctx.label_names else "six expressions"
    return load_template().substitute(
        front_matter=_front_matter(ctx),
        title=title,
        status=_status(ctx),
        label_list=label_list,
        load_name=load_name,
        model_table=_model_table(ctx),
        input_size=f"`{tuple(input_size)}`" if input_size else "224 × 224",
        normalisation_table=_normalisation_table(ctx.pretrained_cfg),
        preprocessing_section=_preprocessing_section(ctx),
        data_section=_data_section(ctx),
        protocol_section=_protocol_section(ctx),
        measured_section=_measured_section(ctx),
        parameters_section=_parameters_section(ctx),
        extra_limitations=_extra_limitations(ctx),
        afnetm_version=ctx.afnetm_version,
    )
