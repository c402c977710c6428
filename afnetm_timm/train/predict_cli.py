"""``afnetm predict`` and ``afnetm explain``: class probabilities and Grad-CAM heat maps for one face.

Input: a 3D scan file (``SCAN``, preprocessed as in training) or aligned images (``--texture T
--depth D [--mask M]``; without ``--mask`` the mask is all ones, which the output says). Model:
``--model`` is a ``.safetensors`` checkpoint from ``save_checkpoint``, a registered name
(``afnet_m`` = untrained), or ``local-dir:DIR`` / ``hf-hub:ORG/NAME``.

``afnetm_timm.cli.build_parser`` registers both with `add_predict_command` and `add_explain_command`.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["add_explain_command", "add_predict_command", "cmd_explain", "cmd_predict", "resolve_target"]


def _add_input_args(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("scan", nargs="?", default=None,
                     help="3D scan file (.wrl, .bnt, .obj, .ply, ...); or give --texture and --depth instead")
    cmd.add_argument("--model", required=True, metavar="SPEC",
                     help="checkpoint .safetensors (from save_checkpoint), a registered name (afnet_m: untrained), "
                          "or local-dir:DIR / hf-hub:ORG/NAME")
    cmd.add_argument("--texture", metavar="T", help="aligned texture image (colour)")
    cmd.add_argument("--depth", metavar="D", help="aligned depth image (8/16-bit grey or 3-channel)")
    cmd.add_argument("--mask", metavar="M",
                     help="salient-region mask image (default: all ones = every pixel salient)")
    cmd.add_argument("--size", type=int, default=224, help="input height and width, a multiple of 32 (default 224)")
    cmd.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    cmd.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def add_predict_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``afnetm predict`` on an argparse subparsers object; returns its parser."""
    cmd = subparsers.add_parser(
        "predict", help="class probabilities for a 3D scan or texture + depth images",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    _add_input_args(cmd)
    cmd.set_defaults(func=cmd_predict)
    return cmd


def add_explain_command(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register ``afnetm explain`` (Grad-CAM heat maps of the texture and depth branches as a PNG)."""
    cmd = subparsers.add_parser(
        "explain", help="Grad-CAM heat maps of the texture and depth branches (paper Fig. 6) as a PNG",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    _add_input_args(cmd)
    cmd.add_argument("--out", default="explain.png", help="PNG panel to write (default: explain.png)")
    cmd.add_argument("--target", metavar="CLASS", default=None,
                     help="class to explain: index, name or code (e.g. 3, happiness, HA); default: the prediction")
    cmd.set_defaults(func=cmd_explain)
    return cmd


# --- helpers --------------------------------------------------------------------------------------


def resolve_target(target: str | int | None, labels: Sequence[str]) -> int | None:
    """Class index of ``target``: an index, a label (case-insensitive) or an expression code (AN..SU); None → None.

    Raises:
        ValueError: no such class.
    """
    from ..packing import EXPRESSION_CODES, EXPRESSION_NAMES

    if target is None:
        return None
    text = str(target).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < len(labels):
            raise ValueError(f"--target {text}: class index must lie in [0, {len(labels) - 1}]")
        return index
    lowered = [label.lower() for label in labels]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    if tuple(labels) == EXPRESSION_NAMES and text.upper() in EXPRESSION_CODES:
        return EXPRESSION_CODES.index(text.upper())
    raise ValueError(f"--target {text!r}: unknown class; expected an index or one of {list(labels)}")


def _display_labels(labels: Sequence[str]) -> list[str]:
    from ..packing import EXPRESSION_CODES, EXPRESSION_NAMES

    return list(EXPRESSION_CODES) if tuple(labels) == EXPRESSION_NAMES else list(labels)


def _load_inputs(args: argparse.Namespace) -> tuple[Any, dict[str, Any]]:
    """(sample, description of the input) from ``SCAN`` or ``--texture/--depth/--mask``; usage errors as ValueError."""
    from .predict import ALL_ONES_MASK, sample_from_images, sample_from_scan

    images = args.texture is not None or args.depth is not None or args.mask is not None
    if args.scan is not None and images:
        raise ValueError("give either a SCAN file or --texture/--depth [--mask], not both")
    if args.scan is not None:
        sample = sample_from_scan(args.scan, size=args.size)
        source = (sample.info.get("masks") or {}).get("source", "preprocessing")
        return sample, {"scan": str(args.scan), "size": args.size, "mask": f"salient regions of the scan ({source})"}
    if args.texture is None or args.depth is None:
        raise ValueError("give a SCAN file, or both --texture and --depth (and optionally --mask)")
    sample = sample_from_images(args.texture, args.depth, args.mask, size=args.size)
    info: dict[str, Any] = {"texture": str(args.texture), "depth": str(args.depth), "size": args.size,
                            "mask": sample.mask_source}
    if sample.mask_source == ALL_ONES_MASK:
        info["mask_note"] = ("no --mask: an all-ones mask was used, so mask attention sees every pixel as salient; "
                             "the model was trained with salient-region masks")
    return sample, info


def _run(command: str, func, args: argparse.Namespace) -> int:
    """Run ``func(args)``; bad inputs (missing or unreadable files, wrong sizes, bad models) → one line on stderr, 1."""
    try:
        if args.size % 32 or args.size < 32:
            raise ValueError(f"--size must be a positive multiple of 32, got {args.size}")
        return func(args)
    except (ValueError, RuntimeError, OSError) as err:
        print(f"afnetm {command}: {err}", file=sys.stderr)
        return 1


def _print_probabilities(probs: dict[str, float]) -> None:
    width = max(len(label) for label in probs)
    for label, p in probs.items():
        print(f"  {label:<{width}s} {p:6.3f}  {'#' * round(p * 40)}")


# --- commands -------------------------------------------------------------------------------------


def _predict(args: argparse.Namespace) -> int:
    from .predict import load_model, predict

    sample, info = _load_inputs(args)  # bad input files fail before a model is loaded
    model = load_model(args.model, device=args.device)
    probs = predict(model, sample)
    best = max(probs, key=probs.__getitem__)
    if args.json:
        print(json.dumps({"model": str(args.model), "input": info, "prediction": best, "probabilities": probs},
                         indent=2))
        return 0
    print(f"model: {args.model}")
    print(f"input: {', '.join(f'{k} {v}' for k, v in info.items() if k not in ('mask', 'mask_note', 'size'))} "
          f"({args.size}x{args.size})")
    print(f"mask: {info['mask']}")
    if "mask_note" in info:
        print(f"note: {info['mask_note']}")
    print(f"prediction: {best} (p={probs[best]:.3f})")
    _print_probabilities(probs)
    return 0


def _explain(args: argparse.Namespace) -> int:
    from .._atomic import require_suffix
    from .explain import grad_cam, save_explanation_png
    from .predict import label_names, load_model, model_input

    require_suffix(args.out, ".png", "--out")  # a bad output name fails before any work
    sample, info = _load_inputs(args)  # bad input files fail before a model is loaded
    model = load_model(args.model, device=args.device)
    labels = label_names(model)
    target = resolve_target(args.target, labels)
    explanation = grad_cam(model, model_input(sample, model.pretrained_cfg), target_class=target)
    probs = dict(zip(labels, explanation.probabilities.tolist(), strict=True))
    title = (f"{args.model}: Grad-CAM for {labels[explanation.target_class]} "
             f"(predicted {labels[explanation.predicted_class]}, p={explanation.probabilities.max():.3f})")
    if "mask_note" in info:
        title += " [all-ones mask]"
    path = save_explanation_png(args.out, sample.texture, sample.depth, explanation,
                                labels=_display_labels(labels), title=title)
    if args.json:
        print(json.dumps({
            "model": str(args.model), "input": info, "out": str(path), "branches": list(explanation.heatmaps),
            "target": labels[explanation.target_class], "prediction": labels[explanation.predicted_class],
            "probabilities": probs,
        }, indent=2))
        return 0
    print(f"model: {args.model}")
    print(f"mask: {info['mask']}")
    if "mask_note" in info:
        print(f"note: {info['mask_note']}")
    print(f"Grad-CAM of branches {', '.join(explanation.heatmaps)} for class {labels[explanation.target_class]}; "
          f"prediction: {labels[explanation.predicted_class]} (p={explanation.probabilities.max():.3f})")
    _print_probabilities(probs)
    print(f"panel: {path}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """``afnetm predict``: print class probabilities (text or ``--json``); exit status 0, or 1 on bad inputs."""
    return _run("predict", _predict, args)


def cmd_explain(args: argparse.Namespace) -> int:
    """``afnetm explain``: write the Grad-CAM panel to ``--out``; exit status 0, or 1 on bad inputs."""
    return _run("explain", _explain, args)
