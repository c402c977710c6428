"""``afnetm synthesize``, ``afnetm train``, ``afnetm evaluate`` and ``afnetm protocol``."""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from ..packing import EXPRESSION_CODES

#: Variants of the paper's tables: Table 1 (ours, 2D / 3D / 2D+3D), Table 2 (fusion), Table 3 (MA).
TABLE_VARIANTS: dict[str, tuple[str, ...]] = {
    "1": ("afnet_m_2d", "afnet_m_3d", "afnet_m"),
    "2": ("afnet_m_s1", "afnet_m_s2", "afnet_m_s3", "afnet_m_s4", "afnet_m_no_ma"),
    "3": ("afnet_m_2d_no_ma", "afnet_m_2d", "afnet_m_3d_no_ma", "afnet_m_3d", "afnet_m_no_ma", "afnet_m"),
}
TABLE_VARIANTS["all"] = tuple(dict.fromkeys(v for t in ("2", "3") for v in TABLE_VARIANTS[t]))

#: ``--quick``: a reduced protocol on a small synthetic set that runs in minutes on two CPU cores.
QUICK = {"subjects": 18, "size": 64, "n_folds": 3, "repetitions": 1, "epochs": 8, "batch_size": 16, "lr": 1e-3,
         "n_points": 3000, "texture_size": 128}


def _add_train_options(cmd: argparse.ArgumentParser) -> None:
    g = cmd.add_argument_group("training (defaults: the paper's settings where it gives them)")
    g.add_argument("--epochs", type=int, default=None, help="epochs (not in the paper; default 30)")
    g.add_argument("--batch-size", type=int, default=None, help="batch size (not in the paper; default 32)")
    g.add_argument("--lr", type=float, default=None, help="Adam learning rate, fixed (paper: 1e-4)")
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--pretrained-backbone", action=argparse.BooleanOptionalAction, default=None,
                   help="ImageNet-initialise both branches (paper: yes). Default: on for bu3dfe/bosphorus, off for "
                        "the synthetic set (which must run offline)")
    g.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                   help="flip, small affine, colour jitter on the texture (on the device)")
    g.add_argument("--amp", choices=["auto", "bf16", "none"], default="auto", help="auto: bf16 on CUDA")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None, help="default: on CUDA")
    g.add_argument("--compile", action="store_true", help="torch.compile the model")
    g.add_argument("--deterministic", action=argparse.BooleanOptionalAction, default=True,
                   help="deterministic algorithms, cuDNN autotuning off (default: on, so reruns repeat exactly; "
                        "--no-deterministic trades that for speed on GPUs)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--drop-rate", type=float, default=0.0, help="dropout before the classifier")
    g.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda, cuda:1, ...")
    g.add_argument("--no-progress", action="store_true", help="no progress bars")


def _positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _train_config(args: argparse.Namespace, model: str, dataset: str, defaults: dict[str, Any] | None = None):
    from .augment import AugmentConfig
    from .trainer import TrainConfig

    defaults = defaults or {}
    pretrained = args.pretrained_backbone
    if pretrained is None:
        pretrained = dataset in ("bu3dfe", "bosphorus")
    model_kwargs = {"drop_rate": args.drop_rate} if args.drop_rate else {}
    return TrainConfig(
        model=model,
        epochs=args.epochs if args.epochs is not None else defaults.get("epochs", 30),
        batch_size=args.batch_size if args.batch_size is not None else defaults.get("batch_size", 32),
        lr=args.lr if args.lr is not None else defaults.get("lr", 1e-4),
        weight_decay=args.weight_decay,
        pretrained_backbone=pretrained,
        augment=AugmentConfig() if args.augment else AugmentConfig.none(),
        amp=args.amp,
        channels_last=args.channels_last,
        compile=args.compile,
        deterministic=args.deterministic,
        seed=args.seed,
        model_kwargs=model_kwargs,
    )


def _load_data(args: argparse.Namespace, cache: Path, dataset: str | None):
    from .datasets import load_expression_data
    from .protocol import load_subject_selection

    subjects = None
    if getattr(args, "subjects_file", None):
        subjects = load_subject_selection(args.subjects_file)["subjects"]
    return load_expression_data(cache, dataset=dataset, intensities=args.intensities, subjects=subjects)


# ---------------------------------------------------------------------------------------------
def cmd_synthesize(args: argparse.Namespace) -> int:
    from ..data.synthetic_dataset import build_synthetic_dataset

    report = build_synthetic_dataset(
        args.out_dir, subjects=args.subjects, levels=args.levels, size=args.size, seed=args.seed,
        n_points=args.n_points, texture_size=args.texture_size, morphable_model=args.morphable_model,
        jobs=args.jobs or None, previews=args.previews, progress=not args.no_progress,
    )
    print(report.summary())
    print(f"cache: {args.out_dir} (index: {Path(args.out_dir) / 'index.jsonl'})")
    return 0 if report.ok else 1


