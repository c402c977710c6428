"""Batch preprocessing: a folder of scans → a cache of AFNet-M inputs that training reads fast.

``afnetm preprocess {bu3dfe,bosphorus,meshes} SRC_DIR OUT_DIR`` finds the scans, preprocesses them in
parallel over the CPU cores, and writes per scan ``OUT_DIR/samples/<id>.npz`` (texture (H, W, 3)
uint8, depth (H, W) uint8, mask (H, W) float16, mask_56, mask_28) and ``<id>.json`` (subject,
expression, intensity, source path, what preprocessing did), then ``OUT_DIR/index.jsonl`` (one line
per cached sample) and ``OUT_DIR/cache.json`` (the options that shape the samples: dataset kind, size,
crop radius, gridfit settings, ...; see `prepare_cache`). Every file is written under a temporary name
and renamed, so an interrupted run leaves no partial file; a rerun with the same options skips the scans
already cached, a rerun with other options into the same cache is refused (it would mix image sizes).
Options are checked once, before any work; a source folder without scans of the layout is an error.
A scan that fails is reported by name with its reason and the others go on; the exit status is
non-zero if any failed.
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_path, write_atomic
from .formats import read_scan
from .formats.mesh import MESH_SUFFIXES
from .formats.names import parse_scan_name
from .gridfit import _threadpool_controller
from .pipeline import check_preprocess_options, preprocess_scan

DATASET_PATTERNS: dict[str, tuple[str, ...]] = {
    "bu3dfe": ("*_F3D.wrl",),
    "bosphorus": ("*.bnt",),
    "meshes": tuple(f"*{suffix}" for suffix in MESH_SUFFIXES),
}

#: What each dataset kind looks for, for the "no scans found" error.
DATASET_LAYOUTS: dict[str, str] = {
    "bu3dfe": "BU-3DFE scans named <subject>_<expression><level><race>_F3D.wrl, e.g. F0001/F0001_HA04WH_F3D.wrl "
              "(its .bmp texture and .bnd landmarks beside it)",
    "bosphorus": "Bosphorus scans named *.bnt, e.g. bs000/bs000_E_HAPPY_0.bnt (its .png texture and .lm3 "
                 "landmarks beside it)",
    "meshes": f"mesh files named {', '.join(DATASET_PATTERNS['meshes'])}",
}

#: The file in a cache folder that records the options its samples were made with (see `prepare_cache`).
CACHE_FILE = "cache.json"


@dataclass
class BatchReport:
    """What a batch run did: cached, skipped (already cached) and failed scans (path → reason)."""

    processed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failed

    def record(self, item: str, status: str, reason: str = "") -> None:
        """Count one item: status 'done', 'skipped' or 'failed' (with its reason)."""
        if status == "done":
            self.processed.append(item)
        elif status == "skipped":
            self.skipped.append(item)
        else:
            self.failed[item] = reason

    def summary(self) -> str:
        total = len(self.processed) + len(self.skipped) + len(self.failed)
        rate = len(self.processed) / self.seconds if self.seconds > 0 else 0.0
        lines = [f"{total} scans: {len(self.processed)} preprocessed ({rate:.2f} scans/s), "
                 f"{len(self.skipped)} already cached, {len(self.failed)} failed, in {self.seconds:.1f} s"]
        lines += [f"FAILED {path}: {reason}" for path, reason in sorted(self.failed.items())]
        return "\n".join(lines)


def find_scans(dataset: str, src_dir: str | Path) -> list[Path]:
    """Scan files of ``dataset`` ('bu3dfe', 'bosphorus' or 'meshes') under ``src_dir``, sorted."""
    if dataset not in DATASET_PATTERNS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(DATASET_PATTERNS)}")
    src = Path(src_dir)
    if not src.is_dir():
        raise ValueError(f"source folder {src} does not exist or is not a folder")
    found = {p for pattern in DATASET_PATTERNS[dataset] for p in src.rglob(pattern) if p.is_file()}
    return sorted(found)


def no_scans_error(dataset: str, src_dir: str | Path) -> ValueError:
    """The error for a source folder without scans of ``dataset``: the folder, the kind, the expected files,
    and the kind its files do fit, if any."""
    src = Path(src_dir)
    hint = ""
    for other, patterns in DATASET_PATTERNS.items():
        if other != dataset and any(p.is_file() for pattern in patterns for p in src.rglob(pattern)):
            hint = f"; it does hold {other} files: did you mean 'afnetm preprocess {other}'?"
            break
    return ValueError(f"no {dataset} scans found in {src} (searched recursively for "
                      f"{DATASET_LAYOUTS.get(dataset, ', '.join(DATASET_PATTERNS.get(dataset, ())))}){hint}")


def sample_id(path: Path, src_dir: Path) -> str:
    """A cache id unique within the source tree: the relative path without suffix, '/' → '__'."""
    rel = path.relative_to(src_dir).with_suffix("")
    return "__".join(rel.parts)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def preprocess_one(path: Path, src_dir: Path, out_dir: Path, size: int, previews: bool,
                   options: dict[str, Any]) -> tuple[str, str, str]:
    """Preprocess one scan into the cache. Returns (path, 'done' | 'skipped' | 'failed', reason)."""
    sid = sample_id(path, src_dir)
    samples = out_dir / "samples"
    npz_path, meta_path = samples / f"{sid}.npz", samples / f"{sid}.json"
    if npz_path.is_file() and meta_path.is_file():
        return str(path), "skipped", ""
    try:
        scan = read_scan(path)
        sample = preprocess_scan(scan, size=size, **options)
    except Exception as err:  # noqa: BLE001 - a batch job reports every bad item and goes on
        return str(path), "failed", f"{type(err).__name__}: {err}"
    names = parse_scan_name(path.name)
    meta = {
        "id": sid,
        "source": str(path),
        "dataset": names.get("dataset"),
        "subject": names.get("subject"),
        "sex": names.get("sex"),
        "expression": names.get("expression"),
        "intensity": names.get("intensity"),
        "race": names.get("race"),
        "size": size,
        "preprocessing": sample.info,
    }
    write_cached_sample(out_dir, sid, sample, meta, previews)
    return str(path), "done", ""


def write_cached_sample(out_dir: Path, sid: str, sample, meta: dict[str, Any], previews: bool = False) -> None:
    """Write one preprocessed sample into the cache: ``samples/<sid>.npz`` (+ preview), then ``<sid>.json``.

    Each file is written atomically, the metadata last: a sample counts as cached only once both exist.
    """
    arrays = {
        "texture": sample.texture,
        "depth": np.ascontiguousarray(sample.depth[..., 0]) if sample.depth.ndim == 3 else sample.depth,
        "mask": sample.mask.astype(np.float16),
        "mask_56": sample.mask_56.astype(np.float16),
        "mask_28": sample.mask_28.astype(np.float16),
    }
    samples = Path(out_dir) / "samples"
    with atomic_path(samples / f"{sid}.npz") as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    if previews:
        _write_preview(Path(out_dir) / "previews" / f"{sid}.png", sample)
    write_atomic(samples / f"{sid}.json", json.dumps(meta, default=_json_default))


def _write_preview(path: Path, sample) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    depth = sample.depth if sample.depth.ndim == 3 else np.repeat(sample.depth[..., None], 3, axis=2)
    depth = depth if depth.dtype == np.uint8 else (np.clip(depth, 0, 1) * 255).astype(np.uint8)
    overlay = sample.texture.astype(np.float32)
    overlay[..., 0] = overlay[..., 0] * 0.6 + sample.mask * 255 * 0.4
    panel = np.concatenate([sample.texture, depth, overlay.clip(0, 255).astype(np.uint8)], axis=1)
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(panel, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"could not encode preview {path}")
    write_atomic(path, encoded.tobytes())


def write_index(out_dir: str | Path) -> Path:
    """Rebuild ``OUT_DIR/index.jsonl`` from the cached samples' metadata (atomic)."""
    out_dir = Path(out_dir)
    lines = []
    for meta_path in sorted((out_dir / "samples").glob("*.json")):
        if not meta_path.with_suffix(".npz").is_file():
            continue
        meta = json.loads(meta_path.read_text())
        meta.pop("preprocessing", None)
        meta["file"] = str(meta_path.with_suffix(".npz").relative_to(out_dir))
        lines.append(json.dumps(meta, sort_keys=True))
    index = out_dir / "index.jsonl"
    write_atomic(index, "\n".join(lines) + ("\n" if lines else ""))
    return index


