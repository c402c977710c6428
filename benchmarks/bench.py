"""The benchmark suite (same options as ``afnetm bench``) with results in this folder's ``results/``.

    python benchmarks/bench.py            # standard CPU (+ CUDA when present) run, ~10+ minutes on 2 cores
    python benchmarks/bench.py --quick    # a couple of minutes
    python benchmarks/bench.py --help
"""
import sys
from pathlib import Path

from afnetm_timm.bench.cli import main

RESULTS = Path(__file__).resolve().parent / "results"

if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--out" not in argv:
        argv += ["--out", str(RESULTS.relative_to(Path.cwd()) if RESULTS.is_relative_to(Path.cwd()) else RESULTS)]
    sys.exit(main(argv, prog="python benchmarks/bench.py"))