def cmd_train(args: argparse.Namespace) -> int:
    from .distributed import from_environment
    from .protocol import subject_folds
    from .trainer import evaluate, train_model

    data = _load_data(args, args.data, args.dataset)
    dist = from_environment(None if args.device == "auto" else args.device)
    try:
        cfg = _train_config(args, args.model, data.dataset)
        test = None
        if args.fold is not None:
            folds = subject_folds(data.subjects, args.n_folds, seed=args.fold_seed)
            if not 0 <= args.fold < len(folds):
                raise ValueError(f"--fold must lie in [0, {len(folds) - 1}], got {args.fold}")
            train_index, test_index = folds[args.fold]
            data, test = data.subset(train_index), data.subset(test_index)
        if dist.is_main:
            print(f"train {cfg.model} on {len(data)} {data.dataset} samples ({len(data.subject_ids)} subjects, "
                  f"{data.image_size[0]}x{data.image_size[1]}), {cfg.epochs} epochs, {dist.world_size} process(es)")
        result = train_model(cfg, data, run_dir=args.out, device=args.device, dist=dist,
                             progress=not args.no_progress, metadata={"fold": args.fold})
        if dist.is_main:
            last = result.history[-1]
            print(f"done: loss {last['loss']:.4f}, train accuracy {100 * last['train_accuracy']:.2f}%, "
                  f"{result.seconds_per_epoch:.2f} s/epoch; checkpoint {Path(args.out) / 'model.safetensors'}")
            if test is not None:
                ev = evaluate(result.model, test, batch_size=cfg.eval_batch_size, amp=cfg.amp)
                print(f"fold {args.fold} test accuracy: {100 * ev.accuracy:.2f}% on {len(test)} samples of "
                      f"{len(test.subject_ids)} held-out subjects")
    finally:
        dist.close()
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .._atomic import write_atomic
    from ..hub import load_checkpoint
    from .metrics import confusion_matrix, per_class_accuracy, save_confusion_csv, save_confusion_png
    from .trainer import evaluate, resolve_device

    device = resolve_device(args.device)
    model = load_checkpoint(args.model).create_model().to(device)
    data = _load_data(args, args.data, args.dataset)
    ev = evaluate(model, data, batch_size=args.batch_size, device=device)
    k = len(data.label_names)
    confusion = confusion_matrix(ev.labels, ev.predictions, k)
    # a class without samples has no accuracy: None (JSON null), not NaN (invalid JSON)
    per_class = {name: (acc if math.isfinite(acc) else None)
                 for name, acc in zip(data.label_names, per_class_accuracy(confusion).tolist(), strict=True)}
    print(f"{args.model} on {len(data)} {data.dataset} samples: accuracy {100 * ev.accuracy:.2f}%")
    for code, (name, acc) in zip(EXPRESSION_CODES, per_class.items(), strict=True):
        print(f"  {code} {name:<10s} " + (f"{100 * acc:6.2f}%" if acc is not None else "   n/a (no samples)"))
    if args.out:
        out = Path(args.out)
        save_confusion_csv(out / "confusion.csv", confusion)
        save_confusion_png(out / "confusion.png", confusion, title=f"{Path(args.model).name}: {100 * ev.accuracy:.1f}%")
        write_atomic(out / "metrics.json", json.dumps({
            "model": str(args.model), "dataset": data.dataset, "samples": len(data), "accuracy": ev.accuracy,
            "per_class": per_class, "confusion": confusion.tolist(), "ids": data.ids,
            "predictions": ev.predictions.tolist(), "labels": ev.labels.tolist()}, indent=1, allow_nan=False) + "\n")
        print(f"wrote {out / 'metrics.json'}, confusion.csv, confusion.png")
    return 0


