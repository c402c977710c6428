"""Train and evaluate AFNet-M: the paper's optimiser settings, data resident on the device, resumable.

The paper (§3.1): both ResNet18 branches ImageNet-initialised, Adam with betas (0.9, 0.999), a fixed
learning rate of 1e-4. It does not give epochs, batch size or augmentation; `TrainConfig` exposes them.

The training set is copied once to the device as a compact uint8 tensor (720 BU-3DFE samples at
224×224: ~180 MB) and batches are cut, augmented (`afnetm_timm.train.augment`) and normalised there:
no DataLoader, no per-sample Python work. On CUDA, bf16 autocast and channels_last are on by default
and ``compile=True`` adds ``torch.compile``.

Runs are seeded and repeatable: every epoch's shuffling, augmentation and dropout derive from
``(seed, epoch)`` alone, so a run resumed from its last saved epoch ends with the same weights as an
uninterrupted one. With a ``run_dir`` the model and optimiser state are saved there after every epoch
(safetensors, atomic) and an interrupted run picks up where it stopped.

Several processes (``torchrun --nproc_per_node N``) train one model with DistributedDataParallel:
every process takes an equal share of each global batch.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .._atomic import atomic_path
from .._validate import check_finite, check_int
from .augment import AugmentConfig, augment_batch, to_model_input
from .datasets import ExpressionData
from .distributed import DistributedContext, single_process

__all__ = [
    "EvalResult",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "evaluate",
    "predict_probabilities",
    "resolve_device",
    "train_model",
]

STATE_FILE = "train_state.safetensors"
MODEL_FILE = "model.safetensors"
_STATE_KEY = "afnetm_train_state"


@dataclass
class TrainConfig:
    """Training settings; the defaults are the paper's where it gives them.

    Attributes:
        model: registered variant (``timm.list_models("afnet_m*")``).
        epochs: passes over the training set (not in the paper; 30 by default).
        batch_size: global batch size (not in the paper; 32).
        lr: Adam learning rate, fixed (paper: 1e-4).
        betas: Adam betas (paper: (0.9, 0.999)).
        weight_decay: Adam weight decay (paper: none given; 0).
        pretrained_backbone: ImageNet-initialise both branches (paper: yes; needs the Hub or its cache).
        augment: on-device augmentation, `AugmentConfig` (``AugmentConfig.none()`` to switch off).
        amp: 'auto' (bf16 autocast on CUDA, none on CPU), 'bf16' or 'none'.
        channels_last: None = on for CUDA, off on CPU.
        compile: wrap the model in ``torch.compile``.
        seed: seeds model initialisation, shuffling, augmentation and dropout.
        deterministic: ask torch and cuDNN for deterministic algorithms.
        eval_batch_size: batch size of evaluation.
        model_kwargs: further ``timm.create_model`` arguments (e.g. ``drop_rate``, ``mask_stages``).
    """

    model: str = "afnet_m"
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    pretrained_backbone: bool = True
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    amp: str = "auto"
    channels_last: bool | None = None
    compile: bool = False
    seed: int = 0
    deterministic: bool = True
    eval_batch_size: int = 128
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.augment, Mapping):
            self.augment = AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in self.augment.items()})
        self.betas = tuple(self.betas)  # type: ignore[assignment]
        self.epochs = check_int("epochs", self.epochs, 1)
        self.batch_size = check_int("batch_size (BatchNorm needs two samples)", self.batch_size, 2)
        self.lr = check_finite("lr", self.lr)
        if not self.lr > 0:
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        self.weight_decay = check_finite("weight_decay", self.weight_decay)
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be a finite number >= 0, got {self.weight_decay}")
        drop_rate = check_finite("drop_rate", self.model_kwargs.get("drop_rate", 0.0))
        if not 0 <= drop_rate < 1:
            raise ValueError(f"drop_rate must lie in [0, 1), got {drop_rate}")
        if self.amp not in ("auto", "bf16", "none"):
            raise ValueError(f"amp must be 'auto', 'bf16' or 'none', got {self.amp!r}")

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable settings."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


@dataclass
class TrainResult:
    """What `train_model` returns.

    Attributes:
        model: the trained model (unwrapped, in eval mode, on the training device).
        history: one dict per epoch: ``epoch``, ``loss``, ``train_accuracy``, ``seconds``.
        resumed_from: epochs found done in ``run_dir`` (0 for a fresh run).
        seconds: wall time of the epochs run in this call.
    """

    model: torch.nn.Module
    history: list[dict[str, float]]
    resumed_from: int = 0
    seconds: float = 0.0

    @property
    def seconds_per_epoch(self) -> float:
        """Median seconds per epoch over the epochs run in this call (NaN if none ran)."""
        times = [h["seconds"] for h in self.history[self.resumed_from:]]
        return float(np.median(times)) if times else float("nan")


@dataclass
class EvalResult:
    """Predictions on a dataset: ``probabilities`` (N, C), ``predictions`` and ``labels`` (N,)."""

    probabilities: np.ndarray
    labels: np.ndarray

    @property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def accuracy(self) -> float:
        return float((self.predictions == self.labels).mean()) if len(self.labels) else float("nan")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """'auto' or None → CUDA when present, else CPU; a CUDA device without CUDA is a ValueError."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device {device!r} is not a device name (auto, cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device} requested but CUDA is not available here (use --device cpu)")
    return device


