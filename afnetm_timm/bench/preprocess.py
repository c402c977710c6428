"""Preprocessing speed: the fast gridfit against the reference solver, and scans/s of the whole pipeline.

The preprocessing modules are optional here (they are developed separately): they are imported
lazily and every part is recorded as ``'unavailable'`` (module missing) or ``'error'`` (present but
failing, with the message) instead of failing the benchmark. The calls used are::

    from afnetm_timm.data.gridfit import gridfit
    grid = gridfit(x, y, values, xnodes, ynodes, solver="fast")       # or solver="reference"
    from afnetm_timm.data.pipeline import preprocess_scan
    sample = preprocess_scan(scan)
    from afnetm_timm.data.synthetic import synthetic_face_scan
    scan = synthetic_face_scan(identity_seed=i, expression=...)        # the arguments it takes

gridfit fits the depth (z) of the scan's vertices (1 value column) and depth plus three colour-like
columns (4, as the pipeline fits depth and RGB in one solve) on a ``grid_size``² grid spanning their
x-y bounding box, with both solvers on the same clouds, and reports their disagreement in depth. Without
``synthetic_face_scan`` gridfit is timed on a procedural face-like point cloud (recorded as
``points: 'procedural'``) and the pipeline is 'unavailable'.
"""
from __future__ import annotations

import importlib
import inspect
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

GRIDFIT_MODULE = "afnetm_timm.data.gridfit"
PIPELINE_MODULE = "afnetm_timm.data.pipeline"
SYNTHETIC_MODULE = "afnetm_timm.data.synthetic"


@dataclass(frozen=True)
class PreprocessOptions:
    """``scans``: synthetic scans to use; ``grid_size``: gridfit nodes per axis; ``repeats``: timings per call."""

    scans: int = 3
    grid_size: int = 224
    repeats: int = 3


def load_attr(module: str, attr: str) -> tuple[Callable[..., Any] | None, dict[str, Any]]:
    """``(module.attr, {'status': 'ok'})``, or ``(None, {'status': 'unavailable'|'error', 'reason': ...})``.

    'unavailable' means the module (or the attribute) does not exist yet; 'error' means importing
    it raised something else (a bug or a missing dependency inside it).
    """
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name and (module == err.name or module.startswith(err.name + ".")):
            return None, {"status": "unavailable", "reason": f"module {module} not found"}
        return None, {"status": "error", "reason": f"importing {module}: ModuleNotFoundError: {err}"}
    except Exception as err:
        return None, {"status": "error", "reason": f"importing {module}: {type(err).__name__}: {err}"}
    fn = getattr(mod, attr, None)
    if not callable(fn):
        return None, {"status": "unavailable", "reason": f"{module} has no function {attr}()"}
    return fn, {"status": "ok"}


_EXPRESSIONS = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")