def cmd_protocol(args: argparse.Namespace) -> int:
    from .datasets import load_expression_data
    from .protocol import (
        ProtocolConfig,
        load_subject_selection,
        run_protocol,
        save_subject_selection,
        select_subjects,
    )

    quick = QUICK if args.quick else {}
    if args.variants:
        import timm

        registered = timm.list_models("afnet_m*")
        unknown = [v for v in args.variants if v not in registered]
        if unknown:
            raise ValueError(f"--variants: unknown {unknown}; registered: {registered}")
    out = Path(args.out or f"afnetm_protocol_{args.dataset}{'_quick' if args.quick else ''}")
    start = time.perf_counter()
    cache = args.data
    if args.dataset == "synthetic" and cache is None:
        from ..data.synthetic_dataset import build_synthetic_dataset

        cache = out / "cache"
        n_subjects = args.synthetic_subjects if args.synthetic_subjects is not None else quick.get("subjects", 60)
        report = build_synthetic_dataset(
            cache, subjects=n_subjects, levels=args.intensities or (3, 4), size=args.size if args.size is not None else quick.get("size", 224),
            seed=args.synthetic_seed, n_points=quick.get("n_points", 10000),
            texture_size=quick.get("texture_size", 512), morphable_model=args.morphable_model,
            progress=not args.no_progress)
        print(f"synthetic data: {report.summary()} ({time.perf_counter() - start:.0f} s) -> {cache}")
        if not report.ok:
            return 1
    elif cache is None:
        print(f"afnetm protocol: --data CACHE is required for {args.dataset} (make it with 'afnetm preprocess "
              f"{args.dataset} SRC CACHE')", file=sys.stderr)
        return 2
    data = load_expression_data(cache, dataset=args.dataset, intensities=args.intensities)

    selection_path = Path(args.subjects_file) if args.subjects_file else out / "subjects.json"
    if selection_path.is_file():
        selection = load_subject_selection(selection_path)
        subjects = selection["subjects"]
        print(f"subjects: {len(subjects)} from {selection_path} (fixed selection)")
    else:
        n = args.subjects if args.subjects is not None else (None if args.dataset == "synthetic" else 60)
        subjects = select_subjects(data.subjects, n, seed=args.selection_seed)
        save_subject_selection(selection_path, subjects, data.dataset, args.selection_seed)
        print(f"subjects: {len(subjects)} selected with seed {args.selection_seed}, saved to {selection_path}")
    data = data.of_subjects(subjects)

    if args.variants:
        variants = tuple(args.variants)
    elif args.table:
        variants = TABLE_VARIANTS[args.table]
    else:
        variants = ("afnet_m",) if args.quick else TABLE_VARIANTS["1"]
    cfg = ProtocolConfig(
        variants=variants,
        n_folds=args.n_folds if args.n_folds is not None else quick.get("n_folds", 10),
        repetitions=args.repetitions if args.repetitions is not None else quick.get("repetitions", 100),
        seed=args.seed,
        train=_train_config(args, variants[0], data.dataset, quick),
        devices=args.devices.split(",") if args.devices else ([args.device] if args.device != "auto" else None),
        keep_models=args.keep_models,
    )
    print(f"data: {len(data)} {data.dataset} samples, {len(data.subject_ids)} subjects, "
          f"{data.image_size[0]}x{data.image_size[1]}, per class {data.class_counts()}")
    summaries = run_protocol(data, cfg, out, progress=not args.no_progress)
    print()
    print((out / "table.md").read_text())
    for variant, s in summaries.items():
        print(f"{variant}: accuracy {100 * s.mean:.2f}% ± {100 * s.std:.2f} (std over {s.std_over}); "
              f"{s.seconds_per_epoch:.2f} s/epoch, {s.train_seconds_per_fold:.0f} s/fold")
    print(f"results: {out / 'results.json'}, {out / 'protocol.json'}, {out / 'table.md'}, {out / 'confusion'}/ "
          f"({time.perf_counter() - start:.0f} s in all)")
    if data.dataset == "synthetic":
        print("(synthetic data: these numbers show the pipeline works; they are not accuracy on real faces)")
    return 0


# ---------------------------------------------------------------------------------------------
def _add_data_options(cmd: argparse.ArgumentParser, required: bool = True, dataset: bool = True) -> None:
    cmd.add_argument("--data", type=Path, required=required, help="preprocessing cache (afnetm preprocess/synthesize)")
    if dataset:
        cmd.add_argument("--dataset", default=None, help="dataset name in the cache index (default: the one it holds)")
    cmd.add_argument("--intensities", type=int, nargs="+", default=None,
                     help="BU-3DFE/synthetic intensity levels (default: 3 4, the two highest)")
    cmd.add_argument("--subjects-file", default=None, help="JSON subject selection (as written by afnetm protocol)")