def _cached_sample_metas(out_dir: Path) -> Iterator[Path]:
    """The metadata files of the samples cached in ``out_dir`` (those with their ``.npz``), sorted."""
    samples = out_dir / "samples"
    if samples.is_dir():
        for meta_path in sorted(samples.glob("*.json")):
            if meta_path.with_suffix(".npz").is_file():
                yield meta_path


def _plain(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples -> lists, numpy scalars -> Python), for comparisons."""
    return json.loads(json.dumps(value, default=_json_default))


def _describe(options: dict[str, Any], keys: Iterable[str]) -> str:
    return ", ".join(f"{key}={options[key]!r}" for key in keys)


def _mismatch(out_dir: Path, recorded: dict[str, Any], wanted: dict[str, Any], where: str = "") -> ValueError:
    keys = sorted(k for k in recorded.keys() & wanted.keys() if recorded[k] != wanted[k])
    return ValueError(f"{out_dir} was built with {_describe(recorded, keys)}{where}; this run asks for "
                      f"{_describe(wanted, keys)}: use another output folder or the same options")


def _read_cache_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: unreadable cache record ({err}); delete it to have the cache checked "
                         "against its samples' metadata instead") from err
    if not isinstance(record, dict) or not isinstance(record.get("options"), dict):
        raise ValueError(f"{path}: not a cache record (no 'options' object); delete it to have the cache "
                         "checked against its samples' metadata instead")
    return record


#: Options a sample's own metadata records (``<id>.json``): option -> path of keys in the metadata.
_META_OPTIONS: dict[str, tuple[str, ...]] = {
    "size": ("size",),
    "crop_radius": ("preprocessing", "crop", "radius_mm"),
    "window": ("preprocessing", "gridfit", "window_mm"),
    "smoothness": ("preprocessing", "gridfit", "smoothness"),
    "interp": ("preprocessing", "gridfit", "interp"),
    "regularizer": ("preprocessing", "gridfit", "regularizer"),
    "solver": ("preprocessing", "gridfit", "solver"),
    "median_size": ("preprocessing", "noise", "median_size"),
    "gaussian_sigma": ("preprocessing", "noise", "gaussian_sigma"),
    "depth_low_percentile": ("preprocessing", "depth", "low_percentile"),
    "depth_floor": ("preprocessing", "depth", "floor"),
    "depth_dtype": ("preprocessing", "depth", "dtype"),
    "pose_degrees": ("synthetic", "pose_degrees"),
}


def _options_of_sample(meta: dict[str, Any], dataset: str) -> dict[str, Any]:
    """The options a cached sample's metadata shows it was made with (those it records)."""
    found: dict[str, Any] = {}
    for option, keys in _META_OPTIONS.items():
        value: Any = meta
        for key in keys:
            value = value.get(key) if isinstance(value, dict) else None
        if value is not None:
            found[option] = value
    kind = meta.get("dataset")
    if kind == "synthetic" or dataset == "synthetic":
        found["dataset"] = kind  # synthetic samples never mix with scans
    elif dataset in ("bu3dfe", "bosphorus") and kind in ("bu3dfe", "bosphorus"):
        found["dataset"] = kind
    return found


