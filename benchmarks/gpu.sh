#!/usr/bin/env bash
# Every GPU figure of this project in one go, on a machine with a CUDA GPU:
#
#     bash benchmarks/gpu.sh [RESULTS_DIR]        # default benchmarks/results
#
# 1. the CUDA tests (python -m pytest -m cuda): the trainer's bf16 / channels_last / compiled paths and
#    the benchmark's settings on the GPU;
# 2. afnetm bench on CUDA: the standard grid against one and two ResNet18s, with the headline setting
#    (batch 256, bf16, channels_last, compiled; inference and training) -> bench-cuda.{json,md,png};
# 3. training speed of the trainer on CUDA, compiled, and the projected full protocol -> train-cuda.{json,md},
#    and the same without deterministic algorithms -> train-cuda-nondeterministic.{json,md}.
set -euo pipefail
out="${1:-benchmarks/results}"
export HF_HUB_OFFLINE=1
python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'benchmarks/gpu.sh: no CUDA device here')"
python -m pytest -q -m cuda -p no:cacheprovider
afnetm bench --devices cuda --no-preprocess --no-timm-benchmark --out "$out"
python benchmarks/bench_train.py --device cuda --compile --out "$out/train-cuda"
python benchmarks/bench_train.py --device cuda --compile --no-deterministic --out "$out/train-cuda-nondeterministic"