def _amp_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    if cfg.amp == "bf16" or (cfg.amp == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def _mix(*numbers: int) -> int:
    """A 63-bit seed from integers (stable across runs and platforms)."""
    digest = hashlib.blake2b(",".join(map(str, numbers)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def build_model(
    cfg: TrainConfig,
    num_classes: int,
    label_names: tuple[str, ...] | None = None,
    device: torch.device | str = "cpu",
) -> torch.nn.Module:
    """``timm.create_model(cfg.model, ...)`` with the config's seed, on ``device``."""
    import timm

    import afnetm_timm  # noqa: F401 - registers the variants

    if not cfg.model.startswith("afnet_m"):
        raise ValueError(f"model must be an AFNet-M variant (timm.list_models('afnet_m*')), got {cfg.model!r}")
    if cfg.model not in timm.list_models("afnet_m*"):
        raise ValueError(f"unknown model {cfg.model!r}; registered: {timm.list_models('afnet_m*')}")
    torch.manual_seed(_mix(cfg.seed, "init"))
    model = timm.create_model(cfg.model, num_classes=num_classes, pretrained_backbone=cfg.pretrained_backbone,
                              **cfg.model_kwargs)
    if label_names is not None:
        model.pretrained_cfg = dict(model.pretrained_cfg, label_names=tuple(label_names))
    return model.to(device)


# ---------------------------------------------------------------------------------------------
# training state: model + optimiser + progress, one safetensors file
# ---------------------------------------------------------------------------------------------
def _fingerprint(cfg: TrainConfig, data: ExpressionData, world_size: int) -> str:
    record = {"config": cfg.as_dict(), "ids": data.ids, "labels": data.labels.tolist(), "world_size": world_size,
              "image_size": list(data.image_size)}
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:16]


def _save_train_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, record: dict) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for index, state in opt["state"].items():
        for key, value in state.items():
            if not isinstance(value, torch.Tensor):
                value = torch.tensor(value)
            tensors[f"optimizer.{index}.{key}"] = value.detach().cpu().contiguous()
    record = dict(record, param_groups=opt["param_groups"])
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={_STATE_KEY: json.dumps(record)})