def prepare_cache(out_dir: str | Path, options: dict[str, Any], info: dict[str, Any] | None = None) -> Path:
    """Check that the cache ``out_dir`` may take samples made with ``options``, create it, record the options.

    ``options`` (JSON-serialisable) hold everything that shapes a sample, including ``dataset`` (the kind:
    'bu3dfe', 'bosphorus', 'meshes', 'synthetic') and ``size``; they go to ``out_dir/cache.json`` (written
    atomically) with ``info`` (recorded, never compared). A cache whose samples were made with other
    options is a ValueError naming the folder and the options that differ: resuming into it would mix,
    e.g., 32x32 and 64x64 images under one index. The same options resume. Only options both records
    hold are compared (one written by a version with fewer settings still resumes); a cache with
    ``cache.json`` but no sample yet (say every scan failed) is simply re-recorded.

    Caches written before ``cache.json`` existed (samples, no record) are checked against what every
    sample's own metadata records -- size, crop radius, gridfit and depth settings, the synthetic head
    pose range, and whether it is synthetic -- and, if they all agree with this run, resumed and given a
    ``cache.json``. Options the samples do not record (the synthetic seed, point count, texture size,
    morphable model) cannot be checked for such a cache and are taken to be this run's.

    Returns:
        The path of ``cache.json``.

    Raises:
        ValueError: ``out_dir`` is a file, its ``cache.json`` is unreadable, or it holds samples made with
            other options.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {out} is a file, not a folder")
    wanted = _plain(options)
    record_path = out / CACHE_FILE
    has_samples = next(_cached_sample_metas(out), None) is not None
    write = True
    if record_path.is_file():
        recorded = _read_cache_record(record_path)["options"]
        if has_samples:
            if any(recorded[k] != wanted[k] for k in recorded.keys() & wanted.keys()):
                raise _mismatch(out, recorded, wanted)
            write = False  # keep the record of what the samples were made with
    elif has_samples:
        dataset = str(wanted.get("dataset"))
        for meta_path in _cached_sample_metas(out):
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
                raise ValueError(f"{meta_path}: unreadable sample metadata ({err}); delete it and its .npz "
                                 "to have the sample made again") from err
            made_with = _options_of_sample(meta if isinstance(meta, dict) else {}, dataset)
            if any(made_with[k] != wanted[k] for k in made_with.keys() & wanted.keys()):
                raise _mismatch(out, made_with, wanted, f" (sample {meta_path.name}; the cache predates {CACHE_FILE})")
    (out / "samples").mkdir(parents=True, exist_ok=True)
    if write:
        record = {"format": 1, "options": wanted, "info": _plain(info or {})}
        write_atomic(record_path, json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record_path


def _init_worker() -> None:
    """Pin the numeric libraries of a worker process to one thread each.

    The pool already runs one worker per core; threaded BLAS/OpenMP/OpenCV inside every worker
    would only oversubscribe the cores (several times slower when they are all busy).
    """
    import cv2

    cv2.setNumThreads(1)
    controller = _threadpool_controller()
    if controller is not None:
        controller.limit(limits=1)  # BLAS and OpenMP, for the life of the worker


@contextlib.contextmanager
def worker_pool(jobs: int) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``jobs`` worker processes, each pinned to one thread (`_init_worker`); submit work inside.

    Workers are forked (the platform default) while OpenCV's thread pool is stopped in this process:
    a child forked from a process whose OpenCV pool has run hangs on its first ``cv2.setNumThreads``
    (seen in a test session). The pool forks all its workers at the first submission, so submit
    everything (``map``) inside the ``with`` block; OpenCV's thread count is restored on exit.
    """
    import cv2

    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker) as executor:
            yield executor
    finally:
        cv2.setNumThreads(previous)


