#!/usr/bin/env python
"""Benchmark gridfit: fast solver vs the plain reference port, depth + R, G, B on one grid.

Scans are derived from the Surrey Face Model (``../shared/data/sfm/sfm_3448.npz`` next to the
project, or ``--sfm PATH``): the happiness face, pose-normalised with its landmarks, cropped to
90 mm around the nose tip, then densified by sampling points uniformly on the mesh surface
(position and colour interpolated) to each requested count inside the 150 mm image window.
Without the model file, ``--source synthetic`` uses the procedural face instead.

Each measurement runs in a subprocess with one BLAS/OpenMP thread (OMP_NUM_THREADS=1 etc.),
times the whole fit (matrix assembly + solve for 4 value columns) and reports the median and
minimum over the repeats, the fast solver's CG iterations and the largest difference between the
two solutions (depth in mm, colour in 0..255 levels). Results go to
``benchmarks/results/gridfit.json`` with the machine, library versions and date.

    python benchmarks/bench_gridfit.py                 # 8k and 40k points, 224 x 224
    python benchmarks/bench_gridfit.py --points 8000 --sizes 112 224 --repeats 9
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
DEFAULT_SFM = ROOT.parent / "shared" / "data" / "sfm" / "sfm_3448.npz"
RESULTS = ROOT / "benchmarks" / "results" / "gridfit.json"
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


# ------------------------------------------------------------------------------------------
# Scan preparation
# ------------------------------------------------------------------------------------------
def _face(source: str, sfm: Path):
    from afnetm_timm.data.pose import crop_scan, estimate_pose, transform_scan
    from afnetm_timm.data.synthetic import face_scan_from_morphable_model, synthetic_face_scan

    if source == "sfm":
        scan = face_scan_from_morphable_model(sfm, "happiness", 1.0, texture="vertex")
    else:
        scan = synthetic_face_scan("happiness", n_points=20000, vertex_colors=True)
    pose = estimate_pose(scan)
    return crop_scan(transform_scan(scan, pose.transform), None, 90.0)


def sample_surface(scan, n: int, window: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points (mm) uniformly on the mesh area inside the square window, with RGB values."""
    rng = np.random.default_rng(seed)
    v, f = scan.vertices, scan.faces
    col = scan.vertex_colors.astype(np.float64)
    tri = v[f]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    inside = (np.abs(tri[:, :, :2]) <= window).all(axis=(1, 2))
    prob = np.where(inside, area, 0.0)
    prob /= prob.sum()
    pick = rng.choice(len(f), size=n, p=prob)
    r1, r2 = rng.random(n), rng.random(n)
    s = np.sqrt(r1)
    w = np.stack([1 - s, s * (1 - r2), s * r2], axis=1)
    pts = np.einsum("nk,nkd->nd", w, tri[pick])
    rgb = np.einsum("nk,nkd->nd", w, col[f[pick]])
    return pts, rgb


# ------------------------------------------------------------------------------------------
# Worker (runs in a single-threaded subprocess)
# ------------------------------------------------------------------------------------------
def worker(args: argparse.Namespace) -> None:
    from afnetm_timm.data.gridfit import GridfitProblem, ImageGrid

    scan = _face(args.source, Path(args.sfm))
    pts, rgb = sample_surface(scan, args.n, args.window, seed=args.seed)
    values = np.column_stack([pts[:, 2], rgb])
    grid = ImageGrid(args.size, args.window)

    def run(solver: str) -> tuple[float, np.ndarray, GridfitProblem]:
        t = time.perf_counter()
        problem = GridfitProblem(pts[:, 0], pts[:, 1], grid.xnodes, grid.ynodes)
        out = problem.solve(values, solver, threads=None)  # threads already 1 via the environment
        return time.perf_counter() - t, out, problem

    run("fast")  # warm-up: imports, grid caches
    fast_times, ref_times = [], []
    fast_out = ref_out = None
    iterations = None
    for _ in range(args.repeats):
        dt, fast_out, problem = run("fast")
        fast_times.append(dt)
        iterations = problem.iterations if hasattr(problem, "iterations") else None
    for _ in range(args.ref_repeats):
        dt, ref_out, _ = run("reference")
        ref_times.append(dt)
    diff = np.abs(fast_out - ref_out)
    result = {
        "points": int(args.n),
        "points_in_window": int(problem.keep.sum()),
        "grid": [args.size, args.size],
        "value_columns": 4,
        "fast_ms": {"median": 1e3 * float(np.median(fast_times)), "min": 1e3 * float(np.min(fast_times)),
                    "all": [round(1e3 * t, 2) for t in fast_times]},
        "reference_ms": {"median": 1e3 * float(np.median(ref_times)), "min": 1e3 * float(np.min(ref_times)),
                         "all": [round(1e3 * t, 2) for t in ref_times]},
        "speedup_median": float(np.median(ref_times) / np.median(fast_times)),
        "fast_cg_iterations": iterations,
        "max_abs_diff_depth_mm": float(diff[0].max()),
        "max_abs_diff_rgb_levels": float(diff[1:].max()),
        "threads": {k: os.environ.get(k) for k in THREAD_VARS},
    }
    print("RESULT " + json.dumps(result))


