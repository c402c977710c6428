"""Throughput of `afnetm preprocess` on BU-3DFE-format scans, projected to the 2,500 scans of BU-3DFE.

Writes N realistic scans (Surrey Face Model identities × six expressions, once subdivided: ~13.6k
vertices, written by the project's BU-3DFE writer as .wrl + .bmp; no .bnd, so pose normalisation takes
the landmark-free path) to a temporary folder, runs the batch preprocessing with --jobs workers
(default: all cores) and records scans/s → results/preprocess.json.

Besides the wall-clock rate (which depends on what else runs on the machine), it records the CPU
time the workers used per scan (less sensitive to load: ``projected_seconds_for_2500_scans_idle``
assumes --jobs otherwise idle cores), the median per-step times inside the workers (from the
cache's metadata), the load average before and after, and with ``--single K`` the per-scan time of
K scans preprocessed in this process, one at a time.

    python benchmarks/bench_preprocess.py [--scans 40] [--jobs 2] [--size 224] [--single 8]
"""
import argparse
import datetime
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import scipy

import afnetm_timm
from afnetm_timm.bench.env import cpu_model
from afnetm_timm.data import EXPRESSIONS, face_scan_from_morphable_model
from afnetm_timm.data.batch import _init_worker, preprocess_folder, preprocess_one
from afnetm_timm.data.formats import write_bu3dfe

ROOT = Path(__file__).resolve().parents[1]
SFM = ROOT.parent / "shared" / "data" / "sfm" / "sfm_3448.npz"
RESULTS = ROOT / "benchmarks" / "results"
BU3DFE_SCANS = 2500
CODES = {"anger": "AN", "disgust": "DI", "fear": "FE", "happiness": "HA", "sadness": "SA", "surprise": "SU"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scans", type=int, default=40)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--sfm", type=Path, default=SFM, help="Surrey Face Model .npz (default: ../shared)")
    parser.add_argument("--single", type=int, default=0, help="also time K scans one by one in this process")
    parser.add_argument("--out", type=Path, default=RESULTS / "preprocess.json", help="results file")
    args = parser.parse_args()
    if not args.sfm.is_file():
        sys.exit(f"morphable model not found: {args.sfm}")
    expressions = [e for e in EXPRESSIONS if e in CODES]
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        for i in range(args.scans):
            expression = expressions[i % len(expressions)]
            scan = face_scan_from_morphable_model(args.sfm, expression, 1.0, rng.standard_normal(63) * 0.8,
                                                  subdivisions=1, color_seed=i)
            folder = src / f"F{i:04d}"
            folder.mkdir(parents=True)
            write_bu3dfe(scan, folder, f"F{i:04d}_{CODES[expression]}04WH_F3D")
        n_points = scan.vertices.shape[0]
        load_before = list(os.getloadavg())
        cpu_before = _children_cpu()
        report = preprocess_folder("bu3dfe", src, Path(tmp) / "cache", size=args.size, jobs=args.jobs, progress=True)
        worker_cpu = _children_cpu() - cpu_before if args.jobs > 1 else None
        steps = _step_medians(Path(tmp) / "cache")
        single = _single(src, Path(tmp) / "single", args.size, args.single) if args.single else None
    rate = len(report.processed) / report.seconds
    cpu_per_scan = worker_cpu / max(len(report.processed), 1) if worker_cpu is not None else None
    result = {
        "benchmark": "afnetm preprocess bu3dfe (read .wrl + .bmp, pose, crop, clean, gridfit, masks, write cache)",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu": cpu_model(), "logical_cpus": os.cpu_count(),
                    "load_average_before": load_before, "load_average": list(os.getloadavg())},
        "versions": {"afnetm_timm": afnetm_timm.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
                     "opencv": cv2.__version__, "python": sys.version.split()[0]},
        "command": "python benchmarks/bench_preprocess.py " + " ".join(sys.argv[1:]),
        "settings": {"scans": args.scans, "jobs": args.jobs, "size": args.size, "points_per_scan": n_points},
        "processed": len(report.processed), "failed": report.failed, "seconds": round(report.seconds, 2),
        "scans_per_second": round(rate, 3),
        "projected_seconds_for_2500_scans": round(BU3DFE_SCANS / rate, 1),
        "goal_seconds_for_2500_scans": 300,
        "worker_cpu_ms_per_scan": None if cpu_per_scan is None else round(1e3 * cpu_per_scan, 1),
        "projected_seconds_for_2500_scans_idle": (
            None if cpu_per_scan is None else round(BU3DFE_SCANS * cpu_per_scan / args.jobs, 1)),
        "worker_step_ms_median": steps,
        "single_process": single,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = args.out.with_name(args.out.name + ".tmp")
    tmp_path.write_text(json.dumps(result, indent=2))
    tmp_path.replace(args.out)
    keys = ("settings", "scans_per_second", "projected_seconds_for_2500_scans", "worker_cpu_ms_per_scan",
            "projected_seconds_for_2500_scans_idle", "single_process")
    print(json.dumps({k: result[k] for k in keys}))


def _children_cpu() -> float:
    """CPU seconds (user + system) used by the finished child processes (the pool's workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _step_medians(cache: Path) -> dict[str, float]:
    """Median of each `preprocess_scan` step time (ms) recorded in the cached metadata."""
    rows = [json.loads(p.read_text())["preprocessing"]["timings_ms"] for p in sorted((cache / "samples").glob("*.json"))]
    return {k: round(float(np.median([r[k] for r in rows])), 1) for k in rows[0]} if rows else {}


def _single(src: Path, out: Path, size: int, count: int) -> dict:
    """Wall and CPU ms per scan of `preprocess_one` (read, preprocess, write) in this process, one thread."""
    paths = sorted(src.rglob("*_F3D.wrl"))[:count]
    _init_worker()  # one thread per library, as in the pool's workers
    for folder in (out, out / "warm-up"):
        (folder / "samples").mkdir(parents=True)
    preprocess_one(paths[0], src, out / "warm-up", size, False, {})
    wall, cpu = [], []
    for path in paths:
        t, c = time.perf_counter(), time.process_time()
        preprocess_one(path, src, out, size, False, {})
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return {"scans": len(paths), "wall_ms_median": round(1e3 * float(np.median(wall)), 1),
            "cpu_ms_median": round(1e3 * float(np.median(cpu)), 1), "cpu_ms_min": round(1e3 * float(np.min(cpu)), 1)}



if __name__ == "__main__":
    main()