def preprocess_folder(
    dataset: str,
    src_dir: str | Path,
    out_dir: str | Path,
    size: int = 224,
    jobs: int | None = None,
    previews: bool = False,
    progress: bool = True,
    options: dict[str, Any] | None = None,
    paths: Iterable[Path] | None = None,
) -> BatchReport:
    """Preprocess every scan of ``dataset`` under ``src_dir`` into the cache at ``out_dir``.

    Checked first, before the cache folder is created or anything written: ``dataset``, ``size`` and
    ``options`` (`check_preprocess_options`), that there is at least one scan, and that the cache holds no
    samples made with other options (`prepare_cache`).

    Raises:
        ValueError: an unknown dataset, a missing source folder, a bad option, no scans of ``dataset``
            under ``src_dir``, or a cache made with other options.
    """
    if dataset not in DATASET_PATTERNS:
        raise ValueError(f"unknown dataset {dataset!r}; expected one of {sorted(DATASET_PATTERNS)}")
    src, out = Path(src_dir), Path(out_dir)
    settings = check_preprocess_options(size, options)
    scans = list(paths) if paths is not None else find_scans(dataset, src)
    if not scans:
        raise no_scans_error(dataset, src) if paths is None else ValueError("no scans given to preprocess")
    prepare_cache(out, {"dataset": dataset, **settings}, info={"written_by": f"afnetm preprocess {dataset}",
                                                                "source": str(src)})
    args = [(p, src, out, size, previews, dict(options or {})) for p in scans]
    return run_batch(preprocess_one, args, out, jobs=jobs, description=f"preprocess {dataset}", progress=progress)