def add_train_commands(subparsers) -> None:
    """Register synthesize, train, evaluate and protocol on an argparse subparsers object."""
    syn = subparsers.add_parser("synthesize", help="write the synthetic 2D+3D expression dataset (a cache)")
    syn.add_argument("out_dir", type=Path, help="cache folder (created; rerun to resume)")
    syn.add_argument("--subjects", type=_positive_int, default=60, help="identities (default 60)")
    syn.add_argument("--levels", type=int, nargs="+", default=[1, 2, 3, 4], help="intensity levels 1-4")
    syn.add_argument("--size", type=_positive_int, default=224, help="image size (default 224)")
    syn.add_argument("--seed", type=int, default=0)
    syn.add_argument("--n-points", type=_positive_int, default=10000, help="vertices per procedural scan")
    syn.add_argument("--texture-size", type=_positive_int, default=512)
    syn.add_argument("--morphable-model", default=None,
                     help="a Surrey-Face-Model-layout .npz to draw identities and expressions from")
    syn.add_argument("--jobs", type=int, default=0, help="worker processes (default: all cores)")
    syn.add_argument("--previews", action="store_true")
    syn.add_argument("--no-progress", action="store_true")
    syn.set_defaults(func=cmd_synthesize)

    train = subparsers.add_parser("train", help="train an AFNet-M variant on a preprocessing cache",
                                  description="Train one model. Under torchrun --nproc_per_node N the processes train "
                                              "it together (DDP).")
    _add_data_options(train)
    train.add_argument("--model", default="afnet_m", help="variant (default afnet_m)")
    train.add_argument("--out", type=Path, required=True, help="run folder: training state (resume) and model.safetensors")
    train.add_argument("--fold", type=int, default=None, help="train on fold K's training subjects and test on the rest")
    train.add_argument("--n-folds", type=_positive_int, default=10)
    train.add_argument("--fold-seed", type=int, default=0, help="seed of the subject-to-fold assignment")
    _add_train_options(train)
    train.set_defaults(func=cmd_train)

    ev = subparsers.add_parser("evaluate", help="accuracy, per-class accuracy and confusion matrix of a checkpoint")
    ev.add_argument("--model", required=True, help="model.safetensors written by afnetm train/protocol")
    _add_data_options(ev)
    ev.add_argument("--out", default=None, help="folder for metrics.json and the confusion matrix CSV/PNG")
    ev.add_argument("--batch-size", type=_positive_int, default=128)
    ev.add_argument("--device", default="auto")
    ev.set_defaults(func=cmd_evaluate)

    pr = subparsers.add_parser(
        "protocol", help="the paper's subject-independent cross-validation; a table like Tables 1-3",
        description="60 subjects drawn once (saved, reused), subject-independent 10-fold cross-validation repeated "
                    "100 times (the paper's protocol); resumable. --dataset synthetic builds and uses the synthetic "
                    "set; --quick is a reduced run for a laptop.")
    pr.add_argument("--dataset", required=True, choices=["bu3dfe", "bosphorus", "synthetic"])
    _add_data_options(pr, required=False, dataset=False)
    pr.add_argument("--out", default=None, help="output folder (default afnetm_protocol_<dataset>)")
    pr.add_argument("--table", choices=sorted(TABLE_VARIANTS), default=None,
                    help="variants of the paper's Table 1, 2, 3 or all (default 1; --quick: afnet_m only)")
    pr.add_argument("--variants", nargs="+", default=None, help="explicit variants instead of --table")
    pr.add_argument("--n-folds", type=_positive_int, default=None, help="folds (paper: 10)")
    pr.add_argument("--repetitions", type=_positive_int, default=None, help="repetitions (paper: 100)")
    pr.add_argument("--subjects", type=_positive_int, default=None, help="subjects to draw (paper: 60; synthetic: all)")
    pr.add_argument("--selection-seed", type=int, default=0, help="seed of the subject draw")
    pr.add_argument("--devices", default=None,
                    help="comma-separated devices, one worker each (e.g. cuda:0,cuda:1 or cuda:0,cuda:0 for two "
                         "concurrent folds on one GPU)")
    pr.add_argument("--keep-models", action="store_true", help="keep every fold's model.safetensors")
    pr.add_argument("--quick", action="store_true",
                    help=f"reduced run: {QUICK['subjects']} synthetic subjects at {QUICK['size']}x{QUICK['size']}, "
                         f"{QUICK['n_folds']} folds, 1 repetition, {QUICK['epochs']} epochs, lr {QUICK['lr']:g}")
    pr.add_argument("--size", type=_positive_int, default=None, help="synthetic image size (default 224; --quick 64)")
    pr.add_argument("--synthetic-subjects", type=_positive_int, default=None, help="synthetic identities (default 60)")
    pr.add_argument("--synthetic-seed", type=int, default=0)
    pr.add_argument("--morphable-model", default=None, help="synthetic faces from this morphable-model .npz")
    _add_train_options(pr)
    pr.set_defaults(func=cmd_protocol)