def _load_train_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                      device: torch.device, fingerprint: str, config: dict[str, Any]) -> dict[str, Any]:
    """Restore model and optimiser from ``path``; a state of other settings or data is a ValueError (checked
    before any tensor is loaded, so the message is about the settings, not about mismatching weights)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as handle:
            record = json.loads((handle.metadata() or {})[_STATE_KEY])
        if not isinstance(record, dict) or not isinstance(record.get("config", {}), dict):
            raise TypeError("the state record is not a JSON object")
    except Exception as err:  # noqa: BLE001 - any corruption is reported the same way
        raise ValueError(f"{path}: unreadable training state ({type(err).__name__}: {err}); delete it to restart") from err
    if record.get("fingerprint") != fingerprint:
        before, now = record.get("config", {}), config
        changed = [f"{k} {before.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(before) | set(now))
                   if before.get(k) != now.get(k)]
        what = ", ".join(changed) if changed else "the training data or the number of processes"
        raise ValueError(f"{path.parent} holds a run with other settings or data ({what}); use a new folder or "
                         "delete it")
    try:
        tensors = load_file(str(path), device=str(device))
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"{path}: unreadable training state ({type(err).__name__}: {err}); delete it to restart") from err
    model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}, strict=True)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value.cpu() if name == "step" else value
    optimizer.load_state_dict({"state": state, "param_groups": record["param_groups"]})
    return record


# ---------------------------------------------------------------------------------------------
# training and evaluation
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _determinism(enabled: bool, device: torch.device) -> Iterator[None]:
    """Deterministic algorithms (and on CUDA no cuDNN autotuning) for the block; the caller's settings after it."""
    saved = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
             torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not enabled
        torch.backends.cudnn.deterministic = enabled
        if enabled:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(saved[0], warn_only=saved[1])
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[2], saved[3]


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def train_model(
    cfg: TrainConfig,
    train: ExpressionData,
    *,
    run_dir: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    dist: DistributedContext | None = None,
    progress: bool = True,
    description: str = "train",
    metadata: Mapping[str, Any] | None = None,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train ``cfg.model`` on ``train``.

    Args:
        cfg: settings.
        train: training samples (all classes present or not; labels index ``train.label_names``).
        run_dir: folder for the per-epoch training state (resume) and the final ``model.safetensors``
            (an afnetm-timm checkpoint). A run with other settings or data already there is a ValueError.
        device: 'auto' (default), 'cpu', 'cuda', 'cuda:1', ...; under torchrun the process's device.
        dist: distributed context (default: from the torchrun environment, or a single process).
        progress: show a progress bar.
        description: progress-bar label.
        metadata: extra JSON facts stored in the final checkpoint (dataset, fold, ...).
        on_epoch: called after each epoch with (epoch, history entry); raising stops the run after
            the state was saved (tests use it to simulate an interruption).
    """
    dist = dist or single_process(resolve_device(device))
    device = dist.device if dist.world_size > 1 else resolve_device(device)
    with _determinism(cfg.deterministic, device):
        return _train(cfg, train, run_dir, device, dist, progress, description, metadata, on_epoch)


def _train(
    cfg: TrainConfig,
    train: ExpressionData,
    run_dir: str | os.PathLike | None,
    device: torch.device,
    dist: DistributedContext,
    progress: bool,
    description: str,
    metadata: Mapping[str, Any] | None,
    on_epoch: Callable[[int, dict[str, float]], None] | None,
) -> TrainResult:
    from tqdm.auto import tqdm

    amp_dtype = _amp_dtype(cfg, device)
    channels_last = cfg.channels_last if cfg.channels_last is not None else device.type == "cuda"
    if len(train) < 2 * dist.world_size:
        raise ValueError(f"the training set has {len(train)} samples; need at least {2 * dist.world_size}")

    model = build_model(cfg, len(train.label_names), train.label_names, device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)

    run_path = Path(run_dir) if run_dir is not None else None
    fingerprint = _fingerprint(cfg, train, dist.world_size)
    history: list[dict[str, float]] = []
    start_epoch = 0
    if run_path is not None:
        if dist.is_main:
            run_path.mkdir(parents=True, exist_ok=True)
        dist.barrier()
        state_path = run_path / STATE_FILE
        if state_path.is_file():
            record = _load_train_state(state_path, model, optimizer, device, fingerprint, cfg.as_dict())
            start_epoch, history = int(record["epoch"]), list(record["history"])

    pcfg = model.pretrained_cfg
    mean, std = pcfg["mean"], pcfg["std"]
    step_model: torch.nn.Module = model
    if dist.world_size > 1:
        step_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        step_model = torch.compile(step_model)

    data = train.packed_uint8().to(device)
    labels = torch.from_numpy(train.labels).to(device)
    n = len(train)
    per_rank = max(1, cfg.batch_size // dist.world_size)
    global_batch = per_rank * dist.world_size
    n_batches = n // global_batch + (1 if n % global_batch >= 2 * dist.world_size else 0)

    start = time.perf_counter()
    bar = tqdm(total=(cfg.epochs - start_epoch) * n_batches, desc=description, unit="step",
               disable=not progress or not dist.is_main, leave=False)
    try:
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            generator = torch.Generator().manual_seed(_mix(cfg.seed, "epoch", epoch))
            torch.manual_seed(_mix(cfg.seed, "dropout", epoch, dist.rank))
            order = torch.randperm(n, generator=generator)
            model.train()
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            seen = 0
            for b in range(n_batches):
                batch_index = order[b * global_batch:(b + 1) * global_batch].to(device)
                # every rank draws the augmentation of the whole global batch (same generator state) and keeps its share
                batch = augment_batch(data[batch_index], cfg.augment, generator)
                mine = slice(dist.rank, None, dist.world_size)
                x = to_model_input(batch[mine], mean, std)
                y = labels[batch_index][mine]
                if channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
                    logits = step_model(x)
                    loss = F.cross_entropy(logits.float(), y)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.detach() * len(y)
                correct += (logits.argmax(dim=1) == y).sum()
                seen += len(y)
                bar.update()
            stats = torch.stack([loss_sum.float(), correct.float(), torch.tensor(float(seen), device=device)])
            dist.all_reduce_sum(stats)
            entry = {
                "epoch": epoch + 1,
                "loss": float(stats[0] / stats[2]),
                "train_accuracy": float(stats[1] / stats[2]),
                "seconds": time.perf_counter() - t0,
            }
            if not math.isfinite(entry["loss"]):
                raise RuntimeError(f"training diverged at epoch {epoch + 1} (loss {entry['loss']}); lower the lr")
            history.append(entry)
            bar.set_postfix(loss=f"{entry['loss']:.3f}", acc=f"{entry['train_accuracy']:.2f}")
            if run_path is not None and dist.is_main:
                record = {"fingerprint": fingerprint, "epoch": epoch + 1, "history": history, "config": cfg.as_dict()}
                _save_train_state(run_path / STATE_FILE, model, optimizer, record)
            dist.barrier()
            if on_epoch is not None:
                on_epoch(epoch + 1, entry)
    finally:
        bar.close()
    seconds = time.perf_counter() - start

    model.eval()
    if run_path is not None and dist.is_main:
        from ..hub import save_checkpoint

        save_checkpoint(model, run_path / MODEL_FILE, metadata={
            "dataset": train.dataset, "synthetic": train.dataset == "synthetic", "samples": len(train),
            "subjects": len(train.subject_ids),
            "training": cfg.as_dict(), "history": history, **dict(metadata or {}),
        })
    dist.barrier()
    return TrainResult(model=model, history=history, resumed_from=start_epoch, seconds=seconds)


@torch.inference_mode()
def predict_probabilities(
    model: torch.nn.Module,
    data: ExpressionData,
    batch_size: int = 128,
    device: str | torch.device | None = None,
    amp: str = "auto",
    channels_last: bool | None = None,
) -> np.ndarray:
    """(N, C) class probabilities for every sample of ``data`` (model put in eval mode)."""
    model = _unwrap(model)
    device = torch.device(device) if device not in (None, "auto") else next(model.parameters()).device
    model.eval().to(device)
    amp_dtype = _amp_dtype(TrainConfig(amp=amp), device)
    channels_last = channels_last if channels_last is not None else device.type == "cuda"
    pcfg = model.pretrained_cfg
    out = []
    packed = data.packed_uint8()
    for i in range(0, len(data), batch_size):
        x = to_model_input(packed[i:i + batch_size].to(device), pcfg["mean"], pcfg["std"])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        autocast = (torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None
                    else contextlib.nullcontext())
        with autocast:
            logits = model(x)
        out.append(logits.float().softmax(dim=1).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, len(data.label_names)), dtype=np.float32)


def evaluate(model: torch.nn.Module, data: ExpressionData, batch_size: int = 128,
             device: str | torch.device | None = None, amp: str = "auto") -> EvalResult:
    """Probabilities, predictions and accuracy of ``model`` on ``data``."""
    probabilities = predict_probabilities(model, data, batch_size=batch_size, device=device, amp=amp)
    return EvalResult(probabilities=probabilities, labels=data.labels.copy())