def _synthetic_scans(factory: Callable[..., Any], count: int) -> list[Any]:
    """``count`` scans: identity seed i and the six expressions in turn, where the factory takes them."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        params = {}
    scans = []
    for i in range(count):
        kwargs: dict[str, Any] = {}
        for seed_name in ("identity_seed", "seed"):
            if seed_name in params:
                kwargs[seed_name] = i
                break
        if "expression" in params:
            kwargs["expression"] = _EXPRESSIONS[i % len(_EXPRESSIONS)]
        scans.append(factory(**kwargs))
    return scans


def procedural_points(seed: int = 0, count: int = 20000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A face-like scattered height field (x, y in mm, z = height): an ellipsoid with a nose bump."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-75, 75, count)
    y = rng.uniform(-95, 95, count)
    head = np.clip(1 - (x / 75) ** 2 - (y / 95) ** 2, 0, None)
    z = 60 * np.sqrt(head) + 25 * np.exp(-((x / 12) ** 2 + ((y + 5) / 25) ** 2)) + rng.normal(0, 0.2, count)
    keep = head > 0
    return x[keep], y[keep], z[keep]


def _points_of(scan: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    vertices = np.asarray(scan.vertices if hasattr(scan, "vertices") else scan, dtype=np.float64)
    return vertices[:, 0], vertices[:, 1], vertices[:, 2]


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _error(where: str, err: BaseException) -> dict[str, Any]:
    return {"status": "error", "reason": f"{where}: {type(err).__name__}: {err}"[:400]}


def _with_colors(x: np.ndarray, y: np.ndarray, z: np.ndarray, columns: int) -> np.ndarray:
    """``z`` alone, or ``z`` and smooth colour-like columns (0..255), as the pipeline fits depth + RGB together."""
    if columns == 1:
        return z
    extra = [127.5 + 100 * np.sin(x / (15 + 5 * c) + c) * np.cos(y / (20 + 5 * c)) for c in range(columns - 1)]
    return np.column_stack([z, *extra])


def bench_gridfit(
    gridfit: Callable[..., Any],
    clouds: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
    options: PreprocessOptions,
    columns: Sequence[int] = (1, 4),
) -> dict[str, Any]:
    """Median ms per call of both solvers on the same point clouds, speed-up and agreement, for 1 value
    column (depth) and 4 (depth + RGB, as the pipeline fits them)."""
    cases = []
    for k in columns:
        fast_times, ref_times, max_diff, rms_diff = [], [], [], []
        for x, y, z in clouds:
            values = _with_colors(x, y, z, k)
            xnodes = np.linspace(x.min(), x.max(), options.grid_size)
            ynodes = np.linspace(y.min(), y.max(), options.grid_size)

            def fast(x=x, y=y, v=values, xn=xnodes, yn=ynodes) -> np.ndarray:
                return np.asarray(gridfit(x, y, v, xn, yn, solver="fast"))

            def reference(x=x, y=y, v=values, xn=xnodes, yn=ynodes) -> np.ndarray:
                return np.asarray(gridfit(x, y, v, xn, yn, solver="reference"))

            try:
                grid_fast, grid_ref = fast(), reference()  # warm-up, and the results to compare
                fast_times.append(_median_time(fast, options.repeats))
                ref_times.append(_median_time(reference, options.repeats))
            except Exception as err:
                return _error("gridfit", err)
            if grid_fast.shape != grid_ref.shape:
                return {"status": "error",
                        "reason": f"gridfit: fast grid {grid_fast.shape} != reference {grid_ref.shape}"}
            diff = np.abs(grid_fast.astype(np.float64) - grid_ref.astype(np.float64))
            if k > 1:
                diff = diff[0]  # depth, comparable with the 1-column case
            finite = np.isfinite(diff)
            max_diff.append(float(diff[finite].max()) if finite.any() else float("nan"))
            rms_diff.append(float(np.sqrt(np.mean(diff[finite] ** 2))) if finite.any() else float("nan"))
        fast_s, ref_s = statistics.median(fast_times), statistics.median(ref_times)
        cases.append({
            "columns": k, "fast_ms": fast_s * 1000, "reference_ms": ref_s * 1000,
            "speedup": ref_s / fast_s if fast_s > 0 else None,
            "max_abs_diff": max(max_diff), "rms_diff": statistics.median(rms_diff),
        })
    return {
        "status": "ok",
        "grid": [options.grid_size, options.grid_size],
        "clouds": len(clouds),
        "points_per_cloud": int(statistics.median(len(c[0]) for c in clouds)),
        "depth_range": statistics.median(float(np.ptp(c[2])) for c in clouds),
        "cases": cases,
    }


def bench_pipeline(preprocess_scan: Callable[..., Any], scans: list[Any], options: PreprocessOptions) -> dict[str, Any]:
    """Scans per second of ``preprocess_scan`` over the scans (one warm-up call, median over repeats)."""
    try:
        preprocess_scan(scans[0])

        def run_all() -> None:
            for scan in scans:
                preprocess_scan(scan)

        seconds = _median_time(run_all, options.repeats)
    except Exception as err:
        return _error("preprocess_scan", err)
    return {"status": "ok", "scans": len(scans), "scans_per_s": len(scans) / seconds, "ms_per_scan": 1000 * seconds / len(scans)}


def benchmark_preprocessing(options: PreprocessOptions = PreprocessOptions()) -> dict[str, Any]:
    """The preprocessing section of the results: ``{'status', 'gridfit': {...}, 'pipeline': {...}}``."""
    factory, synth = load_attr(SYNTHETIC_MODULE, "synthetic_face_scan")
    scans: list[Any] = []
    if factory is not None:
        try:
            scans = _synthetic_scans(factory, options.scans)
        except Exception as err:
            synth = _error("synthetic_face_scan", err)
    if scans:
        try:
            clouds, points = [_points_of(s) for s in scans], "synthetic_face_scan"
        except Exception as err:
            clouds, points = [procedural_points(i) for i in range(options.scans)], "procedural"
            synth = _error("scan.vertices", err)
    else:
        clouds, points = [procedural_points(i) for i in range(options.scans)], "procedural"

    gridfit, gridfit_status = load_attr(GRIDFIT_MODULE, "gridfit")
    grid_result = bench_gridfit(gridfit, clouds, options) if gridfit is not None else gridfit_status
    grid_result["points"] = points

    preprocess_scan, pipeline_status = load_attr(PIPELINE_MODULE, "preprocess_scan")
    if preprocess_scan is None:
        pipe_result = pipeline_status
    elif not scans:
        pipe_result = {"status": "unavailable", "reason": f"no scans: {synth.get('reason', 'synthetic_face_scan')}"}
    else:
        pipe_result = bench_pipeline(preprocess_scan, scans, options)

    statuses = {grid_result["status"], pipe_result["status"]}
    overall = "ok" if statuses == {"ok"} else ("unavailable" if statuses == {"unavailable"} else "partial")
    if "error" in statuses and "ok" not in statuses:
        overall = "error"
    return {"status": overall, "synthetic": synth, "options": asdict(options),
            "gridfit": grid_result, "pipeline": pipe_result}
