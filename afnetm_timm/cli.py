"""The ``afnetm`` command line: demo, params, preprocess, synthesize, train, evaluate, protocol, predict, explain, hub, bench."""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence

import torch


def _normalize(x: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    """Normalise a packed (B, 7, H, W) input in [0, 1] with the model's pretrained_cfg mean/std."""
    cfg = model.pretrained_cfg
    mean = torch.tensor(cfg["mean"], dtype=x.dtype).view(1, -1, 1, 1)
    std = torch.tensor(cfg["std"], dtype=x.dtype).view(1, -1, 1, 1)
    return (x - mean) / std


def cmd_demo(args: argparse.Namespace) -> int:
    import timm

    from afnetm_timm.demo import demo_input, demo_sample, save_panel
    from afnetm_timm.params import count_parameters, params_to_mb

    if args.size % 32 or args.size < 32:
        print(f"afnetm demo: --size must be a positive multiple of 32, got {args.size}", file=sys.stderr)
        return 2
    if args.repeats < 1 or args.warmup < 0 or args.threads < 0:
        print("afnetm demo: --repeats must be >= 1, --warmup and --threads >= 0", file=sys.stderr)
        return 2
    if args.out:
        from afnetm_timm._atomic import require_suffix

        require_suffix(args.out, ".png", "--out")  # before any work
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = timm.create_model(args.model, pretrained_backbone=args.pretrained_backbone).eval()
    start = time.perf_counter()
    sample = demo_sample(args.expression, size=args.size, seed=args.seed)
    preprocess_ms = (time.perf_counter() - start) * 1000
    x = demo_input(sample, model.pretrained_cfg)

    numel, per_call = count_parameters(model, input_size=tuple(x.shape[1:]))
    with torch.inference_mode():
        probs = model(x).softmax(dim=-1)[0]
        for _ in range(args.warmup):
            model(x)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)

    labels = model.pretrained_cfg.get("label_names") or [str(i) for i in range(len(probs))]
    info = sample.info
    print(f"scan: built-in synthetic 3D face ('{args.expression}', {info['n_points_input']:,} points) -> "
          f"preprocessed in {preprocess_ms:.0f} ms (pose, gridfit {args.size}x{args.size}, "
          f"{info['holes']['pixels_filled']} hole pixels filled, masks)")
    print(f"model: {args.model}, packed input {tuple(x.shape)}")
    print(f"parameters: {numel:,} ({params_to_mb(numel):.2f} MB); "
          f"per call as the paper counts (Table 4): {per_call:,} ({params_to_mb(per_call):.2f} MB)")
    weights = "ImageNet branches, untrained head" if args.pretrained_backbone else "random (untrained)"
    print(f"class probabilities (weights: {weights}; not a prediction):")
    for label, p in zip(labels, probs.tolist(), strict=True):
        print(f"  {label:<10s} {p:6.3f}  {'#' * round(p * 40)}")
    median_ms = statistics.median(times) * 1000
    print(f"CPU latency, batch 1, {args.size}x{args.size}, {torch.get_num_threads()} threads: "
          f"median {median_ms:.1f} ms over {args.repeats} runs ({args.warmup} warm-up), "
          f"{1000 / median_ms:.1f} samples/s")
    if args.out:
        panel = save_panel(args.out, sample, probs.tolist(), labels,
                           title=f"{args.model} on a synthetic '{args.expression}' scan ({weights} weights)")
        print(f"panel: {panel}")
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    from afnetm_timm.params import format_parameter_table, parameter_table

    rows = parameter_table(args.variants or None)
    if args.json:
        print(json.dumps([r.as_dict() for r in rows], indent=2))
    else:
        print(format_parameter_table(rows))
        print("\nMB = parameters x 4 bytes / 2**20. 'Per call' counts a module once per call in a forward pass "
              "(torchsummary, the paper's tool); AF's shared conv is called twice.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from afnetm_timm import __version__

    parser = argparse.ArgumentParser(prog="afnetm", description="AFNet-M for timm: demo, parameter table, Hub weights.")
    parser.add_argument("--version", action="version", version=f"afnetm-timm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run AFNet-M on a built-in synthetic 2D+3D face (no data needed)")
    demo.add_argument("--model", default="afnet_m", help="registered variant (default: afnet_m)")
    demo.add_argument("--expression", default="happiness",
                      choices=["anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral"],
                      help="expression of the built-in synthetic scan")
    demo.add_argument("--out", default="afnetm_demo.png", help="PNG panel to write ('' for none)")
    demo.add_argument("--size", type=int, default=224, help="input height and width, a multiple of 32")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    demo.add_argument("--warmup", type=int, default=3)
    demo.add_argument("--repeats", type=int, default=10)
    demo.add_argument("--pretrained-backbone", action="store_true",
                      help="initialise both branches with ImageNet ResNet weights from the Hugging Face Hub")
    demo.set_defaults(func=cmd_demo)

    params = sub.add_parser("params", help="parameter counts of every variant against the paper's Table 4")
    params.add_argument("variants", nargs="*", help="variants (default: all registered afnet_m*)")
    params.add_argument("--json", action="store_true", help="print JSON instead of a markdown table")
    params.set_defaults(func=cmd_params)

    from afnetm_timm.bench.cli import add_bench_command
    from afnetm_timm.data.batch import add_preprocess_command
    from afnetm_timm.hub.cli import add_hub_commands
    from afnetm_timm.train.cli import add_train_commands
    from afnetm_timm.train.predict_cli import add_explain_command, add_predict_command

    add_preprocess_command(sub)
    add_train_commands(sub)
    add_predict_command(sub)
    add_explain_command(sub)
    add_hub_commands(sub)
    add_bench_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, RuntimeError, OSError) as err:
        print(f"afnetm {args.command}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
