"""Throughput of `afnetm preprocess` on BU-3DFE-format scans, projected to the 2,500 scans of BU-3DFE.

Writes N realistic scans (Surrey Face Model identities × six expressions, once subdivided: ~13.6k
vertices, written by the project's BU-3DFE writer as .wrl + .bmp; no .bnd, so pose normalisation takes
the landmark-free path) to a temporary folder, runs the batch preprocessing with --jobs workers
(default: all cores) and records scans/s → results/preprocess.json.

    python benchmarks/bench_preprocess.py [--scans 40] [--jobs 2] [--size 224]
"""
import argparse
import datetime
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

import afnetm_timm
from afnetm_timm.data import EXPRESSIONS, face_scan_from_morphable_model
from afnetm_timm.data.batch import preprocess_folder
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
        report = preprocess_folder("bu3dfe", src, Path(tmp) / "cache", size=args.size, jobs=args.jobs, progress=True)
    rate = len(report.processed) / report.seconds
    result = {
        "benchmark": "afnetm preprocess bu3dfe (read .wrl + .bmp, pose, crop, clean, gridfit, masks, write cache)",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "cpu": platform.processor() or platform.machine(),
                    "logical_cpus": os.cpu_count(), "load_average": list(os.getloadavg())},
        "versions": {"afnetm_timm": afnetm_timm.__version__, "numpy": np.__version__, "python": sys.version.split()[0]},
        "command": "python benchmarks/bench_preprocess.py " + " ".join(sys.argv[1:]),
        "settings": {"scans": args.scans, "jobs": args.jobs, "size": args.size, "points_per_scan": n_points},
        "processed": len(report.processed), "failed": report.failed, "seconds": round(report.seconds, 2),
        "scans_per_second": round(rate, 3),
        "projected_seconds_for_2500_scans": round(BU3DFE_SCANS / rate, 1),
        "goal_seconds_for_2500_scans": 300,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp_path = RESULTS / "preprocess.json.tmp"
    tmp_path.write_text(json.dumps(result, indent=2))
    tmp_path.replace(RESULTS / "preprocess.json")
    print(json.dumps({k: result[k] for k in ("settings", "scans_per_second", "projected_seconds_for_2500_scans")}))


if __name__ == "__main__":
    main()