def run_batch(
    function: Callable[..., tuple[str, str, str]],
    work: Sequence[tuple],
    out_dir: Path,
    jobs: int | None = None,
    description: str = "batch",
    progress: bool = True,
    chunksize: int = 1,
) -> BatchReport:
    """Call ``function(*item)`` → (name, 'done' | 'skipped' | 'failed', reason) for every item of ``work``
    over ``jobs`` worker processes (default: all cores) with a progress bar, then rebuild the cache index."""
    from tqdm.auto import tqdm

    jobs = max(1, jobs or os.cpu_count() or 1)
    report = BatchReport()
    start = time.perf_counter()
    bar = tqdm(total=len(work), desc=description, unit="scan", disable=not progress)
    with contextlib.ExitStack() as stack:
        if jobs == 1 or len(work) < 2:
            results: Iterable[tuple[str, str, str]] = (function(*item) for item in work)
        else:
            executor = stack.enter_context(worker_pool(jobs))
            results = executor.map(function, *zip(*work, strict=True), chunksize=chunksize)
        try:
            for name, status, reason in results:
                report.record(name, status, reason)
                bar.update()
        finally:
            bar.close()
    write_index(out_dir)
    report.seconds = time.perf_counter() - start
    return report


def load_cached_sample(out_dir: str | Path, sid: str) -> dict[str, np.ndarray]:
    """The arrays of one cached sample (texture, depth, mask, mask_56, mask_28)."""
    with np.load(Path(out_dir) / "samples" / f"{sid}.npz") as data:
        return {k: data[k] for k in data.files}


def add_preprocess_command(subparsers, formats: Sequence[str] = tuple(DATASET_PATTERNS)) -> None:
    """Register ``afnetm preprocess`` on an argparse subparsers object."""
    cmd = subparsers.add_parser(
        "preprocess", help="preprocess a folder of 3D face scans into a training cache",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    cmd.add_argument("dataset", choices=list(formats), help="which file layout to look for")
    cmd.add_argument("src_dir", type=Path, help="folder with the scans (searched recursively)")
    cmd.add_argument("out_dir", type=Path, help="cache folder (created; rerun to resume)")
    cmd.add_argument("--size", type=int, default=224, help="image size (default 224)")
    cmd.add_argument("--jobs", type=int, default=0, help="worker processes (default: all cores)")
    cmd.add_argument("--previews", action="store_true", help="also write PNG previews (texture, depth, mask)")
    cmd.add_argument("--crop-radius", type=float, default=90.0, help="nose-tip crop sphere radius in mm")
    cmd.add_argument("--no-progress", action="store_true", help="no progress bar")
    cmd.set_defaults(func=_cmd_preprocess)


def _cmd_preprocess(args) -> int:
    report = preprocess_folder(
        args.dataset, args.src_dir, args.out_dir, size=args.size, jobs=args.jobs or None, previews=args.previews,
        progress=not args.no_progress, options={"crop_radius": args.crop_radius},
    )
    print(report.summary())
    print(f"cache: {args.out_dir} (index: {args.out_dir / 'index.jsonl'})")
    return 0 if report.ok else 1