# ------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, nargs="+", default=[8000, 40000])
    ap.add_argument("--sizes", type=int, nargs="+", default=[224])
    ap.add_argument("--repeats", type=int, default=7, help="timed runs of the fast solver")
    ap.add_argument("--ref-repeats", type=int, default=3, help="timed runs of the reference solver")
    ap.add_argument("--window", type=float, default=75.0, help="half-width of the image window (mm)")
    ap.add_argument("--source", choices=("sfm", "synthetic"), default=None)
    ap.add_argument("--sfm", default=str(DEFAULT_SFM))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.source is None:
        args.source = "sfm" if Path(args.sfm).is_file() else "synthetic"
    if args.source == "sfm" and not Path(args.sfm).is_file():
        print(f"Surrey Face Model not found at {args.sfm}; use --sfm PATH or --source synthetic", file=sys.stderr)
        return 2
    if args.worker:
        worker(args)
        return 0

    import numpy
    import scipy

    env = dict(os.environ, **{k: "1" for k in THREAD_VARS})
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    runs = []
    for size in args.sizes:
        for n in args.points:
            cmd = [sys.executable, __file__, "--worker", "--n", str(n), "--size", str(size),
                   "--repeats", str(args.repeats), "--ref-repeats", str(args.ref_repeats),
                   "--window", str(args.window), "--source", args.source, "--sfm", args.sfm, "--seed", str(args.seed)]
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not lines:
                print(proc.stdout + proc.stderr, file=sys.stderr)
                return 1
            runs.append(json.loads(lines[-1][len("RESULT "):]))
            r = runs[-1]
            print(f"  measured {n} points at {size}x{size}: fast {r['fast_ms']['median']:.0f} ms", flush=True)
    from afnetm_timm.bench.env import cpu_model  # here: the driver's children set thread variables first

    try:
        load = os.getloadavg()
    except OSError:
        load = None
    report = {
        "benchmark": "gridfit depth + RGB (4 value columns, one system), fast vs reference solver",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpu": cpu_model(),
            "logical_cpus": os.cpu_count(),
            "load_average_at_end": load,
        },
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "source": args.source if args.source == "synthetic" else f"sfm ({Path(args.sfm).name}), happiness, sampled",
        "settings": {"smoothness": 1.0, "interp": "triangle", "regularizer": "gradient", "window_mm": args.window,
                     "threads": 1, "repeats_fast": args.repeats, "repeats_reference": args.ref_repeats},
        "runs": runs,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")

    head = f"{'points':>7} {'grid':>9} {'fast ms (med/min)':>18} {'ref ms (med)':>13} {'speedup':>8} {'CG it':>6} {'max |dz| mm':>12} {'max |drgb|':>11}"
    print(head)
    print("-" * len(head))
    for r in runs:
        print(
            f"{r['points']:>7} {r['grid'][0]:>4}x{r['grid'][1]:<4} "
            f"{r['fast_ms']['median']:>9.0f}/{r['fast_ms']['min']:<8.0f} {r['reference_ms']['median']:>13.0f} "
            f"{r['speedup_median']:>7.1f}x {str(r['fast_cg_iterations']):>6} {r['max_abs_diff_depth_mm']:>12.4f} "
            f"{r['max_abs_diff_rgb_levels']:>11.4f}"
        )
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
