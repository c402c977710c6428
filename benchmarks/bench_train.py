"""Training speed: seconds per epoch of the trainer's resident path against a plain DataLoader loop, and the
projected time of the paper's full protocol (100 repetitions x 10 folds) at BU-3DFE size.

Both paths train the same AFNet-M with Adam on the same N samples (random uint8 images: speed does not
depend on content):

* ``dataloader``: the textbook loop, albumentations on the CPU per sample (`AFNetMTransform(train=True)`),
  ``torch.utils.data.DataLoader`` with ``--workers`` processes, fp32, batches copied to the device;
* ``resident``: `afnetm_timm.train.train_model`, the data copied to the device once as uint8 and
  augmented there in batches; bf16 autocast and channels_last on CUDA, plus ``--compile``.

They run in alternating rounds (a ratio measured in one run is robust to a noisy machine). The full
protocol projection is ``1000 trainings x (epochs x 648 training samples x seconds per sample +
evaluation of 72)``: BU-3DFE's 720 samples of 60 subjects, 10-fold.

    python benchmarks/bench_train.py [--device cpu|cuda] [--size 224] [--samples 64] [--rounds 2]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

import afnetm_timm  # noqa: F401
from afnetm_timm.bench.env import load_average, stamp
from afnetm_timm.bench.report import write_text
from afnetm_timm.data.transforms import AFNetMTransform
from afnetm_timm.train.augment import AugmentConfig
from afnetm_timm.train.datasets import ExpressionData, ExpressionDataset
from afnetm_timm.train.trainer import TrainConfig, build_model, predict_probabilities, resolve_device, train_model

RESULTS = Path(__file__).resolve().parent / "results"
BU3DFE_SAMPLES, FOLDS, REPETITIONS = 720, 10, 100


def random_data(n: int, size: int, seed: int = 0) -> ExpressionData:
    rng = np.random.default_rng(seed)
    return ExpressionData(
        texture=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
        depth=rng.integers(0, 256, (n, size, size), dtype=np.uint8),
        mask=(rng.random((n, size, size)) > 0.7).astype(np.uint8) * 255,
        labels=np.arange(n) % 6,
        subjects=np.array([f"s{i // 12:03d}" for i in range(n)]),
        ids=[f"x{i:04d}" for i in range(n)],
        dataset="random",
    )


def dataloader_epochs(cfg: TrainConfig, data: ExpressionData, device: torch.device, epochs: int,
                      workers: int) -> list[float]:
    """The plain loop: per-sample CPU augmentation in DataLoader workers, fp32; seconds per epoch."""
    model = build_model(cfg, 6, device=device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas)
    transform = AFNetMTransform(model.pretrained_cfg, train=True, size=data.image_size[0])
    loader = torch.utils.data.DataLoader(ExpressionDataset(data, transform), batch_size=cfg.batch_size, shuffle=True,
                                         num_workers=workers, drop_last=True, persistent_workers=workers > 0)
    times = []
    model.train()
    for _ in range(epochs):
        t0 = time.perf_counter()
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--model", default="afnet_m")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--samples", type=int, default=64, help="training samples per epoch (timing only)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=2, help="epochs per path per round")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--workers", type=int, default=2, help="DataLoader workers of the plain loop")
    p.add_argument("--compile", action="store_true", help="torch.compile in the resident path")
    p.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=True,
                   help="the trainer's deterministic mode (default on, as in afnetm train)")
    p.add_argument("--protocol-epochs", type=int, default=30, help="epochs per training in the projection")
    p.add_argument("--out", default=None, help="results file stem (default results/train-<device>)")
    args = p.parse_args(argv)
    if args.epochs < 2 or args.rounds < 1:
        p.error("--epochs must be at least 2 (the first epoch of the first round is warm-up) and --rounds at least 1")
    if args.samples < args.batch_size:
        p.error(f"--samples ({args.samples}) must be at least --batch-size ({args.batch_size}): the DataLoader loop "
                "drops incomplete batches")

    device = resolve_device(args.device)
    data = random_data(args.samples, args.size)
    cfg = TrainConfig(model=args.model, epochs=args.epochs, batch_size=args.batch_size, pretrained_backbone=False,
                      augment=AugmentConfig(), compile=args.compile, deterministic=args.deterministic)
    header = stamp([device.type], "python benchmarks/bench_train.py " + " ".join(argv or sys.argv[1:]))
    resident, plain = [], []
    for r in range(args.rounds):
        result = train_model(cfg, data, device=device, progress=False)
        resident += [h["seconds"] for h in result.history][1 if r == 0 else 0:]  # the first epoch warms up
        plain += dataloader_epochs(cfg, data, device, args.epochs, args.workers)[1 if r == 0 else 0:]
        print(f"round {r + 1}: resident {resident[-1]:.2f} s/epoch, dataloader {plain[-1]:.2f} s/epoch", flush=True)
    t0 = time.perf_counter()
    predict_probabilities(result.model, data, batch_size=128)
    if device.type == "cuda":
        torch.cuda.synchronize()
    eval_per_sample = (time.perf_counter() - t0) / len(data)

    res_epoch, plain_epoch = statistics.median(resident), statistics.median(plain)
    per_sample = {"resident": res_epoch / len(data), "dataloader": plain_epoch / len(data)}
    train_n = BU3DFE_SAMPLES * (FOLDS - 1) // FOLDS
    test_n = BU3DFE_SAMPLES // FOLDS

    def projected_hours(path: str) -> float:
        fold = args.protocol_epochs * train_n * per_sample[path] + test_n * eval_per_sample
        return FOLDS * REPETITIONS * fold / 3600

    record = {
        **header,
        "settings": {k: v for k, v in vars(args).items()},
        "seconds_per_epoch": {"resident": resident, "dataloader": plain},
        "median_seconds_per_epoch": {"resident": res_epoch, "dataloader": plain_epoch},
        "speedup_resident_over_dataloader": plain_epoch / res_epoch,
        "seconds_per_training_sample": per_sample,
        "eval_seconds_per_sample": eval_per_sample,
        "bu3dfe_seconds_per_epoch": {k: v * train_n for k, v in per_sample.items()},
        "bu3dfe_seconds_per_fold": {k: args.protocol_epochs * train_n * v + test_n * eval_per_sample
                                    for k, v in per_sample.items()},
        "projected_full_protocol_hours": {k: projected_hours(k) for k in per_sample},
        "load_average_end": load_average(),
    }
    stem = Path(args.out) if args.out else RESULTS / f"train-{device.type}"
    write_text(stem.with_suffix(".json"), json.dumps(record, indent=1) + "\n")
    md = [
        f"# Training speed ({device.type}, {header['devices'][0].get('name')}), {header['date']}",
        "",
        f"`{header['command']}`; {args.model} at {args.size}x{args.size}, batch {args.batch_size}, {args.samples} "
        f"samples per epoch, {args.rounds} alternating rounds; load average {header['load_average_start']} -> "
        f"{record['load_average_end']}; torch {header['versions'].get('torch')}.",
        "",
        "| Path | s/epoch (N samples) | s/epoch at BU-3DFE size (648) | s/fold (30 epochs + test) | "
        "full protocol 100x10 (h) |",
        "|---|---|---|---|---|",
    ]
    for k in ("dataloader", "resident"):
        md.append(f"| {k} | {record['median_seconds_per_epoch'][k]:.2f} | {record['bu3dfe_seconds_per_epoch'][k]:.1f} | "
                  f"{record['bu3dfe_seconds_per_fold'][k]:.0f} | {record['projected_full_protocol_hours'][k]:.1f} |")
    md += ["", f"Resident path / DataLoader loop speed-up: {record['speedup_resident_over_dataloader']:.2f}x "
           "(medians, same run)."]
    write_text(stem.with_suffix(".md"), "\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
